// libFuzzer target: DecodeState, the reading of a state file
// (--storage.path) that a disk error, a crash of the file system or a hand
// may have damaged. Checks that it never crashes, that a refused file says
// why, and that what it accepts is safe to restore: every history loads and
// moves to another clock and reports finite windows, every idle cut-off
// restores, and the events go into a ring.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/event_log.h"
#include "core/state_file.h"
#include "known_bugs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (connwatch::fuzz::HitsKnownBug(text)) return 0;
  connwatch::StoredState state;
  std::string error;
  if (!connwatch::DecodeState(text, &state, &error)) {
    if (error.empty()) std::abort();
    return 0;
  }
  for (const connwatch::StoredTarget& t : state.targets) {
    connwatch::UpHistory h;
    if (!connwatch::UpHistory::Load(t.history, &h)) std::abort();  // DecodeState checked it
    const double delta = state.mono_to_unix - 1.7e9;
    connwatch::UpHistory moved = h.Rebased(delta);
    moved.Unobserved(t.history_at + delta, t.history_at + delta + 60);
    const connwatch::UpReport r = moved.Report(t.history_at + delta + 120);
    if (!std::isfinite(r.up_1h) || !std::isfinite(r.observed_1d) || r.up_1h < 0) std::abort();
    if (t.has_idle_cutoff) {
      connwatch::IdleCutoff cutoff;
      if (!connwatch::IdleCutoff::Restore(t.idle_ages, t.idle_count, t.idle_next,
                                          t.idle_cutoff_seconds, &cutoff)) {
        std::abort();
      }
      cutoff.Add(300);
    }
  }
  connwatch::EventLog log(nullptr, connwatch::LogFormat::kLogfmt, connwatch::LogLevel::kInfo);
  if (!log.Restore(state.events, state.next_seq)) std::abort();  // seqs increase: checked
  return 0;
}
