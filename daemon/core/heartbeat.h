#pragma once
// The heartbeat of one held connection as pure logic: which request each reply
// answers, the reply deadlines, and the run of consecutive failures that marks
// the target down. The Target does the I/O (the sends, the reads) and hands
// this class the times and the bytes; nothing here touches a socket or a
// clock, so every rule is unit-tested (tests/heartbeat_test.cc).
//
// Requests and replies are matched in order, as a request/response protocol
// over one TCP stream answers them: the first reply matching `expect` answers
// the oldest request still owed one. A request whose deadline passes has
// failed; if its reply comes later it is a late reply to that request, never
// the answer to a newer one, so a peer slower than `interval` fails its
// heartbeats instead of looking healthy forever. A request that got bytes but
// no match by its deadline is taken as answered badly (heartbeat_mismatch):
// the bytes and every request still owed are dropped together.
//
// Owned by a Target; loop thread only.

#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "core/config.h"
#include "core/reason.h"

namespace re2 {
class RE2;
}

namespace connwatch {

class HeartbeatTracker {
 public:
  // Bytes kept while waiting for a match (the newest are kept).
  static constexpr size_t kBufferCap = 4096;
  // Failed requests still owed a reply that are remembered; older ones are
  // forgotten (their replies, should they come, are taken for newer ones').
  static constexpr size_t kMaxOwed = 16;

  // `config` and `expect` must outlive the tracker (the Target keeps both).
  HeartbeatTracker(const HeartbeatConfig* config, std::shared_ptr<const re2::RE2> expect);

  // A new connection: nothing sent, nothing owed, no failures.
  void Reset();

  // True while the newest request is within its deadline: no new request is
  // sent until it is answered or has failed.
  bool waiting() const { return !queue_.empty() && !queue_.back().failed; }
  // The reply deadline of the waiting request; +inf when none waits.
  double deadline() const {
    return waiting() ? queue_.back().deadline : std::numeric_limits<double>::infinity();
  }
  // A request was handed to the kernel (at least its first byte) at `now`.
  void OnSent(double now);

  struct Replies {
    uint32_t on_time = 0;  // replies to requests within their deadline
    uint32_t late = 0;     // replies to requests that had already failed
  };
  // Bytes the peer sent at `now`. Bytes with no request owed are discarded.
  Replies OnBytes(std::string_view data, double now);

  struct Failure {
    Reason reason = Reason::kHeartbeatTimeout;  // or kHeartbeatMismatch
    int failures = 0;                           // consecutive, this one included
    bool fatal = false;                         // failures reached `fall`
    std::string detail;                         // "no reply within 2s (failure 1/3)"
  };
  // The waiting request's deadline passed (call when now >= deadline()).
  Failure OnDeadline();
  // A request was due but could not be sent because `unsent` bytes of the
  // previous one still wait for room in the send buffer (the peer does not
  // read): a failure like a missing reply, and the stream stays whole.
  Failure OnSendBlocked(size_t unsent);

  int failures() const { return failures_; }
  bool has_rtt() const { return has_rtt_; }
  double last_rtt() const { return last_rtt_; }
  uint64_t late_replies() const { return late_total_; }

 private:
  struct Request {
    double sent_at = 0;
    double deadline = 0;
    bool failed = false;
  };
  Failure Fail(Reason reason, std::string why);

  const HeartbeatConfig* config_;
  std::shared_ptr<const re2::RE2> expect_;
  std::deque<Request> queue_;  // oldest first; only the newest may be still waiting
  std::string received_;       // bytes since the oldest owed request, capped
  int failures_ = 0;
  uint32_t late_since_failure_ = 0;
  uint64_t late_total_ = 0;
  bool has_rtt_ = false;
  double last_rtt_ = 0;
};

}  // namespace connwatch
