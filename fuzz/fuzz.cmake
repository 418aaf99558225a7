# libFuzzer targets for the config loader, durations, the heartbeat matcher,
# the HTTP API and the state file (fuzz/*_fuzzer.cc), built when CONNWATCH_FUZZ=ON. clang
# only (libFuzzer ships with it: Debian's libclang-rt-14-dev). Run them with
# scripts/fuzz.sh, which configures a build like
#
#   CXX=clang++ cmake -S . -B build-fuzz -DCONNWATCH_FUZZ=ON \
#     -DCONNWATCH_SANITIZE=address,undefined -DCONNWATCH_TESTS=OFF
#
# The connwatch library gets -fsanitize=fuzzer-no-link (coverage for the
# fuzzer's guidance); each fuzzer links -fsanitize=fuzzer (libFuzzer's main).
# Include this file after the connwatch target is defined (at the end of
# CMakeLists.txt). Included earlier (e.g. through CMAKE_PROJECT_INCLUDE), it
# defers itself to the end of the top-level directory.

option(CONNWATCH_FUZZ "Build the libFuzzer targets in fuzz/ (clang only)" OFF)

if(CONNWATCH_FUZZ AND NOT TARGET fuzzers)  # once, however often included
  if(NOT TARGET connwatch)
    # Arguments of a deferred call are expanded when it runs: bake the path in now.
    cmake_language(EVAL CODE
      "cmake_language(DEFER DIRECTORY [[${CMAKE_SOURCE_DIR}]] CALL include [[${CMAKE_CURRENT_LIST_FILE}]])")
    return()
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CONNWATCH_FUZZ=ON needs clang (configure with CXX=clang++): "
                        "libFuzzer is part of clang")
  endif()
  if(NOT CONNWATCH_SANITIZE)
    message(WARNING "CONNWATCH_FUZZ without CONNWATCH_SANITIZE: the fuzzers will find "
                    "crashes only, not memory errors (use -DCONNWATCH_SANITIZE=address,undefined)")
  endif()
  target_compile_options(connwatch PRIVATE -fsanitize=fuzzer-no-link)

  file(GLOB CONNWATCH_FUZZERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/*_fuzzer.cc)
  set(CONNWATCH_FUZZ_TARGETS "")
  foreach(source ${CONNWATCH_FUZZERS})
    get_filename_component(name ${source} NAME_WE)
    add_executable(${name} ${source})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE connwatch)
    list(APPEND CONNWATCH_FUZZ_TARGETS ${name})
  endforeach()
  add_custom_target(fuzzers DEPENDS ${CONNWATCH_FUZZ_TARGETS})
endif()
