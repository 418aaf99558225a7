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
#include "net/tcp_info.h"

namespace connwatch {

namespace {
constexpr const char* kEventKinds[] = {"connect", "connect_failure", "disconnect"};
enum : uint8_t { kKindConnect = 0, kKindConnectFailure = 1, kKindDisconnect = 2 };

double Seconds(Millis d) { return static_cast<double>(d.count()) / 1000.0; }
}  // namespace


std::shared_ptr<const re2::RE2> LoopContext::Regex(const std::string& pattern) {
  auto it = regex_cache.find(pattern);
  if (it != regex_cache.end()) return it->second;
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<const re2::RE2>(pattern, options);
  regex_cache.emplace(pattern, re);
  return re;
}

void* Target::operator new(size_t size) { return AllocateTargetSlot(size); }
void Target::operator delete(void* p) { FreeTargetSlot(p); }

Target::Target(LoopContext* ctx, std::shared_ptr<const TargetConfig> config)
    : ctx_(ctx),
      probes_(config->probes),
      check_interval_s_(Seconds(config->check_interval)),
      check_jitter_s_(Seconds(config->check_jitter)),
      config_(std::move(config)) {
  ev_io_init(&io_, &Target::IoCb, -1, EV_READ);
  io_.data = this;
  ev_timer_init(&timer_, &Target::TimerCb, 0., 0.);
  timer_.data = this;
  check_.owner = this;
  ticket_.grant = [this] {
    holds_slot_ = true;
    BeginAttempt();
  };
  last_change_unix_ = UnixNow();
  history_ = std::make_unique<UpHistory>(MonoNow());
  ResolvedAddress numeric;
  if (!config_->HoldsEveryAddress() && !ParseNumericAddress(config_->host, config_->port, &numeric)) {
    address_watch_ = std::make_unique<AddressWatch>(
        ctx_->loop, ctx_->resolver, config_.get(),
        [this](AddressWatch::Outcome outcome, const std::string& detail) {
          OnAddressWatch(outcome, detail);
        });
  }
  if (config_->canary) {
    canary_ = std::make_unique<Canary>(ctx_, config_.get(), [this] {
      return Canary::Where{has_address_ ? &address_ : nullptr, &resolved_text_, up_};
    });
  }
  ++ctx_->targets_by_state[static_cast<size_t>(state_)];
}

Target::Target(LoopContext* ctx, std::shared_ptr<const TargetConfig> config,
               const ResolvedAddress& address, std::shared_ptr<const EndpointInfo> endpoint)
    : Target(ctx, std::move(config)) {
  endpoint_ = std::move(endpoint);
  address_ = address;
  has_address_ = true;
  resolved_text_ = address_.ToString();
}

Target::~Target() {
  ctx_->checks_due->Cancel(&check_);
  ctx_->admission->Cancel(&ticket_);
  ReleaseSlot();
  resolve_.reset();
  ev_timer_stop(ctx_->loop, &timer_);
  CloseSocket(false);
  --ctx_->targets_by_state[static_cast<size_t>(state_)];
}

void Target::Transition(TargetEvent event) {
  TargetState next = NextState(state_, event);
  --ctx_->targets_by_state[static_cast<size_t>(state_)];
  ++ctx_->targets_by_state[static_cast<size_t>(next)];
  state_ = next;
}

void Target::ArmTimerAt(double deadline) {
  // NOTE: relative to the loop's cached time, so targets given the same
  // deadline land on the same instant of libev's timer heap and expire in
  // one loop iteration (check batching depends on it). libev's timers run on
  // the monotonic clock, like LoopNow().
  double delay = deadline - LoopNow();
  ev_timer_stop(ctx_->loop, &timer_);
  ev_timer_set(&timer_, delay > 0 ? delay : 0., 0.);
  ev_timer_start(ctx_->loop, &timer_);
}

void Target::Start() {
  double jitter = Seconds(config_->startup_jitter) * ctx_->Uniform01();
  ArmTimerAt(LoopNow() + jitter);
  if (canary_) canary_->Start();
}

void Target::IoCb(struct ev_loop* /*loop*/, ev_io* w, int revents) {
  auto* self = static_cast<Target*>(w->data);
  switch (self->state_) {
    case TargetState::kConnecting:
      if (self->handshaking_) {
        // NOTE: libev's epoll watchers are level-triggered: a step left for
        // the next iteration is offered again by the next poll.
        if (self->HandshakeSliceOver()) break;
        self->ContinueTlsHandshake();
      } else if (self->awaiting_verdict_) {
        self->OnTlsVerdictReadable();
      } else {
        self->OnConnectWritable();
      }
      break;
    case TargetState::kUp:
      // NOTE: libev maps ERR and HUP onto both EV_READ and EV_WRITE; with
      // event reads on, the read sees them first.
      if ((revents & EV_READ) && self->ctx_->event_reads && !self->ReadAvailable()) break;
      if ((revents & EV_WRITE) && self->heartbeat_unsent_ > 0) self->FlushHeartbeat();
      break;
    default:
      // NOTE: an I/O watcher is only active while connecting or up.
      ev_io_stop(self->ctx_->loop, w);
      break;
  }
}

void Target::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<Target*>(w->data);
  switch (self->state_) {
    case TargetState::kBackoff:
      self->RequestAttempt();
      break;
    case TargetState::kConnecting:
      if (self->awaiting_verdict_) {
        // No word from the server after its handshake: the certificate passed.
        self->FinishTls();
        break;
      }
      self->ConnectFailed(Reason::kTimeout, 0,
                          "no answer within connect_timeout " +
                              FormatDuration(self->config_->connect_timeout));
      break;
    case TargetState::kUp: {
      const double now = self->LoopNow();
      constexpr double kSlack = 0.0005;  // timers may fire a hair early
      auto* hb = self->heartbeat_.get();
      if (hb && hb->waiting() && now + kSlack >= hb->deadline()) {
        if (!self->HeartbeatFailed(hb->OnDeadline())) return;
      }
      if (hb && now + kSlack >= self->heartbeat_next_send_) {
        if (!self->SendHeartbeat(now)) return;
      }
      self->ArmUpTimer();
      break;
    }
    case TargetState::kResolving:
    case TargetState::kCount:
      break;
  }
}

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

