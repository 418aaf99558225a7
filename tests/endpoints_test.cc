// Targets that hold every address behind a name (`addresses: all`, `srv:`)
// against a real DNS server (tests/dnsmasq.h): each address an endpoint with
// its own connection, state and series; endpoints follow the records as the
// test rewrites them. Peers listen on the same port of 127.0.0.1-3 (and ::1),
// so every record names a reachable server.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "dnsmasq.h"
#include "monitor_fixture.h"
#include "test_peer.h"
#include "test_util.h"
#include "web/metrics_text.h"

namespace connwatch {
namespace {

using namespace connwatch::testing;  // NOLINT: the fixture and its helpers

class EndpointsTest : public MonitorTest {
 protected:
  void SetUp() override {
    peers_.push_back(StartPeer());
    port_ = std::to_string(peers_[0]->port());
    for (const char* address : {"127.0.0.2", "127.0.0.3"}) {
      PeerOptions options;
      options.bind_address = address;
      options.port = peers_[0]->port();
      peers_.push_back(StartPeer(options));
    }
  }

  // dnsmasq with `hosts`; skips the test when it cannot run.
  bool StartDns(const std::string& hosts, const std::vector<std::string>& extra = {}) {
    dns_ = std::make_unique<Dnsmasq>(dir_, hosts, 1, extra);
    if (!dns_->why_not().empty()) return false;
    dns_servers_ = dns_->server();
    return true;
  }

  std::string Ep(int i) const { return "127.0.0." + std::to_string(i) + ":" + port_; }

  std::vector<TargetSnapshot> Endpoints(const std::string& name) {
    std::vector<TargetSnapshot> out;
    auto snap = monitor_->GetSnapshot();
    if (!snap) return out;
    for (const auto& t : snap->targets) {
      if (t.config->name == name) out.push_back(t);
    }
    return out;
  }

  static std::string Describe(const std::vector<TargetSnapshot>& endpoints) {
    std::string out;
    for (const auto& t : endpoints) {
      out += (t.endpoint ? t.endpoint->endpoint : std::string("(no endpoint)")) + " " +
             std::string(StateName(t.state)) + (t.up ? " up" : " down") +
             " connects=" + std::to_string(t.connects) + "; ";
    }
    return out.empty() ? "none" : out;
  }

  // Waits until the target's endpoints are exactly `expected` (in address
  // order) and all up.
  std::vector<TargetSnapshot> WaitEndpointsUp(const std::string& name,
                                              const std::vector<std::string>& expected) {
    std::vector<TargetSnapshot> last;
    const bool ok = WaitFor(
        [&] {
          last = Endpoints(name);
          if (last.size() != expected.size()) return false;
          for (size_t i = 0; i < last.size(); ++i) {
            if (!last[i].endpoint || last[i].endpoint->endpoint != expected[i] || !last[i].up) {
              return false;
            }
          }
          return true;
        },
        kDeadline);
    std::string want;
    for (const auto& e : expected) want += e + " ";
    EXPECT_TRUE(ok) << name << ": expected endpoints up: " << want << "; saw " << Describe(last)
                    << "\nevents:\n" << RecentEvents();
    return last;
  }

  std::string Metrics() {
    std::string out;
    AppendTargetFamilies(*monitor_->GetSnapshot(), &out);
    return out;
  }

  std::string PoolYaml(const std::string& extra = "") const {
    return Defaults() + "targets:\n" +
           TargetYaml("pool", "pool.test:" + port_,
                      "    addresses: all\n    resolve_interval: 100ms\n" + extra);
  }

