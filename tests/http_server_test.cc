#include "web/http_server.h"

#include <errno.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <zlib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "http_client.h"
#include "web/metrics_view.h"

namespace connwatch {

// From metrics_view_test.cc.
void ExpectPromtoolAccepts(const std::string& body);

namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr const char* kHost = "127.0.0.1";

size_t R(Reason r) { return static_cast<size_t>(r); }

std::shared_ptr<TargetConfig> MakeConfig(std::string name, std::string address,
                                         std::vector<std::pair<std::string, std::string>> labels) {
  auto c = std::make_shared<TargetConfig>();
  c->name = std::move(name);
  c->address = std::move(address);
  c->labels = std::move(labels);
  return c;
}

std::shared_ptr<Snapshot> MakeSnapshot() {
  auto s = std::make_shared<Snapshot>();
  s->taken_unix = 1714567890.5;
  s->config_loaded = true;
  s->last_reload_successful = true;
  s->last_reload_success_unix = 1714567000;

  TargetSnapshot redis;
  redis.config = MakeConfig("redis", "10.0.0.5:6379", {{"env", "prod"}, {"team", "cache"}});
  redis.state = TargetState::kUp;
  redis.up = true;
  redis.last_change_unix = 1714567800.125;
  redis.resolved_address = "10.0.0.5:6379";
  redis.has_last_event = true;
  redis.last_event_kind = "connect";
  redis.last_event_unix = 1714567800.125;
  redis.connects = 4;
  redis.connect_failures[R(Reason::kRefused)] = 3;
  redis.disconnects[R(Reason::kPeerReset)] = 2;
  redis.icmp_errors[R(Reason::kHostUnreachable)] = 1;
  redis.retransmits_total = 17;
  redis.has_rtt = true;
  redis.rtt_seconds = 0.000421;
  s->targets.push_back(redis);

  TargetSnapshot db;
  db.config = MakeConfig("db", "db.example:5432", {{"env", "staging"}});
  db.state = TargetState::kBackoff;
  db.last_change_unix = 1714567000;
  db.has_last_event = true;
  db.last_event_kind = "connect_failure";
  db.last_reason = Reason::kRefused;
  db.last_errno = ECONNREFUSED;
  db.last_event_unix = 1714567850;
  db.last_failure_kind = "connect_failure";
  db.last_failure_reason = Reason::kRefused;
  db.last_failure_errno = ECONNREFUSED;
  db.last_failure_unix = 1714567850;
  db.connect_failures[R(Reason::kRefused)] = 5;
  s->targets.push_back(db);

  TargetSnapshot hb;
  hb.config = MakeConfig("hb", "[::1]:7000", {});
  hb.state = TargetState::kConnecting;
  hb.last_change_unix = 1714567850;
  hb.has_heartbeat = true;
  hb.heartbeat_seconds = 0.0021;
  s->targets.push_back(hb);

  s->targets_by_state[static_cast<size_t>(TargetState::kUp)] = 1;
  s->targets_by_state[static_cast<size_t>(TargetState::kBackoff)] = 1;
  s->targets_by_state[static_cast<size_t>(TargetState::kConnecting)] = 1;
  s->connect_duration.bounds = {0.01, 0.1};
  s->connect_duration.buckets = {3, 1, 1};
  s->connect_duration.count = 5;
  s->connect_duration.sum = 0.5;
  return s;
}

class FakeDaemon : public DaemonControl {
 public:
  std::shared_ptr<const Snapshot> GetSnapshot() override {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_;
  }
  std::vector<std::string> Reload() override {
    reloads.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    return reload_errors_;
  }
  bool Healthy() override { return healthy.load(); }
  bool Ready() override { return ready.load(); }

  void set_snapshot(std::shared_ptr<const Snapshot> s) {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(s);
  }
  void set_reload_errors(std::vector<std::string> errors) {
    std::lock_guard<std::mutex> lock(mu_);
    reload_errors_ = std::move(errors);
  }

  std::atomic<bool> healthy{true};
  std::atomic<bool> ready{true};
  std::atomic<int> reloads{0};

