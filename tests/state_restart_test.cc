// Memory across restarts, on the connwatchd binary (--storage.path): a
// SIGTERM restart loses nothing; a SIGKILL loses at most the last
// --storage.interval (measured); a corrupt, truncated or foreign-version file
// is logged and ignored; a target whose address changed starts fresh; a full
// disk (a tiny tmpfs in the daemon's own mount namespace) fails the write,
// counts it and leaves the running state alone; a missing or locked directory
// is logged and counted; an empty --storage.path keeps nothing.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>

#include "core/clock.h"
#include "core/state_file.h"
#include "dnsmasq.h"
#include "http_client.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using testing::Subprocess;
using testing::TempDir;
using testing::PeerOptions;
using testing::TestPeer;
using testing::WaitFor;

constexpr milliseconds kDeadline{10000};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class StateRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(peer_.Start(), "");
    state_dir_ = dir_.path() + "/state";
    std::filesystem::create_directories(state_dir_);
    WriteConfig(peer_.port(), peer_.port());
  }

  void WriteConfig(uint16_t alpha_port, uint16_t beta_port) {
    config_ = dir_.Write("connwatch.yaml",
                         "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
                         "  backoff: {initial: 50ms, max: 200ms}\n"
                         "targets:\n"
                         "  - name: alpha\n    address: 127.0.0.1:" +
                             std::to_string(alpha_port) +
                             "\n"
                             "  - name: beta\n    address: 127.0.0.1:" +
                             std::to_string(beta_port) + "\n");
  }

  std::vector<std::string> Args(std::vector<std::string> extra) {
    std::vector<std::string> argv = {CONNWATCHD_BINARY, "--config.file=" + config_,
                                     "--web.listen-address=127.0.0.1:0",
                                     "--storage.path=" + state_dir_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Starts a daemon (argv from Args, or `argv` as given) and reads its port.
  void Launch(std::vector<std::string> extra = {}, std::vector<std::string> argv = {}) {
    daemon_ = std::make_unique<Subprocess>(argv.empty() ? Args(std::move(extra)) : argv);
    std::string line = daemon_->WaitForLine("msg=listening", kDeadline);
    ASSERT_FALSE(line.empty()) << "no listening line; output:\n" << daemon_->Output();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex(R"(port=(\d+))"))) << line;
    port_ = std::stoi(m[1]);
  }

  void Stop(int sig) {
    daemon_->Signal(sig);
    const int status = daemon_->Wait(kDeadline);
    EXPECT_EQ(status, sig == SIGKILL ? 128 + SIGKILL : 0) << daemon_->Output();
  }

  std::string Metrics() { return HttpGet("127.0.0.1", port_, "/metrics").body; }

  // The value of the series `series` (name and labels as exposed), -1 if absent.
  double Value(const std::string& series) {
    const std::string body = Metrics();
    const size_t at = body.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(body.substr(at + series.size() + 2));
  }

  bool WaitValue(const std::string& series, const std::function<bool(double)>& ok,
                 milliseconds timeout = kDeadline) {
    return WaitFor([&] { return ok(Value(series)); }, timeout);
  }

  Json Events() {
    Json doc = Json::parse(HttpGet("127.0.0.1", port_, "/api/v1/events").body, nullptr, false);
    return doc.is_discarded() ? Json::array() : doc["data"]["events"];
  }

  std::string StateFile() const { return state_dir_ + "/state.json"; }

  // A file as a daemon would write it, for alpha and beta at the given
  // ports, each with 42 connects, and one event.
  std::string FileFor(uint16_t alpha_port, uint16_t beta_port) {
    Snapshot snap;
    for (const auto& [name, port] : {std::pair{"alpha", alpha_port}, {"beta", beta_port}}) {
      auto config = std::make_shared<TargetConfig>();
      config->name = name;
      config->address = "127.0.0.1:" + std::to_string(port);
      TargetSnapshot& t = snap.targets.emplace_back();
      t.config = config;
      t.connects = 42;
      t.disconnects[static_cast<size_t>(Reason::kPeerReset)] = 41;
      t.last_change_unix = 1.7e9;
      t.history = UpHistory(MonoNow() - 100);
      t.history_at = MonoNow();
    }
    Event e;
    e.seq = 77;
    e.unix_time = 1.7e9;
    e.kind = "disconnect";
    e.target = "alpha";
    e.has_reason = true;
    e.reason = Reason::kPeerReset;
    return EncodeState(snap, {e}, 78, UnixNow(), UnixNow() - MonoNow());
  }

  TempDir dir_;
  TestPeer peer_;
  std::string config_;
  std::string state_dir_;
  std::unique_ptr<Subprocess> daemon_;
  int port_ = 0;
};

