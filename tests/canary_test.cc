// The canary (`canary:`): its schedule and outcome logic with fake clocks
// (core/canary.h), the series it makes, and end to end on loopback with real
// sockets: a peer that closes its listening socket but keeps the accepted
// connection (held up, canary refused), a listener that stops accepting with
// a full backlog (canary timeout), recovery of both, a held connection that
// keeps dying while new ones work, TLS, admission, reloads, and no TIME_WAIT
// left behind.

#include "core/canary.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "monitor_fixture.h"
#include "tls_fixtures.h"
#include "web/api_json.h"
#include "web/metrics_view.h"

namespace connwatch {

void ExpectPromtoolAccepts(const std::string& body);  // tests/metrics_view_test.cc

namespace {

using namespace connwatch::testing;  // NOLINT: the fixture and its helpers
using ::testing::HasSubstr;
using ::testing::Not;

size_t Count(Reason r) { return static_cast<size_t>(r); }

// --- The schedule and the outcomes (pure) -------------------------------------

TEST(CanaryTracker, FirstAttemptIsSpreadOverTheIntervalThenOneEveryInterval) {
  CanaryTracker c(30);
  EXPECT_DOUBLE_EQ(c.First(100, 0), 100);
  EXPECT_DOUBLE_EQ(c.First(100, 0.5), 115);
  EXPECT_LT(c.First(100, 0.999), 130);
  EXPECT_DOUBLE_EQ(c.First(100, 0.5), 115);
  // The next one is due an interval after this one was due, however long
  // this one took (admission, connect)...
  EXPECT_DOUBLE_EQ(c.Next(115.3), 145);
  EXPECT_DOUBLE_EQ(c.Next(145.002), 175);
  // ...unless it ran past that: then at once, and the rhythm restarts there.
  EXPECT_DOUBLE_EQ(c.Next(210), 210);
  EXPECT_DOUBLE_EQ(c.Next(211), 240);
  EXPECT_DOUBLE_EQ(c.due(), 240);
}

TEST(CanaryTracker, WithoutAnAddressLooksAgainSoon) {
  CanaryTracker slow(30);
  EXPECT_DOUBLE_EQ(slow.NoAddress(50), 50 + CanaryTracker::kNoAddressRetry);
  CanaryTracker fast(0.2);
  EXPECT_DOUBLE_EQ(fast.NoAddress(50), 50.2);
}

TEST(CanaryTracker, OnlyChangesAreWorthALine) {
  CanaryTracker c(30);
  EXPECT_FALSE(c.status().attempted);
  // The first success is no change (there was nothing before it).
  EXPECT_EQ(c.Succeeded(1000, 0.004), CanaryTracker::Change::kNone);
  EXPECT_TRUE(c.status().attempted);
  EXPECT_TRUE(c.status().up);
  EXPECT_DOUBLE_EQ(c.status().since_unix, 1000);
  EXPECT_DOUBLE_EQ(c.status().connect_seconds, 0.004);
  EXPECT_EQ(c.Succeeded(1030, 0.003), CanaryTracker::Change::kNone);
  EXPECT_DOUBLE_EQ(c.status().since_unix, 1000);
  EXPECT_DOUBLE_EQ(c.status().connect_seconds, 0.003);

  EXPECT_EQ(c.Failed(1060, Reason::kRefused, ECONNREFUSED, ""), CanaryTracker::Change::kFailed);
  EXPECT_EQ(c.Failed(1090, Reason::kRefused, ECONNREFUSED, ""), CanaryTracker::Change::kNone);
  EXPECT_EQ(c.Failed(1120, Reason::kTimeout, 0, "no answer"), CanaryTracker::Change::kNone);
  EXPECT_FALSE(c.status().up);
  EXPECT_DOUBLE_EQ(c.status().since_unix, 1060);
  EXPECT_EQ(c.status().failures[Count(Reason::kRefused)], 2u);
  EXPECT_EQ(c.status().failures[Count(Reason::kTimeout)], 1u);
  EXPECT_EQ(c.status().last_reason, Reason::kTimeout);
  EXPECT_EQ(c.status().last_detail, "no answer");
  EXPECT_EQ(c.failed_in_row(), 3u);
  // The last good duration is kept while it fails.
  EXPECT_DOUBLE_EQ(c.status().connect_seconds, 0.003);

  EXPECT_EQ(c.Succeeded(1150, 0.002), CanaryTracker::Change::kRecovered);
  EXPECT_EQ(c.failed_in_row(), 0u);
  EXPECT_DOUBLE_EQ(c.status().since_unix, 1150);
  EXPECT_EQ(c.status().attempts, 6u);

  // A first attempt that fails is a change: the canary is down.
  CanaryTracker d(30);
  EXPECT_EQ(d.Failed(5, Reason::kTimeout, 0, ""), CanaryTracker::Change::kFailed);
  EXPECT_FALSE(d.status().has_duration);
}

TEST(CanaryTracker, InheritKeepsCountersAndTheLastOutcomeWithTheNewInterval) {
  CanaryTracker old(30);
  old.Failed(10, Reason::kRefused, ECONNREFUSED, "");
  old.Failed(40, Reason::kRefused, ECONNREFUSED, "");
  CanaryTracker next(5);
  next.Inherit(old);
  EXPECT_DOUBLE_EQ(next.status().interval_seconds, 5);
  EXPECT_EQ(next.status().failures[Count(Reason::kRefused)], 2u);
  EXPECT_TRUE(next.status().attempted);
  EXPECT_FALSE(next.status().up);
  // Still down: the next failure is no news, a success is a recovery.
  EXPECT_EQ(next.Failed(45, Reason::kRefused, ECONNREFUSED, ""), CanaryTracker::Change::kNone);
  EXPECT_EQ(next.Succeeded(50, 0.001), CanaryTracker::Change::kRecovered);
}

// --- The series -------------------------------------------------------------------

TEST(CanaryMetrics, OnlyTargetsWithACanaryHaveItsSeries) {
  Snapshot snap;
  auto target = [&](const std::string& name, std::shared_ptr<CanarySnapshot> canary) {
    auto cfg = std::make_shared<TargetConfig>();
    cfg->name = name;
    cfg->address = "192.0.2.1:80";
    TargetSnapshot t;
    t.config = cfg;
    t.canary = std::move(canary);
    snap.targets.push_back(std::move(t));
  };
  target("plain", nullptr);
  EXPECT_THAT(RenderMetrics(snap), Not(HasSubstr("canary")));

  target("fresh", std::make_shared<CanarySnapshot>());  // no attempt yet
  EXPECT_THAT(RenderMetrics(snap), Not(HasSubstr("canary")));

  auto failing = std::make_shared<CanarySnapshot>();
  failing->attempted = true;
  failing->failures[Count(Reason::kRefused)] = 3;
  failing->failures[Count(Reason::kTimeout)] = 1;
  target("failing", failing);
  auto good = std::make_shared<CanarySnapshot>();
  good->attempted = true;
  good->up = true;
  good->has_duration = true;
  good->connect_seconds = 0.00025;
  target("good", good);
  const std::string text = RenderMetrics(snap);
  EXPECT_THAT(text, HasSubstr("# TYPE connwatch_target_canary_up gauge\n"
                              "connwatch_target_canary_up{target=\"failing\"} 0\n"
                              "connwatch_target_canary_up{target=\"good\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("# TYPE connwatch_target_canary_failures_total counter\n"
                        "connwatch_target_canary_failures_total{target=\"failing\",reason=\"refused\"} 3\n"
                        "connwatch_target_canary_failures_total{target=\"failing\",reason=\"timeout\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE connwatch_target_canary_connect_duration_seconds gauge\n"
                              "connwatch_target_canary_connect_duration_seconds{target=\"good\"} "
                              "0.00025\n"));
  EXPECT_THAT(text, Not(HasSubstr("canary_up{target=\"fresh\"}")));
  EXPECT_THAT(text, Not(HasSubstr("canary_up{target=\"plain\"}")));
  // The real consumer's linter accepts them.
  ExpectPromtoolAccepts(text);
}

// --- End to end on loopback ---------------------------------------------------------

// TIME_WAIT sockets (state 06 of /proc/net/tcp, this network namespace) with
// `port` at either end.
size_t TimeWaitOnPort(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // the header
  size_t n = 0;
  auto port_of = [](const std::string& address) -> unsigned long {
    const size_t colon = address.find(':');
    return colon == std::string::npos ? 0 : std::stoul(address.substr(colon + 1), nullptr, 16);
  };
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (state == "06" && (port_of(local) == port || port_of(remote) == port)) ++n;
  }
  return n;
}

// A plain client that connects and closes first, gracefully: its socket
// must then show in TIME_WAIT (the control for TimeWaitOnPort).
void GracefulCloseFirst(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  close(fd);
}

class CanaryTest : public MonitorTest {
 protected:
  static std::string Canary(const std::string& interval, const std::string& timeout) {
    return "    canary: {interval: " + interval + ", timeout: " + timeout + "}\n";
  }
  static bool CanaryUp(const TargetSnapshot& t) {
    return t.canary && t.canary->attempted && t.canary->up;
  }
  static bool CanaryDown(const TargetSnapshot& t) {
    return t.canary && t.canary->attempted && !t.canary->up;
  }
  size_t EventsOf(const std::string& target, const std::string& kind) const {
    size_t n = 0;
    for (const Event& e : log_->Recent()) n += e.target == target && e.kind == kind ? 1 : 0;
    return n;
  }
  std::string Metrics() {
    auto snap = monitor_->GetSnapshot();
    return snap ? RenderMetrics(*snap) : std::string();
  }
};

// The listener dies, the accepted connection lives on: the held connection
// stays up (no disconnect, no reconnect), the canary fails as refused, once
// logged, and /metrics shows what ConnwatchHeldUpButNewConnectionsFail looks
// for. A new listener on the port brings the canary back. No canary
// connection was closed with a FIN or left a TIME_WAIT.
TEST_F(CanaryTest, ListenerGoneHeldUpCanaryRefusedThenRecovers) {
  auto peer = StartPeer();
  const uint16_t port = peer->port();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer), Canary("100ms", "500ms")));
  TargetSnapshot t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return s.up && CanaryUp(s) && s.canary->attempts >= 4; },
      "up, and the canary up after 4 attempts");
  EXPECT_EQ(t.connects, 1u);
  EXPECT_GT(t.canary->connect_seconds, 0);
  EXPECT_LT(t.canary->connect_seconds, 0.5);
  EXPECT_DOUBLE_EQ(t.canary->interval_seconds, 0.1);
  // The peer saw each canary connection end with RST, none with FIN.
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->client_resets() >= 3; }, kDeadline))
      << "client_resets=" << peer->client_resets();
  EXPECT_EQ(peer->client_fins(), 0u);
  EXPECT_EQ(TimeWaitOnPort(port), 0u) << "a canary connection left TIME_WAIT on port " << port;
  EXPECT_EQ(EventsOf("a", "canary_failure"), 0u);
  EXPECT_EQ(EventsOf("a", "canary_recovered"), 0u);

  peer->StopListening();
  t = WaitForTarget(
      "a",
      [](const TargetSnapshot& s) {
        return CanaryDown(s) && s.canary->failures[Count(Reason::kRefused)] >= 3;
      },
      "the canary refused 3 times");
  EXPECT_TRUE(t.up) << "the held connection must live on";
  EXPECT_EQ(t.connects, 1u);
  for (size_t r = 0; r < kReasonCount; ++r) EXPECT_EQ(t.disconnects[r], 0u) << r;
  EXPECT_EQ(t.canary->last_reason, Reason::kRefused);
  EXPECT_EQ(t.canary->last_errno, ECONNREFUSED);
  Event failure = WaitForEvent("a", "canary_failure");
  EXPECT_EQ(failure.level, LogLevel::kWarn);
  EXPECT_EQ(ReasonName(failure.reason), "refused");
  EXPECT_EQ(ErrnoName(failure.err), "ECONNREFUSED");
  EXPECT_THAT(failure.detail, HasSubstr("the held connection is up"));
  EXPECT_EQ(failure.resolved_address, Addr(*peer));
  EXPECT_EQ(EventsOf("a", "canary_failure"), 1u) << "one line for the change, not per attempt";

  // The alert's condition, as Prometheus would scrape it.
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("connwatch_target_up{target=\"a\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("connwatch_target_canary_up{target=\"a\"} 0\n"));
  EXPECT_THAT(metrics,
              HasSubstr("connwatch_target_canary_failures_total{target=\"a\",reason=\"refused\"} "));
  // The held connection's own figures know nothing of the canary.
  EXPECT_THAT(metrics, Not(HasSubstr("connwatch_target_connect_failures_total{target=\"a\"")));

  // The API.
  Json api = TargetJson(t);
  ASSERT_TRUE(api["canary"].is_object()) << api.dump();
  EXPECT_EQ(api["canary"]["up"], false);
  EXPECT_GE(api["canary"]["failures"]["refused"].get<uint64_t>(), 3u);
  EXPECT_EQ(api["canary"]["last_failure"]["reason"], "refused");
  EXPECT_EQ(api["canary"]["last_failure"]["errno"], "ECONNREFUSED");
  EXPECT_EQ(api["canary"]["interval_seconds"], 0.1);

  ASSERT_EQ(peer->Listen(), "");
  t = WaitForTarget("a", CanaryUp, "the canary up again");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  Event recovered = WaitForEvent("a", "canary_recovered");
  EXPECT_EQ(recovered.level, LogLevel::kInfo);
  EXPECT_THAT(recovered.detail, HasSubstr("a new connection succeeded again after "));
  EXPECT_GT(recovered.connect_seconds, 0);
  EXPECT_THAT(Metrics(), HasSubstr("connwatch_target_canary_up{target=\"a\"} 1\n"));
  // Several more attempts, still no FIN and no TIME_WAIT.
  const size_t resets = peer->client_resets();
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->client_resets() >= resets + 3; }, kDeadline));
  EXPECT_EQ(peer->client_fins(), 0u);
  EXPECT_EQ(TimeWaitOnPort(port), 0u);
  StopMonitor();

  // The control: a client that closes first with a FIN does leave TIME_WAIT,
  // so the count above would have seen one.
  GracefulCloseFirst(port);
  EXPECT_TRUE(WaitFor([&] { return TimeWaitOnPort(port) > 0; }, kDeadline))
      << "a graceful close did not show in /proc/net/tcp as TIME_WAIT";
}

