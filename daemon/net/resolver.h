#pragma once
// Asynchronous name resolution: c-ares driven by the libev loop, so a slow or
// dead DNS server never blocks the loop. Numeric addresses are parsed at once
// without asking c-ares. Owned by the Monitor; loop thread only.

#include <ares.h>
#include <ev.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"

namespace connwatch {

struct ResolvedAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  // The record's TTL in seconds as the DNS answer gave it (c-ares'
  // ai_ttl); -1 for a numeric address. Not part of the address (SameEndpoint).
  int ttl = -1;
  std::string ToString() const;  // "10.0.0.5:6379" or "[::1]:80"
};

// The same family, IP address and port.
bool SameEndpoint(const ResolvedAddress& a, const ResolvedAddress& b);

// Parses an IP literal (no brackets) and a port. Returns false if not numeric.
bool ParseNumericAddress(const std::string& host, uint16_t port, ResolvedAddress* out);

// One SRV record (RFC 2782): a target host and port, with its priority and weight.
struct SrvRecord {
  std::string host;
  uint16_t port = 0;
  int priority = 0;
  int weight = 0;
};

class Resolver {
 public:
  // `status` is empty on success (addresses non-empty), else a description
  // such as "Domain name not found".
  using Callback = std::function<void(const std::string& status, std::vector<ResolvedAddress>)>;
  using SrvCallback = std::function<void(const std::string& status, std::vector<SrvRecord>)>;

  // A request in flight; destroying or Cancel()ing it guarantees the callback
  // never runs.
  class Request {
   public:
    ~Request() { Cancel(); }
    void Cancel();

   private:
    friend class Resolver;
    Callback callback_;
    SrvCallback srv_callback_;
    bool cancelled_ = false;
    std::shared_ptr<bool> alive_;  // shared with the c-ares callback arg
  };

  explicit Resolver(struct ev_loop* loop);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Initialises c-ares; `servers` overrides resolv.conf ("127.0.0.1:5353,[::1]:53"),
  // empty keeps the system's. Returns "" or an error.
  std::string Init(const std::string& servers);

  // Resolves host:port for `family`. Numeric hosts call back before returning
  // (and return nullptr). Otherwise returns the request handle to keep.
  std::unique_ptr<Request> Resolve(const std::string& host, uint16_t port, AddressFamily family,
                                   Callback callback);

  // Looks up the SRV records of `name` (_service._tcp.domain). `status` is
  // empty on success (records non-empty; a lone "." record, "no service
  // here", gives none and a status). Always asynchronous; keep the handle.
  std::unique_ptr<Request> ResolveSrv(const std::string& name, SrvCallback callback);

  size_t pending() const { return pending_; }

 private:
  static void SockStateCb(void* data, ares_socket_t fd, int readable, int writable);
  static void IoCb(struct ev_loop* loop, ev_io* w, int revents);
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);
  static void AddrInfoCb(void* arg, int status, int timeouts, struct ares_addrinfo* result);
  static void SrvCb(void* arg, int status, int timeouts, unsigned char* answer, int length);
  void RearmTimer();

  struct ev_loop* loop_;
  ares_channel channel_ = nullptr;
  bool initialised_ = false;
  ev_timer timer_;
  std::unordered_map<int, std::unique_ptr<ev_io>> ios_;
  size_t pending_ = 0;
};

}  // namespace connwatch
