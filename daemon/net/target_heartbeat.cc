// Target, part of net/target.h: the heartbeat's I/O (request, partial
// writes, what a failure is); core/heartbeat.h holds its logic.
#include "net/target.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <re2/re2.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/backoff.h"
#include "core/clock.h"
#include "net/probes.h"
#include "net/socket_ops.h"
#include "net/target_pool.h"
#include "net/target_detail.h"
#include "net/tcp_info.h"

namespace connwatch {

using namespace target_detail;  // NOLINT: Target's own helpers

bool Target::SendHeartbeat(double now) {
  const auto& cfg = *config_->heartbeat;
  heartbeat_next_send_ = now + Seconds(cfg.interval);
  if (heartbeat_->waiting()) return true;  // the previous one is still within its timeout
  ++ctx_->probe_runs[static_cast<size_t>(Detector::kHeartbeat)];
  if (heartbeat_unsent_ > 0) {
    // Appending a new request to the unsent rest of the last one would
    // garble the stream: this one fails instead.
    return HeartbeatFailed(heartbeat_->OnSendBlocked(heartbeat_unsent_));
  }
  // The round trip is timed on the clock itself, not the loop's cached time.
  heartbeat_->OnSent(MonoNow());
  heartbeat_unsent_ = cfg.send.size();
  return FlushHeartbeat();
}

bool Target::FlushHeartbeat() {
  const std::string& request = config_->heartbeat->send;
  while (heartbeat_unsent_ > 0) {
    const char* from = request.data() + (request.size() - heartbeat_unsent_);
    if (tls_) {
      size_t written = 0;
      const TlsSession::Status status = tls_->Write(from, heartbeat_unsent_, &written);
      if (status == TlsSession::Status::kDone) {
        heartbeat_unsent_ -= written;
        continue;
      }
      if (status == TlsSession::Status::kWantWrite || status == TlsSession::Status::kWantRead) {
        WatchWritable(true);
        return true;
      }
      TcpSample now = ReadTcpInfo(fd_);
      const TlsSession::Failure& f = tls_->failure();
      Verdict verdict = f.err != 0 ? ClassifyHeldError(f.err, now, last_sample_)
                                   : Verdict::Dead(f.reason, 0);
      if (verdict.icmp()) verdict = Verdict::Dead(verdict.reason, verdict.err);
      Die(verdict, now, Detector::kHeartbeat, "heartbeat send failed: " + f.detail);
      return false;
    }
    ssize_t n = send(fd_, from, heartbeat_unsent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      heartbeat_unsent_ -= static_cast<size_t>(n);
      continue;
    }
    const int err = n < 0 ? errno : 0;
    // A full send buffer is no verdict: the rest goes out when the socket is
    // writable again, and the reply deadline (or TCP_USER_TIMEOUT) tells.
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) {
      WatchWritable(true);
      return true;
    }
    if (n == 0) break;  // cannot happen for a non-empty send; never spin on it
    TcpSample now = ReadTcpInfo(fd_);
    Verdict verdict = ClassifyHeldError(err, now, last_sample_);
    if (verdict.icmp()) {
      // IP_RECVERR: the send reported an ICMP error and the connection lives.
      OnIcmpError(verdict, Detector::kHeartbeat);
      continue;
    }
    Die(verdict, now, Detector::kHeartbeat, "heartbeat send failed");
    return false;
  }
  WatchWritable(false);
  if (tls_) tls_->ReleaseBuffers();
  return true;
}

bool Target::HeartbeatFailed(const HeartbeatTracker::Failure& failure) {
  if (!failure.fatal) {
    Event e = MakeEvent("heartbeat_failure", LogLevel::kWarn);
    e.has_reason = true;
    e.reason = failure.reason;
    e.detail = failure.detail;
    ctx_->log->Record(std::move(e));
    return true;
  }
  TcpSample at_death = ReadTcpInfo(fd_);
  Die(Verdict::Dead(failure.reason, 0), at_death, Detector::kHeartbeat, failure.detail);
  return false;
}

}  // namespace connwatch