  std::vector<std::unique_ptr<TestPeer>> peers_;
  std::string port_;
  std::unique_ptr<Dnsmasq> dns_;
};

bool NoDisconnects(const TargetSnapshot& t) {
  for (uint64_t n : t.disconnects) {
    if (n != 0) return false;
  }
  return true;
}

constexpr const char* kThree = "127.0.0.1 pool.test\n127.0.0.2 pool.test\n127.0.0.3 pool.test\n";

TEST_F(EndpointsTest, ThreeARecordsAreThreeEndpointsWithTheirOwnSeries) {
  if (!StartDns(kThree)) GTEST_SKIP() << dns_->why_not();
  StartMonitor(PoolYaml("    address_family: ip4\n"));
  auto endpoints = WaitEndpointsUp("pool", {Ep(1), Ep(2), Ep(3)});
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(peers_[static_cast<size_t>(i)]->WaitForOpenConnections(1, kDeadline))
        << "no connection held to " << Ep(i + 1);
  }
  for (const auto& t : endpoints) {
    EXPECT_EQ(t.connects, 1u);
    EXPECT_EQ(t.resolved_address, t.endpoint->endpoint);
    EXPECT_FALSE(t.resolves_name) << "an endpoint never looks its address up";
  }
  const std::string metrics = Metrics();
  for (int i = 1; i <= 3; ++i) {
    const std::string labels = "{target=\"pool\",endpoint=\"" + Ep(i) + "\"";
    EXPECT_NE(metrics.find("connwatch_target_up" + labels + "} 1\n"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("connwatch_target_info" + labels + ",address=\"pool.test:" + port_ +
                           "\"} 1\n"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("connwatch_target_connects_total" + labels + "} 1\n"),
              std::string::npos)
        << metrics;
  }
  EXPECT_EQ(metrics.find("connwatch_target_up{target=\"pool\"}"), std::string::npos)
      << "no series without an endpoint once endpoints are held:\n" << metrics;
  EXPECT_EQ(metrics.find("connwatch_target_address_stale{target=\"pool\""), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("connwatch_dns_failures_total{target=\"pool\"} 0\n"), std::string::npos)
      << "one series for the name:\n" << metrics;
  // Events name their endpoint.
  size_t connects = 0;
  for (const Event& e : log_->Recent()) {
    if (e.target != "pool" || e.kind != "connect") continue;
    ++connects;
    EXPECT_FALSE(e.endpoint.empty());
    EXPECT_NE(log_->FormatEvent(e).find("endpoint=" + e.endpoint), std::string::npos)
        << log_->FormatEvent(e);
  }
  EXPECT_EQ(connects, 3u);
}

TEST_F(EndpointsTest, RemovedRecordClosesItsEndpointAndAddedRecordOpensOne) {
  if (!StartDns(kThree)) GTEST_SKIP() << dns_->why_not();
  StartMonitor(PoolYaml("    address_family: ip4\n"));
  WaitEndpointsUp("pool", {Ep(1), Ep(2), Ep(3)});

  dns_->SetHosts("127.0.0.1 pool.test\n127.0.0.2 pool.test\n");
  Event closed = WaitForEvent("pool", "close");
  EXPECT_EQ(closed.endpoint, Ep(3));
  EXPECT_EQ(closed.detail, "address no longer in DNS");
  auto endpoints = WaitEndpointsUp("pool", {Ep(1), Ep(2)});
  for (const auto& t : endpoints) {
    EXPECT_EQ(t.connects, 1u) << t.endpoint->endpoint << " kept its connection";
    EXPECT_TRUE(NoDisconnects(t));
  }
  EXPECT_TRUE(WaitFor([&] { return peers_[2]->open_connections() == 0; }, kDeadline))
      << "the connection to " << Ep(3) << " is still open";
  std::string metrics = Metrics();
  EXPECT_EQ(metrics.find("endpoint=\"" + Ep(3) + "\""), std::string::npos)
      << "the removed endpoint's series are gone:\n" << metrics;
  EXPECT_EQ(metrics.find("connwatch_target_disconnects_total"), std::string::npos)
      << "our own close is no disconnect:\n" << metrics;
  for (const Event& e : log_->Recent()) EXPECT_NE(e.kind, "disconnect") << log_->FormatEvent(e);

  // The record comes back: a new endpoint, a new connection.
  const uint64_t accepted = peers_[2]->accepted_total();
  dns_->SetHosts(kThree);
  endpoints = WaitEndpointsUp("pool", {Ep(1), Ep(2), Ep(3)});
  EXPECT_EQ(endpoints[2].connects, 1u) << "a new endpoint starts with its own counters";
  EXPECT_TRUE(peers_[2]->WaitForOpenConnections(1, kDeadline));
  EXPECT_EQ(peers_[2]->accepted_total(), accepted + 1);
  metrics = Metrics();
  EXPECT_NE(metrics.find("connwatch_target_up{target=\"pool\",endpoint=\"" + Ep(3) + "\"} 1\n"),
            std::string::npos)
      << metrics;
}

TEST_F(EndpointsTest, AaaaRecordOnLoopbackBesideTheARecord) {
  PeerOptions v6;
  v6.bind_address = "::1";
  v6.port = peers_[0]->port();
  auto peer6 = std::make_unique<TestPeer>(v6);
  const std::string err = peer6->Start();
  if (!err.empty()) GTEST_SKIP() << "cannot bind [::1] on this host: " << err;
  if (!StartDns("127.0.0.1 dual.test\n::1 dual.test\n")) GTEST_SKIP() << dns_->why_not();
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("dual", "dual.test:" + port_,
                          "    addresses: all\n    resolve_interval: 100ms\n") +
               TargetYaml("dual4", "dual.test:" + port_,
                          "    addresses: all\n    address_family: ip4\n"));
  WaitEndpointsUp("dual", {Ep(1), "[::1]:" + port_});
  EXPECT_TRUE(peer6->WaitForOpenConnections(1, kDeadline));
  WaitEndpointsUp("dual4", {Ep(1)});
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("connwatch_target_up{target=\"dual\",endpoint=\"[::1]:" + port_ +
                         "\"} 1\n"),
            std::string::npos)
      << metrics;
}

TEST_F(EndpointsTest, SrvRecordsWithTwoHostsGiveTwoEndpointsWithPriorityAndWeight) {
  if (!StartDns("127.0.0.1 a.test\n127.0.0.2 b.test\n",
                {"--srv-host=_db._tcp.srv.test,a.test," + port_ + ",10,5",
                 "--srv-host=_db._tcp.srv.test,b.test," + port_ + ",20,1"})) {
    GTEST_SKIP() << dns_->why_not();
  }
  StartMonitor(Defaults() + "targets:\n  - name: db\n    srv: _db._tcp.srv.test\n"
               "    address_family: ip4\n    resolve_interval: 100ms\n"
               "    labels: {team: data}\n");
  auto endpoints = WaitEndpointsUp("db", {Ep(1), Ep(2)});
  EXPECT_EQ(endpoints[0].endpoint->srv_host, "a.test");
  EXPECT_EQ(endpoints[0].endpoint->priority, 10);
  EXPECT_EQ(endpoints[1].endpoint->weight, 1);
  EXPECT_TRUE(peers_[0]->WaitForOpenConnections(1, kDeadline));
  EXPECT_TRUE(peers_[1]->WaitForOpenConnections(1, kDeadline));
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("connwatch_target_info{target=\"db\",endpoint=\"" + Ep(1) +
                         "\",address=\"_db._tcp.srv.test\",priority=\"10\",weight=\"5\","
                         "team=\"data\"} 1\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("connwatch_target_info{target=\"db\",endpoint=\"" + Ep(2) +
                         "\",address=\"_db._tcp.srv.test\",priority=\"20\",weight=\"1\","
                         "team=\"data\"} 1\n"),
            std::string::npos)
      << metrics;
}

TEST_F(EndpointsTest, SrvHostThatNoLongerResolvesKeepsItsEndpoint) {
  if (!StartDns("127.0.0.1 a.test\n127.0.0.2 b.test\n",
                {"--srv-host=_db._tcp.srv.test,a.test," + port_ + ",10,5",
                 "--srv-host=_db._tcp.srv.test,b.test," + port_ + ",20,1"})) {
    GTEST_SKIP() << dns_->why_not();
  }
  StartMonitor(Defaults() + "targets:\n  - name: db\n    srv: _db._tcp.srv.test\n"
               "    address_family: ip4\n    resolve_interval: 100ms\n");
  WaitEndpointsUp("db", {Ep(1), Ep(2)});
  // b.test's lookup fails: no evidence its endpoint is gone.
  dns_->SetHosts("127.0.0.1 a.test\n");
  const bool counted = WaitFor(
      [&] {
        auto e = Endpoints("db");
        return !e.empty() && e[0].dns_failures >= 2;
      },
      kDeadline);
  EXPECT_TRUE(counted) << "failed host lookups counted; saw " << Describe(Endpoints("db"))
                       << "\n" << RecentEvents();
  auto endpoints = WaitEndpointsUp("db", {Ep(1), Ep(2)});
  for (const auto& t : endpoints) EXPECT_EQ(t.connects, 1u) << t.endpoint->endpoint;
  Event failure = WaitForEvent("db", "dns_failure");
  EXPECT_NE(failure.detail.find("b.test"), std::string::npos) << failure.detail;
  for (const Event& e : log_->Recent()) EXPECT_NE(e.kind, "close") << log_->FormatEvent(e);
}

TEST_F(EndpointsTest, DnsServerStoppedKeepsEveryEndpointAndCountsFailures) {
  if (!StartDns(kThree)) GTEST_SKIP() << dns_->why_not();
  StartMonitor(PoolYaml("    address_family: ip4\n"));
  WaitEndpointsUp("pool", {Ep(1), Ep(2), Ep(3)});
  dns_->Stop();
  const bool counted = WaitFor(
      [&] {
        auto endpoints = Endpoints("pool");
        return !endpoints.empty() && endpoints[0].name_series && endpoints[0].dns_failures >= 2;
      },
      kDeadline);
  EXPECT_TRUE(counted) << "two DNS failures counted; saw " << Describe(Endpoints("pool"));
  auto endpoints = Endpoints("pool");
  ASSERT_EQ(endpoints.size(), 3u) << Describe(endpoints);
  for (const auto& t : endpoints) {
    EXPECT_TRUE(t.up) << t.endpoint->endpoint;
    EXPECT_EQ(t.connects, 1u) << t.endpoint->endpoint;
  }
  for (const auto& peer : peers_) EXPECT_EQ(peer->open_connections(), 1u);
  Event failure = WaitForEvent("pool", "dns_failure");
  EXPECT_NE(failure.detail.find("the 3 endpoints held are kept"), std::string::npos)
      << failure.detail;
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("connwatch_dns_failures_total{target=\"pool\"} "), std::string::npos)
      << metrics;
  EXPECT_EQ(metrics.find("connwatch_dns_failures_total{target=\"pool\",endpoint"),
            std::string::npos)
      << metrics;
}