// The server hangs: it listens but no longer accepts, and its backlog is
// full (backlog 0 holds one connection; the kernel drops further SYNs). The
// held connection is up; the canary times out. Accepting again brings it back.
TEST_F(CanaryTest, FullBacklogIsACanaryTimeoutThenRecovers) {
  PeerOptions opts;
  opts.backlog = 0;
  auto peer = StartPeer(opts);
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer), Canary("100ms", "300ms")));
  WaitForTarget("a", [](const TargetSnapshot& s) { return s.up && CanaryUp(s); },
                "up with the canary up");
  peer->PauseAccepting();
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(peer->port());
  std::vector<int> fillers;
  for (int i = 0; i < 2; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(c, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    fillers.push_back(c);
  }
  TargetSnapshot t = WaitForTarget(
      "a",
      [](const TargetSnapshot& s) {
        return CanaryDown(s) && s.canary->failures[Count(Reason::kTimeout)] >= 2;
      },
      "the canary timed out twice");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  EXPECT_EQ(t.canary->last_reason, Reason::kTimeout);
  EXPECT_THAT(t.canary->last_detail, HasSubstr("300ms"));
  Event failure = WaitForEvent("a", "canary_failure");
  EXPECT_EQ(ReasonName(failure.reason), "timeout");
  EXPECT_EQ(EventsOf("a", "canary_failure"), 1u);

  peer->ResumeAccepting();
  t = WaitForTarget("a", CanaryUp, "the canary up again");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  WaitForEvent("a", "canary_recovered");
  for (int c : fillers) close(c);
}

