# The HTTP server (`skyreels serve`): skyreels_server, a front-end layer over the pipeline's Session, with
# cpp-httplib (Debian's libcpp-httplib-dev, a shared library built with OpenSSL, zlib and brotli: linked
# through its pkg-config file so that our compile definitions match the library's) and nlohmann-json. The web
# page (server/web_page.html) is compiled in: a build step turns it into a header of bytes.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

set(SKYREELS_WEB_PAGE_HEADER ${CMAKE_CURRENT_BINARY_DIR}/generated/server/web_page.h)
add_custom_command(
  OUTPUT ${SKYREELS_WEB_PAGE_HEADER}
  COMMAND ${CMAKE_COMMAND} -DINPUT=${CMAKE_CURRENT_SOURCE_DIR}/server/web_page.html
          -DOUTPUT=${SKYREELS_WEB_PAGE_HEADER} -DNAME=kWebPage -P ${PROJECT_SOURCE_DIR}/cmake/embed_file.cmake
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/server/web_page.html ${PROJECT_SOURCE_DIR}/cmake/embed_file.cmake
  COMMENT "Embedding the server's web page")

add_library(skyreels_server STATIC
  server/api_error.cpp
  server/http_guard.cpp
  server/http_routes.cpp
  server/image_header.cpp
  server/job.cpp
  server/job_queue.cpp
  server/job_request.cpp
  server/job_store.cpp
  server/security.cpp
  server/server.cpp
  server/session_runner.cpp
  ${SKYREELS_WEB_PAGE_HEADER})
target_link_libraries(skyreels_server PUBLIC skyreels_pipeline skyreels_media nlohmann_json::nlohmann_json
                                      PRIVATE PkgConfig::HTTPLIB)
