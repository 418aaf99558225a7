#include "web/metrics_view.h"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "web/metrics_table.h"
#include "web/metrics_text.h"
#include "version.h"

namespace connwatch {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;

prometheus::MetricType PrometheusType(MetricKind kind) {
  switch (kind) {
    case MetricKind::kCounter:
      return prometheus::MetricType::Counter;
    case MetricKind::kGauge:
      return prometheus::MetricType::Gauge;
    case MetricKind::kHistogram:
      return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

MetricFamily NewFamily(MetricId id, size_t reserve) {
  const MetricDef& def = Metric(id);
  MetricFamily family;
  family.name = def.name;
  family.help = def.help;
  family.type = PrometheusType(def.kind);
  family.metric.reserve(reserve);
  return family;
}

// Label values must be UTF-8 (the exposition format says so and promtool
// rejects anything else); invalid bytes become U+FFFD. Escaping of '\\', '"'
// and '\n' is the serializer's job.
std::string LabelValue(std::string_view value) { return ValidUtf8(value); }

ClientMetric::Label MakeLabel(std::string_view name, std::string value) {
  ClientMetric::Label label;
  label.name = name;
  label.value = std::move(value);
  return label;
}

// The labels a target's series start with: target, and endpoint for an
// endpoint of a target that holds every address.
void AddTargetLabels(const TargetSnapshot& t, const std::string& name, ClientMetric* m) {
  m->label.push_back(MakeLabel("target", name));
  if (t.endpoint) m->label.push_back(MakeLabel("endpoint", LabelValue(t.endpoint->endpoint)));
}

// Appends a series with one label; value set by the caller.
ClientMetric& AddSeries(MetricFamily* family, std::string_view label_name,
                        const std::string& label_value) {
  ClientMetric& m = family->metric.emplace_back();
  m.label.reserve(1);
  m.label.push_back(MakeLabel(label_name, label_value));
  return m;
}

ClientMetric& AddSeries(MetricFamily* family) { return family->metric.emplace_back(); }

void SetValue(const MetricDef& def, ClientMetric* m, double value) {
  if (def.kind == MetricKind::kCounter) {
    m->counter.value = value;
  } else {
    m->gauge.value = value;
  }
}

void AddHistogram(MetricId id, const HistogramSnapshot& h, std::vector<MetricFamily>* out) {
  MetricFamily family = NewFamily(id, 1);
  ClientMetric& m = AddSeries(&family);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  m.histogram.bucket.reserve(h.bounds.size() + 1);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    if (i < h.buckets.size()) cumulative += h.buckets[i];
    ClientMetric::Bucket& b = m.histogram.bucket.emplace_back();
    b.upper_bound = h.bounds[i];
    b.cumulative_count = cumulative;
  }
  // By contract the +Inf bucket holds every observation.
  ClientMetric::Bucket& inf = m.histogram.bucket.emplace_back();
  inf.upper_bound = std::numeric_limits<double>::infinity();
  inf.cumulative_count = h.count;
  out->push_back(std::move(family));
}

// connect_failures_total / disconnects_total: one series per (target, reason)
// whose count is above zero.
void AddReasonFamily(MetricId id, const Snapshot& snapshot, const std::vector<std::string>& names,
                     std::array<uint64_t, kReasonCount> TargetSnapshot::*counts,
                     std::vector<MetricFamily>* out) {
  size_t series = 0;
  for (const TargetSnapshot& t : snapshot.targets) {
    for (uint64_t c : t.*counts) series += c > 0 ? 1 : 0;
  }
  if (series == 0) return;
  const MetricDef& def = Metric(id);
  MetricFamily family = NewFamily(id, series);
  for (size_t i = 0; i < snapshot.targets.size(); ++i) {
    const auto& by_reason = snapshot.targets[i].*counts;
    for (size_t r = 0; r < kReasonCount; ++r) {
      if (by_reason[r] == 0) continue;
      ClientMetric& m = family.metric.emplace_back();
      m.label.reserve(3);
      AddTargetLabels(snapshot.targets[i], names[i], &m);
      m.label.push_back(MakeLabel(def.labels[1], std::string(ReasonName(static_cast<Reason>(r)))));
      m.counter.value = static_cast<double>(by_reason[r]);
    }
  }
  out->push_back(std::move(family));
}

// A family with one series per target (label `target`, and `endpoint` for an
// endpoint unless `per_name`), for the targets `has` accepts, valued by `value`.
template <typename Has, typename Value>
void AddPerTargetFamily(MetricId id, const Snapshot& snapshot,
                        const std::vector<std::string>& names, Has has, Value value,
                        std::vector<MetricFamily>* out, bool per_name = false) {
  size_t series = 0;
  for (const TargetSnapshot& t : snapshot.targets) series += has(t) ? 1 : 0;
  if (series == 0) return;
  const MetricDef& def = Metric(id);
  MetricFamily family = NewFamily(id, series);
  for (size_t i = 0; i < snapshot.targets.size(); ++i) {
    const TargetSnapshot& t = snapshot.targets[i];
    if (!has(t)) continue;
    if (per_name) {
      SetValue(def, &AddSeries(&family, def.labels[0], names[i]), value(t));
      continue;
    }
    ClientMetric& m = family.metric.emplace_back();
    AddTargetLabels(t, names[i], &m);
    SetValue(def, &m, value(t));
  }
  out->push_back(std::move(family));
}

void AddTargetInfo(const Snapshot& snapshot, const std::vector<std::string>& names,
                   std::vector<MetricFamily>* out) {
  if (snapshot.targets.empty()) return;
  const MetricDef& def = Metric(MetricId::kTargetInfo);
  MetricFamily family = NewFamily(MetricId::kTargetInfo, snapshot.targets.size());
  for (size_t i = 0; i < snapshot.targets.size(); ++i) {
    const TargetSnapshot& t = snapshot.targets[i];
    ClientMetric& m = family.metric.emplace_back();
    const size_t user = t.config ? t.config->labels.size() : 0;
    m.label.reserve(5 + user);
    AddTargetLabels(t, names[i], &m);
    m.label.push_back(MakeLabel(def.labels[1], LabelValue(t.config ? t.config->Where() : "")));
    const bool srv = t.endpoint && t.endpoint->priority >= 0;
    if (srv) {
      m.label.push_back(MakeLabel("priority", std::to_string(t.endpoint->priority)));
      m.label.push_back(MakeLabel("weight", std::to_string(t.endpoint->weight)));
    }
    if (t.config) {
      for (const auto& [name, value] : t.config->labels) {
        // The config loader rejects these; a duplicate label name would make
        // the whole scrape invalid, so never emit one.
        if (IsOwnInfoLabel(name, srv)) continue;
        m.label.push_back(MakeLabel(name, LabelValue(value)));
      }
    }
    m.gauge.value = 1;
  }
  out->push_back(std::move(family));
}

void AddScalar(MetricId id, double value, std::vector<MetricFamily>* out) {
  MetricFamily family = NewFamily(id, 1);
  SetValue(Metric(id), &AddSeries(&family), value);
  out->push_back(std::move(family));
}

void AddTargetFamilies(const Snapshot& snapshot, std::vector<MetricFamily>* out) {
  std::vector<std::string> names;
  names.reserve(snapshot.targets.size());
  for (const TargetSnapshot& t : snapshot.targets) {
    names.push_back(LabelValue(t.config ? t.config->name : std::string_view()));
  }
  auto always = [](const TargetSnapshot&) { return true; };

  AddPerTargetFamily(
      MetricId::kTargetUp, snapshot, names, always,
      [](const TargetSnapshot& t) { return t.up ? 1.0 : 0.0; }, out);
  AddPerTargetFamily(
      MetricId::kTargetUpSeconds, snapshot, names, always,
      [](const TargetSnapshot& t) { return t.up_seconds_total; }, out);
  AddTargetInfo(snapshot, names, out);
  AddPerTargetFamily(
      MetricId::kTargetConnects, snapshot, names, always,
      [](const TargetSnapshot& t) { return static_cast<double>(t.connects); }, out);
  AddReasonFamily(MetricId::kTargetConnectFailures, snapshot, names,
                  &TargetSnapshot::connect_failures, out);
  AddReasonFamily(MetricId::kTargetDisconnects, snapshot, names, &TargetSnapshot::disconnects, out);
  AddReasonFamily(MetricId::kTargetIcmpErrors, snapshot, names, &TargetSnapshot::icmp_errors, out);
  AddPerTargetFamily(
      MetricId::kTargetLastChange, snapshot, names, always,
      [](const TargetSnapshot& t) { return t.last_change_unix; }, out);
  AddPerTargetFamily(
      MetricId::kTargetRtt, snapshot, names, [](const TargetSnapshot& t) { return t.has_rtt; },
      [](const TargetSnapshot& t) { return t.rtt_seconds; }, out);
  AddPerTargetFamily(
      MetricId::kTargetRetransmits, snapshot, names, always,
      [](const TargetSnapshot& t) { return static_cast<double>(t.retransmits_total); }, out);
  AddPerTargetFamily(
      MetricId::kTargetHeartbeatDuration, snapshot, names,
      [](const TargetSnapshot& t) { return t.has_heartbeat; },
      [](const TargetSnapshot& t) { return t.heartbeat_seconds; }, out);
  AddPerTargetFamily(
      MetricId::kTargetTlsCertExpiry, snapshot, names,
      [](const TargetSnapshot& t) { return t.tls && t.tls->earliest_expiry_unix > 0; },
      [](const TargetSnapshot& t) { return t.tls->earliest_expiry_unix; }, out);
  {
    size_t series = 0;
    for (const TargetSnapshot& t : snapshot.targets) series += t.tls ? 1 : 0;
    if (series > 0) {
      const MetricDef& def = Metric(MetricId::kTargetTlsInfo);
      MetricFamily family = NewFamily(MetricId::kTargetTlsInfo, series);
      for (size_t i = 0; i < snapshot.targets.size(); ++i) {
        const TargetSnapshot& t = snapshot.targets[i];
        if (!t.tls) continue;
        ClientMetric& m = family.metric.emplace_back();
        const TlsPeerInfo& p = *t.tls;
        AddTargetLabels(t, names[i], &m);
        for (const auto& [label, value] :
             {std::pair{def.labels[1], std::string_view(p.version)},
              {def.labels[2], p.cipher}, {def.labels[3], p.subject}, {def.labels[4], p.issuer},
              {def.labels[5], p.fingerprint}}) {
          m.label.push_back(MakeLabel(label, LabelValue(value)));
        }
        m.gauge.value = 1;
      }
      out->push_back(std::move(family));
    }
  }
  AddPerTargetFamily(
      MetricId::kTargetIdleCutoff, snapshot, names,
      [](const TargetSnapshot& t) { return t.idle_cutoff_seconds > 0; },
      [](const TargetSnapshot& t) { return t.idle_cutoff_seconds; }, out);
  auto resolves_name = [](const TargetSnapshot& t) { return t.resolves_name; };
  AddPerTargetFamily(
      MetricId::kTargetAddressStale, snapshot, names, resolves_name,
      [](const TargetSnapshot& t) { return t.address_stale ? 1.0 : 0.0; }, out);
  AddPerTargetFamily(
      MetricId::kDnsFailures, snapshot, names,
      [](const TargetSnapshot& t) { return t.resolves_name || t.name_series; },
      [](const TargetSnapshot& t) { return static_cast<double>(t.dns_failures); }, out, true);
  AddPerTargetFamily(
      MetricId::kTargetCanaryUp, snapshot, names,
      [](const TargetSnapshot& t) { return t.canary && t.canary->attempted; },
      [](const TargetSnapshot& t) { return t.canary->up ? 1.0 : 0.0; }, out);
  {
    // One series per (target, reason) that happened, as connect failures.
    size_t series = 0;
    for (const TargetSnapshot& t : snapshot.targets) {
      if (!t.canary) continue;
      for (uint64_t c : t.canary->failures) series += c > 0 ? 1 : 0;
    }
    if (series > 0) {
      const MetricDef& def = Metric(MetricId::kTargetCanaryFailures);
      MetricFamily family = NewFamily(MetricId::kTargetCanaryFailures, series);
      for (size_t i = 0; i < snapshot.targets.size(); ++i) {
        const TargetSnapshot& t = snapshot.targets[i];
        if (!t.canary) continue;
        for (size_t r = 0; r < kReasonCount; ++r) {
          const uint64_t c = t.canary->failures[r];
          if (c == 0) continue;
          ClientMetric& m = family.metric.emplace_back();
          m.label.reserve(3);
          AddTargetLabels(t, names[i], &m);
          m.label.push_back(
              MakeLabel(def.labels[1], std::string(ReasonName(static_cast<Reason>(r)))));
          m.counter.value = static_cast<double>(c);
        }
      }
      out->push_back(std::move(family));
    }
  }
  AddPerTargetFamily(
      MetricId::kTargetCanaryConnectDuration, snapshot, names,
      [](const TargetSnapshot& t) { return t.canary && t.canary->has_duration; },
      [](const TargetSnapshot& t) { return t.canary->connect_seconds; }, out);
}

void AddDaemonFamilies(const Snapshot& snapshot, std::vector<MetricFamily>* out) {
  {
    const MetricDef& def = Metric(MetricId::kTargets);
    MetricFamily family = NewFamily(MetricId::kTargets, kStateCount);
    for (size_t s = 0; s < kStateCount; ++s) {
      ClientMetric& m =
          AddSeries(&family, def.labels[0], std::string(StateName(static_cast<TargetState>(s))));
      m.gauge.value = static_cast<double>(snapshot.targets_by_state[s]);
    }
    out->push_back(std::move(family));
  }

  AddHistogram(MetricId::kConnectDuration, snapshot.connect_duration, out);
  AddHistogram(MetricId::kConnectionLifetime, snapshot.connection_lifetime, out);
  AddHistogram(MetricId::kTlsHandshakeDuration, snapshot.tls_handshake_duration, out);
  AddScalar(MetricId::kChecks, static_cast<double>(snapshot.checks), out);
  {
    // Every probe word always has a series (a dashboard's rate() needs it
    // from the start); detections only once they happened.
    const MetricDef& def = Metric(MetricId::kProbes);
    MetricFamily family = NewFamily(MetricId::kProbes, kDetectorCount);
    for (size_t d = 0; d < kDetectorCount; ++d) {
      ClientMetric& m = AddSeries(&family, def.labels[0],
                                  std::string(DetectorName(static_cast<Detector>(d))));
      m.counter.value = static_cast<double>(snapshot.probe_runs[d]);
    }
    out->push_back(std::move(family));
  }
  {
    const MetricDef& def = Metric(MetricId::kProbeDetections);
    MetricFamily family = NewFamily(MetricId::kProbeDetections, 0);
    for (size_t d = 0; d < kDetectorCount; ++d) {
      for (size_t r = 0; r < kReasonCount; ++r) {
        const uint64_t n = snapshot.detections[d][r];
        if (n == 0) continue;
        ClientMetric& m = family.metric.emplace_back();
        m.label.push_back(MakeLabel(def.labels[0], std::string(DetectorName(static_cast<Detector>(d)))));
        m.label.push_back(MakeLabel(def.labels[1], std::string(ReasonName(static_cast<Reason>(r)))));
        m.counter.value = static_cast<double>(n);
      }
    }
    if (!family.metric.empty()) out->push_back(std::move(family));
  }
  AddHistogram(MetricId::kEventLoopBusy, snapshot.loop_busy, out);
  AddScalar(MetricId::kConfigLastReloadSuccessful, snapshot.last_reload_successful ? 1 : 0, out);
  AddScalar(MetricId::kConfigLastReloadSuccessTimestamp, snapshot.last_reload_success_unix, out);
  {
    const MetricDef& def = Metric(MetricId::kShardInfo);
    MetricFamily family = NewFamily(MetricId::kShardInfo, 1);
    ClientMetric& m = AddSeries(&family);
    m.label.push_back(MakeLabel(def.labels[0], std::to_string(snapshot.shard.index)));
    m.label.push_back(MakeLabel(def.labels[1], std::to_string(snapshot.shard.total)));
    m.gauge.value = 1;
    out->push_back(std::move(family));
  }
  AddScalar(MetricId::kShardTargetsSkipped, static_cast<double>(snapshot.shard_targets_skipped),
            out);
  AddScalar(MetricId::kStateWriteFailures, static_cast<double>(snapshot.state_write_failures), out);
  AddScalar(MetricId::kStateLastWriteSuccessTimestamp, snapshot.state_last_write_success_unix, out);
}

void AddBuildInfo(std::vector<MetricFamily>* out) {
  const MetricDef& def = Metric(MetricId::kBuildInfo);
  MetricFamily family = NewFamily(MetricId::kBuildInfo, 1);
  ClientMetric& m = AddSeries(&family);
  m.label.push_back(MakeLabel(def.labels[0], LabelValue(kVersion)));
  m.label.push_back(MakeLabel(def.labels[1], LabelValue(kRevision)));
  m.gauge.value = 1;
  out->push_back(std::move(family));
}

void AddProcessFamilies(std::vector<MetricFamily>* out) {
  std::optional<ProcessStats> stats = ReadProcessStats();
  if (!stats) return;
  AddScalar(MetricId::kProcessCpuSeconds, stats->cpu_seconds, out);
  AddScalar(MetricId::kProcessResidentMemory, stats->resident_memory_bytes, out);
  AddScalar(MetricId::kProcessVirtualMemory, stats->virtual_memory_bytes, out);
  AddScalar(MetricId::kProcessOpenFds, stats->open_fds, out);
  AddScalar(MetricId::kProcessMaxFds, stats->max_fds, out);
  AddScalar(MetricId::kProcessStartTime, stats->start_time_seconds, out);
}

bool ReadSmallFile(const char* path, std::string* out) {
  FILE* f = std::fopen(path, "re");
  if (!f) return false;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  std::fclose(f);
  return true;
}

// Fields of /proc/self/stat after the ")" that closes comm, split on spaces:
// index 0 is field 3 (state) of proc(5).
std::vector<std::string_view> StatFields(std::string_view stat) {
  std::vector<std::string_view> fields;
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return fields;
  std::string_view rest = stat.substr(close + 1);
  fields.reserve(52);
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\n')) ++i;
    size_t start = i;
    while (i < rest.size() && rest[i] != ' ' && rest[i] != '\n') ++i;
    if (i > start) fields.push_back(rest.substr(start, i - start));
  }
  return fields;
}

double FieldNumber(const std::vector<std::string_view>& fields, int proc_field) {
  std::string text(fields[static_cast<size_t>(proc_field - 3)]);
  return std::strtod(text.c_str(), nullptr);
}

// Boot time, seconds since the epoch: the wall clock minus the time since
// boot (CLOCK_BOOTTIME counts suspend too, like /proc/stat's btime). Needs no
// file outside /proc/self, so the unit can use ProcSubset=pid.
double BootTime() {
  timespec real, boot;
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_BOOTTIME, &boot);
  return static_cast<double>(real.tv_sec - boot.tv_sec) +
         static_cast<double>(real.tv_nsec - boot.tv_nsec) * 1e-9;
}

}  // namespace

