// TLS targets end to end on loopback: the Monitor holds verified sessions to
// the test peer (tests/peer, TLS mode) and, once, to `openssl s_server`, with
// certificates made by the openssl command line (tests/tls_fixtures.h):
// held session, certificate metrics, every way a TLS connection ends, every
// bad certificate, mutual TLS, heartbeats over TLS, a peer that never answers
// the ClientHello, and reloads that change or keep the TLS settings.

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include "config/loader.h"
#include "monitor_fixture.h"
#include "tls_fixtures.h"

namespace connwatch {
namespace {

using namespace connwatch::testing;  // NOLINT: the fixture and its helpers

double NotAfter(const std::string& pem_file) {
  FILE* f = std::fopen(pem_file.c_str(), "r");
  if (f == nullptr) return -1;
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr) return -1;
  struct tm tm;
  ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm);
  X509_free(cert);
  return static_cast<double>(timegm(&tm));
}

class TlsTest : public MonitorTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok()) << certs_.error();
  }
  std::unique_ptr<TestPeer> TlsPeer(const std::string& cert, const std::string& client_ca = "") {
    PeerOptions opts;
    opts.tls_cert_file = certs_.Path(cert + ".crt");
    opts.tls_key_file = certs_.Path(cert + ".key");
    if (!client_ca.empty()) opts.tls_client_ca_file = certs_.Path(client_ca);
    return StartPeer(opts);
  }
  // `tls: {ca_file: ca.crt, ...extra}` for a target.
  std::string Tls(const std::string& extra = "") const {
    return "    tls: {ca_file: \"" + certs_.Path("ca.crt") + "\"" + extra + "}\n";
  }
  Event Failure(const std::string& target) { return WaitForEvent(target, "connect_failure"); }

  TempDir certs_dir_;
  TlsFixtures certs_{certs_dir_};
};

TEST_F(TlsTest, HeldSessionIsUpWithItsCertificate) {
  auto peer = TlsPeer("server");
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("api", Addr(*peer), Tls()));
  TargetSnapshot t = WaitForTarget(
      "api", [](const TargetSnapshot& s) { return s.up && s.tls; }, "up with a TLS session");
  ASSERT_TRUE(t.tls);
  EXPECT_NE(t.tls->version.find("TLSv1."), std::string::npos) << t.tls->version;
  EXPECT_FALSE(t.tls->cipher.empty());
  EXPECT_EQ(t.tls->subject, "CN=server");
  EXPECT_EQ(t.tls->issuer, "CN=connwatch-test-ca");
  EXPECT_EQ(t.tls->fingerprint.size(), 64u) << t.tls->fingerprint;
  // The earliest notAfter of the chain the peer sent (leaf and CA alike 30 days).
  EXPECT_EQ(t.tls->earliest_expiry_unix, NotAfter(certs_.Path("server.crt")));
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->tls_handshakes() == 1; }, kDeadline));
  Event c = WaitForEvent("api", "connect");
  EXPECT_GE(c.tls_handshake_seconds, 0);
  EXPECT_NE(log_->FormatEvent(c).find(" tls_handshake="), std::string::npos)
      << log_->FormatEvent(c);
  auto snap = monitor_->GetSnapshot();
  EXPECT_EQ(snap->tls_handshake_duration.count, 1u);
}

// Handshake work is bounded per loop iteration (Monitor::Options::
// handshake_slice); at 0 every iteration runs a single handshake step, so
// 30 handshakes at once are all deferred again and again through the
// level-triggered watcher, and every one must still complete.
TEST_F(TlsTest, HandshakesLeftForTheNextIterationAllComplete) {
  handshake_slice_ = 0;
  auto peer = TlsPeer("server");
  std::string yaml =
      "defaults:\n  connect_timeout: 20s\n  check_interval: 1m\n  startup_jitter: 0s\n"
      "targets:\n";
  constexpr int kTargets = 30;
  for (int i = 0; i < kTargets; ++i) yaml += TargetYaml("t" + std::to_string(i), Addr(*peer), Tls());
  StartMonitor(yaml);
  std::shared_ptr<const Snapshot> snap;
  const bool all_up = WaitFor(
      [&] {
        snap = monitor_->GetSnapshot();
        return snap && std::all_of(snap->targets.begin(), snap->targets.end(),
                                   [](const TargetSnapshot& t) { return t.up && t.tls; });
      },
      std::chrono::seconds(30));
  ASSERT_TRUE(snap);
  size_t up = 0;
  for (const TargetSnapshot& t : snap->targets) up += t.up ? 1 : 0;
  EXPECT_TRUE(all_up) << "expected " << kTargets << " TLS targets up, saw " << up;
  EXPECT_EQ(snap->tls_handshake_duration.count, static_cast<uint64_t>(kTargets));
}

