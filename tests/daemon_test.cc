// System tests of the connwatchd binary: flags, start-up, the HTTP surface
// against live targets, reload by SIGHUP and POST, and shutdown by signal.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <cstdio>
#include <regex>

#include "http_client.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::RunProgram;
using testing::RunResult;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;
using testing::WaitFor;

constexpr milliseconds kDeadline{5000};
// For a command to run to its end (generous: sanitizer builds are slow).
constexpr milliseconds kRunTimeout{60000};

TEST(DaemonFlags, VersionPrintsVersionAndRevision) {
  RunResult r = RunProgram({CONNWATCHD_BINARY, "--version"}, kRunTimeout);
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(
      std::regex_search(r.output, std::regex(R"(^connwatchd \d+\.\d+\.\d+ \(revision \S+\))")))
      << r.output;
}

TEST(DaemonFlags, CheckConfigAcceptsTheShippedConfigs) {
  for (const char* file : {"config/demo.yaml", "config/example.yaml"}) {
    RunResult r = RunProgram({CONNWATCHD_BINARY, "--check-config",
                              "--config.file=" + std::string(CONNWATCH_SOURCE_DIR) + "/" + file},
                             kRunTimeout);
    EXPECT_EQ(r.status, 0) << file << ": " << r.output;
    EXPECT_NE(r.output.find("OK"), std::string::npos) << r.output;
  }
}

TEST(DaemonFlags, CheckConfigReportsEveryErrorAndExitsOne) {
  TempDir dir;
  std::string path = dir.Write("bad.yaml",
                               "defaults:\n  connect_timeout: 5x\ntargets:\n"
                               "  - address: \"127.0.0.1:70000\"\n");
  RunResult r =
      RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + path}, kRunTimeout);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(path + ":2:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(path + ":4:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 error(s)"), std::string::npos) << r.output;
}

TEST(DaemonFlags, UnknownFlagAndBadLevelAreRejected) {
  // An exit status that is not 0, and not a signal (128+) or a timeout (-1).
  RunResult r = RunProgram({CONNWATCHD_BINARY, "--no-such-flag"}, kRunTimeout);
  EXPECT_TRUE(r.status > 0 && r.status < 128) << r.status << ": " << r.output;
  r = RunProgram({CONNWATCHD_BINARY, "--log.level=loud", "--check-config"}, kRunTimeout);
  EXPECT_TRUE(r.status > 0 && r.status < 128) << r.status << ": " << r.output;
}

TEST(DaemonFlags, StartWithBadConfigExitsOneWithTheErrors) {
  TempDir dir;
  std::string path = dir.Write("bad.yaml", "targets:\n  - address: \"\"\n");
  Subprocess d({CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + path, "--web.listen-address=127.0.0.1:0"});
  EXPECT_EQ(d.Wait(kDeadline), 1) << d.Output();
  EXPECT_NE(d.Output().find("level=error"), std::string::npos) << d.Output();
}

// A daemon watching one live peer, with its HTTP port read from its log.
class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(peer_.Start(), "");
    config_ = dir_.Write("connwatch.yaml", Config("alpha"));
  }

  std::string Config(const std::string& name) {
    return "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
           "  backoff: {initial: 50ms, max: 200ms}\n"
           "targets:\n  - name: " + name + "\n    address: 127.0.0.1:" +
           std::to_string(peer_.port()) + "\n    labels: {team: storage}\n";
  }

  void Launch(std::vector<std::string> extra = {}, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config_,
                                     "--web.listen-address=127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<Subprocess>(argv, env);
    std::string line = daemon_->WaitForLine("listening", kDeadline);
    ASSERT_FALSE(line.empty()) << "no listening line; output:\n" << daemon_->Output();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex(R"(port"?[=:]"?(\d+))"))) << line;
    port_ = std::stoi(m[1]);
  }

  HttpResponse Get(const std::string& path) { return HttpGet("127.0.0.1", port_, path); }

  bool MetricsContain(const std::string& needle, milliseconds timeout = kDeadline) {
    return WaitFor([&] { return Get("/metrics").body.find(needle) != std::string::npos; }, timeout);
  }

  TempDir dir_;
  TestPeer peer_;
  std::string config_;
  std::unique_ptr<Subprocess> daemon_;
  int port_ = 0;
};

