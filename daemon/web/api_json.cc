#include "web/api_json.h"

#include <strings.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "version.h"

namespace connwatch {

namespace {

Json StringOrNull(std::string_view s) {
  if (s.empty()) return nullptr;
  return std::string(s);
}

// tcpi_state values of include/net/tcp_states.h.
Json TcpStateName(uint8_t state) {
  static constexpr std::string_view kNames[] = {
      "",      "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT",
      "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV"};
  if (state > 0 && state < std::size(kNames)) return std::string(kNames[state]);
  return std::to_string(state);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Json ReasonCounts(const std::array<uint64_t, kReasonCount>& counts) {
  Json j = Json::object();
  for (size_t r = 0; r < kReasonCount; ++r) {
    if (counts[r] > 0) j[std::string(ReasonName(static_cast<Reason>(r)))] = counts[r];
  }
  return j;
}

}  // namespace

Json Rfc3339(double unix_time) {
  if (!(unix_time > 0) || !std::isfinite(unix_time)) return nullptr;
  double whole = std::floor(unix_time);
  time_t secs = static_cast<time_t>(whole);
  int millis = static_cast<int>(std::lround((unix_time - whole) * 1000));
  if (millis >= 1000) {
    secs += 1;
    millis -= 1000;
  }
  struct tm tm_utc;
  if (gmtime_r(&secs, &tm_utc) == nullptr) return nullptr;
  char buf[96];  // room for any int year, keeps -Wformat-truncation quiet.
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm_utc.tm_year + 1900,
                tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec,
                millis);
  return std::string(buf);
}

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// application/x-www-form-urlencoded decoding; a malformed %-escape is kept
// as it is.
std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// The decoded value of the first `key` parameter of `query`.
std::optional<std::string> QueryParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (UrlDecode(name) == key) return UrlDecode(value);
  }
  return std::nullopt;
}

bool ParseState(std::string_view word, TargetState* state) {
  for (size_t i = 0; i < kStateCount; ++i) {
    if (StateName(static_cast<TargetState>(i)) == word) {
      *state = static_cast<TargetState>(i);
      return true;
    }
  }
  return false;
}

bool ParseLimit(std::string_view text, size_t max, size_t* limit) {
  if (text.empty() || text.size() > 9) return false;
  size_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<size_t>(c - '0');
  }
  if (value < 1 || value > max) return false;
  *limit = value;
  return true;
}

// True when an Accept-Encoding header value allows gzip (RFC 9110 12.5.3):
// "gzip" or "*" listed without q=0.
bool AcceptsGzip(std::string_view header) {
  std::string_view rest(header);
  bool gzip = false, star = false, gzip_refused = false;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) coding.remove_prefix(1);
    while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) coding.remove_suffix(1);
    bool refused = false;
    if (semi != std::string_view::npos) {
      std::string params(item.substr(semi + 1));
      params.erase(std::remove(params.begin(), params.end(), ' '), params.end());
      if (params.rfind("q=0", 0) == 0 && params.find_first_not_of("0.", 2) == std::string::npos) {
        refused = true;
      }
    }
    if (coding.size() == 4 && strncasecmp(coding.data(), "gzip", 4) == 0) {
      (refused ? gzip_refused : gzip) = true;
    } else if (coding == "*" && !refused) {
      star = true;
    }
  }
  return gzip || (star && !gzip_refused);
}



Json CanaryJson(const CanarySnapshot& c) {
  Json j;
  j["interval_seconds"] = c.interval_seconds;
  j["up"] = c.attempted ? Json(c.up) : Json(nullptr);
  j["since"] = c.attempted ? Json(Rfc3339(c.since_unix)) : Json(nullptr);
  j["last_attempt"] = c.attempted ? Json(Rfc3339(c.last_attempt_unix)) : Json(nullptr);
  j["attempts"] = c.attempts;
  j["connect_seconds"] = c.has_duration ? Json(c.connect_seconds) : Json(nullptr);
  j["failures"] = ReasonCounts(c.failures);
  if (c.last_failure_unix > 0) {
    Json f;
    f["reason"] = std::string(ReasonName(c.last_reason));
    f["errno"] = StringOrNull(ErrnoName(c.last_errno));
    f["time"] = Rfc3339(c.last_failure_unix);
    f["detail"] = c.last_detail;
    j["last_failure"] = std::move(f);
  } else {
    j["last_failure"] = nullptr;
  }
  return j;
}

