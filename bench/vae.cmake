# VAE benchmarks, e.g.
#   add_executable(bench_vae bench_vae.cpp)
