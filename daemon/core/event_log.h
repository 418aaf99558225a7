#pragma once
// The structured event log: one line per transition on stderr (logfmt or
// JSON), plus a bounded ring of the most recent events for /api/v1/events.
// Thread-safe: the loop appends, HTTP threads read copies.

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/event_followers.h"
#include "core/probe.h"
#include "core/reason.h"
#include "core/tcp_sample.h"

namespace connwatch {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarn, kError };
enum class LogFormat : uint8_t { kLogfmt, kJson };
bool ParseLogLevel(std::string_view word, LogLevel* level);
bool ParseLogFormat(std::string_view word, LogFormat* format);
std::string_view LogLevelName(LogLevel level);  // "debug" | "info" | "warn" | "error"

// One key=value of a log line. The value keeps its type: logfmt writes every
// value as text, JSON writes numbers and booleans as JSON numbers and
// booleans (`"retrans":0`, not `"retrans":"0"`), so log consumers (jq, Loki,
// Elasticsearch) can compare and sum them. Build one from a key and a value
// of any of these types: {"port", 9798}, {"file", path}, {"ok", true}; a
// duration with LogField::Seconds, a measurement with LogField::Fixed.
class LogField {
 public:
  enum class Type : uint8_t {
    kString,
    kInt,      // a signed integer
    kUint,     // an unsigned integer
    kFloat,    // a number: shortest text that reads back the same
    kFixed,    // a number with `decimals` digits after the point
    kBool,
    kSeconds,  // a duration: logfmt "1.2s"/"420us", JSON a number of seconds
  };

  LogField(std::string key, std::string value)
      : key_(std::move(key)), type_(Type::kString), text_(std::move(value)) {}
  LogField(std::string key, const char* value) : LogField(std::move(key), std::string(value)) {}
  LogField(std::string key, std::string_view value)
      : LogField(std::move(key), std::string(value)) {}
  LogField(std::string key, bool value) : key_(std::move(key)), type_(Type::kBool), bool_(value) {}
  template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                             !std::is_same_v<T, char>,
                                         int> = 0>
  LogField(std::string key, T value) : key_(std::move(key)) {
    if constexpr (std::is_signed_v<T>) {
      type_ = Type::kInt;
      int_ = static_cast<int64_t>(value);
    } else {
      type_ = Type::kUint;
      uint_ = static_cast<uint64_t>(value);
    }
  }
  LogField(std::string key, double value)
      : key_(std::move(key)), type_(Type::kFloat), number_(value) {}

  static LogField Seconds(std::string key, double seconds);
  static LogField Fixed(std::string key, double value, int decimals);

  const std::string& key() const { return key_; }
  Type type() const { return type_; }
  // The value as logfmt writes it (before quoting).
  std::string Text() const;
  // Accessors by type (the others read 0, false or "").
  const std::string& string_value() const { return text_; }
  int64_t int_value() const { return int_; }
  uint64_t uint_value() const { return uint_; }
  double number_value() const { return number_; }  // kFloat, kFixed, kSeconds
  bool bool_value() const { return bool_; }
  int decimals() const { return decimals_; }

 private:
  LogField(std::string key, Type type, double number, int decimals)
      : key_(std::move(key)), type_(type), number_(number), decimals_(decimals) {}

  std::string key_;
  Type type_ = Type::kString;
  std::string text_;
  int64_t int_ = 0;
  uint64_t uint_ = 0;
  double number_ = 0;
  int decimals_ = 0;
  bool bool_ = false;
};

// One target transition.
struct Event {
  uint64_t seq = 0;        // assigned by EventLog::Record, increasing from 1.
  double unix_time = 0;
  LogLevel level = LogLevel::kInfo;
  // "connect" | "connect_failure" | "disconnect" | "heartbeat_failure" |
  // "canary_failure" | "canary_recovered" |
  // "icmp_error" | "close"
  std::string kind;
  std::string target;
  std::string address;           // as configured
  std::string resolved_address;  // may be empty
  // addresses: all and srv: the endpoint the event is about ("10.0.0.5:6379");
  // empty for a target with one connection.
  std::string endpoint;
  bool has_reason = false;
  Reason reason = Reason::kError;
  int err = 0;                    // errno behind the reason, 0 if none
  bool has_detected_by = false;   // disconnect and icmp_error: what saw it
  Detector detected_by = Detector::kRead;
  double connected_for = -1;      // seconds, disconnect/close only
  double connect_seconds = -1;    // connect only: time to establish
  double tls_handshake_seconds = -1;  // connect of a TLS target: the handshake after TCP
  int close_notify = -1;          // TLS peer_closed: 1 the peer sent close_notify, 0 not, -1 n/a
  TcpSample tcp;                  // snapshot taken before close (disconnect), or at connect
  std::string detail;             // free text, e.g. "heartbeat reply did not match"
};

