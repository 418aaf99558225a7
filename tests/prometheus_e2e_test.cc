// End to end with the real consumer: a Prometheus server (Debian's
// /usr/bin/prometheus) started on loopback with its own data directory
// scrapes connwatchd every second and evaluates the shipped alerting rules.
// The test asks Prometheus's HTTP API, never connwatchd, whether a live
// target is up, whether a killed one goes down with the right disconnect
// reason, whether the alerts load and go pending, and whether every query of
// the Grafana dashboard runs and finds data. A second test scrapes over TLS
// with basic auth (--web.config.file) the way an operator would configure it.

#include <crypt.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "http_client.h"
#include "prometheus_server.h"
#include "test_peer.h"
#include "test_util.h"
#include "tls_fixtures.h"

namespace connwatch {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;
using testing::UrlEncode;
using testing::WaitFor;

constexpr const char* kPrometheus = testing::kPrometheusBinary;
constexpr milliseconds kStartDeadline{20000};
constexpr milliseconds kDeadline{20000};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class PrometheusE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kPrometheus, X_OK), 0)
        << kPrometheus << " is missing: run scripts/setup.sh (it installs Debian's prometheus)";
  }
  void TearDown() override {
    if (HasFailure()) {
      if (prometheus_.started()) std::cerr << "--- prometheus output:\n" << prometheus_.Output();
      if (daemon_) std::cerr << "--- connwatchd output:\n" << daemon_->Output();
    }
    // Killed even when an assertion failed (the destructors send SIGKILL).
    prometheus_ = testing::PrometheusServer();
    daemon_.reset();
  }

  // Starts connwatchd on `config` with `extra` flags; returns its port.
  int StartDaemon(const std::string& config, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config,
                                     "--web.listen-address=127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<Subprocess>(argv);
    std::string line = daemon_->WaitForLine("msg=listening", milliseconds(5000));
    if (line.empty()) return 0;
    return std::stoi(testing::LogfmtValue(line, "port"));
  }

  // Starts Prometheus with `scrape_config` (one job, YAML indented for the
  // scrape_configs list) and the shipped rules; waits until it is ready.
  void StartPrometheus(const std::string& scrape_config) {
    const std::string rules =
        std::string(CONNWATCH_SOURCE_DIR) + "/packaging/prometheus/connwatch-rules.yml";
    const std::string config = dir_.Write("prometheus.yml",
                                          "global:\n"
                                          "  scrape_interval: 1s\n"
                                          "  scrape_timeout: 1s\n"
                                          "  evaluation_interval: 1s\n"
                                          "rule_files:\n"
                                          "  - " +
                                              rules +
                                              "\n"
                                              "scrape_configs:\n" +
                                              scrape_config);
    const std::string why = prometheus_.Start(config, dir_.path(), kStartDeadline);
    if (!why.empty()) FAIL() << why;
  }

  Json Api(const std::string& path) { return prometheus_.Api(path); }
  Json Query(const std::string& promql) { return prometheus_.Query(promql); }
  size_t ResultCount(const std::string& promql) {
    Json r = Query(promql);
    return r.is_array() ? r.size() : 0;
  }
  // Polls until `promql` has at least one result; fails with the last answer.
  void ExpectEventually(const std::string& promql) {
    bool ok = WaitFor([&] { return ResultCount(promql) > 0; }, kDeadline);
    EXPECT_TRUE(ok) << "no result within " << kDeadline.count() << " ms for: " << promql
                    << "\nlast answer: " << Api("query?query=" + UrlEncode(promql)).dump();
  }

  TempDir dir_;
  std::unique_ptr<Subprocess> daemon_;
  testing::PrometheusServer prometheus_;
};

// Every PromQL expression of the Grafana dashboard (panels, annotations;
// template variables as `group by (label) (series)`), with Grafana's
// variables replaced by what "All" and a 1-minute step would give.
struct DashboardQuery {
  std::string where;
  std::string expr;
  bool panel;  // panels must find data; annotations and variables may not.
};

void CollectDashboard(const Json& j, const std::string& where, std::vector<DashboardQuery>* out) {
  if (j.is_object()) {
    std::string here = j.contains("title") && j["title"].is_string() ? j["title"].get<std::string>()
                       : j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>()
                                                                     : where;
    if (j.contains("expr") && j["expr"].is_string()) {
      bool annotation = j.contains("iconColor");
      out->push_back({here, j["expr"].get<std::string>(), !annotation});
    }
    if (j.value("type", "") == "query" && j.contains("definition")) {
      static const std::regex kLabelValues(R"(^label_values\((.*),\s*(\w+)\)$)");
      std::smatch m;
      std::string def = j["definition"].get<std::string>();
      if (std::regex_match(def, m, kLabelValues)) {
        out->push_back(
            {"variable " + here, "group by (" + m[2].str() + ") (" + m[1].str() + ")", false});
      }
    }
    for (const auto& [key, value] : j.items()) {
      if (key != "expr") CollectDashboard(value, here, out);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) CollectDashboard(v, where, out);
  }
}

