// Target, part of net/target.h: an attempt from admission to an established
// connection (the lookup, the non-blocking connect, what a failure is) and the
// backoff after a failure.
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

void Target::RequestAttempt() {
  if (ctx_->admission->Acquire(&ticket_)) {
    holds_slot_ = true;
    BeginAttempt();
  }
  // Otherwise ticket_.grant starts the attempt once admitted.
}

void Target::ReleaseSlot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  ctx_->admission->Release();
}

void Target::BeginAttempt() {
  Transition(TargetEvent::kAttemptDue);
  if (endpoint_) {
    OnResolved("", {address_});  // an endpoint's address is fixed
    return;
  }
  auto request = ctx_->resolver->Resolve(
      config_->host, config_->port, config_->address_family,
      [this](const std::string& status, std::vector<ResolvedAddress> addresses) {
        OnResolved(status, std::move(addresses));
      });
  // A numeric host has already called back; the handle is null then.
  if (request) resolve_ = std::move(request);
}

void Target::OnResolved(const std::string& status, std::vector<ResolvedAddress> addresses) {
  resolve_.reset();
  if (!status.empty() || addresses.empty()) {
    connect_failures_[static_cast<size_t>(Reason::kDnsError)]++;
    ++dns_failures_;
    Event e = MakeEvent("connect_failure", LogLevel::kWarn);
    e.has_reason = true;
    e.reason = Reason::kDnsError;
    e.detail = status.empty() ? "no address" : status;
    if (restored_up_) {
      last_change_unix_ = e.unix_time;  // as in ConnectFailed
      restored_up_ = false;
    }
    has_last_event_ = true;
    last_event_kind_ = kKindConnectFailure;
    last_reason_ = Reason::kDnsError;
    last_errno_ = 0;
    last_event_unix_ = e.unix_time;
    has_last_detected_by_ = false;
    ctx_->log->Record(std::move(e));
    Transition(TargetEvent::kResolveFailed);
    ScheduleBackoff();
    ReleaseSlot();
    return;
  }
  // Rotate through the addresses on consecutive failures.
  address_ = addresses[attempt_ % addresses.size()];
  has_address_ = true;
  resolved_text_ = address_.ToString();
  Transition(TargetEvent::kResolved);
  BeginConnect();
}

void Target::BeginConnect() {
  connect_started_ = MonoNow();
  // Sockets waiting for the closer still hold their descriptors.
  const size_t closing = ctx_->closer ? ctx_->closer->pending() : 0;
  if (ctx_->sockets_open + closing >= ctx_->socket_budget) {
    ConnectFailed(Reason::kLocalError, EMFILE,
                  "all " + std::to_string(ctx_->socket_budget) +
                      " file descriptors for targets are in use (RLIMIT_NOFILE less a reserve "
                      "for the daemon itself)");
    return;
  }
  const int family = address_.addr.ss_family;
  fd_ = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd_ < 0) {
    int err = errno;
    ConnectFailed(ClassifyConnectError(err), err, "socket() failed");
    return;
  }
  ++ctx_->sockets_open;
  const auto& ka = config_->keepalive;
  int err = SetIntOption(fd_, SOL_SOCKET, SO_KEEPALIVE, 1);
  if (!err) err = SetIntOption(fd_, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(ka.idle.count() / 1000));
  if (!err) err = SetIntOption(fd_, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(ka.interval.count() / 1000));
  if (!err) err = SetIntOption(fd_, IPPROTO_TCP, TCP_KEEPCNT, ka.count);
  if (!err) err = SetIntOption(fd_, IPPROTO_TCP, TCP_USER_TIMEOUT, static_cast<int>(config_->user_timeout.count()));
  if (!err && config_->report_icmp) err = EnableIcmpReports(fd_, family);
  if (err) {
    ConnectFailed(Reason::kLocalError, err, "setsockopt failed");
    return;
  }
  if (!config_->source_address.empty()) {
    ResolvedAddress source;
    if (!ParseNumericAddress(config_->source_address, 0, &source) ||
        source.addr.ss_family != family) {
      ConnectFailed(Reason::kLocalError, 0,
                    "source_address " + config_->source_address +
                        " is not of the target's address family");
      return;
    }
    // Lets one source address share ephemeral ports across destinations.
    SetIntOption(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
    if (bind(fd_, reinterpret_cast<const sockaddr*>(&source.addr), source.len) != 0) {
      err = errno;
      ConnectFailed(ClassifyConnectError(err), err, "bind to source_address failed");
      return;
    }
  }
  // connect_timeout bounds the TCP connect and, for a TLS target, the
  // handshake after it.
  ArmTimerAt(LoopNow() + Seconds(config_->connect_timeout));
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&address_.addr), address_.len) == 0) {
    OnConnected();
    return;
  }
  err = errno;
  if (err != EINPROGRESS) {
    ConnectFailed(ClassifyConnectError(err), err, "");
    return;
  }
  // NOTE: watch for EV_WRITE only now; an unconnected socket reports HUP|OUT.
  ev_io_set(&io_, fd_, EV_WRITE);
  ev_io_start(ctx_->loop, &io_);
}

