#include "web/http_server.h"

#include <civetweb.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "web/gzip_stream.h"
#include "web/metrics_view.h"
#include "core/reason.h"
#include "version.h"

namespace connwatch {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";
constexpr std::string_view kHtmlContentType = "text/html; charset=utf-8";
constexpr std::string_view kJsonContentType = "application/json";
constexpr size_t kMaxEventsLimit = EventLog::kRingSize;

// civetweb keeps global state (mg_init_library); initialize it once per
// process and never tear it down.
void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

// "2024-05-01T12:34:56.789Z"; null for a time that was never set.
Json Rfc3339(double unix_time) {
  if (!(unix_time > 0) || !std::isfinite(unix_time)) return nullptr;
  double whole = std::floor(unix_time);
  time_t secs = static_cast<time_t>(whole);
  int millis = static_cast<int>(std::lround((unix_time - whole) * 1000));
  if (millis >= 1000) {
    secs += 1;
    millis -= 1000;
  }
  struct tm tm_utc;
  if (gmtime_r(&secs, &tm_utc) == nullptr) return nullptr;
  char buf[96];  // room for any int year, keeps -Wformat-truncation quiet.
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm_utc.tm_year + 1900,
                tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec,
                millis);
  return std::string(buf);
}

Json StringOrNull(std::string_view s) {
  if (s.empty()) return nullptr;
  return std::string(s);
}

// tcpi_state values of include/net/tcp_states.h.
Json TcpStateName(uint8_t state) {
  static constexpr std::string_view kNames[] = {
      "",      "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT",
      "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV"};
  if (state > 0 && state < std::size(kNames)) return std::string(kNames[state]);
  return std::to_string(state);
}

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --- Query strings -----------------------------------------------------

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding; a malformed %-escape is kept
// as it is.
std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// The decoded value of the first `key` parameter of `query`.
std::optional<std::string> QueryParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (UrlDecode(name) == key) return UrlDecode(value);
  }
  return std::nullopt;
}

bool ParseState(std::string_view word, TargetState* state) {
  for (size_t i = 0; i < kStateCount; ++i) {
    if (StateName(static_cast<TargetState>(i)) == word) {
      *state = static_cast<TargetState>(i);
      return true;
    }
  }
  return false;
}

// A decimal integer in [1, kMaxEventsLimit], nothing else.
bool ParseLimit(std::string_view text, size_t* limit) {
  if (text.empty() || text.size() > 4) return false;
  size_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<size_t>(c - '0');
  }
  if (value < 1 || value > kMaxEventsLimit) return false;
  *limit = value;
  return true;
}

// True when an Accept-Encoding header value allows gzip (RFC 9110 12.5.3):
// "gzip" or "*" listed without q=0.
bool AcceptsGzip(const char* header) {
  if (header == nullptr) return false;
  std::string_view rest(header);
  bool gzip = false, star = false, gzip_refused = false;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) coding.remove_prefix(1);
    while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) coding.remove_suffix(1);
    bool refused = false;
    if (semi != std::string_view::npos) {
      std::string params(item.substr(semi + 1));
      params.erase(std::remove(params.begin(), params.end(), ' '), params.end());
      if (params.rfind("q=0", 0) == 0 && params.find_first_not_of("0.", 2) == std::string::npos) {
        refused = true;
      }
    }
    if (coding.size() == 4 && strncasecmp(coding.data(), "gzip", 4) == 0) {
      (refused ? gzip_refused : gzip) = true;
    } else if (coding == "*" && !refused) {
      star = true;
    }
  }
  return gzip || (star && !gzip_refused);
}

// --- Responses ---------------------------------------------------------

struct Response {
  int status = 200;
  std::string_view content_type = kTextContentType;
  std::string body;
  std::string_view allow;     // for 405
  bool authenticate = false;  // 401: add WWW-Authenticate.
};

// "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 IMF-fixdate), locale-free.
std::string HttpDate() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(nullptr);
  struct tm tm_utc;
  gmtime_r(&now, &tm_utc);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm_utc.tm_wday % 7],
                tm_utc.tm_mday, kMonths[tm_utc.tm_mon % 12], tm_utc.tm_year + 1900, tm_utc.tm_hour,
                tm_utc.tm_min, tm_utc.tm_sec);
  return buf;
}

