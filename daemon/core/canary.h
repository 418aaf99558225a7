#pragma once
// The canary (`canary:`) as pure logic: when its attempts are due, and what
// each outcome makes of its state (up or down, counters, the last failure),
// including whether the outcome is a change worth an event line. The
// connects themselves are net/canary.h's. Times are passed in (loop time for
// the schedule, Unix time for what is shown), so tests use fake clocks.
// Owned by a net Canary; loop thread.

#include <cstdint>
#include <string>

#include "core/reason.h"
#include "core/snapshot.h"

namespace connwatch {

class CanaryTracker {
 public:
  // Without an address to connect to (a name never resolved yet), the
  // canary looks again this soon (or after its interval, if shorter).
  static constexpr double kNoAddressRetry = 1.0;

  explicit CanaryTracker(double interval_seconds);

  // The schedule, in loop (monotonic) seconds. The first attempt is due at
  // `now` + U[0, interval) (`u01` in [0, 1)), so canaries of targets
  // configured together spread over the interval. Each next attempt is due
  // one interval after the previous one was due; when the previous one ran
  // past that (a timeout longer than the interval, a long wait for
  // admission), at once.
  double First(double now, double u01);
  double Next(double now);
  double NoAddress(double now);  // nothing to connect to now: look again soon
  double due() const { return due_; }

  // What an outcome changed: nothing worth a line, the canary went down
  // (also its first attempt failing), or it came back.
  enum class Change : uint8_t { kNone, kFailed, kRecovered };
  // `seconds`: the connect and the TLS handshake, together.
  Change Succeeded(double unix_now, double seconds);
  Change Failed(double unix_now, Reason reason, int err, std::string detail);
  // Failed attempts since the last success (the one that just ended included).
  uint64_t failed_in_row() const { return failed_in_row_; }

  // Counters and the last outcome of the canary a changed target had.
  void Inherit(const CanaryTracker& old);
  const CanarySnapshot& status() const { return status_; }

 private:
  double interval_;
  double due_ = 0;
  uint64_t failed_in_row_ = 0;
  CanarySnapshot status_;
};

}  // namespace connwatch