bool Target::ReadAvailable() {
  if (tls_) return ReadTls();
  ++ctx_->probe_runs[static_cast<size_t>(Detector::kRead)];
  char* buf = ctx_->drain_buffer.data();
  for (int i = 0; i < LoopContext::kMaxReadsPerWakeup; ++i) {
    ssize_t n = recv(fd_, buf, LoopContext::kDrainChunk, MSG_DONTWAIT);
    if (n > 0) {
      if (heartbeat_) heartbeat_->OnBytes(std::string_view(buf, static_cast<size_t>(n)), MonoNow());
      continue;
    }
    const int err = n < 0 ? errno : 0;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) return true;
    // End of file or an error. Read TCP_INFO before close: the evidence for
    // the reason and the snapshot logged with the event.
    TcpSample now = ReadTcpInfo(fd_);
    Verdict verdict = ClassifyRecv(n, err, now, last_sample_);
    if (verdict.icmp()) {
      // IP_RECVERR: the kernel keeps the connection; read on.
      OnIcmpError(verdict, Detector::kRead);
      continue;
    }
    Die(verdict, now, Detector::kRead, "");
    return false;
  }
  // Bounded: more data may be waiting; the level-triggered watcher wakes us
  // again after the other targets had their turn.
  return true;
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

bool Target::Check() {
  ++ctx_->checks;
  ProbeResult run = RunProbes(fd_, probes_, last_sample_, &ctx_->probe_runs);
  if (run.fresh_sample) {
    last_sample_ = run.sample;
    has_rtt_ = true;
    // The peer acknowledged something after the ICMP error: the path works
    // again, and a later timeout is not that error's doing.
    if (has_icmp_ && run.sample.retransmits == 0 &&
        static_cast<double>(run.sample.last_ack_recv_ms) / 1000.0 < LoopNow() - icmp_at_) {
      has_icmp_ = false;
    }
  }
  if (run.icmp.icmp()) OnIcmpError(run.icmp, run.icmp_by);
  if (!run.verdict.dead()) return true;
  std::string detail;
  if (run.sample.valid && !IsEstablished(run.sample)) {
    detail = "periodic check saw tcp state " + std::to_string(run.sample.state);
    if (IsPeerClosed(run.sample)) detail += " (CLOSE_WAIT: a FIN, possibly behind unread data)";
  }
  Die(run.verdict, run.sample, run.by, std::move(detail));
  return false;
}

