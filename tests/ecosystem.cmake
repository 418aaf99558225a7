# CTest tests of what connwatch ships for the Prometheus ecosystem (issue 6):
# the alerting rules (promtool check rules / promtool test rules), the PromQL
# of the docs (docs_promql) and the JSON Schema of connwatch.yaml
# (tests/schema/check_schema.py against every good and bad config). The dashboard and rule expressions are checked against
# the metrics table by the PromqlNames gtests, and a real Prometheus scrapes
# connwatchd in PrometheusE2E.
#
# Included from the top-level CMakeLists.txt:
#   include(${CMAKE_SOURCE_DIR}/tests/ecosystem.cmake OPTIONAL)
# Tools: promtool (Debian package prometheus), Debian's python3 with
# python3-jsonschema and python3-yaml; scripts/setup.sh installs them. A
# missing tool makes its test fail with that hint rather than skip.

enable_testing()

find_program(CONNWATCH_PROMTOOL promtool)
# Debian's interpreter, where python3-jsonschema is installed, even when
# another python3 (pyenv, venv) comes first in PATH.
find_program(CONNWATCH_SYSTEM_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT CONNWATCH_SYSTEM_PYTHON3)
  find_program(CONNWATCH_SYSTEM_PYTHON3 python3)
endif()

function(connwatch_missing_tool_test name tool)
  add_test(NAME ${name}
           COMMAND sh -c "echo '${tool} not found: run scripts/setup.sh' >&2; exit 1")
endfunction()

if(CONNWATCH_PROMTOOL)
  add_test(NAME prometheus_rules_check
           COMMAND ${CONNWATCH_PROMTOOL} check rules connwatch-rules.yml
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/packaging/prometheus)
  add_test(NAME prometheus_rules_test
           COMMAND ${CONNWATCH_PROMTOOL} test rules connwatch-rules.test.yml
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/packaging/prometheus)
  set_tests_properties(prometheus_rules_check prometheus_rules_test PROPERTIES TIMEOUT 60)
else()
  connwatch_missing_tool_test(prometheus_rules_check promtool)
  connwatch_missing_tool_test(prometheus_rules_test promtool)
endif()

# The PromQL examples and alerts of the docs (tests/docs/promql_examples.py):
# promtool test rules against series from two watchers, promtool check rules
# and check config on the marked blocks.
if(CONNWATCH_PROMTOOL AND CONNWATCH_SYSTEM_PYTHON3)
  add_test(NAME docs_promql
           COMMAND ${CONNWATCH_SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/docs/promql_examples.py
                   ${CMAKE_SOURCE_DIR} ${CONNWATCH_PROMTOOL})
  set_tests_properties(docs_promql PROPERTIES TIMEOUT 60)
else()
  connwatch_missing_tool_test(docs_promql "promtool or python3")
endif()

if(CONNWATCH_SYSTEM_PYTHON3)
  add_test(NAME config_schema_test
           COMMAND ${CONNWATCH_SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/schema/check_schema.py
                   ${CMAKE_SOURCE_DIR})
  set_tests_properties(config_schema_test PROPERTIES TIMEOUT 60)
else()
  connwatch_missing_tool_test(config_schema_test python3)
endif()
