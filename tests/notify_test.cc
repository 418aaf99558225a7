// System tests of the systemd notify protocol: the test plays systemd. It
// binds a NOTIFY_SOCKET datagram socket, starts connwatchd with it (and with
// WATCHDOG_USEC), and reads what the daemon says: READY=1 only once the HTTP
// listener answers, WATCHDOG=1 at half the interval, STATUS= lines,
// RELOADING=1 then READY=1 around a reload, STOPPING=1 on SIGTERM.
//
// Every wait is poll() on the socket with a deadline; nothing sleeps.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "http_client.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::SteadyClock;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;

constexpr milliseconds kDeadline{5000};
// WATCHDOG_USEC given to the daemon: it must ping every 100 ms.
constexpr int kWatchdogUsec = 200000;

// One datagram from the daemon: "KEY=value" lines.
struct Message {
  std::vector<std::string> lines;
  SteadyClock::time_point received;

  bool Has(const std::string& line) const {
    for (const auto& l : lines) {
      if (l == line) return true;
    }
    return false;
  }
  // The value of KEY=, nullopt when the message has no such line.
  std::optional<std::string> Value(const std::string& key) const {
    for (const auto& l : lines) {
      if (l.rfind(key + "=", 0) == 0) return l.substr(key.size() + 1);
    }
    return std::nullopt;
  }
  std::string Text() const {
    std::string text;
    for (const auto& l : lines) text += (text.empty() ? "" : "\\n") + l;
    return text;
  }
};

// systemd's end of the notify socket: an AF_UNIX datagram socket bound in a
// temporary directory. Keeps every message received, for failure reports.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& dir) : path_(dir + "/notify") {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      error_ = std::string("notify socket ") + path_ + ": " + std::strerror(errno);
    }
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

  // The next datagram, or nullopt when none arrives before `deadline`.
  std::optional<Message> Next(SteadyClock::time_point deadline) {
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
      pollfd p{fd_, POLLIN, 0};
      int ready = poll(&p, 1, left.count() > 0 ? static_cast<int>(left.count()) : 0);
      if (ready < 0 && errno == EINTR) continue;
      if (ready != 1) return std::nullopt;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return std::nullopt;
      }
      Message m;
      m.received = SteadyClock::now();
      std::string text(buf, static_cast<size_t>(n));
      size_t start = 0;
      while (start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) m.lines.push_back(text.substr(start, end - start));
        start = end + 1;
      }
      seen_.push_back(m);
      return m;
    }
  }

  // Reads datagrams until one satisfies `match`, or `timeout` passes.
  std::optional<Message> WaitFor(const std::function<bool(const Message&)>& match,
                                 milliseconds timeout = kDeadline) {
    const auto deadline = SteadyClock::now() + timeout;
    while (std::optional<Message> m = Next(deadline)) {
      if (match(*m)) return m;
    }
    return std::nullopt;
  }
  std::optional<Message> WaitForLine(const std::string& line, milliseconds timeout = kDeadline) {
    return WaitFor([&](const Message& m) { return m.Has(line); }, timeout);
  }

  // Every message received so far, one per line, for failure output.
  std::string Seen() const {
    std::string all;
    for (const auto& m : seen_) all += "  " + m.Text() + "\n";
    return all.empty() ? "  (nothing)\n" : all;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::string error_;
  std::vector<Message> seen_;
};

bool IsWatchdog(const Message& m) { return m.Has("WATCHDOG=1"); }

class Notify : public ::testing::Test {
 protected:
  void SetUp() override {
    // sd_watchdog_enabled() honours WATCHDOG_PID only when it names the
    // daemon's pid, which the test cannot know before the exec: make sure
    // none leaks from the environment the tests run in.
    unsetenv("WATCHDOG_PID");
    ASSERT_EQ(notify_.error(), "");
    ASSERT_EQ(peer_.Start(), "");
    config_ = dir_.Write("connwatch.yaml", Config());
  }

  std::string Config() {
    return "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
           "  backoff: {initial: 50ms, max: 200ms}\n"
           "targets:\n  - name: alpha\n    address: 127.0.0.1:" +
           std::to_string(peer_.port()) + "\n";
  }

