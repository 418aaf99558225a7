# System tests on real network namespaces (tests/system/netns_faults.py):
# every way a held connection dies, with detection times. Needs root (it
# creates namespaces with `ip netns add`); exits 77, reported by CTest as
# skipped with the reason in its output, when namespaces cannot be created.
# Included by the top-level CMakeLists.txt inside if(CONNWATCH_TESTS).
find_package(Python3 3.9 COMPONENTS Interpreter)
if(NOT Python3_Interpreter_FOUND)
  message(STATUS "system tests: python3 not found, not registered")
  return()
endif()

add_test(NAME system.netns_faults
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/netns_faults.py
                 --daemon $<TARGET_FILE:connwatchd>
                 --peer $<TARGET_FILE:connwatch-peer>
                 --logs ${CMAKE_BINARY_DIR}/system-test-logs)
# RUN_SERIAL: the scenarios assert detection times (100 ms for a reset), so
# they do not share the two cores with the other tests.
set_tests_properties(system.netns_faults PROPERTIES
                     LABELS system
                     TIMEOUT 300
                     SKIP_RETURN_CODE 77
                     RUN_SERIAL TRUE)

# The status page in headless Chromium (tests/system/status_page_test.py):
# live refresh, a target taken down shown down with its reason, the filter,
# the first view without JavaScript. Exits 77 (skipped, with the reason)
# only when chromium or python3-websocket is missing. About 5 s.
add_test(NAME system.status_page
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/status_page_test.py
                 --daemon $<TARGET_FILE:connwatchd>
                 --peer $<TARGET_FILE:connwatch-peer>)
set_tests_properties(system.status_page PROPERTIES
                     LABELS browser
                     TIMEOUT 90
                     SKIP_RETURN_CODE 77)
