#include "web/web_config.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <tuple>

#include "config/yaml_errors.h"

namespace connwatch {

namespace {

constexpr size_t kMaxWebConfigBytes = 1 << 20;

// Keys of the exporter-toolkit's web config that connwatchd does not
// implement: refused with a clear message rather than ignored.
constexpr std::string_view kUnsupportedTlsKeys[] = {"cert",
                                                    "key",
                                                    "client_auth_type",
                                                    "client_ca_file",
                                                    "client_ca",
                                                    "client_allowed_sans",
                                                    "cipher_suites",
                                                    "curve_preferences",
                                                    "prefer_server_cipher_suites"};

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "\"" + node.Scalar() + "\"";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "an empty value";
}

// The size a certificate or key file may have; a PEM chain is a few KiB.
constexpr size_t kMaxTlsFileBytes = 1 << 20;

// Reads `path` whole into `out`; "" or why not.
std::string ReadTlsFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::strerror(errno ? errno : ENOENT);
  std::string text;
  char buf[16384];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxTlsFileBytes) return "larger than 1 MiB";
  }
  if (in.bad()) return std::strerror(errno ? errno : EIO);
  *out = std::move(text);
  return "";
}

gnutls_datum_t Datum(const std::string& s) {
  return {reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
          static_cast<unsigned>(s.size())};
}

// What GnuTLS makes of `cert_pem` and `key_pem`: "" when the chain and the
// key load and belong together, else one of the three complaints below
// (`which` says which file is at fault: 'c' the certificate, 'k' the key,
// 'm' a key that does not match).
std::string CheckTlsPair(const std::string& cert_pem, const std::string& key_pem, char* which) {
  gnutls_datum_t cert = Datum(cert_pem), key = Datum(key_pem);
  gnutls_x509_crt_t* crts = nullptr;
  unsigned count = 0;
  int rc = gnutls_x509_crt_list_import2(&crts, &count, &cert, GNUTLS_X509_FMT_PEM,
                                        0);
  if (rc < 0 || count == 0) {
    *which = 'c';
    return rc < 0 ? gnutls_strerror(rc) : "no certificate in the file";
  }
  for (unsigned i = 0; i < count; ++i) gnutls_x509_crt_deinit(crts[i]);
  gnutls_free(crts);
  gnutls_x509_privkey_t pk;
  gnutls_x509_privkey_init(&pk);
  rc = gnutls_x509_privkey_import2(pk, &key, GNUTLS_X509_FMT_PEM, nullptr, 0);
  gnutls_x509_privkey_deinit(pk);
  if (rc < 0) {
    *which = 'k';
    return gnutls_strerror(rc);
  }
  gnutls_certificate_credentials_t cred;
  if (gnutls_certificate_allocate_credentials(&cred) < 0) {
    *which = 'c';
    return "out of memory";
  }
  // The call the TLS listener makes with the same files.
  rc = gnutls_certificate_set_x509_key_mem2(cred, &cert, &key, GNUTLS_X509_FMT_PEM, nullptr, 0);
  gnutls_certificate_free_credentials(cred);
  if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
    *which = 'm';
    return gnutls_strerror(rc);
  }
  if (rc < 0) {
    *which = 'k';
    return gnutls_strerror(rc);
  }
  return "";
}

std::string_view GnutlsVersionName(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls10:
      return "VERS-TLS1.0";
    case TlsVersion::kTls11:
      return "VERS-TLS1.1";
    case TlsVersion::kTls12:
      return "VERS-TLS1.2";
    case TlsVersion::kTls13:
      return "VERS-TLS1.3";
  }
  return "VERS-TLS1.2";
}


// "$2a$", "$2b$" or "$2y$", a two-digit cost 04..31, then 53 characters of
// bcrypt's base64 alphabet (22 of salt, 31 of hash).
bool IsBcryptHash(std::string_view h, std::string* why) {
  if (h.size() < 7 || h[0] != '$' || h[1] != '2' || (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') ||
      h[3] != '$') {
    *why = "not a bcrypt hash (want $2a$, $2b$ or $2y$, e.g. from htpasswd -nbBC 10)";
    return false;
  }
  if (h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' || h[6] != '$') {
    *why = "not a bcrypt hash: no cost after \"" + std::string(h.substr(0, 4)) + "\"";
    return false;
  }
  int cost = (h[4] - '0') * 10 + (h[5] - '0');
  if (cost < 4 || cost > 31) {
    *why = "bcrypt cost " + std::to_string(cost) + " is out of range 4..31";
    return false;
  }
  std::string_view rest = h.substr(7);
  if (rest.size() != 53) {
    *why = "not a bcrypt hash: " + std::to_string(h.size()) + " characters, want 60";
    return false;
  }
  for (char c : rest) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '/';
    if (!ok) {
      *why = "not a bcrypt hash: unexpected character '" + std::string(1, c) + "'";
      return false;
    }
  }
  return true;
}

