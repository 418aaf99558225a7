#pragma once
// Reading TCP_INFO from a socket into a TcpSample (core/tcp_sample.h).

#include "core/tcp_sample.h"

namespace connwatch {

// TCP_INFO of `fd`: one getsockopt(). `valid` is false when it failed.
TcpSample ReadTcpInfo(int fd);

}  // namespace connwatch
