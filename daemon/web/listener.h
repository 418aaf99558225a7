#pragma once
// The listening side of the HTTP surface: the Prometheus-style listen address,
// the sockets bound for it, and the thread that accepts connections.
//
// Address forms (--web.listen-address):
//   ":9798"            every address of both families: one IPv6 socket on [::]
//                      with IPV6_V6ONLY off (IPv4 clients arrive as ::ffff:a.b.c.d),
//                      or 0.0.0.0 alone on a host without IPv6
//   "127.0.0.1:9798"   that IPv4 address
//   "[::1]:9798"       that IPv6 address (IPv6 only); "[::]:9798" is the same as ":9798"
//   "localhost:9798"   every address the name resolves to, each its own socket
// Port 0 lets the kernel choose; with several sockets they all get the port
// the first one was given.
//
// The Acceptor accepts on its own thread and hands every connection to a
// handler. When accept fails for want of resources (EMFILE, ENFILE, ENOBUFS,
// ENOMEM) it stops polling the listeners for a while (50 ms, doubling up to
// 1 s, back to 50 ms after the next success) instead of retrying at once: the
// pending connection stays in the kernel's backlog, the thread sleeps.

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace connwatch {

struct ListenAddress {
  std::string host;  // "" for every address; an IPv6 literal without brackets.
  bool ipv6_literal = false;
  int port = 0;
};

// Parses `address`; false with `error` = `invalid listen address "...": why`.
bool ParseListenAddress(std::string_view address, ListenAddress* out, std::string* error);

struct BoundListeners {
  std::vector<int> fds;             // listening, non-blocking, close-on-exec.
  std::vector<std::string> names;   // "127.0.0.1:9798", "[::]:9798" (dual stack)...
  int port = 0;
};

// Binds and listens on every socket `address` stands for. Returns "" or why
// not (`cannot bind to 127.0.0.1:80: 98 (Address already in use)`); on
// failure nothing stays open.
std::string BindListeners(const ListenAddress& address, int backlog, BoundListeners* out);

class Acceptor {
 public:
  // Takes the new connection's fd (non-blocking) and its peer address; owns
  // the fd from then on.
  using Handler = std::function<void(int fd, const sockaddr* addr, socklen_t len)>;

  Acceptor(std::vector<int> listen_fds, Handler handler);
  ~Acceptor();  // Stops; closes the listening sockets.
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  std::string Start();  // "" or why the thread could not start.
  void Stop();          // Idempotent; waits for the thread.

  // accept() failures for want of resources, and connections accepted.
  uint64_t resource_failures() const { return resource_failures_.load(); }
  uint64_t accepted() const { return accepted_.load(); }

 private:
  void Run();

  std::vector<int> listen_fds_;
  Handler handler_;
  int stop_fd_ = -1;  // eventfd, readable once Stop() began.
  std::thread thread_;
  std::atomic<uint64_t> resource_failures_{0};
  std::atomic<uint64_t> accepted_{0};
};

}  // namespace connwatch
