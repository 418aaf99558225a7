#pragma once
// The HTTP surface of connwatchd, served by libmicrohttpd:
//
//   GET  /                  the status page (web/status_page.h; ?q=, ?state=, ?sort=, ?offset=)
//   GET  /metrics           Prometheus text exposition 0.0.4 (streamed, gzip on request)
//   GET  /-/healthy         200 "OK" while the event loop turns, else 503
//   GET  /-/ready           200 "OK" once a config is loaded, else 503
//   POST /-/reload (or PUT) re-read the config; 403 unless the lifecycle API
//                           is enabled; 500 with the error lines on failure
//   GET  /api/v1/targets    JSON state of every target (?state=, ?target=), streamed;
//                           ?compact=1: one page of the status page's rows
//   GET  /api/v1/events     JSON recent events, newest first (?limit=, ?target=);
//                           with ?follow=1 a Server-Sent Events stream of new ones
//
// HEAD is accepted wherever GET is. Unknown paths get 404, known paths with a
// wrong method 405 (with an Allow header). One request per connection.
//
// A web config (--web.config.file, see web_config.h) applies to every path:
// with TLS the listener speaks only TLS (GnuTLS, inside libmicrohttpd), with
// basic-auth users a request without a valid user and password gets 401 and
// a WWW-Authenticate header (503 while bcrypt work is at its bound, see
// basic_auth.h).
//
// Holding up under abuse (docs/API.md, "Limits"): at most max_connections
// connections, at most max_connections_per_client from one client address
// (more are closed at once); from accept until the request's headers are in,
// TLS handshake included, at most request_timeout_ms; no byte moving for
// idle_timeout_s closes a connection; accept backs off when out of file
// descriptors (listener.h). Requests that want a snapshot while one is being
// taken share it (shared_snapshot.h); /metrics and /api/v1/targets bodies are
// streamed from it in bounded pieces (piece_stream.h).
//
// Threads: Start() and Stop() (and the destructor) are for the owning thread.
// Each connection is served on its own thread, which calls only DaemonControl
// methods and EventLog's thread-safe ones; it never touches live daemon
// state. `control` and `events` must outlive the server (until Stop()).

#include <atomic>
#include <chrono>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_log.h"
#include "core/snapshot.h"
#include "web/basic_auth.h"
#include "web/listener.h"
#include "web/request_deadlines.h"
#include "web/shared_snapshot.h"
#include "web/web_config.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace connwatch {

struct HttpServerOptions {
  // Prometheus exporter form: ":9798" (every address, IPv4 and IPv6),
  // "127.0.0.1:9798", "[::1]:9798", "localhost:9798". Port 0 picks a free
  // port (see port()). See listener.h.
  std::string listen_address = ":9798";
  bool enable_lifecycle = false;  // allow POST/PUT /-/reload.
  // Each open connection has a thread while it lasts.
  size_t max_connections = 256;
  size_t max_connections_per_client = 32;  // per client IP address.
  int request_timeout_ms = 3000;  // accept to request headers, TLS handshake included.
  int idle_timeout_s = 10;        // nothing moved for this long: closed.
  size_t max_followers = 16;      // concurrent GET /api/v1/events?follow=1.
  std::chrono::milliseconds follow_keepalive{15000};  // comment line on a quiet stream.
  size_t follower_queue = 1024;   // events a follower may lag behind before it is dropped.
  BasicAuthLimits auth_limits;
  WebConfig web;                  // TLS and basic auth; the default has neither.
};

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
  // Stops accepting, ends event followers and waits for the requests in
  // flight. Idempotent.
  void Stop();

  // The TCP port actually bound (the one chosen for port 0); 0 before Start().
  int port() const { return port_; }
  // What is listened on, e.g. {"[::]:9798"} (every address, both families)
  // or {"127.0.0.1:9798", "[::1]:9798"} for localhost; for logs.
  const std::vector<std::string>& listening() const { return listening_; }

  // File descriptors the server may hold at once with `options`: the
  // daemon keeps this many out of the targets' budget.
  static size_t FdsNeeded(const HttpServerOptions& options);

  // For tests.
  uint64_t accept_resource_failures() const;
  uint64_t connections_cut() const { return deadlines_.cut(); }
  const SharedSnapshots& snapshots() const { return snapshots_; }
  const BasicAuthenticator* authenticator() const { return auth_.get(); }
  size_t followers() const { return followers_.load(); }

 private:
  struct Request;
  struct Follow;
  struct Reply;

  friend struct HttpCallbacks;  // libmicrohttpd's callbacks, in http_server.cc.

  int Handle(MHD_Connection* c, std::string_view method, std::string_view path,
             std::string_view query);
  int ServeMetrics(MHD_Connection* c, bool head);
  int ServeTargets(MHD_Connection* c, std::string_view query, bool head);
  int ServeCompactTargets(MHD_Connection* c, std::string_view query);
  int ServeStatusPage(MHD_Connection* c, std::string_view query);
  int ServeEvents(MHD_Connection* c, std::string_view query, bool head);
  int ServeFollow(MHD_Connection* c, std::string_view query, bool head);
  int ServeReload(MHD_Connection* c);
  void EndFollow(Follow* follow);

  HttpServerOptions options_;
  DaemonControl& control_;
  EventLog& events_;
  SharedSnapshots snapshots_;
  RequestDeadlines deadlines_;
  std::unique_ptr<BasicAuthenticator> auth_;  // set by Start() when users are configured.
  std::unique_ptr<Acceptor> acceptor_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
  std::vector<std::string> listening_;

  std::atomic<size_t> followers_{0};
  std::mutex follow_mu_;
  std::set<Follow*> follows_;  // live follower streams, ended by Stop().
  std::condition_variable follows_ended_;  // signalled as follows_ shrinks
  bool stopping_ = false;      // under follow_mu_.

  // libmicrohttpd's complaints while Start() runs; later ones are dropped.
  std::mutex log_mu_;
  bool capture_log_ = false;
  std::string start_log_;
};

}  // namespace connwatch
