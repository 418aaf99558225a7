// The truth table of shared/docs/tcp-liveness.md, replayed on real loopback
// sockets: for every way a held connection can be, what the kernel answers to
// each probe (recv MSG_PEEK, a zero-byte send, TCP_INFO's state, SO_ERROR)
// and which events epoll reports, and what connwatch's classifiers
// (core/liveness.h) and probe runner (net/probes.h) make of those answers.
// Everything connwatch concludes about a socket rests on these answers: if a
// kernel ever answers differently, a test here fails and names the row.
//
// Each column is read on a connection of its own (a pending error is
// reported once, to whichever call asks first). Silent peers are made with a
// socket filter that drops every segment the peer receives, so keepalive and
// TCP_USER_TIMEOUT expire on loopback without root.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/liveness.h"
#include "core/reason.h"
#include "net/probes.h"
#include "net/tcp_info.h"
#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::WaitFor;

// One connection on loopback: `ours` is the monitor's end (probed), `peer`
// the other end (where faults are made).
struct Pair {
  int ours = -1;
  int peer = -1;
  Pair() = default;
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  Pair(Pair&& o) noexcept : ours(o.ours), peer(o.peer) { o.ours = o.peer = -1; }
  ~Pair() {
    if (ours >= 0) close(ours);
    if (peer >= 0) close(peer);
  }
};

Pair Connect() {
  Pair p;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0) << strerror(errno);
  EXPECT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof sin;
  getsockname(listener, reinterpret_cast<sockaddr*>(&sin), &len);
  p.ours = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_EQ(connect(p.ours, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0) << strerror(errno);
  p.peer = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_GE(p.peer, 0) << strerror(errno);
  close(listener);
  return p;
}

void SetInt(int fd, int level, int name, int value) {
  ASSERT_EQ(setsockopt(fd, level, name, &value, sizeof value), 0) << strerror(errno);
}

// The peer's kernel drops every segment it receives: no ACK, no RST. A peer
// that vanished (power loss, a cable, a firewall that drops).
void MakePeerSilent(int peer) {
  static sock_filter drop_all[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  sock_fprog prog{1, drop_all};
  ASSERT_EQ(setsockopt(peer, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog), 0)
      << strerror(errno);
}

void ResetClose(int* fd) {
  linger lg{1, 0};
  setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(*fd);
  *fd = -1;
}

uint8_t State(int fd) { return ReadTcpInfo(fd).state; }
int Unread(int fd) {
  int n = 0;
  ioctl(fd, FIONREAD, &n);
  return n;
}

// What one call returned: the result and, only when it was -1, the errno.
struct Answer {
  ssize_t result = 0;
  int err = 0;
  bool operator==(const Answer& o) const { return result == o.result && err == o.err; }
};
std::string Show(const Answer& a) {
  if (a.result < 0) return "-1 " + std::string(ErrnoName(a.err));
  return std::to_string(a.result);
}

Answer Peek(int fd) {
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return {n, n < 0 ? errno : 0};
}
Answer ZeroSend(int fd) {
  ssize_t n = send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT);
  return {n, n < 0 ? errno : 0};
}
int SoError(int fd) {
  int e = 0;
  socklen_t len = sizeof e;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
  return e;
}
uint32_t EpollEvents(int fd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  epoll_event out{};
  int n = epoll_wait(ep, &out, 1, 0);
  close(ep);
  return n == 1 ? out.events : 0;
}
std::string ShowEvents(uint32_t e) {
  std::string s;
  for (auto [bit, name] : {std::pair{EPOLLIN, "IN"}, {EPOLLOUT, "OUT"}, {EPOLLRDHUP, "RDHUP"},
                           {EPOLLHUP, "HUP"}, {EPOLLERR, "ERR"}}) {
    if (e & static_cast<uint32_t>(bit)) s += (s.empty() ? "" : "|") + std::string(name);
  }
  return s.empty() ? "none" : s;
}

// What connwatch concludes: "alive", "data" (alive, unread data), or the
// reason of a death.
std::string Word(const Verdict& v) {
  switch (v.kind) {
    case Verdict::Kind::kAlive: return "alive";
    case Verdict::Kind::kData: return "data";
    case Verdict::Kind::kIcmpError: return "icmp " + std::string(ReasonName(v.reason));
    case Verdict::Kind::kDead: return std::string(ReasonName(v.reason));
  }
  return "?";
}