// The reverse: every held connection dies at once (the peer closes what it
// accepts), while new connections complete: the canary stays up and never
// fails; ConnwatchNewConnectionsWorkButHeldDown's condition shows.
TEST_F(CanaryTest, HeldKeepsDyingWhileNewConnectionsWork) {
  auto peer = StartPeer();
  peer->SetMode(PeerMode::kCloseOnAccept);
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer), Canary("100ms", "500ms")));
  TargetSnapshot t = WaitForTarget(
      "a",
      [](const TargetSnapshot& s) {
        return !s.up && CanaryUp(s) && s.canary->attempts >= 3 &&
               s.disconnects[Count(Reason::kPeerClosed)] >= 2;
      },
      "held down after 2 peer_closed, the canary up after 3 attempts");
  for (size_t r = 0; r < kReasonCount; ++r) EXPECT_EQ(t.canary->failures[r], 0u) << r;
  EXPECT_EQ(EventsOf("a", "canary_failure"), 0u);
}

// A name that never resolves: no address, so no attempt and no series.
TEST_F(CanaryTest, NoAddressNoAttempt) {
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("n", "no-such-host.invalid:80", Canary("100ms", "100ms")));
  TargetSnapshot t = WaitForTarget(
      "n",
      [](const TargetSnapshot& s) {
        return s.connect_failures[Count(Reason::kDnsError)] >= 3;
      },
      "three dns_error attempts");
  ASSERT_TRUE(t.canary);
  EXPECT_FALSE(t.canary->attempted);
  EXPECT_EQ(t.canary->attempts, 0u);
  EXPECT_THAT(Metrics(), Not(HasSubstr("connwatch_target_canary")));
}

