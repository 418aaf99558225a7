#pragma once
// The configuration connwatchd runs from, as plain immutable structs (the
// loader in config/loader.h builds them from YAML). A Config is built once per
// load and then shared read-only (shared_ptr<const TargetConfig>) between the
// event loop and snapshots, so it may be read from any thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/duration.h"
#include "core/probe.h"

namespace connwatch {

enum class AddressFamily : uint8_t { kAny, kIp4, kIp6 };
std::string_view AddressFamilyName(AddressFamily f);  // "any" | "ip4" | "ip6"

// `on_address_change`: what a held connection does when DNS stops returning
// its address (net/address_watch.h).
enum class AddressChange : uint8_t { kReport, kReconnect };
std::string_view AddressChangeName(AddressChange c);  // "report" | "reconnect"

// `addresses`: which of the addresses behind a target's name are held.
// kFirst: one connection, to the first address that answers (re-resolved
// while up, net/address_watch.h). kAll: one connection per address, each an
// endpoint of its own (net/endpoint_set.h); `srv:` targets are always kAll.
enum class AddressMode : uint8_t { kFirst, kAll };
std::string_view AddressModeName(AddressMode m);  // "first" | "all"

// `resolve_interval` bounds, and those of the default (the answer's TTL).
inline constexpr Millis kMinResolveInterval{100};
inline constexpr Millis kMaxResolveInterval{86400000};
inline constexpr Millis kMinTtlInterval{5000};
inline constexpr Millis kMaxTtlInterval{300000};
// How often a held connection's name is looked up again: `configured` if set,
// else the answer's TTL (seconds; negative: unknown) bounded to [5s, 5m].
Millis ResolveInterval(std::optional<Millis> configured, int ttl_seconds);

struct KeepaliveConfig {
  Millis idle{15000};
  Millis interval{5000};
  int count = 3;
  bool operator==(const KeepaliveConfig&) const = default;
};

struct BackoffConfig {
  Millis initial{500};
  Millis max{30000};
  bool operator==(const BackoffConfig&) const = default;
};

struct HeartbeatConfig {
  std::string send;    // bytes written every `interval` (YAML escapes allowed).
  std::string expect;  // RE2 regex searched for in the bytes the peer sends.
  Millis interval{10000};
  Millis timeout{2000};
  int fall = 1;  // consecutive failures that mark the target down.
  bool operator==(const HeartbeatConfig&) const = default;
};

// `canary:` of a target: every `interval`, a fresh connection beside the held
// one, through the same admission as every connect, completed (TCP, and the
// TLS handshake of a TLS target) and closed with RST (net/canary.h).
inline constexpr Millis kMinCanaryInterval{100};
inline constexpr Millis kMaxCanaryInterval{86400000};
struct CanaryConfig {
  Millis interval{30000};
  // How long the connect (and the TLS handshake) may take; the loader fills
  // in the target's connect_timeout when `timeout` is set nowhere.
  Millis timeout{5000};
  bool operator==(const CanaryConfig&) const = default;
};

// Protocol versions as Prometheus' tls_config and the exporter-toolkit spell
// them: TLS10 ... TLS13.
enum class TlsVersion : uint8_t { kTls10, kTls11, kTls12, kTls13 };
std::string_view TlsVersionName(TlsVersion version);
bool ParseTlsVersion(std::string_view word, TlsVersion* version);

}  // namespace connwatch

struct ssl_ctx_st;  // OpenSSL's SSL_CTX; built by config/tls_client_context.h

namespace connwatch {

// The OpenSSL client context of a TLS target, built by the loader (off the
// event loop: a CA bundle takes milliseconds to parse) from a TlsConfig and
// shared by every target with the same files and settings. It carries no
// identity of its own: two configs are equal when their TlsConfig fields
// are, whatever context object they hold.
struct TlsContextHandle {
  std::shared_ptr<ssl_ctx_st> ctx;
  bool operator==(const TlsContextHandle&) const { return true; }
};

// `tls:` of a target: hold a TLS session on the connection (Prometheus'
// tls_config key names). Paths are absolute (resolved against the file that
// set them).
struct TlsConfig {
  std::string server_name;  // SNI and the name verified; "" = the host of `address`.
  std::string ca_file;      // "" = the system trust store.
  std::string cert_file;    // client certificate (mutual TLS), with key_file; "" = none.
  std::string key_file;
  bool insecure_skip_verify = false;
  TlsVersion min_version = TlsVersion::kTls12;
  // What the loader saw of the files (device, inode, size, mtime): a file
  // rewritten on disk makes the config differ at the next reload, so the
  // targets using it reconnect with a context built from the new file.
  std::string files_stamp;
  TlsContextHandle context;
  bool operator==(const TlsConfig&) const = default;
};

struct TargetConfig {
  std::string name;     // unique; defaults to `address`.
  std::string address;  // as written: "host:port" or "[v6]:port"; empty for `srv:`.
  std::string host;     // host part, brackets removed.
  uint16_t port = 0;
  // `srv:` instead of `address:`: the SRV name (_service._proto.name) whose
  // records give the endpoints (host and port each); empty otherwise.
  std::string srv;
  // User labels, sorted by name, valid Prometheus label names.
  std::vector<std::pair<std::string, std::string>> labels;