// One row of the table. Unset optionals are "-" in the doc: not asserted.
struct Row {
  const char* name;
  // Makes the situation on a fresh pair (may assert), then `settled` must
  // become true within `settle_ms`.
  std::function<void(Pair&)> make;
  std::function<bool(const Pair&)> settled;
  int settle_ms;
  // The kernel's answers (the doc's columns).
  std::optional<Answer> peek;
  std::optional<Answer> peek_again;  // a second peek on the same socket
  uint32_t epoll;
  std::optional<Answer> zero_send;
  std::optional<Answer> zero_send_again;
  uint8_t state;
  std::optional<int> so_error;
  std::optional<int> so_error_again;
  // connwatch's verdict per probe on these answers, and what the default
  // probe list [peek, zero_send, tcp_info] reports ("alive" or
  // "<detector> <reason>").
  std::string verdict_peek, verdict_zero_send, verdict_tcp_info, verdict_so_error;
  std::string default_run;
};

const Answer kEagain{-1, EAGAIN};

std::vector<Row> Table() {
  auto nothing = [](Pair&) {};
  auto always = [](const Pair&) { return true; };
  auto in_state = [](uint8_t s) { return [s](const Pair& p) { return State(p.ours) == s; }; };
  std::vector<Row> rows;
  rows.push_back({"alive, no data", nothing, always, 0, kEagain, std::nullopt, EPOLLOUT, Answer{0, 0},
                  std::nullopt, TCP_ESTABLISHED, 0, std::nullopt, "alive", "alive", "alive",
                  "alive", "alive"});
  rows.push_back({"data pending",
                  [](Pair& p) { ASSERT_EQ(send(p.peer, "x", 1, 0), 1); },
                  [](const Pair& p) { return Unread(p.ours) > 0; }, 2000, Answer{1, 0},
                  std::nullopt, EPOLLIN | EPOLLOUT, Answer{0, 0}, std::nullopt, TCP_ESTABLISHED, 0,
                  std::nullopt, "data", "alive", "alive", "alive", "alive"});
  rows.push_back({"peer FIN, unread data before it",
                  [](Pair& p) {
                    ASSERT_EQ(send(p.peer, "x", 1, 0), 1);
                    ASSERT_EQ(shutdown(p.peer, SHUT_WR), 0);
                  },
                  in_state(TCP_CLOSE_WAIT), 2000, Answer{1, 0}, std::nullopt,
                  EPOLLIN | EPOLLOUT | EPOLLRDHUP, Answer{0, 0}, std::nullopt, TCP_CLOSE_WAIT, 0,
                  std::nullopt, "data", "alive", "peer_closed", "alive", "tcp_info peer_closed"});
  rows.push_back({"peer FIN, nothing unread",
                  [](Pair& p) { ASSERT_EQ(shutdown(p.peer, SHUT_WR), 0); },
                  in_state(TCP_CLOSE_WAIT), 2000, Answer{0, 0}, std::nullopt,
                  EPOLLIN | EPOLLOUT | EPOLLRDHUP, Answer{0, 0}, std::nullopt, TCP_CLOSE_WAIT, 0,
                  std::nullopt, "peer_closed", "alive", "peer_closed", "alive",
                  "peek peer_closed"});
  rows.push_back({"peer RST", [](Pair& p) { ResetClose(&p.peer); }, in_state(TCP_CLOSE), 2000,
                  Answer{-1, ECONNRESET}, Answer{0, 0},
                  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR, Answer{-1, ECONNRESET},
                  Answer{-1, EPIPE}, TCP_CLOSE, ECONNRESET, 0, "peer_reset", "peer_reset",
                  "peer_reset", "peer_reset", "peek peer_reset"});
  rows.push_back({"we wrote after FIN, peer answered RST",
                  [](Pair& p) {
                    close(p.peer);  // FIN; the orphan answers data with RST
                    p.peer = -1;
                    ASSERT_TRUE(WaitFor([&] { return State(p.ours) == TCP_CLOSE_WAIT; },
                                        milliseconds(2000)));
                    // NOTE: the first write after the FIN succeeds: bytes
                    // were queued locally; the RST comes back for them.
                    ASSERT_EQ(send(p.ours, "late", 4, MSG_NOSIGNAL), 4);
                  },
                  in_state(TCP_CLOSE), 2000, Answer{0, 0}, std::nullopt,
                  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR, Answer{-1, EPIPE},
                  std::nullopt, TCP_CLOSE, EPIPE, std::nullopt, "peer_closed", "peer_reset",
                  "peer_reset", "peer_reset", "peek peer_closed"});
  rows.push_back({"we did shutdown(SHUT_WR)",
                  [](Pair& p) { ASSERT_EQ(shutdown(p.ours, SHUT_WR), 0); },
                  in_state(TCP_FIN_WAIT2), 2000, std::nullopt, std::nullopt, EPOLLOUT,
                  Answer{-1, EPIPE}, std::nullopt, TCP_FIN_WAIT2, std::nullopt, std::nullopt,
                  "alive", "local_error", "local_error", "alive", "zero_send local_error"});
  rows.push_back({"keepalive expired (peer silent, nothing in flight)",
                  [](Pair& p) {
                    MakePeerSilent(p.peer);
                    SetInt(p.ours, SOL_SOCKET, SO_KEEPALIVE, 1);
                    SetInt(p.ours, IPPROTO_TCP, TCP_KEEPIDLE, 1);
                    SetInt(p.ours, IPPROTO_TCP, TCP_KEEPINTVL, 1);
                    SetInt(p.ours, IPPROTO_TCP, TCP_KEEPCNT, 1);
                  },
                  in_state(TCP_CLOSE), 10000, Answer{-1, ETIMEDOUT}, std::nullopt,
                  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR, Answer{-1, ETIMEDOUT},
                  std::nullopt, TCP_CLOSE, ETIMEDOUT, std::nullopt, "keepalive_timeout",
                  "keepalive_timeout", "keepalive_timeout", "keepalive_timeout",
                  "peek keepalive_timeout"});
  rows.push_back({"TCP_USER_TIMEOUT expired (peer silent, data unacknowledged)",
                  [](Pair& p) {
                    MakePeerSilent(p.peer);
                    SetInt(p.ours, IPPROTO_TCP, TCP_USER_TIMEOUT, 1000);
                    ASSERT_EQ(send(p.ours, "ping", 4, MSG_NOSIGNAL), 4);
                  },
                  in_state(TCP_CLOSE), 10000, Answer{-1, ETIMEDOUT}, std::nullopt,
                  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR, Answer{-1, ETIMEDOUT},
                  std::nullopt, TCP_CLOSE, ETIMEDOUT, std::nullopt, "user_timeout",
                  "user_timeout", "user_timeout", "user_timeout", "peek user_timeout"});
  return rows;
}

