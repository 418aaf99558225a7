// Reason classification from what the kernel said, one rule per test, each
// row of shared/docs/tcp-liveness.md's truth table.

#include "core/liveness.h"

#include <gtest/gtest.h>
#include <netinet/tcp.h>

#include <cerrno>

namespace connwatch {
namespace {

TcpSample Sample(uint8_t state, uint32_t unacked = 0, uint8_t retransmits = 0, uint8_t probes = 0) {
  TcpSample s;
  s.valid = true;
  s.state = state;
  s.unacked = unacked;
  s.retransmits = retransmits;
  s.probes = probes;
  return s;
}

const TcpSample kNone;

TEST(LivenessConnect, MapsErrnoToReason) {
  struct Row {
    int err;
    Reason reason;
  } rows[] = {
      {ECONNREFUSED, Reason::kRefused},       {ETIMEDOUT, Reason::kTimeout},
      {EHOSTUNREACH, Reason::kHostUnreachable}, {EHOSTDOWN, Reason::kHostUnreachable},
      {ENETUNREACH, Reason::kNetUnreachable}, {ENETDOWN, Reason::kNetUnreachable},
      {EMFILE, Reason::kLocalError},          {ENFILE, Reason::kLocalError},
      {EADDRNOTAVAIL, Reason::kLocalError},   {ENOBUFS, Reason::kLocalError},
      {EPERM, Reason::kLocalError},           {EPROTO, Reason::kError},
      {EIO, Reason::kError},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(ReasonName(ClassifyConnectError(row.err)), ReasonName(row.reason))
        << "errno " << ErrnoName(row.err);
  }
}

TEST(LivenessRecv, DataIsAlive) {
  EXPECT_FALSE(ClassifyRecv(1, 0, kNone, kNone).dead());
  // A stale errno after a successful call means nothing (the errno myth).
  EXPECT_FALSE(ClassifyRecv(10, ECONNRESET, kNone, kNone).dead());
}

TEST(LivenessRecv, ZeroIsPeerFinWhateverErrnoSays) {
  for (int stale : {0, EAGAIN, EINPROGRESS, ECONNRESET}) {
    Verdict v = ClassifyRecv(0, stale, kNone, kNone);
    ASSERT_TRUE(v.dead());
    EXPECT_EQ(v.reason, Reason::kPeerClosed) << "stale errno " << stale;
    EXPECT_EQ(v.err, 0);
  }
}

TEST(LivenessRecv, EagainMeansAliveNotClosed) {
  EXPECT_FALSE(ClassifyRecv(-1, EAGAIN, kNone, kNone).dead());
  EXPECT_FALSE(ClassifyRecv(-1, EWOULDBLOCK, kNone, kNone).dead());
  EXPECT_FALSE(ClassifyRecv(-1, EINTR, kNone, kNone).dead());
}

TEST(LivenessRecv, ResetAndPipeArePeerReset) {
  Verdict v = ClassifyRecv(-1, ECONNRESET, Sample(TCP_CLOSE), kNone);
  ASSERT_TRUE(v.dead());
  EXPECT_EQ(v.reason, Reason::kPeerReset);
  EXPECT_EQ(v.err, ECONNRESET);
  EXPECT_EQ(ClassifyRecv(-1, EPIPE, kNone, kNone).reason, Reason::kPeerReset);
}

TEST(LivenessTimeout, ProbesOutNothingUnackedIsKeepalive) {
  Verdict v = ClassifyRecv(-1, ETIMEDOUT, Sample(TCP_CLOSE, 0, 0, 3), kNone);
  EXPECT_EQ(v.reason, Reason::kKeepaliveTimeout);
}

TEST(LivenessTimeout, RetransmittingIsUserTimeout) {
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, Sample(TCP_CLOSE, 0, 5, 0), kNone).reason,
            Reason::kUserTimeout);
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, Sample(TCP_CLOSE, 2, 0, 0), kNone).reason,
            Reason::kUserTimeout);
}

TEST(LivenessTimeout, FallsBackToLastCheckWhenDeathSampleIsPurged) {
  // The kernel purged the write queue: at death nothing says which timer fired.
  TcpSample purged = Sample(TCP_CLOSE);
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, purged, Sample(TCP_ESTABLISHED, 3)).reason,
            Reason::kUserTimeout);
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, purged, Sample(TCP_ESTABLISHED, 0, 0, 2)).reason,
            Reason::kKeepaliveTimeout);
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, purged, kNone).reason, Reason::kKeepaliveTimeout);
}