void Target::WatchWritable(bool on) {
  if (on == watching_write_) return;
  watching_write_ = on;
  ev_io_stop(ctx_->loop, &io_);
  const int events = (ctx_->event_reads ? EV_READ : 0) | (on ? EV_WRITE : 0);
  ev_io_set(&io_, fd_, events);
  if (events != 0) ev_io_start(ctx_->loop, &io_);
}

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

void Target::OnIcmpError(const Verdict& icmp, Detector by) {
  icmp_errors_[static_cast<size_t>(icmp.reason)]++;
  // The first ICMP error of a run is a warning; the kernel reports one per
  // retransmission after it, which go to the debug level (and the ring).
  const bool first = !has_icmp_;
  has_icmp_ = true;
  icmp_ = icmp;
  icmp_at_ = LoopNow();
  Event e = MakeEvent("icmp_error", first ? LogLevel::kWarn : LogLevel::kDebug);
  e.has_reason = true;
  e.reason = icmp.reason;
  e.err = icmp.err;
  e.has_detected_by = true;
  e.detected_by = by;
  e.detail = "the connection is kept: the kernel retries until a timer gives up";
  ctx_->log->Record(std::move(e));
}

void Target::CheckDue(CheckScheduler::Entry* entry) {
  auto* self = static_cast<Target*>(entry->owner);
  // NOTE: the check is cancelled whenever the connection ends.
  if (self->state_ != TargetState::kUp) return;
  if (self->Check()) self->ScheduleCheck(self->LoopNow());
}

void Target::ScheduleCheck(double now) {
  // The scheduler rounds up to its 50 ms slots: every check due in a slot
  // runs in one loop iteration. check_jitter spreads the slots.
  const double at = now + check_interval_s_ + check_jitter_s_ * ctx_->Uniform01();
  ctx_->checks_due->Schedule(&check_, at);
}

void Target::ArmUpTimer() {
  // The periodic check has its own schedule (CheckScheduler); the timer
  // serves the heartbeat only, and a target without one has no timer while up.
  if (!heartbeat_) {
    ev_timer_stop(ctx_->loop, &timer_);
    return;
  }
  ArmTimerAt(std::min(heartbeat_next_send_, heartbeat_->deadline()));
}

