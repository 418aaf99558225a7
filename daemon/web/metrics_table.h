#pragma once
// The one table of every metric connwatchd exports: name, type, help and label
// names, like Envoy's ALL_HEALTH_CHECKER_STATS. The exposition (metrics_view)
// builds its families from this table and docs/METRICS.md is generated from it
// (a test fails when the file drifts). Constant data; any thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace connwatch {

// One entry per row of kMetrics, in the same order (checked at compile time).
enum class MetricId : uint8_t {
  kTargetUp,
  kTargetUpSeconds,
  kTargetInfo,
  kTargetConnects,
  kTargetConnectFailures,
  kTargetDisconnects,
  kTargetIcmpErrors,
  kTargetLastChange,
  kTargetRtt,
  kTargetRetransmits,
  kTargetHeartbeatDuration,
  kTargetTlsCertExpiry,
  kTargetTlsInfo,
  kTargetIdleCutoff,
  kTargetAddressStale,
  kDnsFailures,
  kTargetCanaryUp,
  kTargetCanaryFailures,
  kTargetCanaryConnectDuration,
  kTargets,
  kConnectDuration,
  kConnectionLifetime,
  kTlsHandshakeDuration,
  kChecks,
  kProbes,
  kProbeDetections,
  kEventLoopBusy,
  kConfigLastReloadSuccessful,
  kConfigLastReloadSuccessTimestamp,
  kShardInfo,
  kShardTargetsSkipped,
  kStateWriteFailures,
  kStateLastWriteSuccessTimestamp,
  kBuildInfo,
  kProcessCpuSeconds,
  kProcessResidentMemory,
  kProcessVirtualMemory,
  kProcessOpenFds,
  kProcessMaxFds,
  kProcessStartTime,
  kCount
};
inline constexpr size_t kMetricCount = static_cast<size_t>(MetricId::kCount);

enum class MetricKind : uint8_t { kCounter, kGauge, kHistogram };

inline constexpr size_t kMaxFixedLabels = 6;

struct MetricDef {
  MetricId id;
  std::string_view name;
  MetricKind kind;
  // Fixed label names in exposition order; unused slots are empty.
  std::array<std::string_view, kMaxFixedLabels> labels;
  // The target's user labels (config `labels:`) follow the fixed ones.
  bool user_labels;
  std::string_view help;  // one line, no backslash (written verbatim).

  size_t label_count() const {
    size_t n = 0;
    while (n < kMaxFixedLabels && !labels[n].empty()) ++n;
    return n;
  }
};

