#pragma once
// The OpenSSL client context of TLS targets, built by the config loader (on
// the loader thread, never on the event loop) from the `tls:` settings, and
// the checks behind their config errors: files that cannot be read, a CA file
// without a certificate, a key that does not belong to its certificate.
//
// One context serves every target with the same files and settings
// (server_name is per connection, not per context). Contexts are immutable
// once built and may be used from any thread to make SSL objects.

#include <memory>
#include <string>

#include "core/config.h"

namespace connwatch {

// What went wrong with which key of `tls:` ("ca_file", "cert_file",
// "key_file"); empty `key` when it is not one key's fault.
struct TlsContextError {
  std::string key;
  std::string message;
};

// Builds the client context for `tls` (its files and settings; server_name
// is not used). Returns nullptr and sets `error` when a file is unusable.
std::shared_ptr<ssl_ctx_st> BuildTlsClientContext(const TlsConfig& tls, TlsContextError* error);

// device:inode:size:mtime of each file `tls` names, for TlsConfig::files_stamp.
std::string TlsFilesStamp(const TlsConfig& tls);

// The context key: two TlsConfigs with the same key share one context.
std::string TlsContextKey(const TlsConfig& tls);

}  // namespace connwatch
