// Integration tests: the Monitor's event loop against real sockets on
// loopback (port 0), driven by the in-process TestPeer. Every wait has a
// deadline and every failure says what was expected and what was seen.

#include "monitor_fixture.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "core/clock.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using namespace connwatch::testing;  // NOLINT: the fixture and its helpers

TEST_F(MonitorTest, ConnectsHoldsAndReportsRtt) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  TargetSnapshot t = WaitUp("a");
  EXPECT_EQ(t.connects, 1u);
  EXPECT_EQ(t.state, TargetState::kUp);
  EXPECT_TRUE(t.has_rtt);
  EXPECT_EQ(t.resolved_address, Addr(*peer));
  EXPECT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  Event e = WaitForEvent("a", "connect");
  EXPECT_GE(e.connect_seconds, 0);
  auto snap = monitor_->GetSnapshot();
  EXPECT_EQ(snap->targets_by_state[static_cast<size_t>(TargetState::kUp)], 1u);
  EXPECT_EQ(snap->connect_duration.count, 1u);
}

TEST_F(MonitorTest, PeerFinIsPeerClosedDetectedByTheEventNotTheCheck) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  const auto closed_at = std::chrono::steady_clock::now();
  peer->CloseAll();
  Event e = WaitForEvent("a", "disconnect", milliseconds(1000));
  const auto detected_in = std::chrono::steady_clock::now() - closed_at;
  EXPECT_EQ(ReasonName(e.reason), "peer_closed");
  EXPECT_EQ(e.err, 0);
  // check_interval is 1m: only the readability event can see it this fast.
  EXPECT_LT(detected_in, milliseconds(1000));
  // It reconnects after the backoff, and counts one disconnect by reason.
  TargetSnapshot t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return s.up && s.connects == 2; }, "reconnected");
  EXPECT_EQ(t.disconnects[static_cast<size_t>(Reason::kPeerClosed)], 1u);
}

TEST_F(MonitorTest, PeerRstIsPeerResetWithErrno) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  peer->ResetAll();
  Event e = WaitForEvent("a", "disconnect", milliseconds(1000));
  EXPECT_EQ(ReasonName(e.reason), "peer_reset");
  EXPECT_EQ(ErrnoName(e.err), "ECONNRESET");
  TargetSnapshot t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return s.disconnects[static_cast<size_t>(Reason::kPeerReset)] == 1; },
      "one peer_reset counted");
  EXPECT_EQ(t.last_reason, Reason::kPeerReset);
  EXPECT_EQ(t.last_errno, ECONNRESET);
}

TEST_F(MonitorTest, FinHiddenBehindUnreadDataIsPeerClosed) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  peer->SendThenCloseAll(std::string(200000, 'x'));
  Event e = WaitForEvent("a", "disconnect", milliseconds(2000));
  EXPECT_EQ(ReasonName(e.reason), "peer_closed");
}

TEST_F(MonitorTest, ClosedPortIsRefusedAndBacksOff) {
  auto peer = StartPeer();
  const std::string addr = Addr(*peer);
  peer->StopListening();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", addr));
  TargetSnapshot t = WaitForTarget(
      "a",
      [](const TargetSnapshot& s) {
        return s.connect_failures[static_cast<size_t>(Reason::kRefused)] >= 3;
      },
      "three refused attempts");
  EXPECT_FALSE(t.up);
  EXPECT_EQ(t.last_event_kind, "connect_failure");
  EXPECT_EQ(t.last_errno, ECONNREFUSED);
  // The peer recovers; so does the target.
  ASSERT_EQ(peer->Listen(), "");
  WaitUp("a");
}

TEST_F(MonitorTest, SilentSynIsConnectTimeout) {
  SynDroppingListener silent;
  ASSERT_TRUE(silent.ok());
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("a", silent.address(), "    connect_timeout: 300ms\n"));
  Event e = WaitForEvent("a", "connect_failure", milliseconds(3000));
  EXPECT_EQ(ReasonName(e.reason), "timeout");
  StopMonitor();
}

