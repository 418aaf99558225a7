#pragma once
// What a socket's state means: pure functions from what the kernel said (a
// recv result, an errno, SO_ERROR, TCP_INFO) to a verdict and a Reason. The
// rules follow shared/docs/tcp-liveness.md; no function here makes a system
// call, so every rule is unit-tested with synthetic kernel answers.
//
// NOTE: errno is meaningful only after a call that returned -1. Every function
// here takes the errno together with the result it belongs to and ignores it
// when the call succeeded.

#include <sys/types.h>

#include "core/reason.h"
#include "core/tcp_sample.h"

namespace connwatch {

// A failed connect: the errno from connect(), or the SO_ERROR read after the
// socket became writable.
Reason ClassifyConnectError(int err);

// An error (from recv/send/SO_ERROR) on an established connection. ETIMEDOUT
// alone does not say which timer fired: `at_death` (TCP_INFO read right after
// the error) and `last_check` (the last periodic sample) tell keepalive probes
// apart from unacknowledged data.
Reason ClassifyDisconnectError(int err, const TcpSample& at_death, const TcpSample& last_check);

// True when tcpi_state says the connection is established and nothing more
// needs to be asked. The periodic check of a healthy connection stops here.
bool IsEstablished(const TcpSample& info);
// CLOSE_WAIT: the peer sent FIN, even when unread data hides it from recv.
bool IsPeerClosed(const TcpSample& info);

// The verdict on a held connection after a wake-up or an anomalous check.
struct Verdict {
  enum class Kind : uint8_t {
    kAlive,  // nothing wrong (no data, or data that was drained).
    kDead,   // the connection is over; `reason` and `err` say why.
  };
  Kind kind = Kind::kAlive;
  Reason reason = Reason::kError;
  int err = 0;  // the errno behind the reason; 0 for a FIN.
  static Verdict Alive() { return {}; }
  static Verdict Dead(Reason r, int e) { return {Kind::kDead, r, e}; }
  bool dead() const { return kind == Kind::kDead; }
};

// One recv() on a held connection: `result` is its return value, `err` the
// errno when (and only when) result == -1.
//   > 0  data (alive; the caller drains or matches it)
//   == 0 end of file: the peer sent FIN
//   -1 EAGAIN/EWOULDBLOCK/EINTR: alive, nothing pending
//   -1 other: dead, classified with ClassifyDisconnectError
Verdict ClassifyRecv(ssize_t result, int err, const TcpSample& at_death,
                     const TcpSample& last_check);

// The state is not ESTABLISHED, but recv reported nothing conclusive (data or
// EAGAIN): decide from tcpi_state and the pending error (SO_ERROR, 0 if none).
Verdict ClassifyAnomaly(const TcpSample& info, int pending_error, const TcpSample& last_check);

}  // namespace connwatch
