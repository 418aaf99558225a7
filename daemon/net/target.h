#pragma once
// One watched target: its state machine, its single socket, its one timer and
// its counters. Owned by the Monitor and touched only by the event-loop thread.
//
// Life: backoff -> resolving -> connecting -> up -> backoff ... Every
// transition goes through target_state's NextState. While up, the socket is
// watched for EV_READ (a FIN, RST or error wakes it within the loop's latency;
// EV_WRITE too while a heartbeat request waits for room in the send buffer)
// and one timer serves the periodic check (the probes of net/probes.h) and
// the heartbeat (core/heartbeat.h). What a wake-up means is decided by
// core/liveness.h; this class only makes the system calls.
//
// Every deadline is on the monotonic clock (LoopContext::now): a step of the
// system clock moves no check and no heartbeat.

#include <ev.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/address_watch.h"
#include "net/admission.h"
#include "net/canary.h"
#include "net/check_scheduler.h"
#include "core/config.h"
#include "core/endpoint.h"
#include "core/event_log.h"
#include "core/heartbeat.h"
#include "core/histogram.h"
#include "core/idle_cutoff.h"
#include "core/liveness.h"
#include "core/probe.h"
#include "net/resolver.h"
#include "net/socket_closer.h"
#include "net/tls_session.h"
#include "core/snapshot.h"
#include "core/state_file.h"
#include "core/target_state.h"
#include "core/up_history.h"

namespace re2 {
class RE2;
}

