// Integration tests of the TestPeer itself, with plain client sockets on
// loopback: every behaviour the connwatch tests rely on (FIN, RST, FIN hidden
// behind data, refused, recovery, echo, flood) is checked here from the
// client's side, the way the kernel reports it (docs tcp-liveness.md).

#include "test_peer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

using connwatch::testing::ListenAddress;
using connwatch::testing::ListenerStats;
using connwatch::testing::PeerMode;
using connwatch::testing::PeerModeName;
using connwatch::testing::PeerOptions;
using connwatch::testing::TestPeer;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kDeadline{5000};

// An owned client socket.
class Client {
 public:
  Client() = default;
  explicit Client(int fd) : fd_(fd) {}
  Client(Client&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Client& operator=(Client&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Blocking connect; on failure returns an invalid Client and sets *err.
Client Connect(const std::string& address, uint16_t port, int* err = nullptr) {
  sockaddr_storage addr{};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr), 1) << address;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (err != nullptr) *err = errno;
    return Client();
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    if (err != nullptr) *err = errno;
    close(fd);
    return Client();
  }
  if (err != nullptr) *err = 0;
  return Client(fd);
}

// Waits for `events` on fd; true when one arrived before the deadline.
bool WaitFor(int fd, short events, milliseconds timeout = kDeadline) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

int TcpState(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
  return info.tcpi_state;
}

// Reads exactly n bytes (blocking, each read after a bounded wait).
std::string ReadExactly(int fd, size_t n) {
  std::string out;
  while (out.size() < n) {
    if (!WaitFor(fd, POLLIN)) break;
    char buf[4096];
    ssize_t got = recv(fd, buf, std::min(sizeof buf, n - out.size()), MSG_DONTWAIT);
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

void SendString(int fd, const std::string& data) {
  ASSERT_EQ(send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
}

// A started peer on 127.0.0.1, port picked by the kernel.
class StartedPeer {
 public:
  explicit StartedPeer(PeerOptions opts = {}) : peer_(opts) { error_ = peer_.Start(); }
  TestPeer& operator*() { return peer_; }
  TestPeer* operator->() { return &peer_; }
  const std::string& error() const { return error_; }

 private:
  TestPeer peer_;
  std::string error_;
};

TEST(TestPeer, CountsAcceptedAndOpenConnections) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  ASSERT_NE(peer->port(), 0);
  EXPECT_TRUE(peer->listening());
  std::vector<Client> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Connect("127.0.0.1", peer->port()));
    ASSERT_TRUE(clients.back().ok());
  }
  EXPECT_TRUE(peer->WaitForAcceptedTotal(3, kDeadline)) << "accepted " << peer->accepted_total();
  EXPECT_TRUE(peer->WaitForOpenConnections(3, kDeadline)) << "open " << peer->open_connections();

  clients.pop_back();  // plain close: FIN.
  EXPECT_TRUE(peer->WaitForOpenConnections(2, kDeadline)) << "open " << peer->open_connections();
  EXPECT_EQ(peer->client_fins(), 1u);
  EXPECT_EQ(peer->accepted_total(), 3u);

  linger lg{1, 0};
  ASSERT_EQ(setsockopt(clients.back().fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  clients.pop_back();  // RST.
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->client_resets() == 1; }, kDeadline))
      << "client_resets " << peer->client_resets();
  EXPECT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
}

TEST(TestPeer, CloseAllGivesTheClientEndOfFile) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  // No wait for the accept: CloseAll accepts the backlog first.
  peer->CloseAll();
  EXPECT_EQ(peer->open_connections(), 0u);
  EXPECT_EQ(peer->accepted_total(), 1u);
  EXPECT_GT(peer->close_started_ns(), 0);
  EXPECT_LE(peer->close_started_ns(), peer->close_finished_ns());

  ASSERT_TRUE(WaitFor(client.fd(), POLLIN | POLLRDHUP)) << "no FIN within the deadline";
  char byte;
  EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_DONTWAIT), 0) << std::strerror(errno);
  EXPECT_EQ(TcpState(client.fd()), TCP_CLOSE_WAIT);
}