int Send(mg_connection* conn, const Response& r, bool head) {
  mg_response_header_start(conn, r.status);
  // NOTE: civetweb 1.15 fills a missing Date header with gmtime(), which is
  // not thread-safe (ThreadSanitizer flags two workers racing in it); with our
  // own Date it adds none.
  const std::string date = HttpDate();
  mg_response_header_add(conn, "Date", date.c_str(), -1);
  mg_response_header_add(conn, "Content-Type", r.content_type.data(),
                         static_cast<int>(r.content_type.size()));
  std::string length = std::to_string(r.body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
  if (!r.allow.empty()) {
    mg_response_header_add(conn, "Allow", r.allow.data(), static_cast<int>(r.allow.size()));
  }
  if (r.authenticate) {
    mg_response_header_add(conn, "WWW-Authenticate",
                           "Basic realm=\"connwatchd\", charset=\"UTF-8\"", -1);
  }
  mg_response_header_send(conn);
  if (!head) {
    const char* data = r.body.data();
    size_t left = r.body.size();
    while (left > 0) {
      int n = mg_write(conn, data, left);
      if (n <= 0) break;  // the client went away.
      data += n;
      left -= static_cast<size_t>(n);
    }
  }
  return r.status;
}

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response JsonResponse(int status, const Json& j) {
  Response r;
  r.status = status;
  r.content_type = kJsonContentType;
  r.body = Dump(j);
  r.body.push_back('\n');
  return r;
}

// Prometheus API style: {"status":"error","errorType":...,"error":...}.
Response JsonError(int status, std::string_view type, std::string_view message) {
  Json j;
  j["status"] = "error";
  j["errorType"] = std::string(type);
  j["error"] = std::string(message);
  return JsonResponse(status, j);
}

Response MethodNotAllowed(std::string_view allow) {
  Response r = Text(405, "Method Not Allowed\n");
  r.allow = allow;
  return r;
}

constexpr std::string_view kReadMethods = "GET, HEAD";
constexpr std::string_view kReloadMethods = "POST, PUT";

// --- JSON documents ----------------------------------------------------

Json ReasonCounts(const std::array<uint64_t, kReasonCount>& counts) {
  Json j = Json::object();
  for (size_t r = 0; r < kReasonCount; ++r) {
    if (counts[r] > 0) j[std::string(ReasonName(static_cast<Reason>(r)))] = counts[r];
  }
  return j;
}

Json TargetJson(const TargetSnapshot& t) {
  Json j;
  const TargetConfig* config = t.config.get();
  j["name"] = config ? config->name : std::string();
  j["address"] = config ? config->address : std::string();
  j["resolved_address"] = StringOrNull(t.resolved_address);
  Json labels = Json::object();
  if (config) {
    for (const auto& [name, value] : config->labels) labels[name] = value;
  }
  j["labels"] = std::move(labels);
  j["state"] = std::string(StateName(t.state));
  j["up"] = t.up;
  j["since"] = Rfc3339(t.last_change_unix);
  if (t.has_last_event) {
    Json e;
    e["kind"] = t.last_event_kind;
    e["reason"] = t.last_event_kind == "connect" ? Json(nullptr)
                                                 : Json(std::string(ReasonName(t.last_reason)));
    e["errno"] = StringOrNull(ErrnoName(t.last_errno));
    e["detected_by"] = t.has_last_detected_by ? Json(std::string(DetectorName(t.last_detected_by)))
                                              : Json(nullptr);
    e["time"] = Rfc3339(t.last_event_unix);
    j["last_event"] = std::move(e);
  } else {
    j["last_event"] = nullptr;
  }
  j["connects"] = t.connects;
  j["connect_failures"] = ReasonCounts(t.connect_failures);
  j["disconnects"] = ReasonCounts(t.disconnects);
  j["icmp_errors"] = ReasonCounts(t.icmp_errors);
  j["rtt_seconds"] = t.has_rtt ? Json(t.rtt_seconds) : Json(nullptr);
  j["retransmits"] = t.retransmits_total;
  j["heartbeat_seconds"] = t.has_heartbeat ? Json(t.heartbeat_seconds) : Json(nullptr);
  return j;
}

Json EventJson(const Event& e) {
  Json j;
  j["seq"] = e.seq;
  j["time"] = Rfc3339(e.unix_time);
  j["level"] = std::string(LogLevelName(e.level));
  j["kind"] = e.kind;
  j["target"] = e.target;
  j["address"] = e.address;
  j["resolved_address"] = StringOrNull(e.resolved_address);
  j["reason"] = e.has_reason ? Json(std::string(ReasonName(e.reason))) : Json(nullptr);
  j["errno"] = StringOrNull(ErrnoName(e.err));
  j["detected_by"] =
      e.has_detected_by ? Json(std::string(DetectorName(e.detected_by))) : Json(nullptr);
  j["connected_for_seconds"] = e.connected_for >= 0 ? Json(e.connected_for) : Json(nullptr);
  j["connect_seconds"] = e.connect_seconds >= 0 ? Json(e.connect_seconds) : Json(nullptr);
  if (e.tcp.valid) {
    Json tcp;
    tcp["state"] = TcpStateName(e.tcp.state);
    tcp["rtt_seconds"] = e.tcp.rtt_us / 1e6;
    tcp["retransmits"] = e.tcp.retransmits;
    tcp["total_retrans"] = e.tcp.total_retrans;
    tcp["probes"] = e.tcp.probes;
    tcp["unacked"] = e.tcp.unacked;
    tcp["last_data_recv_seconds"] = e.tcp.last_data_recv_ms / 1e3;
    j["tcp"] = std::move(tcp);
  } else {
    j["tcp"] = nullptr;
  }
  j["detail"] = e.detail;
  return j;
}

std::string LandingPage() {
  std::string page;
  page.reserve(1024);
  page +=
      "<!DOCTYPE html>\n"
      "<html>\n<head><meta charset=\"utf-8\"><title>connwatch</title></head>\n<body>\n"
      "<h1>connwatch</h1>\n<p>Version ";
  page += kVersion;
  page += " (revision ";
  page += kRevision;
  page +=
      ")</p>\n<ul>\n"
      "<li><a href=\"metrics\">metrics</a></li>\n"
      "<li><a href=\"api/v1/targets\">api/v1/targets</a></li>\n"
      "<li><a href=\"api/v1/events\">api/v1/events</a></li>\n"
      "<li><a href=\"-/healthy\">-/healthy</a></li>\n"
      "<li><a href=\"-/ready\">-/ready</a></li>\n"
      "</ul>\n</body>\n</html>\n";
  return page;
}

bool IsPort(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

// A host name or IPv4 literal civetweb can take without misparsing it.
bool IsPlainHost(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool IsIpv6Literal(std::string_view s) {
  if (s.empty() || s.size() > 45) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') ||
              c == ':' || c == '.';
    if (!ok) return false;
  }
  return s.find(':') != std::string_view::npos;
}

// The address to connect to in order to reach our own listener.
std::string WakeHost(std::string_view ports) {
  std::string host;
  if (!ports.empty() && ports.front() == '[') {
    host = std::string(ports.substr(1, ports.find(']') - 1));
  } else if (size_t colon = ports.rfind(':'); colon != std::string_view::npos) {
    host = std::string(ports.substr(0, colon));
  }
  if (host.empty() || host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

// Opens and closes one TCP connection to host:port, waiting at most 100 ms.
void WakeListener(const std::string& host, int port) {
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
    }
    close(fd);
  }
  freeaddrinfo(res);
}

}  // namespace

bool ListenAddressToCivetweb(std::string_view address, bool ipv6_supported, std::string* ports,
                             std::string* error) {
  auto fail = [&](std::string_view why) {
    *error = "invalid listen address \"" + std::string(address) + "\": " + std::string(why);
    return false;
  };
  if (address.empty()) return fail("empty");
  std::string_view host, port;
  bool ipv6 = false;
  if (address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos) return fail("missing ']'");
    host = address.substr(1, close - 1);
    std::string_view rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return fail("missing port");
    port = rest.substr(1);
    if (!IsIpv6Literal(host)) return fail("not an IPv6 address between the brackets");
    ipv6 = true;
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return fail("missing port (want host:port or :port)");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail("an IPv6 address needs brackets, e.g. [::1]:9798");
    }
    if (!host.empty() && !IsPlainHost(host)) return fail("bad host");
  }
  if (!IsPort(port)) return fail("bad port");
  if (ipv6 && !ipv6_supported) {
    return fail("this civetweb was built without IPv6 support");
  }
  if (host.empty()) {
    // All interfaces; "+port" is IPv4 and IPv6 on one socket.
    *ports = (ipv6_supported ? "+" : "") + std::string(port);
  } else if (ipv6) {
    *ports = "[" + std::string(host) + "]:" + std::string(port);
  } else {
    *ports = std::string(host) + ":" + std::string(port);
  }
  return true;
}

