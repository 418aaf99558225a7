#include "net/canary.h"

#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/clock.h"
#include "core/liveness.h"
#include "net/socket_ops.h"
#include "net/target.h"

namespace connwatch {

namespace {
double Seconds(Millis d) { return static_cast<double>(d.count()) / 1000.0; }
}  // namespace

Canary::Canary(LoopContext* ctx, const TargetConfig* config, WhereFn where)
    : ctx_(ctx),
      config_(config),
      where_(std::move(where)),
      timeout_s_(Seconds(config->canary->timeout)),
      tracker_(Seconds(config->canary->interval)) {
  ev_io_init(&io_, &Canary::IoCb, -1, EV_WRITE);
  io_.data = this;
  ev_timer_init(&timer_, &Canary::TimerCb, 0., 0.);
  timer_.data = this;
  ticket_.grant = [this] {
    holds_slot_ = true;
    Begin();
  };
}

Canary::~Canary() { Stop(); }

void Canary::Start() {
  Stop();
  state_ = State::kIdle;
  ArmTimerAt(tracker_.First(ctx_->now, ctx_->Uniform01()));
}

void Canary::Stop() {
  ctx_->admission->Cancel(&ticket_);
  ReleaseSlot();
  CloseSocket();
  ev_timer_stop(ctx_->loop, &timer_);
  state_ = State::kStopped;
}

void Canary::ArmTimerAt(double deadline) {
  const double delay = deadline - ctx_->now;
  ev_timer_stop(ctx_->loop, &timer_);
  ev_timer_set(&timer_, delay > 0 ? delay : 0., 0.);
  ev_timer_start(ctx_->loop, &timer_);
}

void Canary::Watch(int events) {
  ev_io_stop(ctx_->loop, &io_);
  ev_io_set(&io_, fd_, events);
  ev_io_start(ctx_->loop, &io_);
}

void Canary::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<Canary*>(w->data);
  switch (self->state_) {
    case State::kIdle:
      self->Due();
      break;
    case State::kConnecting:
    case State::kHandshaking:
      self->Failed(Reason::kTimeout, 0,
                   "no answer within the canary's timeout " +
                       FormatDuration(self->config_->canary->timeout));
      break;
    case State::kVerdict:
      // No word from the server after its handshake: the certificate passed.
      self->Succeeded();
      break;
    case State::kStopped:
    case State::kQueued:
      break;
  }
}

void Canary::IoCb(struct ev_loop* /*loop*/, ev_io* w, int /*revents*/) {
  auto* self = static_cast<Canary*>(w->data);
  switch (self->state_) {
    case State::kConnecting:
      self->OnConnectWritable();
      break;
    case State::kHandshaking:
      // NOTE: level-triggered: a step left for the next iteration is offered
      // again by the next poll.
      if (self->HandshakeSliceOver()) break;
      self->ContinueHandshake();
      break;
    case State::kVerdict:
      self->OnVerdictReadable();
      break;
    default:
      ev_io_stop(self->ctx_->loop, w);
      break;
  }
}

void Canary::Due() {
  Where where = where_ ? where_() : Where{};
  ResolvedAddress numeric;
  if (where.address == nullptr &&
      ParseNumericAddress(config_->host, config_->port, &numeric)) {
    where.address = &numeric;  // a numeric host needs no lookup
  }
  if (where.address == nullptr) {
    // A name the target has not resolved yet: nothing to connect to.
    ArmTimerAt(tracker_.NoAddress(ctx_->now));
    return;
  }
  address_ = *where.address;
  address_text_ = where.text != nullptr && !where.text->empty() ? *where.text : address_.ToString();
  state_ = State::kQueued;
  if (ctx_->admission->Acquire(&ticket_)) {
    holds_slot_ = true;
    Begin();
  }
  // Otherwise ticket_.grant begins the attempt once admitted.
}

void Canary::Begin() {
  started_ = MonoNow();
  state_ = State::kConnecting;
  ArmTimerAt(ctx_->now + timeout_s_);
  const size_t closing = ctx_->closer ? ctx_->closer->pending() : 0;
  if (ctx_->sockets_open + closing >= ctx_->socket_budget) {
    Failed(Reason::kLocalError, EMFILE,
           "all " + std::to_string(ctx_->socket_budget) +
               " file descriptors for targets are in use (RLIMIT_NOFILE less a reserve for the "
               "daemon itself)");
    return;
  }
  const int family = address_.addr.ss_family;
  fd_ = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd_ < 0) {
    const int err = errno;
    Failed(ClassifyConnectError(err), err, "socket() failed");
    return;
  }
  ++ctx_->sockets_open;
  if (!config_->source_address.empty()) {
    ResolvedAddress source;
    if (!ParseNumericAddress(config_->source_address, 0, &source) ||
        source.addr.ss_family != family) {
      Failed(Reason::kLocalError, 0,
             "source_address " + config_->source_address +
                 " is not of the target's address family");
      return;
    }
    SetIntOption(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
    if (bind(fd_, reinterpret_cast<const sockaddr*>(&source.addr), source.len) != 0) {
      const int err = errno;
      Failed(ClassifyConnectError(err), err, "bind to source_address failed");
      return;
    }
  }
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&address_.addr), address_.len) == 0) {
    OnConnected();
    return;
  }
  const int err = errno;
  if (err != EINPROGRESS) {
    Failed(ClassifyConnectError(err), err, "");
    return;
  }
  // NOTE: watch for EV_WRITE only now; an unconnected socket reports HUP|OUT.
  Watch(EV_WRITE);
}

