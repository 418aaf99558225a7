// Integration tests of the probes and the heartbeat on real loopback sockets,
// through the Monitor: which path sees each death (detected_by and
// connwatch_probe_detections_total), what each probe alone can see (with the
// event-driven read turned off, as bench/probes.py does), heartbeat replies
// matched to their own request, and requests that do not fit the send buffer
// at once. shared/docs/tcp-liveness.md is the table behind the expectations;
// tests/kernel_truth_test.cc checks the kernel still answers it.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>

#include "monitor_fixture.h"
#include "net/socket_ops.h"

namespace connwatch {
namespace {

using namespace connwatch::testing;  // NOLINT: the fixture and its helpers

size_t D(Detector d) { return static_cast<size_t>(d); }
size_t R(Reason r) { return static_cast<size_t>(r); }

class ProbesTest : public MonitorTest {
 protected:
  std::shared_ptr<const Snapshot> Snap() {
    auto s = monitor_->GetSnapshot();
    EXPECT_TRUE(s);
    return s;
  }
  // The disconnect event of `target` (waits for it).
  Event Disconnect(const std::string& target, milliseconds timeout = kDeadline) {
    return WaitForEvent(target, "disconnect", timeout);
  }
  std::string DetectedBy(const Event& e) {
    return e.has_detected_by ? std::string(DetectorName(e.detected_by)) : "(none)";
  }
  // Waits until every probe of `probe` ran at least `runs` more times than
  // `from` (a window of checks in which a death could have been seen).
  void WaitForProbeRuns(Detector probe, uint64_t from, uint64_t runs) {
    uint64_t seen = 0;
    bool ok = WaitFor(
        [&] {
          auto s = monitor_->GetSnapshot();
          seen = s ? s->probe_runs[D(probe)] : 0;
          return seen >= from + runs;
        },
        kDeadline);
    EXPECT_TRUE(ok) << "expected " << runs << " more " << DetectorName(probe)
                    << " probes after " << from << ", saw " << seen;
  }
};

// Fast checks, event reads on or off by the test.
std::string ProbeDefaults() {
  return "defaults:\n"
         "  connect_timeout: 1s\n"
         "  check_interval: 100ms\n"
         "  check_jitter: 0s\n"
         "  startup_jitter: 0s\n"
         "  backoff: {initial: 5s, max: 5s}\n";
}

TEST_F(ProbesTest, EventDrivenReadIsDetectedByRead) {
  auto peer = StartPeer();
  StartMonitor(Defaults() + "targets:\n" + TargetYaml("a", Addr(*peer)));
  WaitUp("a");
  peer->CloseAll();
  Event e = Disconnect("a");
  EXPECT_EQ(ReasonName(e.reason), "peer_closed");
  EXPECT_EQ(DetectedBy(e), "read");
  EXPECT_NE(log_->FormatEvent(e).find(" detected_by=read"), std::string::npos)
      << log_->FormatEvent(e);
  TargetSnapshot t = WaitForTarget(
      "a", [](const TargetSnapshot& s) { return s.has_last_detected_by; }, "a detected_by");
  EXPECT_EQ(DetectorName(t.last_detected_by), "read");
  auto snap = Snap();
  EXPECT_EQ(snap->detections[D(Detector::kRead)][R(Reason::kPeerClosed)], 1u);
  EXPECT_GE(snap->probe_runs[D(Detector::kRead)], 1u);
}

// With the event-driven read off, each probe alone sees what the kernel lets
// it see: a FIN is seen by peek and tcp_info, never by zero_send or so_error.
TEST_F(ProbesTest, FinSeenByPeekAndTcpInfoOnly) {
  event_reads_ = false;
  auto peer = StartPeer();
  const std::string a = Addr(*peer);
  StartMonitor(ProbeDefaults() + "targets:\n" +
               TargetYaml("peek", a, "    probes: [peek]\n") +
               TargetYaml("zero_send", a, "    probes: [zero_send]\n") +
               TargetYaml("tcp_info", a, "    probes: [tcp_info]\n") +
               TargetYaml("so_error", a, "    probes: [so_error]\n") +
               TargetYaml("default", a));
  for (const char* t : {"peek", "zero_send", "tcp_info", "so_error", "default"}) WaitUp(t);
  const uint64_t zero_sends = Snap()->probe_runs[D(Detector::kZeroSend)];
  const uint64_t so_errors = Snap()->probe_runs[D(Detector::kSoError)];
  peer->CloseAll();
  for (auto [target, by] : {std::pair{"peek", "peek"}, {"tcp_info", "tcp_info"}, {"default", "peek"}}) {
    Event e = Disconnect(target);
    EXPECT_EQ(ReasonName(e.reason), "peer_closed") << target;
    EXPECT_EQ(DetectedBy(e), by) << target;
  }
  // Three more checks each, after the FIN reached them: still up.
  WaitForProbeRuns(Detector::kZeroSend, zero_sends, 6);
  WaitForProbeRuns(Detector::kSoError, so_errors, 6);
  for (const char* t : {"zero_send", "so_error"}) {
    WaitForTarget(t, [](const TargetSnapshot& s) { return s.up; }, "still up: a FIN is no error");
  }
  auto snap = Snap();
  EXPECT_EQ(snap->detections[D(Detector::kPeek)][R(Reason::kPeerClosed)], 2u);
  EXPECT_EQ(snap->detections[D(Detector::kTcpInfo)][R(Reason::kPeerClosed)], 1u);
}

// A reset is a pending error: every probe sees it.
TEST_F(ProbesTest, ResetSeenByEveryProbe) {
  event_reads_ = false;
  auto peer = StartPeer();
  const std::string a = Addr(*peer);
  StartMonitor(ProbeDefaults() + "targets:\n" +
               TargetYaml("peek", a, "    probes: [peek]\n") +
               TargetYaml("zero_send", a, "    probes: [zero_send]\n") +
               TargetYaml("tcp_info", a, "    probes: [tcp_info]\n") +
               TargetYaml("so_error", a, "    probes: [so_error]\n") +
               TargetYaml("default", a, "    probes: [so_error, peek]\n"));
  for (const char* t : {"peek", "zero_send", "tcp_info", "so_error", "default"}) WaitUp(t);
  peer->ResetAll();
  for (auto [target, by] : {std::pair{"peek", "peek"}, {"zero_send", "zero_send"},
                            {"tcp_info", "tcp_info"}, {"so_error", "so_error"},
                            {"default", "so_error"}}) {
    Event e = Disconnect(target);
    EXPECT_EQ(ReasonName(e.reason), "peer_reset") << target;
    EXPECT_EQ(ErrnoName(e.err), "ECONNRESET") << target;
    EXPECT_EQ(DetectedBy(e), by) << target;
  }
}

// A FIN behind unread data: recv peeks the data, only tcpi_state says
// CLOSE_WAIT. The default list finds it with its tcp_info.
TEST_F(ProbesTest, FinBehindUnreadDataSeenByTcpInfo) {
  event_reads_ = false;
  auto peer = StartPeer();
  const std::string a = Addr(*peer);
  StartMonitor(ProbeDefaults() + "targets:\n" + TargetYaml("peek", a, "    probes: [peek]\n") +
               TargetYaml("default", a));
  WaitUp("peek");
  WaitUp("default");
  const uint64_t peeks = Snap()->probe_runs[D(Detector::kPeek)];
  peer->SendThenCloseAll("unread bytes");
  Event e = Disconnect("default");
  EXPECT_EQ(ReasonName(e.reason), "peer_closed");
  EXPECT_EQ(DetectedBy(e), "tcp_info");
  EXPECT_NE(e.detail.find("CLOSE_WAIT"), std::string::npos) << e.detail;
  WaitForProbeRuns(Detector::kPeek, peeks, 6);
  WaitForTarget("peek", [](const TargetSnapshot& s) { return s.up; },
                "still up: peek sees the data, not the FIN behind it");
}

// A loopback server that answers every heartbeat request one request late:
// it replies to request k only once request k+1 has arrived.
class LaggingServer {
 public:
  LaggingServer() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    listen(listen_fd_, 8);
    socklen_t len = sizeof sin;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~LaggingServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  size_t requests() const { return requests_.load(); }

