#pragma once
// The endpoints of a target that holds every address (`addresses: all`, or
// `srv:`): the target's config expanded into one Target (one held connection,
// net/target.h) per address its name resolves to, all sharing that config, so
// probes, TLS and heartbeat apply per endpoint unchanged. The set follows the
// name: a lookup every resolve_interval (default the answers' TTL bounded to
// [5s, 5m]) through the loop's asynchronous Resolver; an address that appears
// becomes a new endpoint, one that vanishes is closed as our own close
// (`event=close detail="address no longer in DNS"`) and its series go. A
// failed lookup keeps every endpoint held (counted in dns_failures_total).
// Owned by the Monitor; loop thread only.

#include <ev.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/endpoint.h"
#include "core/snapshot.h"
#include "core/state_file.h"
#include "net/resolver.h"
#include "net/target.h"

namespace connwatch {

class EndpointSet {
 public:
  EndpointSet(LoopContext* ctx, std::shared_ptr<const TargetConfig> config);
  ~EndpointSet();  // closes every endpoint silently; call Close() first to log it.
  EndpointSet(const EndpointSet&) = delete;
  EndpointSet& operator=(const EndpointSet&) = delete;

  // The first lookup after U[0, startup_jitter) (inherited endpoints start at
  // once and the first lookup waits one interval). Every later lookup waits
  // the interval plus U[0, 10%) of it.
  void Start();
  // Our own close of every endpoint (reload, shutdown); see Target::Close.
  void Close(std::string_view why, bool log);
  // A reload changed the config of a target of the same name: the name's DNS
  // failure count carries over, and when the new config looks up the same
  // name (same SRV name or host, port and address family) each endpoint is
  // held again at once with its counters (Target::InheritCounters).
  void Inherit(const EndpointSet& old);
  // The state file's entries of this target (docs/ARCHITECTURE.md, "Memory
  // across restarts"), before Start: the name's DNS failure count at once,
  // and each endpoint's stored state when an answer first gives its address.
  void Restore(const std::vector<const StoredTarget*>& saved, double mono_delta);

  const TargetConfig& config() const { return *config_; }
  size_t endpoint_count() const { return endpoints_.size(); }
  size_t up_count() const;
  // One snapshot per endpoint, in address order (IPv4 first); a placeholder
  // (no endpoint label, down) while the name has given no address yet.
  void FillSnapshots(std::vector<TargetSnapshot>* out) const;
  // For tests and logs: the interval the next lookup waits.
  Millis interval() const { return ResolveInterval(config_->resolve_interval, ttl_); }

 private:
  // An address of the last answer, with what its SRV record said (null for
  // a plain name: made only for a new endpoint).
  struct Found {
    ResolvedAddress address;
    std::shared_ptr<const EndpointInfo> info;
  };
  struct SrvRound;  // the host lookups after an SRV answer
  // Restored state of endpoints not held yet, by endpoint ("ip:port").
  std::unordered_map<std::string, StoredTarget> restored_;
  double restored_delta_ = 0;
  // Gives a new endpoint its stored state, if the state file had it.
  void RestoreEndpoint(Target* target);

  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);
  void Lookup();
  void OnAddresses(const std::string& status, std::vector<ResolvedAddress> addresses);
  void OnSrv(const std::string& status, std::vector<SrvRecord> records);
  void OnSrvHost(size_t index, const std::string& status, std::vector<ResolvedAddress> addresses);
  // Applies an answer. `complete`: every lookup of the round answered, so an
  // endpoint missing from `found` is gone; otherwise (a failure, `error`) the
  // held endpoints stay and only new addresses are added.
  void Apply(std::vector<Found> found, bool complete, const std::string& error, int ttl);
  void Add(const Found& found);
  void Arm(double delay_seconds);
  void ArmNextLookup();
  static constexpr double kLookupJitter = 0.1;  // of the interval
  Event MakeEvent(std::string kind, LogLevel level) const;

  LoopContext* ctx_;
  std::shared_ptr<const TargetConfig> config_;
  ev_timer timer_;
  std::unique_ptr<Resolver::Request> request_;
  std::unique_ptr<SrvRound> srv_round_;
  // Sorted by address (EndpointLess); each Target holds its address.
  std::vector<std::unique_ptr<Target>> endpoints_;
  int ttl_ = -1;  // the smallest TTL of the last good answer, seconds
  uint32_t failed_lookups_ = 0;  // in a row while no endpoint is held: the backoff exponent
  uint64_t dns_failures_ = 0;    // connwatch_dns_failures_total{target}
  // While no endpoint is held: what the placeholder snapshot shows.
  bool looking_up_ = false;
  double last_change_unix_ = 0;
  bool has_failure_ = false;
  double last_failure_unix_ = 0;
  // The placeholder's up/down history: down since the set was made (the
  // status page's strip and availability of a name that gives no address).
  UpHistory placeholder_history_;
};

}  // namespace connwatch
