#pragma once
// Inputs that reach a daemon bug already reported, skipped by the fuzzers so
// that a run can look for new ones. Each entry names its reproducer test and
// goes away with its fix. Build with -DCONNWATCH_FUZZ_KNOWN_BUGS to stop
// skipping them (to check a fix).
//
// None at the moment. The last one, a signed overflow of __int128 in
// FractionToMillis (daemon/duration.cc) for "114368547783685475.143685477836854775m",
// found by duration_fuzzer and reproduced by BadInput.DurationFractionOverflow,
// was fixed in 3f9ea45.

#include <string_view>

namespace connwatch::fuzz {

inline bool HitsKnownBug(std::string_view /*text*/) { return false; }

}  // namespace connwatch::fuzz