  void Launch(std::vector<std::string> env, int http_port = 0) {
    env.push_back("NOTIFY_SOCKET=" + notify_.path());
    daemon_ = std::make_unique<Subprocess>(
        std::vector<std::string>{CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config_,
                                 "--web.listen-address=127.0.0.1:" + std::to_string(http_port)},
        env);
  }
  void LaunchWithWatchdog(int http_port = 0) {
    Launch({"WATCHDOG_USEC=" + std::to_string(kWatchdogUsec)}, http_port);
  }

  // True when a TCP connect to 127.0.0.1:port completes.
  static bool CanConnect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool connected = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (fd >= 0) close(fd);
    return connected;
  }

  // A loopback port nothing listens on now (the kernel's pick for port 0).
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = 0;
    if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    if (fd >= 0) close(fd);
    return port;
  }

  // Waits for READY=1 at start-up and for the target to be up (STATUS=1/1),
  // after which the loop runs and the signal handlers are installed.
  void StartAndWaitUntilUp() {
    LaunchWithWatchdog();
    ASSERT_TRUE(notify_.WaitForLine("READY=1")) << "no READY=1; got:\n"
                                                << notify_.Seen() << daemon_->Output();
    ASSERT_TRUE(notify_.WaitFor([](const Message& m) {
      return m.Value("STATUS") == "1/1 targets up";
    })) << "no STATUS=1/1 targets up; got:\n"
        << notify_.Seen();
  }

  TempDir dir_;
  NotifySocket notify_{dir_.path()};
  TestPeer peer_;
  std::string config_;
  std::unique_ptr<Subprocess> daemon_;
};

TEST_F(Notify, ReadyOnlyOnceTheHttpListenerAnswers) {
  // The port is known before the start, so that nothing but READY=1 tells
  // the test the daemon is up.
  const int port = FreePort();
  ASSERT_NE(port, 0);
  LaunchWithWatchdog(port);
  std::optional<Message> ready = notify_.WaitForLine("READY=1");
  ASSERT_TRUE(ready) << "no READY=1 within " << kDeadline.count() << " ms; got:\n"
                     << notify_.Seen() << daemon_->Output();
  // Freeze the daemon at once, so that it cannot open its listener after
  // the fact: the kernel still completes a TCP handshake with a listening
  // socket of a stopped process, and refuses one without.
  daemon_->Signal(SIGSTOP);
  const bool listening = CanConnect(port);
  daemon_->Signal(SIGCONT);
  EXPECT_TRUE(listening) << "READY=1 came before the HTTP listener was open";
  HttpResponse r = HttpGet("127.0.0.1", port, "/-/ready", milliseconds(2000));
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200) << "the config is loaded before READY=1";
  // READY=1 carries the first STATUS= line.
  std::optional<std::string> status = ready->Value("STATUS");
  ASSERT_TRUE(status) << ready->Text();
  EXPECT_TRUE(std::regex_match(*status, std::regex(R"([01]/1 targets up)"))) << *status;
}

TEST_F(Notify, StatusSaysHowManyTargetsAreUp) {
  StartAndWaitUntilUp();
  // The peer drops the connection: the line follows within the status
  // timer's second, then the target comes back.
  peer_.StopListening();
  peer_.ResetAll();
  EXPECT_TRUE(notify_.WaitFor([](const Message& m) {
    return m.Value("STATUS") == "0/1 targets up";
  })) << notify_.Seen();
  ASSERT_EQ(peer_.Listen(), "");
  EXPECT_TRUE(notify_.WaitFor([](const Message& m) {
    return m.Value("STATUS") == "1/1 targets up";
  })) << notify_.Seen();
}

