#include "web/metrics_text.h"

#include <charconv>
#include <cmath>

#include "web/metrics_table.h"

namespace connwatch {

namespace {

// Length of the valid UTF-8 sequence at s[i], 0 if invalid (overlong forms,
// surrogates and code points above U+10FFFF are invalid).
size_t Utf8Length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

std::string ValidUtf8(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  size_t i = 0;
  while (i < value.size()) {
    const size_t n = Utf8Length(value, i);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(value.substr(i, n));
      i += n;
    }
  }
  return out;
}

namespace {

void AppendHeader(const MetricDef& def, std::string* out) {
  out->append("# HELP ").append(def.name).push_back(' ');
  out->append(def.help).push_back('\n');
  out->append("# TYPE ").append(def.name).push_back(' ');
  out->append(MetricKindName(def.kind)).push_back('\n');
}

// `name{<labels>} `: `labels` is a series' target label (and endpoint label,
// for an endpoint), escaped once per series.
void AppendTargetHead(const MetricDef& def, std::string_view labels, std::string* out) {
  out->append(def.name).push_back('{');
  out->append(labels).append("} ");
}

}  // namespace

bool IsOwnInfoLabel(std::string_view name, bool srv) {
  if (name == "target" || name == "address" || name == "endpoint") return true;
  return srv && (name == "priority" || name == "weight");
}

void AppendLabelValue(std::string_view value, std::string* out) {
  // Fast path: plain ASCII with nothing to escape, the common case.
  size_t plain = 0;
  while (plain < value.size()) {
    const unsigned char c = static_cast<unsigned char>(value[plain]);
    if (c >= 0x80 || c == '\\' || c == '"' || c == '\n') break;
    ++plain;
  }
  out->append(value.data(), plain);
  if (plain == value.size()) return;
  size_t i = plain;
  while (i < value.size()) {
    const char c = value[i];
    if (static_cast<unsigned char>(c) < 0x80) {
      if (c == '\\' || c == '"') {
        out->push_back('\\');
        out->push_back(c);
      } else if (c == '\n') {
        out->append("\\n");
      } else {
        out->push_back(c);
      }
      ++i;
      continue;
    }
    const size_t n = Utf8Length(value, i);
    if (n == 0) {
      out->append("\xEF\xBF\xBD");
      ++i;
    } else {
      out->append(value.substr(i, n));
      i += n;
    }
  }
}

void AppendPrometheusDouble(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("Nan");
    return;
  }
  if (std::isinf(value)) {
    out->append(value < 0 ? "-Inf" : "+Inf");
    return;
  }
  char buf[32];
  // Integral values below 1e15 print as plain integers under "%.16g" too;
  // integer formatting is several times faster than the general path.
  if (value == std::floor(value) && std::fabs(value) < 1e15 && !std::signbit(value)) {
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));
    out->append(buf, end);
    return;
  }
  // Same digits as printf("%.16g"), which is what the serializer's ostream
  // (precision 16, default float field) produces.
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general, 16);
  out->append(buf, end);
}

void AppendTargetFamilies(const Snapshot& snapshot, std::string* out) {
  WriteTargetFamilies(snapshot, [out](std::string_view piece) { out->append(piece); });
}

