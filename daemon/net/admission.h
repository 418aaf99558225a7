#pragma once
// Connect admission: every attempt (DNS lookup + connect) takes a token from a
// bucket refilled at max_connects_per_second and a slot out of
// max_connects_in_flight, so neither a start-up with 100,000 targets nor a
// reconnect storm after a peer restart sends more SYNs than configured.
// Attempts that cannot start wait in FIFO order. Loop thread only.

#include <ev.h>

#include <cstdint>
#include <functional>
#include <list>

#include "core/config.h"

namespace connwatch {

class Admission {
 public:
  // A waiting attempt; owned by whoever asked (a Target). `grant` runs on the
  // loop when the attempt may start.
  struct Ticket {
    std::function<void()> grant;
    bool queued = false;
    std::list<Ticket*>::iterator position;
  };

  explicit Admission(struct ev_loop* loop);
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  void Configure(const GlobalConfig& config);

  // True when the attempt may start now (a slot is taken: call Release when it
  // ends). Otherwise the ticket is queued and `grant` runs later, with the
  // slot already taken.
  bool Acquire(Ticket* ticket);
  // The attempt holding a slot ended (connected, failed, or abandoned).
  void Release();
  // Removes a queued ticket (its owner is going away). No-op if not queued.
  void Cancel(Ticket* ticket);

  size_t in_flight() const { return in_flight_; }
  // The bucket's capacity, in seconds' worth of attempts at the configured
  // rate (docs/CONFIG.md states it; a test holds the docs to it).
  double bucket_seconds() const { return burst_ / rate_; }
  size_t queued() const { return queue_.size(); }

 private:
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);
  void Refill(double now);
  void GrantWaiting();

  struct ev_loop* loop_;
  ev_timer timer_;
  double rate_ = 1000;      // tokens per second
  double burst_ = 1;        // bucket capacity
  double tokens_ = 1;
  double last_refill_ = 0;  // monotonic
  size_t max_in_flight_ = 1000;
  size_t in_flight_ = 0;
  bool granting_ = false;
  std::list<Ticket*> queue_;
};

}  // namespace connwatch
