// Target, part of net/target.h: the TLS session of a TLS target (the
// handshake in slices of the loop's budget, the verdict of TLS 1.3 client
// certificates, reads of records).
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

void Target::StartTlsHandshake() {
  if (endpoint_ && config_->tls->server_name.empty() && !endpoint_->srv_host.empty()) {
    // An srv target's endpoint verifies the host its SRV record named.
    TlsConfig tls = *config_->tls;
    tls.server_name = endpoint_->srv_host;
    if (!tls.server_name.empty() && tls.server_name.back() == '.') tls.server_name.pop_back();
    tls_ = std::make_unique<TlsSession>(config_->tls->context.ctx.get(), fd_, tls);
  } else {
    tls_ = std::make_unique<TlsSession>(config_->tls->context.ctx.get(), fd_, *config_->tls);
  }
  handshaking_ = true;
  if (HandshakeSliceOver()) {
    // The ClientHello (and its key share) in the next iteration: the socket
    // is writable, so the watcher fires at once.
    ev_io_stop(ctx_->loop, &io_);
    ev_io_set(&io_, fd_, EV_WRITE);
    ev_io_start(ctx_->loop, &io_);
    return;
  }
  ContinueTlsHandshake();
}

bool Target::HandshakeSliceOver() const {
  return ctx_->handshake_deadline > 0 && ctx_->handshake_steps > 0 &&
         MonoNow() > ctx_->handshake_deadline;
}

void Target::ContinueTlsHandshake() {
  ++ctx_->handshake_steps;
  const TlsSession::Status status = tls_->Handshake();
  if (status == TlsSession::Status::kWantRead || status == TlsSession::Status::kWantWrite) {
    // The same one ev_io, for what the handshake waits for next.
    ev_io_stop(ctx_->loop, &io_);
    ev_io_set(&io_, fd_, status == TlsSession::Status::kWantRead ? EV_READ : EV_WRITE);
    ev_io_start(ctx_->loop, &io_);
    return;
  }
  handshaking_ = false;
  if (status != TlsSession::Status::kDone) {
    const TlsSession::Failure& f = tls_->failure();
    Reason reason = f.reason;
    // A handshake that ended on a socket error or an EOF is the handshake's
    // failure (the TCP connection itself was made).
    if (!IsConnectFailureReason(reason)) reason = Reason::kTlsHandshake;
    ConnectFailed(reason, f.err, f.detail);
    return;
  }
  if (tls_->VerdictPending()) {
    // Wait for the server's next flight, a short while at most.
    awaiting_verdict_ = true;
    ev_io_stop(ctx_->loop, &io_);
    ev_io_set(&io_, fd_, EV_READ);
    ev_io_start(ctx_->loop, &io_);
    constexpr double kVerdictGrace = 0.25;
    ArmTimerAt(LoopNow() + std::min(kVerdictGrace, ev_timer_remaining(ctx_->loop, &timer_)));
    return;
  }
  FinishTls();
}

void Target::OnTlsVerdictReadable() {
  int queued = 0;
  ioctl(fd_, FIONREAD, &queued);
  size_t n = 0;
  const TlsSession::Status status =
      tls_->Read(ctx_->drain_buffer.data(), LoopContext::kDrainChunk, &n);
  if (status == TlsSession::Status::kDone ||
      (status == TlsSession::Status::kWantRead && queued > 0)) {
    FinishTls();  // records came and none was an alert: accepted
    return;
  }
  if (status == TlsSession::Status::kWantRead || status == TlsSession::Status::kWantWrite) return;
  awaiting_verdict_ = false;
  const TlsSession::Failure& f = tls_->failure();
  ConnectFailed(Reason::kTlsHandshake, f.err,
                "the server ended the session after the handshake (it rejects our client "
                "certificate?): " + f.detail);
}

void Target::FinishTls() {
  awaiting_verdict_ = false;
  tls_->ReleaseBuffers();
  ctx_->tls_handshake_duration.Observe(MonoNow() - tcp_connected_at_);
  tls_peer_ = std::make_shared<const TlsPeerInfo>(tls_->peer());
  OnEstablished();
}

bool Target::ReadTls() {
  ++ctx_->probe_runs[static_cast<size_t>(Detector::kRead)];
  if (config_->report_icmp) {
    // NOTE: a socket error handed to OpenSSL ends the session, so an ICMP
    // error reported at once (IP_RECVERR) is taken here first, with
    // SO_ERROR, and the session goes on.
    int pending = 0;
    socklen_t len = sizeof pending;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &len) == 0 && pending != 0) {
      TcpSample now = ReadTcpInfo(fd_);
      Verdict verdict = ClassifyHeldError(pending, now, last_sample_);
      if (!verdict.icmp()) {
        Die(verdict, now, Detector::kRead, "");
        return false;
      }
      OnIcmpError(verdict, Detector::kRead);
    }
  }
  char* buf = ctx_->drain_buffer.data();
  for (int i = 0; i < LoopContext::kMaxReadsPerWakeup || tls_->HasBuffered(); ++i) {
    size_t n = 0;
    const TlsSession::Status status = tls_->Read(buf, LoopContext::kDrainChunk, &n);
    if (status == TlsSession::Status::kDone) {
      if (heartbeat_) heartbeat_->OnBytes(std::string_view(buf, n), MonoNow());
      continue;
    }
    if (status == TlsSession::Status::kWantRead) {
      if (heartbeat_unsent_ == 0) tls_->ReleaseBuffers();
      return true;
    }
    if (status == TlsSession::Status::kWantWrite) {
      WatchWritable(true);  // the session has something to send first
      return true;
    }
    TcpSample now = ReadTcpInfo(fd_);
    const TlsSession::Failure& f = tls_->failure();
    if (status == TlsSession::Status::kClosed) {
      Die(Verdict::Dead(Reason::kPeerClosed, 0), now, Detector::kRead, f.detail,
          f.close_notify ? 1 : 0);
      return false;
    }
    Verdict verdict = f.err != 0 ? ClassifyHeldError(f.err, now, last_sample_)
                                 : Verdict::Dead(f.reason, 0);
    if (verdict.icmp()) verdict = Verdict::Dead(verdict.reason, verdict.err);
    Die(verdict, now, Detector::kRead, f.detail);
    return false;
  }
  return true;
}

}  // namespace connwatch
