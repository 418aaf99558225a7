#include "core/state_file.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace connwatch {

namespace {

using Json = nlohmann::json;

constexpr std::string_view kFormat = "connwatch-state";

// Counters by reason as {"peer_reset": 3}: only reasons that happened, by
// name, so a reordered enum reads the same file.
Json ReasonCounts(const std::array<uint64_t, kReasonCount>& counts) {
  Json out = Json::object();
  for (size_t r = 0; r < kReasonCount; ++r) {
    if (counts[r] > 0) out[std::string(ReasonName(static_cast<Reason>(r)))] = counts[r];
  }
  return out;
}

template <typename T, size_t N>
Json Array(const std::array<T, N>& values) {
  Json out = Json::array();
  for (const T& v : values) out.push_back(v);
  return out;
}

Json TcpJson(const TcpSample& t) {
  return Json{{"valid", t.valid},
              {"state", t.state},
              {"retransmits", t.retransmits},
              {"probes", t.probes},
              {"backoff", t.backoff},
              {"rtt_us", t.rtt_us},
              {"rttvar_us", t.rttvar_us},
              {"unacked", t.unacked},
              {"total_retrans", t.total_retrans},
              {"last_data_recv_ms", t.last_data_recv_ms},
              {"last_ack_recv_ms", t.last_ack_recv_ms},
              {"notsent_bytes", t.notsent_bytes},
              {"snd_wnd", t.snd_wnd}};
}

Json EventJson(const Event& e) {
  Json j{{"seq", e.seq},
         {"time", e.unix_time},
         {"level", std::string(LogLevelName(e.level))},
         {"kind", e.kind},
         {"target", e.target},
         {"address", e.address},
         {"resolved", e.resolved_address},
         {"errno", e.err},
         {"connected_for", e.connected_for},
         {"connect_seconds", e.connect_seconds},
         {"tls_handshake_seconds", e.tls_handshake_seconds},
         {"close_notify", e.close_notify},
         {"tcp", TcpJson(e.tcp)},
         {"detail", e.detail}};
  if (e.has_reason) j["reason"] = std::string(ReasonName(e.reason));
  if (e.has_detected_by) j["detected_by"] = std::string(DetectorName(e.detected_by));
  return j;
}

Json TargetJson(const TargetSnapshot& t) {
  Json j{{"name", t.config ? t.config->name : std::string()},
         {"address", t.config ? t.config->address : std::string()},
         {"endpoint", t.endpoint ? t.endpoint->endpoint : std::string()},
         {"up", t.up},
         {"last_change", t.last_change_unix},
         {"connects", t.connects},
         {"connect_failures", ReasonCounts(t.connect_failures)},
         {"disconnects", ReasonCounts(t.disconnects)},
         {"icmp_errors", ReasonCounts(t.icmp_errors)},
         {"dns_failures", t.dns_failures},
         {"retransmits", t.retransmits_total}};
  if (t.has_last_event) {
    Json e{{"kind", t.last_event_kind},
           {"errno", t.last_errno},
           {"time", t.last_event_unix},
           {"reason", std::string(ReasonName(t.last_reason))}};
    if (t.has_last_detected_by) e["detected_by"] = std::string(DetectorName(t.last_detected_by));
    j["last_event"] = std::move(e);
  }
  if (!t.last_failure_kind.empty()) {
    j["last_failure"] = Json{{"kind", std::string(t.last_failure_kind)},
                             {"reason", std::string(ReasonName(t.last_failure_reason))},
                             {"errno", t.last_failure_errno},
                             {"time", t.last_failure_unix}};
  }
  if (t.has_rtt) j["rtt"] = t.rtt_seconds;
  if (t.tls && t.tls->valid) {
    j["tls"] = Json{{"version", t.tls->version},
                    {"cipher", t.tls->cipher},
                    {"subject", t.tls->subject},
                    {"issuer", t.tls->issuer},
                    {"fingerprint", t.tls->fingerprint},
                    {"earliest_expiry", t.tls->earliest_expiry_unix}};
  }
  // Saved down: a stretch up until the copy is booked, so the file needs no
  // "up since" and the gap until the restart is not counted as up.
  UpHistory history = t.history;
  history.Down(t.history_at, false);
  const UpHistory::Saved h = history.Save();
  j["history"] = Json{{"at", t.history_at},
                      {"start", h.start},
                      {"last", h.last},
                      {"up_total", h.up_total},
                      {"head_minute", h.head_minute},
                      {"head_hour", h.head_hour},
                      {"gap_from", h.gap_from},
                      {"gap_length", h.gap_length},
                      {"minute_up", Array(h.minute_up)},
                      {"minute_disconnects", Array(h.minute_disconnects)},
                      {"hour_up", Array(h.hour_up)}};
  if (t.idle_cutoff) {
    Json ages = Json::array();
    for (size_t i = 0; i < t.idle_cutoff->count(); ++i) ages.push_back(t.idle_cutoff->ages()[i]);
    j["idle_cutoff"] = Json{{"ages", std::move(ages)},
                            {"next", t.idle_cutoff->next()},
                            {"seconds", t.idle_cutoff->seconds()}};
  }
  return j;
}

// --- Decoding: every accessor throws on a missing field or a wrong type, and
// DecodeState turns that into one error for the whole file.

struct Bad {
  std::string what;
};

const Json& Field(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) throw Bad{std::string("missing \"") + key + "\""};
  return *it;
}

