# Benchmarks are not tests: CI runs only smokes of them so that they keep
# working: the scale harness on a few hundred targets (no goals checked), the
# HTTP surface harness on 200 (latency, bursts, the flood; nothing checked), and
# the churn soak for 75 s on 400 targets (every check but the loop-stall
# one, which is reported: CI shares 2 cores with other tests).
if(CONNWATCH_TESTS)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    add_test(NAME bench.scale_smoke
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/bench/scale.py
                     --build ${CMAKE_BINARY_DIR} --targets 300 --quick --http-port 19898)
    set_tests_properties(bench.scale_smoke PROPERTIES LABELS bench TIMEOUT 300 RUN_SERIAL TRUE)
    add_test(NAME bench.http_surface_smoke
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/bench/http_surface.py
                     --build ${CMAKE_BINARY_DIR} --targets 200 --quick --http-port 19899)
    set_tests_properties(bench.http_surface_smoke PROPERTIES LABELS bench TIMEOUT 300 RUN_SERIAL TRUE)
    add_test(NAME bench.soak_smoke
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/bench/soak.py
                     --build ${CMAKE_BINARY_DIR} --smoke)
    set_tests_properties(bench.soak_smoke PROPERTIES LABELS bench TIMEOUT 420)
    # The probe benchmark: the detection matrix (network namespaces; it
    # reports "not run" without root) and the cost of the default probes at
    # 200 targets; no goal is checked. RUN_SERIAL: it measures CPU time.
    add_test(NAME bench.probes_smoke
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/bench/probes.py
                     --build ${CMAKE_BINARY_DIR} --smoke)
    set_tests_properties(bench.probes_smoke PROPERTIES LABELS bench TIMEOUT 300 RUN_SERIAL TRUE)
    # The endpoint benchmark on 20 names x 4 addresses (dnsmasq; skips, exit
    # 77, without it); nothing checked.
    add_test(NAME bench.endpoints_smoke
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/bench/endpoints.py
                     --build ${CMAKE_BINARY_DIR} --names 20 --window 2 --settle 1)
    set_tests_properties(bench.endpoints_smoke PROPERTIES LABELS bench TIMEOUT 300
                         SKIP_RETURN_CODE 77)
  endif()
endif()
