// Re-resolution of held connections (`addresses: first`, resolve_interval,
// on_address_change) against a real DNS server: dnsmasq on a loopback port,
// answering from a hosts file the test rewrites and SIGHUPs (dnsmasq rereads
// --addn-hosts on SIGHUP and logs "read <file>"). Two peers listen on the
// same port of 127.0.0.1 and 127.0.0.2, so a record change is a failover.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "dnsmasq.h"
#include "monitor_fixture.h"
#include "net/resolver.h"
#include "test_peer.h"
#include "test_util.h"
#include "web/metrics_text.h"

namespace connwatch {
namespace {

using namespace connwatch::testing;  // NOLINT: the fixture and its helpers

class DnsTest : public MonitorTest {
 protected:
  void SetUp() override {
    primary_ = StartPeer();
    PeerOptions second;
    second.bind_address = "127.0.0.2";
    second.port = primary_->port();
    secondary_ = StartPeer(second);
    port_ = std::to_string(primary_->port());
    dns_ = std::make_unique<Dnsmasq>(dir_, "127.0.0.1 db.test\n", 1);
    if (!dns_->why_not().empty()) GTEST_SKIP() << dns_->why_not();
    dns_servers_ = dns_->server();
  }

  void StartWith(const std::string& extra) {
    StartMonitor(Defaults() + "targets:\n" +
                 TargetYaml("db", "db.test:" + port_, "    resolve_interval: 100ms\n" + extra));
  }

  std::string Metrics() {
    std::string out;
    AppendTargetFamilies(*monitor_->GetSnapshot(), &out);
    return out;
  }

  std::string First() const { return "127.0.0.1:" + port_; }
  std::string Second() const { return "127.0.0.2:" + port_; }