double Number(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_number()) throw Bad{std::string("\"") + key + "\" is not a number"};
  const double d = v.get<double>();
  if (!std::isfinite(d)) throw Bad{std::string("\"") + key + "\" is not finite"};
  return d;
}

uint64_t CountValue(const Json& v, const std::string& what) {
  if (!v.is_number_unsigned()) throw Bad{"\"" + what + "\" is not a count"};
  return v.get<uint64_t>();
}
uint64_t Count(const Json& j, const char* key) { return CountValue(Field(j, key), key); }

int64_t Integer(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_number_integer()) throw Bad{std::string("\"") + key + "\" is not an integer"};
  return v.get<int64_t>();
}

template <typename T>
T Small(const Json& j, const char* key) {
  const uint64_t v = Count(j, key);
  if (v > std::numeric_limits<T>::max()) throw Bad{std::string("\"") + key + "\" is too large"};
  return static_cast<T>(v);
}

bool Bool(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_boolean()) throw Bad{std::string("\"") + key + "\" is not a boolean"};
  return v.get<bool>();
}

std::string String(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_string()) throw Bad{std::string("\"") + key + "\" is not a string"};
  return v.get<std::string>();
}

Reason ReasonField(const Json& j, const char* key) {
  const std::string word = String(j, key);
  Reason r;
  if (!ParseReason(word, &r)) throw Bad{"unknown reason \"" + word + "\""};
  return r;
}

Detector DetectorField(const Json& j, const char* key) {
  const std::string word = String(j, key);
  for (size_t d = 0; d < kDetectorCount; ++d) {
    if (DetectorName(static_cast<Detector>(d)) == word) return static_cast<Detector>(d);
  }
  throw Bad{"unknown detected_by \"" + word + "\""};
}

std::string EventKind(const Json& j, const char* key) {
  std::string kind = String(j, key);
  if (kind != "connect" && kind != "connect_failure" && kind != "disconnect") {
    throw Bad{"unknown event kind \"" + kind + "\""};
  }
  return kind;
}

void ReasonCountsField(const Json& j, const char* key, std::array<uint64_t, kReasonCount>* out) {
  const Json& v = Field(j, key);
  if (!v.is_object()) throw Bad{std::string("\"") + key + "\" is not an object"};
  for (auto it = v.begin(); it != v.end(); ++it) {
    Reason r;
    if (!ParseReason(it.key(), &r)) throw Bad{"unknown reason \"" + it.key() + "\""};
    (*out)[static_cast<size_t>(r)] = CountValue(it.value(), it.key());
  }
}

template <typename T, size_t N>
void ArrayField(const Json& j, const char* key, std::array<T, N>* out) {
  const Json& v = Field(j, key);
  if (!v.is_array() || v.size() != N) {
    throw Bad{std::string("\"") + key + "\" is not an array of " + std::to_string(N)};
  }
  for (size_t i = 0; i < N; ++i) {
    if (!v[i].is_number()) throw Bad{std::string("\"") + key + "\" holds a non-number"};
    const double d = v[i].get<double>();
    if (!std::isfinite(d) || d < 0 || d > static_cast<double>(std::numeric_limits<T>::max())) {
      throw Bad{std::string("\"") + key + "\" holds a value out of range"};
    }
    (*out)[i] = static_cast<T>(d);
  }
}

