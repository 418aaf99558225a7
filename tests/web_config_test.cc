// The web config (--web.config.file): parsing and its errors, bcrypt basic
// auth, and TLS served for real: a self-signed certificate made by the
// openssl CLI, an OpenSSL client that verifies it, plain HTTP refused.

#include "web/web_config.h"

#include <crypt.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "http_client.h"
#include "web/http_server.h"
#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::Subprocess;
using testing::TempDir;
using testing::RunProgram;
using testing::RunResult;

constexpr const char* kHost = "127.0.0.1";

std::string Shell(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

// A self-signed certificate for 127.0.0.1 and localhost in `dir`/name.crt and
// name.key, made by the openssl CLI as an operator would.
void MakeCertificate(const TempDir& dir, const std::string& name) {
  int status = 0;
  std::string out = Shell("command -v openssl", &status);
  ASSERT_EQ(status, 0) << "the openssl command is missing: run scripts/setup.sh";
  out = Shell(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=connwatch-test -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
      "-keyout " +
          dir.path() + "/" + name + ".key -out " + dir.path() + "/" + name + ".crt",
      &status);
  ASSERT_EQ(status, 0) << out;
}

std::string Bcrypt(const std::string& password, const char* prefix = "$2b$") {
  return testing::BcryptHash(password, 4, prefix);
}
using testing::BasicAuthHeader;

// --- Parsing --------------------------------------------------------------

std::vector<std::string> Errors(const WebConfigLoadResult& r) {
  std::vector<std::string> out;
  for (const ConfigError& e : r.errors) out.push_back(e.ToString());
  return out;
}

std::string Joined(const WebConfigLoadResult& r) {
  std::string out;
  for (const std::string& e : Errors(r)) out += e + "\n";
  return out;
}

TEST(WebConfig, EmptyFileMeansPlainHttpWithoutAuth) {
  for (const char* text : {"", "# nothing\n", "tls_server_config:\nbasic_auth_users:\n"}) {
    WebConfigLoadResult r = ParseWebConfig(text, "web.yml", "/etc");
    ASSERT_TRUE(r.config) << Joined(r);
    EXPECT_FALSE(r.config->tls);
    EXPECT_TRUE(r.config->basic_auth_users.empty());
  }
}

TEST(WebConfig, ReadsTlsAndUsersWithPathsRelativeToTheFile) {
  TempDir dir;
  MakeCertificate(dir, "server");
  const std::string hash = Bcrypt("secret");
  const std::string path = dir.Write("web.yml",
                                     "# exporter-toolkit format\n"
                                     "tls_server_config:\n"
                                     "  cert_file: server.crt\n"
                                     "  key_file: " +
                                         dir.path() +
                                         "/server.key\n"
                                         "  min_version: TLS13\n"
                                         "basic_auth_users:\n"
                                         "  prometheus: " +
                                         hash +
                                         "\n"
                                         "  grafana: '" +
                                         hash +
                                         "'\n"
                                         "http_server_config:\n  http2: true\n");
  WebConfigLoadResult r = LoadWebConfigFile(path);
  ASSERT_TRUE(r.config) << Joined(r);
  ASSERT_TRUE(r.config->tls);
  EXPECT_EQ(r.config->tls->cert_file, dir.path() + "/server.crt");
  EXPECT_EQ(r.config->tls->key_file, dir.path() + "/server.key");
  EXPECT_EQ(r.config->tls->min_version, TlsVersion::kTls13);
  EXPECT_FALSE(r.config->tls->max_version);
  ASSERT_EQ(r.config->basic_auth_users.size(), 2u);
  EXPECT_EQ(r.config->basic_auth_users[0].name, "prometheus");
  EXPECT_EQ(r.config->basic_auth_users[1].name, "grafana");
  EXPECT_EQ(r.config->basic_auth_users[1].bcrypt_hash, hash);
}

struct BadCase {
  std::string text;
  std::string error;  // one expected error line, "web.yml:" prefix implied.
};

TEST(WebConfig, EveryErrorHasItsPlace) {
  const std::string hash = Bcrypt("x");
  const BadCase cases[] = {
      {"- tls_server_config\n",
       "1:1: the top level must be a map (tls_server_config, basic_auth_users), got a list"},
      {"tls_server_config: {cert_file: a.crt\n",
       "1:20: the \"{\" opened here is never closed: a flow map ({a: 1, b: 2}) must end with "
       "\"}\" (YAML parser: \"end of map flow not found\" at line 2, column 1); nothing else in "
       "this file is checked until it parses, so more errors may be hidden"},
      {"tls_server_config:\n\tcert_file: a.crt\n",
       "2:1: a tab in the indentation: YAML indents with spaces only (YAML parser: \"illegal map "
       "value\" at line 2, column 11); nothing else in this file is checked until it parses, so "
       "more errors may be hidden"},
      {"basic_auth_user:\n  a: b\n",
       "1:1: unknown key \"basic_auth_user\" (want tls_server_config or basic_auth_users)"},
      {"tls_server_config:\n  cert_file: a.crt\n", "2:3: tls_server_config: missing \"key_file\""},
      {"tls_server_config:\n  key_file: a.key\n  cert_file: \"\"\n",
       "3:14: tls_server_config.cert_file: must not be empty"},
      {"tls_server_config: a.crt\n",
       "1:20: tls_server_config: expected a map with cert_file and key_file, got \"a.crt\""},
      {"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.crt\n",
       "4:3: tls_server_config.client_ca_file: \"client_ca_file\" is not supported by connwatchd "
       "(only cert_file, key_file, min_version and max_version)"},
      {"tls_server_config:\n  cert_file: a\n  key_file: b\n  cert_flie: c\n",
       "4:3: tls_server_config: unknown key \"cert_flie\" (want cert_file, key_file, min_version "
       "or max_version)"},
      {"tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n",
       "4:16: tls_server_config.min_version: must be TLS10, TLS11, TLS12 or TLS13, got \"TLS14\""},
      {"tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n"
       "  max_version: TLS12\n",
       "5:16: tls_server_config.max_version: must not be below min_version (TLS13)"},
      {"basic_auth_users:\n  alice: secret\n",
       "2:10: basic_auth_users.alice: not a bcrypt hash (want $2a$, $2b$ or $2y$, e.g. from "
       "htpasswd -nbBC 10)"},
      {"basic_auth_users:\n  alice: $2b$10$short\n",
       "2:10: basic_auth_users.alice: not a bcrypt hash: 12 characters, want 60"},
      {"basic_auth_users:\n  alice: $2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n",
       "2:10: basic_auth_users.alice: bcrypt cost 3 is out of range 4..31"},
      {"basic_auth_users:\n  \"a:b\": x\n",
       "2:3: basic_auth_users.a:b: a user name must not contain ':' (basic auth splits user and "
       "password there)"},
      {"basic_auth_users:\n  alice: [x]\n",
       "2:10: basic_auth_users.alice: expected a string, got a list"},
      {"basic_auth_users: [alice]\n",
       "1:19: basic_auth_users: expected a map of user names to bcrypt hashes, got a list"},
      {"basic_auth_users:\n  alice: " + hash + "\n  alice: " + hash + "\n",
       "3:3: basic_auth_users.alice: duplicate key \"alice\" (first at 2:3)"},
      {"http_server_config:\n  headers: {X-Frame-Options: deny}\n",
       "2:3: http_server_config.headers: \"headers\" is not supported by connwatchd"},
  };
  for (const BadCase& c : cases) {
    WebConfigLoadResult r = ParseWebConfig(c.text, "web.yml", "/nonexistent");
    EXPECT_FALSE(r.config) << c.text;
    std::vector<std::string> errors = Errors(r);
    EXPECT_NE(std::find(errors.begin(), errors.end(), "web.yml:" + c.error), errors.end())
        << "input:\n"
        << c.text << "want: web.yml:" << c.error << "\ngot:\n"
        << Joined(r);
  }
}

TEST(WebConfig, CertificateProblemsAreReportedAtStart) {
  TempDir dir;
  MakeCertificate(dir, "a");
  MakeCertificate(dir, "b");
  dir.Write("garbage.crt", "not a certificate\n");
  struct Case {
    std::string text, error;
  } cases[] = {
      {"tls_server_config:\n  cert_file: missing.crt\n  key_file: a.key\n",
       "2:14: tls_server_config.cert_file: cannot read \"" + dir.path() +
           "/missing.crt\": No such file or directory"},
      {"tls_server_config:\n  cert_file: garbage.crt\n  key_file: a.key\n",
       "2:14: tls_server_config.cert_file: cannot load the certificate from \"" + dir.path() +
           "/garbage.crt\": "},
      {"tls_server_config:\n  cert_file: a.crt\n  key_file: b.key\n",
       "3:13: tls_server_config.key_file: the private key in \"" + dir.path() +
           "/b.key\" does not match the certificate in \"" + dir.path() + "/a.crt\""},
  };
  for (const Case& c : cases) {
    std::string path = dir.Write("web.yml", c.text);
    WebConfigLoadResult r = LoadWebConfigFile(path);
    ASSERT_FALSE(r.config) << c.text;
    ASSERT_EQ(r.errors.size(), 1u) << Joined(r);
    EXPECT_EQ(r.errors[0].ToString().rfind(path + ":" + c.error, 0), 0u)
        << "want prefix " << path << ":" << c.error << "\ngot " << r.errors[0].ToString();
  }
  WebConfigLoadResult missing = LoadWebConfigFile(dir.path() + "/nope.yml");
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].ToString(), dir.path() +
                                              "/nope.yml: cannot read the web config "
                                              "file: No such file or directory");
}