namespace connwatch {

// What all targets share: the loop and its services. Owned by the Monitor.
struct LoopContext {
  struct ev_loop* loop = nullptr;
  // The loop's cached monotonic time (seconds), the time base of every target
  // deadline: set by the Monitor when the loop wakes up (and before it first
  // runs), like ev_now() but immune to steps of the system clock. Targets due
  // at the same instant land on the same instant of libev's timer heap.
  double now = 0;
  // Bench-only (docs/PROBES.md): false leaves held sockets out of the loop's
  // EV_READ set, so that only the periodic probes and heartbeats can see a
  // death. Never off in production.
  bool event_reads = true;
  // TLS handshake steps wait for the next loop iteration once this monotonic
  // instant has passed (0: no bound). The Monitor sets it a few milliseconds
  // after each wake-up: a handshake step costs up to a millisecond of CPU
  // (key exchange, chain and signature checks), and hundreds of servers
  // answering in the same iteration would otherwise hold the loop for a
  // second, delaying every other target's detection and every snapshot.
  double handshake_deadline = 0;
  uint64_t handshake_steps = 0;  // handshake steps run in this iteration
  Resolver* resolver = nullptr;
  Admission* admission = nullptr;
  CheckScheduler* checks_due = nullptr;  // the periodic checks of held connections
  // Closes sockets off the loop (net/socket_closer.h); nullptr: close() here.
  SocketCloser* closer = nullptr;
  EventLog* log = nullptr;
  std::mt19937_64 rng{0};
  std::vector<char> drain_buffer = std::vector<char>(kDrainChunk);
  FixedHistogram connect_duration{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                   0.5, 1, 2.5, 5, 10}};
  // From the TCP connection to the end of the TLS handshake (TLS targets).
  FixedHistogram tls_handshake_duration{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25, 0.5, 1, 2.5, 5, 10}};
  FixedHistogram connection_lifetime{
      {1, 10, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800}};
  std::array<uint64_t, kStateCount> targets_by_state{};
  uint64_t checks = 0;  // periodic checks made
  // connwatch_probes_total and connwatch_probe_detections_total.
  std::array<uint64_t, kDetectorCount> probe_runs{};
  std::array<std::array<uint64_t, kReasonCount>, kDetectorCount> detections{};
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
  // One endpoint of a target that holds every address (net/endpoint_set.h):
  // every attempt connects to `address` without a lookup (the EndpointSet
  // follows the name), and events and series name `endpoint`.
  Target(LoopContext* ctx, std::shared_ptr<const TargetConfig> config,
         const ResolvedAddress& address, std::shared_ptr<const EndpointInfo> endpoint);
  ~Target();  // closes the socket silently; call Close() first to log it.
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;
  // Targets live in huge-page blocks (net/target_pool.h).
  static void* operator new(size_t size);
  static void operator delete(void* p);

  // Schedules the first attempt after U[0, startup_jitter).
  void Start();
  // A close we make ourselves (reload, shutdown): logged as event "close",
  // counted nowhere. `log` false skips the line (shutdown logs a summary).
  void Close(std::string_view why, bool log);
  // Carries counters over from a target of the same name whose config changed.
  void InheritCounters(const Target& old);
  // At start-up, before Start(): what the last run saved of this target (the
  // caller checked that name and address match). `mono_delta` is this
  // process's monotonic clock minus the saving one's at the same instant.
  // Counters, the last event and failure, the last change, the history (the
  // time between the save and now unobserved), RTT, TLS peer, idle cut-off.
  void Restore(const StoredTarget& saved, double mono_delta);

  const TargetConfig& config() const { return *config_; }
  // Null for a target with one connection (addresses: first).
  const EndpointInfo* endpoint() const { return endpoint_.get(); }
  // An endpoint's fixed address (the last resolved one for other targets).
  const ResolvedAddress& address() const { return address_; }
  // The same endpoint, with what its SRV record says now (priority, weight).
  void UpdateEndpoint(std::shared_ptr<const EndpointInfo> endpoint) {
    endpoint_ = std::move(endpoint);
  }
  TargetState state() const { return state_; }
  bool up() const { return up_; }
  void FillSnapshot(TargetSnapshot* out) const;

  // CheckScheduler::DueFn: the periodic check of a held connection is due.
  static void CheckDue(CheckScheduler::Entry* entry);

 private:
  static void IoCb(struct ev_loop* loop, ev_io* w, int revents);
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);

  void Transition(TargetEvent event);
  // The loop's cached monotonic clock: the time base of every deadline below.
  double LoopNow() const { return ctx_->now; }
  void ArmTimerAt(double deadline);
  // The backoff expired: start an attempt when admission allows.
  void RequestAttempt();
  void ReleaseSlot();
  void BeginAttempt();
  void OnResolved(const std::string& status, std::vector<ResolvedAddress> addresses);
  void BeginConnect();
  void OnConnectWritable();
  // TCP is connected: a TLS target starts its handshake, the others are up.
  void OnConnected();
  void StartTlsHandshake();
  void ContinueTlsHandshake();
  // True once this loop iteration has had its share of handshake work (at
  // least one step, up to LoopContext::handshake_deadline).
  bool HandshakeSliceOver() const;
  // TLS 1.3 with a client certificate asked for: the server's next flight
  // (session tickets, or an alert rejecting the certificate) is its verdict.
  void OnTlsVerdictReadable();
  void FinishTls();
  // The connection is established (and the TLS session, if any): up.
  void OnEstablished();
  void ConnectFailed(Reason reason, int err, std::string detail);
  void ScheduleBackoff();

  // Up state. Each returns false when the connection died (and was handled).
  bool ReadAvailable();
  bool ReadTls();  // ReadAvailable through the TLS session
  bool Check();
  bool SendHeartbeat(double now);
  // Writes what is left of the current heartbeat request (EV_WRITE).
  bool FlushHeartbeat();
  bool HeartbeatFailed(const HeartbeatTracker::Failure& failure);
  void WatchWritable(bool on);
  void ArmUpTimer();
  // Queues the next periodic check, check_interval + U[0, check_jitter) after `now`.
  void ScheduleCheck(double now);
  // An ICMP error on the established connection, which the kernel keeps.
  void OnIcmpError(const Verdict& icmp, Detector by);
  // `close_notify`: for a TLS target's peer_closed seen by the read, whether
  // the peer sent close_notify before its FIN (-1: not known).
  void Die(Verdict verdict, const TcpSample& at_death, Detector by, std::string detail,
           int close_notify = -1);
  // Feeds a death to the idle cut-off inference; logs event=idle_cutoff when
  // agreeing deaths make a cut-off known (core/idle_cutoff.h).
  void NoteIdleDeath(Reason reason, const TcpSample& at_death, double lived);

  void CloseSocket(bool reset);
  // A re-resolution of the held connection's name said something (net/address_watch.h).
  void OnAddressWatch(AddressWatch::Outcome outcome, const std::string& detail);
  // on_address_change: reconnect. Our own close, then an attempt at once.
  void ReconnectForAddressChange(std::string why);
  Event MakeEvent(std::string kind, LogLevel level) const;

  // NOTE: the fields a periodic check reads come first, together: at 18,000
  // targets a check is mostly cache misses, and CheckScheduler prefetches
  // this block (check_ is its first member) ahead of the check that needs it.
  CheckScheduler::Entry check_;  // the next periodic check while up
  LoopContext* ctx_;
  int fd_ = -1;
  TargetState state_ = TargetState::kBackoff;
  bool up_ = false;
  bool has_rtt_ = false;
  bool has_icmp_ = false;  // see icmp_ below
  ProbeList probes_;       // config_->probes, check_interval and check_jitter,
  double check_interval_s_ = 0;  // copied so that a check never reads the config
  double check_jitter_s_ = 0;
  TcpSample last_sample_;  // last TCP_INFO of the current connection

  std::shared_ptr<const TargetConfig> config_;
  ev_io io_;
  ev_timer timer_;
  uint32_t attempt_ = 0;  // consecutive failed attempts, the backoff exponent
  Admission::Ticket ticket_;  // our place in the connect queue
  bool holds_slot_ = false;   // an admission slot is ours until the attempt ends
  std::unique_ptr<Resolver::Request> resolve_;
  ResolvedAddress address_;  // current/last resolved address
  bool has_address_ = false;
  std::string resolved_text_;  // address_ as text, made once per resolution
  // Set for an endpoint of an EndpointSet: address_ is fixed, never looked up.
  std::shared_ptr<const EndpointInfo> endpoint_;
  // Names only (null for a numeric host and for an endpoint): the re-resolution while up.
  std::unique_ptr<AddressWatch> address_watch_;
  uint64_t dns_failures_ = 0;  // connwatch_dns_failures_total

  double connect_started_ = 0;  // monotonic
  double up_since_ = 0;         // monotonic
  double last_change_unix_ = 0;
  // Restored from a state file saved while up: until the first attempt ends,
  // last_change_unix_ is the last run's (a connect is no change then, a
  // failure is one).
  bool restored_up_ = false;

  uint64_t connects_ = 0;
  std::array<uint64_t, kReasonCount> connect_failures_{};
  std::array<uint64_t, kReasonCount> disconnects_{};
  std::array<uint64_t, kReasonCount> icmp_errors_{};  // connwatch_target_icmp_errors_total
  uint64_t retransmits_closed_ = 0;  // total_retrans of connections already closed

  bool has_last_event_ = false;
  uint8_t last_event_kind_ = 0;  // index into kEventKinds
  Reason last_reason_ = Reason::kError;
  int last_errno_ = 0;
  double last_event_unix_ = 0;
  bool has_last_detected_by_ = false;  // the last event is a disconnect
  Detector last_detected_by_ = Detector::kRead;
  // The last failure before the current connection (kKindConnect: none).
  uint8_t last_failure_kind_ = 0;
  int last_failure_errno_ = 0;
  double last_failure_unix_ = 0;

  // The last ICMP error of the current connection that the kernel reported
  // while keeping the connection: a timeout that ends it later is filed
  // under this reason. Forgotten when the peer acknowledges again after it.
  Verdict icmp_;
  double icmp_at_ = 0;  // monotonic

  // Heartbeat (targets with one): matching and failures, the next send (loop
  // time), and how many bytes of the current request still wait to be
  // written (EV_WRITE is watched meanwhile).
  // TLS targets: the session of the current connection (from the TCP
  // connect on), whether its handshake runs, and what the last handshake
  // said of the peer's certificates (kept after a disconnect for metrics).
  std::unique_ptr<TlsSession> tls_;
  bool handshaking_ = false;
  bool awaiting_verdict_ = false;
  double tcp_connected_at_ = 0;  // monotonic
  std::shared_ptr<const TlsPeerInfo> tls_peer_;  // shared with snapshots

  std::unique_ptr<HeartbeatTracker> heartbeat_;
  double heartbeat_next_send_ = 0;
  size_t heartbeat_unsent_ = 0;
  bool watching_write_ = false;

  // connwatch_target_up_seconds_total and the status page's history; apart
  // from the block a periodic check reads (about 500 bytes).
  std::unique_ptr<UpHistory> history_;
  // Made on the first death that an idle cut-off could explain.
  std::unique_ptr<IdleCutoff> idle_cutoff_;
  // `canary:` targets only: fresh connections beside the held one (net/canary.h).
  std::unique_ptr<Canary> canary_;
};


}  // namespace connwatch