TEST(LivenessTimeout, ProbesAtDeathWinOverStaleUnackedSample) {
  // Keepalive probes only run with nothing in flight: probes at death mean
  // the keepalive timer fired even if an older sample saw unacked data.
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, Sample(TCP_CLOSE, 0, 0, 2), Sample(TCP_ESTABLISHED, 4))
                .reason,
            Reason::kKeepaliveTimeout);
}

TEST(LivenessTimeout, QueuedUnsentDataBehindAZeroWindowIsUserTimeout) {
  // A peer that never reads: window closed, nothing in flight, zero-window
  // probes counted in tcpi_probes, data waiting in the send queue.
  TcpSample at_death = Sample(TCP_CLOSE, 0, 0, 4);
  at_death.notsent_bytes = 35400;
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, at_death, kNone).reason, Reason::kUserTimeout);
  TcpSample last = Sample(TCP_ESTABLISHED, 0, 0, 2);
  last.notsent_bytes = 1000;
  EXPECT_EQ(ClassifyRecv(-1, ETIMEDOUT, Sample(TCP_CLOSE, 0, 0, 3), last).reason,
            Reason::kUserTimeout);
}

TEST(LivenessRecv, IcmpErrorsStoredUntilTimeout) {
  EXPECT_EQ(ClassifyRecv(-1, EHOSTUNREACH, kNone, kNone).reason, Reason::kHostUnreachable);
  EXPECT_EQ(ClassifyRecv(-1, ENETUNREACH, kNone, kNone).reason, Reason::kNetUnreachable);
  EXPECT_EQ(ClassifyRecv(-1, ENOBUFS, kNone, kNone).reason, Reason::kLocalError);
  EXPECT_EQ(ClassifyRecv(-1, EPROTO, kNone, kNone).reason, Reason::kError);
}

TEST(LivenessState, EstablishedAndCloseWait) {
  EXPECT_TRUE(IsEstablished(Sample(TCP_ESTABLISHED)));
  EXPECT_FALSE(IsEstablished(Sample(TCP_CLOSE_WAIT)));
  EXPECT_FALSE(IsEstablished(kNone));
  EXPECT_TRUE(IsPeerClosed(Sample(TCP_CLOSE_WAIT)));
  EXPECT_FALSE(IsPeerClosed(Sample(TCP_ESTABLISHED)));
}

TEST(LivenessAnomaly, CloseWaitIsPeerClosedEvenWithoutRecvZero) {
  Verdict v = ClassifyAnomaly(Sample(TCP_CLOSE_WAIT), 0, kNone);
  ASSERT_TRUE(v.dead());
  EXPECT_EQ(v.reason, Reason::kPeerClosed);
}

TEST(LivenessAnomaly, PendingErrorIsClassified) {
  Verdict v = ClassifyAnomaly(Sample(TCP_CLOSE), ECONNRESET, kNone);
  EXPECT_EQ(v.reason, Reason::kPeerReset);
  EXPECT_EQ(v.err, ECONNRESET);
  EXPECT_EQ(ClassifyAnomaly(Sample(TCP_ESTABLISHED), EHOSTUNREACH, kNone).reason,
            Reason::kHostUnreachable);
}

TEST(LivenessAnomaly, EstablishedWithoutErrorIsAlive) {
  EXPECT_FALSE(ClassifyAnomaly(Sample(TCP_ESTABLISHED), 0, kNone).dead());
}

TEST(LivenessAnomaly, ClosedWithoutErrorIsErrorNotAGuess) {
  Verdict v = ClassifyAnomaly(Sample(TCP_CLOSE), 0, kNone);
  ASSERT_TRUE(v.dead());
  EXPECT_EQ(v.reason, Reason::kError);
  EXPECT_EQ(ClassifyAnomaly(kNone, 0, kNone).reason, Reason::kError);
}

TEST(Reasons, NamesAreTheContract) {
  const char* expected[] = {"refused",        "timeout",           "host_unreachable",
                            "net_unreachable", "dns_error",         "local_error",
                            "error",          "peer_closed",       "peer_reset",
                            "keepalive_timeout", "user_timeout",    "heartbeat_timeout",
                            "heartbeat_mismatch", "tls_handshake",  "tls_verify",
                            "tls_alert"};
  ASSERT_EQ(std::size(expected), kReasonCount);
  for (size_t i = 0; i < kReasonCount; ++i) {
    EXPECT_EQ(ReasonName(static_cast<Reason>(i)), expected[i]);
    Reason parsed;
    ASSERT_TRUE(ParseReason(expected[i], &parsed));
    EXPECT_EQ(static_cast<size_t>(parsed), i);
  }
  Reason unused;
  EXPECT_FALSE(ParseReason("bogus", &unused));
}

