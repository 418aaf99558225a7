#pragma once
// The web configuration file (--web.config.file), in the format of the
// Prometheus exporter-toolkit, so one file can serve connwatchd and any other
// exporter:
//
//   tls_server_config:
//     cert_file: /etc/connwatch/tls.crt   # PEM, the certificate (chain)
//     key_file: /etc/connwatch/tls.key    # PEM, its private key
//     min_version: TLS12                  # TLS10..TLS13, default TLS12
//     max_version: TLS13                  # default: the newest GnuTLS knows
//   basic_auth_users:
//     prometheus: $2y$10$...              # bcrypt hash of the password
//
// With tls_server_config every endpoint is served over TLS only; with
// basic_auth_users every request needs one of the users' passwords. Relative
// file names are taken from the web config file's directory. Keys of the
// toolkit that connwatchd does not implement (client certificates, cipher
// suites, HTTP headers...) are errors, not silently ignored.
//
// Loading reports every error with its place, like the main config
// ("file:line:col: tls_server_config.cert_file: message"). Pure functions and
// an immutable result. Basic auth itself is in basic_auth.h.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.h"  // ConfigError
#include "web/basic_auth.h"

namespace connwatch {


struct WebTlsConfig {
  std::string cert_file;  // resolved against the web config's directory.
  std::string key_file;
  TlsVersion min_version = TlsVersion::kTls12;
  std::optional<TlsVersion> max_version;  // none: no upper bound.
};

struct WebConfig {
  std::string file;  // where it was read from ("" when built in code).
  std::optional<WebTlsConfig> tls;
  std::vector<BasicAuthUser> basic_auth_users;  // in file order; empty: no auth.
};

struct WebConfigLoadResult {
  std::optional<WebConfig> config;  // set only when errors is empty.
  std::vector<ConfigError> errors;
};

// Reads and checks `path`: YAML syntax, keys, types, the bcrypt hashes, and
// that the certificate and key files load with GnuTLS (the library that
// serves them) and belong together.
WebConfigLoadResult LoadWebConfigFile(const std::string& path);

// The same for `text` (file names in errors are `file`; relative certificate
// paths are taken from `base_dir`).
WebConfigLoadResult ParseWebConfig(std::string_view text, const std::string& file,
                                   const std::string& base_dir);

// What the TLS listener needs from `tls`: the certificate chain and the key
// as PEM text (read once, at start) and the GnuTLS priority string for the
// protocol versions. Returns "" or why the files could not be read.
struct TlsMaterial {
  std::string cert_pem;
  std::string key_pem;
  std::string priorities;  // e.g. "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
};
std::string LoadTlsMaterial(const WebTlsConfig& tls, TlsMaterial* out);

}  // namespace connwatch
