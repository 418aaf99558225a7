#include "web/metrics_table.h"

namespace connwatch {

std::string_view MetricKindName(MetricKind kind) {
  switch (kind) {
    case MetricKind::kCounter:
      return "counter";
    case MetricKind::kGauge:
      return "gauge";
    case MetricKind::kHistogram:
      return "histogram";
  }
  return "untyped";
}

std::string MetricsMarkdownTable() {
  std::string out;
  out.reserve(4096);
  out += "| Metric | Type | Labels | Description |\n";
  out += "|---|---|---|---|\n";
  for (const MetricDef& def : kMetrics) {
    out += "| `";
    out += def.name;
    out += "` | ";
    out += MetricKindName(def.kind);
    out += " | ";
    std::string labels;
    for (size_t i = 0; i < def.label_count(); ++i) {
      if (!labels.empty()) labels += ", ";
      labels += '`';
      labels += def.labels[i];
      labels += '`';
      // Every per-target series of an endpoint also names it (the name's own
      // lookups, and the stale gauge of addresses: first, excepted);
      // target_info adds what an SRV record said.
      if (i == 0 && def.labels[0] == "target" && def.id != MetricId::kDnsFailures &&
          def.id != MetricId::kTargetAddressStale) {
        labels += ", `endpoint` (addresses: all, srv)";
        if (def.id == MetricId::kTargetInfo) labels += ", `priority`, `weight` (srv)";
      }
    }
    if (def.user_labels) labels += labels.empty() ? "user labels" : ", user labels";
    if (def.kind == MetricKind::kHistogram) labels += labels.empty() ? "`le`" : ", `le`";
    out += labels.empty() ? std::string("-") : labels;
    out += " | ";
    out += def.help;
    out += " |\n";
  }
  return out;
}

}  // namespace connwatch