void Target::Die(Verdict verdict, const TcpSample& at_death, Detector by, std::string detail,
                 int close_notify) {
  const double now = MonoNow();
  const double lived = now - up_since_;
  if (has_icmp_ && (verdict.reason == Reason::kKeepaliveTimeout ||
                    verdict.reason == Reason::kUserTimeout)) {
    // A timer ended a connection the kernel had reported ICMP errors for: the
    // ICMP error is why (the kernel reports the stored error instead of
    // ETIMEDOUT only when IP_RECVERR is off and no probe consumed it).
    if (!detail.empty()) detail += "; ";
    detail += std::string(ReasonName(verdict.reason)) + " after ICMP " +
              std::string(ErrnoName(icmp_.err)) + " " + FormatSeconds(LoopNow() - icmp_at_) +
              " before";
    verdict.reason = icmp_.reason;
  }
  has_icmp_ = false;
  history_->Down(now, true);
  disconnects_[static_cast<size_t>(verdict.reason)]++;
  ctx_->detections[static_cast<size_t>(by)][static_cast<size_t>(verdict.reason)]++;
  const TcpSample& last = at_death.valid ? at_death : last_sample_;
  retransmits_closed_ += last.total_retrans;
  if (at_death.valid && at_death.rtt_us > 0) last_sample_.rtt_us = at_death.rtt_us;
  ctx_->connection_lifetime.Observe(lived);

  Event e = MakeEvent("disconnect", LogLevel::kWarn);
  e.has_reason = true;
  e.reason = verdict.reason;
  e.err = verdict.err;
  e.has_detected_by = true;
  e.detected_by = by;
  e.connected_for = lived;
  e.tcp = last;
  e.close_notify = close_notify;
  e.detail = std::move(detail);
  last_change_unix_ = e.unix_time;
  has_last_event_ = true;
  last_event_kind_ = kKindDisconnect;
  last_reason_ = verdict.reason;
  last_errno_ = verdict.err;
  last_event_unix_ = e.unix_time;
  has_last_detected_by_ = true;
  last_detected_by_ = by;
  ctx_->log->Record(std::move(e));
  NoteIdleDeath(verdict.reason, last, lived);

  // A peer that closed gracefully gets a graceful close; one judged dead is
  // abandoned with RST (SO_LINGER 0), skipping TIME_WAIT.
  CloseSocket(verdict.reason != Reason::kPeerClosed);
  up_ = false;
  heartbeat_unsent_ = 0;
  Transition(TargetEvent::kDied);
  // A connection that held for a whole check interval resets the backoff; one
  // that dies at once keeps growing it, so a peer that accepts and drops is
  // not hammered.
  if (lived >= Seconds(config_->check_interval)) attempt_ = 0;
  ScheduleBackoff();
}

void Target::NoteIdleDeath(Reason reason, const TcpSample& at_death, double lived) {
  const double detection = IdleDetection(reason, *config_, at_death);
  if (detection < 0) return;
  const double age = IdleAgeAtDeath({reason, at_death, lived, detection});
  if (age < 0) return;
  if (!idle_cutoff_) idle_cutoff_ = std::make_unique<IdleCutoff>();
  if (!idle_cutoff_->Add(age)) return;
  const double cutoff = idle_cutoff_->seconds();
  Event e = MakeEvent("idle_cutoff", LogLevel::kWarn);
  e.detail = "connections die after " + FormatSeconds(cutoff) + " idle (" +
             std::to_string(IdleCutoff::kAgreeing) +
             " or more deaths within 5%): a middlebox on the path forgets idle flows after at "
             "most " + FormatSeconds(cutoff) + "; keepalive.idle is " +
             FormatDuration(config_->keepalive.idle) + ", set it well below " +
             FormatSeconds(cutoff);
  ctx_->log->Record(std::move(e));
}

void Target::Close(std::string_view why, bool log) {
  if (canary_) canary_->Stop();
  ctx_->admission->Cancel(&ticket_);
  ReleaseSlot();
  resolve_.reset();
  ev_timer_stop(ctx_->loop, &timer_);
  const bool was_up = up_;
  const double lived = MonoNow() - up_since_;
  if (was_up) {
    history_->Down(MonoNow(), false);
    retransmits_closed_ += ReadTcpInfo(fd_).total_retrans;
    ctx_->connection_lifetime.Observe(lived);
  }
  // Our own close of a held TLS session says so (close_notify) before FIN.
  if (was_up && tls_ && !handshaking_) tls_->Shutdown();
  if (log) {
    Event e = MakeEvent("close", LogLevel::kInfo);
    if (was_up) e.connected_for = lived;
    e.detail = std::string(why);
    ctx_->log->Record(std::move(e));
  }
  CloseSocket(false);
  up_ = false;
}