HttpServer::HttpServer(HttpServerOptions options, DaemonControl& control, EventLog& events)
    : options_(std::move(options)), control_(control), events_(events) {}

HttpServer::HttpServer(std::string listen_address, DaemonControl& control, EventLog& events,
                       bool enable_lifecycle)
    : control_(control), events_(events) {
  options_.listen_address = std::move(listen_address);
  options_.enable_lifecycle = enable_lifecycle;
}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::Start() {
  if (ctx_) return "HTTP server already started";
  InitCivetwebOnce();
  std::string error;
  const bool ipv6 = mg_check_feature(8) != 0;
  if (options_.web.tls) {
    // civetweb serves plaintext on an ephemeral loopback port and TlsFront
    // owns the public address (IPv6 too: it does not depend on civetweb).
    std::string ignored;
    if (!ListenAddressToCivetweb(options_.listen_address, true, &ignored, &error)) return error;
    const std::string& a = options_.listen_address;
    const size_t colon = a.rfind(':');
    TlsFrontOptions front;
    front.host = a.front() == '[' ? a.substr(1, a.find(']') - 1) : a.substr(0, colon);
    front.port = std::stoi(a.substr(colon + 1));
    front.max_connections = static_cast<size_t>(std::max(1, options_.num_threads)) * 4;
    front.idle_timeout_ms = std::max(1, options_.request_timeout_ms);
    // Made before civetweb starts, so that no worker thread ever sees it unset.
    tls_front_ = std::make_unique<TlsFront>(std::move(front), *options_.web.tls);
    listening_ports_ = "127.0.0.1:0";
  } else if (!ListenAddressToCivetweb(options_.listen_address, ipv6, &listening_ports_, &error)) {
    return error;
  }
  if (!options_.web.basic_auth_users.empty()) {
    auth_ = std::make_unique<BasicAuthenticator>(options_.web.basic_auth_users);
  }
  const std::string threads = std::to_string(std::max(1, options_.num_threads));
  const std::string timeout = std::to_string(std::max(1, options_.request_timeout_ms));
  // clang-format off
  const char* opts[] = {
      "listening_ports", listening_ports_.c_str(),
      "num_threads", threads.c_str(),
      "request_timeout_ms", timeout.c_str(),
      // One request per connection: an idle keep-alive client would otherwise
      // hold one of the few workers.
      "enable_keep_alive", "no",
      nullptr};
  // clang-format on
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  callbacks.log_message = &HttpServer::LogMessage;

  {
    std::lock_guard<std::mutex> lock(log_mu_);
    capture_log_ = true;
    start_log_.clear();
  }
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error_data;
  error_data.code = &error_code;
  error_data.text = error_text;
  error_data.text_buffer_size = sizeof error_text;
  mg_init_data init;
  init.callbacks = &callbacks;
  init.user_data = this;
  init.configuration_options = opts;
  ctx_ = mg_start2(&init, &error_data);
  std::string log;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    capture_log_ = false;
    log.swap(start_log_);
  }
  if (!ctx_) {
    std::string why = log.empty() ? std::string(error_text) : log;
    if (why.empty()) why = "civetweb failed to start";
    return "listen address \"" + options_.listen_address + "\": " + why;
  }
  mg_set_request_handler(ctx_, "/", &HttpServer::HandleRequest, this);

  mg_server_port server_ports[4];
  int n = mg_get_server_ports(ctx_, 4, server_ports);
  port_ = n > 0 ? server_ports[0].port : 0;
  backend_port_ = port_;

  if (tls_front_) {
    std::string front_error = tls_front_->Start(backend_port_);
    if (!front_error.empty()) {
      Stop();
      port_ = 0;
      return "listen address \"" + options_.listen_address + "\": " + front_error;
    }
    port_ = tls_front_->port();
  }
  return "";
}

