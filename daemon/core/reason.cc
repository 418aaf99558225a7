#include "core/reason.h"

#include <cstring>

namespace connwatch {

namespace {
constexpr std::string_view kReasonNames[kReasonCount] = {
    "refused",       "timeout",           "host_unreachable",  "net_unreachable",
    "dns_error",     "local_error",       "error",             "peer_closed",
    "peer_reset",    "keepalive_timeout", "user_timeout",      "heartbeat_timeout",
    "heartbeat_mismatch", "tls_handshake", "tls_verify", "tls_alert"};
constexpr std::string_view kStateNames[kStateCount] = {"backoff", "resolving",
                                                       "connecting", "up"};
}  // namespace

std::string_view ReasonName(Reason reason) {
  auto i = static_cast<size_t>(reason);
  return i < kReasonCount ? kReasonNames[i] : std::string_view("unknown");
}

bool ParseReason(std::string_view word, Reason* reason) {
  for (size_t i = 0; i < kReasonCount; ++i) {
    if (kReasonNames[i] == word) {
      *reason = static_cast<Reason>(i);
      return true;
    }
  }
  return false;
}

bool IsConnectFailureReason(Reason reason) {
  switch (reason) {
    case Reason::kRefused:
    case Reason::kTimeout:
    case Reason::kHostUnreachable:
    case Reason::kNetUnreachable:
    case Reason::kDnsError:
    case Reason::kLocalError:
    case Reason::kError:
    case Reason::kTlsHandshake:
    case Reason::kTlsVerify:
      return true;
    default:
      return false;
  }
}

bool IsDisconnectReason(Reason reason) {
  switch (reason) {
    case Reason::kTimeout:
    case Reason::kDnsError:
    case Reason::kTlsHandshake:
    case Reason::kTlsVerify:
    case Reason::kCount:
      return false;
    default:
      return true;
  }
}

std::string_view ErrnoName(int err) {
  if (err == 0) return {};
  const char* name = strerrorname_np(err);
  return name ? std::string_view(name) : std::string_view("EUNKNOWN");
}

std::string_view StateName(TargetState state) {
  auto i = static_cast<size_t>(state);
  return i < kStateCount ? kStateNames[i] : std::string_view("unknown");
}

}  // namespace connwatch
