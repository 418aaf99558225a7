// connwatchctl against the real connwatchd and the test peer, on 127.0.0.1
// ports the kernel picks: status (0 up, 2 after the peer goes away, 3 without
// a daemon), events --follow (a new disconnect, then Ctrl-C exits 0),
// reload, check-config (the daemon's check, the same output), and TLS with
// basic auth by --web.config.file.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <regex>

#include "test_peer.h"
#include "test_util.h"
#include "tls_fixtures.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::BcryptHash;
using testing::RunProgram;
using testing::RunResult;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;
using testing::TlsFixtures;
using testing::WaitFor;

constexpr milliseconds kDeadline{10000};
constexpr milliseconds kRunTimeout{60000};

RunResult Ctl(std::vector<std::string> args) {
  args.insert(args.begin(), CONNWATCHCTL_BINARY);
  return RunProgram(args, kRunTimeout);
}

class CtlDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(peer_.Start(), ""); }

  std::string Config(const std::vector<std::string>& names) {
    std::string c = "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
                    "  backoff: {initial: 50ms, max: 200ms}\ntargets:\n";
    for (const auto& n : names) {
      c += "  - name: " + n + "\n    address: 127.0.0.1:" + std::to_string(peer_.port()) + "\n";
    }
    return c;
  }

  void Launch(const std::vector<std::string>& names, std::vector<std::string> extra = {},
              const std::string& port = "0") {
    config_ = dir_.Write("connwatch.yaml", Config(names));
    std::vector<std::string> argv = {CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config_,
                                     "--web.listen-address=127.0.0.1:" + port};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<Subprocess>(argv);
    std::string line = daemon_->WaitForLine("listening", kDeadline);
    ASSERT_FALSE(line.empty()) << "no listening line; output:\n" << daemon_->Output();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex(R"(port"?[=:]"?(\d+))"))) << line;
    url_ = "--web.url=http://127.0.0.1:" + m[1].str();
    port_ = m[1].str();
  }

  // Runs `connwatchctl status` until it exits `want`; the last run.
  RunResult StatusUntil(int want, std::vector<std::string> args = {}) {
    args.insert(args.begin(), {url_, "status"});
    RunResult r;
    WaitFor([&] { return (r = Ctl(args)).status == want; }, kDeadline);
    return r;
  }

  TempDir dir_;
  TestPeer peer_;
  std::string config_;
  std::unique_ptr<Subprocess> daemon_;
  std::string url_, port_;
};

TEST_F(CtlDaemonTest, StatusIsZeroWhenUpAndTwoWhenATargetGoesDown) {
  Launch({"alpha", "beta"});
  RunResult r = StatusUntil(0);
  ASSERT_EQ(r.status, 0) << r.output << daemon_->Output();
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nalpha +up +[0-9a-z]+ +127\.0\.0\.1:)")))
      << r.output;
  EXPECT_NE(r.output.find("2 of 2 up"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("\033["), std::string::npos) << "colour on a pipe: " << r.output;

  // The peer goes away: both connections reset, reconnects refused.
  peer_.StopListening();
  peer_.ResetAll();
  r = StatusUntil(2);
  ASSERT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nalpha +(backoff|connecting) )")))
      << r.output;
  EXPECT_NE(r.output.find("0 of 2 up; not up: alpha, beta"), std::string::npos) << r.output;
  r = Ctl({url_, "status", "beta"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(r.output.find("alpha"), std::string::npos) << r.output;

  r = Ctl({url_, "status", "alpha", "gamma"});
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("no target named gamma"), std::string::npos) << r.output;
}

TEST(CtlNoDaemon, StatusAgainstAClosedPortIsThree) {
  // A port bound here and never listened on: connects to it are refused.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string url = "--web.url=http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  for (const char* command : {"status", "events", "reload"}) {
    RunResult r = Ctl({url, command});
    EXPECT_EQ(r.status, 3) << command << ": " << r.output;
    EXPECT_NE(r.output.find("cannot reach connwatchd"), std::string::npos) << r.output;
  }
  close(fd);
}

TEST_F(CtlDaemonTest, EventsFollowShowsANewDisconnectAndCtrlCExitsZero) {
  Launch({"alpha"});
  ASSERT_EQ(StatusUntil(0).status, 0);
  Subprocess follow({CONNWATCHCTL_BINARY, url_, "events", "--follow", "--target", "alpha"});
  // The listed connect first, then (from the stream) the reset.
  ASSERT_NE(follow.WaitForLine("info   connect  ", kDeadline), "") << follow.Output();
  ASSERT_TRUE(WaitFor([&] { return peer_.open_connections() == 1; }, kDeadline));
  // No wait for the stream to open: it resumes after the last event listed
  // (Last-Event-ID), so a reset between the list and the stream is not lost.
  peer_.ResetAll();
  std::string line = follow.WaitForLine("peer_reset", kDeadline);
  EXPECT_NE(line.find("disconnect"), std::string::npos) << follow.Output();
  EXPECT_NE(line.find("alpha"), std::string::npos) << line;
  follow.Signal(SIGINT);
  EXPECT_EQ(follow.Wait(kDeadline), 0) << follow.Output();
}

