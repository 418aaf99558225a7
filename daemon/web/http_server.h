#pragma once
// The HTTP surface of connwatchd, served by civetweb on one listener:
//
//   GET  /                  HTML landing page linking the rest
//   GET  /metrics           Prometheus text exposition 0.0.4
//   GET  /-/healthy         200 "OK" while the event loop turns, else 503
//   GET  /-/ready           200 "OK" once a config is loaded, else 503
//   POST /-/reload (or PUT) re-read the config; 403 unless the lifecycle API
//                           is enabled; 500 with the error lines on failure
//   GET  /api/v1/targets    JSON state of every target (?state=, ?target=)
//   GET  /api/v1/events     JSON recent events, newest first (?limit=, ?target=)
//
// HEAD is accepted wherever GET is. Unknown paths get 404, known paths with a
// wrong method 405 (with an Allow header).
//
// A web config (--web.config.file, see web_config.h) applies to every path:
// with TLS the listener speaks only TLS (a plain HTTP client gets no answer;
// see tls_front.h for why TLS is not civetweb's),
// with basic-auth users a request without a valid user and password gets 401
// and a WWW-Authenticate header.
//
// Threads: Start() and Stop() (and the destructor) are for the owning thread.
// Requests are served on civetweb's own worker threads, which call only
// DaemonControl methods and EventLog::Recent; they never touch live daemon
// state. `control` and `events` must outlive the server (until Stop()).

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/event_log.h"
#include "core/snapshot.h"
#include "web/tls_front.h"
#include "web/web_config.h"

struct mg_context;
struct mg_connection;

namespace connwatch {

struct HttpServerOptions {
  // Prometheus exporter form: ":9798" (all interfaces), "127.0.0.1:9798",
  // "[::1]:9798", "localhost:9798". Port 0 picks a free port (see port()).
  std::string listen_address = ":9798";
  bool enable_lifecycle = false;   // allow POST/PUT /-/reload.
  // civetweb workers: one connection each. Idle ones cost a stack; many of
  // them, and a short request timeout, keep slow clients (slowloris) from
  // starving scrapes and health checks.
  int num_threads = 32;
  int request_timeout_ms = 2000;  // a client slower than this is dropped.
  WebConfig web;                   // TLS and basic auth; the default has neither.
};

// Turns a Prometheus-style listen address into civetweb's listening_ports
// syntax ("9798", "127.0.0.1:9798", "[::1]:9798", "+9798"). `ipv6_supported`
// tells whether civetweb was built with IPv6 (Debian's 1.15 is not): without
// it ":port" listens on IPv4 only and an IPv6 address is an error. Returns
// false with `error` set for a malformed address.
bool ListenAddressToCivetweb(std::string_view address, bool ipv6_supported, std::string* ports,
                             std::string* error);

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, DaemonControl& control, EventLog& events);
  HttpServer(std::string listen_address, DaemonControl& control, EventLog& events,
             bool enable_lifecycle);
  ~HttpServer();  // Stops the server.

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving. Returns "" on success, else why it failed, e.g.
  // `listen address "127.0.0.1:80": cannot bind to 127.0.0.1:80: 98 (Address
  // already in use)`. Call at most once.
  std::string Start();
  // Stops accepting and waits for the requests in flight. Idempotent.
  void Stop();

  // The TCP port actually bound (the one chosen for port 0); 0 before Start().
  int port() const { return port_; }
  // civetweb's own port: port() without TLS, a loopback port behind the TLS front with it.
  int BackendPortForTest() const { return backend_port_; }
  // The listen address as civetweb was given it, for logs.
  const std::string& listening_ports() const { return listening_ports_; }

 private:
  static int HandleRequest(mg_connection* conn, void* self);
  static int LogMessage(const mg_connection* conn, const char* message);
  int Handle(mg_connection* conn);

  int ServeMetrics(mg_connection* conn, bool head);
  int ServeLanding(mg_connection* conn, bool head);
  int ServeHealthy(mg_connection* conn, bool head);
  int ServeReady(mg_connection* conn, bool head);
  int ServeReload(mg_connection* conn);
  int ServeTargets(mg_connection* conn, std::string_view query, bool head);
  int ServeEvents(mg_connection* conn, std::string_view query, bool head);

  HttpServerOptions options_;
  DaemonControl& control_;
  EventLog& events_;
  std::unique_ptr<BasicAuthenticator> auth_;  // set by Start() when users are configured.
  std::unique_ptr<TlsFront> tls_front_;       // set by Start() with TLS; civetweb is then
                                              // on a loopback port behind it.
  mg_context* ctx_ = nullptr;
  int port_ = 0;          // the public port (TlsFront's with TLS).
  int backend_port_ = 0;  // civetweb's own port.
  std::string listening_ports_;
  // civetweb's startup complaints, collected by LogMessage during Start();
  // later messages (from worker threads) are dropped.
  std::mutex log_mu_;
  bool capture_log_ = false;
  std::string start_log_;
};

}  // namespace connwatch