TcpSample TcpField(const Json& j) {
  TcpSample t;
  t.valid = Bool(j, "valid");
  t.state = Small<uint8_t>(j, "state");
  t.retransmits = Small<uint8_t>(j, "retransmits");
  t.probes = Small<uint8_t>(j, "probes");
  t.backoff = Small<uint8_t>(j, "backoff");
  t.rtt_us = Small<uint32_t>(j, "rtt_us");
  t.rttvar_us = Small<uint32_t>(j, "rttvar_us");
  t.unacked = Small<uint32_t>(j, "unacked");
  t.total_retrans = Small<uint32_t>(j, "total_retrans");
  t.last_data_recv_ms = Small<uint32_t>(j, "last_data_recv_ms");
  t.last_ack_recv_ms = Small<uint32_t>(j, "last_ack_recv_ms");
  t.notsent_bytes = Small<uint32_t>(j, "notsent_bytes");
  t.snd_wnd = Small<uint32_t>(j, "snd_wnd");
  return t;
}

Event EventField(const Json& j) {
  if (!j.is_object()) throw Bad{"an event is not an object"};
  Event e;
  e.seq = Count(j, "seq");
  e.unix_time = Number(j, "time");
  const std::string level = String(j, "level");
  if (!ParseLogLevel(level, &e.level)) throw Bad{"unknown level \"" + level + "\""};
  e.kind = String(j, "kind");
  e.target = String(j, "target");
  e.address = String(j, "address");
  e.resolved_address = String(j, "resolved");
  if (j.contains("reason")) {
    e.has_reason = true;
    e.reason = ReasonField(j, "reason");
  }
  e.err = static_cast<int>(Integer(j, "errno"));
  if (j.contains("detected_by")) {
    e.has_detected_by = true;
    e.detected_by = DetectorField(j, "detected_by");
  }
  e.connected_for = Number(j, "connected_for");
  e.connect_seconds = Number(j, "connect_seconds");
  e.tls_handshake_seconds = Number(j, "tls_handshake_seconds");
  e.close_notify = static_cast<int>(Integer(j, "close_notify"));
  e.tcp = TcpField(Field(j, "tcp"));
  e.detail = String(j, "detail");
  return e;
}

StoredTarget TargetField(const Json& j) {
  if (!j.is_object()) throw Bad{"a target is not an object"};
  StoredTarget t;
  t.name = String(j, "name");
  t.address = String(j, "address");
  t.endpoint = String(j, "endpoint");
  t.up = Bool(j, "up");
  t.last_change_unix = Number(j, "last_change");
  t.connects = Count(j, "connects");
  ReasonCountsField(j, "connect_failures", &t.connect_failures);
  ReasonCountsField(j, "disconnects", &t.disconnects);
  ReasonCountsField(j, "icmp_errors", &t.icmp_errors);
  t.dns_failures = Count(j, "dns_failures");
  t.retransmits = Count(j, "retransmits");
  if (j.contains("last_event")) {
    const Json& e = j["last_event"];
    t.has_last_event = true;
    t.last_event_kind = EventKind(e, "kind");
    t.last_errno = static_cast<int>(Integer(e, "errno"));
    t.last_event_unix = Number(e, "time");
    t.last_reason = ReasonField(e, "reason");
    if (e.contains("detected_by")) {
      t.has_last_detected_by = true;
      t.last_detected_by = DetectorField(e, "detected_by");
    }
  }
  if (j.contains("last_failure")) {
    const Json& f = j["last_failure"];
    t.last_failure_kind = EventKind(f, "kind");
    if (t.last_failure_kind == "connect") throw Bad{"a last failure of kind connect"};
    t.last_failure_reason = ReasonField(f, "reason");
    t.last_failure_errno = static_cast<int>(Integer(f, "errno"));
    t.last_failure_unix = Number(f, "time");
  }
  if (j.contains("rtt")) {
    t.has_rtt = true;
    t.rtt_seconds = Number(j, "rtt");
  }
  if (j.contains("tls")) {
    const Json& s = j["tls"];
    auto tls = std::make_shared<TlsPeerInfo>();
    tls->valid = true;
    tls->version = String(s, "version");
    tls->cipher = String(s, "cipher");
    tls->subject = String(s, "subject");
    tls->issuer = String(s, "issuer");
    tls->fingerprint = String(s, "fingerprint");
    tls->earliest_expiry_unix = Number(s, "earliest_expiry");
    t.tls = std::move(tls);
  }
  const Json& h = Field(j, "history");
  t.history_at = Number(h, "at");
  t.history.start = Number(h, "start");
  t.history.last = Number(h, "last");
  t.history.up_total = Number(h, "up_total");
  t.history.head_minute = Integer(h, "head_minute");
  t.history.head_hour = Integer(h, "head_hour");
  t.history.gap_from = static_cast<float>(Number(h, "gap_from"));
  t.history.gap_length = static_cast<float>(Number(h, "gap_length"));
  ArrayField(h, "minute_up", &t.history.minute_up);
  ArrayField(h, "minute_disconnects", &t.history.minute_disconnects);
  ArrayField(h, "hour_up", &t.history.hour_up);
  UpHistory check;
  if (!UpHistory::Load(t.history, &check)) throw Bad{"a history no UpHistory could hold"};
  if (j.contains("idle_cutoff")) {
    const Json& c = j["idle_cutoff"];
    const Json& ages = Field(c, "ages");
    if (!ages.is_array() || ages.size() > IdleCutoff::kKept) throw Bad{"bad idle_cutoff ages"};
    t.has_idle_cutoff = true;
    t.idle_count = ages.size();
    for (size_t i = 0; i < ages.size(); ++i) {
      if (!ages[i].is_number()) throw Bad{"bad idle_cutoff ages"};
      t.idle_ages[i] = ages[i].get<double>();
    }
    t.idle_next = Count(c, "next");
    t.idle_cutoff_seconds = Number(c, "seconds");
    IdleCutoff probe;
    if (!IdleCutoff::Restore(t.idle_ages, t.idle_count, t.idle_next, t.idle_cutoff_seconds,
                             &probe)) {
      throw Bad{"an idle_cutoff no inference could hold"};
    }
  }
  return t;
}

}  // namespace

