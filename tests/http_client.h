#pragma once
// A tiny blocking HTTP/1.1 client for tests: one request per connection
// ("Connection: close"), an overall deadline, Content-Length / chunked / EOF
// framed bodies. Not for production; test threads only.
//
// Header-only on purpose: CMakeLists.txt builds the test binary from
// tests/*_test.cc, and every test that includes this shares the inline
// definitions.

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace connwatch {

struct HttpResponse {
  int status = 0;     // 0 when no valid response arrived; see `error`.
  std::string error;  // transport/parse failure, empty on success.
  // In arrival order; names as sent.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  bool ok() const { return error.empty() && status != 0; }
  // The first header named `name` (case-insensitive), "" if absent.
  std::string Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k.size() != name.size()) continue;
      bool same = true;
      for (size_t i = 0; i < k.size() && same; ++i) {
        same = std::tolower(static_cast<unsigned char>(k[i])) ==
               std::tolower(static_cast<unsigned char>(name[i]));
      }
      if (same) return v;
    }
    return "";
  }
  bool HasHeader(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), name.size()) == 0) {
        return true;
      }
    }
    return false;
  }
};

namespace http_client_internal {

using Clock = std::chrono::steady_clock;

inline int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Connects a TCP socket to host:port before `deadline`; -1 with `error` set.
// With `source` set, the socket is bound to that local address first (a
// second client address on loopback: 127.0.0.2).
inline int Connect(const std::string& host, int port, Clock::time_point deadline,
                   std::string* error, const std::string& source = "") {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    *error = "getaddrinfo(" + host + "): " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (!source.empty()) {
      addrinfo shints{};
      shints.ai_family = ai->ai_family;
      shints.ai_socktype = SOCK_STREAM;
      shints.ai_flags = AI_NUMERICHOST;
      addrinfo* src = nullptr;
      if (getaddrinfo(source.c_str(), "0", &shints, &src) != 0 ||
          bind(fd, src->ai_addr, src->ai_addrlen) != 0) {
        *error = "bind to " + source + ": " + std::strerror(errno);
        if (src) freeaddrinfo(src);
        close(fd);
        fd = -1;
        continue;
      }
      freeaddrinfo(src);
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, RemainingMs(deadline)) == 1) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr == 0) break;
        errno = soerr;
      } else {
        errno = ETIMEDOUT;
      }
    }
    *error = "connect to " + host + ":" + service + ": " + std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) error->clear();
  return fd;
}

inline bool SendAll(int fd, std::string_view data, Clock::time_point deadline, std::string* error) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, RemainingMs(deadline)) != 1) {
        *error = "timed out sending the request";
        return false;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    *error = std::string("send: ") + std::strerror(errno);
    return false;
  }
  return true;
}

// Reads until the peer closes (or the deadline). A reset after some data
// still counts as the end: servers may reset after answering a bad request.
inline bool ReadAll(int fd, Clock::time_point deadline, std::string* out, std::string* error) {
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int ms = RemainingMs(deadline);
      pollfd p{fd, POLLIN, 0};
      if (ms == 0 || poll(&p, 1, ms) != 1) {
        *error =
            "timed out waiting for the response (" + std::to_string(out->size()) + " bytes read)";
        return false;
      }
      continue;
    }
    if (errno == ECONNRESET && !out->empty()) return true;
    *error = std::string("recv: ") + std::strerror(errno);
    return false;
  }
}

inline bool Dechunk(std::string_view in, std::string* out) {
  for (;;) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) return false;
    std::string size_text(in.substr(0, eol));
    char* end = nullptr;
    size_t size = std::strtoul(size_text.c_str(), &end, 16);
    if (end == size_text.c_str()) return false;
    in.remove_prefix(eol + 2);
    if (size == 0) return true;
    if (in.size() < size + 2) return false;
    out->append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

}  // namespace http_client_internal

