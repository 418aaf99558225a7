#pragma once
// Inputs that reach a daemon bug already reported, skipped by the fuzzers so
// that a run can look for new ones. Each entry names its reproducer test.
// Build with -DCONNWATCH_FUZZ_KNOWN_BUGS to stop skipping them (to check a fix).

#include <string_view>

namespace connwatch::fuzz {

// None open: the fraction overflow in daemon/duration.cc's hint is fixed
// (BadInput.DurationFractionOverflow). A new known bug goes here with its
// reproducer test, so fuzz runs can keep looking for others meanwhile.
inline bool HitsKnownBug(std::string_view /*text*/) { return false; }

}  // namespace connwatch::fuzz
