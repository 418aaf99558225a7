#include "net/resolver.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

namespace connwatch {

std::string ResolvedAddress::ToString() const {
  char host[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(sin->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(sin6->sin6_port));
  }
  return "";
}

bool SameEndpoint(const ResolvedAddress& a, const ResolvedAddress& b) {
  if (a.addr.ss_family != b.addr.ss_family) return false;
  if (a.addr.ss_family == AF_INET) {
    const auto* x = reinterpret_cast<const sockaddr_in*>(&a.addr);
    const auto* y = reinterpret_cast<const sockaddr_in*>(&b.addr);
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a.addr.ss_family == AF_INET6) {
    const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.addr);
    const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.addr);
    return x->sin6_port == y->sin6_port &&
           std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
  }
  return false;
}

bool ParseNumericAddress(const std::string& host, uint16_t port, ResolvedAddress* out) {
  *out = ResolvedAddress{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&out->addr);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    out->len = sizeof(sockaddr_in);
    return true;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->addr);
  if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

void Resolver::Request::Cancel() {
  cancelled_ = true;
  if (alive_) *alive_ = false;
  callback_ = nullptr;
  srv_callback_ = nullptr;
}

namespace {
struct QueryArg {
  Resolver* resolver;
  Resolver::Request* request;
  std::shared_ptr<bool> alive;
  uint16_t port;
  size_t* pending;
};

bool FamilyAllowed(int family, AddressFamily wanted) {
  switch (wanted) {
    case AddressFamily::kAny: return family == AF_INET || family == AF_INET6;
    case AddressFamily::kIp4: return family == AF_INET;
    case AddressFamily::kIp6: return family == AF_INET6;
  }
  return false;
}
}  // namespace

Resolver::Resolver(struct ev_loop* loop) : loop_(loop) {
  ev_timer_init(&timer_, &Resolver::TimerCb, 0., 0.);
  timer_.data = this;
}

Resolver::~Resolver() {
  ev_timer_stop(loop_, &timer_);
  if (initialised_) {
    // Runs every pending callback with ARES_EDESTRUCTION; they check `alive`.
    ares_destroy(channel_);
  }
  for (auto& [fd, io] : ios_) ev_io_stop(loop_, io.get());
  ios_.clear();
}

std::string Resolver::Init(const std::string& servers) {
  static const int library_status = ares_library_init(ARES_LIB_INIT_ALL);
  if (library_status != ARES_SUCCESS) return std::string("c-ares: ") + ares_strerror(library_status);
  ares_options options{};
  options.sock_state_cb = &Resolver::SockStateCb;
  options.sock_state_cb_data = this;
  options.timeout = 2000;  // ms per try
  options.tries = 2;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  int status = ares_init_options(&channel_, &options, mask);
  if (status != ARES_SUCCESS) return std::string("c-ares init: ") + ares_strerror(status);
  initialised_ = true;
  if (!servers.empty()) {
    status = ares_set_servers_ports_csv(channel_, servers.c_str());
    if (status != ARES_SUCCESS) {
      return "invalid DNS server list \"" + servers + "\": " + ares_strerror(status);
    }
  }
  return "";
}

std::unique_ptr<Resolver::Request> Resolver::Resolve(const std::string& host, uint16_t port,
                                                     AddressFamily family, Callback callback) {
  ResolvedAddress numeric;
  if (ParseNumericAddress(host, port, &numeric)) {
    if (!FamilyAllowed(numeric.addr.ss_family, family)) {
      callback("address " + host + " is not of address_family " +
                   std::string(AddressFamilyName(family)),
               {});
    } else {
      callback("", {numeric});
    }
    return nullptr;
  }
  auto request = std::make_unique<Request>();
  request->callback_ = std::move(callback);
  request->alive_ = std::make_shared<bool>(true);
  auto* arg = new QueryArg{this, request.get(), request->alive_, port, &pending_};
  ares_addrinfo_hints hints{};
  hints.ai_family = family == AddressFamily::kIp4   ? AF_INET
                    : family == AddressFamily::kIp6 ? AF_INET6
                                                    : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  ++pending_;
  ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &Resolver::AddrInfoCb, arg);
  RearmTimer();
  return request;
}

