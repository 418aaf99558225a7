#include "core/event_log.h"

#include <algorithm>
#include <charconv>
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
  // The date and time of the second are formatted once per second and
  // thread: a burst of 10,000 lines in one second calls gmtime_r once.
  thread_local time_t cached_secs = -1;
  thread_local char cached[64];
  if (secs != cached_secs) {
    struct tm tm_utc;
    gmtime_r(&secs, &tm_utc);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm_utc.tm_year + 1900,
                  tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec);
    cached_secs = secs;
  }
  std::string out(cached);
  char digits[8] = {'0', '0', '0', '0', '0', '0', 'Z', 0};
  for (int i = 5; i >= 0; --i, micros /= 10) digits[i] = static_cast<char>('0' + micros % 10);
  out.append(digits, 7);
  return out;
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

// Ordered fields of an event, shared by both formats.
std::vector<LogField> EventFields(const Event& e) {
  std::vector<LogField> f;
  f.emplace_back("event", e.kind);
  f.emplace_back("target", e.target);
  f.emplace_back("address", e.address);
  if (!e.endpoint.empty()) f.emplace_back("endpoint", e.endpoint);
  if (!e.resolved_address.empty()) f.emplace_back("resolved", e.resolved_address);
  if (e.has_reason) f.emplace_back("reason", ReasonName(e.reason));
  if (e.err != 0) f.emplace_back("errno", ErrnoName(e.err));
  if (e.has_detected_by) f.emplace_back("detected_by", DetectorName(e.detected_by));
  if (e.connect_seconds >= 0) f.push_back(LogField::Seconds("connect_time", e.connect_seconds));
  if (e.tls_handshake_seconds >= 0) {
    f.push_back(LogField::Seconds("tls_handshake", e.tls_handshake_seconds));
  }
  if (e.close_notify >= 0) f.emplace_back("close_notify", e.close_notify ? "yes" : "no");
  if (e.connected_for >= 0) f.push_back(LogField::Seconds("connected_for", e.connected_for));
  if (e.tcp.valid) {
    f.push_back(LogField::Seconds("rtt", e.tcp.rtt_us / 1e6));
    f.emplace_back("retrans", e.tcp.total_retrans);
    if (e.kind == "disconnect") {
      f.push_back(LogField::Seconds("last_data_recv", e.tcp.last_data_recv_ms / 1e3));
      f.emplace_back("probes", e.tcp.probes);
      f.emplace_back("unacked", e.tcp.unacked);
      if (e.tcp.notsent_bytes > 0) f.emplace_back("notsent", e.tcp.notsent_bytes);
    }
  }
  if (!e.detail.empty()) f.emplace_back("detail", e.detail);
  return f;
}

void SetJson(nlohmann::ordered_json* j, const LogField& field) {
  nlohmann::ordered_json& v = (*j)[field.key()];
  switch (field.type()) {
    case LogField::Type::kString:
      v = field.string_value();
      return;
    case LogField::Type::kInt:
      v = field.int_value();
      return;
    case LogField::Type::kUint:
      v = field.uint_value();
      return;
    case LogField::Type::kFixed: {
      // The number as logfmt prints it, so both formats agree to the digit.
      const std::string text = field.Text();
      double parsed = field.number_value();
      std::from_chars(text.data(), text.data() + text.size(), parsed);
      v = parsed;
      return;
    }
    case LogField::Type::kFloat:
    case LogField::Type::kSeconds:
      v = field.number_value();  // NaN and infinities become null.
      return;
    case LogField::Type::kBool:
      v = field.bool_value();
      return;
  }
}

}  // namespace

LogField LogField::Seconds(std::string key, double seconds) {
  return LogField(std::move(key), Type::kSeconds, seconds, 0);
}

LogField LogField::Fixed(std::string key, double value, int decimals) {
  return LogField(std::move(key), Type::kFixed, value, std::clamp(decimals, 0, 17));
}