MetricsView::MetricsView(SnapshotSource source) : source_(std::move(source)) {}

std::vector<MetricFamily> MetricsView::Collect() const {
  std::shared_ptr<const Snapshot> snapshot = source_ ? source_() : nullptr;
  if (snapshot) return BuildMetricFamilies(*snapshot);
  std::vector<MetricFamily> families;
  families.reserve(8);
  AddBuildInfo(&families);
  AddProcessFamilies(&families);
  return families;
}

std::vector<MetricFamily> BuildMetricFamilies(const Snapshot& snapshot) {
  std::vector<MetricFamily> families;
  families.reserve(kMetricCount);
  AddTargetFamilies(snapshot, &families);
  AddDaemonFamilies(snapshot, &families);
  AddBuildInfo(&families);
  AddProcessFamilies(&families);
  return families;
}

void StreamMetrics(const Snapshot& snapshot, const std::function<void(std::string_view)>& write) {
  WriteTargetFamilies(snapshot, write);
  std::vector<MetricFamily> families;
  families.reserve(kMetricCount);
  AddDaemonFamilies(snapshot, &families);
  AddBuildInfo(&families);
  AddProcessFamilies(&families);
  write(prometheus::TextSerializer().Serialize(families));
}

std::string RenderMetrics(const Snapshot& snapshot) {
  std::string out;
  StreamMetrics(snapshot, [&out](std::string_view piece) { out.append(piece); });
  return out;
}

