#pragma once
// Prometheus-style durations ("250ms", "5s", "1m30s", "2h"): units y w d h m s ms,
// each at most once, in decreasing order, integer amounts. Pure functions.

#include <chrono>
#include <string>
#include <string_view>

namespace connwatch {

using Millis = std::chrono::milliseconds;

// Parses `text` into `out`. On failure returns false and sets `error` to a
// short description such as `invalid duration "5x": unknown unit "x"`.
bool ParseDuration(std::string_view text, Millis* out, std::string* error);

// Formats the way ParseDuration reads: 90500ms -> "1m30s500ms", 0 -> "0s".
std::string FormatDuration(Millis d);

// Human form for logs with sub-millisecond precision: 0.00042 -> "420us",
// 1.2 -> "1.2s", 10921 -> "3h2m1s".
std::string FormatSeconds(double seconds);

}  // namespace connwatch