  Millis connect_timeout{5000};
  Millis check_interval{5000};
  KeepaliveConfig keepalive;
  Millis user_timeout{30000};  // default: idle + interval * count.
  BackoffConfig backoff;
  AddressFamily address_family = AddressFamily::kAny;
  std::string source_address;  // empty: let the kernel choose.
  Millis startup_jitter{1000};  // first connect delayed by U[0, startup_jitter).
  // Each periodic check runs check_interval + U[0, check_jitter) after the
  // last, so checks of targets connected together drift apart. Unset: 10% of
  // check_interval.
  Millis check_jitter{500};
  std::optional<HeartbeatConfig> heartbeat;
  std::optional<CanaryConfig> canary;  // none: no canary
  // Run in this order by every periodic check until one finds the connection
  // dead (docs/PROBES.md).
  ProbeList probes = ProbeList::Default();
  // IP_RECVERR / IPV6_RECVERR: ICMP errors on the established connection are
  // reported at once (event icmp_error) instead of only when a timer kills it.
  bool report_icmp = false;
  std::optional<TlsConfig> tls;  // none: plain TCP
  // While up, a name (never a numeric host) is looked up again every
  // resolve_interval; unset: the answer's TTL bounded to [5s, 5m].
  std::optional<Millis> resolve_interval;
  AddressChange on_address_change = AddressChange::kReport;
  AddressMode addresses = AddressMode::kFirst;  // kAll whenever srv is set

  // One connection per address (addresses: all, or srv:): the config is
  // expanded into endpoints (net/endpoint_set.h) that share these settings.
  bool HoldsEveryAddress() const { return addresses == AddressMode::kAll || !srv.empty(); }
  // What was configured to find the peer: `address`, or the SRV name.
  const std::string& Where() const { return srv.empty() ? address : srv; }

  // Two targets are equal when nothing that affects the connection or the
  // exported series differs; reload keeps the connection of equal targets.
  bool operator==(const TargetConfig&) const = default;
};

// `global.shard` or --shard=I/N: this instance keeps only the targets whose
// name hashes to shard `index` of `total` (core/shard.h). total 1: all.
struct ShardConfig {
  int index = 0;
  int total = 1;
  bool operator==(const ShardConfig&) const = default;
};

// Process-wide settings (`global:` in the main file). They bound how fast
// connwatchd opens connections, so a start-up or a reconnect storm never sends
// more SYNs than the operator allowed.
struct GlobalConfig {
  int max_connects_in_flight = 1000;   // connects started and not yet finished
  int max_connects_per_second = 1000;  // new attempts (DNS lookup + connect) per second
  ShardConfig shard;
  bool operator==(const GlobalConfig&) const = default;
};

struct Config {
  GlobalConfig global;
  std::vector<std::shared_ptr<const TargetConfig>> targets;  // in file order.
  std::vector<std::string> files;  // the main file and every included file read.
  // Targets of the file left to other shards (ApplyShard); 0 unsharded.
  size_t shard_targets_skipped = 0;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error has no place in a file.
  int column = 0;  // 1-based.
  std::string path;     // e.g. "targets[2].keepalive.idle"; may be empty.
  std::string message;  // e.g. `invalid duration "5x": unknown unit "x"`.
  // "file:line:col: path: message" (omitting the parts that are empty/0).
  std::string ToString() const;
};

struct ConfigLoadResult {
  std::optional<Config> config;     // set only when errors is empty.
  std::vector<ConfigError> errors;  // every error found, in file order.
};

}  // namespace connwatch
