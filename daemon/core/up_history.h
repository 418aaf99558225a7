#pragma once
// A target's own up/down accounting since the daemon started: the exact
// seconds up (connwatch_target_up_seconds_total) and a bounded history for
// the status page (availability over the last hour and day, disconnects in
// the last hour, the last hour's up/down strip).
//
// NOTE: bounded by buckets, not by transitions: a target that flaps a
// thousand times a minute costs the same memory as a steady one, and no
// flap is lost. The last hour is kept per minute (seconds up, disconnects),
// the last day per hour (seconds up): sizeof(UpHistory) bytes per target
// (512; a test bounds it). The exact counter is a double beside them.
//
// Times are monotonic seconds (a step of the wall clock moves nothing);
// "the last hour" is the current minute and the 59 before it, "the last
// day" the current hour and the 23 before it. Pure logic, fake clocks in
// tests; the loop thread owns one per target, snapshots copy it (POD) and
// readers compute the report at the snapshot's time off the loop.

#include <array>
#include <cstdint>

namespace connwatch {

// What the status page and the API show of one target's history.
struct UpReport {
  static constexpr int kStripCells = 60;  // one per minute, oldest first
  static constexpr int8_t kNotObserved = -1;

  double up_seconds_total = 0;  // since the daemon started, carried over reloads
  // Seconds observed (the daemon watched the target) and up in each window.
  double observed_1h = 0, up_1h = 0;
  double observed_1d = 0, up_1d = 0;
  uint32_t disconnects_1h = 0;
  // Per minute: kNotObserved, or the percent of the observed part that was
  // up, rounded down (100 only when up for all of it: any downtime shows).
  std::array<int8_t, kStripCells> strip{};
  // Minutes of the strip with a disconnect in them (bit i = cell i).
  uint64_t strip_disconnects = 0;

  // Fractions in [0, 1]; negative when nothing was observed.
  double Availability1h() const { return observed_1h > 0 ? up_1h / observed_1h : -1; }
  double Availability1d() const { return observed_1d > 0 ? up_1d / observed_1d : -1; }
};

class UpHistory {
 public:
  static constexpr int kMinutes = 60;
  static constexpr int kHours = 24;

  // Observed from `now` on; down until Up().
  explicit UpHistory(double now = 0);

  // The target came up at `now`. No-op while up.
  void Up(double now);
  // The target went down at `now`; `disconnect` counts it as a disconnect
  // (a death, not our own close at reload or shutdown). No-op while down.
  void Down(double now, bool disconnect);

  bool up() const { return up_; }
  // [from, to] was not watched at all (the daemon was not running: the gap of
  // a restart); the windows leave it out of the time observed. One gap is
  // remembered, the last: an earlier one counts as observed and down.
  void Unobserved(double from, double to);
  // Seconds up until `now`, including the current stretch.
  double UpSecondsTotal(double now) const;
  UpReport Report(double now) const;

  // Everything the history holds, for the state file (monitor/state_store.h):
  // times in the monotonic base of the process that saved it.
  struct Saved {
    double start = 0, last = 0, up_total = 0;
    int64_t head_minute = 0, head_hour = 0;
    bool up = false;
    float gap_from = 0, gap_length = 0;  // seconds after start
    std::array<float, kMinutes> minute_up{};
    std::array<uint16_t, kMinutes> minute_disconnects{};
    std::array<float, kHours> hour_up{};
  };
  Saved Save() const;
  // The history `saved` describes; false (and *out untouched) when it is not
  // one UpHistory could have made (a bucket over its width, times backwards).
  static bool Load(const Saved& saved, UpHistory* out);
  // The same history, down, in a time base `delta` seconds ahead (a
  // restarted process's monotonic clock is another one): every time moves by
  // delta, each bucket's seconds are shared between the (at most two) new
  // buckets its interval overlaps, a minute's disconnects go to the new minute
  // holding its middle. Call on a history that is down.
  UpHistory Rebased(double delta) const;

 private:
  // Books [last_, now] as up into the buckets (the caller knows it was up).
  void BookUp(double now);
  void RollMinutes(int64_t minute);
  void RollHours(int64_t hour);

  double start_ = 0;       // when observing began
  double last_ = 0;        // the last transition (or booking) while up
  double up_total_ = 0;    // seconds up booked until last_
  int64_t head_minute_ = 0;  // the newest minute the buckets hold
  int64_t head_hour_ = 0;
  bool up_ = false;
  // The unobserved gap, seconds after start_ (floats: the bound below).
  float gap_from_ = 0, gap_length_ = 0;
  std::array<float, kMinutes> minute_up_{};  // seconds up, by minute % kMinutes
  std::array<uint16_t, kMinutes> minute_disconnects_{};  // saturating
  std::array<float, kHours> hour_up_{};
};

}  // namespace connwatch
