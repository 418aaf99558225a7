#include "web/web_config.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <strings.h>
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

// Remembered good credentials; past this the set starts again (a scraper
// sends one set of credentials, so this only bounds a pathological client).
constexpr size_t kMaxVerifiedCredentials = 256;

// A bcrypt hash of a random password at cost 10, checked for unknown users so
// that they take as long as known ones.
constexpr const char* kDummyHash = "$2y$10$VdfJ7fpe6ynOtvxTr2.fIOil0WjDWMNCBcTF3knnmy1vQ/ke9S/Ui";

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

// The OpenSSL error queue of this thread as one line, emptied.
std::string OpenSslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

// True (and the error queue emptied) when the last OpenSSL error says that
// a key does not belong to the certificate: OpenSSL 3 already refuses such a
// key while loading it, and SSL_CTX_check_private_key then says so plainly.
bool KeyMismatch() {
  unsigned long code = ERR_peek_last_error();
  if (ERR_GET_LIB(code) != ERR_LIB_X509 || ERR_GET_REASON(code) != X509_R_KEY_VALUES_MISMATCH) {
    return false;
  }
  ERR_clear_error();
  return true;
}

int OpenSslVersion(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls10:
      return TLS1_VERSION;
    case TlsVersion::kTls11:
      return TLS1_1_VERSION;
    case TlsVersion::kTls12:
      return TLS1_2_VERSION;
    case TlsVersion::kTls13:
      return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

bool ParseTlsVersion(std::string_view word, TlsVersion* v) {
  for (TlsVersion candidate :
       {TlsVersion::kTls10, TlsVersion::kTls11, TlsVersion::kTls12, TlsVersion::kTls13}) {
    if (TlsVersionName(candidate) == word) {
      *v = candidate;
      return true;
    }
  }
  return false;
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
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()),
                                                          &SSL_CTX_free);
    if (!ctx) {
      Error(cert_node, path, "cannot create a TLS context: " + OpenSslErrors());
      return;
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
      Error(cert_node, Join(path, "cert_file"),
            "cannot load the certificate from \"" + tls.cert_file + "\": " + OpenSslErrors());
      return;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 &&
        !KeyMismatch()) {
      Error(key_node, Join(path, "key_file"),
            "cannot load the private key from \"" + tls.key_file + "\": " + OpenSslErrors());
      return;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      Error(key_node, Join(path, "key_file"),
            "the private key in \"" + tls.key_file + "\" does not match the certificate in \"" +
                tls.cert_file + "\"");
      ERR_clear_error();
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

std::string_view TlsVersionName(TlsVersion version) {
  switch (version) {
    case TlsVersion::kTls10:
      return "TLS10";
    case TlsVersion::kTls11:
      return "TLS11";
    case TlsVersion::kTls12:
      return "TLS12";
    case TlsVersion::kTls13:
      return "TLS13";
  }
  return "TLS12";
}

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

std::string ConfigureTlsContext(const WebTlsConfig& tls, void* ssl_ctx) {
  SSL_CTX* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1) {
    return "cannot load the certificate from \"" + tls.cert_file + "\": " + OpenSslErrors();
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 &&
      !KeyMismatch()) {
    return "cannot load the private key from \"" + tls.key_file + "\": " + OpenSslErrors();
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return "the private key in \"" + tls.key_file + "\" does not match the certificate";
  }
  if (SSL_CTX_set_min_proto_version(ctx, OpenSslVersion(tls.min_version)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, tls.max_version ? OpenSslVersion(*tls.max_version) : 0) !=
          1) {
    return "cannot set the TLS protocol versions: " + OpenSslErrors();
  }
  return "";
}

// --- Basic auth ----------------------------------------------------------

bool Base64Decode(std::string_view in, std::string* out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return false;
  out->clear();
  out->reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      char c = in[i + j];
      if (c == '=') {
        // Padding only at the very end, in the last one or two places.
        if (i + 4 != in.size() || j < 2) return false;
        ++pad;
        v[j] = 0;
        continue;
      }
      if (pad > 0) return false;
      v[j] = value(c);
      if (v[j] < 0) return false;
    }
    uint32_t n = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                 (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out->push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2) out->push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

BasicAuthenticator::BasicAuthenticator(std::vector<BasicAuthUser> users)
    : users_(std::move(users)) {}

bool BasicAuthenticator::Check(std::string_view authorization) {
  if (users_.empty()) return true;
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  constexpr std::string_view kScheme = "basic";
  if (authorization.size() <= kScheme.size() ||
      strncasecmp(authorization.data(), kScheme.data(), kScheme.size()) != 0 ||
      authorization[kScheme.size()] != ' ') {
    return false;
  }
  authorization.remove_prefix(kScheme.size());
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  while (!authorization.empty() && authorization.back() == ' ') authorization.remove_suffix(1);
  std::string decoded;
  if (!Base64Decode(authorization, &decoded)) return false;
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  return Verify(std::string_view(decoded).substr(0, colon),
                std::string_view(decoded).substr(colon + 1));
}

bool BasicAuthenticator::Verify(std::string_view user, std::string_view password) {
  const BasicAuthUser* found = nullptr;
  for (const BasicAuthUser& u : users_) {
    if (u.name == user) found = &u;
  }
  const std::string hash = found ? found->bcrypt_hash : std::string(kDummyHash);
  // crypt_r takes a C string: a password with a NUL byte cannot match.
  const bool has_nul = password.find('\0') != std::string_view::npos;

  // Key of the remembered-credentials set: SHA-256(user NUL hash NUL password).
  std::string material;
  material.reserve(user.size() + hash.size() + password.size() + 2);
  material.append(user).push_back('\0');
  material.append(hash).push_back('\0');
  material.append(password);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  std::string key;
  if (EVP_Digest(material.data(), material.size(), digest, &digest_len, EVP_sha256(), nullptr) ==
      1) {
    key.assign(reinterpret_cast<const char*>(digest), digest_len);
  }
  OPENSSL_cleanse(material.data(), material.size());
  if (found && !has_nul && !key.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (verified_.count(key) > 0) return true;
  }

  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const std::string pw(has_nul ? std::string_view() : password);
  const char* out = crypt_r(pw.c_str(), hash.c_str(), data.get());
  bool match = out != nullptr && std::strlen(out) == hash.size() &&
               CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  match = match && found != nullptr && !has_nul;
  if (match && !key.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (verified_.size() >= kMaxVerifiedCredentials) verified_.clear();
    verified_.insert(key);
  }
  return match;
}

}  // namespace connwatch
