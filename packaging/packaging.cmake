# Debian package of connwatch, built by CPack's DEB generator:
#   cmake --build build && (cd build && cpack -G DEB)
# gives build/connwatch_<version>-<revision>_<arch>.deb. docs/PACKAGING.md
# explains the choice of CPack over a debian/ directory and lists what the
# package holds. Included by the top-level CMakeLists.txt.

# --- What is installed (also by a plain `cmake --install`) -----------------
# The binaries go to bin/ (connwatchd: top-level CMakeLists.txt; connwatchctl:
# ctl/ctl.cmake). The unit and the
# configuration live at fixed absolute paths: they are not relative to the
# install prefix on a Debian system.
set(CONNWATCH_UNIT_DIR "/lib/systemd/system" CACHE PATH "Where the systemd unit is installed")
set(CONNWATCH_CONFIG_DIR "/etc/connwatch" CACHE PATH "Where the configuration is installed")
set(CONNWATCH_DOC_DIR "${CMAKE_INSTALL_DATADIR}/doc/connwatch")

set(CONNWATCH_PKG_DIR "${CMAKE_BINARY_DIR}/packaging")
file(MAKE_DIRECTORY "${CONNWATCH_PKG_DIR}")

# The Debian revision and the upstream version come from the top entry of
# packaging/changelog, which must name the project's version.
file(STRINGS "${CMAKE_SOURCE_DIR}/packaging/changelog" _cw_changelog_head LIMIT_COUNT 1)
if(_cw_changelog_head MATCHES "^connwatch \\(([^)-]+)-([^)]+)\\)")
  set(CONNWATCH_DEB_UPSTREAM "${CMAKE_MATCH_1}")
  set(CONNWATCH_DEB_REVISION "${CMAKE_MATCH_2}")
else()
  message(FATAL_ERROR "packaging/changelog: the first line must read 'connwatch (VERSION-REVISION) ...'")
endif()
if(NOT CONNWATCH_DEB_UPSTREAM STREQUAL PROJECT_VERSION)
  message(WARNING "packaging/changelog's top entry is ${CONNWATCH_DEB_UPSTREAM}-${CONNWATCH_DEB_REVISION} "
                  "but the project is ${PROJECT_VERSION}: add a changelog entry for ${PROJECT_VERSION}")
endif()

# Manual pages and the changelog are gzipped at build time, without a
# timestamp (gzip -n) so that the package is reproducible.
find_program(GZIP_EXECUTABLE gzip REQUIRED)
set(_cw_gz_outputs "")
foreach(_cw_page connwatchd.8 connwatch.yaml.5 connwatchctl.1)
  configure_file("${CMAKE_SOURCE_DIR}/packaging/man/${_cw_page}.in" "${CONNWATCH_PKG_DIR}/${_cw_page}" @ONLY)
  add_custom_command(
    OUTPUT "${CONNWATCH_PKG_DIR}/${_cw_page}.gz"
    COMMAND "${GZIP_EXECUTABLE}" -9 -n -c "${CONNWATCH_PKG_DIR}/${_cw_page}" > "${CONNWATCH_PKG_DIR}/${_cw_page}.gz"
    DEPENDS "${CONNWATCH_PKG_DIR}/${_cw_page}"
    COMMENT "Compressing the manual page ${_cw_page}"
    VERBATIM)
  list(APPEND _cw_gz_outputs "${CONNWATCH_PKG_DIR}/${_cw_page}.gz")
endforeach()
add_custom_command(
  OUTPUT "${CONNWATCH_PKG_DIR}/changelog.Debian.gz"
  COMMAND "${GZIP_EXECUTABLE}" -9 -n -c "${CMAKE_SOURCE_DIR}/packaging/changelog" > "${CONNWATCH_PKG_DIR}/changelog.Debian.gz"
  DEPENDS "${CMAKE_SOURCE_DIR}/packaging/changelog"
  COMMENT "Compressing the Debian changelog"
  VERBATIM)
list(APPEND _cw_gz_outputs "${CONNWATCH_PKG_DIR}/changelog.Debian.gz")
add_custom_target(connwatch_package_files ALL DEPENDS ${_cw_gz_outputs})