TEST_F(DaemonTest, ServesHealthReadyMetricsAndApi) {
  Launch();
  EXPECT_TRUE(WaitFor([&] { return Get("/-/healthy").status == 200; }, kDeadline));
  EXPECT_TRUE(WaitFor([&] { return Get("/-/ready").status == 200; }, kDeadline));
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"alpha\"} 1"))
      << Get("/metrics").body << daemon_->Output();
  HttpResponse m = Get("/metrics");
  EXPECT_NE(m.body.find("connwatch_target_info{target=\"alpha\",address=\"127.0.0.1:" +
                        std::to_string(peer_.port()) + "\",team=\"storage\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("connwatch_target_connects_total{target=\"alpha\"} 1"), std::string::npos);
  EXPECT_NE(m.body.find("connwatch_targets{state=\"up\"} 1"), std::string::npos);
  EXPECT_NE(m.body.find("process_open_fds "), std::string::npos);
  EXPECT_NE(m.body.find("connwatch_build_info{"), std::string::npos);

  // The real consumer's linter accepts the exposition.
  TempDir tmp;
  std::string file = tmp.Write("metrics.txt", m.body);
  RunResult lint = RunProgram({"/bin/sh", "-c", "promtool check metrics < " + file}, kRunTimeout);
  EXPECT_EQ(lint.status, 0) << lint.output;

  // A reset shows up in the reason series and in the API.
  peer_.ResetAll();
  ASSERT_TRUE(MetricsContain(
      "connwatch_target_disconnects_total{target=\"alpha\",reason=\"peer_reset\"} 1"))
      << Get("/metrics").body;
  HttpResponse api = Get("/api/v1/targets");
  EXPECT_EQ(api.status, 200);
  EXPECT_NE(api.body.find("\"peer_reset\""), std::string::npos) << api.body;
  HttpResponse events = Get("/api/v1/events");
  EXPECT_NE(events.body.find("\"disconnect\""), std::string::npos) << events.body;
  // The event log line carries the contract's fields.
  std::string line = daemon_->WaitForLine("event=disconnect", kDeadline);
  EXPECT_EQ(testing::LogfmtValue(line, "reason"), "peer_reset") << line;
  EXPECT_EQ(testing::LogfmtValue(line, "errno"), "ECONNRESET") << line;
  EXPECT_EQ(testing::LogfmtValue(line, "level"), "warn") << line;
  EXPECT_FALSE(testing::LogfmtValue(line, "connected_for").empty()) << line;
  EXPECT_FALSE(testing::LogfmtValue(line, "rtt").empty()) << line;
}

// The canary through the binary: its series (linted by promtool), its event
// lines in logfmt, and the API's canary object, while the peer's listener is
// closed and its accepted connection kept.
TEST_F(DaemonTest, CanaryFailsBesideAHeldConnectionAndRecovers) {
  config_ = dir_.Write("connwatch.yaml",
                       Config("alpha") + "    canary: {interval: 100ms, timeout: 500ms}\n");
  Launch();
  ASSERT_TRUE(MetricsContain("connwatch_target_canary_up{target=\"alpha\"} 1"))
      << Get("/metrics").body << daemon_->Output();
  ASSERT_TRUE(MetricsContain("connwatch_target_canary_connect_duration_seconds{target=\"alpha\"} "));
  peer_.StopListening();
  std::string line = daemon_->WaitForLine("event=canary_failure", kDeadline);
  ASSERT_FALSE(line.empty()) << daemon_->Output();
  EXPECT_EQ(testing::LogfmtValue(line, "level"), "warn") << line;
  EXPECT_EQ(testing::LogfmtValue(line, "target"), "alpha") << line;
  EXPECT_EQ(testing::LogfmtValue(line, "reason"), "refused") << line;
  EXPECT_EQ(testing::LogfmtValue(line, "errno"), "ECONNREFUSED") << line;
  ASSERT_TRUE(MetricsContain("connwatch_target_canary_up{target=\"alpha\"} 0"));
  HttpResponse m = Get("/metrics");
  EXPECT_NE(m.body.find("connwatch_target_up{target=\"alpha\"} 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("connwatch_target_canary_failures_total{target=\"alpha\",reason=\"refused\"} "),
            std::string::npos)
      << m.body;
  TempDir tmp;
  RunResult lint = RunProgram(
      {"/bin/sh", "-c", "promtool check metrics < " + tmp.Write("metrics.txt", m.body)},
      kRunTimeout);
  EXPECT_EQ(lint.status, 0) << lint.output;
  HttpResponse api = Get("/api/v1/targets");
  EXPECT_NE(api.body.find("\"canary\":{\"interval_seconds\":0.1,\"up\":false"), std::string::npos)
      << api.body;
  ASSERT_EQ(peer_.Listen(), "");
  line = daemon_->WaitForLine("event=canary_recovered", kDeadline);
  ASSERT_FALSE(line.empty()) << daemon_->Output();
  EXPECT_EQ(testing::LogfmtValue(line, "level"), "info") << line;
  EXPECT_TRUE(MetricsContain("connwatch_target_canary_up{target=\"alpha\"} 1"));
  // One line per change: the refused attempts in between logged nothing.
  const std::string out = daemon_->Output();
  size_t failures = 0;
  for (size_t at = out.find("event=canary_failure"); at != std::string::npos;
       at = out.find("event=canary_failure", at + 1)) {
    ++failures;
  }
  EXPECT_EQ(failures, 1u) << out;
}

// connwatch_target_up_seconds_total through /metrics: it grows while the
// target is up, by no more than the time that passed, and stands still while
// the target is down (flaps shorter than a scrape: UpHistoryTest).
TEST_F(DaemonTest, UpSecondsCounterGrowsOnlyWhileUp) {
  const auto started = std::chrono::steady_clock::now();
  Launch();
  auto up_seconds = [&](std::string* body) {
    *body = Get("/metrics").body;
    std::smatch m;
    static const std::regex re(R"(connwatch_target_up_seconds_total\{target="alpha"\} (\S+))");
    return std::regex_search(*body, m, re) ? std::stod(m[1]) : -1.0;
  };
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  std::string body;
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"alpha\"} 1")) << daemon_->Output();
  const double first = up_seconds(&body);
  ASSERT_GE(first, 0) << body;
  EXPECT_LE(first, elapsed());
  double later = first;
  EXPECT_TRUE(WaitFor([&] { return (later = up_seconds(&body)) > first; }, kDeadline))
      << "counter stayed at " << first << ":\n" << body;
  EXPECT_LE(later, elapsed());

  // Down for good: the counter stops, though the daemon keeps trying.
  peer_.StopListening();
  peer_.ResetAll();
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"alpha\"} 0")) << Get("/metrics").body;
  const double at_death = up_seconds(&body);
  ASSERT_TRUE(MetricsContain("connwatch_target_connect_failures_total{target=\"alpha\",reason=\"refused\"} 2"))
      << Get("/metrics").body;
  EXPECT_EQ(up_seconds(&body), at_death) << body;
}

