// Loader (config/loader_impl.h): the setting keys shared by `defaults:` and
// targets, their maps (keepalive, backoff, heartbeat, canary, tls), the TLS
// client contexts, the checks between keys, and how a target inherits them.
#include "config/loader.h"

#include "config/tls_client_context.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <re2/re2.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <new>
#include <sstream>
#include <string_view>
#include <system_error>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "config/config_files.h"
#include "config/config_text.h"
#include "config/loader_impl.h"
#include "config/yaml_errors.h"
#include "config/yaml_tree.h"
#include "core/shard.h"
namespace connwatch::config_detail {

// Fills the settings of `target`: its own value, else the default's, else the
// built-in one.
void ApplySettings(const Settings& own, const Settings& d, TargetConfig* target) {
  const TargetConfig builtin;
  target->connect_timeout =
      Resolve(own.connect_timeout, &d.connect_timeout, builtin.connect_timeout).value;
  target->check_interval =
      Resolve(own.check_interval, &d.check_interval, builtin.check_interval).value;
  target->keepalive.idle =
      Resolve(own.keepalive_idle, &d.keepalive_idle, builtin.keepalive.idle).value;
  target->keepalive.interval =
      Resolve(own.keepalive_interval, &d.keepalive_interval, builtin.keepalive.interval).value;
  target->keepalive.count =
      Resolve(own.keepalive_count, &d.keepalive_count, builtin.keepalive.count).value;
  // Unset everywhere: the time keepalive needs to declare the peer dead, capped
  // at what TCP_USER_TIMEOUT can hold.
  const int64_t derived = std::min<int64_t>(
      target->keepalive.idle.count() + target->keepalive.interval.count() * target->keepalive.count,
      kMaxUserTimeoutMs);
  target->user_timeout = Resolve(own.user_timeout, &d.user_timeout, Millis(derived)).value;
  target->backoff.initial =
      Resolve(own.backoff_initial, &d.backoff_initial, builtin.backoff.initial).value;
  target->backoff.max = Resolve(own.backoff_max, &d.backoff_max, builtin.backoff.max).value;
  target->address_family =
      Resolve(own.address_family, &d.address_family, builtin.address_family).value;
  target->source_address =
      Resolve(own.source_address, &d.source_address, builtin.source_address).value;
  target->startup_jitter =
      Resolve(own.startup_jitter, &d.startup_jitter, builtin.startup_jitter).value;
  target->check_jitter =
      Resolve(own.check_jitter, &d.check_jitter, Millis(target->check_interval.count() / 10)).value;

  target->probes = Resolve(own.probes, &d.probes, builtin.probes).value;
  target->report_icmp = Resolve(own.report_icmp, &d.report_icmp, builtin.report_icmp).value;
  if (own.resolve_interval.value) {
    target->resolve_interval = own.resolve_interval.value;
  } else if (d.resolve_interval.value) {
    target->resolve_interval = d.resolve_interval.value;
  }
  target->on_address_change =
      Resolve(own.on_address_change, &d.on_address_change, builtin.on_address_change).value;
  target->addresses = Resolve(own.addresses, &d.addresses, builtin.addresses).value;
  if (!target->srv.empty()) target->addresses = AddressMode::kAll;

  Settings::Heartbeat mode = own.heartbeat;
  if (mode == Settings::Heartbeat::kInherit) mode = d.heartbeat;
  if (mode == Settings::Heartbeat::kOn) {
    // Keys the target leaves out come from the defaults' heartbeat, if on.
    const bool merge = d.heartbeat == Settings::Heartbeat::kOn;
    const HeartbeatConfig hb_builtin;
    HeartbeatConfig hb;
    hb.send = Resolve(own.heartbeat_send, merge ? &d.heartbeat_send : nullptr, std::string()).value;
    hb.expect =
        Resolve(own.heartbeat_expect, merge ? &d.heartbeat_expect : nullptr, std::string()).value;
    hb.interval = Resolve(own.heartbeat_interval, merge ? &d.heartbeat_interval : nullptr,
                          hb_builtin.interval)
                      .value;
    hb.timeout =
        Resolve(own.heartbeat_timeout, merge ? &d.heartbeat_timeout : nullptr, hb_builtin.timeout)
            .value;
    hb.fall =
        Resolve(own.heartbeat_fall, merge ? &d.heartbeat_fall : nullptr, hb_builtin.fall).value;
    target->heartbeat = std::move(hb);
  }

  Settings::Canary canary = own.canary;
  if (canary == Settings::Canary::kInherit) canary = d.canary;
  if (canary == Settings::Canary::kOn) {
    const bool merge = d.canary == Settings::Canary::kOn;
    CanaryConfig c;
    c.interval =
        Resolve(own.canary_interval, merge ? &d.canary_interval : nullptr, c.interval).value;
    // Unset everywhere: the target's own connect_timeout.
    c.timeout = Resolve(own.canary_timeout, merge ? &d.canary_timeout : nullptr,
                        target->connect_timeout)
                    .value;
    target->canary = c;
  }
}

void Loader::ParseKeepalive(const SourceFile& f, const YamlNode* node, const std::string& path,
                            Settings* s) {
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path, "expected a map with idle, interval and count, got " + Describe(node));
    return;
  }
  ForEachPair(
      f, node, path, [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
        std::string p = Join(path, key);
        if (key == "idle") {
          s->keepalive_idle = {KeepaliveSeconds(f, value, p, "TCP_KEEPIDLE"), value};
        } else if (key == "interval") {
          s->keepalive_interval = {KeepaliveSeconds(f, value, p, "TCP_KEEPINTVL"), value};
        } else if (key == "count") {
          s->keepalive_count = {
              Integer(f, value, p, 1, kMaxKeepaliveCount, "the kernel's TCP_KEEPCNT range"), value};
        } else {
          Error(f, key_node, path, UnknownKeyMessage(key, kKeepaliveKeys));
        }
      });
}

