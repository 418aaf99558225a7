#include "web/listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

namespace connwatch {

namespace {

bool IsPort(std::string_view s, int* port) {
  if (s.empty() || s.size() > 5) return false;
  int value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > 65535) return false;
  *port = value;
  return true;
}

// A DNS name or an IPv4 literal.
bool IsPlainHost(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string ErrnoText(int err) {
  return std::to_string(err) + " (" + std::strerror(err) + ")";
}

std::string AddressName(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
  inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
  port = ntohs(in4->sin_port);
  return std::string(host) + ":" + std::to_string(port);
}

void SetPort(sockaddr_storage* ss, int port) {
  if (ss->ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(ss)->sin6_port = htons(static_cast<uint16_t>(port));
  } else {
    reinterpret_cast<sockaddr_in*>(ss)->sin_port = htons(static_cast<uint16_t>(port));
  }
}

// One listening socket on `addr`; -1 with `err` set.
int ListenOn(const sockaddr_storage& addr, socklen_t len, bool v6only, int backlog, int* err) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.ss_family == AF_INET6) {
    int v6 = v6only ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || listen(fd, backlog) != 0) {
    *err = errno;
    close(fd);
    return -1;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

bool IsResourceError(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

}  // namespace

bool ParseListenAddress(std::string_view address, ListenAddress* out, std::string* error) {
  auto fail = [&](std::string_view why) {
    *error = "invalid listen address \"" + std::string(address) + "\": " + std::string(why);
    return false;
  };
  if (address.empty()) return fail("empty");
  ListenAddress a;
  std::string_view port;
  if (address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos) return fail("missing ']'");
    std::string host(address.substr(1, close - 1));
    std::string_view rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return fail("missing port");
    port = rest.substr(1);
    in6_addr ignored;
    if (inet_pton(AF_INET6, host.c_str(), &ignored) != 1) {
      return fail("not an IPv6 address between the brackets");
    }
    a.host = host;
    a.ipv6_literal = true;
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return fail("missing port (want host:port or :port)");
    std::string_view host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail("an IPv6 address needs brackets, e.g. [::1]:9798");
    }
    if (!host.empty() && !IsPlainHost(host)) return fail("bad host");
    a.host = std::string(host);
  }
  if (!IsPort(port, &a.port)) return fail("bad port");
  *out = std::move(a);
  return true;
}

std::string BindListeners(const ListenAddress& address, int backlog, BoundListeners* out) {
  BoundListeners result;
  auto close_all = [&result] {
    for (int fd : result.fds) close(fd);
    result.fds.clear();
  };
  if (address.host.empty()) {
    // Every address: dual stack on [::], IPv4 alone where IPv6 is missing.
    sockaddr_storage ss{};
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_any;
    in6->sin6_port = htons(static_cast<uint16_t>(address.port));
    int err = 0;
    int fd = ListenOn(ss, sizeof(sockaddr_in6), /*v6only=*/false, backlog, &err);
    if (fd < 0 && (err == EAFNOSUPPORT || err == EADDRNOTAVAIL)) {
      ss = {};
      auto* in4 = reinterpret_cast<sockaddr_in*>(&ss);
      in4->sin_family = AF_INET;
      in4->sin_addr.s_addr = htonl(INADDR_ANY);
      in4->sin_port = htons(static_cast<uint16_t>(address.port));
      fd = ListenOn(ss, sizeof(sockaddr_in), false, backlog, &err);
    }
    if (fd < 0) {
      SetPort(&ss, address.port);
      return "cannot bind to " + AddressName(reinterpret_cast<sockaddr*>(&ss)) + ": " +
             ErrnoText(err);
    }
    result.fds.push_back(fd);
    result.port = BoundPort(fd);
    SetPort(&ss, result.port);
    result.names.push_back(AddressName(reinterpret_cast<sockaddr*>(&ss)));
    *out = std::move(result);
    return "";
  }

  addrinfo hints{};
  hints.ai_family = address.ipv6_literal ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(address.port);
  if (int rc = getaddrinfo(address.host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    return "cannot resolve \"" + address.host + "\": " + gai_strerror(rc);
  }
  std::vector<std::pair<sockaddr_storage, socklen_t>> addrs;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    bool dup = std::any_of(addrs.begin(), addrs.end(), [&](const auto& a) {
      return a.second == ai->ai_addrlen && std::memcmp(&a.first, &ss, ai->ai_addrlen) == 0;
    });
    if (!dup) addrs.emplace_back(ss, ai->ai_addrlen);
  }
  freeaddrinfo(res);
  if (addrs.empty()) return "\"" + address.host + "\" has no IPv4 or IPv6 address";

  std::string first_error;
  for (auto& [ss, len] : addrs) {
    if (result.port != 0) SetPort(&ss, result.port);
    int err = 0;
    // "[::]" is every address of both families, as ":port" is (and as the
    // kernel's default, net.ipv6.bindv6only=0, has it); a specific IPv6
    // address is IPv6 only, so that its IPv4 twin can be bound beside it.
    const bool any6 = ss.ss_family == AF_INET6 &&
                      IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr);
    int fd = ListenOn(ss, len, /*v6only=*/!any6, backlog, &err);
    if (fd < 0) {
      // A name that also resolves to a family this host lacks (localhost to
      // ::1 without IPv6) is served on the addresses that work.
      if ((err == EAFNOSUPPORT || err == EADDRNOTAVAIL) && addrs.size() > 1) {
        if (first_error.empty()) {
          first_error = "cannot bind to " + AddressName(reinterpret_cast<sockaddr*>(&ss)) + ": " +
                        ErrnoText(err);
        }
        continue;
      }
      close_all();
      return "cannot bind to " + AddressName(reinterpret_cast<sockaddr*>(&ss)) + ": " +
             ErrnoText(err);
    }
    if (result.port == 0) result.port = BoundPort(fd);
    SetPort(&ss, result.port);
    result.fds.push_back(fd);
    result.names.push_back(AddressName(reinterpret_cast<sockaddr*>(&ss)));
  }
  if (result.fds.empty()) return first_error;
  *out = std::move(result);
  return "";
}