std::string SubstituteGrafanaVariables(std::string expr) {
  static const std::pair<std::regex, std::string> kRules[] = {
      {std::regex(R"(\$__rate_interval|\$__interval)"), "1m"},
      {std::regex(R"(\$__range)"), "5m"},
      {std::regex(R"(\$\{?(job|instance|target)\}?)"), ".*"},
  };
  for (const auto& [re, value] : kRules) expr = std::regex_replace(expr, re, value);
  return expr;
}

TEST_F(PrometheusE2E, ScrapesTargetsAlertsAndDashboardQueries) {
  TestPeer doomed, steady;
  ASSERT_EQ(doomed.Start(), "");
  ASSERT_EQ(steady.Start(), "");
  // A TLS target too, so that the dashboard's certificate panels have data.
  TempDir certs_dir;
  testing::TlsFixtures certs(certs_dir);
  ASSERT_TRUE(certs.ok()) << certs.error();
  testing::PeerOptions tls_opts;
  tls_opts.tls_cert_file = certs.Path("server.crt");
  tls_opts.tls_key_file = certs.Path("server.key");
  TestPeer secure(tls_opts);
  ASSERT_EQ(secure.Start(), "");
  const std::string config = dir_.Write("connwatch.yaml",
                                        "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
                                        "  backoff: {initial: 100ms, max: 500ms}\n"
                                        "targets:\n"
                                        "  - name: doomed\n    address: 127.0.0.1:" +
                                            std::to_string(doomed.port()) +
                                            "\n    labels: {team: storage}\n"
                                            "  - name: steady\n    address: 127.0.0.1:" +
                                            std::to_string(steady.port()) + "\n" +
                                            "  - name: secure\n    address: 127.0.0.1:" +
                                            std::to_string(secure.port()) +
                                            "\n    tls: {ca_file: \"" + certs.Path("ca.crt") +
                                            "\"}\n");
  const int port = StartDaemon(config);
  ASSERT_GT(port, 0) << daemon_->Output();
  StartPrometheus(
      "  - job_name: connwatch\n"
      "    static_configs:\n"
      "      - targets: ['127.0.0.1:" +
      std::to_string(port) + "']\n");
  if (HasFatalFailure()) return;

  ExpectEventually("up{job=\"connwatch\"} == 1");
  ExpectEventually("connwatch_target_up{job=\"connwatch\",target=\"doomed\"} == 1");
  ExpectEventually("connwatch_target_up{job=\"connwatch\",target=\"steady\"} == 1");
  ExpectEventually("connwatch_target_info{target=\"doomed\",team=\"storage\"}");
  EXPECT_EQ(ResultCount("connwatch_target_disconnects_total{target=\"doomed\"}"), 0u);

  // Every shipped rule loads and evaluates without error.
  bool rules_ok = WaitFor(
      [&] {
        Json j = Api("rules");
        if (!j.is_object() || j.value("status", "") != "success") return false;
        size_t ok = 0;
        for (const auto& group : j["data"]["groups"]) {
          for (const auto& rule : group["rules"]) ok += rule.value("health", "") == "ok";
        }
        return ok == 12;
      },
      kDeadline);
  EXPECT_TRUE(rules_ok) << Api("rules").dump(2);

  // Kill the peer for good: refuse new connections, reset the one it holds.
  doomed.StopListening();
  doomed.ResetAll();
  ExpectEventually("connwatch_target_up{job=\"connwatch\",target=\"doomed\"} == 0");
  ExpectEventually(
      "connwatch_target_disconnects_total{job=\"connwatch\",target=\"doomed\",reason=\"peer_"
      "reset\"}"
      " >= 1");
  ExpectEventually(
      "connwatch_target_connect_failures_total{target=\"doomed\",reason=\"refused\"} >= 1");
  ExpectEventually(
      "ALERTS{alertname=\"ConnwatchTargetDown\",target=\"doomed\",alertstate=\"pending\"}");
  EXPECT_EQ(
      ResultCount("connwatch_target_disconnects_total{target=\"doomed\",reason!=\"peer_reset\"}"),
      0u);
  EXPECT_EQ(ResultCount("connwatch_target_up{target=\"steady\"} == 1"), 1u);
  EXPECT_EQ(ResultCount("ALERTS{target=\"steady\"}"), 0u);

  // The dashboard's queries run on real data, and every panel finds some
  // (the heartbeat panel needs a heartbeat target, which this config lacks;
  // a panel filtered with "> 0" on increase() is empty until a counter
  // series grows after its first sample).
  const Json dashboard =
      Json::parse(ReadFile(std::string(CONNWATCH_SOURCE_DIR) + "/packaging/grafana/connwatch.json"),
                  nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded());
  std::vector<DashboardQuery> queries;
  CollectDashboard(dashboard, "dashboard", &queries);
  ASSERT_GE(queries.size(), 30u);
  std::vector<std::string> failing;
  WaitFor(
      [&] {
        failing.clear();
        for (const DashboardQuery& q : queries) {
          Json result = Query(SubstituteGrafanaVariables(q.expr));
          // (the TLS connect failures: none happen here.)
          const bool may_be_empty = !q.panel || q.expr.find("heartbeat") != std::string::npos ||
                                    q.expr.find(") > 0") != std::string::npos ||
                                    q.expr.find("tls_handshake|tls_verify") != std::string::npos;
          if (result.is_null()) {
            failing.push_back(q.where + ": query failed: " + q.expr);
          } else if (result.empty() && !may_be_empty) {
            failing.push_back(q.where + ": no data: " + q.expr);
          }
        }
        return failing.empty();
      },
      kDeadline);
  std::string list;
  for (const std::string& f : failing) list += "\n  " + f;
  EXPECT_TRUE(failing.empty()) << list;
}

