#pragma once
// Small system-call helpers for target sockets, each one fact about the
// kernel in one place. Loop thread (they act on the target's own socket).

namespace connwatch {

// setsockopt of an int option; returns 0 or the errno.
int SetIntOption(int fd, int level, int name, int value);

// True when the connected socket `fd` is connected to itself: its local and
// peer addresses (family, address and port) are equal.
// NOTE: a connect to a local port nobody listens on, from an ephemeral port
// equal to it, "succeeds" as a TCP simultaneous open with itself. It happens
// on any address of the host (127.0.0.1, ::1, ::ffff:127.0.0.1, the host's
// own LAN address), whenever the target's port lies in ip_local_port_range.
bool IsSelfConnected(int fd);

// Asks the kernel to report ICMP errors on the established connection at once
// (IP_RECVERR, and IPV6_RECVERR on an IPv6 socket, which also covers IPv4-
// mapped peers through IP_RECVERR). Returns 0 or the errno.
int EnableIcmpReports(int fd, int family);

}  // namespace connwatch
