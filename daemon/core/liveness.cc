#include "core/liveness.h"

#include <netinet/tcp.h>

#include <cerrno>

namespace connwatch {

Reason ClassifyConnectError(int err) {
  switch (err) {
    case ECONNREFUSED:
      return Reason::kRefused;
    case ETIMEDOUT:
      return Reason::kTimeout;
    case EHOSTUNREACH:
    case EHOSTDOWN:
      return Reason::kHostUnreachable;
    case ENETUNREACH:
    case ENETDOWN:
      return Reason::kNetUnreachable;
    // Our side ran out of something or refused to act: not the target's fault.
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
    case EADDRINUSE:
    case EAFNOSUPPORT:
    case EPERM:  // a local firewall rule rejected the connect
    case EACCES:
      return Reason::kLocalError;
    default:
      return Reason::kError;
  }
}

namespace {
// Evidence that data was outstanding: the retransmission timer, not the
// keepalive timer, ran out. NOTE: tcp_write_err() purges the write queue
// before the socket reports ETIMEDOUT, so tcpi_unacked reads 0 at death while
// tcpi_retransmits and tcpi_probes survive; the last periodic sample still
// holds the unacked count.
// NOTE: a peer that never reads closes its window: nothing is in flight
// (unacked 0, no retransmits) and zero-window probes count in tcpi_probes,
// but data waits in the send queue (tcpi_notsent_bytes > 0, which survives
// the abort). Keepalive never runs while data is queued, so that is always
// TCP_USER_TIMEOUT. Measured on 6.x in the fault suite (tests/system).
bool DataWasOutstanding(const TcpSample& at_death, const TcpSample& last_check) {
  if ((at_death.valid && at_death.notsent_bytes > 0) ||
      (last_check.valid && last_check.notsent_bytes > 0)) {
    return true;
  }
  if (at_death.valid) {
    if (at_death.retransmits > 0 || at_death.unacked > 0) return true;
    if (at_death.probes > 0) return false;  // keepalive probes were out
  }
  return last_check.valid && (last_check.unacked > 0 || last_check.retransmits > 0) &&
         last_check.probes == 0;
}
}  // namespace

Reason ClassifyDisconnectError(int err, const TcpSample& at_death, const TcpSample& last_check) {
  switch (err) {
    case ECONNRESET:
    case EPIPE:  // we wrote after the peer's FIN and it answered RST
      return Reason::kPeerReset;
    case ETIMEDOUT:
      return DataWasOutstanding(at_death, last_check) ? Reason::kUserTimeout
                                                      : Reason::kKeepaliveTimeout;
    case EHOSTUNREACH:
    case EHOSTDOWN:
      return Reason::kHostUnreachable;
    case ENETUNREACH:
    case ENETDOWN:
      return Reason::kNetUnreachable;
    case ENOBUFS:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return Reason::kLocalError;
    default:
      return Reason::kError;
  }
}

bool IsEstablished(const TcpSample& info) { return info.valid && info.state == TCP_ESTABLISHED; }

bool IsPeerClosed(const TcpSample& info) { return info.valid && info.state == TCP_CLOSE_WAIT; }

Verdict ClassifyRecv(ssize_t result, int err, const TcpSample& at_death,
                     const TcpSample& last_check) {
  if (result > 0) return Verdict::Alive();
  if (result == 0) return Verdict::Dead(Reason::kPeerClosed, 0);
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return Verdict::Alive();
  return Verdict::Dead(ClassifyDisconnectError(err, at_death, last_check), err);
}

Verdict ClassifyAnomaly(const TcpSample& info, int pending_error, const TcpSample& last_check) {
  if (pending_error != 0) {
    return Verdict::Dead(ClassifyDisconnectError(pending_error, info, last_check), pending_error);
  }
  if (!info.valid) return Verdict::Dead(Reason::kError, 0);
  switch (info.state) {
    case TCP_ESTABLISHED:
      return Verdict::Alive();
    case TCP_CLOSE_WAIT:
    case TCP_LAST_ACK:
      return Verdict::Dead(Reason::kPeerClosed, 0);
    default:
      // CLOSE without a pending error: the error was already consumed or the
      // connection ended some way the kernel did not report. Say so honestly.
      return Verdict::Dead(Reason::kError, 0);
  }
}

}  // namespace connwatch