// --- Basic auth -----------------------------------------------------------

TEST(WebConfig, Base64) {
  std::string out;
  EXPECT_TRUE(Base64Decode("YWxpY2U6c2VjcmV0", &out));
  EXPECT_EQ(out, "alice:secret");
  EXPECT_TRUE(Base64Decode("YQ==", &out));
  EXPECT_EQ(out, "a");
  EXPECT_TRUE(Base64Decode("YWI=", &out));
  EXPECT_EQ(out, "ab");
  EXPECT_TRUE(Base64Decode("", &out));
  EXPECT_EQ(out, "");
  for (const char* bad : {"YQ=", "Y===", "YQ==YQ==", "YW*j", "YWJj\n", "=YWJ"}) {
    EXPECT_FALSE(Base64Decode(bad, &out)) << bad;
  }
}

TEST(WebConfig, BasicAuthAcceptsOnlyTheRightPassword) {
  BasicAuthenticator auth({{"alice", Bcrypt("s3cret:with colon")}, {"bob", Bcrypt("pw", "$2y$")}});
  ASSERT_TRUE(auth.enabled());
  EXPECT_TRUE(auth.Check(BasicAuthHeader("alice", "s3cret:with colon")));
  EXPECT_TRUE(auth.Check(BasicAuthHeader("alice", "s3cret:with colon")));      // remembered.
  EXPECT_TRUE(auth.Check("basic " + BasicAuthHeader("bob", "pw").substr(6)));  // scheme any case.
  EXPECT_FALSE(auth.Check(BasicAuthHeader("alice", "s3cret")));
  EXPECT_FALSE(auth.Check(BasicAuthHeader("alice", "")));
  EXPECT_FALSE(auth.Check(BasicAuthHeader("bob", "s3cret:with colon")));
  EXPECT_FALSE(auth.Check(BasicAuthHeader("carol", "pw")));
  EXPECT_FALSE(auth.Check(""));
  EXPECT_FALSE(auth.Check("Bearer abc"));
  EXPECT_FALSE(auth.Check("Basic !!!!"));
  EXPECT_FALSE(auth.Check("Basic YWxpY2U="));  // no colon.
  EXPECT_FALSE(auth.Check(BasicAuthHeader("alice", std::string("s3cret:with colon\0x", 19))));

  BasicAuthenticator none({});
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(none.Check(""));
}

