// ReadTcpInfo: the one system call of a periodic check. Uses the kernel's
// struct tcp_info (linux/tcp.h), which is longer than glibc's, and reads the
// newer fields only when the length the kernel returned covers them.

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstring>

#include "net/tcp_info.h"

namespace connwatch {

TcpSample ReadTcpInfo(int fd) {
  TcpSample s;
  struct tcp_info info;
  std::memset(&info, 0, sizeof info);
  socklen_t len = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return s;
  auto covers = [len](size_t offset, size_t size) { return offset + size <= len; };
  s.valid = true;
  s.state = info.tcpi_state;
  s.retransmits = info.tcpi_retransmits;
  s.probes = info.tcpi_probes;
  s.backoff = info.tcpi_backoff;
  s.rtt_us = info.tcpi_rtt;
  s.rttvar_us = info.tcpi_rttvar;
  s.unacked = info.tcpi_unacked;
  s.total_retrans = info.tcpi_total_retrans;
  s.last_data_recv_ms = info.tcpi_last_data_recv;
  s.last_ack_recv_ms = info.tcpi_last_ack_recv;
  if (covers(offsetof(struct tcp_info, tcpi_notsent_bytes), sizeof info.tcpi_notsent_bytes)) {
    s.notsent_bytes = info.tcpi_notsent_bytes;
  }
  if (covers(offsetof(struct tcp_info, tcpi_snd_wnd), sizeof info.tcpi_snd_wnd)) {
    s.snd_wnd = info.tcpi_snd_wnd;
  }
  return s;
}

}  // namespace connwatch
