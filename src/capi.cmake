# The C API (include/skyreels.h): skyreels_capi, a front end on the pipeline's Session. C callers link it with
# the C++ linker (the engine is C++ underneath: set LINKER_LANGUAGE CXX on a C executable).
add_library(skyreels_capi STATIC capi/skyreels.cpp)
target_include_directories(skyreels_capi PUBLIC ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(skyreels_capi PRIVATE SKYREELS_VERSION="${PROJECT_VERSION}")
target_link_libraries(skyreels_capi PRIVATE skyreels_pipeline)