TEST(WebConfig, BcryptHashesFromOtherToolsVerify) {
  // Openwall's crypt_blowfish test vector ($2a$), and the same hash with the
  // $2b$ and $2y$ prefixes that htpasswd and Python's bcrypt write (for
  // ASCII passwords the three variants compute the same hash).
  const std::string vector = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
  for (const char* prefix : {"$2a$", "$2b$", "$2y$"}) {
    std::string hash = prefix + vector.substr(4);
    BasicAuthenticator auth({{"u", hash}});
    EXPECT_TRUE(auth.Check(BasicAuthHeader("u", "U*U"))) << hash;
    EXPECT_FALSE(auth.Check(BasicAuthHeader("u", "U*V"))) << hash;
    std::string text = "basic_auth_users:\n  u: " + hash + "\n";
    EXPECT_TRUE(ParseWebConfig(text, "web.yml", "").config) << hash;
  }
}

// --- Served for real --------------------------------------------------------

class FakeDaemon : public DaemonControl {
 public:
  std::shared_ptr<const Snapshot> GetSnapshot() override {
    auto s = std::make_shared<Snapshot>();
    s->config_loaded = true;
    s->last_reload_successful = true;
    return s;
  }
  std::vector<std::string> Reload() override { return {}; }
  bool Healthy() override { return true; }
  bool Ready() override { return true; }
};