void WriteTargetFamilies(const Snapshot& snapshot, const TextWriter& write) {
  const auto& targets = snapshot.targets;
  if (targets.empty()) return;
  std::string buffer;
  buffer.reserve(kChunkBytes + 4096);
  std::string* out = &buffer;
  auto flush_if_full = [&] {
    if (buffer.size() >= kChunkBytes) {
      write(buffer);
      buffer.clear();
    }
  };
  // `target="<name>"`, and for an endpoint `target="<name>",endpoint="<ip:port>"`:
  // the labels every per-target series of the snapshot starts with.
  std::vector<std::string> heads(targets.size());
  // `target="<name>"` alone: the name's own series (connwatch_dns_failures_total).
  std::vector<std::string> names(targets.size());
  bool any_rtt = false, any_heartbeat = false, any_failure = false, any_disconnect = false,
       any_icmp = false, any_tls = false, any_expiry = false, any_idle_cutoff = false,
       any_name = false, any_stale = false, any_canary = false, any_canary_failure = false,
       any_canary_duration = false;
  for (size_t i = 0; i < targets.size(); ++i) {
    const TargetSnapshot& t = targets[i];
    names[i] = "target=\"";
    if (t.config) AppendLabelValue(t.config->name, &names[i]);
    names[i].push_back('"');
    heads[i] = names[i];
    if (t.endpoint) {
      heads[i].append(",endpoint=\"");
      AppendLabelValue(t.endpoint->endpoint, &heads[i]);
      heads[i].push_back('"');
    }
    any_rtt |= t.has_rtt;
    any_heartbeat |= t.has_heartbeat;
    any_tls |= t.tls != nullptr;
    any_name |= t.resolves_name || t.name_series;
    any_stale |= t.resolves_name;
    any_expiry |= t.tls && t.tls->earliest_expiry_unix > 0;
    any_idle_cutoff |= t.idle_cutoff_seconds > 0;
    if (t.canary) {
      any_canary |= t.canary->attempted;
      any_canary_duration |= t.canary->has_duration;
      for (uint64_t c : t.canary->failures) any_canary_failure |= c > 0;
    }
    for (size_t r = 0; r < kReasonCount; ++r) {
      any_failure |= t.connect_failures[r] > 0;
      any_disconnect |= t.disconnects[r] > 0;
      any_icmp |= t.icmp_errors[r] > 0;
    }
  }

  auto per_name = [&](MetricId id, const std::vector<std::string>& labels, auto has, auto value) {
    const MetricDef& def = Metric(id);
    AppendHeader(def, out);
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!has(targets[i])) continue;
      AppendTargetHead(def, labels[i], out);
      AppendPrometheusDouble(value(targets[i]), out);
      out->push_back('\n');
      flush_if_full();
    }
  };
  auto per_target = [&](MetricId id, auto has, auto value) { per_name(id, heads, has, value); };
  auto always = [](const TargetSnapshot&) { return true; };
  // One series per target and reason counted; `counts` gives a target's
  // counts by Reason index, or null when it has none.
  auto by_reason = [&](MetricId id, auto counts) {
    const MetricDef& def = Metric(id);
    AppendHeader(def, out);
    for (size_t i = 0; i < targets.size(); ++i) {
      const std::array<uint64_t, kReasonCount>* of = counts(targets[i]);
      if (of == nullptr) continue;
      const auto& c = *of;
      for (size_t r = 0; r < kReasonCount; ++r) {
        if (c[r] == 0) continue;
        out->append(def.name).push_back('{');
        out->append(heads[i]).append(",reason=\"");
        out->append(ReasonName(static_cast<Reason>(r))).append("\"} ");
        AppendPrometheusDouble(static_cast<double>(c[r]), out);
        out->push_back('\n');
      }
      flush_if_full();
    }
  };

  per_target(MetricId::kTargetUp, always,
             [](const TargetSnapshot& t) { return t.up ? 1.0 : 0.0; });
  per_target(MetricId::kTargetUpSeconds, always,
             [](const TargetSnapshot& t) { return t.up_seconds_total; });
  {
    const MetricDef& def = Metric(MetricId::kTargetInfo);
    AppendHeader(def, out);
    for (size_t i = 0; i < targets.size(); ++i) {
      const TargetSnapshot& t = targets[i];
      out->append(def.name).push_back('{');
      out->append(heads[i]).append(",address=\"");
      if (t.config) AppendLabelValue(t.config->Where(), out);
      out->push_back('"');
      const bool srv = t.endpoint && t.endpoint->priority >= 0;
      if (srv) {
        out->append(",priority=\"").append(std::to_string(t.endpoint->priority));
        out->append("\",weight=\"").append(std::to_string(t.endpoint->weight)).push_back('"');
      }
      if (t.config) {
        for (const auto& [name, value] : t.config->labels) {
          if (IsOwnInfoLabel(name, srv)) continue;  // never a duplicate label
          out->push_back(',');
          out->append(name).append("=\"");
          AppendLabelValue(value, out);
          out->push_back('"');
        }
      }
      out->append("} 1\n");
      flush_if_full();
    }
  }
  per_target(MetricId::kTargetConnects, always,
             [](const TargetSnapshot& t) { return static_cast<double>(t.connects); });
  if (any_failure) {
    by_reason(MetricId::kTargetConnectFailures,
              [](const TargetSnapshot& t) { return &t.connect_failures; });
  }
  if (any_disconnect) {
    by_reason(MetricId::kTargetDisconnects, [](const TargetSnapshot& t) { return &t.disconnects; });
  }
  if (any_icmp) {
    by_reason(MetricId::kTargetIcmpErrors, [](const TargetSnapshot& t) { return &t.icmp_errors; });
  }
  per_target(MetricId::kTargetLastChange, always,
             [](const TargetSnapshot& t) { return t.last_change_unix; });
  if (any_rtt) {
    per_target(MetricId::kTargetRtt, [](const TargetSnapshot& t) { return t.has_rtt; },
               [](const TargetSnapshot& t) { return t.rtt_seconds; });
  }
  per_target(MetricId::kTargetRetransmits, always,
             [](const TargetSnapshot& t) { return static_cast<double>(t.retransmits_total); });
  if (any_heartbeat) {
    per_target(MetricId::kTargetHeartbeatDuration,
               [](const TargetSnapshot& t) { return t.has_heartbeat; },
               [](const TargetSnapshot& t) { return t.heartbeat_seconds; });
  }
  if (any_expiry) {
    per_target(MetricId::kTargetTlsCertExpiry,
               [](const TargetSnapshot& t) { return t.tls && t.tls->earliest_expiry_unix > 0; },
               [](const TargetSnapshot& t) { return t.tls->earliest_expiry_unix; });
  }
  if (any_tls) {
    const MetricDef& def = Metric(MetricId::kTargetTlsInfo);
    AppendHeader(def, out);
    for (size_t i = 0; i < targets.size(); ++i) {
      const TargetSnapshot& t = targets[i];
      if (!t.tls) continue;
      const TlsPeerInfo& p = *t.tls;
      out->append(def.name).push_back('{');
      out->append(heads[i]);
      for (const auto& [label, value] :
           {std::pair{def.labels[1], std::string_view(p.version)}, {def.labels[2], p.cipher},
            {def.labels[3], p.subject}, {def.labels[4], p.issuer}, {def.labels[5], p.fingerprint}}) {
        out->push_back(',');
        out->append(label).append("=\"");
        AppendLabelValue(value, out);
        out->push_back('"');
      }
      out->append("} 1\n");
      flush_if_full();
    }
  }
  if (any_idle_cutoff) {
    per_target(MetricId::kTargetIdleCutoff,
               [](const TargetSnapshot& t) { return t.idle_cutoff_seconds > 0; },
               [](const TargetSnapshot& t) { return t.idle_cutoff_seconds; });
  }
  if (any_name) {
    if (any_stale) {
      per_target(MetricId::kTargetAddressStale,
                 [](const TargetSnapshot& t) { return t.resolves_name; },
                 [](const TargetSnapshot& t) { return t.address_stale ? 1.0 : 0.0; });
    }
    // Per name: an endpoint set's lookups are counted once, on its first snapshot.
    per_name(MetricId::kDnsFailures, names,
             [](const TargetSnapshot& t) { return t.resolves_name || t.name_series; },
             [](const TargetSnapshot& t) { return static_cast<double>(t.dns_failures); });
  }
  if (any_canary) {
    per_target(MetricId::kTargetCanaryUp,
               [](const TargetSnapshot& t) { return t.canary && t.canary->attempted; },
               [](const TargetSnapshot& t) { return t.canary->up ? 1.0 : 0.0; });
  }
  if (any_canary_failure) {
    by_reason(MetricId::kTargetCanaryFailures, [](const TargetSnapshot& t) {
      return t.canary ? &t.canary->failures : nullptr;
    });
  }
  if (any_canary_duration) {
    per_target(MetricId::kTargetCanaryConnectDuration,
               [](const TargetSnapshot& t) { return t.canary && t.canary->has_duration; },
               [](const TargetSnapshot& t) { return t.canary->connect_seconds; });
  }
  if (!buffer.empty()) write(buffer);
}

}  // namespace connwatch