 private:
  std::mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ = MakeSnapshot();
  std::vector<std::string> reload_errors_;
};

void RecordEvents(EventLog* log) {
  Event connect;
  connect.unix_time = 1714567800.125;
  connect.kind = "connect";
  connect.target = "redis";
  connect.address = "10.0.0.5:6379";
  connect.resolved_address = "10.0.0.5:6379";
  connect.connect_seconds = 0.0012;
  connect.tcp.valid = true;
  connect.tcp.state = 1;
  connect.tcp.rtt_us = 421;
  log->Record(connect);

  Event failure;
  failure.unix_time = 1714567801.25;
  failure.level = LogLevel::kWarn;
  failure.kind = "connect_failure";
  failure.target = "db";
  failure.address = "db.example:5432";
  failure.has_reason = true;
  failure.reason = Reason::kRefused;
  failure.err = ECONNREFUSED;
  log->Record(failure);

  Event disconnect;
  disconnect.unix_time = 1714567850;
  disconnect.level = LogLevel::kWarn;
  disconnect.kind = "disconnect";
  disconnect.target = "redis";
  disconnect.address = "10.0.0.5:6379";
  disconnect.resolved_address = "10.0.0.5:6379";
  disconnect.has_reason = true;
  disconnect.reason = Reason::kPeerReset;
  disconnect.err = ECONNRESET;
  disconnect.has_detected_by = true;
  disconnect.detected_by = Detector::kZeroSend;
  disconnect.connected_for = 49.875;
  disconnect.tcp.valid = true;
  disconnect.tcp.state = 7;
  disconnect.tcp.rtt_us = 500;
  disconnect.tcp.retransmits = 2;
  disconnect.tcp.total_retrans = 9;
  disconnect.tcp.probes = 1;
  disconnect.tcp.unacked = 3;
  disconnect.tcp.last_data_recv_ms = 1500;
  disconnect.detail = "reset \"by\" peer\n\x01";
  log->Record(disconnect);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { RecordEvents(&log_); }

  // Starts a server on 127.0.0.1:0; fails the test if it cannot.
  void StartServer(bool lifecycle = false) {
    server_ = std::make_unique<HttpServer>("127.0.0.1:0", daemon_, log_, lifecycle);
    std::string error = server_->Start();
    ASSERT_EQ(error, "");
    ASSERT_GT(server_->port(), 0);
  }
  HttpResponse Get(const std::string& path) { return HttpGet(kHost, server_->port(), path); }
  HttpResponse Request(const std::string& method, const std::string& path) {
    return HttpRequest(kHost, server_->port(), method, path);
  }
  // GETs `path` expecting JSON with `status`; returns the parsed document.
  Json GetJson(const std::string& path, int status = 200) {
    HttpResponse r = Get(path);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, status) << path << ": " << r.body;
    EXPECT_EQ(r.Header("Content-Type"), "application/json") << path;
    Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << path << " is not JSON: " << r.body;
    return j;
  }

  FakeDaemon daemon_;
  EventLog log_{nullptr, LogFormat::kLogfmt, LogLevel::kDebug};
  std::unique_ptr<HttpServer> server_;
};

// --- Listen addresses ---------------------------------------------------------

std::string Parsed(std::string_view address) {
  ListenAddress a;
  std::string error;
  if (!ParseListenAddress(address, &a, &error)) return "error: " + error;
  return (a.ipv6_literal ? "v6 " : "") + a.host + " " + std::to_string(a.port);
}

TEST(HttpListenAddress, ParsesPrometheusForm) {
  EXPECT_EQ(Parsed(":9798"), " 9798");
  EXPECT_EQ(Parsed("127.0.0.1:0"), "127.0.0.1 0");
  EXPECT_EQ(Parsed("0.0.0.0:9798"), "0.0.0.0 9798");
  EXPECT_EQ(Parsed("localhost:9798"), "localhost 9798");
  EXPECT_EQ(Parsed("[::1]:9798"), "v6 ::1 9798");
  EXPECT_EQ(Parsed("[::]:9798"), "v6 :: 9798");
}

TEST(HttpListenAddress, RejectsMalformed) {
  for (const char* bad :
       {"", "9798", ":", "host:", ":99999", ":-1", ":97a8", "::1:9798", "[::1]9798", "[::1]",
        "[zz]:1", "a,b:1", "a b:1", "h:1s", "[]:1", "[::1:9798", "[1.2.3.4]:1"}) {
    EXPECT_THAT(Parsed(bad), HasSubstr("error: invalid listen address")) << bad;
  }
  EXPECT_THAT(Parsed("::1:9798"), HasSubstr("needs brackets"));
}

TEST_F(HttpServerTest, StartReportsTheBoundPort) {
  StartServer();
  EXPECT_EQ(server_->listening(),
            std::vector<std::string>{"127.0.0.1:" + std::to_string(server_->port())});
  EXPECT_EQ(Get("/-/healthy").status, 200);
  server_->Stop();
  server_->Stop();  // idempotent
  EXPECT_FALSE(Get("/-/healthy").ok());
}

