# `skyreels serve` against a real server on 127.0.0.1 (the demo model; tests/server/*.py, Python's standard
# library only), and the web page in headless Chromium (Debian's chromium, chromium-driver, python3-selenium).
# Debian's python3 is named explicitly: the Selenium package installs for it, not for another python3 on PATH.
find_program(SKYREELS_SYSTEM_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT SKYREELS_SYSTEM_PYTHON)
  find_program(SKYREELS_SYSTEM_PYTHON python3)
endif()
if(NOT SKYREELS_SYSTEM_PYTHON)
  message(STATUS "skyreels: no python3: the server and browser tests are not registered")
  return()
endif()

set(server_test_dir ${CMAKE_CURRENT_SOURCE_DIR}/server)
set(server_env "SKYREELS_BIN=$<TARGET_FILE:skyreels>;OMP_NUM_THREADS=2;PYTHONDONTWRITEBYTECODE=1")
if(SKYREELS_SANITIZE)
  # ASan keeps freed memory in its quarantine and its own free lists: the load test's memory-return check holds
  # for the Release build's allocator only (the sanitizer build still checks everything else).
  list(APPEND server_env "SKYREELS_SANITIZED=1")
endif()
foreach(group Endpoints BadInput Security Queue Loras)
  add_test(NAME server_api_${group} COMMAND ${SKYREELS_SYSTEM_PYTHON} -W ignore::ResourceWarning
                                            ${server_test_dir}/test_server_api.py ${group})
endforeach()
add_test(NAME server_recovery COMMAND ${SKYREELS_SYSTEM_PYTHON} -W ignore::ResourceWarning
                                      ${server_test_dir}/test_server_recovery.py)
add_test(NAME server_load COMMAND ${SKYREELS_SYSTEM_PYTHON} -W ignore::ResourceWarning
                                  ${server_test_dir}/test_server_load.py -v)
set(server_tests server_api_Endpoints server_api_BadInput server_api_Security server_api_Queue server_api_Loras
                 server_recovery
                 server_load)
set_tests_properties(${server_tests} PROPERTIES LABELS "server" ENVIRONMENT "${server_env}" TIMEOUT 300
                                                WORKING_DIRECTORY ${server_test_dir})
# Skipped (exit 77) only where no Chromium is installed; the screenshots land in the build folder.
add_test(NAME browser_page COMMAND ${SKYREELS_SYSTEM_PYTHON} -W ignore::ResourceWarning
                                   ${server_test_dir}/test_browser.py -v)
set_tests_properties(browser_page PROPERTIES LABELS "browser" TIMEOUT 300 SKIP_RETURN_CODE 77
                                             WORKING_DIRECTORY ${server_test_dir}
                                             ENVIRONMENT "${server_env};SKYREELS_SCREENSHOT_DIR=${CMAKE_BINARY_DIR}")