TEST(Reasons, ConnectAndDisconnectSets) {
  for (Reason r : {Reason::kRefused, Reason::kTimeout, Reason::kHostUnreachable,
                   Reason::kNetUnreachable, Reason::kDnsError, Reason::kLocalError, Reason::kError,
                   Reason::kTlsHandshake, Reason::kTlsVerify}) {
    EXPECT_TRUE(IsConnectFailureReason(r)) << ReasonName(r);
  }
  EXPECT_FALSE(IsConnectFailureReason(Reason::kTlsAlert));
  EXPECT_TRUE(IsDisconnectReason(Reason::kTlsAlert));
  EXPECT_FALSE(IsDisconnectReason(Reason::kTlsVerify));
  for (Reason r : {Reason::kPeerClosed, Reason::kPeerReset, Reason::kKeepaliveTimeout,
                   Reason::kUserTimeout, Reason::kHostUnreachable, Reason::kNetUnreachable,
                   Reason::kHeartbeatTimeout, Reason::kHeartbeatMismatch, Reason::kLocalError,
                   Reason::kError, Reason::kRefused}) {
    EXPECT_TRUE(IsDisconnectReason(r)) << ReasonName(r);
  }
  EXPECT_FALSE(IsDisconnectReason(Reason::kTimeout));
  EXPECT_FALSE(IsDisconnectReason(Reason::kDnsError));
  EXPECT_FALSE(IsConnectFailureReason(Reason::kPeerReset));
  EXPECT_EQ(ErrnoName(ECONNRESET), "ECONNRESET");
  EXPECT_EQ(ErrnoName(0), "");
}

// An ICMP port unreachable on an established connection (a firewall's REJECT
// rule): stored, or with IP_RECVERR reported at once, as ECONNREFUSED.
TEST(LivenessDisconnect, RefusedIsItsOwnReason) {
  EXPECT_EQ(ReasonName(ClassifyDisconnectError(ECONNREFUSED, Sample(TCP_CLOSE), kNone)),
            "refused");
  Verdict v = ClassifyRecv(-1, ECONNREFUSED, Sample(TCP_CLOSE), kNone);
  ASSERT_TRUE(v.dead());
  EXPECT_EQ(v.reason, Reason::kRefused);
}

TEST(LivenessDisconnect, Icmpv6AdminProhibitedIsHostUnreachable) {
  EXPECT_EQ(ClassifyDisconnectError(EACCES, Sample(TCP_CLOSE), kNone), Reason::kHostUnreachable);
}

// EPIPE: a write after the peer's FIN answered by RST (CLOSE), or our own
// shutdown (FIN_WAIT*): only tcpi_state tells.
TEST(LivenessDisconnect, EpipeIsPeerResetUnlessWeShutDown) {
  EXPECT_EQ(ClassifyDisconnectError(EPIPE, Sample(TCP_CLOSE), kNone), Reason::kPeerReset);
  EXPECT_EQ(ClassifyDisconnectError(EPIPE, kNone, kNone), Reason::kPeerReset);
  for (uint8_t state : {TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING}) {
    EXPECT_EQ(ClassifyDisconnectError(EPIPE, Sample(state), kNone), Reason::kLocalError)
        << "state " << int{state};
  }
}

// IP_RECVERR: the kernel reports the ICMP error and keeps the connection.
TEST(LivenessHeldError, IcmpErrorOnEstablishedIsSoft) {
  for (int err : {EHOSTUNREACH, ENETUNREACH, ECONNREFUSED, EACCES, EHOSTDOWN}) {
    Verdict v = ClassifyHeldError(err, Sample(TCP_ESTABLISHED), kNone);
    EXPECT_TRUE(v.icmp()) << ErrnoName(err);
    EXPECT_FALSE(v.dead()) << ErrnoName(err);
    EXPECT_EQ(v.err, err);
  }
  EXPECT_EQ(ClassifyHeldError(EHOSTUNREACH, Sample(TCP_ESTABLISHED), kNone).reason,
            Reason::kHostUnreachable);
  EXPECT_EQ(ClassifyHeldError(ECONNREFUSED, Sample(TCP_ESTABLISHED), kNone).reason,
            Reason::kRefused);
  // The same errno once a timer closed the connection is its death.
  Verdict dead = ClassifyHeldError(EHOSTUNREACH, Sample(TCP_CLOSE), kNone);
  EXPECT_TRUE(dead.dead());
  EXPECT_EQ(dead.reason, Reason::kHostUnreachable);
  // Not an ICMP error: dead whatever the state says.
  EXPECT_TRUE(ClassifyHeldError(ECONNRESET, Sample(TCP_ESTABLISHED), kNone).dead());
  // Without TCP_INFO an ICMP errno cannot be called soft.
  EXPECT_TRUE(ClassifyHeldError(EHOSTUNREACH, kNone, kNone).dead());
}