// One HTTPS request with an OpenSSL client that verifies the server against
// `ca_file` (the self-signed certificate) and 127.0.0.1.
HttpResponse HttpsRequest(int port, const std::string& ca_file, const std::string& path,
                          const std::vector<std::string>& headers = {}, int max_version = 0,
                          std::string* protocol = nullptr) {
  HttpResponse r;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
    r.error = "cannot load " + ca_file;
    return r;
  }
  if (max_version) SSL_CTX_set_max_proto_version(ctx.get(), max_version);
  std::string error;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int fd = http_client_internal::Connect(kHost, port, deadline, &error);
  if (fd < 0) {
    r.error = error;
    return r;
  }
  // Blocking from here on, with a receive timeout as the deadline.
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), kHost);
  if (SSL_connect(ssl.get()) != 1) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    r.error = std::string("TLS handshake failed: ") + buf +
              " (verify: " + X509_verify_cert_error_string(SSL_get_verify_result(ssl.get())) + ")";
    close(fd);
    return r;
  }
  if (protocol) *protocol = SSL_get_version(ssl.get());
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const std::string& h : headers) request += h + "\r\n";
  request += "\r\n";
  SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
  std::string raw;
  char buf[16384];
  while (true) {
    int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  ERR_clear_error();
  return ParseHttpResponse(raw);
}

class WebConfigServer : public ::testing::Test {
 protected:
  void SetUp() override { MakeCertificate(dir_, "server"); }

  WebConfig Config(bool tls, std::vector<BasicAuthUser> users = {}) {
    WebConfig web;
    web.file = dir_.path() + "/web.yml";
    if (tls) {
      web.tls.emplace();
      web.tls->cert_file = dir_.path() + "/server.crt";
      web.tls->key_file = dir_.path() + "/server.key";
    }
    web.basic_auth_users = std::move(users);
    return web;
  }
  void Start(WebConfig web, int request_timeout_ms = 3000) {
    HttpServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.request_timeout_ms = request_timeout_ms;
    options.web = std::move(web);
    server_ = std::make_unique<HttpServer>(std::move(options), daemon_, log_);
    ASSERT_EQ(server_->Start(), "");
    ASSERT_GT(server_->port(), 0);
  }
  std::string ca() const { return dir_.path() + "/server.crt"; }