TEST_F(MonitorTest, HeartbeatAnsweredKeepsTargetUp) {
  auto peer = StartPeer();
  peer->SetMode(PeerMode::kEcho);
  peer->SetHeartbeat("PING\n", "+PONG\n");
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("a", Addr(*peer),
                      "    heartbeat: {send: \"PING\\n\", expect: \"^\\\\+PONG\", interval: 100ms, "
                      "timeout: 80ms, fall: 1}\n"));
  WaitForTarget("a", [](const TargetSnapshot& s) { return s.up && s.has_heartbeat; },
                "a heartbeat round trip");
  // Several heartbeat periods later it is still the same connection.
  ASSERT_TRUE(peer->WaitUntil([&] { return peer->bytes_received() >= 5 * 5; }, kDeadline));
  TargetSnapshot t = WaitUp("a");
  EXPECT_EQ(t.connects, 1u);
  EXPECT_GT(t.heartbeat_seconds, 0);
}

TEST_F(MonitorTest, HeartbeatUnansweredIsHeartbeatTimeoutAfterFall) {
  auto peer = StartPeer();
  peer->SetMode(PeerMode::kSilent);
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("a", Addr(*peer),
                      "    heartbeat: {send: \"PING\\n\", expect: \"PONG\", interval: 100ms, "
                      "timeout: 50ms, fall: 2}\n"));
  Event e = WaitForEvent("a", "disconnect", milliseconds(3000));
  EXPECT_EQ(ReasonName(e.reason), "heartbeat_timeout");
  // fall: 2 means one tolerated failure was logged first.
  auto events = log_->Recent();
  int failures = 0;
  for (const auto& ev : events) {
    if (ev.kind == "heartbeat_failure" && ev.seq < e.seq) ++failures;
  }
  EXPECT_GE(failures, 1);
  // The peer sees the connection abandoned with RST (judged dead).
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->client_resets() >= 1; }, kDeadline))
      << "client_fins=" << peer->client_fins();
}

TEST_F(MonitorTest, HeartbeatWrongReplyIsHeartbeatMismatch) {
  auto peer = StartPeer();
  peer->SetMode(PeerMode::kEcho);
  peer->SetHeartbeat("PING\n", "-ERR nope\n");
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("a", Addr(*peer),
                      "    heartbeat: {send: \"PING\\n\", expect: \"^\\\\+PONG\", interval: 200ms, "
                      "timeout: 100ms, fall: 1}\n"));
  Event e = WaitForEvent("a", "disconnect", milliseconds(3000));
  EXPECT_EQ(ReasonName(e.reason), "heartbeat_mismatch");
}

long ResidentKb() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

TEST_F(MonitorTest, FloodingPeerIsDrainedWithoutGrowingOrStarvingOthers) {
  auto flood = StartPeer();
  auto other = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("flood", Addr(*flood)) +
               TargetYaml("other", Addr(*other)));
  WaitUp("flood");
  WaitUp("other");
  ASSERT_TRUE(flood->WaitForOpenConnections(1, kDeadline));
  ASSERT_TRUE(other->WaitForOpenConnections(1, kDeadline));
  const long rss_before = ResidentKb();
  constexpr size_t kBytes = 100u << 20;
  flood->StartFlood(kBytes);
  // While the flood runs, another target's RST is still seen promptly.
  ASSERT_TRUE(flood->WaitUntil([&] { return flood->FloodedBytes() >= kBytes / 4; }, kDeadline));
  other->ResetAll();
  Event e = WaitForEvent("other", "disconnect", milliseconds(1000));
  EXPECT_EQ(ReasonName(e.reason), "peer_reset");
  ASSERT_TRUE(flood->WaitUntil([&] { return flood->FloodedBytes() >= kBytes; },
                               milliseconds(30000)))
      << "flooded " << flood->FloodedBytes();
  TargetSnapshot t = WaitUp("flood");
  EXPECT_EQ(t.connects, 1u) << "the flood must not cost the connection";
  EXPECT_EQ(t.disconnects[static_cast<size_t>(Reason::kPeerClosed)], 0u);
  const long grown_kb = ResidentKb() - rss_before;
  EXPECT_LT(grown_kb, 5 * 1024) << "RSS grew by " << grown_kb << " KiB during a 100 MiB flood";
}

