#include "net/address_watch.h"

#include <algorithm>

namespace connwatch {

AddressWatch::AddressWatch(struct ev_loop* loop, Resolver* resolver, const TargetConfig* config,
                           Handler handler)
    : loop_(loop), resolver_(resolver), config_(config), handler_(std::move(handler)) {
  ev_timer_init(&timer_, &AddressWatch::TimerCb, 0., 0.);
  timer_.data = this;
}

AddressWatch::~AddressWatch() { Stop(); }

void AddressWatch::Start(const ResolvedAddress& held) {
  Stop();
  held_ = held;
  ttl_ = held.ttl;
  Arm();
}

void AddressWatch::Stop() {
  ev_timer_stop(loop_, &timer_);
  request_.reset();
  stale_ = false;
}

void AddressWatch::Arm() {
  ev_timer_stop(loop_, &timer_);
  ev_timer_set(&timer_, static_cast<double>(interval().count()) / 1000.0, 0.);
  ev_timer_start(loop_, &timer_);
}

void AddressWatch::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<AddressWatch*>(w->data);
  // NOTE: a name resolves asynchronously; the callback runs on a later
  // iteration of the loop, unless the resolver answers at once.
  auto request = self->resolver_->Resolve(
      self->config_->host, self->config_->port, self->config_->address_family,
      [self](const std::string& status, std::vector<ResolvedAddress> addresses) {
        self->OnAnswer(status, addresses);
      });
  if (request) self->request_ = std::move(request);
}

void AddressWatch::OnAnswer(const std::string& status,
                            const std::vector<ResolvedAddress>& addresses) {
  request_.reset();
  // The next lookup is scheduled first: the handler may Stop() us.
  if (!status.empty() || addresses.empty()) {
    Arm();
    handler_(Outcome::kFailed, status.empty() ? "no address" : status);
    return;
  }
  int ttl = -1;
  bool held = false;
  std::string returned;
  for (const ResolvedAddress& a : addresses) {
    if (a.ttl >= 0) ttl = ttl < 0 ? a.ttl : std::min(ttl, a.ttl);
    held |= SameEndpoint(a, held_);
    if (!returned.empty()) returned += ", ";
    returned += a.ToString();
  }
  ttl_ = ttl;
  Arm();
  if (held == !stale_) return;  // no change
  stale_ = !held;
  handler_(stale_ ? Outcome::kStale : Outcome::kFresh, returned);
}

}  // namespace connwatch