std::optional<ProcessStats> ReadProcessStats() {
  std::string stat;
  if (!ReadSmallFile("/proc/self/stat", &stat)) return std::nullopt;
  std::vector<std::string_view> fields = StatFields(stat);
  // Up to field 24 (rss) is needed.
  if (fields.size() < 22) return std::nullopt;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  if (ticks <= 0 || page <= 0) return std::nullopt;

  ProcessStats stats;
  stats.cpu_seconds = (FieldNumber(fields, 14) + FieldNumber(fields, 15)) / ticks;
  stats.virtual_memory_bytes = FieldNumber(fields, 23);
  stats.resident_memory_bytes = FieldNumber(fields, 24) * page;

  // The start time never changes; btime is read once.
  static const double boot_time = BootTime();
  stats.start_time_seconds = boot_time + FieldNumber(fields, 22) / ticks;

  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return std::nullopt;
  const int own_fd = dirfd(dir);
  double open_fds = 0;
  while (const struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    // Not counting the descriptor this very listing holds.
    if (std::atoi(entry->d_name) == own_fd) continue;
    open_fds += 1;
  }
  closedir(dir);
  stats.open_fds = open_fds;

  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return std::nullopt;
  stats.max_fds = static_cast<double>(limit.rlim_cur);
  return stats;
}

}  // namespace connwatch
