#include "core/backoff.h"

#include <algorithm>
#include <cmath>

namespace connwatch {

Millis BackoffCeiling(const BackoffConfig& config, uint32_t attempt) {
  const int64_t initial = std::max<int64_t>(config.initial.count(), 1);
  const int64_t max = std::max<int64_t>(config.max.count(), initial);
  // Shift only while it cannot overflow or pass max.
  int64_t ceiling = initial;
  for (uint32_t i = 0; i < attempt && ceiling < max; ++i) ceiling *= 2;
  return Millis(std::min(ceiling, max));
}

Millis BackoffDelay(const BackoffConfig& config, uint32_t attempt, double u01) {
  u01 = std::clamp(u01, 0.0, 1.0);
  const auto ceiling = BackoffCeiling(config, attempt).count();
  return Millis(static_cast<int64_t>(std::floor(u01 * static_cast<double>(ceiling))));
}

}  // namespace connwatch
