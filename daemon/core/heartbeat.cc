#include "core/heartbeat.h"

#include <re2/re2.h>

#include "core/duration.h"

namespace connwatch {

HeartbeatTracker::HeartbeatTracker(const HeartbeatConfig* config,
                                   std::shared_ptr<const re2::RE2> expect)
    : config_(config), expect_(std::move(expect)) {}

void HeartbeatTracker::Reset() {
  queue_.clear();
  received_.clear();
  failures_ = 0;
  late_since_failure_ = 0;
}

void HeartbeatTracker::OnSent(double now) {
  Request r;
  r.sent_at = now;
  r.deadline = now + static_cast<double>(config_->timeout.count()) / 1000.0;
  queue_.push_back(r);
}

HeartbeatTracker::Replies HeartbeatTracker::OnBytes(std::string_view data, double now) {
  Replies replies;
  if (queue_.empty()) return replies;  // unsolicited bytes are discarded
  received_.append(data);
  if (received_.size() > kBufferCap) received_.erase(0, received_.size() - kBufferCap);
  if (!expect_ || !expect_->ok()) return replies;
  while (!queue_.empty()) {
    re2::StringPiece match;
    if (!expect_->Match(received_, 0, received_.size(), RE2::UNANCHORED, &match, 1)) break;
    const size_t end = static_cast<size_t>(match.data() - received_.data()) + match.size();
    const Request answered = queue_.front();
    queue_.pop_front();
    received_.erase(0, end);
    if (answered.failed) {
      ++replies.late;
      ++late_since_failure_;
      ++late_total_;
      continue;
    }
    ++replies.on_time;
    failures_ = 0;
    late_since_failure_ = 0;
    has_rtt_ = true;
    last_rtt_ = now - answered.sent_at;
  }
  if (queue_.empty()) received_.clear();
  return replies;
}

HeartbeatTracker::Failure HeartbeatTracker::Fail(Reason reason, std::string why) {
  ++failures_;
  Failure f;
  f.reason = reason;
  f.failures = failures_;
  f.fatal = failures_ >= config_->fall;
  f.detail = std::move(why);
  if (late_since_failure_ > 0) {
    f.detail += "; " + std::to_string(late_since_failure_) +
                (late_since_failure_ == 1 ? " reply" : " replies") +
                " came after the deadline of its request";
    late_since_failure_ = 0;
  }
  f.detail += " (failure " + std::to_string(failures_) + "/" + std::to_string(config_->fall) + ")";
  return f;
}

HeartbeatTracker::Failure HeartbeatTracker::OnDeadline() {
  const std::string within = FormatDuration(config_->timeout);
  if (!received_.empty()) {
    // Bytes came but none matched: that was the (wrong) answer to every
    // request still owed one.
    queue_.clear();
    received_.clear();
    return Fail(Reason::kHeartbeatMismatch, "reply did not match expect within " + within);
  }
  if (!queue_.empty()) queue_.back().failed = true;
  while (queue_.size() > kMaxOwed) queue_.pop_front();
  return Fail(Reason::kHeartbeatTimeout, "no reply within " + within);
}

HeartbeatTracker::Failure HeartbeatTracker::OnSendBlocked(size_t unsent) {
  return Fail(Reason::kHeartbeatTimeout,
              "request not sent: " + std::to_string(unsent) +
                  " bytes of the previous one still wait in the send buffer (the peer does not "
                  "read)");
}

}  // namespace connwatch
