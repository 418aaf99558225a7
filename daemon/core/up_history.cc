#include "core/up_history.h"

#include <algorithm>
#include <cmath>

namespace connwatch {

namespace {

constexpr double kMinute = 60;
constexpr double kHour = 3600;

int64_t Index(double t, double width) { return static_cast<int64_t>(std::floor(t / width)); }

size_t Slot(int64_t index, int slots) {
  const int64_t m = index % slots;
  return static_cast<size_t>(m < 0 ? m + slots : m);
}

// Length of the overlap of [a0, a1] and [b0, b1].
double Overlap(double a0, double a1, double b0, double b1) {
  return std::max(0.0, std::min(a1, b1) - std::max(a0, b0));
}

}  // namespace

UpHistory::UpHistory(double now)
    : start_(now), last_(now), head_minute_(Index(now, kMinute)), head_hour_(Index(now, kHour)) {}

void UpHistory::Up(double now) {
  if (up_) return;
  up_ = true;
  last_ = now;
}

void UpHistory::Down(double now, bool disconnect) {
  if (!up_) return;
  BookUp(now);
  up_ = false;
  if (disconnect) {
    const int64_t minute = Index(now, kMinute);
    RollMinutes(minute);
    uint16_t& n = minute_disconnects_[Slot(minute, kMinutes)];
    if (n < UINT16_MAX) ++n;
  }
}

double UpHistory::UpSecondsTotal(double now) const {
  return up_total_ + (up_ && now > last_ ? now - last_ : 0);
}

void UpHistory::RollMinutes(int64_t minute) {
  if (minute <= head_minute_) return;
  if (minute - head_minute_ >= kMinutes) {
    minute_up_.fill(0);
    minute_disconnects_.fill(0);
  } else {
    for (int64_t m = head_minute_ + 1; m <= minute; ++m) {
      minute_up_[Slot(m, kMinutes)] = 0;
      minute_disconnects_[Slot(m, kMinutes)] = 0;
    }
  }
  head_minute_ = minute;
}

void UpHistory::RollHours(int64_t hour) {
  if (hour <= head_hour_) return;
  if (hour - head_hour_ >= kHours) {
    hour_up_.fill(0);
  } else {
    for (int64_t h = head_hour_ + 1; h <= hour; ++h) hour_up_[Slot(h, kHours)] = 0;
  }
  head_hour_ = hour;
}

void UpHistory::BookUp(double now) {
  if (now <= last_) return;
  // Only what can still be in a bucket is booked: a stretch of days costs
  // at most 60 + 24 steps.
  for (double t = std::max(last_, now - kMinutes * kMinute - kMinute); t < now;) {
    const int64_t m = Index(t, kMinute);
    const double end = std::min(now, static_cast<double>(m + 1) * kMinute);
    RollMinutes(m);
    minute_up_[Slot(m, kMinutes)] += static_cast<float>(end - t);
    t = end;
  }
  for (double t = std::max(last_, now - kHours * kHour - kHour); t < now;) {
    const int64_t h = Index(t, kHour);
    const double end = std::min(now, static_cast<double>(h + 1) * kHour);
    RollHours(h);
    hour_up_[Slot(h, kHours)] += static_cast<float>(end - t);
    t = end;
  }
  up_total_ += now - last_;
  last_ = now;
}

UpReport UpHistory::Report(double now) const {
  UpReport r;
  r.up_seconds_total = UpSecondsTotal(now);
  const int64_t minute = Index(now, kMinute);
  for (int i = 0; i < kMinutes; ++i) {
    const int64_t m = minute - (kMinutes - 1) + i;
    const double b0 = static_cast<double>(m) * kMinute;
    const double b1 = b0 + kMinute;
    const bool held = m <= head_minute_ && m > head_minute_ - kMinutes;
    const double observed = Overlap(start_, now, b0, b1);
    double up = held ? minute_up_[Slot(m, kMinutes)] : 0;
    if (up_) up += Overlap(last_, now, b0, b1);  // the stretch not booked yet
    up = std::min(up, observed);
    const uint16_t disconnects = held ? minute_disconnects_[Slot(m, kMinutes)] : 0;
    r.observed_1h += observed;
    r.up_1h += up;
    r.disconnects_1h += disconnects;
    if (disconnects > 0) r.strip_disconnects |= uint64_t{1} << i;
    if (observed <= 0) {
      r.strip[static_cast<size_t>(i)] = UpReport::kNotObserved;
    } else if (up >= observed * (1 - 1e-6) && disconnects == 0) {
      // Float buckets: a minute up throughout may sum to a hair below it.
      r.strip[static_cast<size_t>(i)] = 100;
    } else {
      r.strip[static_cast<size_t>(i)] =
          static_cast<int8_t>(std::min(99.0, std::floor(up / observed * 100)));
    }
  }
  const int64_t hour = Index(now, kHour);
  for (int i = 0; i < kHours; ++i) {
    const int64_t h = hour - (kHours - 1) + i;
    const double b0 = static_cast<double>(h) * kHour;
    const double b1 = b0 + kHour;
    const bool held = h <= head_hour_ && h > head_hour_ - kHours;
    const double observed = Overlap(start_, now, b0, b1);
    double up = held ? hour_up_[Slot(h, kHours)] : 0;
    if (up_) up += Overlap(last_, now, b0, b1);
    r.observed_1d += observed;
    r.up_1d += std::min(up, observed);
  }
  return r;
}

}  // namespace connwatch
