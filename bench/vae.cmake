# VAE decode benchmark (JSON lines on stdout).
add_executable(bench_vae bench_vae.cpp)
target_link_libraries(bench_vae PRIVATE skyreels_lib CLI11::CLI11)