TEST_F(MonitorTest, Ipv6TargetOnLoopback) {
  PeerOptions v6;
  v6.bind_address = "::1";
  v6.backlog = 128;
  auto peer = std::make_unique<TestPeer>(v6);
  std::string err = peer->Start();
  if (!err.empty()) GTEST_SKIP() << "cannot bind [::1] on this host: " << err;
  const std::string addr = "[::1]:" + std::to_string(peer->port());
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("v6", addr));
  TargetSnapshot t = WaitUp("v6");
  EXPECT_EQ(t.resolved_address, addr);
  peer->ResetAll();
  Event e = WaitForEvent("v6", "disconnect", milliseconds(1000));
  EXPECT_EQ(ReasonName(e.reason), "peer_reset");
}

TEST_F(MonitorTest, NameFromHostsFileResolvesAndUnknownNameIsDnsError) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("byname", "localhost:" + std::to_string(peer->port()),
                      "    address_family: ip4\n") +
               TargetYaml("nxdomain", "no-such-host.connwatch.invalid:80"));
  TargetSnapshot t = WaitUp("byname");
  EXPECT_EQ(t.resolved_address, Addr(*peer));
  TargetSnapshot bad = WaitForTarget(
      "nxdomain",
      [](const TargetSnapshot& s) {
        return s.connect_failures[static_cast<size_t>(Reason::kDnsError)] >= 1;
      },
      "a dns_error");
  EXPECT_FALSE(bad.up);
  // The healthy target was not disturbed.
  EXPECT_EQ(WaitUp("byname").connects, 1u);
}

TEST_F(MonitorTest, ReloadKeepsUnchangedTargetsConnection) {
  auto p1 = StartPeer();
  auto p2 = StartPeer();
  auto p3 = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("keep", Addr(*p1)) +
               TargetYaml("change", Addr(*p2)) + TargetYaml("remove", Addr(*p3)));
  WaitUp("keep");
  WaitUp("change");
  WaitUp("remove");
  // "change" gets a label; "remove" goes; "new" arrives.
  RewriteConfig(Defaults() + "targets:\n" + TargetYaml("keep", Addr(*p1)) +
                TargetYaml("change", Addr(*p2), "    labels: {team: storage}\n") +
                TargetYaml("new", Addr(*p3)));
  std::vector<std::string> errors = monitor_->Reload();
  ASSERT_TRUE(errors.empty()) << errors.front();
  TargetSnapshot changed = WaitForTarget(
      "change", [](const TargetSnapshot& s) { return s.up && s.connects == 2; },
      "reconnected after its config changed");
  ASSERT_EQ(changed.config->labels.size(), 1u);
  WaitUp("new");
  TargetSnapshot kept = WaitUp("keep");
  EXPECT_EQ(kept.connects, 1u) << "an unchanged target must keep its connection";
  EXPECT_EQ(p1->accepted_total(), 1u);
  auto snap = monitor_->GetSnapshot();
  ASSERT_EQ(snap->targets.size(), 3u);
  for (const auto& t : snap->targets) EXPECT_NE(t.config->name, "remove");
  EXPECT_TRUE(snap->last_reload_successful);
  Event closed = WaitForEvent("remove", "close");
  EXPECT_EQ(closed.detail, "removed from config");
}