const char kUpAlpha[] = "connwatch_target_up{target=\"alpha\"}";
const char kUpBeta[] = "connwatch_target_up{target=\"beta\"}";
const char kConnectsAlpha[] = "connwatch_target_connects_total{target=\"alpha\"}";
const char kConnectsBeta[] = "connwatch_target_connects_total{target=\"beta\"}";
const char kResetsAlpha[] =
    "connwatch_target_disconnects_total{target=\"alpha\",reason=\"peer_reset\"}";
const char kChangeAlpha[] = "connwatch_target_last_change_timestamp_seconds{target=\"alpha\"}";
const char kUpSecondsAlpha[] = "connwatch_target_up_seconds_total{target=\"alpha\"}";
const char kFailures[] = "connwatch_state_write_failures_total";
const char kLastWrite[] = "connwatch_state_last_write_success_timestamp_seconds";

auto Is(double want) {
  return [want](double v) { return v == want; };
}
auto AtLeast(double want) {
  return [want](double v) { return v >= want; };
}

TEST_F(StateRestartTest, SigtermRestartLosesNothing) {
  Launch();
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1)) && WaitValue(kUpBeta, Is(1))) << daemon_->Output();
  peer_.ResetAll();
  ASSERT_TRUE(WaitValue(kResetsAlpha, Is(1))) << Metrics();
  ASSERT_TRUE(WaitValue(kConnectsAlpha, Is(2)) && WaitValue(kUpAlpha, Is(1))) << Metrics();
  ASSERT_TRUE(WaitValue(kConnectsBeta, Is(2)) && WaitValue(kUpBeta, Is(1))) << Metrics();
  const double change = Value(kChangeAlpha);
  const double up_seconds = Value(kUpSecondsAlpha);
  const Json before = Events();
  ASSERT_GE(before.size(), 6u) << before.dump();  // 2 connects, 2 resets, 2 connects
  Stop(SIGTERM);
  EXPECT_NE(daemon_->Output().find("msg=\"state saved\""), std::string::npos) << daemon_->Output();

  Launch();
  const std::string restored = daemon_->WaitForLine("msg=\"state restored\"", kDeadline);
  EXPECT_EQ(testing::LogfmtValue(restored, "restored"), "2") << restored;
  EXPECT_EQ(testing::LogfmtValue(restored, "new"), "0") << restored;
  // Counted on from where they were: the reset is remembered, the reconnect adds one.
  EXPECT_EQ(Value(kResetsAlpha), 1) << Metrics();
  ASSERT_TRUE(WaitValue(kConnectsAlpha, Is(3)) && WaitValue(kUpAlpha, Is(1))) << Metrics();
  // Up before the restart and up after it: no change to tell.
  EXPECT_NEAR(Value(kChangeAlpha), change, 1e-3);
  EXPECT_GE(Value(kUpSecondsAlpha), up_seconds);
  // Every event of the first run is listed, with its number and time; the
  // new ones are numbered after them.
  const Json after = Events();
  std::map<uint64_t, std::string> was;
  for (const Json& e : before) was[e["seq"].get<uint64_t>()] = e["time"].get<std::string>();
  std::set<uint64_t> seen;
  for (const Json& e : after) {
    const uint64_t seq = e["seq"].get<uint64_t>();
    seen.insert(seq);
    if (was.count(seq)) {
      EXPECT_EQ(e["time"], was[seq]) << "event " << seq << " changed";
    }
  }
  for (const auto& [seq, time] : was) EXPECT_TRUE(seen.count(seq)) << "event " << seq << " lost";
  EXPECT_GT(after.front()["seq"].get<uint64_t>(), was.rbegin()->first) << after.dump();
  EXPECT_EQ(after.front()["kind"], "connect") << after.dump();
}

