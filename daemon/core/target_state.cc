#include "core/target_state.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace connwatch {

std::string_view TargetEventName(TargetEvent event) {
  switch (event) {
    case TargetEvent::kAttemptDue: return "attempt_due";
    case TargetEvent::kResolved: return "resolved";
    case TargetEvent::kResolveFailed: return "resolve_failed";
    case TargetEvent::kConnected: return "connected";
    case TargetEvent::kConnectFailed: return "connect_failed";
    case TargetEvent::kDied: return "died";
  }
  return "unknown";
}

bool TryNextState(TargetState state, TargetEvent event, TargetState* next) {
  switch (state) {
    case TargetState::kBackoff:
      if (event == TargetEvent::kAttemptDue) return *next = TargetState::kResolving, true;
      break;
    case TargetState::kResolving:
      if (event == TargetEvent::kResolved) return *next = TargetState::kConnecting, true;
      if (event == TargetEvent::kResolveFailed) return *next = TargetState::kBackoff, true;
      break;
    case TargetState::kConnecting:
      if (event == TargetEvent::kConnected) return *next = TargetState::kUp, true;
      if (event == TargetEvent::kConnectFailed) return *next = TargetState::kBackoff, true;
      break;
    case TargetState::kUp:
      if (event == TargetEvent::kDied) return *next = TargetState::kBackoff, true;
      break;
    case TargetState::kCount:
      break;
  }
  return false;
}

TargetState NextState(TargetState state, TargetEvent event) {
  TargetState next;
  if (!TryNextState(state, event, &next)) {
    std::fprintf(stderr, "connwatch: invalid transition: state=%s event=%s\n",
                 std::string(StateName(state)).c_str(), std::string(TargetEventName(event)).c_str());
    std::abort();
  }
  return next;
}

}  // namespace connwatch