// connwatch_target_up_seconds_total and the status page's history carry over
// a reload that changes the target (like the other counters); the reconnect
// is counted as down, and our own close at the reload is no disconnect.
TEST_F(MonitorTest, ReloadCarriesTheUpHistory) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  TargetSnapshot before = WaitForTarget(
      "a", [](const TargetSnapshot& t) { return t.up && t.up_seconds_total > 0.05; },
      "up for 50 ms");
  RewriteConfig(Defaults() + "targets:\n" +
                TargetYaml("a", Addr(*peer), "    labels: {team: storage}\n"));
  std::vector<std::string> errors = monitor_->Reload();
  ASSERT_TRUE(errors.empty()) << errors.front();
  TargetSnapshot after = WaitForTarget(
      "a", [](const TargetSnapshot& t) { return t.up && t.connects == 2; },
      "reconnected after its config changed");
  EXPECT_GE(after.up_seconds_total, before.up_seconds_total) << "not carried over the reload";
  const UpReport r = after.history.Report(after.history_at);
  EXPECT_NEAR(r.up_seconds_total, after.up_seconds_total, 1e-6);
  EXPECT_EQ(r.disconnects_1h, 0u) << "a reload's close is not a disconnect";
  // Observed since the first start, not since the reload.
  EXPECT_GE(r.observed_1h, r.up_seconds_total);
  EXPECT_LT(r.Availability1h(), 1.0);  // the first connect and the reconnect took time down
  EXPECT_GT(r.Availability1h(), 0.0);
}

// docs/METRICS.md: before its first up/down change, a target's last-change
// time (connwatch_target_last_change_timestamp_seconds, the API's `since`) is
// when it was configured: for a target a reload adds, the reload, not the
// daemon's start. Failed connects do not move it.
TEST_F(MonitorTest, LastChangeOfANeverUpTargetIsWhenItWasConfigured) {
  auto peer = StartPeer();
  auto closed = StartPeer();
  const std::string refused = Addr(*closed);
  closed->StopListening();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("up", Addr(*peer)));
  const TargetSnapshot up = WaitUp("up");
  const double before_reload = UnixNow();
  ASSERT_GT(before_reload, up.last_change_unix);
  RewriteConfig(Defaults() + "targets:\n" + TargetYaml("up", Addr(*peer)) + TargetYaml("never", refused));
  std::vector<std::string> errors = monitor_->Reload();
  ASSERT_TRUE(errors.empty()) << errors.front();
  const TargetSnapshot never = WaitForTarget(
      "never",
      [](const TargetSnapshot& s) {
        return s.connect_failures[static_cast<size_t>(Reason::kRefused)] >= 2;
      },
      "two refused attempts");
  EXPECT_FALSE(never.up);
  EXPECT_GE(never.last_change_unix, before_reload) << "the reload that added it";
  EXPECT_LE(never.last_change_unix, UnixNow());
}

// Targets are matched by name wherever they move in the file: reordering,
// inserting before and removing around unchanged targets keeps their
// connections; a change in the middle reconnects only that one.
TEST_F(MonitorTest, ReloadMatchesTargetsByNameInAnyOrder) {
  auto peer = StartPeer();
  std::string all;
  for (const char* n : {"a", "b", "c", "d", "e"}) all += TargetYaml(n, Addr(*peer));
  StartMonitor(Defaults() + "targets:\n" + all);
  for (const char* n : {"a", "b", "c", "d", "e"}) WaitUp(n);
  ASSERT_TRUE(peer->WaitForOpenConnections(5, kDeadline));
  // New order: e, new1, c (changed), a, d; b is removed.
  RewriteConfig(Defaults() + "targets:\n" + TargetYaml("e", Addr(*peer)) + TargetYaml("new1", Addr(*peer)) +
                TargetYaml("c", Addr(*peer), "    labels: {moved: \"yes\"}\n") + TargetYaml("a", Addr(*peer)) +
                TargetYaml("d", Addr(*peer)));
  std::vector<std::string> errors = monitor_->Reload();
  ASSERT_TRUE(errors.empty()) << errors.front();
  auto snap = monitor_->GetSnapshot();
  std::vector<std::string> order;
  for (const auto& t : snap->targets) order.push_back(t.config->name);
  EXPECT_EQ(order, (std::vector<std::string>{"e", "new1", "c", "a", "d"}));
  for (const char* n : {"e", "a", "d"}) {
    EXPECT_EQ(WaitUp(n).connects, 1u) << n << " kept its place in the file? it must keep its connection";
  }
  EXPECT_EQ(WaitForTarget("c", [](const TargetSnapshot& s) { return s.up && s.connects == 2; },
                          "reconnected after its labels changed")
                .config->labels.size(),
            1u);
  WaitUp("new1");
  EXPECT_EQ(WaitForEvent("b", "close").detail, "removed from config");
  // The peer accepts on its own thread, a moment after connwatchd sees the
  // connect complete: wait for its count (and then that it stays at 7).
  EXPECT_TRUE(WaitFor([&] { return peer->accepted_total() >= 7u; }, kDeadline))
      << "5 at start, then c again and new1; the peer accepted " << peer->accepted_total();
  EXPECT_EQ(peer->accepted_total(), 7u) << "kept targets must not reconnect";
  EXPECT_EQ(WaitUp("a").connects, 1u);
}

