#include "net/admission.h"

#include <algorithm>
#include <cmath>

#include "core/clock.h"

namespace connwatch {

Admission::Admission(struct ev_loop* loop) : loop_(loop) {
  ev_timer_init(&timer_, &Admission::TimerCb, 0., 0.);
  timer_.data = this;
  last_refill_ = MonoNow();
}

Admission::~Admission() {
  ev_timer_stop(loop_, &timer_);
  for (Ticket* t : queue_) t->queued = false;
}

void Admission::Configure(const GlobalConfig& config) {
  Refill(MonoNow());
  rate_ = std::max(1, config.max_connects_per_second);
  // A bucket of 2 ms worth of attempts (at least one): no 100 ms window can
  // carry more than 2% over the rate, and a timer that fires a millisecond
  // late (libev's epoll timeouts have millisecond resolution) loses nothing.
  burst_ = std::max(1.0, rate_ / 500.0);
  tokens_ = std::min(tokens_, burst_);
  max_in_flight_ = static_cast<size_t>(std::max(1, config.max_connects_in_flight));
  GrantWaiting();
}

void Admission::Refill(double now) {
  tokens_ = std::min(burst_, tokens_ + (now - last_refill_) * rate_);
  last_refill_ = now;
}

bool Admission::Acquire(Ticket* ticket) {
  if (queue_.empty() && in_flight_ < max_in_flight_) {
    Refill(MonoNow());
    if (tokens_ >= 1) {
      tokens_ -= 1;
      ++in_flight_;
      return true;
    }
  }
  if (!ticket->queued) {
    ticket->position = queue_.insert(queue_.end(), ticket);
    ticket->queued = true;
  }
  GrantWaiting();
  return false;
}

void Admission::Release() {
  if (in_flight_ > 0) --in_flight_;
  GrantWaiting();
}

void Admission::Cancel(Ticket* ticket) {
  if (!ticket->queued) return;
  queue_.erase(ticket->position);
  ticket->queued = false;
}

void Admission::GrantWaiting() {
  // A grant may finish its attempt at once (a refused loopback connect) and
  // call Release() from inside the loop below; the outer call keeps going.
  if (granting_) return;
  granting_ = true;
  Refill(MonoNow());
  while (!queue_.empty() && in_flight_ < max_in_flight_ && tokens_ >= 1) {
    Ticket* ticket = queue_.front();
    queue_.pop_front();
    ticket->queued = false;
    tokens_ -= 1;
    ++in_flight_;
    ticket->grant();
  }
  granting_ = false;
  ev_timer_stop(loop_, &timer_);
  // Waiting for tokens (a free slot comes with a Release instead): for as
  // many as the bucket holds and attempts wait, not one, so a reconnect storm
  // paced at 1,000 per second wakes the loop every 2 ms for 2 attempts rather
  // than every 1 ms for one. The rate and the bucket are the same.
  if (!queue_.empty() && in_flight_ < max_in_flight_) {
    const double want = std::min(burst_, static_cast<double>(queue_.size()));
    const double wait = (std::max(1.0, std::floor(want)) - tokens_) / rate_;
    ev_timer_set(&timer_, std::max(wait, 0.0001), 0.);
    ev_timer_start(loop_, &timer_);
  }
}

void Admission::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  static_cast<Admission*>(w->data)->GrantWaiting();
}

}  // namespace connwatch
