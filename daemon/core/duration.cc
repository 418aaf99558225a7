#include "core/duration.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace connwatch {

namespace {

struct Unit {
  std::string_view name;
  int64_t millis;
};

// Largest first: the order ParseDuration requires and FormatDuration writes.
constexpr Unit kUnits[] = {
    {"y", 365LL * 24 * 3600 * 1000},
    {"w", 7LL * 24 * 3600 * 1000},
    {"d", 24LL * 3600 * 1000},
    {"h", 3600LL * 1000},
    {"m", 60LL * 1000},
    {"s", 1000},
    {"ms", 1},
};
constexpr int kUnitCount = static_cast<int>(sizeof kUnits / sizeof kUnits[0]);

int FindUnit(std::string_view name) {
  for (int i = 0; i < kUnitCount; ++i) {
    if (kUnits[i].name == name) return i;
  }
  return -1;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// "1.5" with unit "s" -> 1500 when that is a whole number of milliseconds.
bool FractionToMillis(std::string_view whole, std::string_view frac, int64_t unit_ms,
                      int64_t* out) {
  // At most 24 digits: below 1e24, times the largest unit (a year, 3.2e10
  // ms) stays far inside __int128. This only builds a hint, so a longer
  // number simply gets none.
  if (whole.size() > 18 || frac.empty() || frac.size() > 18 || whole.size() + frac.size() > 24) {
    return false;
  }
  __int128 numerator = 0;
  for (char c : whole) numerator = numerator * 10 + (c - '0');
  __int128 scale = 1;
  for (char c : frac) {
    numerator = numerator * 10 + (c - '0');
    scale *= 10;
  }
  numerator *= unit_ms;
  if (numerator % scale != 0) return false;
  __int128 ms = numerator / scale;
  if (ms > std::numeric_limits<int64_t>::max()) return false;
  *out = static_cast<int64_t>(ms);
  return true;
}

// "12.3" from 123 tenths, "250" from 2500 tenths.
std::string FormatTenths(long long tenths) {
  std::string out = std::to_string(tenths / 10);
  if (tenths % 10 != 0) {
    out.push_back('.');
    out.push_back(static_cast<char>('0' + tenths % 10));
  }
  return out;
}

}  // namespace

bool ParseDuration(std::string_view text, Millis* out, std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error != nullptr) *error = "invalid duration \"" + std::string(text) + "\": " + why;
    return false;
  };
  if (text.empty()) return fail("empty (write e.g. \"5s\", or \"0\")");
  if (text == "0") {
    *out = Millis(0);
    return true;
  }
  if (text[0] == '-') return fail("negative durations are not allowed");

  const size_t n = text.size();
  size_t i = 0;
  int previous_unit = -1;
  int64_t total = 0;
  while (i < n) {
    const size_t number_start = i;
    while (i < n && IsDigit(text[i])) ++i;
    std::string_view number = text.substr(number_start, i - number_start);
    if (number.empty()) {
      if (text[i] == '.') return fail("fractional amounts are not allowed; use a smaller unit");
      if (IsLetter(text[i])) {
        size_t end = i;
        while (end < n && IsLetter(text[end])) ++end;
        return fail("missing number before unit \"" + std::string(text.substr(i, end - i)) + "\"");
      }
      return fail("unexpected character \"" + std::string(1, text[i]) + "\"");
    }
    if (i < n && text[i] == '.') {
      // Give the exact rewrite when there is one: "1.5s" -> "1s500ms".
      size_t frac_start = ++i;
      while (i < n && IsDigit(text[i])) ++i;
      std::string_view frac = text.substr(frac_start, i - frac_start);
      size_t unit_start = i;
      while (i < n && IsLetter(text[i])) ++i;
      int unit = FindUnit(text.substr(unit_start, i - unit_start));
      int64_t ms = 0;
      if (unit >= 0 && FractionToMillis(number, frac, kUnits[unit].millis, &ms) && ms > 0) {
        return fail("fractional amounts are not allowed; write \"" + FormatDuration(Millis(ms)) +
                    "\"");
      }
      return fail("fractional amounts are not allowed; use a smaller unit");
    }
    if (i == n) {
      if (number_start == 0) {
        return fail("missing unit (e.g. \"" + std::string(number) + "s\")");
      }
      return fail("missing unit after \"" + std::string(number) + "\"");
    }
    const size_t unit_start = i;
    while (i < n && IsLetter(text[i])) ++i;
    std::string_view unit_name = text.substr(unit_start, i - unit_start);
    if (unit_name.empty()) {
      return fail("unexpected character \"" + std::string(1, text[i]) + "\"");
    }
    const int unit = FindUnit(unit_name);
    if (unit < 0) return fail("unknown unit \"" + std::string(unit_name) + "\"");
    if (unit == previous_unit) {
      return fail("unit \"" + std::string(unit_name) + "\" appears twice");
    }
    if (unit < previous_unit) {
      return fail("unit \"" + std::string(unit_name) + "\" after \"" +
                  std::string(kUnits[previous_unit].name) +
                  "\": units must go from largest to smallest (y w d h m s ms)");
    }
    previous_unit = unit;

    int64_t amount = 0;
    for (char c : number) {
      if (__builtin_mul_overflow(amount, int64_t{10}, &amount) ||
          __builtin_add_overflow(amount, int64_t{c - '0'}, &amount)) {
        return fail("too large");
      }
    }
    int64_t ms = 0;
    if (__builtin_mul_overflow(amount, kUnits[unit].millis, &ms) ||
        __builtin_add_overflow(total, ms, &total)) {
      return fail("too large");
    }
  }
  *out = Millis(total);
  return true;
}

std::string FormatDuration(Millis d) {
  int64_t count = d.count();
  if (count == 0) return "0s";
  std::string out;
  uint64_t left = static_cast<uint64_t>(count);
  if (count < 0) {
    out.push_back('-');
    left = 0 - left;  // well defined for INT64_MIN too.
  }
  for (const Unit& unit : kUnits) {
    const uint64_t unit_ms = static_cast<uint64_t>(unit.millis);
    if (left >= unit_ms) {
      out += std::to_string(left / unit_ms);
      out += unit.name;
      left %= unit_ms;
    }
  }
  return out;
}

std::string FormatSeconds(double seconds) {
  if (std::isnan(seconds)) return "NaN";
  if (seconds < 0) return "-" + FormatSeconds(-seconds);
  if (std::isinf(seconds)) return "+Inf";
  if (seconds == 0) return "0s";
  // Each branch rounds first and checks the bound after rounding, so that
  // 0.99996 becomes "1s" rather than "1000ms".
  const double micros = std::round(seconds * 1e6);
  if (micros < 1000) return std::to_string(static_cast<long long>(micros)) + "us";
  const double tenth_ms = std::round(seconds * 1e4);
  if (tenth_ms < 10000) return FormatTenths(static_cast<long long>(tenth_ms)) + "ms";
  const double tenth_s = std::round(seconds * 10);
  if (tenth_s < 600) return FormatTenths(static_cast<long long>(tenth_s)) + "s";
  const double whole = std::round(seconds);
  if (whole >= 9e15) {  // beyond int64 milliseconds: no point in "292471208y".
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3gs", seconds);
    return buf;
  }
  return FormatDuration(Millis(static_cast<int64_t>(whole) * 1000));
}

}  // namespace connwatch
