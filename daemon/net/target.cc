#include "net/target.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <re2/re2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/backoff.h"
#include "core/clock.h"
#include "net/tcp_info.h"

namespace connwatch {

namespace {
constexpr const char* kEventKinds[] = {"connect", "connect_failure", "disconnect"};
enum : uint8_t { kKindConnect = 0, kKindConnectFailure = 1, kKindDisconnect = 2 };

double Seconds(Millis d) { return static_cast<double>(d.count()) / 1000.0; }

// Sets an int socket option; returns 0 or the errno.
int SetIntOption(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : errno;
}
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

Target::Target(LoopContext* ctx, std::shared_ptr<const TargetConfig> config)
    : ctx_(ctx), config_(std::move(config)) {
  ev_io_init(&io_, &Target::IoCb, -1, EV_READ);
  io_.data = this;
  ev_timer_init(&timer_, &Target::TimerCb, 0., 0.);
  timer_.data = this;
  ticket_.grant = [this] {
    holds_slot_ = true;
    BeginAttempt();
  };
  last_change_unix_ = UnixNow();
  ++ctx_->targets_by_state[static_cast<size_t>(state_)];
}

Target::~Target() {
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

double Target::LoopNow() const { return ev_now(ctx_->loop); }

void Target::ArmTimerAt(double deadline) {
  // NOTE: relative to the loop's cached time, so targets given the same
  // deadline land on the same instant of libev's timer heap and expire in
  // one loop iteration (check batching depends on it).
  double delay = deadline - LoopNow();
  ev_timer_stop(ctx_->loop, &timer_);
  ev_timer_set(&timer_, delay > 0 ? delay : 0., 0.);
  ev_timer_start(ctx_->loop, &timer_);
}

void Target::Start() {
  double jitter = Seconds(config_->startup_jitter) * ctx_->Uniform01();
  ArmTimerAt(LoopNow() + jitter);
}

void Target::IoCb(struct ev_loop* /*loop*/, ev_io* w, int /*revents*/) {
  auto* self = static_cast<Target*>(w->data);
  switch (self->state_) {
    case TargetState::kConnecting:
      self->OnConnectWritable();
      break;
    case TargetState::kUp:
      if (self->ReadAvailable()) {
        // A heartbeat reply may have arrived: nothing else to do until the timer.
      }
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
      self->ConnectFailed(Reason::kTimeout, 0,
                          "no answer within connect_timeout " +
                              FormatDuration(self->config_->connect_timeout));
      break;
    case TargetState::kUp: {
      const double now = self->LoopNow();
      constexpr double kSlack = 0.0005;  // timers may fire a hair early
      if (self->heartbeat_ && self->heartbeat_->outstanding &&
          now + kSlack >= self->heartbeat_->deadline) {
        if (!self->HeartbeatDeadlinePassed()) return;
      }
      if (now + kSlack >= self->next_check_) {
        if (!self->Check()) return;
        self->next_check_ = self->NextCheckAfter(now);
      }
      if (self->heartbeat_ && now + kSlack >= self->heartbeat_->next_send) {
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
    Event e = MakeEvent("connect_failure", LogLevel::kWarn);
    e.has_reason = true;
    e.reason = Reason::kDnsError;
    e.detail = status.empty() ? "no address" : status;
    has_last_event_ = true;
    last_event_kind_ = kKindConnectFailure;
    last_reason_ = Reason::kDnsError;
    last_errno_ = 0;
    last_event_unix_ = e.unix_time;
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
  if (ctx_->sockets_open >= ctx_->socket_budget) {
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
  ArmTimerAt(LoopNow() + Seconds(config_->connect_timeout));
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

namespace {
// NOTE: a connect to a loopback port nobody listens on, from an ephemeral
// port equal to it, "succeeds" as a TCP simultaneous open with itself. Seen
// with targets on 127.0.0.1 whose port lies in ip_local_port_range.
bool IsSelfConnect(int fd, const ResolvedAddress& remote) {
  bool loopback = false;
  if (remote.addr.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&remote.addr);
    loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
  } else if (remote.addr.ss_family == AF_INET6) {
    loopback = IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&remote.addr)->sin6_addr);
  }
  if (!loopback) return false;
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return false;
  return len == remote.len && std::memcmp(&local, &remote.addr, len) == 0;
}
}  // namespace

void Target::OnConnected() {
  if (IsSelfConnect(fd_, address_)) {
    ConnectFailed(Reason::kRefused, 0, "connected to itself: nothing listens on the port");
    return;
  }
  const double now = MonoNow();
  const double loop_now = LoopNow();
  ev_io_stop(ctx_->loop, &io_);
  ev_io_set(&io_, fd_, EV_READ);
  ev_io_start(ctx_->loop, &io_);
  Transition(TargetEvent::kConnected);
  last_sample_ = ReadTcpInfo(fd_);
  has_rtt_ = last_sample_.valid;
  up_ = true;
  up_since_ = now;
  ++connects_;
  const double connect_seconds = now - connect_started_;
  ctx_->connect_duration.Observe(connect_seconds);

  Event e = MakeEvent("connect", LogLevel::kInfo);
  e.connect_seconds = connect_seconds;
  e.tcp = last_sample_;
  last_change_unix_ = e.unix_time;
  has_last_event_ = true;
  last_event_kind_ = kKindConnect;
  last_errno_ = 0;
  last_event_unix_ = e.unix_time;
  ctx_->log->Record(std::move(e));

  next_check_ = NextCheckAfter(loop_now);
  if (config_->heartbeat) {
    if (!heartbeat_) heartbeat_ = std::make_unique<HeartbeatState>();
    auto& hb = *heartbeat_;
    hb.expect = ctx_->Regex(config_->heartbeat->expect);
    hb.received.clear();
    hb.outstanding = false;
    hb.failures = 0;
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
  has_last_event_ = true;
  last_event_kind_ = kKindConnectFailure;
  last_reason_ = reason;
  last_errno_ = err;
  last_event_unix_ = e.unix_time;
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
  char* buf = ctx_->drain_buffer.data();
  for (int i = 0; i < LoopContext::kMaxReadsPerWakeup; ++i) {
    ssize_t n = recv(fd_, buf, LoopContext::kDrainChunk, MSG_DONTWAIT);
    if (n > 0) {
      if (heartbeat_) OnHeartbeatBytes(buf, static_cast<size_t>(n), MonoNow());
      continue;
    }
    const int err = n < 0 ? errno : 0;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) return true;
    // End of file or an error: the connection is over. Read TCP_INFO before close.
    TcpSample at_death = ReadTcpInfo(fd_);
    Verdict verdict = ClassifyRecv(n, err, at_death, last_sample_);
    Die(verdict, at_death, "");
    return false;
  }
  // Bounded: more data may be waiting; the level-triggered watcher wakes us
  // again after the other targets had their turn.
  return true;
}

bool Target::Check() {
  ++ctx_->checks;
  TcpSample s = ReadTcpInfo(fd_);
  if (IsEstablished(s)) {
    last_sample_ = s;
    has_rtt_ = true;
    return true;
  }
  // Anomaly path: find out what happened with the extra calls.
  if (!ReadAvailable()) return false;
  if (IsPeerClosed(s)) {
    // NOTE: FIN hidden behind unread data (a flood, or reads still bounded).
    Die(Verdict::Dead(Reason::kPeerClosed, 0), s, "CLOSE_WAIT with unread data");
    return false;
  }
  int pending = 0;
  socklen_t len = sizeof pending;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &len) != 0) pending = errno;
  Verdict verdict = ClassifyAnomaly(s, pending, last_sample_);
  if (!verdict.dead()) return true;
  Die(verdict, s, "periodic check saw tcp state " + std::to_string(s.state));
  return false;
}

bool Target::SendHeartbeat(double now) {
  auto& hb = *heartbeat_;
  const auto& cfg = *config_->heartbeat;
  hb.next_send = now + Seconds(cfg.interval);
  if (hb.outstanding) return true;  // the previous one is still within its timeout
  hb.received.clear();
  hb.outstanding = true;
  hb.sent_at = MonoNow();  // for the round trip; deadlines use loop time
  hb.deadline = now + Seconds(cfg.timeout);
  ssize_t n = send(fd_, cfg.send.data(), cfg.send.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return true;
  const int err = errno;
  // A full send buffer is no verdict: the peer does not read, and the reply
  // deadline (or TCP_USER_TIMEOUT) will tell.
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return true;
  TcpSample at_death = ReadTcpInfo(fd_);
  Die(Verdict::Dead(ClassifyDisconnectError(err, at_death, last_sample_), err), at_death,
      "heartbeat send failed");
  return false;
}

void Target::OnHeartbeatBytes(const char* data, size_t len, double now) {
  auto& hb = *heartbeat_;
  if (!hb.outstanding) return;  // unsolicited bytes are discarded
  hb.received.append(data, len);
  if (hb.received.size() > kHeartbeatBufferCap) {
    hb.received.erase(0, hb.received.size() - kHeartbeatBufferCap);
  }
  if (!hb.expect || !hb.expect->ok()) return;
  if (RE2::PartialMatch(hb.received, *hb.expect)) {
    hb.outstanding = false;
    hb.failures = 0;
    hb.has_rtt = true;
    hb.last_rtt = now - hb.sent_at;
    hb.received.clear();
  }
}

bool Target::HeartbeatDeadlinePassed() {
  auto& hb = *heartbeat_;
  const auto& cfg = *config_->heartbeat;
  hb.outstanding = false;
  ++hb.failures;
  const bool mismatch = !hb.received.empty();
  const Reason reason = mismatch ? Reason::kHeartbeatMismatch : Reason::kHeartbeatTimeout;
  std::string detail = mismatch ? "reply did not match expect within " + FormatDuration(cfg.timeout)
                                : "no reply within " + FormatDuration(cfg.timeout);
  detail += " (failure " + std::to_string(hb.failures) + "/" + std::to_string(cfg.fall) + ")";
  hb.received.clear();
  if (hb.failures < cfg.fall) {
    Event e = MakeEvent("heartbeat_failure", LogLevel::kWarn);
    e.has_reason = true;
    e.reason = reason;
    e.detail = std::move(detail);
    ctx_->log->Record(std::move(e));
    return true;
  }
  TcpSample at_death = ReadTcpInfo(fd_);
  Die(Verdict::Dead(reason, 0), at_death, std::move(detail));
  return false;
}

double Target::NextCheckAfter(double now) {
  const double at =
      now + Seconds(config_->check_interval) + Seconds(config_->check_jitter) * ctx_->Uniform01();
  // Checks are rounded up to a 50 ms grid: the targets due in one slot are
  // checked in one loop iteration, so the wake-up (epoll_wait, timer heap
  // work) is shared and a check costs about its one getsockopt(). At 100,000
  // targets every 5 s a slot holds 1,000 checks, about 3 ms of work.
  constexpr double kCheckSlot = 0.050;
  return std::ceil(at / kCheckSlot) * kCheckSlot;
}

void Target::ArmUpTimer() {
  double next = next_check_;
  if (heartbeat_) {
    next = std::min(next, heartbeat_->next_send);
    if (heartbeat_->outstanding) next = std::min(next, heartbeat_->deadline);
  }
  ArmTimerAt(next);
}

void Target::Die(const Verdict& verdict, const TcpSample& at_death, std::string detail) {
  const double now = MonoNow();
  const double lived = now - up_since_;
  disconnects_[static_cast<size_t>(verdict.reason)]++;
  const TcpSample& last = at_death.valid ? at_death : last_sample_;
  retransmits_closed_ += last.total_retrans;
  if (at_death.valid && at_death.rtt_us > 0) last_sample_.rtt_us = at_death.rtt_us;
  ctx_->connection_lifetime.Observe(lived);

  Event e = MakeEvent("disconnect", LogLevel::kWarn);
  e.has_reason = true;
  e.reason = verdict.reason;
  e.err = verdict.err;
  e.connected_for = lived;
  e.tcp = last;
  e.detail = std::move(detail);
  last_change_unix_ = e.unix_time;
  has_last_event_ = true;
  last_event_kind_ = kKindDisconnect;
  last_reason_ = verdict.reason;
  last_errno_ = verdict.err;
  last_event_unix_ = e.unix_time;
  ctx_->log->Record(std::move(e));

  // A peer that closed gracefully gets a graceful close; one judged dead is
  // abandoned with RST (SO_LINGER 0), skipping TIME_WAIT.
  CloseSocket(verdict.reason != Reason::kPeerClosed);
  up_ = false;
  if (heartbeat_) heartbeat_->outstanding = false;
  Transition(TargetEvent::kDied);
  // A connection that held for a whole check interval resets the backoff; one
  // that dies at once keeps growing it, so a peer that accepts and drops is
  // not hammered.
  if (lived >= Seconds(config_->check_interval)) attempt_ = 0;
  ScheduleBackoff();
}

void Target::Close(std::string_view why, bool log) {
  ctx_->admission->Cancel(&ticket_);
  ReleaseSlot();
  resolve_.reset();
  ev_timer_stop(ctx_->loop, &timer_);
  const bool was_up = up_;
  const double lived = MonoNow() - up_since_;
  if (was_up) {
    retransmits_closed_ += ReadTcpInfo(fd_).total_retrans;
    ctx_->connection_lifetime.Observe(lived);
  }
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
  if (fd_ < 0) return;
  ev_io_stop(ctx_->loop, &io_);
  if (reset) {
    struct linger lg {1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(fd_);
  fd_ = -1;
  --ctx_->sockets_open;
}

void Target::InheritCounters(const Target& old) {
  connects_ = old.connects_;
  connect_failures_ = old.connect_failures_;
  disconnects_ = old.disconnects_;
  retransmits_closed_ = old.retransmits_closed_;
}

Event Target::MakeEvent(std::string kind, LogLevel level) const {
  Event e;
  e.unix_time = UnixNow();
  e.level = level;
  e.kind = std::move(kind);
  e.target = config_->name;
  e.address = config_->address;
  e.resolved_address = resolved_text_;
  return e;
}

void Target::FillSnapshot(TargetSnapshot* out) const {
  out->config = config_;
  out->state = state_;
  out->up = up_;
  out->last_change_unix = last_change_unix_;
  out->resolved_address = resolved_text_;
  out->has_last_event = has_last_event_;
  if (has_last_event_) {
    out->last_event_kind = kEventKinds[last_event_kind_];
    out->last_reason = last_reason_;
    out->last_errno = last_errno_;
    out->last_event_unix = last_event_unix_;
  }
  out->connects = connects_;
  out->connect_failures = connect_failures_;
  out->disconnects = disconnects_;
  out->retransmits_total = retransmits_closed_ + (up_ ? last_sample_.total_retrans : 0);
  out->has_rtt = has_rtt_;
  out->rtt_seconds = last_sample_.rtt_us / 1e6;
  if (heartbeat_ && heartbeat_->has_rtt) {
    out->has_heartbeat = true;
    out->heartbeat_seconds = heartbeat_->last_rtt;
  }
}

}  // namespace connwatch