// Prometheus scrapes connwatchd over TLS with basic auth, as configured by
// --web.config.file; a job without the password gets 401 and is down.
TEST_F(PrometheusE2E, ScrapesOverTlsWithBasicAuth) {
  int status = system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                       "-nodes -days 2 -subj /CN=connwatch-e2e "
                       "-addext subjectAltName=IP:127.0.0.1 -keyout " +
                       dir_.path() + "/tls.key -out " + dir_.path() + "/tls.crt 2>/dev/null")
                          .c_str());
  ASSERT_EQ(status, 0)
      << "openssl req failed: is the openssl command installed (scripts/setup.sh)?";
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  ASSERT_NE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt), nullptr);
  crypt_data data;
  std::memset(&data, 0, sizeof data);
  const std::string hash = crypt_r("scrape-secret", salt, &data);
  const std::string web = dir_.Write("web.yml",
                                     "tls_server_config:\n  cert_file: tls.crt\n"
                                     "  key_file: tls.key\n"
                                     "basic_auth_users:\n  prometheus: " +
                                         hash + "\n");
  TestPeer peer;
  ASSERT_EQ(peer.Start(), "");
  const std::string config =
      dir_.Write("connwatch.yaml",
                 "defaults: {startup_jitter: 0s}\ntargets:\n  - name: alpha\n"
                 "    address: 127.0.0.1:" +
                     std::to_string(peer.port()) + "\n");
  const int port = StartDaemon(config, {"--web.config.file=" + web});
  ASSERT_GT(port, 0) << daemon_->Output();
  const std::string target = "127.0.0.1:" + std::to_string(port);
  dir_.Write("password", "scrape-secret");
  StartPrometheus(
      "  - job_name: connwatch\n"
      "    scheme: https\n"
      "    tls_config:\n      ca_file: " +
      dir_.path() +
      "/tls.crt\n"
      "    basic_auth:\n      username: prometheus\n"
      "      password_file: " +
      dir_.path() +
      "/password\n"
      "    static_configs:\n      - targets: ['" +
      target +
      "']\n"
      "  - job_name: no-password\n"
      "    scheme: https\n"
      "    tls_config:\n      ca_file: " +
      dir_.path() +
      "/tls.crt\n"
      "    static_configs:\n      - targets: ['" +
      target +
      "']\n"
      "  - job_name: plain-http\n"
      "    static_configs:\n      - targets: ['" +
      target + "']\n");
  if (HasFatalFailure()) return;
  ExpectEventually("up{job=\"connwatch\"} == 1");
  ExpectEventually("connwatch_target_up{job=\"connwatch\",target=\"alpha\"} == 1");
  ExpectEventually("up{job=\"no-password\"} == 0");
  ExpectEventually("up{job=\"plain-http\"} == 0");
  Json targets = Api("targets");
  std::string errors;
  for (const auto& t : targets["data"]["activeTargets"]) {
    errors += t["labels"]["job"].get<std::string>() + ": " + t.value("lastError", "") + "\n";
  }
  EXPECT_NE(errors.find("no-password: server returned HTTP status 401"), std::string::npos)
      << errors;
}

}  // namespace
}  // namespace connwatch
