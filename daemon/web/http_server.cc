#include "web/http_server.h"

#include <microhttpd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

#include "web/api_json.h"
#include "web/gzip_stream.h"
#include "web/metrics_view.h"
#include "web/piece_stream.h"
#include "web/status_page.h"

namespace connwatch {

namespace {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kTextContentType = "text/plain; charset=utf-8";
constexpr const char* kHtmlContentType = "text/html; charset=utf-8";
constexpr const char* kJsonContentType = "application/json";
constexpr const char* kEventStreamContentType = "text/event-stream; charset=utf-8";
constexpr const char* kReadMethods = "GET, HEAD";
constexpr const char* kReloadMethods = "POST, PUT";
constexpr size_t kMaxEventsLimit = EventLog::kRingSize;
constexpr size_t kPieceBytes = 64 * 1024;
constexpr size_t kMaxBodyBytes = 64 * 1024;  // of a request, dropped unread.

void AddCommonHeaders(MHD_Response* r, const char* content_type) {
  MHD_add_response_header(r, "Content-Type", content_type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  // One request per connection: an idle keep-alive client would hold a
  // connection (and its thread) for nothing.
  MHD_add_response_header(r, "Connection", "close");
}

int Queue(MHD_Connection* c, unsigned status, MHD_Response* r) {
  if (r == nullptr) return MHD_NO;
  const MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

MHD_Response* Buffer(std::string_view body, const char* content_type) {
  MHD_Response* r = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (r) AddCommonHeaders(r, content_type);
  return r;
}

int SendText(MHD_Connection* c, unsigned status, std::string_view body) {
  return Queue(c, status, Buffer(body, kTextContentType));
}

int SendJson(MHD_Connection* c, unsigned status, const Json& j) {
  std::string body = Dump(j);
  body.push_back('\n');
  return Queue(c, status, Buffer(body, kJsonContentType));
}

// Prometheus API style: {"status":"error","errorType":...,"error":...}.
int SendJsonError(MHD_Connection* c, unsigned status, std::string_view type,
                  std::string_view message) {
  Json j;
  j["status"] = "error";
  j["errorType"] = std::string(type);
  j["error"] = std::string(message);
  return SendJson(c, status, j);
}

int MethodNotAllowed(MHD_Connection* c, const char* allow) {
  MHD_Response* r = Buffer("Method Not Allowed\n", kTextContentType);
  if (r) MHD_add_response_header(r, "Allow", allow);
  return Queue(c, 405, r);
}

const char* Header(MHD_Connection* c, const char* name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

// A streamed body: `produce` runs on its own thread (PieceStream). For HEAD
// nothing is produced, the headers are the same.
MHD_Response* Streamed(PieceStream::Producer produce, bool head, const char* content_type) {
  MHD_Response* r;
  if (head) {
    r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, kPieceBytes,
        [](void*, uint64_t, char*, size_t) -> ssize_t { return MHD_CONTENT_READER_END_OF_STREAM; },
        nullptr, nullptr);
  } else {
    auto* stream = new PieceStream(std::move(produce), 4 * kPieceBytes);
    r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, kPieceBytes,
        [](void* cls, uint64_t, char* buf, size_t max) -> ssize_t {
          auto* s = static_cast<PieceStream*>(cls);
          size_t n = s->Read(buf, max);
          if (n > 0) return static_cast<ssize_t>(n);
          return s->failed() ? MHD_CONTENT_READER_END_WITH_ERROR
                             : MHD_CONTENT_READER_END_OF_STREAM;
        },
        stream, [](void* cls) { delete static_cast<PieceStream*>(cls); });
    if (r == nullptr) delete stream;
  }
  if (r) AddCommonHeaders(r, content_type);
  return r;
}

// One Server-Sent Event for `e`: its seq as the id, its kind as the type.
void AppendSse(const Event& e, std::string* out) {
  out->append("id: ").append(std::to_string(e.seq)).append("\nevent: ").append(e.kind);
  out->append("\ndata: ").append(Dump(EventJson(e))).append("\n\n");
}

bool ParseSeq(std::string_view text, uint64_t* seq) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *seq = v;
  return true;
}

}  // namespace

// What libmicrohttpd keeps per request (its con_cls): the raw URI, whose
// query string connwatchd parses itself.
struct HttpServer::Request {
  std::string uri;
  bool started = false;
  size_t body_bytes = 0;  // read and dropped so far.
};

// A follower stream (GET /api/v1/events?follow=1), read on its connection's thread.
struct HttpServer::Follow {
  HttpServer* server;
  std::unique_ptr<EventFollowers::Follower> follower;
  std::chrono::milliseconds keepalive;
  std::string pending;
  size_t offset = 0;
  bool ended = false;
};

struct HttpCallbacks {
  static MHD_Result OnRequest(void* cls, MHD_Connection* c, const char* url, const char* method,
                              const char*, const char*, size_t* upload_data_size, void** con_cls) {
    auto* self = static_cast<HttpServer*>(cls);
    auto* req = static_cast<HttpServer::Request*>(*con_cls);
    if (req == nullptr) return MHD_NO;
    if (!req->started) {
      // The headers are in: the request deadline is met.
      req->started = true;
      self->deadlines_.RequestArrived(c);
      return MHD_YES;
    }
    if (*upload_data_size != 0) {
      // No endpoint reads a body: it is dropped, up to a bound, so that a
      // client cannot hold a connection by sending one without end.
      req->body_bytes += *upload_data_size;
      *upload_data_size = 0;
      // Past the bound the connection is closed: libmicrohttpd takes no
      // response while a body is still coming in.
      return req->body_bytes <= kMaxBodyBytes ? MHD_YES : MHD_NO;
    }
    std::string_view uri = req->uri;
    const size_t q = uri.find('?');
    std::string_view query = q == std::string_view::npos ? std::string_view() : uri.substr(q + 1);
    try {
      return static_cast<MHD_Result>(
          self->Handle(c, method ? method : "", url ? url : "", query));
    } catch (const std::exception& e) {
      return static_cast<MHD_Result>(
          SendText(c, 500, std::string("internal error: ") + e.what() + "\n"));
    } catch (...) {
      return static_cast<MHD_Result>(SendText(c, 500, "internal error\n"));
    }
  }