// The columns, each read on its own connection.
enum Column { kPeekCol, kEpollCol, kZeroSendCol, kStateCol, kSoErrorCol, kDefaultRunCol, kColumns };

// Makes `row` on one fresh pair per column, all at once (the silent rows
// then wait for their timers once, not once per column).
std::vector<Pair> MakeRow(const Row& row) {
  std::vector<Pair> pairs;
  for (int c = 0; c < kColumns; ++c) pairs.push_back(Connect());
  for (Pair& p : pairs) row.make(p);
  for (const Pair& p : pairs) {
    EXPECT_TRUE(WaitFor([&] { return row.settled(p); }, milliseconds(row.settle_ms)))
        << "row \"" << row.name << "\": the situation did not settle within " << row.settle_ms
        << " ms (tcpi_state " << int{State(p.ours)} << ")";
  }
  return pairs;
}

TEST(KernelTruthTable, EveryRowAsDocumented) {
  for (const Row& row : Table()) {
    SCOPED_TRACE(std::string("row \"") + row.name + "\"");
    std::vector<Pair> pairs = MakeRow(row);
    if (::testing::Test::HasFatalFailure()) return;
    const TcpSample none;

    {  // recv(fd, b, 1, MSG_PEEK | MSG_DONTWAIT)
      int fd = pairs[kPeekCol].ours;
      Answer a = Peek(fd);
      if (row.peek) {
        EXPECT_EQ(a, *row.peek) << "peek: kernel said " << Show(a);
      }
      TcpSample now = ReadTcpInfo(fd);
      EXPECT_EQ(Word(ClassifyPeek(a.result, a.err, now, none)), row.verdict_peek)
          << "peek answered " << Show(a);
      if (row.peek_again) {
        Answer b = Peek(fd);
        EXPECT_EQ(b, *row.peek_again) << "second peek: kernel said " << Show(b);
      }
    }
    {  // epoll for IN|OUT|RDHUP
      uint32_t e = EpollEvents(pairs[kEpollCol].ours);
      EXPECT_EQ(e, row.epoll) << "epoll: kernel said " << ShowEvents(e) << ", doc says "
                              << ShowEvents(row.epoll);
    }
    {  // send(fd, "", 0, MSG_NOSIGNAL)
      int fd = pairs[kZeroSendCol].ours;
      Answer a = ZeroSend(fd);
      if (row.zero_send) {
        EXPECT_EQ(a, *row.zero_send) << "zero-byte send: kernel said " << Show(a);
      }
      TcpSample now = ReadTcpInfo(fd);
      EXPECT_EQ(Word(ClassifyZeroSend(a.result, a.err, now, none)), row.verdict_zero_send)
          << "zero-byte send answered " << Show(a);
      if (row.zero_send_again) {
        Answer b = ZeroSend(fd);
        EXPECT_EQ(b, *row.zero_send_again) << "second zero-byte send: kernel said " << Show(b);
      }
    }
    {  // TCP_INFO
      int fd = pairs[kStateCol].ours;
      TcpSample s = ReadTcpInfo(fd);
      ASSERT_TRUE(s.valid);
      EXPECT_EQ(int{s.state}, int{row.state}) << "tcpi_state";
      std::array<uint64_t, kDetectorCount> runs{};
      ProbeList only;
      only.Add(Probe::kTcpInfo);
      ProbeResult r = RunProbes(fd, only, none, &runs);
      EXPECT_EQ(Word(r.verdict), row.verdict_tcp_info) << "tcp_info probe (state " << int{s.state} << ")";
    }
    {  // SO_ERROR
      int fd = pairs[kSoErrorCol].ours;
      int e = SoError(fd);
      if (row.so_error) {
        EXPECT_EQ(ErrnoName(e), ErrnoName(*row.so_error)) << "SO_ERROR";
      }
      TcpSample now = ReadTcpInfo(fd);
      EXPECT_EQ(Word(ClassifySoError(e, now, none)), row.verdict_so_error)
          << "SO_ERROR answered " << ErrnoName(e);
      if (row.so_error_again) {
        EXPECT_EQ(ErrnoName(SoError(fd)), ErrnoName(*row.so_error_again))
            << "SO_ERROR is reported once";
      }
    }
    {  // the default probe list, as a periodic check runs it
      std::array<uint64_t, kDetectorCount> runs{};
      ProbeResult r = RunProbes(pairs[kDefaultRunCol].ours, ProbeList::Default(), none, &runs);
      std::string got = r.verdict.dead()
                            ? std::string(DetectorName(r.by)) + " " + Word(r.verdict)
                            : Word(r.verdict);
      EXPECT_EQ(got, row.default_run) << "default probes [peek, zero_send, tcp_info]";
    }
  }
}