TEST_F(HttpServerTest, StartFailsWhenThePortIsTaken) {
  StartServer();
  HttpServer second("127.0.0.1:" + std::to_string(server_->port()), daemon_, log_, false);
  std::string error = second.Start();
  EXPECT_THAT(error, HasSubstr("Address already in use"));
  EXPECT_THAT(error, HasSubstr("127.0.0.1:" + std::to_string(server_->port())));
}

TEST_F(HttpServerTest, StartFailsOnABadAddress) {
  HttpServer bad("no-port-here", daemon_, log_, false);
  EXPECT_THAT(bad.Start(), HasSubstr("invalid listen address"));
  HttpServer unresolvable("host.invalid:0", daemon_, log_, false);
  EXPECT_THAT(unresolvable.Start(), HasSubstr("host.invalid:0"));
}

TEST_F(HttpServerTest, ListensOnAllInterfacesAndLocalhost) {
  HttpServer any(":0", daemon_, log_, false);
  ASSERT_EQ(any.Start(), "");
  EXPECT_EQ(HttpGet(kHost, any.port(), "/-/ready").status, 200);
  HttpServer local("localhost:0", daemon_, log_, false);
  ASSERT_EQ(local.Start(), "");
  EXPECT_EQ(HttpGet(kHost, local.port(), "/-/ready").status, 200);
}

// --- /metrics ------------------------------------------------------------------

TEST_F(HttpServerTest, MetricsAreGzippedWhenTheScraperAsks) {
  StartServer();
  const std::string plain = Get("/metrics").body;
  for (const char* accept : {"gzip", "deflate, gzip;q=0.5", "*", "GZIP"}) {
    HttpResponse r = HttpRequest(kHost, server_->port(), "GET", "/metrics", "",
                                 std::chrono::seconds(10), {std::string("Accept-Encoding: ") + accept});
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.Header("Content-Encoding"), "gzip") << accept;
    bool ok = false;
    std::string body = testing::Gunzip(r.body, &ok);
    EXPECT_TRUE(ok) << accept << ": not a complete gzip stream";
    auto cut = [](const std::string& text) { return text.substr(0, text.find("# HELP process_")); };
    EXPECT_EQ(cut(body), cut(plain)) << accept;
  }
  for (const char* accept : {"identity", "gzip;q=0", "br", "*;q=0"}) {
    HttpResponse r = HttpRequest(kHost, server_->port(), "GET", "/metrics", "",
                                 std::chrono::seconds(10), {std::string("Accept-Encoding: ") + accept});
    EXPECT_FALSE(r.HasHeader("Content-Encoding")) << accept;
    EXPECT_NE(r.body.find("connwatch_target_up"), std::string::npos) << accept;
  }
}

