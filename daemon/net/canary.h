#pragma once
// A target's canary (`canary:` in its config): every `interval`, a fresh
// connection to the address the held connection uses, opened beside it. A
// held connection can be fine while new ones fail (the listener died and old
// connections live on; the accept queue or the conntrack table is full; a
// load balancer drains the backend), and the other way round (new connections
// work, the held one is wedged): the canary tells the two apart.
//
// Each attempt goes through the same Admission as every connect (the token
// bucket and the in-flight cap), connects without blocking (socket options,
// source_address and the self-connect check as the held connection's),
// completes the TLS handshake for a TLS target with the target's context and
// verification (and, for TLS 1.3 with a client certificate, waits for the
// server's verdict as the held connection does), and then closes with RST
// (SO_LINGER {1, 0}): the canary leaves nothing in TIME_WAIT on either side,
// however often it runs. `timeout` bounds the connect and the handshake.
//
// The outcome is the canary's own: connwatch_target_canary_* and an event
// only when it changes (canary_failure, canary_recovered); the held
// connection's series, histograms and state are untouched.
//
// Owned by the per-connection object (a Target), so every connection that
// is held gets its own canary to its own address. Loop thread only.

#include <ev.h>

#include <functional>
#include <memory>
#include <string>

#include "core/canary.h"
#include "core/config.h"
#include "core/event_log.h"
#include "core/reason.h"
#include "core/snapshot.h"
#include "net/admission.h"
#include "net/resolver.h"
#include "net/tls_session.h"

namespace connwatch {

struct LoopContext;

class Canary {
 public:
  // What an attempt connects to, asked when it is due: the address the held
  // connection uses (or last used), as text too, and whether it is up.
  struct Where {
    const ResolvedAddress* address = nullptr;  // null: none yet (never resolved)
    const std::string* text = nullptr;
    bool held_up = false;
  };
  using WhereFn = std::function<Where()>;

  // `config` is the owner's and outlives the canary; config->canary is set.
  Canary(LoopContext* ctx, const TargetConfig* config, WhereFn where);
  ~Canary();  // Stop()
  Canary(const Canary&) = delete;
  Canary& operator=(const Canary&) = delete;

  // The first attempt after U[0, interval), then one every interval.
  void Start();
  // Abandons an attempt in flight (counted nowhere) and stops.
  void Stop();
  // Takes over what the canary of a target whose config changed had found,
  // so its series go on across the reload.
  void InheritState(const Canary& old) { tracker_.Inherit(old.tracker_); }
  const CanarySnapshot& status() const { return tracker_.status(); }

 private:
  enum class State : uint8_t {
    kStopped,      // not started, or stopped by the owner
    kIdle,         // waiting for the next attempt (timer_ at its due time)
    kQueued,       // waiting for admission (ticket_ queued, no timer)
    kConnecting,   // connect() in flight: io_ for EV_WRITE, timer_ at the timeout
    kHandshaking,  // TLS: the handshake, io_ for what it waits for, timer_ as above
    kVerdict,      // TLS 1.3 with a client certificate asked for: the server's next flight
  };

  static void IoCb(struct ev_loop* loop, ev_io* w, int revents);
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);

  void Due();
  void Begin();  // admitted: open the socket and connect
  void OnConnectWritable();
  void OnConnected();
  void ContinueHandshake();
  bool HandshakeSliceOver() const;
  void OnVerdictReadable();
  void Succeeded();
  void Failed(Reason reason, int err, std::string detail);
  // Closes the socket (RST), frees the admission slot, schedules the next attempt.
  void EndAttempt();
  void CloseSocket();
  void ReleaseSlot();
  void Watch(int events);
  void ArmTimerAt(double deadline);
  Event MakeEvent(std::string kind, LogLevel level) const;

  LoopContext* ctx_;
  const TargetConfig* config_;
  WhereFn where_;
  double timeout_s_;
  State state_ = State::kStopped;
  ev_io io_;
  ev_timer timer_;
  Admission::Ticket ticket_;
  bool holds_slot_ = false;
  int fd_ = -1;
  std::unique_ptr<TlsSession> tls_;
  ResolvedAddress address_;   // of the attempt in flight
  std::string address_text_;  // the same as text
  double started_ = 0;        // monotonic: connect() called
  CanaryTracker tracker_;     // the schedule and what the attempts found
};

}  // namespace connwatch