TEST_F(StateRestartTest, SigkillLosesAtMostTheLastInterval) {
  constexpr double kInterval = 1.0;
  Launch({"--storage.interval=1s"});
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << daemon_->Output();
  peer_.ResetAll();
  ASSERT_TRUE(WaitValue(kResetsAlpha, Is(1))) << Metrics();
  const double first_reset = UnixNow();
  // A write after the first reset: that one must survive the kill.
  ASSERT_TRUE(WaitValue(kLastWrite, AtLeast(first_reset))) << Metrics();
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << Metrics();
  peer_.ResetAll();
  ASSERT_TRUE(WaitValue(kResetsAlpha, Is(2))) << Metrics();
  const double killed_at = UnixNow();
  Stop(SIGKILL);

  StoredState saved;
  std::string error;
  ASSERT_TRUE(DecodeState(ReadFile(StateFile()), &saved, &error)) << error;
  const double lost = killed_at - saved.saved_unix;
  uint64_t resets = 0;
  for (const StoredTarget& t : saved.targets) {
    if (t.name == "alpha") resets = t.disconnects[static_cast<size_t>(Reason::kPeerReset)];
  }
  std::cout << "SIGKILL: the file was " << lost << " s older than the kill (interval "
            << kInterval << " s); it held " << resets << " of alpha's 2 resets\n";
  // At most one interval, plus the time a write takes on a loaded machine
  // (a sanitizer build sharing two cores).
  EXPECT_LE(lost, kInterval + 1.0);
  EXPECT_GE(resets, 1u);
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/state.json.tmp"));

  Launch({"--storage.interval=1s"});
  ASSERT_FALSE(daemon_->WaitForLine("msg=\"state restored\"", kDeadline).empty())
      << daemon_->Output();
  // Exactly what the file held: nothing made up, nothing of it dropped.
  EXPECT_EQ(Value(kResetsAlpha), static_cast<double>(resets)) << Metrics();
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << Metrics();
}

// A corrupt, a truncated and a foreign-version file: each logged and
// ignored (moved aside), the targets start fresh, the daemon runs, and the
// next write makes a good file. The same file whole is restored (the control).
TEST_F(StateRestartTest, CorruptTruncatedAndForeignFilesAreIgnored) {
  const std::string good = FileFor(peer_.port(), peer_.port());
  std::string foreign = good;
  const size_t v = foreign.find("\"version\":1");
  ASSERT_NE(v, std::string::npos);
  foreign.replace(v, 11, "\"version\":99");
  static const char kCorrupt[] = "\x7f" "ELF\x02\x01\x01\x00 not json at all";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"corrupt", std::string(kCorrupt, sizeof kCorrupt - 1)},
      {"truncated", good.substr(0, good.size() / 2)},
      {"foreign", foreign},
  };
  const std::vector<std::string> errors = {"not JSON", "not JSON", "version 99"};
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].first);
    std::filesystem::remove(state_dir_ + "/state.json.rejected");
    std::ofstream(StateFile(), std::ios::binary | std::ios::trunc) << cases[i].second;
    Launch({"--storage.interval=200ms"});
    const std::string line = daemon_->WaitForLine("msg=\"state file ignored", kDeadline);
    ASSERT_FALSE(line.empty()) << daemon_->Output();
    EXPECT_NE(testing::LogfmtValue(line, "error").find(errors[i]), std::string::npos) << line;
    EXPECT_TRUE(std::filesystem::exists(state_dir_ + "/state.json.rejected"));
    ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << daemon_->Output();
    EXPECT_EQ(Value(kConnectsAlpha), 1) << Metrics();
    EXPECT_EQ(Value(kResetsAlpha), -1) << Metrics();
    // The next write replaces it with a good one.
    StoredState s;
    std::string error;
    EXPECT_TRUE(WaitFor([&] { return DecodeState(ReadFile(StateFile()), &s, &error); }, kDeadline))
        << error;
    Stop(SIGTERM);
  }
  std::ofstream(StateFile(), std::ios::binary | std::ios::trunc) << good;
  Launch();
  ASSERT_FALSE(daemon_->WaitForLine("msg=\"state restored\"", kDeadline).empty())
      << daemon_->Output();
  ASSERT_TRUE(WaitValue(kConnectsAlpha, Is(43))) << Metrics();
  EXPECT_EQ(Value(kResetsAlpha), 41) << Metrics();
  // The restored event is listed.
  bool found = false;
  for (const Json& e : Events()) found = found || e["seq"] == 77;
  EXPECT_TRUE(found) << Events().dump();
}