// A reload is applied a slice per loop iteration (here one target per
// slice): it ends in the state an apply in one go gives (config order, kept
// connections kept, counters carried over, removed targets closed), and a
// peer's close during the apply is detected while the apply still runs.
TEST_F(MonitorTest, ReloadAppliedInSlicesEndsTheSameAndDetectsClosesMeanwhile) {
  auto peer = StartPeer();
  auto watched = StartPeer();
  constexpr int kChanged = 20;
  std::string before;
  for (int i = 0; i < kChanged; ++i) before += TargetYaml("c" + std::to_string(i), Addr(*peer));
  before += TargetYaml("gone", Addr(*peer)) + TargetYaml("watch", Addr(*watched));
  // The hook runs on the loop after every slice: after the third, the peer
  // of "watch" (unchanged, so held through the reload) closes it, and the
  // slices after it note when its disconnect has been recorded.
  std::atomic<size_t> slices{0};
  std::atomic<size_t> closed_after{0}, seen_after{0};
  apply_slice_targets_ = 1;
  on_apply_slice_ = [&](size_t applied) {
    ++slices;
    if (closed_after == 0 && applied >= 3) {
      watched->CloseAll();
      EXPECT_TRUE(watched->WaitUntil([&] { return watched->close_finished_ns() != 0; }, kDeadline));
      closed_after = applied;
      return;
    }
    if (closed_after != 0 && seen_after == 0) {
      for (const Event& e : log_->Recent(50)) {
        if (e.target == "watch" && e.kind == "disconnect") seen_after = applied;
      }
    }
  };
  StartMonitor(Defaults() + "targets:\n" + before);
  for (int i = 0; i < kChanged; ++i) WaitUp("c" + std::to_string(i));
  WaitUp("watch");
  ASSERT_TRUE(peer->WaitForOpenConnections(kChanged + 1, kDeadline));
  ASSERT_EQ(slices.load(), 0u) << "the start-up apply is one piece, before the loop runs";

  // Every c<i> changes (a label) and moves after the new ones; "gone" goes.
  std::string after = TargetYaml("new0", Addr(*peer)) + TargetYaml("new1", Addr(*peer));
  std::vector<std::string> order{"new0", "new1"};
  for (int i = kChanged - 1; i >= 0; --i) {
    after += TargetYaml("c" + std::to_string(i), Addr(*peer), "    labels: {v: \"2\"}\n");
    order.push_back("c" + std::to_string(i));
  }
  after += TargetYaml("watch", Addr(*watched));
  order.push_back("watch");
  RewriteConfig(Defaults() + "targets:\n" + after);
  std::vector<std::string> errors = monitor_->Reload();
  ASSERT_TRUE(errors.empty()) << errors.front();

  EXPECT_GE(slices.load(), static_cast<size_t>(kChanged + 2)) << "one changed or new target per slice";
  ASSERT_NE(closed_after.load(), 0u);
  EXPECT_NE(seen_after.load(), 0u) << "the close of watch was not detected during the apply";
  EXPECT_LT(seen_after.load(), order.size()) << "detected only when the apply ended";
  auto snap = monitor_->GetSnapshot();
  std::vector<std::string> names;
  for (const auto& t : snap->targets) names.push_back(t.config->name);
  EXPECT_EQ(names, order);
  for (int i = 0; i < kChanged; ++i) {
    const TargetSnapshot c = WaitForTarget(
        "c" + std::to_string(i), [](const TargetSnapshot& s) { return s.up && s.connects == 2; },
        "reconnected after its label changed, its first connect carried over");
    EXPECT_EQ(c.config->labels.size(), 1u);
  }
  WaitUp("new0");
  WaitUp("new1");
  const TargetSnapshot w = WaitForTarget(
      "watch", [](const TargetSnapshot& s) { return s.up && s.connects == 2; },
      "reconnected after its peer closed it");
  EXPECT_EQ(w.disconnects[static_cast<size_t>(Reason::kPeerClosed)], 1u);
  EXPECT_EQ(watched->accepted_total(), 2u) << "watch is unchanged: only its peer's close reconnects it";
  EXPECT_EQ(WaitForEvent("gone", "close").detail, "removed from config");
  // Per target, the old connection's close comes before the new one's connect.
  auto events = log_->Recent();
  std::reverse(events.begin(), events.end());
  for (int i = 0; i < kChanged; ++i) {
    const std::string name = "c" + std::to_string(i);
    std::vector<std::string> kinds;
    for (const Event& e : events) {
      if (e.target == name) kinds.push_back(e.kind);
    }
    EXPECT_EQ(kinds, (std::vector<std::string>{"connect", "close", "connect"})) << name;
  }
}

