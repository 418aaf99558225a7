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

}  // namespace connwatch