 private:
  void Run() {
    int conn = -1;
    std::string stream;
    while (!stop_) {
      pollfd pfd{conn >= 0 ? conn : listen_fd_, POLLIN, 0};
      if (poll(&pfd, 1, 20) <= 0) continue;
      if (conn < 0) {
        conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        continue;
      }
      char buf[4096];
      ssize_t n = recv(conn, buf, sizeof buf, 0);
      if (n <= 0) {
        close(conn);
        conn = -1;
        continue;
      }
      stream.append(buf, static_cast<size_t>(n));
      size_t at;
      while ((at = stream.find("PING\n")) != std::string::npos) {
        stream.erase(0, at + 5);
        // The reply to the previous request, now that this one arrived.
        if (requests_++ > 0) send(conn, "PONG\n", 5, MSG_NOSIGNAL);
      }
    }
    if (conn >= 0) close(conn);
  }
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> requests_{0};
  std::thread thread_;
};

// A peer slower than `interval`: each reply comes after its request's
// deadline and after the next request was sent. Taken for the next one's
// answer, that would look healthy forever (and report a near-zero round
// trip); it is each request's failure, so `fall` ends the connection.
TEST_F(ProbesTest, ReplyAfterTheNextRequestIsLateNotASuccess) {
  LaggingServer server;
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("slow", server.address(),
                          "    heartbeat: {send: \"PING\\n\", expect: \"PONG\\n\", interval: 150ms, "
                          "timeout: 60ms, fall: 3}\n"));
  Event e = Disconnect("slow", milliseconds(5000));
  EXPECT_EQ(ReasonName(e.reason), "heartbeat_timeout");
  EXPECT_EQ(DetectedBy(e), "heartbeat");
  EXPECT_NE(e.detail.find("came after the deadline"), std::string::npos) << e.detail;
  EXPECT_GE(server.requests(), 3u);
  TargetSnapshot t = WaitForTarget("slow", [](const TargetSnapshot&) { return true; }, "any");
  EXPECT_FALSE(t.has_heartbeat) << "a late reply must not give a round trip, saw "
                                << t.heartbeat_seconds;
}

// A request that does not fit the send buffer is finished when the socket is
// writable again; a request due meanwhile fails instead of being appended
// to the unsent rest, so the peer always reads whole requests.
TEST_F(ProbesTest, PartlySentRequestIsFinishedNeverGarbled) {
  // A listener whose connections have a tiny receive buffer and that reads
  // nothing until told.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 4096;
  setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof sin;
  getsockname(listener, reinterpret_cast<sockaddr*>(&sin), &len);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(sin.sin_port));