// Canary connects take admission tokens like every connect: at 5 connects a
// second, a canary that wants 10 gets about 5.
TEST_F(CanaryTest, AttemptsArePacedByAdmission) {
  auto peer = StartPeer();
  StartMonitor("global: {max_connects_per_second: 5}\n" + Defaults() + "targets:\n" +
               TargetYaml("a", Addr(*peer), Canary("100ms", "500ms")));
  TargetSnapshot t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return s.up && CanaryUp(s); }, "up with the canary up");
  const uint64_t before = t.canary->attempts;
  const auto from = SteadyClock::now();
  t = WaitForTarget(
      "a", [&](const TargetSnapshot& s) { return s.canary->attempts >= before + 5; },
      "5 more attempts", milliseconds(5000));
  const double took = std::chrono::duration<double>(SteadyClock::now() - from).count();
  // 5 attempts at 5 per second: about a second (the bucket holds one token);
  // at the canary's own 10 per second it would be half of that.
  EXPECT_GT(took, 0.75) << "5 attempts in " << took << "s: not paced";
  EXPECT_EQ(t.connects, 1u);
}

// A reload that changes the canary keeps its counters and last outcome; one
// that removes it removes its series.
TEST_F(CanaryTest, ReloadCarriesTheCanaryAndRemovesIt) {
  auto peer = StartPeer();
  const std::string base = Defaults() + "targets:\n";
  StartMonitor(base + TargetYaml("a", Addr(*peer), Canary("100ms", "500ms")));
  TargetSnapshot t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return CanaryUp(s) && s.canary->attempts >= 3; },
      "3 canary attempts");
  const uint64_t attempts = t.canary->attempts;

  RewriteConfig(base + TargetYaml("a", Addr(*peer), Canary("150ms", "500ms")));
  ASSERT_TRUE(monitor_->Reload().empty());
  t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return s.canary && s.canary->interval_seconds == 0.15; },
      "the new interval");
  EXPECT_GE(t.canary->attempts, attempts) << "counters carried over the reload";
  EXPECT_TRUE(t.canary->attempted);
  EXPECT_THAT(Metrics(), HasSubstr("connwatch_target_canary_up{target=\"a\"}"));

  RewriteConfig(base + TargetYaml("a", Addr(*peer)));
  ASSERT_TRUE(monitor_->Reload().empty());
  WaitForTarget("a", [](const TargetSnapshot& s) { return !s.canary; }, "no canary");
  EXPECT_THAT(Metrics(), Not(HasSubstr("connwatch_target_canary")));
  auto snap = monitor_->GetSnapshot();
  ASSERT_TRUE(snap);
  EXPECT_TRUE(TargetJson(snap->targets.at(0))["canary"].is_null());
}