class EventLog {
 public:
  static constexpr size_t kRingSize = 1000;

  // `out` is the stream lines go to (stderr in the daemon); nullptr: ring only.
  EventLog(FILE* out, LogFormat format, LogLevel min_level);
  ~EventLog() { Flush(); }
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Writes the line (when at or above the level) and keeps the event in the ring.
  void Record(Event event);
  // A daemon message that is not a target event: `msg` plus extra fields.
  void Message(LogLevel level, std::string_view msg, const std::vector<LogField>& fields = {});

  // Lines recorded from the calling thread (the event loop) are kept in a
  // buffer until Flush(), so a burst of 10,000 deaths handled in one loop
  // iteration costs a few write()s, not 10,000 write()+fflush pairs. Lines
  // from any other thread are written at once, after the buffered ones (the
  // order of the lines is the order of the calls). The loop flushes before
  // it blocks (Monitor's ev_prepare), and a buffer over kFlushBytes is
  // written at once, so a line waits at most one loop iteration.
  static constexpr size_t kFlushBytes = 256 * 1024;
  void BufferOnThisThread();
  // Writes the buffered lines (one fwrite, one fflush). Any thread.
  void Flush();
  // Flushes and writes every line at once again (the loop has ended).
  void StopBuffering();

  // Most recent first, at most `limit`.
  std::vector<Event> Recent(size_t limit = kRingSize) const;
  // The whole ring, oldest first, and the seq the next event will get, taken
  // together (the state file, monitor/state_store.h).
  std::vector<Event> Ring(uint64_t* next_seq) const;
  // At start-up, before any Record: puts the events of the last run (oldest
  // first, with their seqs) in the ring, without writing or delivering them,
  // and numbers the events from here on after them (from `next_seq`, or
  // after the last of them if that is higher). Returns false and changes
  // nothing when the ring is not empty or the seqs do not increase.
  bool Restore(std::vector<Event> events, uint64_t next_seq);
  uint64_t total_recorded() const;

  // A live follower of the events recorded from now on (of `target` only,
  // unless ""), whose queue starts with the ring's events after `after_seq`
  // (0: none), so a client that reconnects with the last seq it saw misses
  // nothing the ring still holds. At most `limit` events wait in its queue;
  // past that it is dropped (Wait() says kOverrun). Record() never waits for it.
  std::unique_ptr<EventFollowers::Follower> Follow(std::string target, uint64_t after_seq,
                                                   size_t limit);
  // Ends every follower (shutdown): their Wait() returns kClosed.
  void CloseFollowers() { followers_.CloseAll(); }
  size_t followers() const { return followers_.size(); }

  // The line Record would write, without the newline (for tests).
  std::string FormatEvent(const Event& event) const;
  // The line Message would write at `unix_time`, without the newline.
  std::string FormatMessage(double unix_time, LogLevel level, std::string_view msg,
                            const std::vector<LogField>& fields) const;

 private:
  // Under mu_: appends the line (prefix, text, newline) to the buffer, or
  // writes it (after the buffer) when not on the buffering thread.
  void EmitLocked(LogLevel level, const std::string& line);
  void FlushLocked();

  FILE* out_;
  LogFormat format_;
  LogLevel min_level_;
  bool journal_prefix_;  // stderr is the journal: prefix "<N>" priorities.
  mutable std::mutex mu_;
  std::deque<Event> ring_;
  std::thread::id buffer_thread_;  // default id: no thread buffers
  std::string pending_;            // buffered lines, each with its newline
  uint64_t next_seq_ = 1;
  EventFollowers followers_;  // fed under mu_, in seq order.
};

}  // namespace connwatch
