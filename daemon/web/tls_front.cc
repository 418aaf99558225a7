#include "web/tls_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

namespace connwatch {

namespace {

constexpr size_t kBufferLimit = 64 * 1024;  // per direction.

SSL_CTX* Ctx(void* p) { return static_cast<SSL_CTX*>(p); }

std::string Errno(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Binds and listens; -1 with `error` set.
int Listen(const std::string& host, int port, std::string* error) {
  std::string service = std::to_string(port);
  if (host.empty()) {
    // All interfaces: one dual-stack IPv6 socket, or IPv4 where IPv6 is off.
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      int off = 0, on = 1;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_any;
      a.sin6_port = htons(static_cast<uint16_t>(port));
      if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd, 128) == 0) {
        return fd;
      }
      *error = Errno("cannot bind to [::]:" + service);
      close(fd);
      if (errno == EADDRINUSE) return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *error = Errno("socket");
      return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd, 128) == 0) {
      return fd;
    }
    *error = Errno("cannot bind to 0.0.0.0:" + service);
    close(fd);
    return -1;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    *error = "cannot resolve \"" + host + "\": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
    *error = Errno("cannot bind to " + host + ":" + service);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

// Non-blocking connect to 127.0.0.1:port, waiting at most `timeout_ms`.
int ConnectBackend(int port, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno != EINPROGRESS) {
      close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 ||
        soerr != 0) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

}  // namespace

TlsFront::TlsFront(TlsFrontOptions options, WebTlsConfig tls)
    : options_(std::move(options)), tls_(std::move(tls)) {}

TlsFront::~TlsFront() {
  Stop();
  if (ssl_ctx_) SSL_CTX_free(Ctx(ssl_ctx_));
}

std::string TlsFront::Start(int backend_port) {
  if (listen_fd_ >= 0) return "TLS listener already started";
  backend_port_ = backend_port;
  if (!ssl_ctx_) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return "cannot create a TLS context";
    ssl_ctx_ = ctx;
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    std::string error = ConfigureTlsContext(tls_, ctx);
    if (!error.empty()) return error;
  }
  std::string error;
  listen_fd_ = Listen(options_.host, options_.port, &error);
  if (listen_fd_ < 0) return error;
  if (!SetNonBlocking(listen_fd_)) {
    error = Errno("fcntl");
    close(listen_fd_);
    listen_fd_ = -1;
    return error;
  }
  port_ = BoundPort(listen_fd_);
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    error = Errno("eventfd");
    close(listen_fd_);
    listen_fd_ = -1;
    return error;
  }
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return "";
}

void TlsFront::Stop() {
  if (listen_fd_ < 0) return;
  uint64_t one = 1;
  ssize_t ignored = write(stop_fd_, &one, sizeof one);
  (void)ignored;
  if (accept_thread_.joinable()) accept_thread_.join();
  for (Worker& w : workers_) {
    if (w.thread.joinable()) w.thread.join();
  }
  workers_.clear();
  close(listen_fd_);
  close(stop_fd_);
  listen_fd_ = -1;
  stop_fd_ = -1;
}

bool TlsFront::IsRelayPort(int port) const {
  std::lock_guard<std::mutex> lock(ports_mu_);
  return relay_ports_.count(port) > 0;
}

void TlsFront::ReapFinished() {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done.load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

void TlsFront::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int n = poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    ReapFinished();
    if (n <= 0 || !(fds[0].revents & POLLIN)) continue;
    while (true) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;  // EAGAIN, or a transient error: back to poll.
      if (workers_.size() >= options_.max_connections) ReapFinished();
      if (workers_.size() >= options_.max_connections) {
        close(fd);  // over the limit: the client may retry.
        continue;
      }
      Worker& w = workers_.emplace_back();
      w.thread = std::thread([this, fd, &w] { Relay(fd, &w); });
    }
  }
}

