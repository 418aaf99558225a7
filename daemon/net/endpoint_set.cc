#include "net/endpoint_set.h"

#include <algorithm>
#include <cstring>

#include "core/backoff.h"
#include "core/clock.h"

namespace connwatch {

namespace {

// Address order: IPv4 before IPv6, then the address bytes, then the port.
int CompareAddresses(const ResolvedAddress& a, const ResolvedAddress& b) {
  if (a.addr.ss_family != b.addr.ss_family) return a.addr.ss_family == AF_INET ? -1 : 1;
  if (a.addr.ss_family == AF_INET) {
    const auto* x = reinterpret_cast<const sockaddr_in*>(&a.addr);
    const auto* y = reinterpret_cast<const sockaddr_in*>(&b.addr);
    const int c = std::memcmp(&x->sin_addr, &y->sin_addr, sizeof x->sin_addr);
    if (c != 0) return c;
    return static_cast<int>(ntohs(x->sin_port)) - static_cast<int>(ntohs(y->sin_port));
  }
  const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.addr);
  const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.addr);
  const int c = std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
  if (c != 0) return c;
  return static_cast<int>(ntohs(x->sin6_port)) - static_cast<int>(ntohs(y->sin6_port));
}

bool SameSrvInfo(const EndpointInfo& a, const EndpointInfo& b) {
  return a.srv_host == b.srv_host && a.priority == b.priority && a.weight == b.weight;
}

int MinTtl(int a, int b) {
  if (a < 0) return b;
  if (b < 0) return a;
  return std::min(a, b);
}

}  // namespace

// The host lookups of one SRV answer: every record's target resolved, then
// the union applied at once.
struct EndpointSet::SrvRound {
  std::vector<SrvRecord> records;
  std::vector<std::unique_ptr<Resolver::Request>> requests;
  size_t waiting = 0;
  std::vector<Found> found;
  std::string error;  // the first failed host lookup
  int ttl = -1;
};

EndpointSet::EndpointSet(LoopContext* ctx, std::shared_ptr<const TargetConfig> config)
    : ctx_(ctx), config_(std::move(config)), placeholder_history_(MonoNow()) {
  ev_timer_init(&timer_, &EndpointSet::TimerCb, 0., 0.);
  timer_.data = this;
  last_change_unix_ = UnixNow();
}

EndpointSet::~EndpointSet() {
  ev_timer_stop(ctx_->loop, &timer_);
  request_.reset();
  srv_round_.reset();
  endpoints_.clear();
}

void EndpointSet::Start() {
  if (!endpoints_.empty()) {
    for (auto& e : endpoints_) e->Start();
    ArmNextLookup();
    return;
  }
  // NOTE: names configured together would otherwise all be looked up in the
  // same loop iteration: 1,000 queries at once cost the loop over 10 ms and
  // made dnsmasq drop some (c-ares timeouts) in bench/endpoints.py.
  Arm(static_cast<double>(config_->startup_jitter.count()) / 1000.0 * ctx_->Uniform01());
}

void EndpointSet::ArmNextLookup() {
  // resolve_interval plus up to 10%: the lookups of names that started
  // together drift apart instead of coming in one burst every interval.
  const double seconds = static_cast<double>(interval().count()) / 1000.0;
  Arm(seconds * (1.0 + kLookupJitter * ctx_->Uniform01()));
}

void EndpointSet::Close(std::string_view why, bool log) {
  ev_timer_stop(ctx_->loop, &timer_);
  request_.reset();
  srv_round_.reset();
  for (auto& e : endpoints_) e->Close(why, log);
}

void EndpointSet::Inherit(const EndpointSet& old) {
  dns_failures_ = old.dns_failures_;
  const TargetConfig& was = *old.config_;
  if (was.srv != config_->srv || was.host != config_->host || was.port != config_->port ||
      was.address_family != config_->address_family) {
    return;  // another name: the endpoints are found anew
  }
  ttl_ = old.ttl_;
  for (const auto& e : old.endpoints_) {
    auto target = std::make_unique<Target>(ctx_, config_, e->address(),
                                           std::make_shared<const EndpointInfo>(*e->endpoint()));
    target->InheritCounters(*e);
    endpoints_.push_back(std::move(target));
  }
}

size_t EndpointSet::up_count() const {
  size_t n = 0;
  for (const auto& e : endpoints_) n += e->up() ? 1 : 0;
  return n;
}

void EndpointSet::Arm(double delay_seconds) {
  ev_timer_stop(ctx_->loop, &timer_);
  ev_timer_set(&timer_, delay_seconds > 0 ? delay_seconds : 0., 0.);
  ev_timer_start(ctx_->loop, &timer_);
}