TEST_F(HttpServerTest, MetricsServesTheExposition) {
  StartServer();
  HttpResponse r = Get("/metrics");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  // Streamed: chunked, no length known up front (the client decoded the chunks).
  EXPECT_EQ(r.Header("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(r.HasHeader("Content-Length"));
  EXPECT_FALSE(r.HasHeader("Content-Encoding"));
  {
    // The streamed body is the rendered exposition (process_* aside: it moves).
    auto cut = [](const std::string& text) { return text.substr(0, text.find("# HELP process_")); };
    EXPECT_EQ(cut(r.body), cut(RenderMetrics(*daemon_.GetSnapshot())));
  }
  // Exactly one Date header, in the IMF-fixdate form.
  int dates = 0;
  for (const auto& [name, value] : r.headers) dates += strcasecmp(name.c_str(), "Date") == 0;
  EXPECT_EQ(dates, 1);
  EXPECT_THAT(r.Header("Date"),
              ::testing::MatchesRegex("[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
                                      "[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"));
  EXPECT_THAT(r.body, HasSubstr("connwatch_target_up{target=\"redis\"} 1\n"));
  EXPECT_THAT(r.body, HasSubstr("connwatch_target_connect_failures_total{target=\"db\","
                                "reason=\"refused\"} 5\n"));
  EXPECT_THAT(r.body, HasSubstr("connwatch_targets{state=\"resolving\"} 0\n"));
  EXPECT_THAT(r.body, HasSubstr("process_open_fds "));
  ExpectPromtoolAccepts(r.body);
}

TEST_F(HttpServerTest, MetricsHeadHasNoBody) {
  StartServer();
  HttpResponse r = Request("HEAD", "/metrics");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
}

TEST_F(HttpServerTest, NullSnapshotIsServiceUnavailable) {
  StartServer();
  daemon_.set_snapshot(nullptr);
  EXPECT_EQ(Get("/metrics").status, 503);
  Json j = GetJson("/api/v1/targets", 503);
  EXPECT_EQ(j["status"], "error");
  EXPECT_TRUE(j["error"].is_string());
  // What does not need the loop still answers.
  EXPECT_EQ(Get("/api/v1/events").status, 200);
  // The status page shows targets: it says it cannot.
  HttpResponse page = Get("/");
  EXPECT_EQ(page.status, 503);
  EXPECT_THAT(page.body, HasSubstr("snapshot unavailable"));
}

// --- Status page, health, readiness --------------------------------------------

TEST_F(HttpServerTest, StatusPageShowsTargetsAndLinksEverything) {
  StartServer();
  HttpResponse r = Get("/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Content-Type"), "text/html; charset=utf-8");
  // Relative links only (a path prefix, TLS and auth keep working).
  for (const char* link : {"metrics", "api/v1/targets", "api/v1/events", "-/healthy", "-/ready"}) {
    EXPECT_THAT(r.body, HasSubstr(std::string("href=\"") + link + "\"")) << link;
  }
  EXPECT_THAT(r.body, HasSubstr("1 of 3 up, 2 down (backoff 1, connecting 1)"));
  EXPECT_THAT(r.body, HasSubstr("<td class=\"name\">db</td>"));
  EXPECT_THAT(r.body, HasSubstr("<span class=\"reason\">refused</span> (ECONNREFUSED)"));
  EXPECT_THAT(r.body, HasSubstr("fetch("));  // the live refresh is embedded
  EXPECT_EQ(r.body.find("src=\"http"), std::string::npos);  // nothing from elsewhere

  HttpResponse filtered = Get("/?q=env%3Dprod");
  EXPECT_THAT(filtered.body, HasSubstr("<td class=\"name\">redis</td>"));
  EXPECT_EQ(filtered.body.find("<td class=\"name\">db</td>"), std::string::npos);
  EXPECT_EQ(Get("/?state=sideways").status, 400);
  EXPECT_EQ(Get("/?offset=x").status, 400);
}

TEST_F(HttpServerTest, CompactTargetsAreOnePageWithTheSummary) {
  StartServer();
  Json j = GetJson("/api/v1/targets?compact=1&limit=2", 200);
  ASSERT_EQ(j["status"], "success") << j.dump();
  const Json& d = j["data"];
  EXPECT_EQ(d["total"], 3);
  EXPECT_EQ(d["up"], 1);
  EXPECT_EQ(d["matched"], 3);
  EXPECT_EQ(d["by_state"]["backoff"], 1);
  ASSERT_EQ(d["targets"].size(), 2u);
  // Down first: db (backoff), hb (connecting); redis is on the next page.
  EXPECT_EQ(d["targets"][0]["name"], "db");
  EXPECT_EQ(d["targets"][0]["failure"]["reason"], "refused");
  EXPECT_EQ(d["targets"][0]["failure"]["errno"], "ECONNREFUSED");
  EXPECT_EQ(d["targets"][1]["name"], "hb");
  EXPECT_EQ(d["targets"][0]["strip"].get<std::string>().size(), 60u);
  Json next = GetJson("/api/v1/targets?compact=1&limit=2&offset=2", 200);
  ASSERT_EQ(next["data"]["targets"].size(), 1u);
  EXPECT_EQ(next["data"]["targets"][0]["name"], "redis");
  EXPECT_EQ(GetJson("/api/v1/targets?compact=1&state=down", 200)["data"]["matched"], 2);
  EXPECT_EQ(GetJson("/api/v1/targets?compact=1&limit=1001", 400)["errorType"], "bad_data");
  EXPECT_EQ(GetJson("/api/v1/targets?compact=maybe", 400)["errorType"], "bad_data");
}

TEST_F(HttpServerTest, HealthyAndReadyFollowTheDaemon) {
  StartServer();
  HttpResponse healthy = Get("/-/healthy");
  EXPECT_EQ(healthy.status, 200);
  EXPECT_EQ(healthy.body, "OK");
  EXPECT_EQ(healthy.Header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(Get("/-/ready").status, 200);
  EXPECT_EQ(Get("/-/ready").body, "OK");

  daemon_.healthy = false;
  EXPECT_EQ(Get("/-/healthy").status, 503);
  EXPECT_EQ(Get("/-/ready").status, 200);
  daemon_.ready = false;
  EXPECT_EQ(Get("/-/ready").status, 503);
  daemon_.healthy = true;
  EXPECT_EQ(Get("/-/healthy").status, 200);
}

// --- Lifecycle -----------------------------------------------------------------

TEST_F(HttpServerTest, ReloadIsForbiddenWithoutLifecycle) {
  StartServer(/*lifecycle=*/false);
  HttpResponse r = HttpPost(kHost, server_->port(), "/-/reload");
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("Lifecycle API is not enabled."));
  EXPECT_EQ(Request("PUT", "/-/reload").status, 403);
  EXPECT_EQ(daemon_.reloads.load(), 0);
}

TEST_F(HttpServerTest, ReloadWithLifecycle) {
  StartServer(/*lifecycle=*/true);
  HttpResponse r = HttpPost(kHost, server_->port(), "/-/reload", "ignored body");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(daemon_.reloads.load(), 1);
  EXPECT_EQ(Request("PUT", "/-/reload").status, 200);
  EXPECT_EQ(daemon_.reloads.load(), 2);

  daemon_.set_reload_errors({"a.yaml:3:5: targets[0].address: missing port",
                             "a.yaml:9:1: targets[1]: duplicate name \"x\""});
  r = HttpPost(kHost, server_->port(), "/-/reload");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body,
            "a.yaml:3:5: targets[0].address: missing port\n"
            "a.yaml:9:1: targets[1]: duplicate name \"x\"\n");
  EXPECT_EQ(daemon_.reloads.load(), 3);
}

