# Parallel runs (label mpi): one test binary run as the ranks of an MPI job at 2, 3 and 4 ranks on this
# machine's cores (--oversubscribe), one OpenMP thread each with idle threads asleep, so that ranks do not
# spin against each other. Each run has a timeout; every rank exits with the worst verdict (support/mpi_main).
if(NOT SKYREELS_HAVE_MPI)
  message(STATUS "skyreels: no MPI: the parallel tests (label mpi) are not built")
  return()
endif()
add_executable(test_mpi test_mpi.cpp support/mpi_main.cpp)
target_link_libraries(test_mpi PRIVATE skyreels_test_support skyreels_pipeline GTest::gtest)
target_compile_definitions(test_mpi PRIVATE SKYREELS_BINARY_DIR="${CMAKE_BINARY_DIR}")
# Root in CI containers: mpirun needs to be told. OpenMPI's own allocations are not ours to leak-check.
set(mpi_env "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1;OMP_WAIT_POLICY=passive")
list(APPEND mpi_env "OMPI_MCA_btl=self,vader" "ASAN_OPTIONS=detect_leaks=0")
foreach(np 2 3 4)
  add_test(NAME mpi_np${np} COMMAND ${MPIEXEC_EXECUTABLE} --oversubscribe --bind-to none ${MPIEXEC_NUMPROC_FLAG} ${np}
                                    $<TARGET_FILE:test_mpi>)
  set_tests_properties(mpi_np${np} PROPERTIES LABELS "mpi;parallel" TIMEOUT 300 ENVIRONMENT "${mpi_env}")
endforeach()

# The command line under mpirun: the same video as one process, and a failing rank ending the others.
skyreels_test(test_parallel_cli LABELS "mpi;cli" SOURCES test_parallel_cli.cpp
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_btl=self,vader;ASAN_OPTIONS=detect_leaks=0")
target_compile_definitions(test_parallel_cli PRIVATE SKYREELS_MPIEXEC="${MPIEXEC_EXECUTABLE}")
add_dependencies(test_parallel_cli skyreels)