class Loader {
 public:
  Loader(std::string file, std::string base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  WebConfigLoadResult Load(std::string_view text) {
    WebConfig config;
    config.file = file_;
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      if (e.mark.is_null()) {
        ErrorAt(e.mark, "", "invalid YAML: " + e.msg);
      } else {
        // The same words for a syntax error as in the main config.
        YamlProblem p = ExplainYamlError(text, e.mark.line + 1, e.mark.column + 1, e.msg);
        YAML::Mark at;
        at.line = p.line - 1;
        at.column = p.column - 1;
        ErrorAt(at, "", std::move(p.message));
      }
      return Finish(std::move(config));
    }
    if (root.IsNull() || !root.IsDefined()) return Finish(std::move(config));  // empty file.
    if (!root.IsMap()) {
      Error(root, "",
            "the top level must be a map (tls_server_config, basic_auth_users), got " +
                Describe(root));
      return Finish(std::move(config));
    }
    for (const auto& [key, value] : Entries(root, "")) {
      if (key == "tls_server_config") {
        config.tls = Tls(value);
      } else if (key == "basic_auth_users") {
        config.basic_auth_users = Users(value);
      } else if (key == "http_server_config") {
        HttpServerConfig(value);
      } else {
        Error(KeyNode(root, key), "",
              "unknown key \"" + key + "\" (want tls_server_config or basic_auth_users)");
      }
    }
    return Finish(std::move(config));
  }

 private:
  using Entry = std::pair<std::string, YAML::Node>;

  WebConfigLoadResult Finish(WebConfig config) {
    WebConfigLoadResult result;
    if (errors_.empty()) {
      result.config = std::move(config);
    } else {
      result.errors = std::move(errors_);
    }
    return result;
  }

  void ErrorAt(const YAML::Mark& mark, std::string path, std::string message) {
    ConfigError e;
    e.file = file_;
    if (!mark.is_null()) {
      e.line = mark.line + 1;
      e.column = mark.column + 1;
    }
    e.path = std::move(path);
    e.message = std::move(message);
    errors_.push_back(std::move(e));
  }
  void Error(const YAML::Node& node, std::string path, std::string message) {
    ErrorAt(node.Mark(), std::move(path), std::move(message));
  }

  static std::string Join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  // The key node of `key` in `map` (for its place); the map itself if absent.
  YAML::Node KeyNode(const YAML::Node& map, const std::string& key) {
    for (const auto& kv : map) {
      if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.first;
    }
    return map;
  }

  // The entries of a map with string keys; duplicate and non-string keys are
  // reported and skipped.
  std::vector<Entry> Entries(const YAML::Node& map, const std::string& path) {
    std::vector<Entry> out;
    std::map<std::string, YAML::Mark> seen;
    for (const auto& kv : map) {
      const YAML::Node k = kv.first;
      if (!k.IsScalar()) {
        Error(k, path, "expected a key (a string), got " + Describe(k));
        continue;
      }
      auto [prev, inserted] = seen.emplace(k.Scalar(), k.Mark());
      if (!inserted) {
        Error(k, Join(path, k.Scalar()),
              "duplicate key \"" + k.Scalar() + "\" (first at " +
                  std::to_string(prev->second.line + 1) + ":" +
                  std::to_string(prev->second.column + 1) + ")");
        continue;
      }
      out.emplace_back(k.Scalar(), kv.second);
    }
    return out;
  }

  bool String(const YAML::Node& node, const std::string& path, std::string* out) {
    if (!node.IsScalar()) {
      Error(node, path, "expected a string, got " + Describe(node));
      return false;
    }
    *out = node.Scalar();
    return true;
  }

  std::string ResolvePath(const std::string& name) const {
    std::filesystem::path p(name);
    if (p.is_absolute() || base_dir_.empty()) return name;
    return (std::filesystem::path(base_dir_) / p).string();
  }

