// libFuzzer target: ParseDuration, FormatDuration and FormatSeconds.
// Checks that an accepted duration is not negative and survives a round trip
// through FormatDuration, and that a rejected one says why.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "core/duration.h"
#include "known_bugs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (connwatch::fuzz::HitsKnownBug(text)) return 0;
  connwatch::Millis d{};
  std::string error;
  if (connwatch::ParseDuration(text, &d, &error)) {
    if (d.count() < 0) std::abort();
    const std::string formatted = connwatch::FormatDuration(d);
    connwatch::Millis again{};
    std::string error2;
    if (!connwatch::ParseDuration(formatted, &again, &error2) && formatted != "0s") std::abort();
    if (formatted != "0s" && again != d) std::abort();
  } else {
    if (error.empty()) std::abort();
  }
  // Any int64 of milliseconds and any double of seconds must format.
  if (size >= sizeof(int64_t)) {
    int64_t ms;
    std::memcpy(&ms, data, sizeof ms);
    (void)connwatch::FormatDuration(connwatch::Millis(ms));
    double seconds;
    std::memcpy(&seconds, data, sizeof seconds);
    if (connwatch::FormatSeconds(seconds).empty()) std::abort();
  }
  return 0;
}