TEST(LivenessPeek, OneByteIsDataNotAVerdict) {
  Verdict v = ClassifyPeek(1, 0, kNone, kNone);
  EXPECT_EQ(v.kind, Verdict::Kind::kData);
  EXPECT_FALSE(v.dead());
  // A stale errno after the successful peek is ignored.
  EXPECT_EQ(ClassifyPeek(1, ECONNRESET, kNone, kNone).kind, Verdict::Kind::kData);
}

TEST(LivenessPeek, EofEagainAndErrors) {
  for (int stale : {0, EAGAIN, EINPROGRESS}) {
    Verdict v = ClassifyPeek(0, stale, Sample(TCP_CLOSE_WAIT), kNone);
    ASSERT_TRUE(v.dead());
    EXPECT_EQ(v.reason, Reason::kPeerClosed);
  }
  EXPECT_EQ(ClassifyPeek(-1, EAGAIN, kNone, kNone).kind, Verdict::Kind::kAlive);
  EXPECT_EQ(ClassifyPeek(-1, EINTR, kNone, kNone).kind, Verdict::Kind::kAlive);
  EXPECT_EQ(ClassifyPeek(-1, ECONNRESET, Sample(TCP_CLOSE), kNone).reason, Reason::kPeerReset);
  EXPECT_EQ(ClassifyPeek(-1, ETIMEDOUT, Sample(TCP_CLOSE, 0, 0, 2), kNone).reason,
            Reason::kKeepaliveTimeout);
}

TEST(LivenessZeroSend, ZeroIsAliveWhateverErrnoSays) {
  for (int stale : {0, EAGAIN, EINPROGRESS, ECONNRESET, EPIPE}) {
    EXPECT_EQ(ClassifyZeroSend(0, stale, kNone, kNone).kind, Verdict::Kind::kAlive)
        << "stale errno " << stale;
  }
}

TEST(LivenessZeroSend, PendingErrorsAndShutdown) {
  EXPECT_EQ(ClassifyZeroSend(-1, ECONNRESET, Sample(TCP_CLOSE), kNone).reason,
            Reason::kPeerReset);
  EXPECT_EQ(ClassifyZeroSend(-1, EPIPE, Sample(TCP_CLOSE), kNone).reason, Reason::kPeerReset);
  EXPECT_EQ(ClassifyZeroSend(-1, EPIPE, Sample(TCP_FIN_WAIT2), kNone).reason,
            Reason::kLocalError);
  EXPECT_FALSE(ClassifyZeroSend(-1, EAGAIN, kNone, kNone).dead());
}

TEST(LivenessSoError, ZeroIsAliveAndSoftIcmpIsKept) {
  EXPECT_EQ(ClassifySoError(0, kNone, kNone).kind, Verdict::Kind::kAlive);
  EXPECT_TRUE(ClassifySoError(EHOSTUNREACH, Sample(TCP_ESTABLISHED), kNone).icmp());
  EXPECT_EQ(ClassifySoError(ECONNRESET, Sample(TCP_CLOSE), kNone).reason, Reason::kPeerReset);
}

TEST(LivenessAnomaly, StatesAfterOurFinAreLocal) {
  for (uint8_t state : {TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING}) {
    Verdict v = ClassifyAnomaly(Sample(state), 0, kNone);
    ASSERT_TRUE(v.dead());
    EXPECT_EQ(v.reason, Reason::kLocalError) << "state " << int{state};
  }
  EXPECT_EQ(ClassifyAnomaly(Sample(TCP_LAST_ACK), 0, kNone).reason, Reason::kPeerClosed);
  EXPECT_EQ(ClassifyAnomaly(Sample(TCP_CLOSE), 0, kNone).reason, Reason::kError);
}

}  // namespace
}  // namespace connwatch
