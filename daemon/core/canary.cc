#include "core/canary.h"

#include <algorithm>
#include <utility>

namespace connwatch {

CanaryTracker::CanaryTracker(double interval_seconds) : interval_(interval_seconds) {
  status_.interval_seconds = interval_seconds;
}

double CanaryTracker::First(double now, double u01) {
  due_ = now + interval_ * std::clamp(u01, 0.0, 1.0);
  return due_;
}

double CanaryTracker::Next(double now) {
  due_ = std::max(due_ + interval_, now);
  return due_;
}

double CanaryTracker::NoAddress(double now) {
  due_ = now + std::min(interval_, kNoAddressRetry);
  return due_;
}

CanaryTracker::Change CanaryTracker::Succeeded(double unix_now, double seconds) {
  const Change change = status_.attempted && !status_.up ? Change::kRecovered : Change::kNone;
  if (!status_.attempted || !status_.up) status_.since_unix = unix_now;
  status_.attempted = true;
  status_.up = true;
  status_.last_attempt_unix = unix_now;
  ++status_.attempts;
  status_.has_duration = true;
  status_.connect_seconds = seconds;
  failed_in_row_ = 0;
  return change;
}

CanaryTracker::Change CanaryTracker::Failed(double unix_now, Reason reason, int err,
                                            std::string detail) {
  const Change change = !status_.attempted || status_.up ? Change::kFailed : Change::kNone;
  if (change == Change::kFailed) status_.since_unix = unix_now;
  status_.attempted = true;
  status_.up = false;
  status_.last_attempt_unix = unix_now;
  ++status_.attempts;
  status_.failures[static_cast<size_t>(reason)]++;
  status_.last_reason = reason;
  status_.last_errno = err;
  status_.last_failure_unix = unix_now;
  status_.last_detail = std::move(detail);
  ++failed_in_row_;
  return change;
}

void CanaryTracker::Inherit(const CanaryTracker& old) {
  const double interval = status_.interval_seconds;
  status_ = old.status_;
  status_.interval_seconds = interval;
  failed_in_row_ = old.failed_in_row_;
}

}  // namespace connwatch
