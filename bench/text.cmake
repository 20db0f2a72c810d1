# Text benchmarks, e.g.
#   add_executable(bench_text bench_text.cpp)