TEST_F(MonitorTest, BadReloadKeepsTheOldConfigRunning) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  auto before = monitor_->GetSnapshot();
  RewriteConfig("targets:\n  - address: \"127.0.0.1:0\"\n    bogus_key: 1\n");
  std::vector<std::string> errors = monitor_->Reload();
  ASSERT_FALSE(errors.empty());
  auto after = monitor_->GetSnapshot();
  EXPECT_FALSE(after->last_reload_successful);
  EXPECT_EQ(after->last_reload_success_unix, before->last_reload_success_unix);
  ASSERT_EQ(after->targets.size(), 1u);
  EXPECT_EQ(after->targets[0].config->name, "a");
  EXPECT_TRUE(after->targets[0].up);
  EXPECT_EQ(after->targets[0].connects, 1u);
}

// Iterations of the loop that took longer than `seconds` (a bucket bound).
uint64_t LoopIterationsOver(const HistogramSnapshot& h, double seconds) {
  uint64_t over = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    if (i >= h.bounds.size() || h.bounds[i] > seconds) over += h.buckets[i];
  }
  return over;
}

// A config that takes a while to parse (80,000 targets) and is refused at
// its very end, so the whole cost is the load and nothing is applied.
std::string SlowBadConfig() {
  std::string yaml = "targets:\n";
  for (int i = 0; i < 80000; ++i) {
    yaml += "  - {name: t" + std::to_string(i) + ", address: \"127.0.0.1:1\", labels: {n: \"" +
            std::to_string(i) + "\"}}\n";
  }
  return yaml + "  - {name: last, address: \"127.0.0.1:1\", bogus_key: 1}\n";
}

// Known gap 7 (docs/RELIABILITY.md), fixed: a reload parsed the file on the
// loop thread, so a big config stalled every target's detection for as long
// as it took to parse (the soak saw stalls over 50 ms). The loader thread
// parses now; the loop keeps answering and no iteration grows.
TEST_F(MonitorTest, ReloadParsesOffTheLoop) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  RewriteConfig(SlowBadConfig());
  const uint64_t over_before = LoopIterationsOver(monitor_->GetSnapshot()->loop_busy, 0.05);
  const auto start = std::chrono::steady_clock::now();
  auto reload = std::async(std::launch::async, [&] { return monitor_->Reload(); });
  // Round trips through the loop while the loader works.
  int round_trips = 0;
  double slowest = 0;
  while (reload.wait_for(milliseconds(0)) != std::future_status::ready) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_NE(monitor_->GetSnapshot(), nullptr);
    slowest = std::max(slowest,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ++round_trips;
  }
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::string> errors = reload.get();
  ASSERT_FALSE(errors.empty()) << "the config ends with an unknown key";
  EXPECT_NE(errors.front().find("bogus_key"), std::string::npos) << errors.front();
  std::printf("[ info ] reload took %.0f ms; %d snapshots meanwhile, slowest %.1f ms\n",
              load_seconds * 1000, round_trips, slowest * 1000);
  EXPECT_GT(round_trips, 1) << "the loop did not answer while the file was parsed";
  auto after = monitor_->GetSnapshot();
  EXPECT_EQ(LoopIterationsOver(after->loop_busy, 0.05), over_before)
      << "a loop iteration took over 50 ms during the reload";
  EXPECT_FALSE(after->last_reload_successful);
  ASSERT_EQ(after->targets.size(), 1u);
  EXPECT_TRUE(after->targets[0].up);
}

