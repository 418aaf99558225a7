#pragma once
// What a socket's state means: pure functions from what the kernel said (a
// recv or send result, an errno, SO_ERROR, TCP_INFO) to a verdict and a
// Reason. The rules follow shared/docs/tcp-liveness.md; no function here makes
// a system call, so every rule is unit-tested with synthetic kernel answers
// (tests/liveness_test.cc), and tests/kernel_truth_test.cc checks on real
// sockets that the kernel still answers what these rules assume.
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

// An error (from recv/send/SO_ERROR) on an established connection that ended.
// ETIMEDOUT alone does not say which timer fired: `at_death` (TCP_INFO read
// right after the error) and `last_check` (the last periodic sample) tell
// keepalive probes apart from unacknowledged data.
Reason ClassifyDisconnectError(int err, const TcpSample& at_death, const TcpSample& last_check);

// True for the errno values an ICMP error becomes (net/host/port unreachable,
// admin prohibited, time exceeded, parameter problem; ICMPv6 likewise). On an
// established connection the kernel treats them as soft: it keeps the
// connection and reports them at once only with IP_RECVERR (else they are
// stored and reported when a timer kills the connection).
bool IsIcmpError(int err);

// True when tcpi_state says the connection is established and nothing more
// needs to be asked.
bool IsEstablished(const TcpSample& info);
// CLOSE_WAIT: the peer sent FIN, even when unread data hides it from recv.
bool IsPeerClosed(const TcpSample& info);

// The verdict on a held connection after a wake-up or a probe.
struct Verdict {
  enum class Kind : uint8_t {
    kAlive,      // nothing wrong (no data, or data that was drained).
    kData,       // alive as far as this call can tell: data waits unread, and a
                 // FIN may hide behind it (only tcpi_state can say).
    kIcmpError,  // an ICMP error was reported and the connection is still
                 // established (soft error): `reason` and `err` say which.
    kDead,       // the connection is over; `reason` and `err` say why.
  };
  Kind kind = Kind::kAlive;
  Reason reason = Reason::kError;
  int err = 0;  // the errno behind the reason; 0 for a FIN.
  static Verdict Alive() { return {}; }
  static Verdict Data() { return {Kind::kData, Reason::kError, 0}; }
  static Verdict Dead(Reason r, int e) { return {Kind::kDead, r, e}; }
  static Verdict Icmp(Reason r, int e) { return {Kind::kIcmpError, r, e}; }
  bool dead() const { return kind == Kind::kDead; }
  bool icmp() const { return kind == Kind::kIcmpError; }
};

// An errno reported by a call on a held socket (recv, send, SO_ERROR), with
// `now` the TCP_INFO read after it. An ICMP error while tcpi_state is still
// ESTABLISHED is soft (kIcmpError); anything else ended the connection.
Verdict ClassifyHeldError(int err, const TcpSample& now, const TcpSample& last_check);

// The event-driven read: recv(fd, buf, n > 0, MSG_DONTWAIT) on a readable
// socket. `result` is its return value, `err` the errno when (and only when)
// result == -1.
//   > 0  data (alive; the caller drains or matches it)
//   == 0 end of file: the peer sent FIN
//   -1 EAGAIN/EWOULDBLOCK/EINTR: alive, nothing pending
//   -1 other: ClassifyHeldError
Verdict ClassifyRecv(ssize_t result, int err, const TcpSample& now, const TcpSample& last_check);

// The `peek` probe: recv(fd, b, 1, MSG_PEEK | MSG_DONTWAIT). As ClassifyRecv,
// except that 1 is kData: the byte stays unread and a FIN may follow it.
Verdict ClassifyPeek(ssize_t result, int err, const TcpSample& now, const TcpSample& last_check);

// The `zero_send` probe: send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT). 0 is
// alive (a zero-length send sends nothing: it cannot see a FIN or a silent
// peer); -1 reports a pending error (ECONNRESET once, then EPIPE) or our own
// shutdown (EPIPE): ClassifyHeldError.
Verdict ClassifyZeroSend(ssize_t result, int err, const TcpSample& now,
                         const TcpSample& last_check);

// The `so_error` probe: `pending` is what getsockopt(SO_ERROR) returned (0:
// none); `now` TCP_INFO read after it when pending != 0.
Verdict ClassifySoError(int pending, const TcpSample& now, const TcpSample& last_check);

// The `tcp_info` probe, and the follow-up when tcpi_state is not ESTABLISHED:
// decide from tcpi_state and the pending error (SO_ERROR, 0 if none).
//   ESTABLISHED: alive. CLOSE_WAIT / LAST_ACK: peer_closed (a FIN, even one
//   hidden behind unread data). FIN_WAIT1/2, CLOSING: we shut our side down
//   (local_error). CLOSE: the pending error says why (error if none).
Verdict ClassifyAnomaly(const TcpSample& info, int pending_error, const TcpSample& last_check);

}  // namespace connwatch