void Target::OnConnectWritable() {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    ConnectFailed(ClassifyConnectError(err), err, "");
    return;
  }
  OnConnected();
}

void Target::OnConnected() {
  if (IsSelfConnected(fd_)) {
    ConnectFailed(Reason::kRefused, 0, "connected to itself: nothing listens on the port");
    return;
  }
  tcp_connected_at_ = MonoNow();
  if (config_->tls) {
    StartTlsHandshake();
    return;
  }
  OnEstablished();
}

void Target::OnEstablished() {
  const double now = MonoNow();
  const double loop_now = LoopNow();
  ev_io_stop(ctx_->loop, &io_);
  watching_write_ = false;
  if (ctx_->event_reads) {
    ev_io_set(&io_, fd_, EV_READ);
    ev_io_start(ctx_->loop, &io_);
  } else {
    ev_io_set(&io_, fd_, 0);
  }
  Transition(TargetEvent::kConnected);
  last_sample_ = ReadTcpInfo(fd_);
  has_rtt_ = last_sample_.valid;
  has_icmp_ = false;
  up_ = true;
  up_since_ = now;
  history_->Up(now);
  ++connects_;
  // The TCP connect; a TLS handshake after it is the event's tls_handshake.
  const double connect_seconds = tcp_connected_at_ - connect_started_;
  ctx_->connect_duration.Observe(connect_seconds);

  Event e = MakeEvent("connect", LogLevel::kInfo);
  e.connect_seconds = connect_seconds;
  if (tls_) {
    e.tls_handshake_seconds = now - tcp_connected_at_;
    e.detail = tls_peer_->version + " " + tls_peer_->cipher;
  }
  e.tcp = last_sample_;
  // Up before the restart and up again after it: the target did not change.
  if (!restored_up_) last_change_unix_ = e.unix_time;
  restored_up_ = false;
  if (has_last_event_ && last_event_kind_ != kKindConnect) {
    // The status page shows the last failure while the target is up again
    // (last_reason_ and last_detected_by_ keep it: a connect sets neither).
    last_failure_kind_ = last_event_kind_;
    last_failure_errno_ = last_errno_;
    last_failure_unix_ = last_event_unix_;
  }
  has_last_event_ = true;
  last_event_kind_ = kKindConnect;
  last_errno_ = 0;
  last_event_unix_ = e.unix_time;
  has_last_detected_by_ = false;
  ctx_->log->Record(std::move(e));

  ScheduleCheck(loop_now);
  if (address_watch_) address_watch_->Start(address_);
  if (config_->heartbeat) {
    if (!heartbeat_) {
      heartbeat_ = std::make_unique<HeartbeatTracker>(&*config_->heartbeat,
                                                      ctx_->Regex(config_->heartbeat->expect));
    }
    heartbeat_->Reset();
    heartbeat_unsent_ = 0;
    if (!SendHeartbeat(loop_now)) {
      ReleaseSlot();
      return;
    }
  }
  ArmUpTimer();
  ReleaseSlot();
}

void Target::ConnectFailed(Reason reason, int err, std::string detail) {
  CloseSocket(false);
  connect_failures_[static_cast<size_t>(reason)]++;
  Event e = MakeEvent("connect_failure", LogLevel::kWarn);
  e.has_reason = true;
  e.reason = reason;
  e.err = err;
  e.detail = std::move(detail);
  if (restored_up_) {
    // Up when the last run saved it, down now: a change, seen at this failure.
    last_change_unix_ = e.unix_time;
    restored_up_ = false;
  }
  has_last_event_ = true;
  last_event_kind_ = kKindConnectFailure;
  last_reason_ = reason;
  last_errno_ = err;
  last_event_unix_ = e.unix_time;
  has_last_detected_by_ = false;
  ctx_->log->Record(std::move(e));
  Transition(TargetEvent::kConnectFailed);
  ScheduleBackoff();
  ReleaseSlot();
}

void Target::ScheduleBackoff() {
  Millis delay = BackoffDelay(config_->backoff, attempt_, ctx_->Uniform01());
  if (attempt_ < 64) ++attempt_;
  ArmTimerAt(LoopNow() + Seconds(delay));
}

}  // namespace connwatch
