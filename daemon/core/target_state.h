#pragma once
// The target state machine as one pure function: next state from (state,
// event). Every transition of a Target goes through NextState; an event that
// makes no sense in a state is a broken invariant and aborts.

#include "core/reason.h"

namespace connwatch {

enum class TargetEvent : uint8_t {
  kAttemptDue,     // backoff (or start-up jitter) expired: resolve.
  kResolved,       // addresses known: connect.
  kResolveFailed,  // dns_error: back off.
  kConnected,      // the handshake completed: up.
  kConnectFailed,  // refused/timeout/unreachable/local...: back off.
  kDied,           // the held connection ended (any disconnect reason): back off.
};
std::string_view TargetEventName(TargetEvent event);

// Returns false (and leaves *next alone) for an event not allowed in `state`.
bool TryNextState(TargetState state, TargetEvent event, TargetState* next);
// Same, aborting with a message on an invalid transition.
TargetState NextState(TargetState state, TargetEvent event);

}  // namespace connwatch
