#pragma once
// The Prometheus exposition of connwatchd. Every family is built at scrape
// time from one Snapshot (no per-target prometheus::Counter/Gauge objects that
// would have to be kept in sync with targets coming and going on reload), plus
// connwatch_build_info and the standard process_* families. Names, types, help
// and label names come from the table in metrics_table.h.
//
// MetricsView only holds the function that yields the latest snapshot; it may
// be collected from any thread as long as that function may be called from it
// (DaemonControl::GetSnapshot may).

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/snapshot.h"

namespace connwatch {

class MetricsView : public prometheus::Collectable {
 public:
  // Returns the latest snapshot, or nullptr when none is available (then only
  // connwatch_build_info and process_* are collected).
  using SnapshotSource = std::function<std::shared_ptr<const Snapshot>()>;

  explicit MetricsView(SnapshotSource source);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  SnapshotSource source_;
};

// Every family for `snapshot`, in table order: the connwatch_* families of the
// snapshot, connwatch_build_info, then process_*. Families with no series (no
// target has an RTT yet, no reason counted yet...) are left out.
std::vector<prometheus::MetricFamily> BuildMetricFamilies(const Snapshot& snapshot);

// The body of GET /metrics (text format 0.0.4): the bytes TextSerializer
// writes for BuildMetricFamilies(snapshot), with the per-target families
// streamed by metrics_text.h instead of built as MetricFamily objects.
std::string RenderMetrics(const Snapshot& snapshot);

// RenderMetrics in pieces: the per-target families streamed chunk by chunk,
// then the daemon's own families. Peak memory does not grow with targets.
void StreamMetrics(const Snapshot& snapshot, const std::function<void(std::string_view)>& write);

// What process_* reports, with the semantics of the official Prometheus
// clients: CPU user+system seconds, RSS and VSZ from /proc/self/stat, open fds
// from /proc/self/fd, the soft RLIMIT_NOFILE, and the start time from the
// starttime field of /proc/self/stat plus btime from /proc/stat.
struct ProcessStats {
  double cpu_seconds = 0;
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;
};
// nullopt when /proc could not be read (then no process_* family is exported).
std::optional<ProcessStats> ReadProcessStats();

}  // namespace connwatch