void Canary::OnConnectWritable() {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    Failed(ClassifyConnectError(err), err, "");
    return;
  }
  OnConnected();
}

void Canary::OnConnected() {
  if (IsSelfConnected(fd_)) {
    Failed(Reason::kRefused, 0, "connected to itself: nothing listens on the port");
    return;
  }
  if (!config_->tls) {
    Succeeded();
    return;
  }
  tls_ = std::make_unique<TlsSession>(config_->tls->context.ctx.get(), fd_, *config_->tls);
  state_ = State::kHandshaking;
  if (HandshakeSliceOver()) {
    Watch(EV_WRITE);  // writable at once: the ClientHello in the next iteration
    return;
  }
  ContinueHandshake();
}

bool Canary::HandshakeSliceOver() const {
  return ctx_->handshake_deadline > 0 && ctx_->handshake_steps > 0 &&
         MonoNow() > ctx_->handshake_deadline;
}

void Canary::ContinueHandshake() {
  ++ctx_->handshake_steps;
  const TlsSession::Status status = tls_->Handshake();
  if (status == TlsSession::Status::kWantRead || status == TlsSession::Status::kWantWrite) {
    Watch(status == TlsSession::Status::kWantRead ? EV_READ : EV_WRITE);
    return;
  }
  if (status != TlsSession::Status::kDone) {
    const TlsSession::Failure& f = tls_->failure();
    Reason reason = f.reason;
    // A socket error or an EOF in the handshake is the handshake's failure.
    if (!IsConnectFailureReason(reason)) reason = Reason::kTlsHandshake;
    Failed(reason, f.err, f.detail);
    return;
  }
  if (tls_->VerdictPending()) {
    state_ = State::kVerdict;
    Watch(EV_READ);
    constexpr double kVerdictGrace = 0.25;
    ArmTimerAt(ctx_->now + std::min(kVerdictGrace, ev_timer_remaining(ctx_->loop, &timer_)));
    return;
  }
  Succeeded();
}

void Canary::OnVerdictReadable() {
  int queued = 0;
  ioctl(fd_, FIONREAD, &queued);
  size_t n = 0;
  const TlsSession::Status status =
      tls_->Read(ctx_->drain_buffer.data(), LoopContext::kDrainChunk, &n);
  if (status == TlsSession::Status::kDone ||
      (status == TlsSession::Status::kWantRead && queued > 0)) {
    Succeeded();  // records came and none was an alert: accepted
    return;
  }
  if (status == TlsSession::Status::kWantRead || status == TlsSession::Status::kWantWrite) return;
  const TlsSession::Failure& f = tls_->failure();
  Failed(Reason::kTlsHandshake, f.err,
         "the server ended the session after the handshake (it rejects our client "
         "certificate?): " + f.detail);
}

void Canary::Succeeded() {
  const double seconds = MonoNow() - started_;
  const uint64_t failed = tracker_.failed_in_row();
  if (tracker_.Succeeded(UnixNow(), seconds) == CanaryTracker::Change::kRecovered) {
    Event e = MakeEvent("canary_recovered", LogLevel::kInfo);
    e.connect_seconds = seconds;
    e.detail = "a new connection succeeded again after " + std::to_string(failed) +
               " failed attempt" + (failed == 1 ? "" : "s");
    if (tls_) e.detail += " (TLS handshake included)";
    if (where_ && !where_().held_up) e.detail += "; the held connection is down";
    ctx_->log->Record(std::move(e));
  }
  EndAttempt();
}

void Canary::Failed(Reason reason, int err, std::string detail) {
  const CanaryTracker::Change change = tracker_.Failed(UnixNow(), reason, err, detail);
  if (change == CanaryTracker::Change::kFailed) {
    Event e = MakeEvent("canary_failure", LogLevel::kWarn);
    e.has_reason = true;
    e.reason = reason;
    e.err = err;
    e.detail = std::move(detail);
    if (where_ && where_().held_up) {
      if (!e.detail.empty()) e.detail += "; ";
      e.detail += "the held connection is up: new connections fail beside it";
    }
    ctx_->log->Record(std::move(e));
  }
  EndAttempt();
}

void Canary::EndAttempt() {
  CloseSocket();
  state_ = State::kIdle;
  ArmTimerAt(tracker_.Next(ctx_->now));
  // Last: a release may start attempts that waited for the slot.
  ReleaseSlot();
}

void Canary::CloseSocket() {
  tls_.reset();  // no close_notify: the RST below ends the session
  if (fd_ < 0) return;
  ev_io_stop(ctx_->loop, &io_);
  // RST, not FIN: nothing of a canary is left in TIME_WAIT (the side that
  // closes first would keep it for 60 s), however short its interval.
  if (ctx_->closer) {
    ctx_->closer->Close(fd_, true);
  } else {
    struct linger lg {1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd_);
  }
  fd_ = -1;
  --ctx_->sockets_open;
}

void Canary::ReleaseSlot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  ctx_->admission->Release();
}

Event Canary::MakeEvent(std::string kind, LogLevel level) const {
  Event e;
  e.unix_time = UnixNow();
  e.level = level;
  e.kind = std::move(kind);
  e.target = config_->name;
  e.address = config_->address;
  e.resolved_address = address_text_;
  return e;
}

}  // namespace connwatch