  std::optional<WebTlsConfig> Tls(const YAML::Node& node) {
    const std::string path = "tls_server_config";
    if (node.IsNull()) return std::nullopt;  // "tls_server_config:" alone: no TLS.
    if (!node.IsMap()) {
      Error(node, path, "expected a map with cert_file and key_file, got " + Describe(node));
      return std::nullopt;
    }
    const size_t errors_before = errors_.size();
    WebTlsConfig tls;
    YAML::Node cert_node, key_node, max_node;
    bool cert_seen = false, key_seen = false, max_seen = false;
    for (const auto& [key, value] : Entries(node, path)) {
      const std::string key_path = Join(path, key);
      if (key == "cert_file" || key == "key_file") {
        std::string name;
        (key == "cert_file" ? cert_seen : key_seen) = true;  // reported here if wrong.
        if (!String(value, key_path, &name)) continue;
        if (name.empty()) {
          Error(value, key_path, "must not be empty");
          continue;
        }
        (key == "cert_file" ? tls.cert_file : tls.key_file) = ResolvePath(name);
        (key == "cert_file" ? cert_node : key_node) = value;
      } else if (key == "min_version" || key == "max_version") {
        std::string word;
        if (!String(value, key_path, &word)) continue;
        TlsVersion v;
        if (!ParseTlsVersion(word, &v)) {
          Error(value, key_path, "must be TLS10, TLS11, TLS12 or TLS13, got \"" + word + "\"");
          continue;
        }
        if (key == "min_version") {
          tls.min_version = v;
        } else {
          tls.max_version = v;
          max_node = value;
          max_seen = true;
        }
      } else if (std::find(std::begin(kUnsupportedTlsKeys), std::end(kUnsupportedTlsKeys), key) !=
                 std::end(kUnsupportedTlsKeys)) {
        Error(KeyNode(node, key), key_path,
              "\"" + key +
                  "\" is not supported by connwatchd (only cert_file, key_file, "
                  "min_version and max_version)");
      } else {
        Error(KeyNode(node, key), path,
              "unknown key \"" + key + "\" (want cert_file, key_file, min_version or max_version)");
      }
    }
    if (!cert_seen) Error(node, path, "missing \"cert_file\"");
    if (!key_seen) Error(node, path, "missing \"key_file\"");
    if (tls.max_version && static_cast<int>(*tls.max_version) < static_cast<int>(tls.min_version)) {
      Error(max_seen ? max_node : node, Join(path, "max_version"),
            "must not be below min_version (" + std::string(TlsVersionName(tls.min_version)) + ")");
    }
    if (errors_.size() == errors_before) CheckTlsFiles(tls, cert_node, key_node);
    return tls;
  }

