#pragma once
// The fixture of the Monitor's integration tests (tests/monitor_test.cc,
// tests/probes_test.cc): a Monitor with its event loop on a thread, a config
// written to a temporary directory, the in-process TestPeer, and waits with
// deadlines that say what was expected and what was seen.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <thread>

#include "monitor/monitor.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch::testing {

using std::chrono::milliseconds;



inline constexpr milliseconds kDeadline{5000};

// A loopback UDP port nobody listens on: c-ares gets ECONNREFUSED at once, so
// a name that is not in /etc/hosts fails fast and no query leaves the host.
inline std::string ClosedUdpServer() {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(sin.sin_port));
}

// Fast defaults so tests finish quickly; the check interval is long so that
// only event-driven detection can pass the tight deadlines.
inline std::string Defaults(const std::string& extra = "") {
  return "defaults:\n"
         "  connect_timeout: 1s\n"
         "  check_interval: 1m\n"
         "  startup_jitter: 0s\n"
         "  backoff: {initial: 50ms, max: 200ms}\n" +
         extra;
}

inline std::string TargetYaml(const std::string& name, const std::string& address,
                   const std::string& extra = "") {
  return "  - name: " + name + "\n    address: \"" + address + "\"\n" + extra;
}

class MonitorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    StopMonitor();
    if (log_file_ != nullptr) std::fclose(log_file_);
  }

  void StartMonitor(const std::string& yaml) {
    config_path_ = dir_.Write("connwatch.yaml", yaml);
    if (log_to_file_) log_file_ = std::fopen((dir_.path() + "/daemon.log").c_str(), "w");
    log_ = std::make_unique<EventLog>(log_file_, LogFormat::kLogfmt, LogLevel::kDebug);
    Monitor::Options options{config_path_, dns_servers_.empty() ? ClosedUdpServer() : dns_servers_,
                             42};
    options.event_reads = event_reads_;
    options.apply_slice_targets = apply_slice_targets_;
    options.on_apply_slice = on_apply_slice_;
    if (handshake_slice_ >= 0) options.handshake_slice = handshake_slice_;
    monitor_ = std::make_unique<Monitor>(options, log_.get());
    std::vector<std::string> errors = monitor_->Start();
    ASSERT_TRUE(errors.empty()) << errors.front();
    thread_ = std::thread([this] { monitor_->Run(); });
    ASSERT_TRUE(WaitFor([&] { return monitor_->Healthy(); }, kDeadline));
  }

  void StopMonitor() {
    if (!monitor_) return;
    monitor_->Stop();
    thread_.join();
    monitor_.reset();
  }

  // With log_to_file_ set before StartMonitor, the daemon's messages go to a
  // file in dir_ (the ring keeps only target events).
  bool LogContains(const std::string& needle) {
    std::ifstream in(dir_.path() + "/daemon.log");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find(needle) != std::string::npos;
  }

  void RewriteConfig(const std::string& yaml) { dir_.Write("connwatch.yaml", yaml); }

  // The target's snapshot once `pred` holds; fails the test otherwise.
  TargetSnapshot WaitForTarget(const std::string& name,
                               const std::function<bool(const TargetSnapshot&)>& pred,
                               const std::string& what, milliseconds timeout = kDeadline) {
    TargetSnapshot last;
    bool found = false;
    bool ok = WaitFor(
        [&] {
          auto snap = monitor_->GetSnapshot();
          if (!snap) return false;
          for (const auto& t : snap->targets) {
            if (t.config->name != name) continue;
            found = true;
            last = t;
            return pred(t);
          }
          return false;
        },
        timeout);
    EXPECT_TRUE(ok) << "target " << name << ": expected " << what << " within "
                    << timeout.count() << "ms; saw "
                    << (found ? "state=" + std::string(StateName(last.state)) +
                                    " up=" + std::to_string(last.up) +
                                    " connects=" + std::to_string(last.connects) +
                                    " last_reason=" + std::string(ReasonName(last.last_reason))
                              : std::string("no such target"))
                    << "\nevents:\n" << RecentEvents();
    return last;
  }

  TargetSnapshot WaitUp(const std::string& name) {
    return WaitForTarget(name, [](const TargetSnapshot& t) { return t.up; }, "up");
  }

  // The first event (oldest first) of `kind` for `target` once it exists.
  Event WaitForEvent(const std::string& target, const std::string& kind,
                     milliseconds timeout = kDeadline, uint64_t after_seq = 0) {
    Event found;
    bool ok = WaitFor(
        [&] {
          auto events = log_->Recent();
          for (auto it = events.rbegin(); it != events.rend(); ++it) {
            if (it->target == target && it->kind == kind && it->seq > after_seq) {
              found = *it;
              return true;
            }
          }
          return false;
        },
        timeout);
    EXPECT_TRUE(ok) << "expected a " << kind << " event for " << target << " within "
                    << timeout.count() << "ms; events:\n" << RecentEvents();
    return found;
  }

  std::string RecentEvents() const {
    std::string out;
    auto events = log_->Recent(30);
    for (auto it = events.rbegin(); it != events.rend(); ++it) out += log_->FormatEvent(*it) + "\n";
    return out;
  }

  uint64_t LastSeq() const {
    auto events = log_->Recent(1);
    return events.empty() ? 0 : events.front().seq;
  }

  static std::string Addr(const TestPeer& peer) {
    return "127.0.0.1:" + std::to_string(peer.port());
  }

  TempDir dir_;
  std::string config_path_;
  bool log_to_file_ = false;
  std::string dns_servers_;  // Monitor::Options::dns_servers; empty: a closed port
  bool event_reads_ = true;  // Monitor::Options::event_reads, set before StartMonitor
  // Monitor::Options::apply_slice_targets and on_apply_slice, set before StartMonitor.
  size_t apply_slice_targets_ = 0;
  std::function<void(size_t)> on_apply_slice_;
  double handshake_slice_ = -1;  // Monitor::Options::handshake_slice when >= 0
  FILE* log_file_ = nullptr;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<Monitor> monitor_;
  std::thread thread_;
};

// A loopback listener whose accept queue is full: it drops every SYN, so a
// connect to it never completes and only our connect_timeout ends it.
class SynDroppingListener {
 public:
  SynDroppingListener() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = bind(listen_fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0 &&
          listen(listen_fd_, 0) == 0;
    socklen_t len = sizeof sin;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    // Backlog 0 admits one; two fill it.
    for (int i = 0; i < 2; ++i) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(c, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
      fillers_.push_back(c);
    }
  }
  ~SynDroppingListener() {
    for (int c : fillers_) close(c);
    close(listen_fd_);
  }
  bool ok() const { return ok_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  bool ok_ = false;
  std::vector<int> fillers_;
};

inline std::unique_ptr<TestPeer> StartPeer(PeerOptions opts = {}) {
  auto peer = std::make_unique<TestPeer>(opts);
  std::string err = peer->Start();
  EXPECT_EQ(err, "");
  return peer;
}

}  // namespace connwatch::testing
