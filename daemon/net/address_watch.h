#pragma once
// Re-resolution of a held connection's name (`addresses: first`): while the
// target is up, its host is looked up again every resolve_interval through
// the loop's asynchronous Resolver, and the answer is compared with the
// address the connection is held to. The target decides what an outcome
// means (log, gauge, reconnect); this class only keeps the schedule, the
// request in flight and whether the held address is stale. Only targets
// whose host is a name have one. Loop thread only.

#include <ev.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "net/resolver.h"

namespace connwatch {

class AddressWatch {
 public:
  enum class Outcome : uint8_t {
    kFailed,  // the lookup failed; `detail` says why. The connection is kept.
    kStale,   // the held address is no longer among the answers (it was before).
    kFresh,   // the held address is among the answers again.
  };
  // `detail`: the lookup's error (kFailed), or the addresses now returned,
  // comma-separated (kStale, kFresh).
  using Handler = std::function<void(Outcome outcome, const std::string& detail)>;

  AddressWatch(struct ev_loop* loop, Resolver* resolver, const TargetConfig* config,
               Handler handler);
  ~AddressWatch();
  AddressWatch(const AddressWatch&) = delete;
  AddressWatch& operator=(const AddressWatch&) = delete;

  // The connection to `held` is established: the first lookup is due one
  // interval from now (resolve_interval, else held.ttl bounded to [5s, 5m]).
  void Start(const ResolvedAddress& held);
  // The connection ended: no more lookups, and nothing is stale.
  void Stop();

  bool stale() const { return stale_; }
  // The interval the next lookup waits (for tests and logs).
  Millis interval() const { return ResolveInterval(config_->resolve_interval, ttl_); }

 private:
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);
  void Arm();
  void OnAnswer(const std::string& status, const std::vector<ResolvedAddress>& addresses);

  struct ev_loop* loop_;
  Resolver* resolver_;
  const TargetConfig* config_;
  Handler handler_;
  ev_timer timer_;
  std::unique_ptr<Resolver::Request> request_;
  ResolvedAddress held_;
  int ttl_ = -1;  // of the last answer, seconds
  bool stale_ = false;
};

}  // namespace connwatch