// Reloads requested while one runs are answered by one more load that reads
// the file after them: every caller gets an answer and the last version wins.
TEST_F(MonitorTest, ConcurrentReloadsEndOnTheLastConfig) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("v0", Addr(*peer)));
  WaitUp("v0");
  std::vector<std::future<std::vector<std::string>>> answers;
  for (int v = 1; v <= 20; ++v) {
    // Written whole (rename), as loads run meanwhile.
    const std::string tmp =
        dir_.Write("next.yaml", Defaults() + "targets:\n" + TargetYaml("v" + std::to_string(v), Addr(*peer)));
    std::filesystem::rename(tmp, config_path_);
    answers.push_back(std::async(std::launch::async, [&] { return monitor_->Reload(); }));
  }
  for (auto& a : answers) {
    std::vector<std::string> errors = a.get();
    EXPECT_TRUE(errors.empty()) << errors.front();
  }
  // Every answer came after a load that started after its request, so the
  // last version is applied once the last answer is in.
  auto snap = monitor_->GetSnapshot();
  ASSERT_EQ(snap->targets.size(), 1u);
  EXPECT_EQ(snap->targets[0].config->name, "v20");
  EXPECT_TRUE(snap->last_reload_successful);
}

// Stop during a long load: Run returns without waiting for the parse, and
// the waiting caller is told that nothing will be applied.
TEST_F(MonitorTest, StopDuringAReloadAnswersTheCaller) {
  log_to_file_ = true;
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  RewriteConfig(SlowBadConfig());
  auto reload = std::async(std::launch::async, [&] { return monitor_->Reload(); });
  // Wait until the loop has taken the request (the loader is parsing).
  ASSERT_TRUE(WaitFor([&] { return LogContains("msg=\"loading config\""); }, kDeadline))
      << RecentEvents();
  monitor_->Stop();
  thread_.join();
  ASSERT_EQ(reload.wait_for(kDeadline), std::future_status::ready) << "Reload() never answered";
  std::vector<std::string> errors = reload.get();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "the daemon is shutting down");
  monitor_.reset();  // joins the loader
}

TEST_F(MonitorTest, StopClosesEveryConnection) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)) + TargetYaml("b", Addr(*peer)));
  WaitUp("a");
  WaitUp("b");
  ASSERT_TRUE(peer->WaitForOpenConnections(2, kDeadline));
  StopMonitor();
  EXPECT_TRUE(peer->WaitForOpenConnections(0, kDeadline))
      << "open after stop: " << peer->open_connections();
  EXPECT_EQ(peer->client_fins(), 2u) << "a close we make ourselves is graceful (FIN)";
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

TEST_F(MonitorTest, ConnectRateIsCappedAtStartUp) {
  auto peer = StartPeer();
  std::string yaml =
      "global: {max_connects_per_second: 200, max_connects_in_flight: 50}\n" +
      Defaults() + "targets:\n";
  constexpr int kTargets = 300;
  for (int i = 0; i < kTargets; ++i) yaml += TargetYaml("t" + std::to_string(i), Addr(*peer));
  StartMonitor(yaml);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto snap = monitor_->GetSnapshot();
        return snap && snap->targets_by_state[static_cast<size_t>(TargetState::kUp)] == kTargets;
      },
      milliseconds(10000)))
      << "not all targets up";
  // 300 attempts at 200/s take about 1.5 s; no 100 ms window may hold more
  // than the rate allows (20) plus the one-token bucket, with slack for
  // completions that land in the same loop iteration.
  std::vector<double> times;
  for (const Event& e : log_->Recent()) {
    if (e.kind == "connect") times.push_back(e.unix_time);
  }
  ASSERT_EQ(times.size(), static_cast<size_t>(kTargets));
  std::sort(times.begin(), times.end());
  size_t worst = 0;
  for (size_t i = 0, j = 0; i < times.size(); ++i) {
    while (times[i] - times[j] >= 0.1) ++j;
    worst = std::max(worst, i - j + 1);
  }
  EXPECT_LE(worst, 24u) << "connects in the busiest 100 ms window";
  EXPECT_GE(times.back() - times.front(), 1.2) << "300 connects at 200/s cannot take less";
}