TEST(TestPeer, ResetAllGivesTheClientConnectionReset) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  peer->ResetAll();
  EXPECT_EQ(peer->open_connections(), 0u);

  ASSERT_TRUE(WaitFor(client.fd(), POLLIN)) << "no RST within the deadline";
  char byte;
  errno = 0;
  EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, ECONNRESET) << std::strerror(errno);
  EXPECT_EQ(TcpState(client.fd()), TCP_CLOSE);
}

TEST(TestPeer, SendThenCloseAllHidesTheFinBehindData) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  peer->SendThenCloseAll("last words");
  EXPECT_EQ(peer->open_connections(), 0u);

  ASSERT_TRUE(WaitFor(client.fd(), POLLRDHUP)) << "no FIN within the deadline";
  // The FIN is there, but a peek sees data: only TCP_INFO tells.
  char byte;
  EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT), 1);
  EXPECT_EQ(TcpState(client.fd()), TCP_CLOSE_WAIT);
  EXPECT_EQ(ReadExactly(client.fd(), 10), "last words");
  EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_DONTWAIT), 0);
}

TEST(TestPeer, StopListeningRefusesAndListenRecovers) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  uint16_t port = peer->port();
  Client before = Connect("127.0.0.1", port);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));

  peer->StopListening();
  EXPECT_FALSE(peer->listening());
  int err = 0;
  Client refused = Connect("127.0.0.1", port, &err);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(err, ECONNREFUSED) << std::strerror(err);
  // The accepted connection is untouched.
  EXPECT_EQ(peer->open_connections(), 1u);
  EXPECT_EQ(recv(before.fd(), &err, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);

  ASSERT_EQ(peer->Listen(), "");
  EXPECT_TRUE(peer->listening());
  EXPECT_EQ(peer->port(), port);
  Client after = Connect("127.0.0.1", port, &err);
  ASSERT_TRUE(after.ok()) << std::strerror(err);
  EXPECT_TRUE(peer->WaitForAcceptedTotal(2, kDeadline));
  EXPECT_TRUE(peer->WaitForOpenConnections(2, kDeadline));
}

TEST(TestPeer, EchoAnswersEachHeartbeatRequest) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  peer->SetMode(PeerMode::kEcho);
  peer->SetHeartbeat("PING\r\n", "PONG\r\n");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());

  SendString(client.fd(), "PI");
  ASSERT_TRUE(peer->WaitUntil([&] { return peer->bytes_received() == 2; }, kDeadline));
  SendString(client.fd(), "NG\r\n");  // a request split across two reads.
  EXPECT_EQ(ReadExactly(client.fd(), 6), "PONG\r\n");
  // Bytes that are not a request get no reply: the next reply comes alone.
  SendString(client.fd(), "noise PING\r\nPING\r\n");
  EXPECT_EQ(ReadExactly(client.fd(), 12), "PONG\r\nPONG\r\n");
  ASSERT_TRUE(peer->WaitUntil([&] { return peer->bytes_received() == 24; }, kDeadline));
  char byte;
  EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_DONTWAIT), -1) << "an extra reply arrived";
}

TEST(TestPeer, EchoWithoutHeartbeatEchoesAndSetReplyReplies) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  // The mode changes under an open connection.
  peer->SetMode(PeerMode::kEcho);
  SendString(client.fd(), "hello");
  EXPECT_EQ(ReadExactly(client.fd(), 5), "hello");
  peer->SetReply("+OK\n");
  SendString(client.fd(), "x");
  EXPECT_EQ(ReadExactly(client.fd(), 4), "+OK\n");
}

