#pragma once
// One watched target: its state machine, its single socket, its one timer and
// its counters. Owned by the Monitor and touched only by the event-loop thread.
//
// Life: backoff -> resolving -> connecting -> up -> backoff ... Every
// transition goes through target_state's NextState. While up, the socket is
// watched for EV_READ (a FIN, RST or error wakes it within the loop's latency)
// and one timer serves the periodic check and the heartbeat. What a wake-up
// means is decided by liveness.h; this class only makes the system calls.

#include <ev.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/admission.h"
#include "core/config.h"
#include "core/event_log.h"
#include "core/histogram.h"
#include "core/liveness.h"
#include "net/resolver.h"
#include "core/snapshot.h"
#include "core/target_state.h"

namespace re2 {
class RE2;
}

namespace connwatch {

// What all targets share: the loop and its services. Owned by the Monitor.
struct LoopContext {
  struct ev_loop* loop = nullptr;
  Resolver* resolver = nullptr;
  Admission* admission = nullptr;
  EventLog* log = nullptr;
  std::mt19937_64 rng{0};
  std::vector<char> drain_buffer = std::vector<char>(kDrainChunk);
  FixedHistogram connect_duration{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                   0.5, 1, 2.5, 5, 10}};
  FixedHistogram connection_lifetime{
      {1, 10, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800}};
  std::array<uint64_t, kStateCount> targets_by_state{};
  uint64_t checks = 0;  // periodic checks made
  // Target sockets open, and how many they may use: RLIMIT_NOFILE less a
  // reserve for the listener, HTTP clients, DNS and config reads, so running
  // out of descriptors costs targets (local_error), never the daemon itself.
  size_t sockets_open = 0;
  size_t socket_budget = SIZE_MAX;
  // Compiled heartbeat regexes shared by every target with the same pattern.
  std::unordered_map<std::string, std::shared_ptr<const re2::RE2>> regex_cache;

  static constexpr size_t kDrainChunk = 16 * 1024;
  static constexpr int kMaxReadsPerWakeup = 4;  // at most 64 KiB per target per wake-up

  double Uniform01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
  std::shared_ptr<const re2::RE2> Regex(const std::string& pattern);
};

class Target {
 public:
  Target(LoopContext* ctx, std::shared_ptr<const TargetConfig> config);
  ~Target();  // closes the socket silently; call Close() first to log it.
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  // Schedules the first attempt after U[0, startup_jitter).
  void Start();
  // A close we make ourselves (reload, shutdown): logged as event "close",
  // counted nowhere. `log` false skips the line (shutdown logs a summary).
  void Close(std::string_view why, bool log);
  // Carries counters over from a target of the same name whose config changed.
  void InheritCounters(const Target& old);
  // Swaps in an equal config (same values, new object) on reload.

  const TargetConfig& config() const { return *config_; }
  TargetState state() const { return state_; }
  bool up() const { return up_; }
  void FillSnapshot(TargetSnapshot* out) const;

 private:
  struct HeartbeatState {
    std::shared_ptr<const re2::RE2> expect;
    std::string received;      // bytes since the last send, capped.
    bool outstanding = false;  // a request was sent and no reply matched yet.
    double sent_at = 0;        // monotonic (MonoNow), for the round trip
    double deadline = 0;       // loop time (LoopNow)
    double next_send = 0;      // loop time
    int failures = 0;          // consecutive
    bool has_rtt = false;
    double last_rtt = 0;
  };
  static constexpr size_t kHeartbeatBufferCap = 4096;

  static void IoCb(struct ev_loop* loop, ev_io* w, int revents);
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);

  void Transition(TargetEvent event);
  // The loop's cached clock (ev_now): the time base of every deadline below.
  double LoopNow() const;
  void ArmTimerAt(double deadline);
  // The backoff expired: start an attempt when admission allows.
  void RequestAttempt();
  void ReleaseSlot();
  void BeginAttempt();
  void OnResolved(const std::string& status, std::vector<ResolvedAddress> addresses);
  void BeginConnect();
  void OnConnectWritable();
  void OnConnected();
  void ConnectFailed(Reason reason, int err, std::string detail);
  void ScheduleBackoff();

  // Up state. Each returns false when the connection died (and was handled).
  bool ReadAvailable();
  bool Check();
  bool SendHeartbeat(double now);
  bool HeartbeatDeadlinePassed();
  void OnHeartbeatBytes(const char* data, size_t len, double now);
  void ArmUpTimer();
  double NextCheckAfter(double now);
  void Die(const Verdict& verdict, const TcpSample& at_death, std::string detail);

  void CloseSocket(bool reset);
  Event MakeEvent(std::string kind, LogLevel level) const;

  LoopContext* ctx_;
  std::shared_ptr<const TargetConfig> config_;
  ev_io io_;
  ev_timer timer_;
  int fd_ = -1;
  TargetState state_ = TargetState::kBackoff;
  bool up_ = false;
  uint32_t attempt_ = 0;  // consecutive failed attempts, the backoff exponent
  Admission::Ticket ticket_;  // our place in the connect queue
  bool holds_slot_ = false;   // an admission slot is ours until the attempt ends
  std::unique_ptr<Resolver::Request> resolve_;
  ResolvedAddress address_;  // current/last resolved address
  bool has_address_ = false;
  std::string resolved_text_;  // address_ as text, made once per resolution

  double connect_started_ = 0;  // monotonic
  double up_since_ = 0;         // monotonic
  double next_check_ = 0;       // loop time (LoopNow)
  double last_change_unix_ = 0;
  TcpSample last_sample_;       // last TCP_INFO of the current connection

  uint64_t connects_ = 0;
  std::array<uint64_t, kReasonCount> connect_failures_{};
  std::array<uint64_t, kReasonCount> disconnects_{};
  uint64_t retransmits_closed_ = 0;  // total_retrans of connections already closed
  bool has_rtt_ = false;

  bool has_last_event_ = false;
  uint8_t last_event_kind_ = 0;  // index into kEventKinds
  Reason last_reason_ = Reason::kError;
  int last_errno_ = 0;
  double last_event_unix_ = 0;

  std::unique_ptr<HeartbeatState> heartbeat_;
};


}  // namespace connwatch