void EndpointSet::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  static_cast<EndpointSet*>(w->data)->Lookup();
}

void EndpointSet::Lookup() {
  looking_up_ = true;
  // NOTE: the answer comes back on a later loop iteration (a numeric host:
  // at once), so a slow or dead DNS server costs the loop nothing.
  if (!config_->srv.empty()) {
    request_ = ctx_->resolver->ResolveSrv(
        config_->srv, [this](const std::string& status, std::vector<SrvRecord> records) {
          OnSrv(status, std::move(records));
        });
    return;
  }
  auto request = ctx_->resolver->Resolve(
      config_->host, config_->port, config_->address_family,
      [this](const std::string& status, std::vector<ResolvedAddress> addresses) {
        OnAddresses(status, std::move(addresses));
      });
  if (request) request_ = std::move(request);
}

void EndpointSet::OnAddresses(const std::string& status, std::vector<ResolvedAddress> addresses) {
  request_.reset();
  if (!status.empty() || addresses.empty()) {
    Apply({}, false, status.empty() ? "no address" : status, -1);
    return;
  }
  std::vector<Found> found;
  found.reserve(addresses.size());
  int ttl = -1;
  for (const ResolvedAddress& a : addresses) {
    ttl = MinTtl(ttl, a.ttl);
    found.push_back({a, nullptr});  // its EndpointInfo is made if it is new
  }
  Apply(std::move(found), true, "", ttl);
}

void EndpointSet::OnSrv(const std::string& status, std::vector<SrvRecord> records) {
  request_.reset();
  if (!status.empty() || records.empty()) {
    Apply({}, false, status.empty() ? "no SRV record" : status, -1);
    return;
  }
  srv_round_ = std::make_unique<SrvRound>();
  SrvRound& round = *srv_round_;
  round.records = std::move(records);
  round.waiting = round.records.size();
  round.requests.resize(round.records.size());
  for (size_t i = 0; i < round.records.size(); ++i) {
    const SrvRecord& r = round.records[i];
    auto request = ctx_->resolver->Resolve(
        r.host, r.port, config_->address_family,
        [this, i](const std::string& s, std::vector<ResolvedAddress> addresses) {
          OnSrvHost(i, s, std::move(addresses));
        });
    // A numeric host answered at once, and may have ended the round.
    if (!srv_round_) return;
    if (request) srv_round_->requests[i] = std::move(request);
  }
}

void EndpointSet::OnSrvHost(size_t index, const std::string& status,
                            std::vector<ResolvedAddress> addresses) {
  SrvRound& round = *srv_round_;
  const SrvRecord& r = round.records[index];
  if (!status.empty() || addresses.empty()) {
    if (round.error.empty()) {
      round.error = r.host + ": " + (status.empty() ? std::string("no address") : status);
    }
  }
  for (const ResolvedAddress& a : addresses) {
    round.ttl = MinTtl(round.ttl, a.ttl);
    auto info = std::make_shared<EndpointInfo>();
    info->endpoint = a.ToString();
    info->srv_host = r.host;
    info->priority = r.priority;
    info->weight = r.weight;
    round.found.push_back({a, std::move(info)});
  }
  if (--round.waiting > 0) return;
  std::unique_ptr<SrvRound> done = std::move(srv_round_);
  // NOTE: the request handles die with the round; every one has answered.
  Apply(std::move(done->found), done->error.empty(), done->error, done->ttl);
}