TEST_F(StateRestartTest, ATargetWhoseAddressChangedStartsFresh) {
  // The file knew alpha at another port; beta is where it was.
  std::ofstream(StateFile(), std::ios::binary | std::ios::trunc)
      << FileFor(static_cast<uint16_t>(peer_.port() == 1 ? 2 : 1), peer_.port());
  Launch();
  const std::string line = daemon_->WaitForLine("msg=\"state restored\"", kDeadline);
  EXPECT_EQ(testing::LogfmtValue(line, "restored"), "1") << line;
  EXPECT_EQ(testing::LogfmtValue(line, "address_changed"), "1") << line;
  ASSERT_TRUE(WaitValue(kConnectsBeta, Is(43))) << Metrics();
  ASSERT_TRUE(WaitValue(kConnectsAlpha, Is(1))) << Metrics();
  EXPECT_EQ(Value(kResetsAlpha), -1) << Metrics();
  // Its last change is this run's, not the file's (1.7e9).
  EXPECT_GT(Value(kChangeAlpha), 1.7e9 + 1e6);
}

// The disk fills under the daemon: a tmpfs of 64 KiB mounted on the state
// directory in a mount namespace of the daemon's own (unshare -m: gone with
// the process), filled from outside through /proc/PID/root.
TEST_F(StateRestartTest, FullDiskFailsTheWriteAndLeavesTheRunningStateAlone) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  if (system("command -v unshare >/dev/null") != 0) GTEST_SKIP() << "no unshare (util-linux)";
  std::vector<std::string> argv = {
      "/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
      "mount -t tmpfs -o size=64k connwatch-test \"$0\" && exec \"$@\"", state_dir_};
  for (const std::string& a : Args({"--storage.interval=200ms"})) argv.push_back(a);
  Launch({}, argv);
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << daemon_->Output();
  ASSERT_TRUE(WaitValue(kLastWrite, AtLeast(1))) << daemon_->Output();
  EXPECT_EQ(Value(kFailures), 0);
  const std::string inside =
      "/proc/" + std::to_string(daemon_->pid()) + "/root" + state_dir_;
  ASSERT_TRUE(std::filesystem::exists(inside + "/state.json")) << inside;
  // Nothing of this reaches the host's directory.
  EXPECT_FALSE(std::filesystem::exists(StateFile()));

  // Fill it.
  {
    const int fd = open((inside + "/filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const std::string block(4096, 'x');
    while (write(fd, block.data(), block.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    close(fd);
  }
  ASSERT_TRUE(WaitValue(kFailures, AtLeast(2))) << daemon_->Output();
  const std::string failed = daemon_->WaitForLine("msg=\"state write failed", kDeadline);
  EXPECT_NE(testing::LogfmtValue(failed, "error").find("No space left on device"),
            std::string::npos)
      << failed;
  // The running state goes on: a reset is counted and the target comes back.
  peer_.ResetAll();
  ASSERT_TRUE(WaitValue(kResetsAlpha, Is(1))) << Metrics();
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << Metrics();
  // The last good file is whole, and no temporary is left behind.
  StoredState s;
  std::string error;
  EXPECT_TRUE(DecodeState(ReadFile(inside + "/state.json"), &s, &error)) << error;
  EXPECT_FALSE(std::filesystem::exists(inside + "/state.json.tmp"));

  // Room again: the next write succeeds and says so.
  std::filesystem::remove(inside + "/filler");
  ASSERT_FALSE(daemon_->WaitForLine("msg=\"state written again\"", kDeadline).empty())
      << daemon_->Output();
  const double failures = Value(kFailures);
  EXPECT_GE(failures, 2);
  ASSERT_TRUE(WaitFor(
      [&] {
        return DecodeState(ReadFile(inside + "/state.json"), &s, &error) &&
               s.targets.size() == 2 &&
               s.targets[0].disconnects[static_cast<size_t>(Reason::kPeerReset)] == 1;
      },
      kDeadline))
      << error;
}

TEST_F(StateRestartTest, AMissingDirectoryIsLoggedAndEveryIntervalCounted) {
  Launch({"--storage.path=" + dir_.path() + "/nowhere", "--storage.interval=100ms"});
  const std::string line = daemon_->WaitForLine("msg=\"state directory unusable", kDeadline);
  EXPECT_NE(line.find("No such file or directory"), std::string::npos) << daemon_->Output();
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << daemon_->Output();
  ASSERT_TRUE(WaitValue(kFailures, AtLeast(3))) << Metrics();
  EXPECT_EQ(Value(kLastWrite), 0);
  // Created later, it is used from the next interval on.
  std::filesystem::create_directories(dir_.path() + "/nowhere");
  ASSERT_TRUE(WaitValue(kLastWrite, AtLeast(1))) << daemon_->Output();
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/nowhere/state.json"));
}

TEST_F(StateRestartTest, ASecondDaemonOnTheSameDirectoryKeepsNothing) {
  Launch({"--storage.interval=100ms"});
  ASSERT_TRUE(WaitValue(kLastWrite, AtLeast(1))) << daemon_->Output();
  Subprocess second(Args({"--storage.interval=100ms"}));
  const std::string line = second.WaitForLine("msg=\"state directory unusable", kDeadline);
  EXPECT_NE(line.find("locked by another process"), std::string::npos) << second.Output();
  // The first one goes on writing.
  const double last = Value(kLastWrite);
  ASSERT_TRUE(WaitValue(kLastWrite, [&](double v) { return v > last; })) << daemon_->Output();
  EXPECT_EQ(Value(kFailures), 0);
}

TEST_F(StateRestartTest, AnEmptyPathKeepsNoState) {
  Launch({"--storage.path=", "--storage.interval=100ms"});
  EXPECT_FALSE(daemon_->WaitForLine("msg=\"state is not kept", kDeadline).empty())
      << daemon_->Output();
  ASSERT_TRUE(WaitValue(kUpAlpha, Is(1))) << daemon_->Output();
  Stop(SIGTERM);
  EXPECT_TRUE(std::filesystem::is_empty(state_dir_));
}

// addresses: all: one entry per endpoint in the file, and after the restart
// each endpoint gets its own story back when the name gives its address again.
TEST_F(StateRestartTest, EachEndpointOfANameGetsItsOwnStateBack) {
  PeerOptions second_options;
  second_options.bind_address = "127.0.0.2";
  second_options.port = peer_.port();
  TestPeer second(second_options);
  ASSERT_EQ(second.Start(), "");
  testing::Dnsmasq dns(dir_, "127.0.0.1 pool.test\n127.0.0.2 pool.test\n", 1);
  if (!dns.why_not().empty()) GTEST_SKIP() << dns.why_not();
  const std::string port = std::to_string(peer_.port());
  config_ = dir_.Write("connwatch.yaml",
                       "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
                       "  backoff: {initial: 50ms, max: 200ms}\n"
                       "targets:\n  - name: pool\n    address: pool.test:" + port +
                           "\n    addresses: all\n");
  const std::string one = "connwatch_target_connects_total{target=\"pool\",endpoint=\"127.0.0.1:" +
                          port + "\"}";
  const std::string two = "connwatch_target_connects_total{target=\"pool\",endpoint=\"127.0.0.2:" +
                          port + "\"}";
  const std::string resets_two = "connwatch_target_disconnects_total{target=\"pool\",endpoint=\"127.0.0.2:" +
                                 port + "\",reason=\"peer_reset\"}";
  Launch({"--dns.servers=" + dns.server()});
  ASSERT_TRUE(WaitValue(one, Is(1)) && WaitValue(two, Is(1))) << Metrics();
  // Only the second endpoint flaps: its story differs from the first's.
  second.ResetAll();
  ASSERT_TRUE(WaitValue(resets_two, Is(1))) << Metrics();
  ASSERT_TRUE(WaitValue(two, Is(2))) << Metrics();
  Stop(SIGTERM);
  const Json file = Json::parse(ReadFile(StateFile()), nullptr, false);
  ASSERT_FALSE(file.is_discarded()) << ReadFile(StateFile());
  std::set<std::string> saved;
  for (const Json& t : file["targets"]) saved.insert(t["endpoint"].get<std::string>());
  EXPECT_EQ(saved, (std::set<std::string>{"127.0.0.1:" + port, "127.0.0.2:" + port}))
      << file.dump();

  Launch({"--dns.servers=" + dns.server()});
  // Each endpoint counts on from its own figures: one reconnect each.
  ASSERT_TRUE(WaitValue(one, Is(2)) && WaitValue(two, Is(3))) << Metrics();
  EXPECT_EQ(Value(resets_two), 1) << Metrics();
  EXPECT_EQ(Value("connwatch_target_disconnects_total{target=\"pool\",endpoint=\"127.0.0.1:" +
                  port + "\",reason=\"peer_reset\"}"),
            -1)
      << Metrics();
}

}  // namespace
}  // namespace connwatch