void Loader::ParseBackoff(const SourceFile& f, const YamlNode* node, const std::string& path,
                          Settings* s) {
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path, "expected a map with initial and max, got " + Describe(node));
    return;
  }
  ForEachPair(f, node, path,
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                std::string p = Join(path, key);
                if (key == "initial") {
                  s->backoff_initial = {Positive(f, value, p), value};
                } else if (key == "max") {
                  s->backoff_max = {Positive(f, value, p), value};
                } else {
                  Error(f, key_node, path, UnknownKeyMessage(key, kBackoffKeys));
                }
              });
}

void Loader::ParseHeartbeat(const SourceFile& f, const YamlNode* node, const std::string& path,
                            Settings* s) {
  s->heartbeat_node = node;
  if (node->kind == YamlNode::Kind::kNull ||
      (node->kind == YamlNode::Kind::kScalar && node->plain && node->value == "false")) {
    s->heartbeat = Settings::Heartbeat::kOff;
    return;
  }
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path,
          "expected a map (send, expect, interval, timeout, fall), or false to turn the "
          "heartbeat off, got " +
              Describe(node));
    return;
  }
  s->heartbeat = Settings::Heartbeat::kOn;
  ForEachPair(f, node, path,
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                std::string p = Join(path, key);
                if (key == "send") {
                  s->heartbeat_send.node = value;
                  if (!Scalar(f, value, p, "a string")) return;
                  if (value->value.empty()) {
                    Error(f, value, p, "must not be empty");
                    return;
                  }
                  s->heartbeat_send.value = value->value;
                } else if (key == "expect") {
                  s->heartbeat_expect.node = value;
                  if (!Scalar(f, value, p, "a regular expression (RE2)")) return;
                  const std::string& pattern = value->value;
                  if (pattern.empty()) {
                    Error(f, value, p, "must not be empty");
                    return;
                  }
                  // Thousands of targets usually share one pattern: compile it once.
                  if (good_regexes_.count(pattern) == 0) {
                    RE2::Options options;
                    options.set_log_errors(false);
                    RE2 re(pattern, options);
                    if (!re.ok()) {
                      Error(f, value, p,
                            "invalid regular expression " + Quote(pattern) + ": " + re.error());
                      return;
                    }
                    good_regexes_.insert(pattern);
                  }
                  s->heartbeat_expect.value = pattern;
                } else if (key == "interval") {
                  s->heartbeat_interval = {Positive(f, value, p), value};
                } else if (key == "timeout") {
                  s->heartbeat_timeout = {Positive(f, value, p), value};
                } else if (key == "fall") {
                  s->heartbeat_fall = {Integer(f, value, p, 1, 1000000, nullptr), value};
                } else {
                  Error(f, key_node, path, UnknownKeyMessage(key, kHeartbeatKeys));
                }
              });
}