  // Loads the files as the server will, so a wrong path or a key that does
  // not match the certificate stops the daemon at start with its place.
  void CheckTlsFiles(const WebTlsConfig& tls, const YAML::Node& cert_node,
                     const YAML::Node& key_node) {
    const std::string path = "tls_server_config";
    bool readable = true;
    for (const auto& [file, node, key] : {std::tuple{tls.cert_file, cert_node, "cert_file"},
                                          std::tuple{tls.key_file, key_node, "key_file"}}) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        Error(node, Join(path, key),
              "cannot read \"" + file + "\": " + std::strerror(errno ? errno : ENOENT));
        readable = false;
      }
    }
    if (!readable) return;
    std::string cert_pem, key_pem, why;
    if (!(why = ReadTlsFile(tls.cert_file, &cert_pem)).empty()) {
      Error(cert_node, Join(path, "cert_file"), "cannot read \"" + tls.cert_file + "\": " + why);
      return;
    }
    if (!(why = ReadTlsFile(tls.key_file, &key_pem)).empty()) {
      Error(key_node, Join(path, "key_file"), "cannot read \"" + tls.key_file + "\": " + why);
      return;
    }
    char which = 0;
    why = CheckTlsPair(cert_pem, key_pem, &which);
    explicit_bzero(key_pem.data(), key_pem.size());
    if (why.empty()) return;
    if (which == 'c') {
      Error(cert_node, Join(path, "cert_file"),
            "cannot load the certificate from \"" + tls.cert_file + "\": " + why);
    } else if (which == 'k') {
      Error(key_node, Join(path, "key_file"),
            "cannot load the private key from \"" + tls.key_file + "\": " + why);
    } else {
      Error(key_node, Join(path, "key_file"),
            "the private key in \"" + tls.key_file + "\" does not match the certificate in \"" +
                tls.cert_file + "\"");
    }
  }

  std::vector<BasicAuthUser> Users(const YAML::Node& node) {
    const std::string path = "basic_auth_users";
    std::vector<BasicAuthUser> users;
    if (node.IsNull()) return users;
    if (!node.IsMap()) {
      Error(node, path, "expected a map of user names to bcrypt hashes, got " + Describe(node));
      return users;
    }
    for (const auto& [name, value] : Entries(node, path)) {
      const std::string user_path = Join(path, name);
      if (name.empty()) {
        Error(KeyNode(node, name), user_path, "a user name must not be empty");
        continue;
      }
      if (name.find(':') != std::string::npos) {
        Error(KeyNode(node, name), user_path,
              "a user name must not contain ':' (basic auth splits user and password there)");
        continue;
      }
      std::string hash;
      if (!String(value, user_path, &hash)) continue;
      std::string why;
      if (!IsBcryptHash(hash, &why)) {
        Error(value, user_path, why);
        continue;
      }
      users.push_back({name, hash});
    }
    return users;
  }

  // http_server_config: only `http2` is accepted, and has no effect
  // (connwatchd speaks HTTP/1.1).
  void HttpServerConfig(const YAML::Node& node) {
    const std::string path = "http_server_config";
    if (node.IsNull()) return;
    if (!node.IsMap()) {
      Error(node, path, "expected a map, got " + Describe(node));
      return;
    }
    for (const auto& [key, value] : Entries(node, path)) {
      if (key == "http2") {
        bool b;
        if (!value.IsScalar() || !YAML::convert<bool>::decode(value, b)) {
          Error(value, Join(path, key), "expected true or false, got " + Describe(value));
        }
      } else {
        Error(KeyNode(node, key), Join(path, key),
              "\"" + key + "\" is not supported by connwatchd");
      }
    }
  }

  std::string file_;
  std::string base_dir_;
  std::vector<ConfigError> errors_;
};

}  // namespace


WebConfigLoadResult ParseWebConfig(std::string_view text, const std::string& file,
                                   const std::string& base_dir) {
  return Loader(file, base_dir).Load(text);
}

WebConfigLoadResult LoadWebConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    WebConfigLoadResult result;
    ConfigError e;
    e.file = path;
    e.message =
        std::string("cannot read the web config file: ") + std::strerror(errno ? errno : ENOENT);
    result.errors.push_back(std::move(e));
    return result;
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxWebConfigBytes) {
      WebConfigLoadResult result;
      ConfigError e;
      e.file = path;
      e.message = "the web config file is larger than 1 MiB";
      result.errors.push_back(std::move(e));
      return result;
    }
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return ParseWebConfig(text, path, dir);
}

std::string LoadTlsMaterial(const WebTlsConfig& tls, TlsMaterial* out) {
  TlsMaterial m;
  std::string why;
  if (!(why = ReadTlsFile(tls.cert_file, &m.cert_pem)).empty()) {
    return "cannot read \"" + tls.cert_file + "\": " + why;
  }
  if (!(why = ReadTlsFile(tls.key_file, &m.key_pem)).empty()) {
    return "cannot read \"" + tls.key_file + "\": " + why;
  }
  char which = 0;
  why = CheckTlsPair(m.cert_pem, m.key_pem, &which);
  if (!why.empty()) {
    explicit_bzero(m.key_pem.data(), m.key_pem.size());
    if (which == 'c') return "cannot load the certificate from \"" + tls.cert_file + "\": " + why;
    if (which == 'k') return "cannot load the private key from \"" + tls.key_file + "\": " + why;
    return "the private key in \"" + tls.key_file + "\" does not match the certificate";
  }
  m.priorities = "NORMAL:-VERS-ALL";
  const int hi = tls.max_version ? static_cast<int>(*tls.max_version)
                                 : static_cast<int>(TlsVersion::kTls13);
  for (int v = hi; v >= static_cast<int>(tls.min_version); --v) {
    m.priorities += ":+";
    m.priorities += GnutlsVersionName(static_cast<TlsVersion>(v));
  }
  *out = std::move(m);
  return "";
}

}  // namespace connwatch