  static void* OnUri(void*, const char* uri, MHD_Connection*) {
    auto* req = new (std::nothrow) HttpServer::Request;
    if (req && uri) {
      try {
        req->uri = uri;
      } catch (...) {
      }
    }
    return req;
  }

  static void OnCompleted(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<HttpServer::Request*>(*con_cls);
    *con_cls = nullptr;
  }

  static void OnConnection(void* cls, MHD_Connection* c, void**,
                           MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<HttpServer*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (info) self->deadlines_.Opened(c, info->connect_fd);
    } else {
      self->deadlines_.Closed(c);
    }
  }

  static void OnLog(void* cls, const char* format, va_list args) {
    auto* self = static_cast<HttpServer*>(cls);
    std::lock_guard<std::mutex> lock(self->log_mu_);
    if (!self->capture_log_ || !self->start_log_.empty()) return;
    char buf[512];
    std::vsnprintf(buf, sizeof buf, format, args);
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == '.')) line.pop_back();
    self->start_log_ = line;
  }

  static ssize_t ReadFollow(void* cls, uint64_t, char* buf, size_t max) {
    auto* f = static_cast<HttpServer::Follow*>(cls);
    while (f->offset >= f->pending.size()) {
      if (f->ended) return MHD_CONTENT_READER_END_OF_STREAM;
      f->pending.clear();
      f->offset = 0;
      std::vector<Event> events;
      switch (f->follower->Wait(f->keepalive, &events)) {
        case EventFollowers::Follower::Status::kEvents:
          for (const Event& e : events) AppendSse(e, &f->pending);
          break;
        case EventFollowers::Follower::Status::kTimeout:
          f->pending = ": keepalive\n\n";
          break;
        case EventFollowers::Follower::Status::kOverrun: {
          Json j;
          j["error"] = "this client fell behind by more than " +
                       std::to_string(f->server->options_.follower_queue) +
                       " events and was dropped; reconnect with Last-Event-ID to resume "
                       "from the ring";
          f->pending = "event: overrun\ndata: " + Dump(j) + "\n\n";
          f->ended = true;
          break;
        }
        case EventFollowers::Follower::Status::kClosed:
          f->pending = "event: shutdown\ndata: {}\n\n";
          f->ended = true;
          break;
      }
    }
    const size_t n = std::min(max, f->pending.size() - f->offset);
    std::memcpy(buf, f->pending.data() + f->offset, n);
    f->offset += n;
    return static_cast<ssize_t>(n);
  }

  static void FreeFollow(void* cls) {
    auto* f = static_cast<HttpServer::Follow*>(cls);
    f->server->EndFollow(f);
  }
};