TEST_F(Notify, WatchdogPingsEveryHalfInterval) {
  LaunchWithWatchdog();
  ASSERT_TRUE(notify_.WaitForLine("READY=1")) << notify_.Seen() << daemon_->Output();
  // Count the pings over one second, from the first one on: 10 at 100 ms.
  std::optional<Message> first = notify_.WaitFor(IsWatchdog, milliseconds(1000));
  ASSERT_TRUE(first) << "no WATCHDOG=1 within 1 s of READY=1; got:\n" << notify_.Seen();
  const auto window_end = first->received + milliseconds(1000);
  int pings = 0;
  auto last = first->received;
  milliseconds longest_gap{0};
  while (std::optional<Message> m = notify_.Next(window_end)) {
    if (!IsWatchdog(*m)) continue;
    ++pings;
    longest_gap =
        std::max(longest_gap, std::chrono::duration_cast<milliseconds>(m->received - last));
    last = m->received;
  }
  EXPECT_GE(pings, 6) << "pings in 1 s, expected about 10; got:\n" << notify_.Seen();
  EXPECT_LE(pings, 14) << "pings in 1 s, expected about 10; got:\n" << notify_.Seen();
  // systemd kills the service after a gap of WATCHDOG_USEC (200 ms); a
  // little more is allowed for a loaded test machine.
  EXPECT_LT(longest_gap.count(), 300) << notify_.Seen();
}

TEST_F(Notify, NoWatchdogWhenItIsForAnotherProcess) {
  // WATCHDOG_PID names the test, not the daemon: sd_watchdog_enabled() says
  // no, and the daemon must not ping (systemd would reject the pings anyway).
  Launch({"WATCHDOG_USEC=100000", "WATCHDOG_PID=" + std::to_string(getpid())});
  ASSERT_TRUE(notify_.WaitForLine("READY=1")) << notify_.Seen() << daemon_->Output();
  // Five intervals without a ping.
  EXPECT_FALSE(notify_.WaitFor(IsWatchdog, milliseconds(500))) << notify_.Seen();
}

TEST_F(Notify, ReloadIsBracketedByReloadingAndReady) {
  StartAndWaitUntilUp();
  for (bool valid : {true, false}) {
    SCOPED_TRACE(valid ? "valid config" : "config with an error");
    dir_.Write("connwatch.yaml", valid ? Config() : "targets: [unclosed\n");
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const unsigned long long before_usec =
        static_cast<unsigned long long>(now.tv_sec) * 1000000ULL + now.tv_nsec / 1000;
    daemon_->Signal(SIGHUP);
    std::optional<Message> reloading = notify_.WaitForLine("RELOADING=1");
    ASSERT_TRUE(reloading) << "no RELOADING=1 after SIGHUP; got:\n" << notify_.Seen();
    // MONOTONIC_USEC lets systemd (Type=notify-reload) tell this reload from
    // an older one.
    std::optional<std::string> mono = reloading->Value("MONOTONIC_USEC");
    ASSERT_TRUE(mono) << reloading->Text();
    EXPECT_GE(std::strtoull(mono->c_str(), nullptr, 10), before_usec) << reloading->Text();
    // READY=1 follows, also after a rejected config: the old one runs on.
    std::optional<Message> ready = notify_.WaitFor([](const Message& m) {
      return m.Has("READY=1") || m.Has("RELOADING=1") || m.Has("STOPPING=1");
    });
    ASSERT_TRUE(ready) << "no READY=1 after RELOADING=1; got:\n" << notify_.Seen();
    EXPECT_TRUE(ready->Has("READY=1")) << ready->Text();
    EXPECT_EQ(ready->Value("STATUS"), "1/1 targets up") << ready->Text();
  }
  EXPECT_EQ(peer_.accepted_total(), 1u) << "an unchanged target keeps its connection";
}

TEST_F(Notify, SigtermSendsStoppingThenExits) {
  StartAndWaitUntilUp();
  daemon_->Signal(SIGTERM);
  std::optional<Message> stopping = notify_.WaitForLine("STOPPING=1");
  ASSERT_TRUE(stopping) << "no STOPPING=1 after SIGTERM; got:\n" << notify_.Seen();
  EXPECT_EQ(daemon_->Wait(kDeadline), 0) << daemon_->Output();
}

TEST_F(Notify, BadConfigAtStartIsNeverReady) {
  dir_.Write("connwatch.yaml", "targets:\n  - address: \"\"\n");
  LaunchWithWatchdog();
  EXPECT_EQ(daemon_->Wait(kDeadline), 1) << daemon_->Output();
  // Everything the daemon sent is queued by now.
  EXPECT_FALSE(notify_.WaitForLine("READY=1", milliseconds(0))) << notify_.Seen();
}

}  // namespace
}  // namespace connwatch
