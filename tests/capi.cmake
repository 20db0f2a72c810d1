# The C API from C: test_capi.c is compiled as C11 (not C++) and linked with the C++ linker, since the engine
# underneath is C++. A plain ctest test (not gtest), label "capi".
add_executable(test_capi test_capi.c)
set_target_properties(test_capi PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON LINKER_LANGUAGE CXX)
target_compile_options(test_capi PRIVATE -Wall -Wextra -pedantic)
target_link_libraries(test_capi PRIVATE skyreels_capi)
add_test(NAME capi_demo_end_to_end COMMAND test_capi)
set_tests_properties(capi_demo_end_to_end PROPERTIES LABELS "capi" ENVIRONMENT "OMP_WAIT_POLICY=passive")