HttpServer::HttpServer(HttpServerOptions options, DaemonControl& control, EventLog& events)
    : options_(std::move(options)),
      control_(control),
      events_(events),
      snapshots_(control),
      deadlines_(std::chrono::milliseconds(std::max(1, options_.request_timeout_ms))) {}

HttpServer::HttpServer(std::string listen_address, DaemonControl& control, EventLog& events,
                       bool enable_lifecycle)
    : control_(control),
      events_(events),
      snapshots_(control),
      deadlines_(std::chrono::milliseconds(options_.request_timeout_ms)) {
  options_.listen_address = std::move(listen_address);
  options_.enable_lifecycle = enable_lifecycle;
}

HttpServer::~HttpServer() { Stop(); }

size_t HttpServer::FdsNeeded(const HttpServerOptions& options) {
  // One per connection, the listeners, libmicrohttpd's wake-up pipe, the
  // accept thread's eventfd, and the files a scrape reads in /proc.
  return options.max_connections + 32;
}

uint64_t HttpServer::accept_resource_failures() const {
  return acceptor_ ? acceptor_->resource_failures() : 0;
}

std::string HttpServer::Start() {
  if (daemon_) return "HTTP server already started";
  const std::string where = "listen address \"" + options_.listen_address + "\": ";
  ListenAddress address;
  std::string error;
  if (!ParseListenAddress(options_.listen_address, &address, &error)) return error;

  TlsMaterial tls;
  if (options_.web.tls) {
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
      return "TLS (--web.config.file) is not available: libmicrohttpd was built without it";
    }
    error = LoadTlsMaterial(*options_.web.tls, &tls);
    if (!error.empty()) return "web config \"" + options_.web.file + "\": " + error;
  }
  if (!options_.web.basic_auth_users.empty()) {
    auth_ = std::make_unique<BasicAuthenticator>(options_.web.basic_auth_users,
                                                 options_.auth_limits);
  }

  BoundListeners bound;
  error = BindListeners(address, 1024, &bound);
  if (!error.empty()) return where + error;

  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_USE_POLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (options_.web.tls) flags |= MHD_USE_TLS;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    capture_log_ = true;
    start_log_.clear();
  }
  const unsigned max_conns = static_cast<unsigned>(std::max<size_t>(1, options_.max_connections));
  const unsigned per_client =
      static_cast<unsigned>(std::max<size_t>(1, options_.max_connections_per_client));
  const unsigned idle = static_cast<unsigned>(std::max(1, options_.idle_timeout_s));
  MHD_OptionItem tls_options[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(tls.cert_pem.c_str())},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(tls.key_pem.c_str())},
      {MHD_OPTION_HTTPS_PRIORITIES, 0, const_cast<char*>(tls.priorities.c_str())},
      {MHD_OPTION_END, 0, nullptr}};
  MHD_OptionItem no_options[] = {{MHD_OPTION_END, 0, nullptr}};
  daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &HttpCallbacks::OnRequest, this,
      MHD_OPTION_CONNECTION_LIMIT, max_conns,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client,
      MHD_OPTION_CONNECTION_TIMEOUT, idle,
      MHD_OPTION_THREAD_STACK_SIZE, static_cast<size_t>(1024 * 1024),
      MHD_OPTION_URI_LOG_CALLBACK, &HttpCallbacks::OnUri, this,
      MHD_OPTION_NOTIFY_COMPLETED, &HttpCallbacks::OnCompleted, this,
      MHD_OPTION_NOTIFY_CONNECTION, &HttpCallbacks::OnConnection, this,
      MHD_OPTION_EXTERNAL_LOGGER, &HttpCallbacks::OnLog, this,
      MHD_OPTION_ARRAY, options_.web.tls ? tls_options : no_options,
      MHD_OPTION_END);
  explicit_bzero(tls.key_pem.data(), tls.key_pem.size());
  std::string log;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    capture_log_ = false;
    log.swap(start_log_);
  }
  if (!daemon_) {
    for (int fd : bound.fds) close(fd);
    return where + (log.empty() ? std::string("libmicrohttpd failed to start") : log);
  }
  deadlines_.Start();
  acceptor_ = std::make_unique<Acceptor>(bound.fds, [this](int fd, const sockaddr* sa,
                                                          socklen_t len) {
    // Refused (limits, or no memory): libmicrohttpd closes the socket itself.
    MHD_add_connection(daemon_, fd, sa, len);
  });
  error = acceptor_->Start();
  if (!error.empty()) {
    Stop();
    return where + error;
  }
  port_ = bound.port;
  listening_ = bound.names;
  return "";
}

