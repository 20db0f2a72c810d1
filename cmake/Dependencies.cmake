# Third-party libraries, all from Debian's packages (scripts/install-deps.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(fmt REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
# MPI for parallel runs (one process per device; OpenMPI's mpirun or Slurm's srun launch them). Optional: a
# build without it runs one process, and `skyreels` says so when started under a launcher.
set(SKYREELS_MPI AUTO CACHE STRING "Build with MPI for parallel runs: AUTO (when found), ON or OFF")
set(SKYREELS_HAVE_MPI OFF)
if(NOT SKYREELS_MPI STREQUAL "OFF")
  if(SKYREELS_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(SKYREELS_HAVE_MPI ON)
    message(STATUS "skyreels: MPI ${MPI_CXX_VERSION} found: parallel runs available")
  endif()
endif()
# PCRE2 with Unicode properties: the Llama-3 pre-tokenizer regex.
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

# oneDNN's CMake config needs the OpenCL packages present; find the library directly so a CPU-only
# machine does not need them.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp REQUIRED)
find_library(DNNL_LIBRARY dnnl REQUIRED)
add_library(skyreels_dnnl INTERFACE)
target_include_directories(skyreels_dnnl INTERFACE ${DNNL_INCLUDE_DIR})
target_link_libraries(skyreels_dnnl INTERFACE ${DNNL_LIBRARY})

if(SKYREELS_TESTS OR SKYREELS_BENCH)
  find_package(GTest REQUIRED)
  find_package(benchmark QUIET)
endif()
