#pragma once
// A consistent, immutable copy of everything the event loop knows, made by the
// loop thread on request. HTTP threads read only snapshots; they never touch
// live target state. Cheap to share: configs are shared_ptr, the rest is POD.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/endpoint.h"
#include "core/idle_cutoff.h"
#include "core/probe.h"
#include "core/reason.h"
#include "core/tcp_sample.h"
#include "core/tls_peer.h"
#include "core/up_history.h"

namespace connwatch {

// A target's canary (net/canary.h) as of the snapshot: what its attempts
// found, apart from the held connection's figures.
struct CanarySnapshot {
  double interval_seconds = 0;
  bool attempted = false;          // an attempt has ended: connwatch_target_canary_up exists
  bool up = false;                 // connwatch_target_canary_up: the last attempt succeeded
  double since_unix = 0;           // the last up/down change (the first attempt's end, at first)
  double last_attempt_unix = 0;    // when the last attempt ended
  uint64_t attempts = 0;           // attempts ended (successes and failures)
  // connwatch_target_canary_failures_total, by Reason index.
  std::array<uint64_t, kReasonCount> failures{};
  // connwatch_target_canary_connect_duration_seconds: the last successful
  // attempt, connect and TLS handshake together.
  bool has_duration = false;
  double connect_seconds = 0;
  // The last failure (meaningful once failures has a count).
  Reason last_reason = Reason::kError;
  int last_errno = 0;
  double last_failure_unix = 0;
  std::string last_detail;
};

// One connection's state: a target's (`addresses: first`), or one endpoint's
// of a target that holds every address (then `endpoint` is set, and several
// snapshots in a row share the config).
struct TargetSnapshot {
  std::shared_ptr<const TargetConfig> config;
  // addresses: all and srv: this endpoint (its `endpoint` label); null for a
  // target with one connection (addresses: first), whose series have none.
  std::shared_ptr<const EndpointInfo> endpoint;
  // addresses: all and srv: the snapshot that carries the name's own series
  // (connwatch_dns_failures_total{target}, from dns_failures): the first
  // endpoint of the target, or its placeholder while it has none.
  bool name_series = false;
  TargetState state = TargetState::kBackoff;
  bool up = false;                 // connwatch_target_up
  double last_change_unix = 0;     // last up/down change (when configured, before the first).
  std::string resolved_address;    // "10.0.0.5:6379" / "[::1]:80"; empty if never resolved.
  // The host is a name (looked up through DNS): the two series below exist.
  bool resolves_name = false;
  bool address_stale = false;      // connwatch_target_address_stale
  uint64_t dns_failures = 0;       // connwatch_dns_failures_total
  // The last event of this target (connect failure, disconnect or connect).
  bool has_last_event = false;
  std::string last_event_kind;     // "connect" | "connect_failure" | "disconnect"
  Reason last_reason = Reason::kError;  // meaningful unless kind is "connect".
  int last_errno = 0;
  double last_event_unix = 0;
  bool has_last_detected_by = false;  // the last event is a disconnect
  Detector last_detected_by = Detector::kRead;
  // The last connect failure or disconnect, even once the target is up again
  // (the status page's "last failure"): kind empty if there was none.
  std::string_view last_failure_kind;  // "connect_failure" | "disconnect" (static)
  Reason last_failure_reason = Reason::kError;
  int last_failure_errno = 0;
  double last_failure_unix = 0;

  uint64_t connects = 0;
  std::array<uint64_t, kReasonCount> connect_failures{};  // by Reason index
  std::array<uint64_t, kReasonCount> disconnects{};       // by Reason index
  std::array<uint64_t, kReasonCount> icmp_errors{};       // soft ICMP errors, by Reason index
  // The idle cut-off inferred from this target's deaths (core/idle_cutoff.h), 0 if none.
  double idle_cutoff_seconds = 0;
  // The inference behind it (the state file keeps it); null before a death
  // that could be such a cut.
  std::shared_ptr<const IdleCutoff> idle_cutoff;
  // Targets with `canary:` only (null otherwise).
  std::shared_ptr<const CanarySnapshot> canary;
  uint64_t retransmits_total = 0;  // summed over this target's connections.
  bool has_rtt = false;
  double rtt_seconds = 0;          // smoothed RTT of the current/last connection.
  // TLS targets: the peer's certificates at the current or last handshake
  // (null before the first one, and for plain TCP targets).
  std::shared_ptr<const TlsPeerInfo> tls;
  bool has_heartbeat = false;      // heartbeat configured and at least one reply seen.
  double heartbeat_seconds = 0;    // last heartbeat round trip.
  // connwatch_target_up_seconds_total, advanced to the time of this copy.
  double up_seconds_total = 0;
  // The up/down history as of `history_at` (monotonic): readers compute its
  // report off the loop, history.Report(history_at).
  UpHistory history;
  double history_at = 0;
};

// Fixed-bucket histogram as the loop accumulates it.
struct HistogramSnapshot {
  std::vector<double> bounds;      // upper bounds, ascending, without +Inf.
  std::vector<uint64_t> buckets;   // non-cumulative counts, bounds.size() + 1 (last = +Inf).
  uint64_t count = 0;
  double sum = 0;
};

struct Snapshot {
  double taken_unix = 0;
  std::vector<TargetSnapshot> targets;  // in config order.
  std::array<uint64_t, kStateCount> targets_by_state{};
  HistogramSnapshot connect_duration;     // seconds from connect() to established.
  HistogramSnapshot connection_lifetime;  // seconds a connection stayed up.
  HistogramSnapshot tls_handshake_duration;  // seconds from TCP connected to TLS established.
  HistogramSnapshot loop_busy;           // seconds spent handling one loop iteration.
  uint64_t checks = 0;                    // periodic checks made, all targets.
  // Probes run and deaths first seen, by Detector (and Reason).
  std::array<uint64_t, kDetectorCount> probe_runs{};
  std::array<std::array<uint64_t, kReasonCount>, kDetectorCount> detections{};
  bool config_loaded = false;
  bool last_reload_successful = false;
  double last_reload_success_unix = 0;
  ShardConfig shard;                  // connwatch_shard_info
  uint64_t shard_targets_skipped = 0;  // connwatch_shard_targets_skipped
  // The state file (--storage.path): writes that failed, and when the last
  // one succeeded (0: none yet in this run).
  uint64_t state_write_failures = 0;
  double state_last_write_success_unix = 0;
};

// What the HTTP surface needs from the daemon. Implemented by Monitor; faked
// in tests. All methods are callable from any thread.
class DaemonControl {
 public:
  virtual ~DaemonControl() = default;
  // A fresh snapshot made by the loop thread; nullptr if the loop did not
  // answer within its deadline.
  virtual std::shared_ptr<const Snapshot> GetSnapshot() = 0;
  // Re-reads the config (as SIGHUP does). Returns the error lines; empty
  // means success.
  virtual std::vector<std::string> Reload() = 0;
  virtual bool Healthy() = 0;  // the event loop is turning.
  virtual bool Ready() = 0;    // a config is loaded.
};

}  // namespace connwatch
