#include "core/up_history.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

void UpHistory::Unobserved(double from, double to) {
  from = std::max(from, start_);
  if (!(to > from)) return;
  gap_from_ = static_cast<float>(from - start_);
  gap_length_ = static_cast<float>(to - from);
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

UpHistory::Saved UpHistory::Save() const {
  Saved s;
  s.start = start_;
  s.last = last_;
  s.up_total = up_total_;
  s.head_minute = head_minute_;
  s.head_hour = head_hour_;
  s.up = up_;
  s.gap_from = gap_from_;
  s.gap_length = gap_length_;
  s.minute_up = minute_up_;
  s.minute_disconnects = minute_disconnects_;
  s.hour_up = hour_up_;
  return s;
}

bool UpHistory::Load(const Saved& s, UpHistory* out) {
  auto finite = [](double v) { return std::isfinite(v); };
  if (!finite(s.start) || !finite(s.last) || !finite(s.up_total) || s.up_total < 0 ||
      s.last < s.start) {
    return false;
  }
  // A bucket holds at most its width (floats summed: a hair of slack).
  for (float v : s.minute_up) {
    if (!(v >= 0 && v <= kMinute * 1.001)) return false;
  }
  for (float v : s.hour_up) {
    if (!(v >= 0 && v <= kHour * 1.001)) return false;
  }
  UpHistory h;
  h.start_ = s.start;
  h.last_ = s.last;
  h.up_total_ = s.up_total;
  h.head_minute_ = s.head_minute;
  h.head_hour_ = s.head_hour;
  h.up_ = s.up;
  if (!(s.gap_from >= 0) || !(s.gap_length >= 0)) return false;
  h.gap_from_ = s.gap_from;
  h.gap_length_ = s.gap_length;
  h.minute_up_ = s.minute_up;
  h.minute_disconnects_ = s.minute_disconnects;
  h.hour_up_ = s.hour_up;
  *out = h;
  return true;
}

namespace {

// Moves the buckets of a ring (N buckets of `width` seconds, the newest
// being index `head`) `delta` seconds on, into `to` (newest `to_head`). What
// a bucket holds lies in its part of [first, last] (nothing is booked before
// observing began or after the last booking), so that part is what moves:
// `split`, its amount is shared by the new buckets in proportion to their
// overlap with it; else it all goes to the bucket holding its middle.
template <typename T, size_t N>
void Rebucket(const std::array<T, N>& from, int64_t head, double width, double first,
              double last, double delta, std::array<T, N>* to, int64_t to_head, bool split) {
  to->fill(0);
  const int slots = static_cast<int>(N);
  auto add = [&](int64_t index, double amount) {
    if (index > to_head || index <= to_head - slots || amount <= 0) return;
    T& cell = (*to)[Slot(index, slots)];
    const double sum = static_cast<double>(cell) + amount;
    cell = static_cast<T>(std::min(sum, static_cast<double>(std::numeric_limits<T>::max())));
  };
  for (int64_t i = head - slots + 1; i <= head; ++i) {
    const T v = from[Slot(i, slots)];
    if (v == 0) continue;
    double b0 = static_cast<double>(i) * width, b1 = b0 + width;
    if (std::max(b0, first) <= std::min(b1, last)) {
      b0 = std::max(b0, first);
      b1 = std::min(b1, last);
    }
    b0 += delta;
    b1 += delta;
    if (!split || b1 <= b0) {
      add(Index((b0 + b1) / 2, width), static_cast<double>(v));
      continue;
    }
    for (int64_t k = Index(b0, width); static_cast<double>(k) * width < b1; ++k) {
      const double part = Overlap(b0, b1, static_cast<double>(k) * width,
                                  static_cast<double>(k + 1) * width);
      add(k, static_cast<double>(v) * part / (b1 - b0));
    }
  }
}

}  // namespace

UpHistory UpHistory::Rebased(double delta) const {
  UpHistory h;
  h.start_ = start_ + delta;
  h.last_ = last_ + delta;
  h.up_total_ = up_total_;
  h.up_ = false;
  h.gap_from_ = gap_from_;
  h.gap_length_ = gap_length_;
  // The newest buckets: those holding the last booking.
  h.head_minute_ = std::max(Index(h.last_, kMinute), Index(h.start_, kMinute));
  h.head_hour_ = std::max(Index(h.last_, kHour), Index(h.start_, kHour));
  Rebucket(minute_up_, head_minute_, kMinute, start_, last_, delta, &h.minute_up_,
           h.head_minute_, true);
  Rebucket(minute_disconnects_, head_minute_, kMinute, start_, last_, delta,
           &h.minute_disconnects_, h.head_minute_, false);
  Rebucket(hour_up_, head_hour_, kHour, start_, last_, delta, &h.hour_up_, h.head_hour_, true);
  return h;
}

UpReport UpHistory::Report(double now) const {
  UpReport r;
  r.up_seconds_total = UpSecondsTotal(now);
  const double gap0 = start_ + gap_from_;
  const double gap1 = gap0 + gap_length_;
  const int64_t minute = Index(now, kMinute);
  for (int i = 0; i < kMinutes; ++i) {
    const int64_t m = minute - (kMinutes - 1) + i;
    const double b0 = static_cast<double>(m) * kMinute;
    const double b1 = b0 + kMinute;
    const bool held = m <= head_minute_ && m > head_minute_ - kMinutes;
    const double observed =
        std::max(0.0, Overlap(start_, now, b0, b1) - Overlap(gap0, gap1, b0, b1));
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
    const double observed =
        std::max(0.0, Overlap(start_, now, b0, b1) - Overlap(gap0, gap1, b0, b1));
    double up = held ? hour_up_[Slot(h, kHours)] : 0;
    if (up_) up += Overlap(last_, now, b0, b1);
    r.observed_1d += observed;
    r.up_1d += std::min(up, observed);
  }
  return r;
}

}  // namespace connwatch