TEST_F(HttpServerTest, ReloadNeedsPostOrPut) {
  for (bool lifecycle : {false, true}) {
    StartServer(lifecycle);
    HttpResponse r = Get("/-/reload");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.Header("Allow"), "POST, PUT");
    EXPECT_EQ(Request("DELETE", "/-/reload").status, 405);
    EXPECT_EQ(daemon_.reloads.load(), 0);
  }
}

// --- Routing ---------------------------------------------------------------------

TEST_F(HttpServerTest, UnknownPathsAndWrongMethods) {
  StartServer();
  for (const char* path : {"/nope", "/metrics/", "/api/v1", "/api/v1/targets/x", "/-/", "/-"}) {
    EXPECT_EQ(Get(path).status, 404) << path;
  }
  for (const char* path :
       {"/", "/metrics", "/-/healthy", "/-/ready", "/api/v1/targets", "/api/v1/events"}) {
    HttpResponse r = HttpPost(kHost, server_->port(), path);
    EXPECT_EQ(r.status, 405) << path;
    EXPECT_EQ(r.Header("Allow"), "GET, HEAD") << path;
    EXPECT_EQ(Request("DELETE", path).status, 405) << path;
  }
}

// --- /api/v1/targets ------------------------------------------------------------

TEST_F(HttpServerTest, TargetsJson) {
  StartServer();
  Json j = GetJson("/api/v1/targets");
  EXPECT_EQ(j["status"], "success");
  const Json& targets = j["data"]["targets"];
  ASSERT_EQ(targets.size(), 3u);

  const Json& redis = targets[0];
  EXPECT_EQ(redis["name"], "redis");
  EXPECT_EQ(redis["address"], "10.0.0.5:6379");
  EXPECT_EQ(redis["resolved_address"], "10.0.0.5:6379");
  EXPECT_EQ(redis["labels"], (Json{{"env", "prod"}, {"team", "cache"}}));
  EXPECT_EQ(redis["state"], "up");
  EXPECT_EQ(redis["up"], true);
  EXPECT_EQ(redis["since"], "2024-05-01T12:50:00.125Z");
  EXPECT_EQ(redis["last_event"], (Json{{"kind", "connect"},
                                       {"reason", nullptr},
                                       {"errno", nullptr},
                                       {"detected_by", nullptr},
                                       {"time", "2024-05-01T12:50:00.125Z"}}));
  EXPECT_EQ(redis["connects"], 4);
  EXPECT_EQ(redis["connect_failures"], (Json{{"refused", 3}}));
  EXPECT_EQ(redis["disconnects"], (Json{{"peer_reset", 2}}));
  EXPECT_EQ(redis["icmp_errors"], (Json{{"host_unreachable", 1}}));
  EXPECT_EQ(redis["rtt_seconds"], 0.000421);
  EXPECT_EQ(redis["retransmits"], 17);
  EXPECT_TRUE(redis["heartbeat_seconds"].is_null());

  const Json& db = targets[1];
  EXPECT_EQ(db["state"], "backoff");
  EXPECT_EQ(db["up"], false);
  EXPECT_TRUE(db["resolved_address"].is_null());
  EXPECT_EQ(db["labels"], (Json{{"env", "staging"}}));
  EXPECT_EQ(db["last_event"], (Json{{"kind", "connect_failure"},
                                    {"reason", "refused"},
                                    {"errno", "ECONNREFUSED"},
                                    {"detected_by", nullptr},
                                    {"time", "2024-05-01T12:50:50.000Z"}}));
  EXPECT_EQ(db["disconnects"], Json::object());
  EXPECT_TRUE(db["rtt_seconds"].is_null());

  const Json& hb = targets[2];
  EXPECT_EQ(hb["state"], "connecting");
  EXPECT_EQ(hb["labels"], Json::object());
  EXPECT_TRUE(hb["last_event"].is_null());
  EXPECT_EQ(hb["heartbeat_seconds"], 0.0021);
  EXPECT_TRUE(hb["idle_cutoff_seconds"].is_null());

  // Every target has the same keys.
  std::vector<std::string> keys = {
      "name",        "address",     "resolved_address", "endpoint",    "srv",
      "labels",      "state",
      "up",          "since",       "last_event",       "connects",    "connect_failures",
      "disconnects", "icmp_errors", "rtt_seconds",      "retransmits", "heartbeat_seconds",
      "idle_cutoff_seconds", "canary", "tls"};
  for (const Json& t : targets) {
    EXPECT_EQ(t.size(), keys.size());
    for (const std::string& k : keys) EXPECT_TRUE(t.contains(k)) << k;
  }
}

