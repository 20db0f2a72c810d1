# CUDA tests (ctest label "cuda"), built with the CUDA backend only. Without a usable GPU every test that needs
# one skips with "no CUDA device: <reason>"; the binaries start without a driver (nothing links libcuda), which
# gtest_discover_tests relies on at build time.
if(NOT SKYREELS_HAVE_CUDA)
  return()
endif()

# The built kernels' resources (no GPU needed): no register spills, shared memory within each architecture's limit.
add_test(NAME kernel_resources COMMAND ${CMAKE_COMMAND} -DREPORT_DIR=${CMAKE_BINARY_DIR}/kernel_resources
                                       -P ${CMAKE_SOURCE_DIR}/cmake/check_kernel_resources.cmake)
set_tests_properties(kernel_resources PROPERTIES LABELS "kernels;cuda")

# CUDA against the CPU backend op by op, in f32 and bf16 (tolerances next to each check).
skyreels_test(test_cuda_ops LABELS "cuda;ops" SOURCES test_cuda_ops.cpp)
# The caching allocator, pinned memory and the accelerator's copy engine (ordering, staging, statistics).
skyreels_test(test_cuda_runtime LABELS "cuda;runtime" SOURCES test_cuda_runtime.cpp)

# The op-parity harness on the CUDA backend: the op test files built again with only the CUDA cases in
# backends_under_test() (support/op_harness.h), so every op test and tolerance applies unchanged. Only the
# CUDA instantiations are registered (the files' CPU-only tests already run in test_ops and friends).
add_executable(test_cuda_harness test_ops.cpp test_ops_text.cpp test_ops_vae.cpp test_ops_bf16.cpp)
target_link_libraries(test_cuda_harness PRIVATE skyreels_test_support GTest::gtest_main)
target_compile_definitions(test_cuda_harness PRIVATE SKYREELS_OP_HARNESS_CUDA=1 SKYREELS_BINARY_DIR="${CMAKE_BINARY_DIR}"
                                                     SKYREELS_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
gtest_discover_tests(test_cuda_harness TEST_LIST test_cuda_harness_TESTS TEST_FILTER "*cuda*" DISCOVERY_TIMEOUT 60)
# Labelled from an include file, as skyreels_test() does (gtest_discover_tests would keep only one label).
set(cuda_harness_labels ${CMAKE_CURRENT_BINARY_DIR}/test_cuda_harness_labels.cmake)
file(WRITE ${cuda_harness_labels}
     "if(test_cuda_harness_TESTS)\n  set_tests_properties(\${test_cuda_harness_TESTS} PROPERTIES LABELS \"cuda;ops\")\n"
     "endif()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${cuda_harness_labels})

# The whole pipeline on the GPU against the CPU run: the demo model in every offload and host memory mode.
skyreels_test(test_cuda_pipeline LABELS "cuda;pipeline" SOURCES test_cuda_pipeline.cpp)
# The pipeline fixtures' step-by-step parity on the GPU in f32, with the fixtures' tolerances.
skyreels_test(test_cuda_pipeline_parity LABELS "cuda;parity" SOURCES test_pipeline_parity.cpp)
target_compile_definitions(test_cuda_pipeline_parity PRIVATE SKYREELS_PIPELINE_PARITY_DEVICE=1
                                                              SKYREELS_PIPELINE_PARITY_DEVICE_CUDA=1)
target_link_libraries(test_cuda_pipeline_parity PRIVATE skyreels_pipeline)