Json TargetJson(const TargetSnapshot& t) {
  Json j;
  const TargetConfig* config = t.config.get();
  j["name"] = config ? config->name : std::string();
  j["address"] = config ? config->Where() : std::string();
  j["resolved_address"] = StringOrNull(t.resolved_address);
  // addresses: all and srv: one document per endpoint.
  j["endpoint"] = t.endpoint ? Json(t.endpoint->endpoint) : Json(nullptr);
  if (t.endpoint && t.endpoint->priority >= 0) {
    j["srv"] = {{"host", t.endpoint->srv_host},
                {"priority", t.endpoint->priority},
                {"weight", t.endpoint->weight}};
  } else {
    j["srv"] = nullptr;
  }
  Json labels = Json::object();
  if (config) {
    for (const auto& [name, value] : config->labels) labels[name] = value;
  }
  j["labels"] = std::move(labels);
  j["state"] = std::string(StateName(t.state));
  j["up"] = t.up;
  j["since"] = Rfc3339(t.last_change_unix);
  if (t.has_last_event) {
    Json e;
    e["kind"] = t.last_event_kind;
    e["reason"] = t.last_event_kind == "connect" ? Json(nullptr)
                                                 : Json(std::string(ReasonName(t.last_reason)));
    e["errno"] = StringOrNull(ErrnoName(t.last_errno));
    e["detected_by"] = t.has_last_detected_by ? Json(std::string(DetectorName(t.last_detected_by)))
                                              : Json(nullptr);
    e["time"] = Rfc3339(t.last_event_unix);
    j["last_event"] = std::move(e);
  } else {
    j["last_event"] = nullptr;
  }
  j["connects"] = t.connects;
  j["connect_failures"] = ReasonCounts(t.connect_failures);
  j["disconnects"] = ReasonCounts(t.disconnects);
  j["icmp_errors"] = ReasonCounts(t.icmp_errors);
  j["rtt_seconds"] = t.has_rtt ? Json(t.rtt_seconds) : Json(nullptr);
  j["retransmits"] = t.retransmits_total;
  j["heartbeat_seconds"] = t.has_heartbeat ? Json(t.heartbeat_seconds) : Json(nullptr);
  j["idle_cutoff_seconds"] = t.idle_cutoff_seconds > 0 ? Json(t.idle_cutoff_seconds) : Json(nullptr);
  j["canary"] = t.canary ? CanaryJson(*t.canary) : Json(nullptr);
  if (t.tls) {
    Json tls;
    tls["version"] = t.tls->version;
    tls["cipher"] = t.tls->cipher;
    tls["subject"] = t.tls->subject;
    tls["issuer"] = t.tls->issuer;
    tls["fingerprint_sha256"] = t.tls->fingerprint;
    tls["cert_expiry"] = t.tls->earliest_expiry_unix > 0 ? Json(Rfc3339(t.tls->earliest_expiry_unix))
                                                         : Json(nullptr);
    j["tls"] = std::move(tls);
  } else {
    j["tls"] = nullptr;
  }
  return j;
}

Json EventJson(const Event& e) {
  Json j;
  j["seq"] = e.seq;
  j["time"] = Rfc3339(e.unix_time);
  j["level"] = std::string(LogLevelName(e.level));
  j["kind"] = e.kind;
  j["target"] = e.target;
  j["address"] = e.address;
  j["resolved_address"] = StringOrNull(e.resolved_address);
  j["endpoint"] = StringOrNull(e.endpoint);
  j["reason"] = e.has_reason ? Json(std::string(ReasonName(e.reason))) : Json(nullptr);
  j["errno"] = StringOrNull(ErrnoName(e.err));
  j["detected_by"] =
      e.has_detected_by ? Json(std::string(DetectorName(e.detected_by))) : Json(nullptr);
  j["connected_for_seconds"] = e.connected_for >= 0 ? Json(e.connected_for) : Json(nullptr);
  j["connect_seconds"] = e.connect_seconds >= 0 ? Json(e.connect_seconds) : Json(nullptr);
  j["tls_handshake_seconds"] =
      e.tls_handshake_seconds >= 0 ? Json(e.tls_handshake_seconds) : Json(nullptr);
  j["close_notify"] = e.close_notify >= 0 ? Json(e.close_notify ? "yes" : "no") : Json(nullptr);
  if (e.tcp.valid) {
    Json tcp;
    tcp["state"] = TcpStateName(e.tcp.state);
    tcp["rtt_seconds"] = e.tcp.rtt_us / 1e6;
    tcp["retransmits"] = e.tcp.retransmits;
    tcp["total_retrans"] = e.tcp.total_retrans;
    tcp["probes"] = e.tcp.probes;
    tcp["unacked"] = e.tcp.unacked;
    tcp["last_data_recv_seconds"] = e.tcp.last_data_recv_ms / 1e3;
    j["tcp"] = std::move(tcp);
  } else {
    j["tcp"] = nullptr;
  }
  j["detail"] = e.detail;
  return j;
}

}  // namespace connwatch