// Parses a complete raw HTTP/1.x response (as read until EOF).
inline HttpResponse ParseHttpResponse(std::string_view raw, bool head_request = false) {
  HttpResponse r;
  size_t end = raw.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    r.error = "no end of headers in " + std::to_string(raw.size()) + " bytes";
    return r;
  }
  std::string_view head = raw.substr(0, end);
  std::string_view rest = raw.substr(end + 4);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12) {
    r.error = "bad status line: " + std::string(status_line);
    return r;
  }
  r.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
  while (!head.empty()) {
    size_t line_end = head.find("\r\n");
    std::string_view line = head.substr(0, line_end);
    head = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  if (head_request) return r;
  if (strncasecmp(r.Header("Transfer-Encoding").c_str(), "chunked", 7) == 0) {
    if (!http_client_internal::Dechunk(rest, &r.body)) r.error = "bad chunked body";
  } else if (r.HasHeader("Content-Length")) {
    size_t length = std::strtoul(r.Header("Content-Length").c_str(), nullptr, 10);
    if (rest.size() < length) {
      r.error = "short body: " + std::to_string(rest.size()) + " of " + std::to_string(length);
    }
    r.body = std::string(rest.substr(0, length));
  } else {
    r.body = std::string(rest);
  }
  return r;
}

// Sends `raw` as is and returns everything the server answered until it
// closed (for malformed-request tests). On failure `error` is set.
inline std::string HttpRaw(const std::string& host, int port, std::string_view raw,
                           std::string* error,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10),
                           const std::string& source = "") {
  namespace internal = http_client_internal;
  auto deadline = internal::Clock::now() + timeout;
  std::string out;
  int fd = internal::Connect(host, port, deadline, error, source);
  if (fd < 0) return out;
  if (internal::SendAll(fd, raw, deadline, error)) internal::ReadAll(fd, deadline, &out, error);
  close(fd);
  return out;
}

// One request; `extra_headers` are full lines without CRLF ("Accept: x").
inline HttpResponse HttpRequest(const std::string& host, int port, const std::string& method,
                                const std::string& path, const std::string& body = "",
                                std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                const std::vector<std::string>& extra_headers = {},
                                const std::string& source = "") {
  std::string request = method + " " + path + " HTTP/1.1\r\n";
  const bool v6 = host.find(':') != std::string::npos;
  request += "Host: " + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "\r\n";
  request += "Connection: close\r\n";
  for (const std::string& h : extra_headers) request += h + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n";
  request += body;
  std::string error;
  std::string raw = HttpRaw(host, port, request, &error, timeout, source);
  if (!error.empty()) {
    HttpResponse r;
    r.error = method + " " + path + ": " + error;
    return r;
  }
  HttpResponse r = ParseHttpResponse(raw, method == "HEAD");
  if (!r.error.empty()) r.error = method + " " + path + ": " + r.error;
  return r;
}

inline HttpResponse HttpGet(const std::string& host, int port, const std::string& path,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return HttpRequest(host, port, "GET", path, "", timeout);
}

// True once the server closed `fd` (EOF or reset) within `timeout`; what
// it sent before is read and dropped.
inline bool ClosedWithin(int fd, std::chrono::milliseconds timeout) {
  namespace internal = http_client_internal;
  const auto deadline = internal::Clock::now() + timeout;
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      return true;
    }
    const int left = internal::RemainingMs(deadline);
    if (left == 0) return false;
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, left);
  }
}

// GET from the local address `source` (e.g. "127.0.0.2").
inline HttpResponse HttpGetFrom(const std::string& source, const std::string& host, int port,
                                const std::string& path,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return HttpRequest(host, port, "GET", path, "", timeout, {}, source);
}

inline HttpResponse HttpPost(const std::string& host, int port, const std::string& path,
                             const std::string& body = "",
                             std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return HttpRequest(host, port, "POST", path, body, timeout);
}

}  // namespace connwatch