  TempDir dir_;
  FakeDaemon daemon_;
  EventLog log_{nullptr, LogFormat::kLogfmt, LogLevel::kInfo};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(WebConfigServer, TlsHandshakeVerifiesAndServesEveryEndpoint) {
  Start(Config(true));
  std::string protocol;
  HttpResponse r = HttpsRequest(server_->port(), ca(), "/-/healthy", {}, 0, &protocol);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "OK");
  EXPECT_EQ(protocol, "TLSv1.3");
  r = HttpsRequest(server_->port(), ca(), "/metrics");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("connwatch_config_last_reload_successful 1"), std::string::npos) << r.body;
  r = HttpsRequest(server_->port(), ca(), "/api/v1/targets");
  EXPECT_EQ(r.status, 200) << r.error;
  // TLS 1.2 is the default minimum and is accepted.
  r = HttpsRequest(server_->port(), ca(), "/-/ready", {}, TLS1_2_VERSION, &protocol);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(protocol, "TLSv1.2");
}

TEST_F(WebConfigServer, PlainHttpToTheTlsListenerGetsNoHttpAnswer) {
  Start(Config(true));
  HttpResponse r = HttpGet(kHost, server_->port(), "/metrics", milliseconds(5000));
  EXPECT_FALSE(r.ok()) << "status " << r.status << "\n" << r.body;
  EXPECT_EQ(r.status, 0);
  // The server is still fine afterwards.
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/-/healthy").status, 200);
}

TEST_F(WebConfigServer, AHandshakeThatNeverEndsIsCutOffAtTheRequestDeadline) {
  Start(Config(true), /*request_timeout_ms=*/500);
  std::string error;
  int fd = http_client_internal::Connect(kHost, server_->port(),
                                         std::chrono::steady_clock::now() + milliseconds(5000),
                                         &error);
  ASSERT_GE(fd, 0) << error;
  // A ClientHello record header announcing 512 bytes, then a byte every 50 ms.
  const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (size_t i = 0; i < 200 && !closed; ++i) {
    const char byte = i < hello.size() ? hello[i] : 'x';
    if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1) break;
    closed = ClosedWithin(fd, milliseconds(50));
  }
  if (!closed) closed = ClosedWithin(fd, milliseconds(2000));
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_TRUE(closed) << "a trickled handshake is still open after " << took.count() << " ms";
  EXPECT_LT(took, milliseconds(2000));
  close(fd);
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/-/healthy").status, 200);
}

TEST_F(WebConfigServer, TlsScrapesAreAnsweredDuringAFloodOfIdleConnections) {
  Start(Config(true));
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) {
    std::string error;
    int fd = http_client_internal::Connect(
        kHost, server_->port(), std::chrono::steady_clock::now() + milliseconds(5000), &error,
        "127.0.0.2");
    ASSERT_GE(fd, 0) << error;
    flood.push_back(fd);
  }
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    HttpResponse r = HttpsRequest(server_->port(), ca(), "/metrics");
    EXPECT_EQ(r.status, 200) << "scrape " << i << " during the flood: " << r.error;
    EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000)) << "scrape " << i;
  }
  for (int fd : flood) close(fd);
}

TEST_F(WebConfigServer, MinVersionRefusesOlderClients) {
  WebConfig web = Config(true);
  web.tls->min_version = TlsVersion::kTls13;
  Start(std::move(web));
  HttpResponse r = HttpsRequest(server_->port(), ca(), "/-/healthy", {}, TLS1_2_VERSION);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("TLS handshake failed"), std::string::npos) << r.error;
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/-/healthy").status, 200);
}

TEST_F(WebConfigServer, ClientThatDoesNotTrustTheCertificateFails) {
  Start(Config(true));
  TempDir other;
  MakeCertificate(other, "other");
  HttpResponse r = HttpsRequest(server_->port(), other.path() + "/other.crt", "/-/healthy");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("certificate"), std::string::npos) << r.error;
}