void Resolver::AddrInfoCb(void* data, int status, int /*timeouts*/, struct ares_addrinfo* result) {
  std::unique_ptr<QueryArg> arg(static_cast<QueryArg*>(data));
  --*arg->pending;
  std::vector<ResolvedAddress> addresses;
  std::string error;
  if (status == ARES_SUCCESS && result) {
    for (auto* node = result->nodes; node; node = node->ai_next) {
      if (node->ai_family != AF_INET && node->ai_family != AF_INET6) continue;
      ResolvedAddress a;
      std::memcpy(&a.addr, node->ai_addr, node->ai_addrlen);
      a.len = static_cast<socklen_t>(node->ai_addrlen);
      a.ttl = node->ai_ttl;
      if (a.addr.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&a.addr)->sin_port = htons(arg->port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&a.addr)->sin6_port = htons(arg->port);
      }
      addresses.push_back(a);
    }
    if (addresses.empty()) error = "no address of the requested family";
  } else {
    error = ares_strerror(status);
  }
  if (result) ares_freeaddrinfo(result);
  if (!*arg->alive || status == ARES_EDESTRUCTION) return;
  Resolver::Request* request = arg->request;
  Callback callback = std::move(request->callback_);
  request->callback_ = nullptr;
  *arg->alive = false;
  if (callback) callback(error, std::move(addresses));
}

std::unique_ptr<Resolver::Request> Resolver::ResolveSrv(const std::string& name,
                                                        SrvCallback callback) {
  auto request = std::make_unique<Request>();
  request->srv_callback_ = std::move(callback);
  request->alive_ = std::make_shared<bool>(true);
  auto* arg = new QueryArg{this, request.get(), request->alive_, 0, &pending_};
  ++pending_;
  constexpr int kClassIn = 1, kTypeSrv = 33;  // RFC 1035, RFC 2782
  ares_query(channel_, name.c_str(), kClassIn, kTypeSrv, &Resolver::SrvCb, arg);
  RearmTimer();
  return request;
}

void Resolver::SrvCb(void* data, int status, int /*timeouts*/, unsigned char* answer,
                     int length) {
  std::unique_ptr<QueryArg> arg(static_cast<QueryArg*>(data));
  --*arg->pending;
  if (!*arg->alive || status == ARES_EDESTRUCTION) return;
  std::vector<SrvRecord> records;
  std::string error;
  if (status == ARES_SUCCESS) {
    ares_srv_reply* reply = nullptr;
    status = ares_parse_srv_reply(answer, length, &reply);
    if (status == ARES_SUCCESS) {
      for (ares_srv_reply* r = reply; r != nullptr; r = r->next) {
        // RFC 2782: a target of "." means the service is not available here.
        if (r->host == nullptr || r->host[0] == '\0' || std::strcmp(r->host, ".") == 0) continue;
        records.push_back({r->host, r->port, r->priority, r->weight});
      }
      ares_free_data(reply);
      if (records.empty()) error = "no SRV record with a target";
    } else {
      error = std::string("bad SRV answer: ") + ares_strerror(status);
    }
  } else {
    error = ares_strerror(status);
  }
  Resolver::Request* request = arg->request;
  SrvCallback callback = std::move(request->srv_callback_);
  request->srv_callback_ = nullptr;
  *arg->alive = false;
  if (callback) callback(error, std::move(records));
}

void Resolver::SockStateCb(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<Resolver*>(data);
  auto it = self->ios_.find(fd);
  if (!readable && !writable) {
    if (it != self->ios_.end()) {
      ev_io_stop(self->loop_, it->second.get());
      self->ios_.erase(it);
    }
    return;
  }
  int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
  if (it == self->ios_.end()) {
    auto io = std::make_unique<ev_io>();
    ev_io_init(io.get(), &Resolver::IoCb, fd, events);
    io->data = self;
    ev_io_start(self->loop_, io.get());
    self->ios_.emplace(fd, std::move(io));
  } else {
    ev_io_stop(self->loop_, it->second.get());
    ev_io_set(it->second.get(), fd, events);
    ev_io_start(self->loop_, it->second.get());
  }
}

void Resolver::IoCb(struct ev_loop* /*loop*/, ev_io* w, int revents) {
  auto* self = static_cast<Resolver*>(w->data);
  int fd = w->fd;
  ares_process_fd(self->channel_, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                  (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
  self->RearmTimer();
}

void Resolver::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<Resolver*>(w->data);
  ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  self->RearmTimer();
}

void Resolver::RearmTimer() {
  ev_timer_stop(loop_, &timer_);
  if (pending_ == 0) return;
  timeval max{1, 0};
  timeval tv{};
  timeval* next = ares_timeout(channel_, &max, &tv);
  double delay = next ? static_cast<double>(next->tv_sec) + next->tv_usec / 1e6 : 1.0;
  ev_timer_set(&timer_, delay > 0.001 ? delay : 0.001, 0.);
  ev_timer_start(loop_, &timer_);
}

}  // namespace connwatch
