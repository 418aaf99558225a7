# Benchmarks are not tests: CI runs only a smoke of the scale harness (a few
# hundred targets, no goals checked) so that it keeps working.
if(CONNWATCH_TESTS)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    add_test(NAME bench.scale_smoke
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/bench/scale.py
                     --build ${CMAKE_BINARY_DIR} --targets 300 --quick --http-port 19898)
    set_tests_properties(bench.scale_smoke PROPERTIES LABELS bench TIMEOUT 300 RUN_SERIAL TRUE)
  endif()
endif()
