#pragma once
// TlsFront: the TLS listener of the HTTP surface. It accepts TLS connections
// on the public address, completes the handshake with OpenSSL and relays the
// plaintext bytes to civetweb, which then listens on an ephemeral loopback
// port only.
//
// NOTE: why not civetweb's own TLS. Debian 12's libcivetweb1 1.15 is built for
// the OpenSSL 1.1 API and loads OpenSSL with dlopen("libssl.so"): it needs
// the -dev symlinks at run time, and it refuses to start TLS with OpenSSL 3
// ("load_tls_dll: libssl.so: cannot find SSL_get_peer_certificate", a
// function OpenSSL 3 only has as a macro). Linking libssl3 here works with
// the runtime packages alone.
//
// Each accepted connection is served by its own thread (at most
// max_connections at once; more are closed at once), bounded by an idle
// timeout. The backend sees the relay's loopback address; IsRelayPort() tells
// the HTTP handler which source ports belong to live relays, so a local
// process that connects to the loopback port directly is refused.
//
// Threads: Start() and Stop() (and the destructor) are for the owning thread;
// IsRelayPort() is thread-safe.

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "web/web_config.h"

namespace connwatch {

struct TlsFrontOptions {
  std::string host;  // "" (all interfaces), a name, an IPv4 or IPv6 literal (no brackets).
  int port = 0;      // 0: the kernel picks; port() tells which.
  size_t max_connections = 16;
  int idle_timeout_ms = 10000;  // no byte either way for this long: closed.
};

class TlsFront {
 public:
  TlsFront(TlsFrontOptions options, WebTlsConfig tls);
  ~TlsFront();  // Stops.
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  // Loads the certificate, binds and starts accepting; connections are
  // relayed to 127.0.0.1:`backend_port`. "" or why not. Call at most once.
  std::string Start(int backend_port);
  // Closes the listener and every relayed connection; waits for the threads.
  void Stop();

  int port() const { return port_; }
  // True while a relay's connection to the backend uses local port `port`.
  bool IsRelayPort(int port) const;

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void AcceptLoop();
  void Relay(int client_fd, Worker* self);
  void ReapFinished();

  const TlsFrontOptions options_;
  const WebTlsConfig tls_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once Stop() began.
  int port_ = 0;
  int backend_port_ = 0;
  std::thread accept_thread_;
  std::list<Worker> workers_;  // accept thread only (and Stop after it ended).

  mutable std::mutex ports_mu_;
  std::unordered_map<int, int> relay_ports_;  // local port -> count.
};

}  // namespace connwatch