void HttpServer::Stop() {
  if (acceptor_) acceptor_->Stop();
  {
    std::unique_lock<std::mutex> lock(follow_mu_);
    stopping_ = true;
    for (Follow* f : follows_) f->follower->Close();
    // Let the streams send their last event (`event: shutdown`) before the
    // connections are cut, for a second at most.
    follows_ended_.wait_for(lock, std::chrono::seconds(1), [&] { return follows_.empty(); });
  }
  if (daemon_) {
    MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
  }
  deadlines_.Stop();
  acceptor_.reset();  // closes the listening sockets.
}

void HttpServer::EndFollow(Follow* follow) {
  {
    std::lock_guard<std::mutex> lock(follow_mu_);
    follows_.erase(follow);
  }
  follows_ended_.notify_all();
  delete follow;
  followers_.fetch_sub(1);
}

int HttpServer::Handle(MHD_Connection* c, std::string_view method, std::string_view path,
                       std::string_view query) {
  const bool head = method == "HEAD";
  const bool read = method == "GET" || head;

  if (auth_) {
    const char* authorization = Header(c, "Authorization");
    switch (auth_->Authenticate(authorization ? authorization : "")) {
      case BasicAuthenticator::Verdict::kOk:
        break;
      case BasicAuthenticator::Verdict::kDenied: {
        MHD_Response* r = Buffer("Unauthorized\n", kTextContentType);
        if (r) {
          MHD_add_response_header(r, "WWW-Authenticate",
                                  "Basic realm=\"connwatchd\", charset=\"UTF-8\"");
        }
        return Queue(c, 401, r);
      }
      case BasicAuthenticator::Verdict::kBusy: {
        MHD_Response* r = Buffer(
            "Too many password checks in progress; retry in a moment.\n", kTextContentType);
        if (r) MHD_add_response_header(r, "Retry-After", "1");
        return Queue(c, 503, r);
      }
    }
  }

  if (path == "/metrics") return read ? ServeMetrics(c, head) : MethodNotAllowed(c, kReadMethods);
  if (path == "/") return read ? ServeStatusPage(c, query) : MethodNotAllowed(c, kReadMethods);
  if (path == "/-/healthy" || path == "/-/ready") {
    if (!read) return MethodNotAllowed(c, kReadMethods);
    const bool ok = path == "/-/healthy" ? control_.Healthy() : control_.Ready();
    return ok ? SendText(c, 200, "OK") : SendText(c, 503, "Service Unavailable");
  }
  if (path == "/api/v1/targets") {
    return read ? ServeTargets(c, query, head) : MethodNotAllowed(c, kReadMethods);
  }
  if (path == "/api/v1/events") {
    return read ? ServeEvents(c, query, head) : MethodNotAllowed(c, kReadMethods);
  }
  if (path == "/-/reload") {
    if (method == "POST" || method == "PUT") return ServeReload(c);
    return MethodNotAllowed(c, kReloadMethods);
  }
  return SendText(c, 404, "404 page not found\n");
}

int HttpServer::ServeMetrics(MHD_Connection* c, bool head) {
  std::shared_ptr<const Snapshot> snapshot = snapshots_.Get();
  if (!snapshot) {
    return SendText(c, 503, "snapshot unavailable: the event loop did not answer in time\n");
  }
  const char* accept = Header(c, "Accept-Encoding");
  const bool gzip = accept != nullptr && AcceptsGzip(accept);
  // Written in pieces of about 64 KiB as produced (and compressed), never
  // held whole; chunked transfer encoding.
  MHD_Response* r = Streamed(
      [snapshot, gzip](const PieceStream::Write& write) {
        if (gzip) {
          GzipStream compressed(write);
          StreamMetrics(*snapshot, [&compressed](std::string_view piece) {
            compressed.Write(piece);
          });
          compressed.Finish();
        } else {
          StreamMetrics(*snapshot, write);
        }
      },
      head, kMetricsContentType);
  if (r && gzip) MHD_add_response_header(r, "Content-Encoding", "gzip");
  return Queue(c, 200, r);
}