void Loader::ParseCanary(const SourceFile& f, const YamlNode* node, const std::string& path,
                         Settings* s) {
  if (node->kind == YamlNode::Kind::kNull ||
      (node->kind == YamlNode::Kind::kScalar && node->plain && node->value == "false")) {
    s->canary = Settings::Canary::kOff;
    return;
  }
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path,
          "expected a map (interval, timeout; {} for the defaults), or false to turn the "
          "canary off, got " +
              Describe(node));
    return;
  }
  s->canary = Settings::Canary::kOn;
  ForEachPair(f, node, path,
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                std::string p = Join(path, key);
                if (key == "interval") {
                  std::optional<Millis> d = Duration(f, value, p);
                  if (d && (*d < kMinCanaryInterval || *d > kMaxCanaryInterval)) {
                    Error(f, value, p,
                          "must be between " + FormatDuration(kMinCanaryInterval) + " and " +
                              FormatDuration(kMaxCanaryInterval) + ", got " + FormatDuration(*d));
                    d.reset();
                  }
                  s->canary_interval = {d, value};
                } else if (key == "timeout") {
                  s->canary_timeout = {Positive(f, value, p), value};
                } else {
                  Error(f, key_node, path, UnknownKeyMessage(key, kCanaryKeys));
                }
              });
}

bool Loader::ParseSetting(const SourceFile& f, std::string_view key, const YamlNode* value,
                          const std::string& parent, Settings* s) {
  const std::string path = Join(parent, key);
  if (key == "connect_timeout") {
    s->connect_timeout = {Positive(f, value, path), value};
  } else if (key == "check_interval") {
    s->check_interval = {Positive(f, value, path), value};
  } else if (key == "keepalive") {
    ParseKeepalive(f, value, path, s);
  } else if (key == "user_timeout") {
    std::optional<Millis> d = Duration(f, value, path);
    if (d && (d->count() < 1 || d->count() > kMaxUserTimeoutMs)) {
      Error(f, value, path,
            "must be between 1ms and 2147483647ms (" + FormatDuration(Millis(kMaxUserTimeoutMs)) +
                "), got " + FormatDuration(*d) +
                ": TCP_USER_TIMEOUT takes a 32-bit number of milliseconds");
      d.reset();
    }
    s->user_timeout = {d, value};
  } else if (key == "backoff") {
    ParseBackoff(f, value, path, s);
  } else if (key == "address_family") {
    if (!Scalar(f, value, path, "any, ip4 or ip6")) return true;
    if (value->value == "any") {
      s->address_family = {AddressFamily::kAny, value};
    } else if (value->value == "ip4") {
      s->address_family = {AddressFamily::kIp4, value};
    } else if (value->value == "ip6") {
      s->address_family = {AddressFamily::kIp6, value};
    } else {
      Error(f, value, path, "must be any, ip4 or ip6, got " + Quote(value->value));
    }
  } else if (key == "source_address") {
    if (!Scalar(f, value, path, "an IP address")) return true;
    // "" is allowed: it undoes a source_address set in defaults.
    if (!value->value.empty() && LiteralVersion(value->value) == IpVersion::kNone) {
      Error(f, value, path,
            "must be an IPv4 or IPv6 address literal (e.g. 192.0.2.10 or 2001:db8::10), got " +
                Quote(value->value));
      return true;
    }
    if (value->value.find('%') != std::string::npos) {
      Error(f, value, path,
            "must be an address without a zone (\"%...\"), got " + Quote(value->value));
      return true;
    }
    s->source_address = {value->value, value};
  } else if (key == "startup_jitter") {
    s->startup_jitter = {Duration(f, value, path), value};
  } else if (key == "check_jitter") {
    s->check_jitter = {Duration(f, value, path), value};
  } else if (key == "heartbeat") {
    ParseHeartbeat(f, value, path, s);
  } else if (key == "canary") {
    ParseCanary(f, value, path, s);
  } else if (key == "probes") {
    s->probes = {Probes(f, value, path), value};
  } else if (key == "report_icmp") {
    s->report_icmp = {Boolean(f, value, path), value};
  } else if (key == "resolve_interval") {
    std::optional<Millis> d = Duration(f, value, path);
    if (d && (*d < kMinResolveInterval || *d > kMaxResolveInterval)) {
      Error(f, value, path,
            "must be between " + FormatDuration(kMinResolveInterval) + " and " +
                FormatDuration(kMaxResolveInterval) + ", got " + FormatDuration(*d));
      d.reset();
    }
    s->resolve_interval = {d, value};
  } else if (key == "on_address_change") {
    if (!Scalar(f, value, path, "report or reconnect")) return true;
    if (value->value == "report") {
      s->on_address_change = {AddressChange::kReport, value};
    } else if (value->value == "reconnect") {
      s->on_address_change = {AddressChange::kReconnect, value};
    } else {
      Error(f, value, path, "must be report or reconnect, got " + Quote(value->value));
    }
  } else if (key == "addresses") {
    if (!Scalar(f, value, path, "first or all")) return true;
    if (value->value == "first") {
      s->addresses = {AddressMode::kFirst, value};
    } else if (value->value == "all") {
      s->addresses = {AddressMode::kAll, value};
    } else {
      Error(f, value, path,
            "must be first (one connection, to the first address) or all (one connection per "
            "address), got " + Quote(value->value));
    }
  } else if (key == "tls") {
    ParseTls(f, value, path, s);
  } else {
    return false;
  }
  return true;
}