void EndpointSet::Apply(std::vector<Found> found, bool complete, const std::string& error,
                        int ttl) {
  looking_up_ = false;
  // One endpoint per address: two SRV records may name the same one (the
  // first, in the answer's order, gives its priority and weight).
  std::stable_sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return CompareAddresses(a.address, b.address) < 0;
  });
  found.erase(std::unique(found.begin(), found.end(),
                          [](const Found& a, const Found& b) {
                            return CompareAddresses(a.address, b.address) == 0;
                          }),
              found.end());

  if (!complete) {
    ++dns_failures_;
    has_failure_ = true;
    last_failure_unix_ = UnixNow();
    Event e = MakeEvent("dns_failure", LogLevel::kWarn);
    e.has_reason = true;
    e.reason = Reason::kDnsError;
    e.detail = (endpoints_.empty() ? "lookup failed: " : "re-resolution failed: ") + error +
               (endpoints_.empty() ? "; no endpoint yet"
                                   : "; the " + std::to_string(endpoints_.size()) +
                                         " endpoints held are kept");
    ctx_->log->Record(std::move(e));
  }

  // Merge the sorted lists: keep, close, add.
  std::vector<std::unique_ptr<Target>> next;
  next.reserve(std::max(found.size(), endpoints_.size()));
  size_t i = 0, j = 0;
  std::vector<const Found*> added;
  while (i < endpoints_.size() || j < found.size()) {
    int c;
    if (i == endpoints_.size()) {
      c = 1;
    } else if (j == found.size()) {
      c = -1;
    } else {
      c = CompareAddresses(endpoints_[i]->address(), found[j].address);
    }
    if (c == 0) {
      Target& held = *endpoints_[i];
      if (found[j].info && !SameSrvInfo(*held.endpoint(), *found[j].info)) {
        held.UpdateEndpoint(found[j].info);
      }
      next.push_back(std::move(endpoints_[i]));
      ++i;
      ++j;
    } else if (c < 0) {
      if (complete) {
        // NOTE: as a reload's close, counted nowhere: the connection did not fail.
        endpoints_[i]->Close("address no longer in DNS", true);
        endpoints_[i].reset();
      } else {
        next.push_back(std::move(endpoints_[i]));  // no evidence it is gone
      }
      ++i;
    } else {
      std::shared_ptr<const EndpointInfo> info = found[j].info;
      if (!info) {
        auto made = std::make_shared<EndpointInfo>();
        made->endpoint = found[j].address.ToString();
        info = std::move(made);
      }
      auto target = std::make_unique<Target>(ctx_, config_, found[j].address, std::move(info));
      RestoreEndpoint(target.get());
      target->Start();
      next.push_back(std::move(target));
      ++j;
    }
  }
  const bool had = !endpoints_.empty();
  endpoints_ = std::move(next);
  if (had != !endpoints_.empty()) last_change_unix_ = UnixNow();

  if (complete) {
    ttl_ = ttl;
    failed_lookups_ = 0;
    ArmNextLookup();
  } else if (endpoints_.empty()) {
    // Nothing held: try again as a target's connect attempts do.
    const Millis wait = BackoffDelay(config_->backoff, failed_lookups_++, ctx_->Uniform01());
    Arm(static_cast<double>(wait.count()) / 1000.0);
  } else {
    ArmNextLookup();
  }
}

Event EndpointSet::MakeEvent(std::string kind, LogLevel level) const {
  Event e;
  e.unix_time = UnixNow();
  e.level = level;
  e.kind = std::move(kind);
  e.target = config_->name;
  e.address = config_->Where();
  return e;
}

void EndpointSet::Restore(const std::vector<const StoredTarget*>& saved, double mono_delta) {
  restored_delta_ = mono_delta;
  for (const StoredTarget* t : saved) {
    // The name's own lookups were saved on its first snapshot (name_series);
    // every entry carries the count, the largest is the name's.
    dns_failures_ = std::max(dns_failures_, t->dns_failures);
    if (!t->endpoint.empty()) restored_.emplace(t->endpoint, *t);
  }
}

void EndpointSet::RestoreEndpoint(Target* target) {
  if (restored_.empty() || target->endpoint() == nullptr) return;
  auto it = restored_.find(target->endpoint()->endpoint);
  if (it == restored_.end()) return;
  // The name's count stays the set's (the endpoint's own is not kept apart).
  StoredTarget saved = std::move(it->second);
  saved.dns_failures = 0;
  target->Restore(saved, restored_delta_);
  restored_.erase(it);
}

void EndpointSet::FillSnapshots(std::vector<TargetSnapshot>* out) const {
  if (endpoints_.empty()) {
    TargetSnapshot& t = out->emplace_back();
    t.config = config_;
    t.name_series = true;
    t.dns_failures = dns_failures_;
    t.state = looking_up_ ? TargetState::kResolving : TargetState::kBackoff;
    t.last_change_unix = last_change_unix_;
    if (has_failure_) {
      t.has_last_event = true;
      t.last_event_kind = "connect_failure";
      t.last_reason = Reason::kDnsError;
      t.last_event_unix = last_failure_unix_;
      t.last_failure_kind = "connect_failure";
      t.last_failure_reason = Reason::kDnsError;
      t.last_failure_unix = last_failure_unix_;
    }
    t.history = placeholder_history_;
    t.history_at = MonoNow();
    return;
  }
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    TargetSnapshot& t = out->emplace_back();
    endpoints_[i]->FillSnapshot(&t);
    if (i == 0) {
      t.name_series = true;
      t.dns_failures = dns_failures_;
    }
  }
}

}  // namespace connwatch