int HttpServer::ServeReload(MHD_Connection* c) {
  if (!options_.enable_lifecycle) return SendText(c, 403, "Lifecycle API is not enabled.\n");
  std::vector<std::string> errors = control_.Reload();
  if (errors.empty()) return SendText(c, 200, "OK");
  std::string body;
  for (const std::string& line : errors) {
    body += line;
    body += '\n';
  }
  return SendText(c, 500, body);
}

int HttpServer::ServeStatusPage(MHD_Connection* c, std::string_view query) {
  StatusQuery q;
  const std::string error = ParseStatusQuery(query, &q);
  if (!error.empty()) return SendText(c, 400, error + "\n");
  std::shared_ptr<const Snapshot> snapshot = snapshots_.Get();
  if (!snapshot) {
    return SendText(c, 503, "snapshot unavailable: the event loop did not answer in time\n");
  }
  return Queue(c, 200,
               Buffer(RenderStatusPage(*snapshot, events_.Recent(kStatusEvents), q),
                      kHtmlContentType));
}

int HttpServer::ServeCompactTargets(MHD_Connection* c, std::string_view query) {
  StatusQuery q;
  const std::string error = ParseStatusQuery(query, &q);
  if (!error.empty()) return SendJsonError(c, 400, "bad_data", error);
  std::shared_ptr<const Snapshot> snapshot = snapshots_.Get();
  if (!snapshot) {
    return SendJsonError(c, 503, "unavailable",
                         "snapshot unavailable: the event loop did not answer in time");
  }
  // One page of rows at most (StatusQuery::limit): small enough to build whole.
  return Queue(c, 200, Buffer(CompactTargetsJson(*snapshot, q), kJsonContentType));
}

int HttpServer::ServeTargets(MHD_Connection* c, std::string_view query, bool head) {
  if (std::optional<std::string> compact = QueryParam(query, "compact")) {
    if (*compact == "1" || *compact == "true") return ServeCompactTargets(c, query);
    if (*compact != "0" && *compact != "false") {
      return SendJsonError(c, 400, "bad_data",
                           "invalid compact \"" + *compact + "\": want 1 or true (or 0, false)");
    }
  }
  std::optional<TargetState> state_filter;
  if (std::optional<std::string> state = QueryParam(query, "state")) {
    TargetState parsed;
    if (!ParseState(*state, &parsed)) {
      return SendJsonError(c, 400, "bad_data",
                           "invalid state \"" + *state +
                               "\": want one of backoff, resolving, connecting, up");
    }
    state_filter = parsed;
  }
  std::optional<std::string> target_filter = QueryParam(query, "target");

  std::shared_ptr<const Snapshot> snapshot = snapshots_.Get();
  if (!snapshot) {
    return SendJsonError(c, 503, "unavailable",
                         "snapshot unavailable: the event loop did not answer in time");
  }
  // The one target asked for: [only, only_end), several endpoints in a row
  // for a target with addresses: all or srv.
  size_t only = snapshot->targets.size();
  size_t only_end = only;
  if (target_filter) {
    for (size_t i = 0; i < snapshot->targets.size(); ++i) {
      const TargetSnapshot& t = snapshot->targets[i];
      if (t.config && t.config->name == *target_filter) {
        only = i;
        only_end = i + 1;
        while (only_end < snapshot->targets.size() &&
               snapshot->targets[only_end].config == t.config) {
          ++only_end;
        }
        break;
      }
    }
    if (only == snapshot->targets.size()) {
      return SendJsonError(c, 404, "not_found", "unknown target \"" + *target_filter + "\"");
    }
  }
  // The document Dump() would make of {"status":"success","data":{"targets":
  // [...]}}, written target by target.
  const bool one = target_filter.has_value();
  return Queue(
      c, 200,
      Streamed(
          [snapshot, state_filter, one, only, only_end](const PieceStream::Write& write) {
            std::string out = "{\"status\":\"success\",\"data\":{\"targets\":[";
            bool first = true;
            const size_t begin = one ? only : 0;
            const size_t end = one ? only_end : snapshot->targets.size();
            for (size_t i = begin; i < end; ++i) {
              const TargetSnapshot& t = snapshot->targets[i];
              if (state_filter && t.state != *state_filter) continue;
              if (!first) out.push_back(',');
              first = false;
              out += Dump(TargetJson(t));
              if (out.size() >= kPieceBytes) {
                write(out);
                out.clear();
              }
            }
            out += "]}}\n";
            write(out);
          },
          head, kJsonContentType));
}