// The classic experiment behind the errno myth, step by step on one
// connection: after the peer's FIN recv says 0 (errno untouched), the first
// send still succeeds, the peer answers RST, the second send fails with EPIPE.
TEST(KernelTruthTable, FinThenWriteThenEpipe) {
  Pair p = Connect();
  close(p.peer);
  p.peer = -1;
  ASSERT_TRUE(WaitFor([&] { return State(p.ours) == TCP_CLOSE_WAIT; }, milliseconds(2000)));
  char buf[8];
  errno = EAGAIN;  // what the myth reads after recv() == 0
  EXPECT_EQ(recv(p.ours, buf, sizeof buf, MSG_DONTWAIT), 0) << "EOF: the peer sent FIN";
  EXPECT_EQ(errno, EAGAIN) << "recv() == 0 does not touch errno: it is whatever was left";
  errno = EINPROGRESS;
  EXPECT_EQ(send(p.ours, "one", 3, MSG_NOSIGNAL), 3) << "the first send after a FIN succeeds";
  EXPECT_EQ(errno, EINPROGRESS) << "a send that succeeded says nothing through errno";
  ASSERT_TRUE(WaitFor([&] { return State(p.ours) == TCP_CLOSE; }, milliseconds(2000)))
      << "the peer's kernel answers the data with RST";
  errno = 0;
  EXPECT_EQ(send(p.ours, "two", 3, MSG_NOSIGNAL), -1);
  EXPECT_EQ(ErrnoName(errno), "EPIPE") << "the second send fails";
  // And connwatch reads each answer by its result, never by a stale errno.
  EXPECT_EQ(Word(ClassifyRecv(0, EAGAIN, TcpSample{}, TcpSample{})), "peer_closed");
  EXPECT_EQ(Word(ClassifyZeroSend(0, EINPROGRESS, TcpSample{}, TcpSample{})), "alive");
  EXPECT_EQ(Word(ClassifyRecv(-1, EAGAIN, TcpSample{}, TcpSample{})), "alive")
      << "-1 EAGAIN is the opposite of closed";
}

// Without MSG_NOSIGNAL that second send kills the process with SIGPIPE.
TEST(KernelTruthTable, SendWithoutNosignalRaisesSigpipe) {
  Pair p = Connect();
  close(p.peer);
  p.peer = -1;
  ASSERT_TRUE(WaitFor([&] { return State(p.ours) == TCP_CLOSE_WAIT; }, milliseconds(2000)));
  ASSERT_EQ(send(p.ours, "one", 3, MSG_NOSIGNAL), 3);
  ASSERT_TRUE(WaitFor([&] { return State(p.ours) == TCP_CLOSE; }, milliseconds(2000)));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    send(p.ours, "two", 3, 0);
    _exit(0);  // not reached when SIGPIPE kills
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited with " << WEXITSTATUS(status)
                                   << " instead of dying of SIGPIPE";
  EXPECT_EQ(WTERMSIG(status), SIGPIPE);
}

}  // namespace
}  // namespace connwatch