TEST_F(HttpServerTest, TargetsFilters) {
  StartServer();
  Json up = GetJson("/api/v1/targets?state=up");
  ASSERT_EQ(up["data"]["targets"].size(), 1u);
  EXPECT_EQ(up["data"]["targets"][0]["name"], "redis");
  EXPECT_EQ(GetJson("/api/v1/targets?state=resolving")["data"]["targets"].size(), 0u);

  Json one = GetJson("/api/v1/targets?target=db");
  ASSERT_EQ(one["data"]["targets"].size(), 1u);
  EXPECT_EQ(one["data"]["targets"][0]["name"], "db");
  EXPECT_EQ(GetJson("/api/v1/targets?target=db&state=up")["data"]["targets"].size(), 0u);

  Json missing = GetJson("/api/v1/targets?target=nope", 404);
  EXPECT_EQ(missing["status"], "error");
  EXPECT_THAT(missing["error"].get<std::string>(), HasSubstr("nope"));

  for (const char* bad : {"/api/v1/targets?state=down", "/api/v1/targets?state=",
                          "/api/v1/targets?state=UP", "/api/v1/targets?state"}) {
    Json j = GetJson(bad, 400);
    EXPECT_EQ(j["status"], "error") << bad;
    EXPECT_TRUE(j["error"].is_string()) << bad;
  }
}

TEST_F(HttpServerTest, TargetNamesWithAnyByte) {
  auto s = MakeSnapshot();
  const std::string name = "we\"ird/na&me=\x01\xff \xc3\xa9";
  TargetSnapshot t;
  t.config = MakeConfig(name, "h:1", {{"k", "v\n\"\\"}});
  s->targets.push_back(t);
  daemon_.set_snapshot(s);
  StartServer();

  Json all = GetJson("/api/v1/targets");
  ASSERT_EQ(all["data"]["targets"].size(), 4u);
  EXPECT_EQ(all["data"]["targets"][3]["name"], "we\"ird/na&me=\x01\xEF\xBF\xBD \xc3\xa9");
  EXPECT_EQ(all["data"]["targets"][3]["labels"]["k"], "v\n\"\\");

  // Selected by its URL-encoded name.
  Json one = GetJson("/api/v1/targets?target=we%22ird%2Fna%26me%3D%01%FF+%C3%A9");
  ASSERT_EQ(one["data"]["targets"].size(), 1u);

  // The 404 message echoes the name, still valid JSON.
  GetJson("/api/v1/targets?target=%FF%FE%00x", 404);
  ExpectPromtoolAccepts(Get("/metrics").body);
}

// --- /api/v1/events --------------------------------------------------------------

