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

// Our side sent its FIN (shutdown(SHUT_WR) or close by something in this
// process): the states between our FIN and the end.
bool WeShutDown(const TcpSample& s) {
  return s.valid &&
         (s.state == TCP_FIN_WAIT1 || s.state == TCP_FIN_WAIT2 || s.state == TCP_CLOSING);
}
}  // namespace

Reason ClassifyDisconnectError(int err, const TcpSample& at_death, const TcpSample& last_check) {
  switch (err) {
    case ECONNRESET:
      return Reason::kPeerReset;
    case EPIPE:
      // NOTE: EPIPE is a send on a connection that can no longer carry data:
      // either the peer answered our write after its FIN with RST (state
      // CLOSE; kernel sets sk_err EPIPE in CLOSE_WAIT), or our own side was
      // shut down (FIN_WAIT*). Only tcpi_state tells them apart.
      return WeShutDown(at_death) ? Reason::kLocalError : Reason::kPeerReset;
    case ECONNREFUSED:
      // On an established connection: an ICMP port unreachable (what a
      // firewall's REJECT rule sends), stored or, with IP_RECVERR, at once.
      return Reason::kRefused;
    case ETIMEDOUT:
      return DataWasOutstanding(at_death, last_check) ? Reason::kUserTimeout
                                                      : Reason::kKeepaliveTimeout;
    case EHOSTUNREACH:
    case EHOSTDOWN:
    case ENONET:
    // NOTE: ICMPv6 administratively prohibited (and policy fail, reject
    // route) becomes EACCES (icmpv6_err_convert); ICMPv4's becomes
    // EHOSTUNREACH. Both are a host made unreachable by a filter on the way.
    case EACCES:
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

bool IsIcmpError(int err) {
  switch (err) {
    case ENETUNREACH:   // ICMP net unreachable / unknown, ICMPv6 no route
    case EHOSTUNREACH:  // host unreachable, admin prohibited, time exceeded
    case EHOSTDOWN:     // host unknown
    case ENONET:        // host isolated
    case ECONNREFUSED:  // port unreachable
    case ENOPROTOOPT:   // protocol unreachable
    case EOPNOTSUPP:    // source route failed
    case EPROTO:        // parameter problem
    case EACCES:        // ICMPv6 administratively prohibited
      return true;
    default:
      return false;
  }
}

bool IsEstablished(const TcpSample& info) { return info.valid && info.state == TCP_ESTABLISHED; }

bool IsPeerClosed(const TcpSample& info) { return info.valid && info.state == TCP_CLOSE_WAIT; }

namespace {
bool Inconclusive(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }
}  // namespace

Verdict ClassifyHeldError(int err, const TcpSample& now, const TcpSample& last_check) {
  // NOTE: the kernel never tears an established connection down for an ICMP
  // error (tcp_v4_err / tcp_v6_err: "If we've already connected we will keep
  // trying until we time out"); with IP_RECVERR it sets sk_err and wakes the
  // socket, and the state stays ESTABLISHED. A timer that kills the
  // connection moves it to CLOSE first, so an ICMP errno with state CLOSE is
  // a death.
  if (IsIcmpError(err) && IsEstablished(now)) {
    return Verdict::Icmp(ClassifyDisconnectError(err, now, last_check), err);
  }
  return Verdict::Dead(ClassifyDisconnectError(err, now, last_check), err);
}

Verdict ClassifyRecv(ssize_t result, int err, const TcpSample& now, const TcpSample& last_check) {
  if (result > 0) return Verdict::Alive();
  if (result == 0) return Verdict::Dead(Reason::kPeerClosed, 0);
  if (Inconclusive(err)) return Verdict::Alive();
  return ClassifyHeldError(err, now, last_check);
}

Verdict ClassifyPeek(ssize_t result, int err, const TcpSample& now, const TcpSample& last_check) {
  if (result > 0) return Verdict::Data();
  return ClassifyRecv(result, err, now, last_check);
}

Verdict ClassifyZeroSend(ssize_t result, int err, const TcpSample& now,
                         const TcpSample& last_check) {
  if (result >= 0 || Inconclusive(err)) return Verdict::Alive();
  return ClassifyHeldError(err, now, last_check);
}

Verdict ClassifySoError(int pending, const TcpSample& now, const TcpSample& last_check) {
  if (pending == 0) return Verdict::Alive();
  return ClassifyHeldError(pending, now, last_check);
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
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
    case TCP_CLOSING:
      return Verdict::Dead(Reason::kLocalError, 0);
    default:
      // CLOSE without a pending error: the error was already consumed or the
      // connection ended some way the kernel did not report. Say so honestly.
      return Verdict::Dead(Reason::kError, 0);
  }
}

}  // namespace connwatch
