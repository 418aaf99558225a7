#pragma once
// The closed vocabulary of connwatch: why a connect failed or a held connection
// ended, and which state a target is in. Every metric label, log word and API
// string for these comes from the functions below, nowhere else.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace connwatch {

enum class Reason : uint8_t {
  // Connect failures (and, where marked, disconnects too).
  kRefused,          // RST answered our SYN (ECONNREFUSED); also a disconnect: an ICMP
                     // port unreachable on the established connection (a REJECT rule).
  kTimeout,          // our connect_timeout expired, or ETIMEDOUT during connect.
  kHostUnreachable,  // EHOSTUNREACH (ICMP host/admin unreachable); also a disconnect.
  kNetUnreachable,   // ENETUNREACH; also a disconnect.
  kDnsError,         // the name did not resolve to a usable address.
  kLocalError,       // our side: EMFILE, ENFILE, EADDRNOTAVAIL, ENOBUFS...; also a disconnect.
  kError,            // anything else; also a disconnect.
  // Disconnects only.
  kPeerClosed,        // FIN from the peer (CLOSE_WAIT, recv()==0).
  kPeerReset,         // RST from the peer (ECONNRESET, EPIPE).
  kKeepaliveTimeout,  // ETIMEDOUT with keepalive probes out and nothing unacked.
  kUserTimeout,       // ETIMEDOUT with data unacknowledged (TCP_USER_TIMEOUT).
  kHeartbeatTimeout,  // no heartbeat reply within timeout, `fall` times in a row.
  kHeartbeatMismatch, // a reply arrived but did not match `expect`, `fall` times.
  // TLS targets (tls: in the config).
  kTlsHandshake,  // connect failure: the TLS handshake failed or the peer sent an alert in it.
  kTlsVerify,     // connect failure: the peer's certificate did not verify (chain, name, dates).
  kTlsAlert,      // disconnect: a fatal TLS alert (or a TLS protocol error) after the handshake.
  kCount
};
inline constexpr size_t kReasonCount = static_cast<size_t>(Reason::kCount);

// Label value / log word, e.g. "peer_reset".
std::string_view ReasonName(Reason reason);
// Inverse of ReasonName; returns false for an unknown word.
bool ParseReason(std::string_view word, Reason* reason);
bool IsConnectFailureReason(Reason reason);
bool IsDisconnectReason(Reason reason);

// The symbolic name of an errno value ("ECONNRESET"), or "" for 0.
std::string_view ErrnoName(int err);

enum class TargetState : uint8_t {
  kBackoff,     // waiting before the next attempt (also the first, jittered start).
  kResolving,   // asking c-ares for the host's addresses.
  kConnecting,  // non-blocking connect in flight, connect_timeout armed.
  kUp,          // connection established and passing its checks.
  kCount
};
inline constexpr size_t kStateCount = static_cast<size_t>(TargetState::kCount);
std::string_view StateName(TargetState state);

}  // namespace connwatch
