#pragma once
// What the files implementing Target (net/target.cc, target_connect.cc,
// target_tls.cc, target_heartbeat.cc, target_snapshot.cc) share and nobody
// else needs.

#include <cstdint>

#include "core/config.h"

namespace connwatch::target_detail {

// The kind of a target's last event, as Target keeps it in one byte.
inline constexpr const char* kEventKinds[] = {"connect", "connect_failure", "disconnect"};
enum : uint8_t { kKindConnect = 0, kKindConnectFailure = 1, kKindDisconnect = 2 };

inline double Seconds(Millis d) { return static_cast<double>(d.count()) / 1000.0; }

}  // namespace connwatch::target_detail
