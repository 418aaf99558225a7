#pragma once
// The web configuration file (--web.config.file), in the format of the
// Prometheus exporter-toolkit, so one file can serve connwatchd and any other
// exporter:
//
//   tls_server_config:
//     cert_file: /etc/connwatch/tls.crt   # PEM, the certificate (chain)
//     key_file: /etc/connwatch/tls.key    # PEM, its private key
//     min_version: TLS12                  # TLS10..TLS13, default TLS12
//     max_version: TLS13                  # default: the newest OpenSSL knows
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
// an immutable result; BasicAuthenticator is thread-safe.

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/config.h"  // ConfigError

namespace connwatch {

// Protocol versions as the exporter-toolkit spells them (TLS10 ... TLS13).
enum class TlsVersion : uint8_t { kTls10, kTls11, kTls12, kTls13 };
std::string_view TlsVersionName(TlsVersion version);

struct WebTlsConfig {
  std::string cert_file;  // resolved against the web config's directory.
  std::string key_file;
  TlsVersion min_version = TlsVersion::kTls12;
  std::optional<TlsVersion> max_version;  // none: no upper bound.
};

struct BasicAuthUser {
  std::string name;
  std::string bcrypt_hash;  // "$2a$", "$2b$" or "$2y$", cost 4..31.
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
// that the certificate and key files load with OpenSSL and belong together.
WebConfigLoadResult LoadWebConfigFile(const std::string& path);

// The same for `text` (file names in errors are `file`; relative certificate
// paths are taken from `base_dir`).
WebConfigLoadResult ParseWebConfig(std::string_view text, const std::string& file,
                                   const std::string& base_dir);

// Loads the certificate chain and key of `tls` into `ssl_ctx` (an OpenSSL
// SSL_CTX*) and sets the protocol versions. Returns "" or why it failed.
std::string ConfigureTlsContext(const WebTlsConfig& tls, void* ssl_ctx);

// Checks HTTP basic-auth credentials against the configured bcrypt hashes
// (libxcrypt's crypt_r). A bcrypt check costs tens of milliseconds by design,
// and Prometheus sends the same credentials on every scrape, so credentials
// that passed once are remembered (as a SHA-256 digest, never in clear) and
// pass again without bcrypt. Unknown users cost as much as known ones, so a
// client cannot tell them apart by time. Thread-safe.
class BasicAuthenticator {
 public:
  explicit BasicAuthenticator(std::vector<BasicAuthUser> users);

  bool enabled() const { return !users_.empty(); }
  // `authorization` is the Authorization header's value ("" when absent).
  // True when it is "Basic base64(user:password)" with a configured user and
  // that user's password.
  bool Check(std::string_view authorization);

 private:
  bool Verify(std::string_view user, std::string_view password);

  const std::vector<BasicAuthUser> users_;
  std::mutex mu_;
  std::unordered_set<std::string> verified_;  // digests of good credentials.
};

// Decodes standard base64 (RFC 4648, with padding); false when malformed.
bool Base64Decode(std::string_view in, std::string* out);

}  // namespace connwatch
