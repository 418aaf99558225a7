#include "net/socket_ops.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace connwatch {

int SetIntOption(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : errno;
}

bool IsSelfConnected(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t local_len = sizeof local, peer_len = sizeof peer;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return false;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) return false;
  if (local.ss_family != peer.ss_family) return false;
  if (local.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&local);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&peer);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (local.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&local);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&peer);
    return a->sin6_port == b->sin6_port &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
  }
  return false;
}

int EnableIcmpReports(int fd, int family) {
  if (family == AF_INET6) {
    int err = SetIntOption(fd, IPPROTO_IPV6, IPV6_RECVERR, 1);
    if (err) return err;
    // An IPv6 socket talking to an IPv4-mapped address gets ICMPv4, which
    // tcp_v4_err reports only with IP_RECVERR; harmless otherwise.
    SetIntOption(fd, IPPROTO_IP, IP_RECVERR, 1);
    return 0;
  }
  return SetIntOption(fd, IPPROTO_IP, IP_RECVERR, 1);
}

}  // namespace connwatch
