#pragma once
// The state file's contents (docs/ARCHITECTURE.md, "Memory across
// restarts"): what connwatchd keeps of each target and of the event ring so
// that a restart does not wipe the story, and its JSON text. Pure: no files,
// no clocks (times passed in); monitor/state_store.h does the I/O.
//
// The text is one JSON object with "format": "connwatch-state" and
// "version": kStateVersion. A file of another format or version, or with any
// field missing or of the wrong type, is refused as a whole: a state file is
// a cache of the story, never worth a wrong restore.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_log.h"
#include "core/idle_cutoff.h"
#include "core/probe.h"
#include "core/reason.h"
#include "core/snapshot.h"
#include "core/tls_peer.h"
#include "core/up_history.h"

namespace connwatch {

inline constexpr int kStateVersion = 1;

// One target as the state file holds it: what its metrics and API show that
// a restart would otherwise reset.
struct StoredTarget {
  std::string name;
  std::string address;  // as configured: restored only while name and address match
  // addresses: all and srv: the endpoint ("ip:port") this entry is of;
  // empty for a target with one connection (and an endpoint set's
  // placeholder, saved before the name gave any address).
  std::string endpoint;
  bool up = false;      // up when saved
  double last_change_unix = 0;
  // The last event (connect, connect failure or disconnect).
  bool has_last_event = false;
  std::string last_event_kind;
  Reason last_reason = Reason::kError;
  int last_errno = 0;
  double last_event_unix = 0;
  bool has_last_detected_by = false;
  Detector last_detected_by = Detector::kRead;
  // The last failure, even when the target was up again (empty kind: none).
  std::string last_failure_kind;
  Reason last_failure_reason = Reason::kError;
  int last_failure_errno = 0;
  double last_failure_unix = 0;

  uint64_t connects = 0;
  std::array<uint64_t, kReasonCount> connect_failures{};
  std::array<uint64_t, kReasonCount> disconnects{};
  std::array<uint64_t, kReasonCount> icmp_errors{};
  uint64_t dns_failures = 0;
  uint64_t retransmits = 0;
  bool has_rtt = false;
  double rtt_seconds = 0;
  std::shared_ptr<const TlsPeerInfo> tls;  // null: none
  // Down as of history_at (a history up when saved is booked up to then),
  // in the monotonic base of the saving process.
  UpHistory::Saved history;
  double history_at = 0;
  bool has_idle_cutoff = false;
  std::array<double, IdleCutoff::kKept> idle_ages{};
  size_t idle_count = 0, idle_next = 0;
  double idle_cutoff_seconds = 0;
};

struct StoredState {
  double saved_unix = 0;
  // Wall minus monotonic clock of the saving process: a monotonic time t
  // of it is the wall time t + mono_to_unix.
  double mono_to_unix = 0;
  std::vector<StoredTarget> targets;
  std::vector<Event> events;  // the ring, oldest first
  uint64_t next_seq = 1;
};

// The file's text for `snapshot` (every target of it) and the event ring
// (oldest first; `next_seq` the seq of the next event), saved at `unix_now`
// with the clocks' difference `mono_to_unix`.
std::string EncodeState(const Snapshot& snapshot, const std::vector<Event>& events,
                        uint64_t next_seq, double unix_now, double mono_to_unix);

// Parses a state file; false with *error in words for anything but a whole,
// well-formed file of this format and version.
bool DecodeState(std::string_view text, StoredState* out, std::string* error);

}  // namespace connwatch