  std::unique_ptr<TestPeer> primary_, secondary_;
  std::string port_;
  std::unique_ptr<Dnsmasq> dns_;
};

bool NoDisconnects(const TargetSnapshot& t) {
  for (uint64_t n : t.disconnects) {
    if (n != 0) return false;
  }
  return true;
}

TEST(ResolveIntervalTest, ConfiguredElseTtlBoundedToFiveSecondsAndFiveMinutes) {
  EXPECT_EQ(ResolveInterval(Millis(250), 60), Millis(250));
  EXPECT_EQ(ResolveInterval(std::nullopt, 1), Millis(5000));
  EXPECT_EQ(ResolveInterval(std::nullopt, 42), Millis(42000));
  EXPECT_EQ(ResolveInterval(std::nullopt, 86400), Millis(300000));
  EXPECT_EQ(ResolveInterval(std::nullopt, -1), Millis(300000));
}

TEST(ResolverTtlTest, AnswersCarryTheRecordTtl) {
  TempDir dir;
  Dnsmasq dns(dir, "127.0.0.1 ttl.test\n", 42);
  if (!dns.why_not().empty()) GTEST_SKIP() << dns.why_not();
  struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
  {
    Resolver resolver(loop);
    ASSERT_EQ(resolver.Init(dns.server()), "");
    std::string status = "no answer";
    std::vector<ResolvedAddress> answer;
    auto request = resolver.Resolve("ttl.test", 80, AddressFamily::kIp4,
                                    [&](const std::string& s, std::vector<ResolvedAddress> a) {
                                      status = s;
                                      answer = std::move(a);
                                      ev_break(loop, EVBREAK_ALL);
                                    });
    ev_timer guard;
    ev_timer_init(&guard, [](struct ev_loop* l, ev_timer*, int) { ev_break(l, EVBREAK_ALL); },
                  5., 0.);
    ev_timer_start(loop, &guard);
    ev_run(loop, 0);
    ev_timer_stop(loop, &guard);
    ASSERT_EQ(status, "");
    ASSERT_EQ(answer.size(), 1u);
    EXPECT_EQ(answer[0].ToString(), "127.0.0.1:80");
    EXPECT_EQ(answer[0].ttl, 42);
  }
  ev_loop_destroy(loop);
}

TEST_F(DnsTest, FailoverReportsTheHeldAddressStaleAndKeepsTheConnection) {
  StartWith("");
  TargetSnapshot t = WaitUp("db");
  EXPECT_EQ(t.resolved_address, First());
  EXPECT_TRUE(t.resolves_name);
  EXPECT_FALSE(t.address_stale);
  EXPECT_NE(Metrics().find("connwatch_target_address_stale{target=\"db\"} 0\n"),
            std::string::npos)
      << Metrics();

  dns_->SetHosts("127.0.0.2 db.test\n");
  Event stale = WaitForEvent("db", "address_stale");
  EXPECT_NE(stale.detail.find("held " + First()), std::string::npos) << stale.detail;
  EXPECT_NE(stale.detail.find("returns " + Second()), std::string::npos) << stale.detail;
  t = WaitForTarget("db", [](const TargetSnapshot& s) { return s.address_stale; }, "stale");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  EXPECT_TRUE(NoDisconnects(t));
  EXPECT_EQ(primary_->open_connections(), 1u);
  EXPECT_EQ(secondary_->accepted_total(), 0u);
  EXPECT_NE(Metrics().find("connwatch_target_address_stale{target=\"db\"} 1\n"),
            std::string::npos)
      << Metrics();

  // A reload that leaves the target alone keeps its connection and its state.
  RewriteConfig(Defaults() + "targets:\n" +
                TargetYaml("db", "db.test:" + port_, "    resolve_interval: 100ms\n") +
                TargetYaml("other", First()));
  ASSERT_TRUE(monitor_->Reload().empty());
  t = WaitUp("other");
  t = WaitForTarget("db", [](const TargetSnapshot& s) { return s.up; }, "up");
  EXPECT_TRUE(t.address_stale);
  EXPECT_EQ(t.connects, 1u);

  // The address comes back: no longer stale, the same connection.
  dns_->SetHosts("127.0.0.1 db.test\n127.0.0.2 db.test\n");
  t = WaitForTarget("db", [](const TargetSnapshot& s) { return !s.address_stale; }, "not stale");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  EXPECT_EQ(secondary_->accepted_total(), 0u);
}

TEST_F(DnsTest, FailoverWithReconnectClosesAndConnectsToTheNewAddress) {
  StartWith("    on_address_change: reconnect\n");
  TargetSnapshot t = WaitUp("db");
  EXPECT_EQ(t.resolved_address, First());

  dns_->SetHosts("127.0.0.2 db.test\n");
  Event closed = WaitForEvent("db", "close");
  EXPECT_NE(closed.detail.find("address no longer in DNS"), std::string::npos) << closed.detail;
  EXPECT_NE(closed.detail.find("held " + First()), std::string::npos) << closed.detail;
  t = WaitForTarget(
      "db", [&](const TargetSnapshot& s) { return s.up && s.resolved_address == Second(); },
      "up on " + Second());
  EXPECT_EQ(t.connects, 2u);
  EXPECT_FALSE(t.address_stale);
  EXPECT_TRUE(NoDisconnects(t)) << "our own close is no disconnect";
  EXPECT_TRUE(secondary_->WaitForOpenConnections(1, kDeadline));
  EXPECT_TRUE(WaitFor([&] { return primary_->open_connections() == 0; }, kDeadline))
      << "the old connection is still open";
  for (const Event& e : log_->Recent()) {
    EXPECT_NE(e.kind, "address_stale") << "reconnect mode reconnects instead of reporting";
    EXPECT_NE(e.kind, "disconnect");
  }
}

TEST_F(DnsTest, DnsServerDownKeepsTheConnectionAndCountsFailures) {
  StartWith("");
  TargetSnapshot t = WaitUp("db");
  EXPECT_EQ(t.dns_failures, 0u);
  dns_->Stop();
  t = WaitForTarget("db", [](const TargetSnapshot& s) { return s.dns_failures >= 2; },
                    "two DNS failures counted");
  EXPECT_TRUE(t.up);
  EXPECT_EQ(t.connects, 1u);
  EXPECT_FALSE(t.address_stale) << "no answer is no evidence against the held address";
  Event failure = WaitForEvent("db", "dns_failure");
  EXPECT_NE(failure.detail.find("the connection is kept"), std::string::npos) << failure.detail;
  EXPECT_EQ(primary_->open_connections(), 1u);
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("connwatch_dns_failures_total{target=\"db\"} "), std::string::npos)
      << metrics;
}

}  // namespace
}  // namespace connwatch