void Loader::ParseTls(const SourceFile& f, const YamlNode* node, const std::string& path,
                      Settings* s) {
  s->tls_node = node;
  if (node->kind == YamlNode::Kind::kNull ||
      (node->kind == YamlNode::Kind::kScalar && node->plain && node->value == "false")) {
    s->tls = Settings::Tls::kOff;
    return;
  }
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path,
          "expected a map (server_name, ca_file, cert_file, key_file, insecure_skip_verify, "
          "min_version; {} for the defaults), or false to turn TLS off, got " +
              Describe(node));
    return;
  }
  s->tls = Settings::Tls::kOn;
  auto file = [&](const YamlNode* value, const std::string& p, Field<std::string>* out) {
    out->node = value;
    if (!Scalar(f, value, p, "a file name")) return;
    if (value->value.empty()) {
      Error(f, value, p, "must not be empty");
      return;
    }
    out->value = value->value[0] == '/' ? value->value : JoinPath(f.dir, value->value);
  };
  ForEachPair(f, node, path,
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                const std::string p = Join(path, key);
                if (key == "server_name") {
                  s->tls_server_name.node = value;
                  if (!Scalar(f, value, p, "a host name")) return;
                  if (value->value.empty() || !IsHostName(value->value)) {
                    if (!IsIpv4Literal(value->value) && !IsIpv6Literal(value->value)) {
                      Error(f, value, p,
                            "must be a host name (or an IP address) to send as SNI and verify, "
                            "got " + Quote(value->value));
                      return;
                    }
                  }
                  s->tls_server_name.value = value->value;
                } else if (key == "ca_file") {
                  file(value, p, &s->tls_ca_file);
                } else if (key == "cert_file") {
                  file(value, p, &s->tls_cert_file);
                } else if (key == "key_file") {
                  file(value, p, &s->tls_key_file);
                } else if (key == "insecure_skip_verify") {
                  s->tls_insecure_skip_verify = {Boolean(f, value, p), value};
                } else if (key == "min_version") {
                  s->tls_min_version.node = value;
                  if (!Scalar(f, value, p, "TLS10, TLS11, TLS12 or TLS13")) return;
                  TlsVersion v;
                  if (!ParseTlsVersion(value->value, &v)) {
                    Error(f, value, p,
                          "must be TLS10, TLS11, TLS12 or TLS13, got " + Quote(value->value));
                    return;
                  }
                  s->tls_min_version.value = v;
                } else {
                  Error(f, key_node, path, UnknownKeyMessage(key, kTlsKeys));
                }
              });
}

std::shared_ptr<ssl_ctx_st> Loader::TlsContextFor(const TlsConfig& tls, const std::string& path,
                                                  const TlsKeyPlace (&places)[3]) {
  const std::string key = TlsContextKey(tls);
  auto it = tls_contexts_.find(key);
  if (it != tls_contexts_.end()) return it->second;
  TlsContextError error;
  std::shared_ptr<ssl_ctx_st> ctx = BuildTlsClientContext(tls, &error);
  if (!ctx) {
    const int which = error.key == "ca_file" ? 0 : error.key == "cert_file" ? 1 : 2;
    const TlsKeyPlace& at = places[which];
    const SourceFile& file = at.file != nullptr ? *at.file : defaults_file_;
    Error(file, at.node, Join(path, "tls." + (error.key.empty() ? std::string("ca_file") : error.key)),
          error.message);
  }
  tls_contexts_.emplace(key, ctx);
  return ctx;
}