void HttpServer::Stop() {
  if (tls_front_) tls_front_->Stop();
  if (!ctx_) return;
  // NOTE: civetweb 1.15's master thread looks at its stop flag only between
  // poll() calls on the listening sockets, which time out after ~2 s
  // (measured 1.7 s per mg_stop). A connection to our own listener wakes it,
  // so connect repeatedly while mg_stop runs; this takes Stop() to ~20 ms.
  std::atomic<bool> stopped{false};
  mg_context* ctx = ctx_;
  std::thread stopper([ctx, &stopped] {
    mg_stop(ctx);
    stopped.store(true);
  });
  const std::string host = WakeHost(listening_ports_);
  const int civetweb_port = backend_port_;
  while (!stopped.load()) {
    WakeListener(host, civetweb_port);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stopper.join();
  ctx_ = nullptr;
}

int HttpServer::LogMessage(const mg_connection* conn, const char* message) {
  const mg_context* ctx = conn ? mg_get_context(conn) : nullptr;
  auto* self = ctx ? static_cast<HttpServer*>(mg_get_user_data(ctx)) : nullptr;
  if (self && message) {
    std::lock_guard<std::mutex> lock(self->log_mu_);
    if (self->capture_log_) {
      // civetweb ends with a generic "Failed to setup server ports" after
      // the specific cause; keep the cause.
      if (self->start_log_.empty()) self->start_log_ = message;
    }
  }
  return 1;  // handled: civetweb prints nothing itself.
}

int HttpServer::HandleRequest(mg_connection* conn, void* self) {
  try {
    return static_cast<HttpServer*>(self)->Handle(conn);
  } catch (const std::exception& e) {
    return Send(conn, Text(500, std::string("internal error: ") + e.what() + "\n"), false);
  } catch (...) {
    return Send(conn, Text(500, "internal error\n"), false);
  }
}

int HttpServer::Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (!info) return 0;
  const std::string_view method = info->request_method ? info->request_method : "";
  const std::string_view path = info->local_uri ? info->local_uri : "";
  const std::string_view query = info->query_string ? info->query_string : "";
  const bool head = method == "HEAD";
  const bool read = method == "GET" || head;

  if (tls_front_) {
    // Only connections relayed by our TLS front: a local process that finds
    // the loopback port does not get around TLS.
    const bool local = std::string_view(info->remote_addr) == "127.0.0.1";
    if (!local || !tls_front_->IsRelayPort(info->remote_port)) {
      return Send(conn, Text(403, "This server is served over TLS only.\n"), head);
    }
  }
  if (auth_) {
    const char* authorization = mg_get_header(conn, "Authorization");
    if (!auth_->Check(authorization ? authorization : "")) {
      Response r = Text(401, "Unauthorized\n");
      r.authenticate = true;
      return Send(conn, r, head);
    }
  }

  auto route_read = [&](auto serve) {
    return read ? serve() : Send(conn, MethodNotAllowed(kReadMethods), false);
  };
  if (path == "/metrics") return route_read([&] { return ServeMetrics(conn, head); });
  if (path == "/") return route_read([&] { return ServeLanding(conn, head); });
  if (path == "/-/healthy") return route_read([&] { return ServeHealthy(conn, head); });
  if (path == "/-/ready") return route_read([&] { return ServeReady(conn, head); });
  if (path == "/api/v1/targets") {
    return route_read([&] { return ServeTargets(conn, query, head); });
  }
  if (path == "/api/v1/events") return route_read([&] { return ServeEvents(conn, query, head); });
  if (path == "/-/reload") {
    if (method == "POST" || method == "PUT") return ServeReload(conn);
    return Send(conn, MethodNotAllowed(kReloadMethods), head);
  }
  return Send(conn, Text(404, "404 page not found\n"), head);
}