// TLS targets: every canary attempt is a full, verified handshake with the
// target's settings; the duration includes it. The held session stays one.
class CanaryTlsTest : public CanaryTest {
 protected:
  void SetUp() override { ASSERT_TRUE(certs_.ok()) << certs_.error(); }
  TempDir certs_dir_;
  TlsFixtures certs_{certs_dir_};
};

TEST_F(CanaryTlsTest, EachAttemptIsAVerifiedHandshake) {
  PeerOptions opts;
  opts.tls_cert_file = certs_.Path("server.crt");
  opts.tls_key_file = certs_.Path("server.key");
  auto peer = StartPeer(opts);
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("api", Addr(*peer),
                          "    tls: {ca_file: \"" + certs_.Path("ca.crt") + "\"}\n" +
                              Canary("100ms", "1s")));
  TargetSnapshot t = WaitForTarget(
      "api", [](const TargetSnapshot& s) { return s.up && CanaryUp(s) && s.canary->attempts >= 3; },
      "up, and 3 canary handshakes");
  EXPECT_EQ(t.connects, 1u);
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->tls_handshakes() >= 4; }, kDeadline))
      << "tls_handshakes=" << peer->tls_handshakes();
  EXPECT_EQ(peer->tls_failures(), 0u);
  EXPECT_GT(t.canary->connect_seconds, 0);
  EXPECT_EQ(EventsOf("api", "canary_failure"), 0u);
}