TEST_F(TlsTest, CloseNotifyAndBareFinAreBothPeerClosedAndSaySo) {
  auto notify = TlsPeer("server");
  auto bare = TlsPeer("server");
  bare->SetCloseNotify(false);
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("notify", Addr(*notify), Tls()) +
               TargetYaml("bare", Addr(*bare), Tls()));
  WaitUp("notify");
  WaitUp("bare");
  notify->CloseAll();
  bare->CloseAll();
  Event a = WaitForEvent("notify", "disconnect");
  Event b = WaitForEvent("bare", "disconnect");
  EXPECT_EQ(ReasonName(a.reason), "peer_closed");
  EXPECT_EQ(ReasonName(b.reason), "peer_closed");
  EXPECT_EQ(a.close_notify, 1);
  EXPECT_EQ(b.close_notify, 0);
  EXPECT_NE(log_->FormatEvent(a).find(" close_notify=yes"), std::string::npos);
  EXPECT_NE(log_->FormatEvent(b).find(" close_notify=no"), std::string::npos);
}

TEST_F(TlsTest, ResetIsPeerReset) {
  auto peer = TlsPeer("server");
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("api", Addr(*peer), Tls()));
  WaitUp("api");
  peer->ResetAll();
  Event e = WaitForEvent("api", "disconnect");
  EXPECT_EQ(ReasonName(e.reason), "peer_reset");
  EXPECT_EQ(ErrnoName(e.err), "ECONNRESET");
}

TEST_F(TlsTest, FatalAlertAfterTheHandshakeIsTlsAlert) {
  auto peer = TlsPeer("server");
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("api", Addr(*peer), Tls()));
  WaitUp("api");
  peer->SendTlsAlertAll();
  Event e = WaitForEvent("api", "disconnect");
  EXPECT_EQ(ReasonName(e.reason), "tls_alert");
  EXPECT_FALSE(e.detail.empty());
  EXPECT_EQ(DetectorName(e.detected_by), "read");
}

TEST_F(TlsTest, EveryBadCertificateIsTlsVerifyWithOpenSslsWords) {
  auto expired = TlsPeer("expired");
  auto wrong = TlsPeer("wrongname");
  auto self = TlsPeer("selfsigned");
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("expired", Addr(*expired), Tls()) +
               TargetYaml("wrong", Addr(*wrong), Tls()) +
               TargetYaml("wrong-name", "localhost:" + std::to_string(wrong->port()), Tls()) +
               TargetYaml("self", Addr(*self), Tls()));
  struct Case {
    const char* target;
    const char* words;
  } cases[] = {{"expired", "certificate has expired"},
               {"wrong", "IP address mismatch"},
               {"wrong-name", "hostname mismatch"},
               {"self", "self-signed certificate"}};
  for (const Case& c : cases) {
    Event e = Failure(c.target);
    EXPECT_EQ(ReasonName(e.reason), "tls_verify") << c.target << ": " << e.detail;
    EXPECT_NE(e.detail.find(c.words), std::string::npos) << c.target << ": " << e.detail;
  }
}

TEST_F(TlsTest, InsecureSkipVerifyHoldsAnUntrustedPeer) {
  auto self = TlsPeer("selfsigned");
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("self", Addr(*self), "    tls: {insecure_skip_verify: true}\n"));
  TargetSnapshot t = WaitUp("self");
  ASSERT_TRUE(t.tls);
  EXPECT_EQ(t.tls->subject, "CN=selfsigned");
}

TEST_F(TlsTest, MutualTlsWithAndWithoutAClientCertificate) {
  auto peer = TlsPeer("server", "clientca.crt");
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("anonymous", Addr(*peer), Tls()) +
               TargetYaml("client", Addr(*peer),
                          Tls(", cert_file: \"" + certs_.Path("client.crt") + "\", key_file: \"" +
                              certs_.Path("client.key") + "\"")));
  WaitUp("client");
  Event e = Failure("anonymous");
  EXPECT_EQ(ReasonName(e.reason), "tls_handshake") << e.detail;
  EXPECT_FALSE(e.detail.empty());
}