Acceptor::Acceptor(std::vector<int> listen_fds, Handler handler)
    : listen_fds_(std::move(listen_fds)), handler_(std::move(handler)) {}

Acceptor::~Acceptor() {
  Stop();
  for (int fd : listen_fds_) close(fd);
  listen_fds_.clear();
}

std::string Acceptor::Start() {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return "eventfd: " + ErrnoText(errno);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    return std::string("cannot start the accept thread: ") + e.what();
  }
  return "";
}

void Acceptor::Stop() {
  if (stop_fd_ < 0) return;
  uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  close(stop_fd_);
  stop_fd_ = -1;
}

void Acceptor::Run() {
  using std::chrono::milliseconds;
  constexpr milliseconds kFirstBackoff{50}, kMaxBackoff{1000};
  milliseconds wait{0};                 // > 0 while backing off.
  milliseconds next_wait = kFirstBackoff;  // the next backoff, reset by a success.
  std::vector<pollfd> fds;
  fds.push_back({stop_fd_, POLLIN, 0});
  for (int fd : listen_fds_) fds.push_back({fd, POLLIN, 0});
  // Accepts up to `max` connections from `listen_fd`; false on a failure for
  // want of resources (the connection stays in the backlog).
  auto accept_from = [&](int listen_fd, int max) {
    for (int k = 0; k < max; ++k) {
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (!IsResourceError(errno)) return true;  // EAGAIN, ECONNABORTED, EINTR...
        resource_failures_.fetch_add(1);
        return false;
      }
      accepted_.fetch_add(1);
      next_wait = kFirstBackoff;
      handler_(fd, reinterpret_cast<sockaddr*>(&ss), len);
    }
    return true;
  };
  auto back_off = [&] {
    wait = next_wait;
    next_wait = std::min(next_wait * 2, kMaxBackoff);
  };
  while (true) {
    // While backing off only the stop event is watched, for the backoff's time.
    const bool backing_off = wait.count() > 0;
    const int ready = poll(fds.data(), backing_off ? 1 : static_cast<nfds_t>(fds.size()),
                           backing_off ? static_cast<int>(wait.count()) : -1);
    if (ready < 0 && errno != EINTR) {
      back_off();  // poll itself lacks memory: wait as for accept.
      continue;
    }
    if (fds[0].revents & POLLIN) return;
    // After a backoff every listener gets one attempt; otherwise those that
    // are readable get up to 64 accepts each, then the others a turn.
    const bool retry = backing_off && ready == 0;
    wait = milliseconds(0);
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!retry && !(fds[i].revents & POLLIN)) continue;
      if (!accept_from(fds[i].fd, retry ? 1 : 64)) {
        back_off();
        break;
      }
    }
  }
}

}  // namespace connwatch
