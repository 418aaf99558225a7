#pragma once
// What a TLS target's peer presented at the last handshake: plain data,
// captured by net/tls_session.h on the loop, shared read-only with snapshots.

#include <string>

namespace connwatch {

// What the peer's certificates said at the handshake (for metrics and API).
struct TlsPeerInfo {
  bool valid = false;
  std::string version;      // "TLSv1.3"
  std::string cipher;       // "TLS_AES_256_GCM_SHA384"
  std::string subject;      // leaf, RFC 2253: "CN=api.example.org,O=Example"
  std::string issuer;
  std::string fingerprint;  // SHA-256 of the leaf (DER), lowercase hex
  double earliest_expiry_unix = 0;  // earliest notAfter in the chain presented
};

}  // namespace connwatch