// Relays one TLS connection: handshake, then bytes both ways until both sides
// are done, an error, Stop(), or idle_timeout_ms without progress.
void TlsFront::Relay(int client_fd, Worker* self) {
  using Clock = std::chrono::steady_clock;
  SSL* ssl = SSL_new(Ctx(ssl_ctx_));
  int backend_fd = -1;
  int backend_port = 0;
  auto finish = [&] {
    if (backend_port != 0) {
      std::lock_guard<std::mutex> lock(ports_mu_);
      if (--relay_ports_[backend_port] <= 0) relay_ports_.erase(backend_port);
    }
    if (backend_fd >= 0) close(backend_fd);
    if (ssl) SSL_free(ssl);
    close(client_fd);
    ERR_clear_error();
    self->done.store(true);
  };
  if (!ssl || SSL_set_fd(ssl, client_fd) != 1) return finish();
  SSL_set_accept_state(ssl);

  auto deadline = Clock::now() + std::chrono::milliseconds(options_.idle_timeout_ms);
  auto wait = [&](int fd_a, short ev_a, int fd_b, short ev_b) {
    int ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (ms <= 0) return false;
    pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {fd_a, ev_a, 0}, {fd_b, ev_b, 0}};
    int n = poll(fds, 3, ms);  // negative fds are ignored.
    if (n < 0) return errno == EINTR;
    if (fds[0].revents) return false;
    return n > 0;
  };

  // The handshake.
  while (true) {
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) break;
    int err = SSL_get_error(ssl, rc);
    short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0 || !wait(client_fd, ev, -1, 0)) return finish();
  }

  backend_fd = ConnectBackend(backend_port_, 1000);
  if (backend_fd < 0) return finish();
  {
    sockaddr_in local{};
    socklen_t len = sizeof local;
    if (getsockname(backend_fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return finish();
    backend_port = ntohs(local.sin_port);
    std::lock_guard<std::mutex> lock(ports_mu_);
    ++relay_ports_[backend_port];
  }

  std::string to_backend, to_client;
  bool client_eof = false, backend_eof = false, backend_shut = false;
  char buf[16384];
  while (true) {
    bool progress = false;
    short client_ev = 0, backend_ev = 0;

    // TLS -> plaintext buffer.
    if (!client_eof && to_backend.size() < kBufferLimit) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) {
        to_backend.append(buf, static_cast<size_t>(n));
        progress = true;
      } else {
        int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_WANT_READ) {
          client_ev |= POLLIN;
        } else if (err == SSL_ERROR_WANT_WRITE) {
          client_ev |= POLLOUT;
        } else if (err == SSL_ERROR_ZERO_RETURN) {
          client_eof = true;
          progress = true;
        } else {
          return finish();  // reset, or a TLS error.
        }
      }
    }
    // Plaintext buffer -> backend.
    if (!to_backend.empty()) {
      ssize_t n = send(backend_fd, to_backend.data(), to_backend.size(), MSG_NOSIGNAL);
      if (n > 0) {
        to_backend.erase(0, static_cast<size_t>(n));
        progress = true;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        backend_ev |= POLLOUT;
      } else if (n < 0 && errno != EINTR) {
        return finish();
      }
    } else if (client_eof && !backend_shut) {
      shutdown(backend_fd, SHUT_WR);
      backend_shut = true;
      progress = true;
    }
    // Backend -> buffer.
    if (!backend_eof && to_client.size() < kBufferLimit) {
      ssize_t n = recv(backend_fd, buf, sizeof buf, 0);
      if (n > 0) {
        to_client.append(buf, static_cast<size_t>(n));
        progress = true;
      } else if (n == 0) {
        backend_eof = true;
        progress = true;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        backend_ev |= POLLIN;
      } else if (errno != EINTR) {
        return finish();
      }
    }
    // Buffer -> TLS.
    if (!to_client.empty()) {
      int n = SSL_write(ssl, to_client.data(), static_cast<int>(to_client.size()));
      if (n > 0) {
        to_client.erase(0, static_cast<size_t>(n));
        progress = true;
      } else {
        int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_WANT_WRITE) {
          client_ev |= POLLOUT;
        } else if (err == SSL_ERROR_WANT_READ) {
          client_ev |= POLLIN;
        } else {
          return finish();
        }
      }
    }
    if (backend_eof && to_client.empty()) {
      SSL_shutdown(ssl);  // best effort close_notify; the response is complete.
      return finish();
    }
    if (progress) {
      deadline = Clock::now() + std::chrono::milliseconds(options_.idle_timeout_ms);
      continue;
    }
    if (SSL_pending(ssl) > 0) continue;
    // An fd with nothing wanted is left out: a hung-up socket would wake poll
    // at once, forever.
    if (!wait(client_ev ? client_fd : -1, client_ev, backend_ev ? backend_fd : -1, backend_ev)) {
      return finish();
    }
  }
}

}  // namespace connwatch