TEST(TestPeer, SilentAndHoldReadButNeverReply) {
  for (PeerMode mode : {PeerMode::kSilent, PeerMode::kHold}) {
    StartedPeer peer;
    ASSERT_EQ(peer.error(), "");
    peer->SetHeartbeat("PING\n", "PONG\n");
    peer->SetMode(mode);
    Client client = Connect("127.0.0.1", peer->port());
    ASSERT_TRUE(client.ok());
    SendString(client.fd(), "PING\n");
    ASSERT_TRUE(peer->WaitUntil([&] { return peer->bytes_received() == 5; }, kDeadline))
        << PeerModeName(mode) << ": the peer did not read";
    char byte;
    EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_DONTWAIT), -1) << PeerModeName(mode);
    EXPECT_EQ(errno, EAGAIN);
  }
}

TEST(TestPeer, NeverReadLetsTheClientsSendsPileUp) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  peer->SetMode(PeerMode::kNeverRead);
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  std::string chunk(64 * 1024, 'x');
  size_t queued = 0;
  constexpr size_t kLimit = size_t{256} << 20;
  while (queued < kLimit) {
    ssize_t n = send(client.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
      break;
    }
    queued += static_cast<size_t>(n);
  }
  EXPECT_LT(queued, kLimit) << "the client's send buffer never filled";
  EXPECT_GT(queued, 0u);
  EXPECT_EQ(peer->bytes_received(), 0u);
  // Switching to a reading mode drains the pile.
  peer->SetMode(PeerMode::kHold);
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->bytes_received() == queued; }, kDeadline))
      << "received " << peer->bytes_received() << " of " << queued;
}

TEST(TestPeer, CloseAndResetOnAccept) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  peer->SetMode(PeerMode::kCloseOnAccept);
  Client closed = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(closed.ok());
  ASSERT_TRUE(WaitFor(closed.fd(), POLLIN | POLLRDHUP));
  char byte;
  EXPECT_EQ(recv(closed.fd(), &byte, 1, MSG_DONTWAIT), 0);

  peer->SetMode(PeerMode::kResetOnAccept);
  Client reset = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(reset.ok());
  ASSERT_TRUE(WaitFor(reset.fd(), POLLIN));
  errno = 0;
  EXPECT_EQ(recv(reset.fd(), &byte, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, ECONNRESET) << std::strerror(errno);
  EXPECT_EQ(peer->accepted_total(), 2u);
  EXPECT_EQ(peer->open_connections(), 0u);
}

TEST(TestPeer, SendAllKeepsTheConnectionOpen) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  peer->SendAll("news\n");
  EXPECT_EQ(ReadExactly(client.fd(), 5), "news\n");
  EXPECT_EQ(TcpState(client.fd()), TCP_ESTABLISHED);
  EXPECT_EQ(peer->open_connections(), 1u);
}

