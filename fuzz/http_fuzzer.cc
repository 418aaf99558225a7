// libFuzzer target: the HTTP API's request handling (method, path, query
// string, headers) through the real HTTP server (libmicrohttpd) on 127.0.0.1:<free port>,
// backed by a fake DaemonControl with a fixed snapshot and a few events.
//
// Each input becomes one request on a fresh TCP connection (the write side is
// shut down after it, so nothing waits for more bytes). The query string is
// either sent as fuzzed or percent-encoded first, so both libmicrohttpd's parser
// and connwatch's own decoding of arbitrary bytes get exercised. The check:
// an answer comes within 5 s (no hang, no dead server), and it is never
// HttpServer's "500 internal error" (an exception escaped a handler).

#include <arpa/inet.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/event_log.h"
#include "web/http_server.h"
#include "core/snapshot.h"

namespace {

using connwatch::Reason;
using connwatch::TargetState;

std::shared_ptr<connwatch::TargetConfig> Config(std::string name, std::string address) {
  auto c = std::make_shared<connwatch::TargetConfig>();
  c->name = std::move(name);
  c->address = std::move(address);
  c->labels = {{"env", "prod"}, {"team", "a\"b\\c\xff"}};
  return c;
}

class FakeDaemon : public connwatch::DaemonControl {
 public:
  FakeDaemon() {
    auto s = std::make_shared<connwatch::Snapshot>();
    s->taken_unix = 1714567890.5;
    s->config_loaded = true;
    s->last_reload_successful = true;
    connwatch::TargetSnapshot up;
    up.config = Config("redis", "10.0.0.5:6379");
    up.state = TargetState::kUp;
    up.up = true;
    up.last_change_unix = 1714567800.125;
    up.has_last_event = true;
    up.last_event_kind = "connect";
    up.connects = 4;
    up.disconnects[static_cast<size_t>(Reason::kPeerReset)] = 2;
    up.has_rtt = true;
    up.rtt_seconds = 0.0004;
    s->targets.push_back(up);
    connwatch::TargetSnapshot down;
    down.config = Config("db \xc3\x28 weird", "db.example:5432");
    down.state = TargetState::kBackoff;
    down.has_last_event = true;
    down.last_event_kind = "connect_failure";
    down.last_reason = Reason::kRefused;
    down.last_errno = ECONNREFUSED;
    down.connect_failures[static_cast<size_t>(Reason::kRefused)] = 5;
    s->targets.push_back(down);
    s->targets_by_state[static_cast<size_t>(TargetState::kUp)] = 1;
    s->targets_by_state[static_cast<size_t>(TargetState::kBackoff)] = 1;
    s->connect_duration.bounds = {0.01, 0.1};
    s->connect_duration.buckets = {3, 1, 1};
    s->connect_duration.count = 5;
    s->connect_duration.sum = 0.5;
    snapshot_ = s;
  }
  std::shared_ptr<const connwatch::Snapshot> GetSnapshot() override {
    // Sometimes the loop "does not answer": the 503 paths.
    return (calls_.fetch_add(1) % 13 == 12) ? nullptr : snapshot_;
  }
  std::vector<std::string> Reload() override {
    if (calls_.fetch_add(1) % 2 == 0) return {};
    return {"main.yaml:1:1: targets: bad \xff", "second error"};
  }
  bool Healthy() override { return calls_.fetch_add(1) % 7 != 0; }
  bool Ready() override { return calls_.fetch_add(1) % 5 != 0; }

