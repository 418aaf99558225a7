# connwatchctl, the command-line client of connwatchd's HTTP API: its logic in
# a small library the tests link (connwatchctl_lib), a thin main. It links
# libconnwatch for check-config (the daemon's own check) and durations.
# Included by the top-level CMakeLists.txt.
find_package(CURL REQUIRED)
file(GLOB CONNWATCHCTL_LIB_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/ctl/*.cc)
list(REMOVE_ITEM CONNWATCHCTL_LIB_SOURCES ${CMAKE_SOURCE_DIR}/ctl/main.cc)
add_library(connwatchctl_lib STATIC ${CONNWATCHCTL_LIB_SOURCES})
target_include_directories(connwatchctl_lib PUBLIC ${CMAKE_SOURCE_DIR}/ctl)
target_link_libraries(connwatchctl_lib PUBLIC connwatch CURL::libcurl nlohmann_json::nlohmann_json)
add_executable(connwatchctl ${CMAKE_SOURCE_DIR}/ctl/main.cc)
target_link_libraries(connwatchctl PRIVATE connwatchctl_lib CLI11::CLI11)
install(TARGETS connwatchctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