TEST_F(MonitorTest, ConnectsInFlightAreCapped) {
  // Every SYN is dropped (full accept queue): attempts pile up in connecting
  // unless the in-flight cap holds them back.
  SynDroppingListener silent;
  ASSERT_TRUE(silent.ok());
  const std::string addr = silent.address();
  std::string yaml = "global: {max_connects_in_flight: 3}\n" + Defaults() + "targets:\n";
  for (int i = 0; i < 10; ++i) {
    yaml += TargetYaml("t" + std::to_string(i), addr, "    connect_timeout: 300ms\n");
  }
  StartMonitor(yaml);
  ASSERT_TRUE(!HasFatalFailure());
  uint64_t max_connecting = 0;
  uint64_t timeouts = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto snap = monitor_->GetSnapshot();
        if (!snap) return false;
        max_connecting = std::max<uint64_t>(
            max_connecting, snap->targets_by_state[static_cast<size_t>(TargetState::kConnecting)]);
        timeouts = 0;
        for (const auto& t : snap->targets) {
          timeouts += t.connect_failures[static_cast<size_t>(Reason::kTimeout)];
        }
        return timeouts >= 10;
      },
      milliseconds(10000)))
      << "timeouts seen: " << timeouts;
  EXPECT_LE(max_connecting, 3u);
  EXPECT_GE(max_connecting, 1u);
  StopMonitor();
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

TEST_F(MonitorTest, PeriodicChecksAreCountedAndKeepAHealthyTargetUp) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("a", Addr(*peer), "    check_interval: 50ms\n    check_jitter: 10ms\n"));
  WaitUp("a");
  ASSERT_TRUE(WaitFor(
      [&] {
        auto snap = monitor_->GetSnapshot();
        return snap && snap->checks >= 5;
      },
      kDeadline));
  TargetSnapshot t = WaitUp("a");
  EXPECT_EQ(t.connects, 1u);
  auto snap = monitor_->GetSnapshot();
  EXPECT_GT(snap->loop_busy.count, 0u) << "loop iterations are measured";
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

TEST_F(MonitorTest, SnapshotOfManyTargetsIsCompleteAndInOrder) {
  // More targets than one snapshot slice holds (the copy spans iterations).
  auto peer = StartPeer();
  constexpr int kTargets = 4500;
  std::string yaml = "global: {max_connects_per_second: 100000}\n" + Defaults() + "targets:\n";
  for (int i = 0; i < kTargets; ++i) yaml += TargetYaml("t" + std::to_string(i), Addr(*peer));
  StartMonitor(yaml);
  std::shared_ptr<const Snapshot> snap;
  ASSERT_TRUE(WaitFor(
      [&] {
        snap = monitor_->GetSnapshot();
        return snap && snap->targets_by_state[static_cast<size_t>(TargetState::kUp)] == kTargets;
      },
      milliseconds(30000)))
      << "up: " << (snap ? snap->targets_by_state[static_cast<size_t>(TargetState::kUp)] : 0);
  ASSERT_EQ(snap->targets.size(), static_cast<size_t>(kTargets));
  for (int i = 0; i < kTargets; ++i) {
    ASSERT_EQ(snap->targets[i].config->name, "t" + std::to_string(i));
    ASSERT_TRUE(snap->targets[i].up);
  }
}

}  // namespace
}  // namespace connwatch