// A TLS target whose server stops verifying (a certificate for another
// name, served from the same port after a restart): the held session
// made before lives on, the canary's handshakes fail as tls_verify.
TEST_F(CanaryTlsTest, ANewCertificateThatDoesNotVerifyFailsTheCanaryOnly) {
  PeerOptions good;
  good.tls_cert_file = certs_.Path("server.crt");
  good.tls_key_file = certs_.Path("server.key");
  auto peer = StartPeer(good);
  const uint16_t port = peer->port();
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("api", Addr(*peer),
                          "    tls: {ca_file: \"" + certs_.Path("ca.crt") + "\"}\n" +
                              Canary("100ms", "1s")));
  WaitForTarget("api", [](const TargetSnapshot& s) { return s.up && CanaryUp(s); },
                "up with the canary up");
  // A second server on the same port with the wrong certificate: the old one
  // stops listening (its held session stays), the new one takes the port.
  peer->StopListening();
  PeerOptions wrong;
  wrong.port = port;
  wrong.tls_cert_file = certs_.Path("wrongname.crt");
  wrong.tls_key_file = certs_.Path("wrongname.key");
  auto impostor = StartPeer(wrong);
  TargetSnapshot t = WaitForTarget(
      "api",
      [](const TargetSnapshot& s) {
        return CanaryDown(s) && s.canary->failures[Count(Reason::kTlsVerify)] >= 2;
      },
      "the canary failing tls_verify");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  EXPECT_THAT(t.canary->last_detail, HasSubstr("mismatch"));
}

}  // namespace
}  // namespace connwatch