TEST_F(HttpServerTest, EventsNewestFirst) {
  StartServer();
  Json j = GetJson("/api/v1/events");
  EXPECT_EQ(j["status"], "success");
  const Json& events = j["data"]["events"];
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["seq"], 3);
  EXPECT_EQ(events[1]["seq"], 2);
  EXPECT_EQ(events[2]["seq"], 1);

  const Json& d = events[0];
  EXPECT_EQ(d["time"], "2024-05-01T12:50:50.000Z");
  EXPECT_EQ(d["level"], "warn");
  EXPECT_EQ(d["kind"], "disconnect");
  EXPECT_EQ(d["target"], "redis");
  EXPECT_EQ(d["address"], "10.0.0.5:6379");
  EXPECT_EQ(d["resolved_address"], "10.0.0.5:6379");
  EXPECT_EQ(d["reason"], "peer_reset");
  EXPECT_EQ(d["errno"], "ECONNRESET");
  EXPECT_EQ(d["detected_by"], "zero_send");
  EXPECT_EQ(d["connected_for_seconds"], 49.875);
  EXPECT_TRUE(d["connect_seconds"].is_null());
  EXPECT_EQ(d["tcp"], (Json{{"state", "CLOSE"},
                            {"rtt_seconds", 0.0005},
                            {"retransmits", 2},
                            {"total_retrans", 9},
                            {"probes", 1},
                            {"unacked", 3},
                            {"last_data_recv_seconds", 1.5}}));
  EXPECT_EQ(d["detail"], "reset \"by\" peer\n\x01");

  const Json& f = events[1];
  EXPECT_EQ(f["time"], "2024-05-01T12:50:01.250Z");
  EXPECT_EQ(f["reason"], "refused");
  EXPECT_EQ(f["errno"], "ECONNREFUSED");
  EXPECT_TRUE(f["resolved_address"].is_null());
  EXPECT_TRUE(f["tcp"].is_null());
  EXPECT_TRUE(f["connected_for_seconds"].is_null());
  EXPECT_TRUE(f["detected_by"].is_null());

  const Json& c = events[2];
  EXPECT_EQ(c["kind"], "connect");
  EXPECT_TRUE(c["reason"].is_null());
  EXPECT_TRUE(c["errno"].is_null());
  EXPECT_EQ(c["connect_seconds"], 0.0012);
  EXPECT_EQ(c["tcp"]["state"], "ESTABLISHED");

  std::vector<std::string> keys = {"seq",
                                   "time",
                                   "level",
                                   "kind",
                                   "target",
                                   "address",
                                   "resolved_address",
                                   "endpoint",
                                   "reason",
                                   "errno",
                                   "detected_by",
                                   "connected_for_seconds",
                                   "connect_seconds",
                                   "tls_handshake_seconds",
                                   "close_notify",
                                   "tcp",
                                   "detail"};
  for (const Json& e : events) {
    EXPECT_EQ(e.size(), keys.size());
    for (const std::string& k : keys) EXPECT_TRUE(e.contains(k)) << k;
  }
}

TEST_F(HttpServerTest, EventsLimitAndTarget) {
  StartServer();
  Json one = GetJson("/api/v1/events?limit=1");
  ASSERT_EQ(one["data"]["events"].size(), 1u);
  EXPECT_EQ(one["data"]["events"][0]["seq"], 3);
  EXPECT_EQ(GetJson("/api/v1/events?limit=1000")["data"]["events"].size(), 3u);

  Json redis = GetJson("/api/v1/events?target=redis");
  ASSERT_EQ(redis["data"]["events"].size(), 2u);
  EXPECT_EQ(redis["data"]["events"][0]["seq"], 3);
  EXPECT_EQ(redis["data"]["events"][1]["seq"], 1);
  Json redis_one = GetJson("/api/v1/events?target=redis&limit=1");
  ASSERT_EQ(redis_one["data"]["events"].size(), 1u);
  EXPECT_EQ(redis_one["data"]["events"][0]["seq"], 3);
  // An unknown (perhaps removed) target just has no events.
  EXPECT_EQ(GetJson("/api/v1/events?target=gone")["data"]["events"].size(), 0u);

  for (const char* bad : {"0", "1001", "-1", "abc", "", "1e2", "10x", "99999999999999999999"}) {
    Json j = GetJson(std::string("/api/v1/events?limit=") + bad, 400);
    EXPECT_EQ(j["status"], "error") << bad;
  }
}

TEST_F(HttpServerTest, EventsRingOverflowAndEmpty) {
  EventLog empty(nullptr, LogFormat::kLogfmt, LogLevel::kInfo);
  HttpServer server("127.0.0.1:0", daemon_, empty, false);
  ASSERT_EQ(server.Start(), "");
  HttpResponse r = HttpGet(kHost, server.port(), "/api/v1/events");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Json::parse(r.body)["data"]["events"], Json::array());

  for (int i = 0; i < 1100; ++i) {
    Event e;
    e.kind = "connect";
    e.target = "t" + std::to_string(i % 2);
    empty.Record(e);
  }
  r = HttpGet(kHost, server.port(), "/api/v1/events");
  Json events = Json::parse(r.body)["data"]["events"];
  ASSERT_EQ(events.size(), 1000u);
  EXPECT_EQ(events[0]["seq"], 1100);
  r = HttpGet(kHost, server.port(), "/api/v1/events?target=t1&limit=5");
  events = Json::parse(r.body)["data"]["events"];
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0]["target"], "t1");
}

// --- Robustness --------------------------------------------------------------------