TEST_F(EndpointsTest, NameWithoutAnswerIsOneDownPlaceholderUntilItResolves) {
  if (!StartDns("127.0.0.1 other.test\n")) GTEST_SKIP() << dns_->why_not();
  StartMonitor(PoolYaml("    address_family: ip4\n"));
  TargetSnapshot t = WaitForTarget(
      "pool", [](const TargetSnapshot& s) { return s.dns_failures >= 1; }, "a DNS failure");
  EXPECT_FALSE(t.endpoint);
  EXPECT_FALSE(t.up);
  EXPECT_EQ(Endpoints("pool").size(), 1u);
  EXPECT_NE(Metrics().find("connwatch_target_up{target=\"pool\"} 0\n"), std::string::npos)
      << Metrics();
  dns_->SetHosts("127.0.0.1 other.test\n127.0.0.2 pool.test\n");
  WaitEndpointsUp("pool", {Ep(2)});
  EXPECT_EQ(Metrics().find("connwatch_target_up{target=\"pool\"}"), std::string::npos)
      << Metrics();
}

TEST_F(EndpointsTest, ReloadKeepsUnchangedEndpointsAndCarriesCountersOverAChange) {
  if (!StartDns(kThree)) GTEST_SKIP() << dns_->why_not();
  StartMonitor(PoolYaml("    address_family: ip4\n"));
  WaitEndpointsUp("pool", {Ep(1), Ep(2), Ep(3)});
  const uint64_t accepted = peers_[0]->accepted_total();

  // Another target added: the pool's endpoints keep their connections.
  RewriteConfig(PoolYaml("    address_family: ip4\n") + TargetYaml("other", Ep(1)));
  ASSERT_TRUE(monitor_->Reload().empty());
  WaitUp("other");
  auto endpoints = WaitEndpointsUp("pool", {Ep(1), Ep(2), Ep(3)});
  for (const auto& t : endpoints) EXPECT_EQ(t.connects, 1u) << t.endpoint->endpoint;
  // The peer accepts after the kernel finished the handshake connwatchd saw.
  EXPECT_TRUE(WaitFor([&] { return peers_[0]->accepted_total() >= accepted + 1; }, kDeadline));
  EXPECT_EQ(peers_[0]->accepted_total(), accepted + 1) << "only the new target connected";

  // The pool's config changes: each endpoint reconnects with its counters.
  RewriteConfig(PoolYaml("    address_family: ip4\n    connect_timeout: 2s\n"));
  ASSERT_TRUE(monitor_->Reload().empty());
  const bool reconnected = WaitFor(
      [&] {
        auto e = Endpoints("pool");
        if (e.size() != 3) return false;
        for (const auto& t : e) {
          if (!t.up || t.connects != 2) return false;
        }
        return true;
      },
      kDeadline);
  EXPECT_TRUE(reconnected) << "each endpoint up again with connects=2; saw "
                           << Describe(Endpoints("pool")) << "\n" << RecentEvents();
  size_t changed = 0;
  for (const Event& e : log_->Recent()) {
    if (e.kind == "close" && e.detail == "config changed" && e.target == "pool") ++changed;
  }
  EXPECT_EQ(changed, 3u);
}

}  // namespace
}  // namespace connwatch