TEST_F(WebConfigServer, BasicAuthOverPlainHttp) {
  Start(Config(false, {{"prometheus", Bcrypt("scrape-me")}}));
  const int port = server_->port();
  for (const char* path : {"/metrics", "/api/v1/targets", "/-/healthy", "/"}) {
    HttpResponse r = HttpGet(kHost, port, path);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.Header("WWW-Authenticate"), "Basic realm=\"connwatchd\", charset=\"UTF-8\"");
  }
  HttpResponse wrong = HttpRequest(kHost, port, "GET", "/metrics", "", std::chrono::seconds(10),
                                   {"Authorization: " + BasicAuthHeader("prometheus", "guess")});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_TRUE(wrong.HasHeader("WWW-Authenticate"));
  HttpResponse head = HttpRequest(kHost, port, "HEAD", "/metrics");
  EXPECT_EQ(head.status, 401);
  HttpResponse good = HttpRequest(kHost, port, "GET", "/metrics", "", std::chrono::seconds(10),
                                  {"Authorization: " + BasicAuthHeader("prometheus", "scrape-me")});
  EXPECT_EQ(good.status, 200);
  EXPECT_NE(good.body.find("connwatch_build_info"), std::string::npos);
}

TEST_F(WebConfigServer, TlsAndBasicAuthTogether) {
  Start(Config(true, {{"prometheus", Bcrypt("scrape-me")}}));
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/metrics").status, 401);
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/metrics",
                         {"Authorization: " + BasicAuthHeader("prometheus", "nope")})
                .status,
            401);
  HttpResponse r = HttpsRequest(server_->port(), ca(), "/metrics",
                                {"Authorization: " + BasicAuthHeader("prometheus", "scrape-me")});
  EXPECT_EQ(r.status, 200) << r.error;
}

// The status page and the compact API its script refreshes from, behind TLS
// and basic auth: the same credentials open both, every link is relative.
TEST_F(WebConfigServer, StatusPageWorksBehindTlsAndBasicAuth) {
  Start(Config(true, {{"operator", Bcrypt("look")}}));
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/").status, 401);
  const std::vector<std::string> auth = {"Authorization: " + BasicAuthHeader("operator", "look")};
  HttpResponse page = HttpsRequest(server_->port(), ca(), "/", auth);
  ASSERT_EQ(page.status, 200) << page.error;
  EXPECT_NE(page.body.find("<table id=\"targets\">"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("getJson(\"api/v1/targets?\""), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), page.body.find("http://www.w3.org/2000/svg"));
  HttpResponse compact = HttpsRequest(server_->port(), ca(), "/api/v1/targets?compact=1", auth);
  EXPECT_EQ(compact.status, 200) << compact.error;
  EXPECT_NE(compact.body.find("\"matched\":"), std::string::npos) << compact.body;
  EXPECT_EQ(HttpsRequest(server_->port(), ca(), "/api/v1/targets?compact=1").status, 401);
}

TEST_F(WebConfigServer, ManyTlsRequestsInParallel) {
  Start(Config(true));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (HttpsRequest(server_->port(), ca(), "/metrics").status == 200) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
}

// --- The daemon binary -------------------------------------------------------

TEST(WebConfig, DaemonExitsOneOnABadWebConfig) {
  TempDir dir;
  std::string config = dir.Write("connwatch.yaml", "targets: []\n");
  std::string web = dir.Write("web.yml", "tls_server_config:\n  cert_file: missing.crt\n");
  Subprocess d({CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config, "--web.listen-address=127.0.0.1:0",
                "--web.config.file=" + web});
  EXPECT_EQ(d.Wait(milliseconds(5000)), 1) << d.Output();
  // The exit can be seen before the reader thread has read the last lines.
  d.WaitForLine("cannot start: the web config has errors", milliseconds(5000));
  EXPECT_NE(d.Output().find(web + ":2:3: tls_server_config: missing \\\"key_file\\\""),
            std::string::npos)
      << d.Output();
  EXPECT_NE(d.Output().find("cannot start: the web config has errors"), std::string::npos);
}