 private:
  std::shared_ptr<const connwatch::Snapshot> snapshot_;
  std::atomic<uint64_t> calls_{0};
};

struct Server {
  Server() : events(nullptr, connwatch::LogFormat::kLogfmt, connwatch::LogLevel::kError) {
    for (int i = 0; i < 20; ++i) {
      connwatch::Event e;
      e.unix_time = 1714567800 + i;
      e.kind = i % 2 ? "disconnect" : "connect";
      e.target = i % 3 ? "redis" : "db \xc3\x28 weird";
      e.address = "10.0.0.5:6379";
      e.has_reason = i % 2;
      e.reason = Reason::kPeerReset;
      e.err = i % 2 ? ECONNRESET : 0;
      e.detail = "detail \"quoted\" \x01\xff";
      events.Record(e);
    }
    connwatch::HttpServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.enable_lifecycle = true;
    options.request_timeout_ms = 2000;
    server = std::make_unique<connwatch::HttpServer>(options, daemon, events);
    std::string error = server->Start();
    if (!error.empty()) {
      std::fprintf(stderr, "http_fuzzer: cannot start the server: %s\n", error.c_str());
      std::abort();
    }
  }
  FakeDaemon daemon;
  connwatch::EventLog events;
  std::unique_ptr<connwatch::HttpServer> server;
};

Server* g_server = nullptr;

std::string PercentEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '=' || c == '&' || c == '%' || c == '+' || c == '-' || c == '.' || c == '_';
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Sends `request`, shuts down the write side, reads until the server closes.
// Returns false when no answer came within 5 s.
bool Exchange(int port, const std::string& request, std::string* response) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) std::abort();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    // NOTE: libFuzzer's timers interrupt system calls (EINTR); an interrupted
    // connect goes on in the background: wait for it.
    int err = errno;
    if (err == EINTR || err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int r;
      do {
        r = poll(&p, 1, 5000);
      } while (r < 0 && errno == EINTR);
      socklen_t len = sizeof err;
      err = r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : ETIMEDOUT;
    }
    if (err != 0) {
      std::fprintf(stderr, "http_fuzzer: connect: errno %d\n", err);
      close(fd);
      return false;
    }
  }
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may close early on a bad request.
    sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char buf[65536];
  bool done = false;
  while (!done) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      if (response->size() < (1 << 20)) response->append(buf, static_cast<size_t>(n));
    } else {
      done = true;  // EOF or reset
    }
  }
  close(fd);
  return done;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_server = new Server();  // lives for the whole run, like the daemon's.
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  static const char* const kMethods[] = {"GET",     "HEAD",  "POST",  "PUT",    "DELETE",
                                         "OPTIONS", "PATCH", "TRACE", "CONNECT"};
  static const char* const kPaths[] = {"/",
                                       "/metrics",
                                       "/-/healthy",
                                       "/-/ready",
                                       "/-/reload",
                                       "/api/v1/targets",
                                       "/api/v1/events",
                                       "/api/v1/../metrics",
                                       "/%2e%2e/etc/passwd"};
  std::string method = in.ConsumeBool() ? std::string(in.PickValueInArray(kMethods))
                                        : in.ConsumeRandomLengthString(16);
  std::string path = in.ConsumeBool() ? std::string(in.PickValueInArray(kPaths))
                                      : in.ConsumeRandomLengthString(64);
  const bool encode = in.ConsumeBool();
  std::string query = in.ConsumeRandomLengthString(256);
  if (encode) query = PercentEncode(query);
  std::string headers = in.ConsumeRandomLengthString(512);
  std::string body = in.ConsumeRemainingBytesAsString();

  std::string request = method + " " + path;
  if (!query.empty()) request += "?" + query;
  request += " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!headers.empty()) request += headers + "\r\n";
  if (!body.empty()) request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  request += "\r\n" + body;

  std::string response;
  if (!Exchange(g_server->server->port(), request, &response)) {
    std::fprintf(stderr, "http_fuzzer: no answer within 5 s to %zu request bytes\n",
                 request.size());
    std::abort();
  }
  // The server may drop a connection it cannot parse without a word; anything
  // it answers must be a status line, and a 500 means a handler threw.
  if (!response.empty()) {
    if (response.compare(0, 5, "HTTP/") != 0 || response.size() < 12) {
      std::fprintf(stderr, "http_fuzzer: not an HTTP response: %.80s\n", response.c_str());
      std::abort();
    }
    // A rejected reload is a 500 by design (the fake rejects every other one);
    // HttpServer's request callback answers an exception with "internal error".
    if (response.compare(9, 3, "500") == 0 &&
        response.find("\r\n\r\ninternal error") != std::string::npos) {
      std::fprintf(stderr, "http_fuzzer: 500 for request:\n%s\nresponse:\n%.400s\n",
                   request.c_str(), response.c_str());
      std::abort();
    }
  }
  return 0;
}
