#include "core/event_log.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <nlohmann/json.hpp>

#include "core/duration.h"

namespace connwatch {

namespace {

// logfmt: quote a value when it holds a space, '=', '"' or is empty.
void AppendLogfmt(std::string* out, std::string_view key, std::string_view value) {
  if (!out->empty()) out->push_back(' ');
  out->append(key);
  out->push_back('=');
  bool quote = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '=' || c == '"' || static_cast<unsigned char>(c) < 0x20) quote = true;
  }
  if (!quote) {
    out->append(value);
    return;
  }
  out->push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (c == '\n') {
      out->append("\\n");
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out->append(buf);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

std::string FormatTimestamp(double unix_time) {
  // Microseconds: detection latencies are sub-millisecond.
  time_t secs = static_cast<time_t>(unix_time);
  int micros = static_cast<int>(std::lround((unix_time - static_cast<double>(secs)) * 1e6));
  if (micros >= 1000000) {
    secs += 1;
    micros -= 1000000;
  }
  struct tm tm_utc;
  gmtime_r(&secs, &tm_utc);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm_utc.tm_year + 1900,
                tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec,
                micros);
  return buf;
}

double NowUnix() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// syslog priorities for the journal: warning 4, info 6, debug 7, err 3.
int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return 7;
    case LogLevel::kInfo: return 6;
    case LogLevel::kWarn: return 4;
    case LogLevel::kError: return 3;
  }
  return 6;
}

// Ordered key/value fields of an event, shared by both formats.
std::vector<std::pair<std::string, std::string>> EventFields(const Event& e) {
  std::vector<std::pair<std::string, std::string>> f;
  f.emplace_back("event", e.kind);
  f.emplace_back("target", e.target);
  f.emplace_back("address", e.address);
  if (!e.resolved_address.empty()) f.emplace_back("resolved", e.resolved_address);
  if (e.has_reason) f.emplace_back("reason", std::string(ReasonName(e.reason)));
  if (e.err != 0) f.emplace_back("errno", std::string(ErrnoName(e.err)));
  if (e.connect_seconds >= 0) f.emplace_back("connect_time", FormatSeconds(e.connect_seconds));
  if (e.connected_for >= 0) f.emplace_back("connected_for", FormatSeconds(e.connected_for));
  if (e.tcp.valid) {
    f.emplace_back("rtt", FormatSeconds(e.tcp.rtt_us / 1e6));
    f.emplace_back("retrans", std::to_string(e.tcp.total_retrans));
    if (e.kind == "disconnect") {
      f.emplace_back("last_data_recv", FormatSeconds(e.tcp.last_data_recv_ms / 1e3));
      f.emplace_back("probes", std::to_string(e.tcp.probes));
      f.emplace_back("unacked", std::to_string(e.tcp.unacked));
      if (e.tcp.notsent_bytes > 0) f.emplace_back("notsent", std::to_string(e.tcp.notsent_bytes));
    }
  }
  if (!e.detail.empty()) f.emplace_back("detail", e.detail);
  return f;
}

}  // namespace

bool ParseLogLevel(std::string_view word, LogLevel* level) {
  if (word == "debug") *level = LogLevel::kDebug;
  else if (word == "info") *level = LogLevel::kInfo;
  else if (word == "warn") *level = LogLevel::kWarn;
  else if (word == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

bool ParseLogFormat(std::string_view word, LogFormat* format) {
  if (word == "logfmt") *format = LogFormat::kLogfmt;
  else if (word == "json") *format = LogFormat::kJson;
  else return false;
  return true;
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

EventLog::EventLog(FILE* out, LogFormat format, LogLevel min_level)
    : out_(out),
      format_(format),
      min_level_(min_level),
      journal_prefix_(out == stderr && std::getenv("JOURNAL_STREAM") != nullptr) {}

static std::string FormatLine(LogFormat format, double unix_time, LogLevel level,
                              const std::vector<std::pair<std::string, std::string>>& fields,
                              const char* first_key) {
  if (format == LogFormat::kJson) {
    nlohmann::ordered_json j;
    j["ts"] = FormatTimestamp(unix_time);
    j["level"] = LogLevelName(level);
    for (const auto& [k, v] : fields) j[k] = v;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line;
  AppendLogfmt(&line, "ts", FormatTimestamp(unix_time));
  AppendLogfmt(&line, "level", LogLevelName(level));
  (void)first_key;
  for (const auto& [k, v] : fields) AppendLogfmt(&line, k, v);
  return line;
}

std::string EventLog::FormatEvent(const Event& event) const {
  return FormatLine(format_, event.unix_time, event.level, EventFields(event), "event");
}

void EventLog::Record(Event event) {
  std::string line;
  if (out_ && event.level >= min_level_) line = FormatEvent(event);
  std::lock_guard<std::mutex> lock(mu_);
  event.seq = next_seq_++;
  if (!line.empty()) {
    if (journal_prefix_) std::fprintf(out_, "<%d>", SyslogPriority(event.level));
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }
  ring_.push_back(std::move(event));
  if (ring_.size() > kRingSize) ring_.pop_front();
  followers_.Deliver(ring_.back());
}

void EventLog::Message(LogLevel level, std::string_view msg,
                       const std::vector<std::pair<std::string, std::string>>& fields) {
  if (!out_ || level < min_level_) return;
  std::vector<std::pair<std::string, std::string>> all;
  all.reserve(fields.size() + 1);
  all.emplace_back("msg", std::string(msg));
  all.insert(all.end(), fields.begin(), fields.end());
  std::string line = FormatLine(format_, NowUnix(), level, all, "msg");
  std::lock_guard<std::mutex> lock(mu_);
  if (journal_prefix_) std::fprintf(out_, "<%d>", SyslogPriority(level));
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

std::vector<Event> EventLog::Recent(size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Event> out;
  out.reserve(std::min(limit, ring_.size()));
  for (auto it = ring_.rbegin(); it != ring_.rend() && out.size() < limit; ++it) out.push_back(*it);
  return out;
}

std::unique_ptr<EventFollowers::Follower> EventLog::Follow(std::string target, uint64_t after_seq,
                                                          size_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Event> backlog;
  if (after_seq > 0) {
    for (const Event& e : ring_) {
      if (e.seq > after_seq) backlog.push_back(e);
    }
  }
  return followers_.Add(std::move(target), limit, backlog);
}

uint64_t EventLog::total_recorded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_ - 1;
}

}  // namespace connwatch