install(FILES "${CMAKE_SOURCE_DIR}/systemd/connwatch.service" DESTINATION "${CONNWATCH_UNIT_DIR}")
# The templated unit of a fleet on one host (docs/FLEET.md): never enabled by
# the package; `systemctl enable --now connwatch@0-4 ...` starts shards.
install(FILES "${CMAKE_SOURCE_DIR}/systemd/connwatch@.service" DESTINATION "${CONNWATCH_UNIT_DIR}")
install(FILES "${CMAKE_SOURCE_DIR}/packaging/connwatch.yaml" DESTINATION "${CONNWATCH_CONFIG_DIR}")
install(DIRECTORY DESTINATION "${CONNWATCH_CONFIG_DIR}/targets.d")
install(FILES "${CONNWATCH_PKG_DIR}/connwatchd.8.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
install(FILES "${CONNWATCH_PKG_DIR}/connwatch.yaml.5.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man5")
install(FILES "${CONNWATCH_PKG_DIR}/connwatchctl.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
install(FILES "${CMAKE_SOURCE_DIR}/README.md" "${CMAKE_SOURCE_DIR}/packaging/copyright"
              "${CONNWATCH_PKG_DIR}/changelog.Debian.gz"
        DESTINATION "${CONNWATCH_DOC_DIR}")
# The JSON schema of connwatch.yaml, where docs/PROMETHEUS.md tells editors
# to find it. The source tree's example points to the schema beside it
# (./connwatch.schema.json); the packaged example points to the installed one,
# as the packaged /etc/connwatch/connwatch.yaml does.
set(CONNWATCH_SCHEMA_PATH "/usr/share/connwatch/connwatch.schema.json")
install(FILES "${CMAKE_SOURCE_DIR}/config/connwatch.schema.json" DESTINATION "${CMAKE_INSTALL_DATADIR}/connwatch")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/config/example.yaml")
file(READ "${CMAKE_SOURCE_DIR}/config/example.yaml" _cw_example)
string(REPLACE "$schema=./connwatch.schema.json" "$schema=${CONNWATCH_SCHEMA_PATH}" _cw_example "${_cw_example}")
file(WRITE "${CONNWATCH_PKG_DIR}/example.yaml" "${_cw_example}")
install(FILES "${CONNWATCH_PKG_DIR}/example.yaml" DESTINATION "${CONNWATCH_DOC_DIR}/examples")

# --- The .deb ---------------------------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "connwatch")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TCP connection watcher that reports why connections die")
set(CPACK_PACKAGE_CONTACT "connwatch maintainers <connwatch@example.org>")
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

set(CPACK_DEBIAN_PACKAGE_NAME "connwatch")
set(CPACK_DEBIAN_PACKAGE_RELEASE "${CONNWATCH_DEB_REVISION}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "connwatch maintainers <connwatch@example.org>")
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the extended
# description (CPack indents it; "." is an empty line).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "connwatchd keeps one long-lived TCP connection open to every target of a
YAML list, notices the moment a connection dies and why (peer FIN, peer
RST, silent death caught by keepalive or TCP_USER_TIMEOUT, ICMP
unreachable, a failed application heartbeat), reconnects with jittered
backoff, and exports all of it as Prometheus metrics on port 9798, a JSON
API and a structured event log in the journal. connwatchctl, its
command-line client, shows the targets as a table (and serves as a
monitoring check), follows the events live and asks for a reload.
.
The package runs connwatchd as a sandboxed systemd service. As shipped its
configuration watches nothing: add targets to
/etc/connwatch/connwatch.yaml or /etc/connwatch/targets.d/, then
systemctl reload connwatch.")
# Depends: from the libraries the binary links, by dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/packaging/conffiles"
    "${CMAKE_SOURCE_DIR}/packaging/postinst"
    "${CMAKE_SOURCE_DIR}/packaging/prerm"
    "${CMAKE_SOURCE_DIR}/packaging/postrm")

include(CPack)

# --- Tests of the unit and the package (CTest labels "system", "package") --
if(CONNWATCH_TESTS)
  add_test(NAME systemd_unit
           COMMAND bash "${CMAKE_SOURCE_DIR}/tests/system/systemd_unit_test.sh"
                   "${CMAKE_SOURCE_DIR}" "$<TARGET_FILE:connwatchd>")
  set_tests_properties(systemd_unit PROPERTIES LABELS "system" TIMEOUT 120 SKIP_RETURN_CODE 77)

  add_test(NAME systemd_template_unit
           COMMAND bash "${CMAKE_SOURCE_DIR}/tests/system/template_unit_test.sh"
                   "${CMAKE_SOURCE_DIR}" "$<TARGET_FILE:connwatchd>")
  set_tests_properties(systemd_template_unit PROPERTIES LABELS "system" TIMEOUT 60
                       SKIP_RETURN_CODE 77)

  # The unit, sandbox and all, under a real systemd in a throwaway container
  # (systemd-nspawn). Needs root; skipped (exit 77) otherwise.
  add_test(NAME systemd_service
           COMMAND bash "${CMAKE_SOURCE_DIR}/tests/system/service_test.sh" "${CMAKE_BINARY_DIR}")
  set_tests_properties(systemd_service PROPERTIES LABELS "system" TIMEOUT 180 SKIP_RETURN_CODE 77)

  add_test(NAME packaging_files
           COMMAND bash "${CMAKE_SOURCE_DIR}/tests/system/packaging_files_test.sh"
                   "${CMAKE_SOURCE_DIR}" "$<TARGET_FILE:connwatchd>" "${CONNWATCH_PKG_DIR}"
                   "$<TARGET_FILE:connwatchctl>")
  set_tests_properties(packaging_files PROPERTIES LABELS "package" TIMEOUT 120 SKIP_RETURN_CODE 77)

  # Builds the .deb, lints it, installs it with dpkg, purges it. Needs root;
  # skipped (exit 77) otherwise.
  add_test(NAME package_deb
           COMMAND bash "${CMAKE_SOURCE_DIR}/tests/system/package_test.sh"
                   "${CMAKE_SOURCE_DIR}" "${CMAKE_BINARY_DIR}"
                   "${PROJECT_VERSION}-${CONNWATCH_DEB_REVISION}")
  set_tests_properties(package_deb PROPERTIES LABELS "package" TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