void Loader::ResolveTls(const SourceFile& f, const Settings& own, const std::string& path,
                        TargetConfig* target) {
  Settings::Tls mode = own.tls;
  if (mode == Settings::Tls::kInherit) mode = defaults_.tls;
  if (mode != Settings::Tls::kOn) return;
  // Keys the target leaves out come from the defaults' tls, if on.
  const bool merge = defaults_.tls == Settings::Tls::kOn;
  const Settings* d = merge ? &defaults_ : nullptr;
  TlsConfig tls;
  auto pick = [&](const Field<std::string>& mine, const Field<std::string>* theirs,
                  TlsKeyPlace* place) {
    if (mine.value) {
      *place = {&f, mine.node};
      return *mine.value;
    }
    if (theirs != nullptr && theirs->value) {
      *place = {&defaults_file_, theirs->node};
      return *theirs->value;
    }
    return std::string();
  };
  TlsKeyPlace places[3];
  TlsKeyPlace unused;
  tls.server_name =
      pick(own.tls_server_name, d ? &d->tls_server_name : nullptr, &unused);
  tls.ca_file = pick(own.tls_ca_file, d ? &d->tls_ca_file : nullptr, &places[0]);
  tls.cert_file = pick(own.tls_cert_file, d ? &d->tls_cert_file : nullptr, &places[1]);
  tls.key_file = pick(own.tls_key_file, d ? &d->tls_key_file : nullptr, &places[2]);
  tls.insecure_skip_verify =
      Resolve(own.tls_insecure_skip_verify, d ? &d->tls_insecure_skip_verify : nullptr, false)
          .value;
  tls.min_version =
      Resolve(own.tls_min_version, d ? &d->tls_min_version : nullptr, TlsVersion::kTls12).value;
  const YamlNode* tls_at = own.tls_node != nullptr ? own.tls_node : defaults_.tls_node;
  const SourceFile& tls_file = own.tls_node != nullptr ? f : defaults_file_;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    Error(tls_file, tls_at, Join(path, "tls"),
          tls.cert_file.empty() ? "key_file needs cert_file (a client certificate and its key)"
                                : "cert_file needs key_file (a client certificate and its key)");
    return;
  }
  tls.files_stamp = TlsFilesStamp(tls);
  tls.context.ctx = TlsContextFor(tls, path, places);
  if (!tls.context.ctx) return;
  if (tls.server_name.empty()) tls.server_name = target->host;
  target->tls = std::move(tls);
}

void Loader::CheckCombinations(const SourceFile& f, const Settings& own, const Settings* inherited,
                               const std::string& path) {
  const BackoffConfig builtin_backoff;
  Resolved<Millis> initial =
      Resolve(own.backoff_initial, inherited ? &inherited->backoff_initial : nullptr,
              builtin_backoff.initial);
  Resolved<Millis> max =
      Resolve(own.backoff_max, inherited ? &inherited->backoff_max : nullptr, builtin_backoff.max);
  // A pair that comes whole from defaults was checked there already; point at
  // the key this level set.
  if ((initial.own || max.own) && max.value < initial.value) {
    if (max.own) {
      Error(f, max.node, Join(path, "backoff.max"),
            "must be at least backoff.initial (" + FormatDuration(initial.value) + "), got " +
                FormatDuration(max.value));
    } else {
      Error(f, initial.node, Join(path, "backoff.initial"),
            "must not exceed backoff.max (" + FormatDuration(max.value) + "), got " +
                FormatDuration(initial.value));
    }
  }

  Resolved<AddressFamily> family = Resolve(
      own.address_family, inherited ? &inherited->address_family : nullptr, AddressFamily::kAny);
  Resolved<std::string> source =
      Resolve(own.source_address, inherited ? &inherited->source_address : nullptr, std::string());
  if ((family.own || source.own) && !source.value.empty()) {
    IpVersion v = LiteralVersion(source.value);
    if (!FamilyAllows(family.value, v)) {
      const YamlNode* at = source.own ? source.node : family.node;
      Error(f, at, Join(path, source.own ? "source_address" : "address_family"),
            "source_address " + source.value + " is " + std::string(VersionName(v)) +
                " but address_family is " + std::string(AddressFamilyName(family.value)));
    }
  }

  if (own.heartbeat == Settings::Heartbeat::kOn) {
    const bool merge = inherited != nullptr && inherited->heartbeat == Settings::Heartbeat::kOn;
    bool has_send = own.heartbeat_send.value || (merge && inherited->heartbeat_send.value);
    bool has_expect = own.heartbeat_expect.value || (merge && inherited->heartbeat_expect.value);
    // A key that was written but invalid has its own error already.
    if (!has_send && own.heartbeat_send.node == nullptr) {
      Error(f, own.heartbeat_node, Join(path, "heartbeat"),
            "missing \"send\" (the bytes written every interval)");
    }
    if (!has_expect && own.heartbeat_expect.node == nullptr) {
      Error(f, own.heartbeat_node, Join(path, "heartbeat"),
            "missing \"expect\" (the RE2 regex a reply must match)");
    }
  }
}

}  // namespace connwatch::config_detail