std::string LogField::Text() const {
  switch (type_) {
    case Type::kString:
      return text_;
    case Type::kInt:
      return std::to_string(int_);
    case Type::kUint:
      return std::to_string(uint_);
    case Type::kFloat: {
      char buf[64];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, number_);
      return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
    }
    case Type::kFixed: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", decimals_, number_);
      return buf;
    }
    case Type::kBool:
      return bool_ ? "true" : "false";
    case Type::kSeconds:
      return FormatSeconds(number_);
  }
  return text_;
}


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
                              const std::vector<LogField>& fields) {
  if (format == LogFormat::kJson) {
    nlohmann::ordered_json j;
    j["ts"] = FormatTimestamp(unix_time);
    j["level"] = LogLevelName(level);
    for (const LogField& field : fields) SetJson(&j, field);
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line;
  AppendLogfmt(&line, "ts", FormatTimestamp(unix_time));
  AppendLogfmt(&line, "level", LogLevelName(level));
  for (const LogField& field : fields) AppendLogfmt(&line, field.key(), field.Text());
  return line;
}

std::string EventLog::FormatEvent(const Event& event) const {
  return FormatLine(format_, event.unix_time, event.level, EventFields(event));
}

std::string EventLog::FormatMessage(double unix_time, LogLevel level, std::string_view msg,
                                    const std::vector<LogField>& fields) const {
  std::vector<LogField> all;
  all.reserve(fields.size() + 1);
  all.emplace_back("msg", msg);
  all.insert(all.end(), fields.begin(), fields.end());
  return FormatLine(format_, unix_time, level, all);
}

void EventLog::Record(Event event) {
  std::string line;
  if (out_ && event.level >= min_level_) line = FormatEvent(event);
  std::lock_guard<std::mutex> lock(mu_);
  event.seq = next_seq_++;
  if (!line.empty()) EmitLocked(event.level, line);
  ring_.push_back(std::move(event));
  if (ring_.size() > kRingSize) ring_.pop_front();
  followers_.Deliver(ring_.back());
}

void EventLog::Message(LogLevel level, std::string_view msg, const std::vector<LogField>& fields) {
  if (!out_ || level < min_level_) return;
  std::string line = FormatMessage(NowUnix(), level, msg, fields);
  std::lock_guard<std::mutex> lock(mu_);
  EmitLocked(level, line);
}

void EventLog::EmitLocked(LogLevel level, const std::string& line) {
  if (journal_prefix_) {
    char prefix[8];
    std::snprintf(prefix, sizeof prefix, "<%d>", SyslogPriority(level));
    pending_.append(prefix);
  }
  pending_.append(line);
  pending_.push_back('\n');
  if (std::this_thread::get_id() != buffer_thread_ || pending_.size() >= kFlushBytes) FlushLocked();
}

void EventLog::FlushLocked() {
  if (pending_.empty() || out_ == nullptr) return;
  std::fwrite(pending_.data(), 1, pending_.size(), out_);
  std::fflush(out_);
  pending_.clear();
}

void EventLog::BufferOnThisThread() {
  std::lock_guard<std::mutex> lock(mu_);
  buffer_thread_ = std::this_thread::get_id();
}

void EventLog::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  FlushLocked();
}

void EventLog::StopBuffering() {
  std::lock_guard<std::mutex> lock(mu_);
  FlushLocked();
  buffer_thread_ = std::thread::id();
}

std::vector<Event> EventLog::Recent(size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Event> out;
  out.reserve(std::min(limit, ring_.size()));
  for (auto it = ring_.rbegin(); it != ring_.rend() && out.size() < limit; ++it) out.push_back(*it);
  return out;
}

std::vector<Event> EventLog::Ring(uint64_t* next_seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  *next_seq = next_seq_;
  return std::vector<Event>(ring_.begin(), ring_.end());
}

bool EventLog::Restore(std::vector<Event> events, uint64_t next_seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ring_.empty() || next_seq_ != 1) return false;
  uint64_t last = 0;
  for (const Event& e : events) {
    if (e.seq <= last) return false;
    last = e.seq;
  }
  const size_t skip = events.size() > kRingSize ? events.size() - kRingSize : 0;
  for (size_t i = skip; i < events.size(); ++i) ring_.push_back(std::move(events[i]));
  next_seq_ = std::max(next_seq, last + 1);
  return true;
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
