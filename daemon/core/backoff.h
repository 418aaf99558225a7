#pragma once
// Exponential backoff with full jitter: attempt n waits U[0, min(max, initial * 2^n)].
// Pure; the caller supplies the uniform random number so tests can pin it.

#include "core/config.h"

namespace connwatch {

// The upper bound of the wait before attempt `attempt` (0-based).
Millis BackoffCeiling(const BackoffConfig& config, uint32_t attempt);
// The wait itself for a uniform `u01` in [0, 1).
Millis BackoffDelay(const BackoffConfig& config, uint32_t attempt, double u01);

}  // namespace connwatch
