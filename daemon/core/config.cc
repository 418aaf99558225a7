#include "core/config.h"

#include <algorithm>
#include <string>

namespace connwatch {

std::string_view AddressFamilyName(AddressFamily f) {
  switch (f) {
    case AddressFamily::kAny:
      return "any";
    case AddressFamily::kIp4:
      return "ip4";
    case AddressFamily::kIp6:
      return "ip6";
  }
  return "any";
}

std::string_view AddressChangeName(AddressChange c) {
  return c == AddressChange::kReconnect ? "reconnect" : "report";
}

std::string_view AddressModeName(AddressMode m) {
  return m == AddressMode::kAll ? "all" : "first";
}

Millis ResolveInterval(std::optional<Millis> configured, int ttl_seconds) {
  if (configured) return *configured;
  // No TTL (a numeric host, or an answer without one): the longest default.
  if (ttl_seconds < 0) return kMaxTtlInterval;
  const Millis ttl{static_cast<int64_t>(ttl_seconds) * 1000};
  return std::clamp(ttl, kMinTtlInterval, kMaxTtlInterval);
}

std::string ConfigError::ToString() const {
  std::string out = file;
  if (line > 0) {
    if (!out.empty()) out += ':';
    out += std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  for (const std::string* part : {&path, &message}) {
    if (part->empty()) continue;
    if (!out.empty()) out += ": ";
    out += *part;
  }
  return out;
}

std::string_view TlsVersionName(TlsVersion version) {
  switch (version) {
    case TlsVersion::kTls10:
      return "TLS10";
    case TlsVersion::kTls11:
      return "TLS11";
    case TlsVersion::kTls12:
      return "TLS12";
    case TlsVersion::kTls13:
      return "TLS13";
  }
  return "TLS12";
}

bool ParseTlsVersion(std::string_view word, TlsVersion* version) {
  for (TlsVersion candidate :
       {TlsVersion::kTls10, TlsVersion::kTls11, TlsVersion::kTls12, TlsVersion::kTls13}) {
    if (TlsVersionName(candidate) == word) {
      *version = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace connwatch