  // 4 MiB per request: far more than a send buffer takes at once.
  std::string body;
  for (int i = 0; body.size() < 4 * 1024 * 1024; ++i) body += "0123456789abcdef";
  const std::string request = "BEGIN" + body + "END.";
  StartMonitor(Defaults() + "targets:\n" +
               TargetYaml("big", address,
                          "    heartbeat: {send: \"" + request +
                              "\", expect: \"never\", interval: 100ms, timeout: 50ms, "
                              "fall: 1000000}\n"));
  int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(conn, 0);
  // Wait until a request was due while the first was still being written.
  Event blocked;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const Event& e : log_->Recent()) {
          if (e.kind == "heartbeat_failure" && e.detail.find("request not sent") != std::string::npos) {
            blocked = e;
            return true;
          }
        }
        return false;
      },
      kDeadline))
      << "no heartbeat_failure saying the request could not be sent; events:\n" << RecentEvents();
  // Now read: the stream must be whole requests, back to back.
  std::string got;
  const size_t want = request.size() + request.size() / 2;
  char buf[65536];
  ASSERT_TRUE(WaitFor(
      [&] {
        ssize_t n = recv(conn, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<size_t>(n));
        return got.size() >= want;
      },
      milliseconds(20000)))
      << "read " << got.size() << " of " << want << " bytes";
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != request[i % request.size()]) {
      ADD_FAILURE() << "the stream is garbled at byte " << i << " (request byte "
                    << i % request.size() << "): saw \"" << got.substr(i, 16) << "\", expected \""
                    << request.substr(i % request.size(), 16) << "\"";
      break;
    }
  }
  close(conn);
  close(listener);
}

// Connecting to yourself (a TCP simultaneous open with one socket) is told
// by the local and peer addresses being equal, on every kind of address.
TEST(SelfConnect, LocalEqualsPeerOnEveryAddressKind) {
  struct Case {
    int family;
    const char* address;
  } cases[] = {{AF_INET, "127.0.0.1"}, {AF_INET, "127.0.0.2"}, {AF_INET6, "::1"},
               {AF_INET6, "::ffff:127.0.0.1"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.address);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (c.family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      inet_pton(AF_INET, c.address, &sin->sin_addr);
      len = sizeof *sin;
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      inet_pton(AF_INET6, c.address, &sin6->sin6_addr);
      len = sizeof *sin6;
    }
    int fd = socket(c.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      close(fd);
      GTEST_SKIP() << "cannot bind " << c.address << ": " << strerror(errno);
    }
    socklen_t got = len;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &got);
    // Connect to the very port we are bound to: the kernel connects the
    // socket to itself.
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ss), len), 0) << strerror(errno);
    EXPECT_TRUE(IsSelfConnected(fd));
    close(fd);
  }
  // An ordinary connection is not.
  auto peer = StartPeer();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(peer->port());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  EXPECT_FALSE(IsSelfConnected(fd));
  close(fd);
}

}  // namespace
}  // namespace connwatch
