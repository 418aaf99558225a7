// The connwatchd binary under a stepped system clock: checks and heartbeat
// deadlines run on the monotonic clock, so a step of the wall clock (an
// operator's `date -s`, a VM resumed, NTP stepping) neither stops them nor
// judges a waiting heartbeat late. The step is made with libfaketime's
// changeable offset (Debian's faketime package) on the daemon alone, with
// the monotonic clock left alone: the machine's clock is never touched.

#include <glob.h>
#include <signal.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <string>

#include "http_client.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;
using testing::WaitFor;

std::string FaketimeLibrary() {
  glob_t g{};
  std::string found;
  if (glob("/usr/lib/*/faketime/libfaketimeMT.so.1", 0, nullptr, &g) == 0 && g.gl_pathc > 0) {
    found = g.gl_pathv[0];
  }
  globfree(&g);
  return found;
}

double MetricValue(const std::string& body, const std::string& series) {
  size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + series.size() + 2));
}

TEST(ClockStep, ChecksAndHeartbeatsIgnoreStepsOfTheWallClock) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer runtime and libfaketime's LD_PRELOAD both want to come first; "
                  "this test runs in the plain build";
#endif
  const std::string faketime = FaketimeLibrary();
  ASSERT_FALSE(faketime.empty())
      << "libfaketimeMT.so.1 not found: install Debian's faketime (scripts/setup.sh does)";
  TestPeer peer;
  ASSERT_EQ(peer.Start(), "");
  peer.SetMode(testing::PeerMode::kEcho);
  peer.SetHeartbeat("PING\n", "PONG\n");

  TempDir dir;
  const std::string offset = dir.Write("offset", "+0\n");
  const std::string config = dir.Write(
      "connwatch.yaml",
      "defaults: {startup_jitter: 0s, check_interval: 100ms, check_jitter: 0s}\n"
      "targets:\n  - name: a\n    address: 127.0.0.1:" + std::to_string(peer.port()) +
          "\n    heartbeat: {send: \"PING\\n\", expect: \"PONG\", interval: 100ms, timeout: 1s}\n");
  Subprocess daemon({CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config,
                     "--web.listen-address=127.0.0.1:0"},
                    {"LD_PRELOAD=" + faketime, "FAKETIME_TIMESTAMP_FILE=" + offset,
                     "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"});
  std::string line = daemon.WaitForLine("listening", milliseconds(10000));
  ASSERT_FALSE(line.empty()) << daemon.Output();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(line, m, std::regex(R"(port=(\d+))"))) << line;
  const int port = std::stoi(m[1]);
  ASSERT_FALSE(daemon.WaitForLine("event=connect ", milliseconds(5000)).empty()) << daemon.Output();

  double checks = 0, heartbeats = 0;
  auto read = [&] {
    std::string body = HttpGet("127.0.0.1", port, "/metrics").body;
    checks = MetricValue(body, "connwatch_checks_total");
    heartbeats = MetricValue(body, "connwatch_probes_total{probe=\"heartbeat\"}");
  };
  // After each step: ten more checks and heartbeats (a second at 100 ms),
  // no disconnect, still one connection.
  auto expect_running = [&](const char* step) {
    read();
    const double c0 = checks, h0 = heartbeats;
    EXPECT_TRUE(WaitFor(
        [&] {
          read();
          return checks >= c0 + 10 && heartbeats >= h0 + 10;
        },
        milliseconds(5000)))
        << step << ": expected 10 more checks and heartbeats within 5 s; checks " << c0 << " -> "
        << checks << ", heartbeats " << h0 << " -> " << heartbeats << "\n"
        << daemon.Output();
    EXPECT_EQ(daemon.Output().find("event=disconnect"), std::string::npos)
        << step << ": the connection was dropped\n" << daemon.Output();
    EXPECT_EQ(daemon.Output().find("event=heartbeat_failure"), std::string::npos)
        << step << ": a heartbeat was judged late\n" << daemon.Output();
  };
  expect_running("before any step");
  // One hour back: deadlines taken on the wall clock would lie an hour ahead.
  std::ofstream(offset, std::ios::trunc) << "-1h\n";
  expect_running("after the wall clock stepped back 1h");
  // Two hours forward (one past the start): a wall-clock deadline of the
  // waiting heartbeat would have passed long ago.
  std::ofstream(offset, std::ios::trunc) << "+1h\n";
  expect_running("after the wall clock stepped forward 2h");
  EXPECT_EQ(peer.accepted_total(), 1u);
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(milliseconds(5000)), 0) << daemon.Output();
}

}  // namespace
}  // namespace connwatch