void Target::CloseSocket(bool reset) {
  ctx_->checks_due->Cancel(&check_);
  if (address_watch_) address_watch_->Stop();
  tls_.reset();
  handshaking_ = false;
  awaiting_verdict_ = false;
  if (fd_ < 0) return;
  ev_io_stop(ctx_->loop, &io_);
  watching_write_ = false;
  if (ctx_->closer) {
    ctx_->closer->Close(fd_, reset);
  } else {
    if (reset) {
      struct linger lg {1, 0};
      setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd_);
  }
  fd_ = -1;
  --ctx_->sockets_open;
}

void Target::InheritCounters(const Target& old) {
  connects_ = old.connects_;
  connect_failures_ = old.connect_failures_;
  disconnects_ = old.disconnects_;
  icmp_errors_ = old.icmp_errors_;
  retransmits_closed_ = old.retransmits_closed_;
  dns_failures_ = old.dns_failures_;
  *history_ = *old.history_;
  // The cut-off belongs to the path: kept while the address is the same.
  if (old.idle_cutoff_ && old.config_->address == config_->address) {
    idle_cutoff_ = std::make_unique<IdleCutoff>(*old.idle_cutoff_);
  }
  // What the canary found carries on, counters and last result (its series
  // stay continuous); its next attempt tells about the new config.
  if (canary_ && old.canary_) {
    canary_->InheritState(*old.canary_);
  }
}

void Target::Restore(const StoredTarget& saved, double mono_delta) {
  auto kind_index = [](std::string_view kind) -> uint8_t {
    if (kind == "connect_failure") return kKindConnectFailure;
    if (kind == "disconnect") return kKindDisconnect;
    return kKindConnect;
  };
  connects_ = saved.connects;
  connect_failures_ = saved.connect_failures;
  disconnects_ = saved.disconnects;
  icmp_errors_ = saved.icmp_errors;
  retransmits_closed_ = saved.retransmits;
  dns_failures_ = saved.dns_failures;
  last_change_unix_ = saved.last_change_unix;
  restored_up_ = saved.up;
  has_last_event_ = saved.has_last_event;
  last_event_kind_ = kind_index(saved.last_event_kind);
  last_errno_ = saved.last_errno;
  last_event_unix_ = saved.last_event_unix;
  has_last_detected_by_ = saved.has_last_detected_by;
  last_detected_by_ = saved.last_detected_by;
  // A connect sets no reason: after one, last_reason_ is the last failure's.
  last_reason_ = saved.has_last_event && last_event_kind_ != kKindConnect
                     ? saved.last_reason
                     : saved.last_failure_reason;
  last_failure_kind_ = kind_index(saved.last_failure_kind);
  last_failure_errno_ = saved.last_failure_errno;
  last_failure_unix_ = saved.last_failure_unix;
  has_rtt_ = saved.has_rtt;
  last_sample_.rtt_us = static_cast<uint32_t>(std::lround(saved.rtt_seconds * 1e6));
  if (saved.tls) tls_peer_ = saved.tls;
  UpHistory history;
  if (UpHistory::Load(saved.history, &history)) {
    *history_ = history.Rebased(mono_delta);
    history_->Unobserved(saved.history_at + mono_delta, MonoNow());
  }
  IdleCutoff cutoff;
  if (saved.has_idle_cutoff && IdleCutoff::Restore(saved.idle_ages, saved.idle_count,
                                                   saved.idle_next, saved.idle_cutoff_seconds,
                                                   &cutoff)) {
    idle_cutoff_ = std::make_unique<IdleCutoff>(cutoff);
  }
}