// --check-config reads every file the daemon would read at start, the web
// config included: a key that does not match its certificate fails the check
// (it would fail the start), and an error in one file hides none in the other.
TEST(WebConfig, CheckConfigChecksTheWebConfig) {
  TempDir dir;
  MakeCertificate(dir, "a");
  MakeCertificate(dir, "b");
  const std::string config = dir.Write("connwatch.yaml", "targets: []\n");
  const std::string good = dir.Write("good.yml",
                                     "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
                                     "basic_auth_users:\n  prom: " + Bcrypt("pw") + "\n");
  const std::string mismatch =
      dir.Write("mismatch.yml", "tls_server_config:\n  cert_file: a.crt\n  key_file: b.key\n");

  RunResult ok = RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + config,
                             "--web.config.file=" + good},
                            milliseconds(10000));
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find(config + ": OK, 0 target(s) from 1 file(s)"), std::string::npos)
      << ok.output;
  EXPECT_NE(ok.output.find(good + ": OK, TLS, 1 basic-auth user(s)"), std::string::npos)
      << ok.output;

  RunResult bad = RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + config,
                              "--web.config.file=" + mismatch},
                             milliseconds(10000));
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find(mismatch + ":3:13: tls_server_config.key_file: the private key in \"" +
                            dir.path() + "/b.key\" does not match the certificate"),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find(mismatch + ": 1 error(s)"), std::string::npos) << bad.output;

  // Both files wrong: both reported.
  const std::string broken = dir.Write("broken.yaml", "targets:\n  - adress: 192.0.2.1:80\n");
  RunResult both = RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + broken,
                               "--web.config.file=" + mismatch},
                              milliseconds(10000));
  EXPECT_EQ(both.status, 1) << both.output;
  EXPECT_NE(both.output.find("unknown key \"adress\""), std::string::npos) << both.output;
  EXPECT_NE(both.output.find("does not match the certificate"), std::string::npos) << both.output;

  // A web config that cannot be read at all.
  RunResult missing = RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + config,
                                  "--web.config.file=" + dir.path() + "/nope.yml"},
                                 milliseconds(10000));
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find(dir.path() + "/nope.yml"), std::string::npos) << missing.output;
}

TEST(WebConfig, DaemonServesTlsWithBasicAuth) {
  TempDir dir;
  MakeCertificate(dir, "tls");
  std::string config = dir.Write("connwatch.yaml", "targets: []\n");
  std::string web = dir.Write("web.yml",
                              "tls_server_config:\n  cert_file: tls.crt\n"
                              "  key_file: tls.key\nbasic_auth_users:\n  prom: " +
                                  Bcrypt("pw") + "\n");
  Subprocess d({CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config, "--web.listen-address=127.0.0.1:0",
                "--web.config.file=" + web});
  std::string line = d.WaitForLine("msg=listening", milliseconds(5000));
  ASSERT_FALSE(line.empty()) << d.Output();
  int port = std::stoi(testing::LogfmtValue(line, "port"));
  HttpResponse r = HttpsRequest(port, dir.path() + "/tls.crt", "/metrics",
                                {"Authorization: " + BasicAuthHeader("prom", "pw")});
  EXPECT_EQ(r.status, 200) << r.error << d.Output();
  EXPECT_EQ(HttpsRequest(port, dir.path() + "/tls.crt", "/metrics").status, 401);
  EXPECT_FALSE(HttpGet(kHost, port, "/metrics", milliseconds(5000)).ok());
  d.Signal(SIGTERM);
  EXPECT_EQ(d.Wait(milliseconds(5000)), 0) << d.Output();
}

}  // namespace
}  // namespace connwatch
