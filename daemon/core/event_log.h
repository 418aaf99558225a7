#pragma once
// The structured event log: one line per transition on stderr (logfmt or
// JSON), plus a bounded ring of the most recent events for /api/v1/events.
// Thread-safe: the loop appends, HTTP threads read copies.

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/event_followers.h"
#include "core/reason.h"
#include "core/tcp_sample.h"

namespace connwatch {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarn, kError };
enum class LogFormat : uint8_t { kLogfmt, kJson };
bool ParseLogLevel(std::string_view word, LogLevel* level);
bool ParseLogFormat(std::string_view word, LogFormat* format);
std::string_view LogLevelName(LogLevel level);  // "debug" | "info" | "warn" | "error"

// One target transition.
struct Event {
  uint64_t seq = 0;        // assigned by EventLog::Record, increasing from 1.
  double unix_time = 0;
  LogLevel level = LogLevel::kInfo;
  std::string kind;        // "connect" | "connect_failure" | "disconnect" | "close"
  std::string target;
  std::string address;           // as configured
  std::string resolved_address;  // may be empty
  bool has_reason = false;
  Reason reason = Reason::kError;
  int err = 0;                    // errno behind the reason, 0 if none
  double connected_for = -1;      // seconds, disconnect/close only
  double connect_seconds = -1;    // connect only: time to establish
  TcpSample tcp;                  // snapshot taken before close (disconnect), or at connect
  std::string detail;             // free text, e.g. "heartbeat reply did not match"
};

class EventLog {
 public:
  static constexpr size_t kRingSize = 1000;

  // `out` is the stream lines go to (stderr in the daemon); nullptr: ring only.
  EventLog(FILE* out, LogFormat format, LogLevel min_level);

  // Writes the line (when at or above the level) and keeps the event in the ring.
  void Record(Event event);
  // A daemon message that is not a target event: `msg` plus extra key/values.
  void Message(LogLevel level, std::string_view msg,
               const std::vector<std::pair<std::string, std::string>>& fields = {});

  // Most recent first, at most `limit`.
  std::vector<Event> Recent(size_t limit = kRingSize) const;
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

 private:
  FILE* out_;
  LogFormat format_;
  LogLevel min_level_;
  bool journal_prefix_;  // stderr is the journal: prefix "<N>" priorities.
  mutable std::mutex mu_;
  std::deque<Event> ring_;
  uint64_t next_seq_ = 1;
  EventFollowers followers_;  // fed under mu_, in seq order.
};

}  // namespace connwatch