int HttpServer::ServeEvents(MHD_Connection* c, std::string_view query, bool head) {
  if (std::optional<std::string> follow = QueryParam(query, "follow")) {
    if (*follow == "1" || *follow == "true") return ServeFollow(c, query, head);
    if (*follow != "0" && *follow != "false") {
      return SendJsonError(c, 400, "bad_data",
                           "invalid follow \"" + *follow + "\": want 1 or true (or 0, false)");
    }
  }
  size_t limit = kMaxEventsLimit;
  if (std::optional<std::string> text = QueryParam(query, "limit")) {
    if (!ParseLimit(*text, kMaxEventsLimit, &limit)) {
      return SendJsonError(c, 400, "bad_data",
                           "invalid limit \"" + *text + "\": want an integer from 1 to " +
                               std::to_string(kMaxEventsLimit));
    }
  }
  std::optional<std::string> target_filter = QueryParam(query, "target");

  std::vector<Event> recent = events_.Recent(target_filter ? EventLog::kRingSize : limit);
  Json events = Json::array();
  for (const Event& e : recent) {
    if (events.size() >= limit) break;
    if (target_filter && e.target != *target_filter) continue;
    events.push_back(EventJson(e));
  }
  Json doc;
  doc["status"] = "success";
  doc["data"]["events"] = std::move(events);
  return SendJson(c, 200, doc);
}

int HttpServer::ServeFollow(MHD_Connection* c, std::string_view query, bool head) {
  std::string target = QueryParam(query, "target").value_or("");
  uint64_t after = 0;
  if (const char* last = Header(c, "Last-Event-ID")) {
    if (!ParseSeq(last, &after)) {
      return SendJsonError(c, 400, "bad_data",
                           "invalid Last-Event-ID \"" + std::string(last) +
                               "\": want the seq of an event");
    }
  }
  if (head) {
    return Queue(c, 200, Streamed(nullptr, true, kEventStreamContentType));
  }
  if (followers_.fetch_add(1) >= options_.max_followers) {
    followers_.fetch_sub(1);
    MHD_Response* r = Buffer(
        Dump(Json{{"status", "error"},
                  {"errorType", "unavailable"},
                  {"error", "too many followers: " + std::to_string(options_.max_followers) +
                                " clients already follow the events (the limit); retry later "
                                "or read /api/v1/events without follow"}}) +
            "\n",
        kJsonContentType);
    if (r) MHD_add_response_header(r, "Retry-After", "10");
    return Queue(c, 503, r);
  }
  auto* f = new Follow{this, nullptr, options_.follow_keepalive, "", 0, false};
  f->follower = events_.Follow(target, after, options_.follower_queue);
  // Tells the client at once that it is subscribed.
  f->pending = ": following connwatchd events\nretry: 2000\n\n";
  {
    std::lock_guard<std::mutex> lock(follow_mu_);
    if (stopping_) f->follower->Close();
    follows_.insert(f);
  }
  MHD_Response* r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, kPieceBytes,
                                                      &HttpCallbacks::ReadFollow, f,
                                                      &HttpCallbacks::FreeFollow);
  if (r == nullptr) {
    EndFollow(f);
    return MHD_NO;
  }
  AddCommonHeaders(r, kEventStreamContentType);
  // A quiet stream sends a comment every follow_keepalive, so it is never
  // idle for long; a client that stops reading is closed after four of them.
  const auto idle = std::chrono::duration_cast<std::chrono::seconds>(options_.follow_keepalive * 4);
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                            static_cast<unsigned>(std::max<int64_t>(idle.count(), 1)));
  return Queue(c, 200, r);
}

}  // namespace connwatch