TEST_F(HttpServerTest, SurvivesMalformedRequests) {
  StartServer();
  static constexpr char kNulInPath[] = "GET /me\0trics HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string raws[] = {
      "garbage\r\n\r\n",
      "GET\r\n\r\n",
      "GET /metrics HTTP/9.9\r\n\r\n",
      "GET /metrics\r\n\r\n",
      std::string(kNulInPath, sizeof kNulInPath - 1),
      "GET /%zz%%%0 HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /api/v1/targets?state=%ZZ&&&=&target HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /" + std::string(100000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET / HTTP/1.1\r\nX: " + std::string(100000, 'b') + "\r\n\r\n",
      "POST /-/reload HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
      "POST /-/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // TLS hello
  };
  for (const std::string& raw : raws) {
    std::string error;
    // Any answer, or none, is fine; the server must stay up.
    HttpRaw(kHost, server_->port(), raw, &error, std::chrono::milliseconds(15000));
  }
  // A client that connects and says nothing (cut off after request_timeout_ms).
  std::string error;
  HttpRaw(kHost, server_->port(), "", &error, std::chrono::milliseconds(200));
  EXPECT_EQ(Get("/-/healthy").status, 200);
  EXPECT_EQ(Get("/metrics").status, 200);
}

TEST_F(HttpServerTest, ServesConcurrentClients) {
  StartServer();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  constexpr int kThreads = 8, kRequests = 10;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kRequests; ++k) {
        const char* path = (i + k) % 2 ? "/metrics" : "/api/v1/targets";
        if (HttpGet(kHost, server_->port(), path).status == 200) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kRequests);
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

// A target with addresses: all (or srv) is one document per endpoint, each
// with its endpoint (and SRV record); target=NAME gives every one of them,
// and the status page names the endpoint beside the address.
TEST_F(HttpServerTest, EndpointsAreOneDocumentEach) {
  auto snap = std::make_shared<Snapshot>();
  auto pool = std::make_shared<TargetConfig>();
  pool->name = "kafka";
  pool->srv = "_kafka._tcp.example.org";
  pool->addresses = AddressMode::kAll;
  auto other = std::make_shared<TargetConfig>();
  other->name = "other";
  other->address = "10.0.0.9:80";
  for (int i = 1; i <= 2; ++i) {
    TargetSnapshot& t = snap->targets.emplace_back();
    t.config = pool;
    auto info = std::make_shared<EndpointInfo>();
    info->endpoint = "10.0.0." + std::to_string(i) + ":9092";
    info->srv_host = "broker-" + std::to_string(i) + ".example.org";
    info->priority = 10;
    info->weight = i;
    t.endpoint = info;
    t.name_series = i == 1;
    t.up = true;
    t.state = TargetState::kUp;
  }
  snap->targets.emplace_back().config = other;
  daemon_.set_snapshot(snap);
  StartServer();

  Json j = GetJson("/api/v1/targets?target=kafka");
  const Json& targets = j["data"]["targets"];
  ASSERT_EQ(targets.size(), 2u) << j.dump();
  EXPECT_EQ(targets[0]["name"], "kafka");
  EXPECT_EQ(targets[0]["address"], "_kafka._tcp.example.org");
  EXPECT_EQ(targets[0]["endpoint"], "10.0.0.1:9092");
  EXPECT_EQ(targets[1]["endpoint"], "10.0.0.2:9092");
  EXPECT_EQ(targets[1]["srv"], (Json{{"host", "broker-2.example.org"}, {"priority", 10},
                                     {"weight", 2}}));
  Json all = GetJson("/api/v1/targets");
  ASSERT_EQ(all["data"]["targets"].size(), 3u);
  EXPECT_TRUE(all["data"]["targets"][2]["endpoint"].is_null());
  EXPECT_TRUE(all["data"]["targets"][2]["srv"].is_null());

  const std::string page = Get("/").body;
  EXPECT_NE(page.find("_kafka._tcp.example.org \xE2\x86\x92 10.0.0.2:9092"), std::string::npos)
      << page;
  Json compact = GetJson("/api/v1/targets?compact=1");
  bool seen = false;
  for (const Json& t : compact["data"]["targets"]) seen |= t["endpoint"] == "10.0.0.1:9092";
  EXPECT_TRUE(seen) << compact.dump();

  const std::string metrics = Get("/metrics").body;
  EXPECT_NE(metrics.find("connwatch_target_info{target=\"kafka\",endpoint=\"10.0.0.2:9092\","
                         "address=\"_kafka._tcp.example.org\",priority=\"10\",weight=\"2\"} 1\n"),
            std::string::npos)
      << metrics;
}

}  // namespace
}  // namespace connwatch