TEST_F(DaemonTest, SighupReloadsAndKeepsTheConnectionOfUnchangedTargets) {
  Launch();
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"alpha\"} 1"));
  // Add a second target; alpha is unchanged.
  dir_.Write("connwatch.yaml", Config("alpha") + "  - name: beta\n    address: 127.0.0.1:" +
                                   std::to_string(peer_.port()) + "\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"beta\"} 1")) << daemon_->Output();
  EXPECT_TRUE(MetricsContain("connwatch_target_connects_total{target=\"alpha\"} 1"));
  EXPECT_TRUE(MetricsContain("connwatch_config_last_reload_successful 1"));
  EXPECT_EQ(peer_.accepted_total(), 2u);
  // A broken file changes nothing and says so.
  dir_.Write("connwatch.yaml", "targets: [unclosed\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(MetricsContain("connwatch_config_last_reload_successful 0")) << daemon_->Output();
  EXPECT_NE(Get("/metrics").body.find("connwatch_target_up{target=\"beta\"} 1"), std::string::npos);
}

TEST_F(DaemonTest, LifecycleReloadOnlyWhenEnabled) {
  Launch();
  EXPECT_EQ(HttpPost("127.0.0.1", port_, "/-/reload", "").status, 403);
  daemon_->Signal(SIGTERM);
  ASSERT_EQ(daemon_->Wait(kDeadline), 0);
  Launch({"--web.enable-lifecycle"});
  EXPECT_EQ(HttpPost("127.0.0.1", port_, "/-/reload", "").status, 200);
  dir_.Write("connwatch.yaml", "targets:\n  - address: \"host:0\"\n");
  HttpResponse bad = HttpPost("127.0.0.1", port_, "/-/reload", "");
  EXPECT_EQ(bad.status, 500);
  EXPECT_NE(bad.body.find("connwatch.yaml:2:"), std::string::npos) << bad.body;
}

TEST_F(DaemonTest, SigtermClosesEveryConnectionWithinTwoSeconds) {
  Launch();
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"alpha\"} 1"));
  const auto start = std::chrono::steady_clock::now();
  daemon_->Signal(SIGTERM);
  EXPECT_EQ(daemon_->Wait(milliseconds(2000)), 0) << daemon_->Output();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  EXPECT_TRUE(peer_.WaitForOpenConnections(0, kDeadline));
  EXPECT_NE(daemon_->Output().find("msg=\"shutting down\" connections_closed=1"), std::string::npos)
      << daemon_->Output();
}

TEST_F(DaemonTest, JsonLogFormatAndJournalPriorities) {
  Launch({"--log.format=json"}, {"JOURNAL_STREAM=8:1234"});
  ASSERT_TRUE(MetricsContain("connwatch_target_up{target=\"alpha\"} 1"));
  peer_.ResetAll();
  std::string line = daemon_->WaitForLine("\"event\":\"disconnect\"", kDeadline);
  ASSERT_FALSE(line.empty()) << daemon_->Output();
  EXPECT_EQ(line.rfind("<4>{", 0), 0u) << "a warning carries syslog priority 4: " << line;
  EXPECT_NE(line.find("\"reason\":\"peer_reset\""), std::string::npos) << line;
  // Numbers are JSON numbers, durations numbers of seconds (issue 17).
  const nlohmann::json j = nlohmann::json::parse(line.substr(3), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_TRUE(j["retrans"].is_number_unsigned()) << line;
  EXPECT_TRUE(j["unacked"].is_number_unsigned()) << line;
  EXPECT_TRUE(j["connected_for"].is_number()) << line;
  const std::string listening = daemon_->WaitForLine("\"msg\":\"listening\"", kDeadline);
  const nlohmann::json l = nlohmann::json::parse(listening.substr(listening.find('{')), nullptr, false);
  ASSERT_FALSE(l.is_discarded()) << listening;
  EXPECT_TRUE(l["port"].is_number_unsigned()) << listening;
}

}  // namespace
}  // namespace connwatch