// clang-format off
inline constexpr std::array<MetricDef, kMetricCount> kMetrics = {{
    {MetricId::kTargetUp, "connwatch_target_up", MetricKind::kGauge, {"target"}, false,
     "1 while the connection to the target is established and passes its checks, else 0."},
    {MetricId::kTargetUpSeconds, "connwatch_target_up_seconds_total", MetricKind::kCounter, {"target"},
     false,
     "Seconds the target has been up, advanced at every up/down change and at scrape time: rate() over a window is the exact availability, flaps between scrapes included. Carried over reloads."},
    {MetricId::kTargetInfo, "connwatch_target_info", MetricKind::kGauge, {"target", "address"}, true,
     "Always 1; carries the configured address (srv targets: the SRV name) and the user labels of the target; one series per endpoint for addresses: all and srv targets, srv endpoints with their SRV record's priority and weight."},
    {MetricId::kTargetConnects, "connwatch_target_connects_total", MetricKind::kCounter, {"target"}, false,
     "Connections to the target that were established."},
    {MetricId::kTargetConnectFailures, "connwatch_target_connect_failures_total", MetricKind::kCounter,
     {"target", "reason"}, false,
     "Connection attempts that failed, by reason. A series appears once its reason has happened."},
    {MetricId::kTargetDisconnects, "connwatch_target_disconnects_total", MetricKind::kCounter,
     {"target", "reason"}, false,
     "Established connections that ended, by reason. A series appears once its reason has happened."},
    {MetricId::kTargetIcmpErrors, "connwatch_target_icmp_errors_total", MetricKind::kCounter,
     {"target", "reason"}, false,
     "ICMP errors reported on the established connection while the kernel kept it (report_icmp, or the so_error probe), by reason."},
    {MetricId::kTargetLastChange, "connwatch_target_last_change_timestamp_seconds", MetricKind::kGauge,
     {"target"}, false,
     "Unix time of the last up/down change of the target; before the first, when the target was "
     "configured (at start, or by the reload that added or changed it)."},
    {MetricId::kTargetRtt, "connwatch_target_rtt_seconds", MetricKind::kGauge, {"target"}, false,
     "Smoothed round-trip time of the current or last connection, from TCP_INFO."},
    {MetricId::kTargetRetransmits, "connwatch_target_retransmits_total", MetricKind::kCounter, {"target"},
     false, "TCP segments retransmitted, summed over the connections to the target."},
    {MetricId::kTargetHeartbeatDuration, "connwatch_target_heartbeat_duration_seconds", MetricKind::kGauge,
     {"target"}, false,
     "Round-trip time of the last heartbeat (targets with a heartbeat, once a reply was seen)."},
    {MetricId::kTargetTlsCertExpiry, "connwatch_target_tls_cert_expiry_timestamp_seconds",
     MetricKind::kGauge, {"target"}, false,
     "Unix time of the earliest notAfter in the certificate chain the peer presented at the last TLS handshake (TLS targets)."},
    {MetricId::kTargetTlsInfo, "connwatch_target_tls_info", MetricKind::kGauge,
     {"target", "version", "cipher", "subject", "issuer", "fingerprint_sha256"}, false,
     "Always 1; the protocol, cipher and leaf certificate of the current or last TLS session (TLS targets)."},
    {MetricId::kTargetIdleCutoff, "connwatch_target_idle_cutoff_seconds", MetricKind::kGauge,
     {"target"}, false,
     "The idle age at which the target's connections repeatedly die: a middlebox on the path forgets idle flows after at most this long (targets where at least 3 deaths agreed within 5%)."},
    {MetricId::kTargetAddressStale, "connwatch_target_address_stale", MetricKind::kGauge, {"target"},
     false,
     "1 while the held connection's address is no longer among the addresses DNS returns for the target's name (the old primary after a failover), else 0. Targets whose address is a name, with addresses: first (with addresses: all a vanished address is closed instead)."},
    {MetricId::kDnsFailures, "connwatch_dns_failures_total", MetricKind::kCounter, {"target"}, false,
     "Lookups of the target's name that failed: before a connect attempt (also a connect failure dns_error) and re-resolutions of a held connection (which is kept); for addresses: all and srv targets, the lookups that find the endpoints (one series per target, no endpoint label; the endpoints held are kept). Targets whose address is a name. Carried over reloads."},
    {MetricId::kTargetCanaryUp, "connwatch_target_canary_up", MetricKind::kGauge, {"target"}, false,
     "1 when the last canary attempt (a fresh connection beside the held one: connect, and the TLS handshake of a TLS target) succeeded, 0 when it failed. Targets with a canary, after its first attempt."},
    {MetricId::kTargetCanaryFailures, "connwatch_target_canary_failures_total", MetricKind::kCounter,
     {"target", "reason"}, false,
     "Canary attempts that failed, by connect-failure reason. Targets with a canary; a series appears once its reason has happened. Carried over reloads."},
    {MetricId::kTargetCanaryConnectDuration, "connwatch_target_canary_connect_duration_seconds",
     MetricKind::kGauge, {"target"}, false,
     "Time the last successful canary attempt took, connect and TLS handshake together. Targets with a canary, once an attempt succeeded."},
    {MetricId::kTargets, "connwatch_targets", MetricKind::kGauge, {"state"}, false,
     "Configured targets by state (backoff, resolving, connecting, up); a target with addresses: all or srv counts once per endpoint (once while it has none)."},
    {MetricId::kConnectDuration, "connwatch_connect_duration_seconds", MetricKind::kHistogram, {}, false,
     "Time from connect() to an established connection."},
    {MetricId::kConnectionLifetime, "connwatch_connection_lifetime_seconds", MetricKind::kHistogram, {},
     false, "How long established connections stayed up before they ended."},
    {MetricId::kTlsHandshakeDuration, "connwatch_tls_handshake_duration_seconds",
     MetricKind::kHistogram, {}, false,
     "Time from the TCP connection to the end of the TLS handshake, over all TLS targets."},
    {MetricId::kChecks, "connwatch_checks_total", MetricKind::kCounter, {}, false,
     "Periodic checks of held connections (each runs the target's probes), over all targets."},
    {MetricId::kProbes, "connwatch_probes_total", MetricKind::kCounter, {"probe"}, false,
     "Probes run on held connections, over all targets: read (event-driven reads), peek, zero_send, tcp_info, so_error, heartbeat (requests sent)."},
    {MetricId::kProbeDetections, "connwatch_probe_detections_total", MetricKind::kCounter,
     {"probe", "reason"}, false,
     "Disconnects by the probe that saw the death first, and their reason, over all targets."},
    {MetricId::kEventLoopBusy, "connwatch_event_loop_busy_seconds", MetricKind::kHistogram, {}, false,
     "Time the event loop spent handling events in one iteration (how long it could not react to a socket)."},
    {MetricId::kConfigLastReloadSuccessful, "connwatch_config_last_reload_successful",
     MetricKind::kGauge, {}, false, "1 if the last configuration load or reload succeeded, else 0."},
    {MetricId::kConfigLastReloadSuccessTimestamp,
     "connwatch_config_last_reload_success_timestamp_seconds", MetricKind::kGauge, {}, false,
     "Unix time of the last successful configuration load or reload."},
    {MetricId::kShardInfo, "connwatch_shard_info", MetricKind::kGauge, {"index", "total"}, false,
     "Always 1; the shard this instance runs (--shard or global.shard): index 0 to total-1, and index 0, total 1 when not sharded."},
    {MetricId::kShardTargetsSkipped, "connwatch_shard_targets_skipped", MetricKind::kGauge, {}, false,
     "Targets of the config file this instance leaves to the other shards (0 when not sharded); with the targets it keeps, the whole list."},
    {MetricId::kStateWriteFailures, "connwatch_state_write_failures_total", MetricKind::kCounter, {},
     false,
     "Writes of the state file (--storage.path) that failed: a directory missing, unwritable or locked by another daemon, a full disk, an interval skipped because the last write had not ended. The running state is unchanged; a restart would lose what happened since the last write."},
    {MetricId::kStateLastWriteSuccessTimestamp,
     "connwatch_state_last_write_success_timestamp_seconds", MetricKind::kGauge, {}, false,
     "Unix time of the last successful write of the state file in this run; 0 before the first (and always with an empty --storage.path)."},
    {MetricId::kBuildInfo, "connwatch_build_info", MetricKind::kGauge, {"version", "revision"}, false,
     "Always 1; carries the version and the source revision connwatchd was built from."},
    {MetricId::kProcessCpuSeconds, "process_cpu_seconds_total", MetricKind::kCounter, {}, false,
     "Total user and system CPU time spent in seconds."},
    {MetricId::kProcessResidentMemory, "process_resident_memory_bytes", MetricKind::kGauge, {}, false,
     "Resident memory size in bytes."},
    {MetricId::kProcessVirtualMemory, "process_virtual_memory_bytes", MetricKind::kGauge, {}, false,
     "Virtual memory size in bytes."},
    {MetricId::kProcessOpenFds, "process_open_fds", MetricKind::kGauge, {}, false,
     "Number of open file descriptors."},
    {MetricId::kProcessMaxFds, "process_max_fds", MetricKind::kGauge, {}, false,
     "Maximum number of open file descriptors."},
    {MetricId::kProcessStartTime, "process_start_time_seconds", MetricKind::kGauge, {}, false,
     "Start time of the process since unix epoch in seconds."},
}};
// clang-format on

namespace metrics_table_internal {
constexpr bool RowsMatchIds() {
  for (size_t i = 0; i < kMetricCount; ++i) {
    if (static_cast<size_t>(kMetrics[i].id) != i) return false;
  }
  return true;
}
}  // namespace metrics_table_internal
static_assert(metrics_table_internal::RowsMatchIds(), "kMetrics rows must follow MetricId order");

inline const MetricDef& Metric(MetricId id) { return kMetrics[static_cast<size_t>(id)]; }

// "counter" | "gauge" | "histogram" (as in the exposition's # TYPE line).
std::string_view MetricKindName(MetricKind kind);

// The table as Markdown (header row, separator, one row per metric, each line
// ending in '\n'); docs/METRICS.md embeds exactly this text.
std::string MetricsMarkdownTable();

}  // namespace connwatch