// The daemon stops and starts again on the same port: the follower says so
// on stderr, keeps trying, and shows the new daemon's events.
TEST_F(CtlDaemonTest, EventsFollowOutlivesADaemonRestart) {
  Launch({"alpha"});
  ASSERT_EQ(StatusUntil(0).status, 0);
  Subprocess follow({CONNWATCHCTL_BINARY, url_, "events", "--follow"});
  ASSERT_NE(follow.WaitForLine("info   connect  ", kDeadline), "") << follow.Output();
  const size_t listed = follow.line_count();
  daemon_->Signal(SIGTERM);
  ASSERT_EQ(daemon_->Wait(kDeadline), 0) << daemon_->Output();
  ASSERT_NE(follow.WaitForLine("connwatchctl: ", kDeadline, listed), "") << follow.Output();
  Launch({"alpha"}, {}, port_);
  // The new daemon numbers its events from 1 again: its connect of alpha.
  EXPECT_NE(follow.WaitForLine("connwatchd restarted", kDeadline, listed), "") << follow.Output();
  std::string line = follow.WaitForLine("info   connect  ", kDeadline, listed);
  EXPECT_NE(line.find("alpha"), std::string::npos) << follow.Output();
  follow.Signal(SIGINT);
  EXPECT_EQ(follow.Wait(kDeadline), 0) << follow.Output();
}

TEST_F(CtlDaemonTest, ReloadPrintsTheAnswerAndFailsOnABadConfig) {
  Launch({"alpha"}, {"--web.enable-lifecycle"});
  ASSERT_EQ(StatusUntil(0).status, 0);
  dir_.Write("connwatch.yaml", Config({"alpha", "beta"}));
  RunResult r = Ctl({url_, "reload"});
  EXPECT_EQ(r.status, 0) << r.output;
  r = StatusUntil(0, {"beta"});
  EXPECT_EQ(r.status, 0) << r.output;

  dir_.Write("connwatch.yaml", "targets:\n  - address: \"127.0.0.1:70000\"\n");
  r = Ctl({url_, "reload"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(config_ + ":2:"), std::string::npos) << r.output;
}

TEST_F(CtlDaemonTest, ReloadWithoutLifecycleSaysHowToEnableIt) {
  Launch({"alpha"});
  RunResult r = Ctl({url_, "reload"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--web.enable-lifecycle"), std::string::npos) << r.output;
}

TEST(CtlCheckConfig, SameOutputAndStatusAsTheDaemon) {
  TempDir dir;
  const std::string good = std::string(CONNWATCH_SOURCE_DIR) + "/config/example.yaml";
  const std::string bad = dir.Write("bad.yaml",
                                    "defaults:\n  connect_timeout: 5x\ntargets:\n"
                                    "  - address: \"127.0.0.1:70000\"\n");
  const std::string web = dir.Write("web.yml", "basic_auth_users:\n  u: nothash\n");
  struct Case {
    std::vector<std::string> ctl, daemon;
    int want;
  };
  for (const Case& k : std::vector<Case>{
           {{good}, {"--config.file=" + good}, 0},
           {{bad}, {"--config.file=" + bad}, 1},
           {{good, "--web.config.file=" + web}, {"--config.file=" + good, "--web.config.file=" + web}, 1}}) {
    std::vector<std::string> a = {"check-config"}, d = {CONNWATCHD_BINARY, "--check-config"};
    a.insert(a.end(), k.ctl.begin(), k.ctl.end());
    d.insert(d.end(), k.daemon.begin(), k.daemon.end());
    RunResult c = Ctl(a), daemon = RunProgram(d, kRunTimeout);
    EXPECT_EQ(c.status, k.want) << c.output;
    EXPECT_EQ(daemon.status, k.want) << daemon.output;
    EXPECT_EQ(c.output, daemon.output);
  }
  RunResult r = Ctl({"check-config"});
  EXPECT_EQ(r.status, 64) << "no FILE is a usage error: " << r.output;
}

TEST_F(CtlDaemonTest, TlsAndBasicAuthFromFiles) {
  TlsFixtures tls(dir_);
  ASSERT_TRUE(tls.ok()) << tls.error();
  const std::string web = dir_.Write(
      "web.yml", "tls_server_config:\n  cert_file: " + tls.Path("server.crt") +
                     "\n  key_file: " + tls.Path("server.key") + "\nbasic_auth_users:\n  ops: " +
                     BcryptHash("s3cret") + "\n");
  Launch({"alpha"}, {"--web.config.file=" + web});
  const std::string url = "--web.url=https://127.0.0.1:" + port_;
  const std::string ca = "--web.ca-file=" + tls.Path("ca.crt");
  const std::string auth = "--web.auth-file=" + dir_.Write("auth", "ops:s3cret\n");
  RunResult r;
  ASSERT_TRUE(WaitFor([&] { return (r = Ctl({url, ca, auth, "status"})).status == 0; }, kDeadline))
      << r.output;
  r = Ctl({url, ca, auth, "events", "--limit", "1"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("alpha"), std::string::npos) << r.output;

  r = Ctl({url, ca, "status"});  // no credentials
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("401"), std::string::npos) << r.output;
  r = Ctl({url, ca, "--web.auth-file=" + dir_.Write("wrong", "ops:guess\n"), "status"});
  EXPECT_EQ(r.status, 3) << r.output;
  r = Ctl({url, "--web.ca-file=" + tls.Path("clientca.crt"), auth, "status"});  // another CA
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("cannot reach connwatchd"), std::string::npos) << r.output;
  r = Ctl({url, ca, "--web.auth-file=" + dir_.Write("nocolon", "justapassword\n"), "status"});
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("user:password"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace connwatch