TEST_F(TlsTest, HeartbeatsOverTls) {
  auto echo = TlsPeer("server");
  echo->SetMode(PeerMode::kEcho);
  echo->SetHeartbeat("PING\n", "PONG\n");
  auto silent = TlsPeer("server");
  silent->SetMode(PeerMode::kSilent);
  auto wrong = TlsPeer("server");
  wrong->SetMode(PeerMode::kEcho);
  wrong->SetHeartbeat("PING\n", "ERR\n");
  const std::string hb =
      "    heartbeat: {send: \"PING\\n\", expect: \"PONG\", interval: 100ms, timeout: 80ms}\n";
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("ok", Addr(*echo), Tls() + hb) +
               TargetYaml("silent", Addr(*silent), Tls() + hb) +
               TargetYaml("wrong", Addr(*wrong), Tls() + hb));
  TargetSnapshot t = WaitForTarget(
      "ok", [](const TargetSnapshot& s) { return s.up && s.has_heartbeat; }, "a heartbeat reply");
  EXPECT_GT(t.heartbeat_seconds, 0);
  EXPECT_EQ(ReasonName(WaitForEvent("silent", "disconnect").reason), "heartbeat_timeout");
  EXPECT_EQ(ReasonName(WaitForEvent("wrong", "disconnect").reason), "heartbeat_mismatch");
  EXPECT_GE(echo->bytes_received(), 5u) << "the request went over the session (decrypted there)";
}

// A listener that accepts and never answers the ClientHello: the handshake
// is bounded by connect_timeout (1 s in Defaults()).
TEST_F(TlsTest, UnansweredClientHelloIsATimeoutWithinConnectTimeout) {
  auto mute = TlsPeer("server");
  mute->SetMode(PeerMode::kNeverRead);
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("mute", Addr(*mute), Tls()));
  const auto start = SteadyClock::now();
  Event e = Failure("mute");
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  EXPECT_EQ(ReasonName(e.reason), "timeout") << e.detail;
  EXPECT_LT(seconds, 2.5) << "connect_timeout is 1s";
}

TEST_F(TlsTest, ReloadKeepsAnUnchangedSessionAndReconnectsAChangedOne) {
  auto peer = TlsPeer("server");
  auto yaml = [&](const std::string& b_name) {
    return Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer), Tls()) +
           TargetYaml("b", Addr(*peer), Tls(", server_name: " + b_name));
  };
  StartMonitor(yaml("localhost"));
  WaitUp("a");
  WaitUp("b");
  RewriteConfig(yaml("127.0.0.1"));
  ASSERT_TRUE(monitor_->Reload().empty());
  WaitForTarget("b", [](const TargetSnapshot& s) { return s.up && s.connects == 2; },
                "b reconnected (server_name changed)");
  TargetSnapshot a = WaitUp("a");
  EXPECT_EQ(a.connects, 1u) << "a's TLS settings did not change: its session is kept";
  // The server ends its handshake when the client's Finished arrives, a
  // moment after the client is up.
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->tls_handshakes() == 3; }, kDeadline))
      << "handshakes seen by the peer: " << peer->tls_handshakes();
}

TEST_F(TlsTest, AgainstOpensslSServer) {
  int port_fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(port_fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  socklen_t len = sizeof sin;
  getsockname(port_fd, reinterpret_cast<sockaddr*>(&sin), &len);
  const int port = ntohs(sin.sin_port);
  close(port_fd);
  Subprocess server({"/usr/bin/openssl", "s_server", "-quiet", "-accept",
                     "127.0.0.1:" + std::to_string(port), "-cert", certs_.Path("server.crt"),
                     "-key", certs_.Path("server.key")});
  // s_server prints nothing with -quiet; wait for its port to take connections.
  ASSERT_TRUE(WaitFor(
      [&] {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in to = sin;
        const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
        close(fd);
        return ok;
      },
      kDeadline))
      << server.Output();
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("s_server", "127.0.0.1:" + std::to_string(port), Tls()));
  TargetSnapshot t = WaitUp("s_server");
  ASSERT_TRUE(t.tls);
  EXPECT_EQ(t.tls->subject, "CN=server");
  server.Signal(SIGKILL);
  Event e = WaitForEvent("s_server", "disconnect");
  EXPECT_TRUE(ReasonName(e.reason) == "peer_closed" || ReasonName(e.reason) == "peer_reset")
      << ReasonName(e.reason);
}

// --- config ------------------------------------------------------------------

class TlsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certs_.ok()) << certs_.error(); }
  std::vector<std::string> Errors(const std::string& yaml) {
    ConfigLoadResult r = LoadConfigString(yaml, "t.yaml", certs_dir_.path());
    std::vector<std::string> out;
    for (const auto& e : r.errors) out.push_back(e.ToString());
    return out;
  }
  TempDir certs_dir_;
  TlsFixtures certs_{certs_dir_};
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST_F(TlsConfigTest, DefaultsAndRelativeFiles) {
  ConfigLoadResult r = LoadConfigString(
      "defaults: {tls: {ca_file: ca.crt, min_version: TLS13}}\n"
      "targets:\n"
      "  - address: api.example.org:443\n"
      "  - address: 10.0.0.1:443\n    tls: {server_name: db.internal}\n"
      "  - address: 10.0.0.2:5432\n    tls: false\n",
      "t.yaml", certs_dir_.path());
  ASSERT_TRUE(r.config) << Joined(Errors(""));
  const auto& t = r.config->targets;
  ASSERT_TRUE(t[0]->tls);
  EXPECT_EQ(t[0]->tls->server_name, "api.example.org") << "the host of the address";
  EXPECT_EQ(t[0]->tls->ca_file, certs_.Path("ca.crt")) << "relative to the config file";
  EXPECT_EQ(t[0]->tls->min_version, TlsVersion::kTls13);
  EXPECT_TRUE(t[0]->tls->context.ctx);
  ASSERT_TRUE(t[1]->tls);
  EXPECT_EQ(t[1]->tls->server_name, "db.internal");
  EXPECT_EQ(t[1]->tls->context.ctx, t[0]->tls->context.ctx) << "one context for equal files";
  EXPECT_FALSE(t[2]->tls) << "tls: false turns the default off";
}

TEST_F(TlsConfigTest, FileProblemsAreErrorsAtTheirPlace) {
  std::string errors = Joined(Errors(
      "targets:\n"
      "  - address: 127.0.0.1:1\n    tls: {ca_file: missing.crt}\n"
      "  - address: 127.0.0.1:2\n    tls: {cert_file: client.crt, key_file: server.key}\n"
      "  - address: 127.0.0.1:3\n    tls: {cert_file: client.crt}\n"
      "  - address: 127.0.0.1:4\n    tls: {ca_file: client.csr}\n"
      "  - address: 127.0.0.1:5\n    tls: {min_version: TLS14, insecure_skip_verify: maybe}\n"
      "  - address: 127.0.0.1:6\n    server_name: x.example\n"));
  EXPECT_NE(errors.find("t.yaml:3:20: targets[0].tls.ca_file: cannot read " +
                        certs_.Path("missing.crt") + ": No such file or directory"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("t.yaml:5:44: targets[1].tls.key_file: " + certs_.Path("server.key") +
                        " is not the key of the certificate in " + certs_.Path("client.crt")),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("targets[2].tls: cert_file needs key_file"), std::string::npos) << errors;
  EXPECT_NE(errors.find("targets[3].tls.ca_file: no usable certificate in"), std::string::npos)
      << errors;
  EXPECT_NE(errors.find("targets[4].tls.min_version: must be TLS10, TLS11, TLS12 or TLS13, got "
                        "\"TLS14\""),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("targets[4].tls.insecure_skip_verify: expected true or false"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("t.yaml:13:5: targets[5]: \"server_name\" is a key of tls:, and this "
                        "target has no TLS"),
            std::string::npos)
      << errors;
}

// A CA file rewritten on disk changes the target's config at the next load,
// so a reload reconnects it with the new file.
TEST_F(TlsConfigTest, ARewrittenCaFileMakesTheTargetChanged) {
  const std::string yaml = "targets:\n  - address: 127.0.0.1:1\n    tls: {ca_file: ca.crt}\n";
  ConfigLoadResult before = LoadConfigString(yaml, "t.yaml", certs_dir_.path());
  ConfigLoadResult same = LoadConfigString(yaml, "t.yaml", certs_dir_.path());
  ASSERT_TRUE(before.config && same.config);
  EXPECT_EQ(*before.config->targets[0], *same.config->targets[0]);
  // Rewrite it (another CA's certificate, a new inode and mtime).
  RunResult r = RunProgram({"/bin/sh", "-c", "cd '" + certs_dir_.path() +
                                                 "' && cp clientca.crt ca.new && mv ca.new ca.crt"},
                           std::chrono::milliseconds(10000));
  ASSERT_EQ(r.status, 0) << r.output;
  ConfigLoadResult after = LoadConfigString(yaml, "t.yaml", certs_dir_.path());
  ASSERT_TRUE(after.config);
  EXPECT_FALSE(*before.config->targets[0] == *after.config->targets[0]);
}

}  // namespace
}  // namespace connwatch
