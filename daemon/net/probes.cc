#include "net/probes.h"

#include <sys/socket.h>

#include <cerrno>

#include "net/tcp_info.h"

namespace connwatch {

namespace {

int ReadSoError(int fd) {
  int pending = 0;
  socklen_t len = sizeof pending;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &len) != 0) return 0;
  return pending;
}

}  // namespace

ProbeResult RunProbes(int fd, const ProbeList& probes, const TcpSample& last_check,
                      std::array<uint64_t, kDetectorCount>* runs) {
  ProbeResult result;
  for (Probe probe : probes) {
    const Detector by = ProbeDetector(probe);
    ++(*runs)[static_cast<size_t>(by)];
    Verdict v;
    switch (probe) {
      case Probe::kPeek: {
        char byte;
        const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        const int err = n < 0 ? errno : 0;
        // TCP_INFO only when the answer is an error or EOF: it is the
        // evidence for the reason and the snapshot logged with the event.
        if (n == 0 || (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR)) {
          result.sample = ReadTcpInfo(fd);
        }
        v = ClassifyPeek(n, err, result.sample, last_check);
        break;
      }
      case Probe::kZeroSend: {
        const ssize_t n = send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT);
        const int err = n < 0 ? errno : 0;
        if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
          result.sample = ReadTcpInfo(fd);
        }
        v = ClassifyZeroSend(n, err, result.sample, last_check);
        break;
      }
      case Probe::kTcpInfo: {
        result.sample = ReadTcpInfo(fd);
        if (IsEstablished(result.sample)) {
          result.fresh_sample = true;
          v = Verdict::Alive();
        } else if (IsPeerClosed(result.sample)) {
          // NOTE: a FIN hidden behind unread data still shows as CLOSE_WAIT.
          v = Verdict::Dead(Reason::kPeerClosed, 0);
        } else {
          v = ClassifyAnomaly(result.sample, ReadSoError(fd), last_check);
        }
        break;
      }
      case Probe::kSoError: {
        const int pending = ReadSoError(fd);
        if (pending != 0) result.sample = ReadTcpInfo(fd);
        v = ClassifySoError(pending, result.sample, last_check);
        break;
      }
      case Probe::kCount:
        break;
    }
    if (v.icmp()) {
      result.icmp = v;
      result.icmp_by = by;
      continue;
    }
    if (v.dead()) {
      result.verdict = v;
      result.by = by;
      return result;
    }
  }
  return result;
}

}  // namespace connwatch