int HttpServer::ServeMetrics(mg_connection* conn, bool head) {
  std::shared_ptr<const Snapshot> snapshot = control_.GetSnapshot();
  if (!snapshot) {
    return Send(conn, Text(503, "snapshot unavailable: the event loop did not answer in time\n"),
                head);
  }
  const bool gzip = AcceptsGzip(mg_get_header(conn, "Accept-Encoding"));
  // Streamed with chunked transfer encoding: the body is written in pieces of
  // about 64 KiB as it is produced (and compressed), never held whole.
  mg_response_header_start(conn, 200);
  const std::string date = HttpDate();
  mg_response_header_add(conn, "Date", date.c_str(), -1);
  mg_response_header_add(conn, "Content-Type", kMetricsContentType.data(),
                         static_cast<int>(kMetricsContentType.size()));
  if (gzip) mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
  mg_response_header_add(conn, "Transfer-Encoding", "chunked", -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
  mg_response_header_send(conn);
  if (head) return 200;
  bool client_gone = false;
  auto send = [conn, &client_gone](std::string_view piece) {
    if (client_gone || piece.empty()) return;
    if (mg_send_chunk(conn, piece.data(), static_cast<unsigned>(piece.size())) <= 0) {
      client_gone = true;
    }
  };
  if (gzip) {
    GzipStream compressed(send);
    StreamMetrics(*snapshot, [&compressed](std::string_view piece) { compressed.Write(piece); });
    compressed.Finish();
  } else {
    StreamMetrics(*snapshot, send);
  }
  if (!client_gone) mg_send_chunk(conn, "", 0);  // the last, empty chunk
  return 200;
}

int HttpServer::ServeLanding(mg_connection* conn, bool head) {
  Response r;
  r.content_type = kHtmlContentType;
  r.body = LandingPage();
  return Send(conn, r, head);
}

int HttpServer::ServeHealthy(mg_connection* conn, bool head) {
  if (control_.Healthy()) return Send(conn, Text(200, "OK"), head);
  return Send(conn, Text(503, "Service Unavailable"), head);
}

int HttpServer::ServeReady(mg_connection* conn, bool head) {
  if (control_.Ready()) return Send(conn, Text(200, "OK"), head);
  return Send(conn, Text(503, "Service Unavailable"), head);
}

int HttpServer::ServeReload(mg_connection* conn) {
  if (!options_.enable_lifecycle) {
    return Send(conn, Text(403, "Lifecycle API is not enabled.\n"), false);
  }
  std::vector<std::string> errors = control_.Reload();
  if (errors.empty()) return Send(conn, Text(200, "OK"), false);
  std::string body;
  for (const std::string& line : errors) {
    body += line;
    body += '\n';
  }
  return Send(conn, Text(500, std::move(body)), false);
}

int HttpServer::ServeTargets(mg_connection* conn, std::string_view query, bool head) {
  std::optional<TargetState> state_filter;
  if (std::optional<std::string> state = QueryParam(query, "state")) {
    TargetState parsed;
    if (!ParseState(*state, &parsed)) {
      return Send(conn,
                  JsonError(400, "bad_data",
                            "invalid state \"" + *state +
                                "\": want one of backoff, resolving, connecting, up"),
                  head);
    }
    state_filter = parsed;
  }
  std::optional<std::string> target_filter = QueryParam(query, "target");

  std::shared_ptr<const Snapshot> snapshot = control_.GetSnapshot();
  if (!snapshot) {
    return Send(conn,
                JsonError(503, "unavailable",
                          "snapshot unavailable: the event loop did not answer in time"),
                head);
  }
  Json targets = Json::array();
  if (target_filter) {
    const TargetSnapshot* found = nullptr;
    for (const TargetSnapshot& t : snapshot->targets) {
      if (t.config && t.config->name == *target_filter) {
        found = &t;
        break;
      }
    }
    if (!found) {
      return Send(conn, JsonError(404, "not_found", "unknown target \"" + *target_filter + "\""),
                  head);
    }
    if (!state_filter || found->state == *state_filter) targets.push_back(TargetJson(*found));
  } else {
    for (const TargetSnapshot& t : snapshot->targets) {
      if (state_filter && t.state != *state_filter) continue;
      targets.push_back(TargetJson(t));
    }
  }
  Json doc;
  doc["status"] = "success";
  doc["data"]["targets"] = std::move(targets);
  return Send(conn, JsonResponse(200, doc), head);
}

int HttpServer::ServeEvents(mg_connection* conn, std::string_view query, bool head) {
  size_t limit = kMaxEventsLimit;
  if (std::optional<std::string> text = QueryParam(query, "limit")) {
    if (!ParseLimit(*text, &limit)) {
      return Send(conn,
                  JsonError(400, "bad_data",
                            "invalid limit \"" + *text + "\": want an integer from 1 to " +
                                std::to_string(kMaxEventsLimit)),
                  head);
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
  return Send(conn, JsonResponse(200, doc), head);
}

}  // namespace connwatch