std::string EncodeState(const Snapshot& snapshot, const std::vector<Event>& events,
                        uint64_t next_seq, double unix_now, double mono_to_unix) {
  Json targets = Json::array();
  for (const TargetSnapshot& t : snapshot.targets) targets.push_back(TargetJson(t));
  Json ring = Json::array();
  for (const Event& e : events) ring.push_back(EventJson(e));
  Json doc{{"format", kFormat},
           {"version", kStateVersion},
           {"saved_at", unix_now},
           {"mono_to_unix", mono_to_unix},
           {"next_seq", next_seq},
           {"targets", std::move(targets)},
           {"events", std::move(ring)}};
  // Invalid UTF-8 (a target name is the user's bytes) is replaced, never thrown.
  std::string text = doc.dump(-1, ' ', false, Json::error_handler_t::replace);
  text.push_back('\n');
  return text;
}

bool DecodeState(std::string_view text, StoredState* out, std::string* error) {
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    *error = "not JSON (corrupt or truncated)";
    return false;
  }
  try {
    if (!doc.is_object()) throw Bad{"not a JSON object"};
    if (!doc.contains("format") || doc["format"] != kFormat) {
      throw Bad{"not a connwatch state file (no \"format\": \"connwatch-state\")"};
    }
    const Json& version = Field(doc, "version");
    if (!version.is_number_integer() || version.get<int64_t>() != kStateVersion) {
      throw Bad{"version " + version.dump() + ", this connwatchd reads version " +
                std::to_string(kStateVersion)};
    }
    StoredState state;
    state.saved_unix = Number(doc, "saved_at");
    state.mono_to_unix = Number(doc, "mono_to_unix");
    state.next_seq = Count(doc, "next_seq");
    const Json& targets = Field(doc, "targets");
    if (!targets.is_array()) throw Bad{"\"targets\" is not an array"};
    state.targets.reserve(targets.size());
    for (const Json& t : targets) state.targets.push_back(TargetField(t));
    const Json& events = Field(doc, "events");
    if (!events.is_array()) throw Bad{"\"events\" is not an array"};
    uint64_t last_seq = 0;
    for (const Json& e : events) {
      state.events.push_back(EventField(e));
      if (state.events.back().seq <= last_seq) throw Bad{"event seqs do not increase"};
      last_seq = state.events.back().seq;
    }
    *out = std::move(state);
    return true;
  } catch (const Bad& bad) {
    *error = bad.what;
  } catch (const Json::exception& e) {
    *error = e.what();
  }
  return false;
}

}  // namespace connwatch