void Target::OnAddressWatch(AddressWatch::Outcome outcome, const std::string& detail) {
  switch (outcome) {
    case AddressWatch::Outcome::kFailed: {
      ++dns_failures_;
      Event e = MakeEvent("dns_failure", LogLevel::kWarn);
      e.has_reason = true;
      e.reason = Reason::kDnsError;
      e.detail = "re-resolution failed: " + detail + "; the connection is kept";
      ctx_->log->Record(std::move(e));
      return;
    }
    case AddressWatch::Outcome::kStale: {
      std::string what = "held " + resolved_text_ + "; DNS now returns " + detail;
      if (config_->on_address_change == AddressChange::kReconnect) {
        ReconnectForAddressChange("address no longer in DNS: " + what);
        return;
      }
      Event e = MakeEvent("address_stale", LogLevel::kWarn);
      e.detail = std::move(what);
      ctx_->log->Record(std::move(e));
      return;
    }
    case AddressWatch::Outcome::kFresh:
      return;  // the gauge says it; a returning address is no news worth a line
  }
}

void Target::ReconnectForAddressChange(std::string why) {
  // NOTE: as a reload's close, counted nowhere: the connection did not fail.
  Close(why, true);
  if (canary_) canary_->Start();  // Close stopped it; the target goes on
  heartbeat_unsent_ = 0;
  last_change_unix_ = UnixNow();
  Transition(TargetEvent::kDied);
  attempt_ = 0;
  ArmTimerAt(LoopNow());  // the backoff timer, expired: a fresh lookup and connect
}

Event Target::MakeEvent(std::string kind, LogLevel level) const {
  Event e;
  e.unix_time = UnixNow();
  e.level = level;
  e.kind = std::move(kind);
  e.target = config_->name;
  e.address = config_->Where();
  e.resolved_address = resolved_text_;
  if (endpoint_) e.endpoint = endpoint_->endpoint;
  return e;
}

void Target::FillSnapshot(TargetSnapshot* out) const {
  out->config = config_;
  out->endpoint = endpoint_;
  out->state = state_;
  out->up = up_;
  out->last_change_unix = last_change_unix_;
  out->resolved_address = resolved_text_;
  out->resolves_name = address_watch_ != nullptr;
  out->address_stale = address_watch_ && address_watch_->stale();
  out->dns_failures = dns_failures_;
  out->has_last_event = has_last_event_;
  if (has_last_event_) {
    out->last_event_kind = kEventKinds[last_event_kind_];
    out->last_reason = last_reason_;
    out->last_errno = last_errno_;
    out->last_event_unix = last_event_unix_;
    out->has_last_detected_by = has_last_detected_by_;
    out->last_detected_by = last_detected_by_;
  }
  out->connects = connects_;
  out->connect_failures = connect_failures_;
  out->disconnects = disconnects_;
  out->icmp_errors = icmp_errors_;
  out->idle_cutoff_seconds = idle_cutoff_ ? idle_cutoff_->seconds() : 0;
  if (idle_cutoff_) out->idle_cutoff = std::make_shared<const IdleCutoff>(*idle_cutoff_);
  if (canary_) out->canary = std::make_shared<const CanarySnapshot>(canary_->status());
  out->retransmits_total = retransmits_closed_ + (up_ ? last_sample_.total_retrans : 0);
  out->has_rtt = has_rtt_;
  out->rtt_seconds = last_sample_.rtt_us / 1e6;
  out->tls = tls_peer_;
  if (has_last_event_ && last_event_kind_ != kKindConnect) {
    out->last_failure_kind = kEventKinds[last_event_kind_];
    out->last_failure_errno = last_errno_;
    out->last_failure_unix = last_event_unix_;
  } else if (last_failure_kind_ != kKindConnect) {
    out->last_failure_kind = kEventKinds[last_failure_kind_];
    out->last_failure_errno = last_failure_errno_;
    out->last_failure_unix = last_failure_unix_;
  }
  out->last_failure_reason = last_reason_;
  out->history_at = MonoNow();
  out->history = *history_;
  out->up_seconds_total = history_->UpSecondsTotal(out->history_at);
  if (heartbeat_ && heartbeat_->has_rtt()) {
    out->has_heartbeat = true;
    out->heartbeat_seconds = heartbeat_->last_rtt();
  }
}

}  // namespace connwatch
