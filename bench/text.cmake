# Text benchmark: tokenizer throughput and the Llama text encoder on a 351-token prompt.
add_executable(bench_text bench_text.cpp)
target_link_libraries(bench_text PRIVATE skyreels_lib skyreels_text CLI11::CLI11)
target_compile_definitions(bench_text PRIVATE SKYREELS_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