TEST(TestPeer, FloodWritesAsFastAsTheClientReads) {
  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  Client client = Connect("127.0.0.1", peer->port());
  ASSERT_TRUE(client.ok());
  constexpr size_t kTotal = size_t{32} << 20;
  peer->StartFlood(kTotal);
  size_t received = 0;
  std::vector<char> buf(256 * 1024);
  while (received < kTotal) {
    ASSERT_TRUE(WaitFor(client.fd(), POLLIN)) << "stalled at " << received << " bytes";
    ssize_t n = recv(client.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
    ASSERT_GT(n, 0) << std::strerror(errno);
    received += static_cast<size_t>(n);
  }
  EXPECT_EQ(received, kTotal);
  EXPECT_TRUE(peer->WaitUntil([&] { return peer->FloodedBytes() == kTotal; }, kDeadline))
      << "flooded " << peer->FloodedBytes();
  EXPECT_EQ(peer->FloodPendingBytes(), 0u);
  EXPECT_EQ(peer->open_connections(), 1u);
}

TEST(TestPeer, ListensOnIpv6Loopback) {
  PeerOptions opts;
  opts.bind_address = "::1";
  StartedPeer peer(opts);
  if (!peer.error().empty()) {
    GTEST_SKIP() << "cannot bind ::1 here (" << peer.error() << ")";
  }
  int err = 0;
  Client client = Connect("::1", peer->port(), &err);
  ASSERT_TRUE(client.ok()) << std::strerror(err);
  ASSERT_TRUE(peer->WaitForOpenConnections(1, kDeadline));
  peer->CloseAll();
  ASSERT_TRUE(WaitFor(client.fd(), POLLIN | POLLRDHUP));
  char byte;
  EXPECT_EQ(recv(client.fd(), &byte, 1, MSG_DONTWAIT), 0);
}

TEST(TestPeer, ServesSeveralListenersFromOneThread) {
  PeerOptions opts;
  opts.extra_listeners.push_back(ListenAddress{"127.0.0.1", 0});
  opts.extra_listeners.push_back(ListenAddress{"127.0.0.1", 0});
  StartedPeer peer(opts);
  ASSERT_EQ(peer.error(), "");
  std::vector<uint16_t> ports = peer->ports();
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(ports[0], peer->port());
  Client a = Connect("127.0.0.1", ports[1]);
  Client b = Connect("127.0.0.1", ports[1]);
  Client c = Connect("127.0.0.1", ports[2]);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // A WaitUntil predicate may ask the loop itself (no lock is held).
  ASSERT_TRUE(peer->WaitUntil([&] { return peer->Listeners()[1].open == 2; }, kDeadline));
  ASSERT_TRUE(peer->WaitForOpenConnections(3, kDeadline));
  std::vector<ListenerStats> stats = peer->Listeners();
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats[0].open, 0u);
  EXPECT_EQ(stats[1].open, 2u);
  EXPECT_EQ(stats[2].open, 1u);
  EXPECT_EQ(stats[2].port, ports[2]);
  EXPECT_TRUE(stats[2].listening);

  peer->StopListening();
  int err = 0;
  EXPECT_FALSE(Connect("127.0.0.1", ports[2], &err).ok());
  EXPECT_EQ(err, ECONNREFUSED);
  ASSERT_EQ(peer->Listen(), "");
  EXPECT_TRUE(Connect("127.0.0.1", ports[2], &err).ok()) << std::strerror(err);
}

TEST(TestPeer, StartReportsABindError) {
  StartedPeer first;
  ASSERT_EQ(first.error(), "");
  // Another socket already listens there (SO_REUSEADDR does not allow two
  // listeners on one port).
  PeerOptions opts;
  opts.port = first->port();
  StartedPeer second(opts);
  EXPECT_NE(second.error().find("Address already in use"), std::string::npos) << second.error();
  EXPECT_FALSE(second->listening());

  PeerOptions bad;
  bad.bind_address = "localhost";
  StartedPeer third(bad);
  EXPECT_NE(third.error().find("not a numeric"), std::string::npos) << third.error();
}

// Many connections on one epoll loop; scaled to the fd limit (each connection
// costs two fds here: the client's and the peer's).
TEST(TestPeer, HandlesThousandsOfConnections) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  size_t n = std::min<size_t>(4000, (limit.rlim_cur - 200) / 2);
  if (n < 500) GTEST_SKIP() << "RLIMIT_NOFILE " << limit.rlim_cur << " is too low";

  StartedPeer peer;
  ASSERT_EQ(peer.error(), "");
  std::vector<Client> clients;
  clients.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    int err = 0;
    clients.push_back(Connect("127.0.0.1", peer->port(), &err));
    ASSERT_TRUE(clients.back().ok()) << "connection " << i << ": " << std::strerror(err);
  }
  ASSERT_TRUE(peer->WaitForOpenConnections(n, std::chrono::seconds(30)))
      << "open " << peer->open_connections() << " of " << n;

  peer->CloseAll();
  EXPECT_EQ(peer->open_connections(), 0u);
  size_t eof = 0;
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  for (Client& client : clients) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (!WaitFor(client.fd(), POLLIN | POLLRDHUP, std::max(left, milliseconds(0)))) break;
    char byte;
    if (recv(client.fd(), &byte, 1, MSG_DONTWAIT) == 0) ++eof;
  }
  EXPECT_EQ(eof, n);
}

}  // namespace
