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
#include "config/yaml_errors.h"
#include "config/yaml_tree.h"
#include "core/shard.h"

namespace connwatch {

namespace {

using namespace config_detail;  // NOLINT: the loader's own helpers

// The kernel takes TCP_KEEPIDLE / TCP_KEEPINTVL in whole seconds, 1..32767.
constexpr int64_t kMaxKeepaliveSeconds = 32767;
constexpr int kMaxKeepaliveCount = 127;  // TCP_KEEPCNT
// TCP_USER_TIMEOUT is an int of milliseconds.
constexpr int64_t kMaxUserTimeoutMs = std::numeric_limits<int32_t>::max();

// Labels connwatch itself puts on every series; a user label may not shadow them.
constexpr std::string_view kReservedLabels[] = {"target", "address", "endpoint"};
// Labels of connwatch_target_info for `srv:` targets (SRV priority and weight).
constexpr std::string_view kSrvLabels[] = {"priority", "weight"};

// The keys of each map. Every array here is listed in ConfigKeyGroups() (at
// the end of this file), which the docs tests compare with the documentation.
constexpr std::string_view kMainKeys[] = {"global", "defaults", "targets", "include"};
constexpr std::string_view kGlobalKeys[] = {"max_connects_in_flight", "max_connects_per_second",
                                           "shard"};
constexpr std::string_view kShardKeys[] = {"index", "total"};
constexpr std::string_view kIncludedKeys[] = {"targets"};
constexpr std::string_view kSettingKeys[] = {
    "connect_timeout", "check_interval", "keepalive",    "user_timeout", "backoff",
    "address_family",  "source_address", "startup_jitter", "check_jitter", "heartbeat",
    "probes",          "report_icmp",    "tls",            "resolve_interval",
    "on_address_change", "canary", "addresses"};
constexpr std::string_view kTargetKeys[] = {
    "name",           "address",        "labels",         "connect_timeout", "check_interval",
    "keepalive",      "user_timeout",   "backoff",        "address_family",  "source_address",
    "startup_jitter", "check_jitter",   "heartbeat",      "probes",          "report_icmp",
    "tls",            "resolve_interval", "on_address_change", "canary", "addresses", "srv"};
constexpr std::string_view kKeepaliveKeys[] = {"idle", "interval", "count"};
constexpr std::string_view kBackoffKeys[] = {"initial", "max"};
constexpr std::string_view kHeartbeatKeys[] = {"send", "expect", "interval", "timeout", "fall"};
constexpr std::string_view kCanaryKeys[] = {"interval", "timeout"};
constexpr std::string_view kProbeWords[] = {"peek", "zero_send", "tcp_info", "so_error"};
constexpr std::string_view kTlsKeys[] = {"server_name", "ca_file",           "cert_file",
                                         "key_file",    "insecure_skip_verify", "min_version"};


// ---------------------------------------------------------------------------
// Settings shared by `defaults:` and targets.

template <typename T>
struct Field {
  std::optional<T> value;
  const YamlNode* node = nullptr;  // where the value was written.
};

// The keys a target may inherit from `defaults:`; an unset field inherits.
struct Settings {
  Field<Millis> connect_timeout;
  Field<Millis> check_interval;
  Field<Millis> keepalive_idle;
  Field<Millis> keepalive_interval;
  Field<int> keepalive_count;
  Field<Millis> user_timeout;
  Field<Millis> backoff_initial;
  Field<Millis> backoff_max;
  Field<AddressFamily> address_family;
  Field<std::string> source_address;
  Field<Millis> startup_jitter;
  Field<Millis> check_jitter;
  // `heartbeat:` absent (inherit), false/null (off), or a map (on, merged
  // key by key over the defaults' heartbeat).
  enum class Heartbeat : uint8_t { kInherit, kOff, kOn } heartbeat = Heartbeat::kInherit;
  const YamlNode* heartbeat_node = nullptr;
  Field<std::string> heartbeat_send;
  Field<std::string> heartbeat_expect;
  Field<Millis> heartbeat_interval;
  Field<Millis> heartbeat_timeout;
  Field<int> heartbeat_fall;
  // `canary:` absent (inherit), false/null (off), or a map (on, merged key
  // by key over the defaults' canary).
  enum class Canary : uint8_t { kInherit, kOff, kOn } canary = Canary::kInherit;
  Field<Millis> canary_interval;
  Field<Millis> canary_timeout;
  Field<ProbeList> probes;
  Field<bool> report_icmp;
  Field<Millis> resolve_interval;
  Field<AddressChange> on_address_change;
  Field<AddressMode> addresses;
  // `tls:` absent (inherit), false/null (off), or a map (on, merged key by
  // key over the defaults' tls). File paths are resolved when parsed.
  enum class Tls : uint8_t { kInherit, kOff, kOn } tls = Tls::kInherit;
  const YamlNode* tls_node = nullptr;
  Field<std::string> tls_server_name;
  Field<std::string> tls_ca_file;
  Field<std::string> tls_cert_file;
  Field<std::string> tls_key_file;
  Field<bool> tls_insecure_skip_verify;
  Field<TlsVersion> tls_min_version;
};

// The value a target gets: its own, else the default's, else `builtin`.
template <typename T>
struct Resolved {
  T value;
  const YamlNode* node;  // nullptr when built in.
  bool own;              // set by the target itself.
};

template <typename T>
Resolved<T> Resolve(const Field<T>& own, const Field<T>* inherited, T builtin) {
  if (own.value) return {*own.value, own.node, true};
  if (inherited != nullptr && inherited->value) return {*inherited->value, inherited->node, false};
  return {builtin, nullptr, false};
}

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

// Where a file's errors are reported and its includes resolved.
struct SourceFile {
  std::string name;
  std::string dir;
  bool included = false;
  int rank = 0;  // order in which files were read; errors are sorted by it.
};

struct Place {
  std::string file;
  int line = 0;
  int column = 0;
};

// ---------------------------------------------------------------------------
// The loader: one per LoadConfig* call.

class Loader {
 public:
  ConfigLoadResult Run(const std::string& text, const std::string& name,
                       const std::string& base_dir, const struct stat* main_identity);

 private:
  void Error(const SourceFile& f, const YamlNode* at, const std::string& path, std::string message);
  void ErrorAt(const SourceFile& f, int line, int column, const std::string& path,
               std::string message);

  const YamlNode* Parse(const SourceFile& f, const std::string& text, TreeBuilder* builder);
  void ProcessFile(const SourceFile& f, const YamlNode* root);
  void ProcessDefaults(const SourceFile& f, const YamlNode* node);
  void ProcessGlobal(const SourceFile& f, const YamlNode* node);
  void ProcessShard(const SourceFile& f, const YamlNode* node);
  void ProcessTargets(const SourceFile& f, const YamlNode* node);
  void ProcessTarget(const SourceFile& f, const YamlNode* node, const std::string& path);
  // `srv:` is a DNS name of the form _service._tcp.domain; else false and `why`.
  static bool ValidSrvName(const std::string& name, std::string* why);
  void ParseLabels(const SourceFile& f, const YamlNode* node, const std::string& path,
                   TargetConfig* target);
  void ProcessIncludes(const SourceFile& f, const YamlNode* node);
  void IncludeFile(const SourceFile& f, const YamlNode* at, const std::string& path,
                   const std::string& file);

  // Calls fn(key, key_node, value) for each pair of a map, after reporting
  // non-string and duplicate keys (which fn never sees).
  template <typename Fn>
  void ForEachPair(const SourceFile& f, const YamlNode* map, const std::string& path, Fn fn);

  // Parses `key` of defaults or a target into `s`; false if not a setting key.
  bool ParseSetting(const SourceFile& f, std::string_view key, const YamlNode* value,
                    const std::string& parent, Settings* s);
  void ParseKeepalive(const SourceFile& f, const YamlNode* node, const std::string& path,
                      Settings* s);
  void ParseBackoff(const SourceFile& f, const YamlNode* node, const std::string& path,
                    Settings* s);
  void ParseHeartbeat(const SourceFile& f, const YamlNode* node, const std::string& path,
                      Settings* s);
  void ParseCanary(const SourceFile& f, const YamlNode* node, const std::string& path,
                   Settings* s);
  std::optional<ProbeList> Probes(const SourceFile& f, const YamlNode* node,
                                  const std::string& path);
  std::optional<bool> Boolean(const SourceFile& f, const YamlNode* node, const std::string& path);
  void ParseTls(const SourceFile& f, const YamlNode* node, const std::string& path, Settings* s);
  // The target's TLS settings merged over the defaults', with its client
  // context (built once per distinct files and settings); errors at the key
  // that caused them, in the file that set it.
  void ResolveTls(const SourceFile& f, const Settings& own, const std::string& path,
                  TargetConfig* target);
  // The context for `tls`; on failure reports `error` at the node of the
  // failing key (`nodes`: where each key was set, and in which file).
  struct TlsKeyPlace {
    const SourceFile* file = nullptr;
    const YamlNode* node = nullptr;
  };
  std::shared_ptr<ssl_ctx_st> TlsContextFor(const TlsConfig& tls, const std::string& path,
                                            const TlsKeyPlace (&places)[3]);
  // Checks between keys, for defaults (inherited == nullptr) or a target.
  void CheckCombinations(const SourceFile& f, const Settings& own, const Settings* inherited,
                         const std::string& path);

  bool Scalar(const SourceFile& f, const YamlNode* node, const std::string& path,
              const char* expected);
  std::optional<Millis> Duration(const SourceFile& f, const YamlNode* node,
                                 const std::string& path);
  std::optional<int> Integer(const SourceFile& f, const YamlNode* node, const std::string& path,
                             int min, int max, const char* why);
  std::optional<Millis> KeepaliveSeconds(const SourceFile& f, const YamlNode* node,
                                         const std::string& path, const char* sockopt);
  std::optional<Millis> Positive(const SourceFile& f, const YamlNode* node,
                                 const std::string& path);

  static constexpr size_t kMaxErrors = 200;
  std::vector<ConfigError> errors_;
  std::vector<int> error_ranks_;  // parallel to errors_.
  size_t suppressed_errors_ = 0;
  int next_rank_ = 0;
  Settings defaults_;
  GlobalConfig global_;
  std::vector<std::shared_ptr<const TargetConfig>> targets_;
  std::unordered_map<std::string, Place> names_;
  // Files read so far, by "dev:inode": the name each was read under and the
  // include entry that named it.
  std::unordered_map<std::string, std::pair<std::string, std::string>> loaded_;
  std::string main_identity_;
  std::unordered_set<std::string> good_regexes_;
  // Client contexts of this load, by TlsContextKey; a key that failed maps to
  // nullptr (its error was reported once).
  std::unordered_map<std::string, std::shared_ptr<ssl_ctx_st>> tls_contexts_;
  SourceFile defaults_file_;  // where `defaults:` was read (for errors of its tls files)
  std::vector<std::string> files_;
  NodeCount node_count_;  // of every file read so far.
};

std::string Identity(const struct stat& st) {
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

void Loader::ErrorAt(const SourceFile& f, int line, int column, const std::string& path,
                     std::string message) {
  // A file can make the same mistake a million times over (an alias of a bad
  // map referenced everywhere): report the first kMaxErrors, count the rest.
  if (errors_.size() >= kMaxErrors) {
    ++suppressed_errors_;
    return;
  }
  ConfigError& e = errors_.emplace_back();
  e.file = f.name;
  e.line = line;
  e.column = column;
  e.path = path;
  e.message = std::move(message);
  error_ranks_.push_back(f.rank);
}

void Loader::Error(const SourceFile& f, const YamlNode* at, const std::string& path,
                   std::string message) {
  ErrorAt(f, at != nullptr ? at->line : 0, at != nullptr ? at->column : 0, path,
          std::move(message));
}

template <typename Fn>
void Loader::ForEachPair(const SourceFile& f, const YamlNode* map, const std::string& path, Fn fn) {
  const auto& c = map->children;
  const size_t pairs = c.size() / 2;
  // Maps are small; a hash index only for the rare big one keeps this linear.
  std::unordered_map<std::string_view, const YamlNode*> index;
  const bool use_index = pairs > 16;
  for (size_t i = 0; i + 1 < c.size(); i += 2) {
    const YamlNode* key = c[i];
    const YamlNode* value = c[i + 1];
    if (key->kind != YamlNode::Kind::kScalar) {
      Error(f, key, path, "a key must be a string, got " + Describe(key));
      continue;
    }
    const YamlNode* first = nullptr;
    if (use_index) {
      auto [it, inserted] = index.emplace(key->value, key);
      if (!inserted) first = it->second;
    } else {
      for (size_t j = 0; j < i; j += 2) {
        if (c[j]->kind == YamlNode::Kind::kScalar && c[j]->value == key->value) {
          first = c[j];
          break;
        }
      }
    }
    if (first != nullptr) {
      Error(f, key, Join(path, key->value),
            "duplicate key " + Quote(key->value) + " (first at " + std::to_string(first->line) +
                ":" + std::to_string(first->column) + ")");
      continue;
    }
    fn(std::string_view(key->value), key, value);
  }
}

bool Loader::Scalar(const SourceFile& f, const YamlNode* node, const std::string& path,
                    const char* expected) {
  if (node->kind == YamlNode::Kind::kScalar) return true;
  Error(f, node, path, std::string("expected ") + expected + ", got " + Describe(node));
  return false;
}

std::optional<Millis> Loader::Duration(const SourceFile& f, const YamlNode* node,
                                       const std::string& path) {
  if (!Scalar(f, node, path, "a duration such as \"5s\"")) return std::nullopt;
  Millis d;
  std::string why;
  if (!ParseDuration(node->value, &d, &why)) {
    Error(f, node, path, why);
    return std::nullopt;
  }
  return d;
}

std::optional<Millis> Loader::Positive(const SourceFile& f, const YamlNode* node,
                                       const std::string& path) {
  std::optional<Millis> d = Duration(f, node, path);
  if (d && d->count() <= 0) {
    Error(f, node, path, "must be greater than 0");
    return std::nullopt;
  }
  return d;
}

std::optional<int> Loader::Integer(const SourceFile& f, const YamlNode* node,
                                   const std::string& path, int min, int max, const char* why) {
  if (!Scalar(f, node, path, "an integer")) return std::nullopt;
  const std::string& s = node->value;
  size_t digits_from = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  bool numeric = s.size() > digits_from;
  for (size_t i = digits_from; i < s.size(); ++i) numeric = numeric && s[i] >= '0' && s[i] <= '9';
  if (!numeric) {
    Error(f, node, path, "expected an integer, got " + Quote(s));
    return std::nullopt;
  }
  long long value = 0;
  if (s.size() - digits_from > 12) {
    value =
        s[0] == '-' ? std::numeric_limits<long long>::min() : std::numeric_limits<long long>::max();
  } else {
    value = std::stoll(s);
  }
  if (value < min || value > max) {
    std::string message = "must be between " + std::to_string(min) + " and " + std::to_string(max);
    if (why != nullptr && *why != '\0') message += std::string(" (") + why + ")";
    message += ", got " + s;
    Error(f, node, path, message);
    return std::nullopt;
  }
  return static_cast<int>(value);
}

std::optional<Millis> Loader::KeepaliveSeconds(const SourceFile& f, const YamlNode* node,
                                               const std::string& path, const char* sockopt) {
  std::optional<Millis> d = Duration(f, node, path);
  if (!d) return std::nullopt;
  const std::string because =
      std::string(": the kernel takes ") + sockopt + " in whole seconds, 1..32767";
  if (d->count() < 1000 || d->count() > kMaxKeepaliveSeconds * 1000) {
    Error(f, node, path, "must be between 1s and 32767s, got " + FormatDuration(*d) + because);
    return std::nullopt;
  }
  if (d->count() % 1000 != 0) {
    Error(f, node, path, "must be a whole number of seconds, got " + FormatDuration(*d) + because);
    return std::nullopt;
  }
  return d;
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

std::optional<bool> Loader::Boolean(const SourceFile& f, const YamlNode* node,
                                    const std::string& path) {
  if (!Scalar(f, node, path, "true or false")) return std::nullopt;
  const std::string& v = node->value;
  if (node->plain && (v == "true" || v == "True" || v == "TRUE")) return true;
  if (node->plain && (v == "false" || v == "False" || v == "FALSE")) return false;
  Error(f, node, path, "expected true or false, got " + Quote(v));
  return std::nullopt;
}

std::optional<ProbeList> Loader::Probes(const SourceFile& f, const YamlNode* node,
                                        const std::string& path) {
  const char* const kWhich = "peek, zero_send, tcp_info, so_error";
  if (node->kind != YamlNode::Kind::kSequence) {
    Error(f, node, path,
          std::string("expected a list of probes (some of ") + kWhich + ", in the order to run " +
              "them), got " + Describe(node));
    return std::nullopt;
  }
  if (node->children.empty()) {
    Error(f, node, path,
          std::string("must name at least one probe (") + kWhich +
              "); the default is [peek, zero_send, tcp_info]");
    return std::nullopt;
  }
  ProbeList list;
  bool ok = true;
  std::vector<const YamlNode*> seen(kProbeCount, nullptr);
  for (size_t i = 0; i < node->children.size(); ++i) {
    const YamlNode* item = node->children[i];
    const std::string p = Index(path, i);
    if (!Scalar(f, item, p, "a probe name")) {
      ok = false;
      continue;
    }
    Probe probe;
    if (!ParseProbe(item->value, &probe)) {
      std::string message = "unknown probe " + Quote(item->value);
      std::string_view best = ClosestWord(item->value, kProbeWords);
      if (!best.empty()) message += " (did you mean " + Quote(best) + "?)";
      message += std::string("; the probes are ") + kWhich;
      Error(f, item, p, message);
      ok = false;
      continue;
    }
    const YamlNode*& first = seen[static_cast<size_t>(probe)];
    if (first != nullptr) {
      Error(f, item, p,
            "duplicate probe " + Quote(item->value) + " (first at " + std::to_string(first->line) +
                ":" + std::to_string(first->column) + ")");
      ok = false;
      continue;
    }
    first = item;
    list.Add(probe);
  }
  if (!ok) return std::nullopt;
  return list;
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

void Loader::ProcessGlobal(const SourceFile& f, const YamlNode* node) {
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, "global", "expected a map of settings, got " + Describe(node));
    return;
  }
  ForEachPair(f, node, "global",
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                const std::string path = Join("global", key);
                if (key == "max_connects_in_flight") {
                  if (auto v = Integer(f, value, path, 1, 1000000, nullptr)) {
                    global_.max_connects_in_flight = *v;
                  }
                } else if (key == "max_connects_per_second") {
                  if (auto v = Integer(f, value, path, 1, 1000000, nullptr)) {
                    global_.max_connects_per_second = *v;
                  }
                } else if (key == "shard") {
                  ProcessShard(f, value);
                } else {
                  Error(f, key_node, "global", UnknownKeyMessage(key, kGlobalKeys));
                }
              });
}

void Loader::ProcessShard(const SourceFile& f, const YamlNode* node) {
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, "global.shard",
          "expected a map {index: I, total: N} (shard I of N, I from 0 to N-1), got " +
              Describe(node));
    return;
  }
  std::optional<int> index, total;
  const YamlNode* index_node = nullptr;
  const YamlNode* total_node = nullptr;
  ForEachPair(f, node, "global.shard",
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                const std::string path = Join("global.shard", key);
                if (key == "index") {
                  index_node = value;
                  index = Integer(f, value, path, 0, kMaxShards - 1, nullptr);
                } else if (key == "total") {
                  total_node = value;
                  total = Integer(f, value, path, 1, kMaxShards, "the number of shards");
                } else {
                  Error(f, key_node, "global.shard", UnknownKeyMessage(key, kShardKeys));
                }
              });
  if (index_node == nullptr && !(total && *total == 1)) {
    Error(f, node, "global.shard", "missing \"index\" (this instance's shard, 0 to total-1)");
  }
  if (!total) {
    // A total that was written but invalid has its own error already.
    if (total_node == nullptr) Error(f, node, "global.shard", "missing \"total\" (the number of shards)");
    return;
  }
  if (index && *index >= *total) {
    Error(f, index_node, "global.shard.index",
          "must be below total (" + std::to_string(*total) + " shards: index 0 to " +
              std::to_string(*total - 1) + "), got " + std::to_string(*index));
    return;
  }
  if (index || *total == 1) global_.shard = ShardConfig{index.value_or(0), *total};
}

void Loader::ProcessDefaults(const SourceFile& f, const YamlNode* node) {
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, "defaults", "expected a map of settings, got " + Describe(node));
    return;
  }
  defaults_file_ = f;
  ForEachPair(f, node, "defaults",
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                if (ParseSetting(f, key, value, "defaults", &defaults_)) return;
                if (key == "name" || key == "address" || key == "srv" || key == "labels") {
                  Error(f, key_node, "defaults",
                        Quote(key) + " is set per target and is not allowed in defaults");
                } else {
                  Error(f, key_node, "defaults", UnknownKeyMessage(key, kSettingKeys));
                }
              });
  CheckCombinations(f, defaults_, nullptr, "defaults");
  if (defaults_.tls == Settings::Tls::kOn) {
    // The defaults' files are checked here, once, at their own place.
    TargetConfig probe;
    Settings none;
    ResolveTls(f, none, "defaults", &probe);
  }
}

void Loader::ParseLabels(const SourceFile& f, const YamlNode* node, const std::string& path,
                         TargetConfig* target) {
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path, "expected a map of label names to values, got " + Describe(node));
    return;
  }
  ForEachPair(f, node, path,
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                const std::string p = Join(path, key);
                bool valid = !key.empty();
                for (size_t i = 0; i < key.size(); ++i) {
                  valid = valid && IsLabelNameChar(key[i], i == 0);
                }
                if (!valid) {
                  Error(f, key_node, p,
                        "invalid label name " + Quote(key) + ": must match [a-zA-Z_][a-zA-Z0-9_]*");
                } else if (key.substr(0, 2) == "__") {
                  Error(f, key_node, p,
                        "invalid label name " + Quote(key) +
                            ": names starting with \"__\" are reserved by Prometheus");
                } else if (Contains(kReservedLabels, key)) {
                  Error(f, key_node, p,
                        "label name " + Quote(key) +
                            " is reserved: connwatch sets it on every series of the target");
                } else if (value->kind != YamlNode::Kind::kScalar) {
                  Error(f, value, p, "expected a label value (a string), got " + Describe(value));
                } else {
                  target->labels.emplace_back(std::string(key), value->value);
                }
              });
  std::sort(target->labels.begin(), target->labels.end());
}

bool Loader::ValidSrvName(const std::string& name, std::string* why) {
  // _service._tcp.domain: connwatch holds TCP connections, so the protocol
  // label is _tcp; the domain has at least one label.
  const size_t first = name.find('.');
  const size_t second = first == std::string::npos ? first : name.find('.', first + 1);
  const std::string example = " (e.g. _kafka._tcp.example.org)";
  if (name.empty() || name[0] != '_' || first == std::string::npos || first < 2 ||
      second == std::string::npos || second + 1 >= name.size()) {
    *why = "expected an SRV name _service._tcp.domain" + example + ", got " + Quote(name);
    return false;
  }
  if (name.compare(first + 1, second - first - 1, "_tcp") != 0) {
    *why = "the protocol of an SRV name must be _tcp (connwatch holds TCP connections), got " +
           Quote(name) + example;
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) {
      *why = "an SRV name has letters, digits, '-', '_' and '.' only, got " + Quote(name);
      return false;
    }
  }
  return true;
}

void Loader::ProcessTarget(const SourceFile& f, const YamlNode* node, const std::string& path) {
  if (node->kind != YamlNode::Kind::kMap) {
    Error(f, node, path,
          "expected a target (a map with at least \"address\"), got " + Describe(node));
    return;
  }
  const size_t errors_before = errors_.size();
  Settings own;
  const YamlNode* name_node = nullptr;
  const YamlNode* address_node = nullptr;
  const YamlNode* srv_node = nullptr;
  const YamlNode* srv_key_node = nullptr;
  const YamlNode* labels_node = nullptr;
  ForEachPair(f, node, path,
              [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
                if (key == "name") {
                  name_node = value;
                } else if (key == "address") {
                  address_node = value;
                } else if (key == "srv") {
                  srv_node = value;
                  srv_key_node = key_node;
                } else if (key == "labels") {
                  labels_node = value;
                } else if (!ParseSetting(f, key, value, path, &own)) {
                  if (Contains(kTlsKeys, key)) {
                    Error(f, key_node, path,
                          Quote(key) + " is a key of tls:, and this target has no TLS: write "
                          "tls: {" + std::string(key) + ": ...} to hold a TLS session");
                  } else {
                    Error(f, key_node, path, UnknownKeyMessage(key, kTargetKeys));
                  }
                }
              });

  auto target = std::make_shared<TargetConfig>();
  bool have_name = false;
  bool have_address = false;
  bool have_srv = false;
  if (srv_node != nullptr && address_node != nullptr) {
    Error(f, srv_key_node, Join(path, "srv"),
          "a target has either \"address\" (host:port) or \"srv\" (an SRV name), not both");
    address_node = nullptr;  // no second error about it
  } else if (srv_node != nullptr && Scalar(f, srv_node, Join(path, "srv"), "an SRV name")) {
    std::string why;
    if (ValidSrvName(srv_node->value, &why)) {
      target->srv = srv_node->value;
      have_srv = true;
    } else {
      Error(f, srv_node, Join(path, "srv"), why);
    }
  }
  if (name_node != nullptr && Scalar(f, name_node, Join(path, "name"), "a string")) {
    if (name_node->value.empty()) {
      Error(f, name_node, Join(path, "name"), "must not be empty");
    } else {
      target->name = name_node->value;
      have_name = true;
    }
  }
  if (address_node != nullptr && Scalar(f, address_node, Join(path, "address"), "host:port")) {
    std::string why;
    if (ParseAddress(address_node->value, &target->host, &target->port, &why)) {
      target->address = address_node->value;
      have_address = true;
    } else {
      Error(f, address_node, Join(path, "address"), why);
    }
  } else if (srv_node != nullptr) {
    // The endpoints come from the SRV records.
  } else if (address_node == nullptr && have_name) {
    // The name may stand for the address: `- name: db.example.org:5432`.
    std::string why;
    if (ParseAddress(target->name, &target->host, &target->port, &why)) {
      target->address = target->name;
      have_address = true;
    } else {
      Error(f, name_node, Join(path, "name"),
            "missing \"address\" or \"srv\" (and the name " + Quote(target->name) +
                " is not a host:port that could stand in for it)");
    }
  } else if (address_node == nullptr && name_node == nullptr) {
    Error(f, node, path,
          "missing \"address\" (host:port or [ipv6]:port) or \"srv\" (an SRV name)");
  }
  if (!have_name && name_node == nullptr && (have_address || have_srv)) {
    target->name = have_srv ? target->srv : target->address;
    have_name = true;
  }

  // Names are unique across all files; report the second with the first's place.
  if (have_name) {
    const YamlNode* at =
        name_node != nullptr ? name_node : (address_node != nullptr ? address_node : srv_node);
    Place here{f.name, at->line, at->column};
    auto [it, inserted] = names_.emplace(target->name, here);
    if (!inserted) {
      const Place& first = it->second;
      std::string where = std::to_string(first.line) + ":" + std::to_string(first.column);
      if (first.file != f.name) where = first.file + ":" + where;
      Error(f, at,
            Join(path, name_node != nullptr ? "name" : (address_node != nullptr ? "address" : "srv")),
            "duplicate target name " + Quote(target->name) + " (first defined at " + where + ")");
    }
  }

  if (labels_node != nullptr) ParseLabels(f, labels_node, Join(path, "labels"), target.get());

  CheckCombinations(f, own, &defaults_, path);
  if (have_srv) {
    if (own.addresses.value && *own.addresses.value == AddressMode::kFirst) {
      Error(f, own.addresses.node, Join(path, "addresses"),
            "an srv target holds one connection per SRV endpoint: addresses must be all (or "
            "left out), got \"first\"");
    }
    for (const auto& [label, value] : target->labels) {
      if (Contains(kSrvLabels, label)) {
        Error(f, labels_node, Join(path, "labels." + label),
              "label name " + Quote(label) +
                  " is reserved on srv targets: connwatch_target_info carries the SRV record's");
      }
    }
  }
  // The target's address, when a literal, must agree with its family and source.
  if (have_address) {
    IpVersion v = LiteralVersion(target->host);
    Resolved<AddressFamily> family =
        Resolve(own.address_family, &defaults_.address_family, AddressFamily::kAny);
    Resolved<std::string> source =
        Resolve(own.source_address, &defaults_.source_address, std::string());
    const YamlNode* at = address_node != nullptr ? address_node : name_node;
    const std::string at_path = Join(path, address_node != nullptr ? "address" : "name");
    if (!FamilyAllows(family.value, v)) {
      Error(f, at, at_path,
            Quote(target->address) + " is an " + std::string(VersionName(v)) +
                " address but address_family is " + std::string(AddressFamilyName(family.value)));
    } else if (!source.value.empty() && v != IpVersion::kNone &&
               LiteralVersion(source.value) != v) {
      Error(f, at, at_path,
            Quote(target->address) + " is an " + std::string(VersionName(v)) +
                " address but source_address " + source.value + " is " +
                std::string(VersionName(LiteralVersion(source.value))));
    }
  }

  if (have_address || have_srv) ResolveTls(f, own, path, target.get());

  if (errors_.size() != errors_before) return;

  ApplySettings(own, defaults_, target.get());
  targets_.push_back(std::move(target));
}

void Loader::ProcessTargets(const SourceFile& f, const YamlNode* node) {
  if (node->kind == YamlNode::Kind::kNull) return;  // every target commented out.
  if (node->kind != YamlNode::Kind::kSequence) {
    Error(f, node, "targets", "expected a list of targets, got " + Describe(node));
    return;
  }
  for (size_t i = 0; i < node->children.size(); ++i) {
    ProcessTarget(f, node->children[i], Index("targets", i));
  }
}

void Loader::IncludeFile(const SourceFile& f, const YamlNode* at, const std::string& path,
                         const std::string& file) {
  struct stat st;
  std::string text;
  std::string why;
  if (stat(file.c_str(), &st) != 0) {
    Error(f, at, path, "cannot read included file " + Quote(file) + ": " + ErrnoText(errno));
    return;
  }
  const std::string id = Identity(st);
  if (!main_identity_.empty() && id == main_identity_) {
    Error(f, at, path,
          Quote(file) +
              " is the main config file itself; an include must not match the file "
              "that includes it");
    return;
  }
  auto [it, inserted] = loaded_.emplace(id, std::make_pair(file, path));
  if (!inserted) {
    const auto& [first_name, first_path] = it->second;
    std::string message = Quote(file) + " is already included by " + first_path;
    if (first_name != file) message += " (as " + Quote(first_name) + ")";
    Error(f, at, path, message + "; a file may be included only once");
    return;
  }
  if (!ReadWholeFile(file, &text, &why)) {
    Error(f, at, path, "cannot read included file " + Quote(file) + ": " + why);
    return;
  }
  files_.push_back(file);
  SourceFile included{file, DirName(file), true, next_rank_++};
  if (text.empty()) {
    // The same rule as for the main file (LoadConfigFile): a file being
    // rewritten in place reads as empty, and loading that would drop its
    // targets until the next reload.
    ErrorAt(included, 0, 0, "",
            "the file is empty (being rewritten?); write \"targets: []\" to watch nothing");
    return;
  }
  TreeBuilder builder(&node_count_, text);
  const YamlNode* root = Parse(included, text, &builder);
  if (root != nullptr) ProcessFile(included, root);
}

void Loader::ProcessIncludes(const SourceFile& f, const YamlNode* node) {
  std::vector<std::pair<const YamlNode*, std::string>> patterns;  // node, path
  if (node->kind == YamlNode::Kind::kNull) return;
  if (node->kind == YamlNode::Kind::kScalar) {
    patterns.emplace_back(node, "include");
  } else if (node->kind == YamlNode::Kind::kSequence) {
    for (size_t i = 0; i < node->children.size(); ++i) {
      patterns.emplace_back(node->children[i], Index("include", i));
    }
  } else {
    Error(f, node, "include", "expected a list of file globs, got " + Describe(node));
    return;
  }
  for (const auto& [pattern_node, path] : patterns) {
    if (!Scalar(f, pattern_node, path, "a file glob such as \"targets.d/*.yaml\"")) continue;
    const std::string& pattern = pattern_node->value;
    if (pattern.empty()) {
      Error(f, pattern_node, path, "must not be empty");
      continue;
    }
    const std::string full = JoinPath(f.dir, pattern);
    if (!HasGlobChars(pattern)) {
      // A plain file name is a file that must exist; only globs may match nothing.
      IncludeFile(f, pattern_node, path, full);
      continue;
    }
    glob_t g{};
    glob_failure = GlobFailure{};
    // Only the entry is a pattern: "*" or "[" in the directory name are literal.
    const std::string escaped = pattern[0] == '/' ? pattern : JoinPath(EscapeGlob(f.dir), pattern);
    int rc = glob(escaped.c_str(), 0, OnGlobError, &g);
    if (rc == GLOB_NOMATCH) {
      globfree(&g);
      continue;  // an empty or missing targets.d is normal.
    }
    if (rc != 0) {
      std::string why = rc == GLOB_ABORTED ? "cannot read directory " + Quote(glob_failure.path) +
                                                 ": " + ErrnoText(glob_failure.err)
                                           : "out of memory";
      Error(f, pattern_node, path, "cannot expand " + Quote(full) + ": " + why);
      globfree(&g);
      continue;
    }
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    std::sort(matches.begin(), matches.end());  // byte order, whatever the locale.
    for (const std::string& match : matches) IncludeFile(f, pattern_node, path, match);
  }
}

void Loader::ProcessFile(const SourceFile& f, const YamlNode* root) {
  if (root->kind == YamlNode::Kind::kNull) return;  // an empty file: no targets.
  if (root->kind != YamlNode::Kind::kMap) {
    Error(f, root, "",
          std::string("the top level must be a map (with \"targets\"") +
              (f.included ? "" : ", and optionally \"global\", \"defaults\" and \"include\"") + "), got " +
              Describe(root));
    return;
  }
  const YamlNode* global = nullptr;
  const YamlNode* defaults = nullptr;
  const YamlNode* targets = nullptr;
  const YamlNode* include = nullptr;
  ForEachPair(
      f, root, "", [&](std::string_view key, const YamlNode* key_node, const YamlNode* value) {
        if (key == "targets") {
          targets = value;
        } else if (!f.included && key == "defaults") {
          defaults = value;
        } else if (!f.included && key == "global") {
          global = value;
        } else if (!f.included && key == "include") {
          include = value;
        } else if (f.included && Contains(kMainKeys, key)) {
          Error(f, key_node, "",
                Quote(key) + " is not allowed in an included file (it may hold only \"targets\")");
        } else {
          Error(f, key_node, "",
                f.included ? UnknownKeyMessage(key, kIncludedKeys)
                           : UnknownKeyMessage(key, kMainKeys));
        }
      });
  if (global != nullptr) ProcessGlobal(f, global);
  // Defaults first, wherever they are written: every target inherits them.
  if (defaults != nullptr) ProcessDefaults(f, defaults);
  if (targets != nullptr) ProcessTargets(f, targets);
  if (include != nullptr) ProcessIncludes(f, include);
}

const YamlNode* Loader::Parse(const SourceFile& f, const std::string& text, TreeBuilder* builder) {
  int line = 0;
  int column = 0;
  std::string why;
  if (!CheckText(text, &line, &column, &why)) {
    ErrorAt(f, line, column, "", why);
    return nullptr;
  }
  auto at = [&](const YAML::Mark& mark, std::string message) {
    if (mark.is_null()) {
      ErrorAt(f, 0, 0, "", std::move(message));
    } else {
      ErrorAt(f, mark.line + 1, mark.column + 1, "", std::move(message));
    }
  };
  static const YamlNode kEmpty;
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    if (parser.HandleNextDocument(*builder)) {
      // A second call throws SecondDocument if one starts.
      parser.HandleNextDocument(*builder);
    }
  } catch (const TooDeep& e) {
    at(e.mark, "nested more than " + std::to_string(kMaxDepth) +
                   " levels deep; a connwatch config needs four" + std::string(kNotCheckedFurther));
    return nullptr;
  } catch (const TooMuchExpansion& e) {
    at(e.mark, "aliases expand the config to more than " + std::to_string(e.limit) +
                   " nodes (it has " + std::to_string(e.written) +
                   " written up to here; the limit is " + std::to_string(kExpansionFactor) +
                   " times that, at least " + std::to_string(kMinExpansionLimit) +
                   "); alias only small shared pieces such as a labels map, or write the "
                   "repeated parts out" + std::string(kNotCheckedFurther));
    return nullptr;
  } catch (const SecondDocument& e) {
    // The first document is complete: it is checked too, so its errors are
    // not hidden behind this one.
    at(e.mark, "a second YAML document (\"---\"); a config file holds exactly one: remove "
               "this line and what follows it, or move that to a file of its own");
    return builder->root() != nullptr ? builder->root() : &kEmpty;
  } catch (const UnclosedQuote& e) {
    at(e.mark, "the quote opened here is never closed, so the value runs to the end of the "
               "file: add the closing quote" + std::string(kNotCheckedFurther));
    return nullptr;
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) {
      at(e.mark, "invalid YAML: " + e.msg + std::string(kNotCheckedFurther));
    } else {
      YamlProblem p = ExplainYamlError(text, e.mark.line + 1, e.mark.column + 1, e.msg);
      ErrorAt(f, p.line, p.column, "", std::move(p.message));
    }
    return nullptr;
  } catch (const std::bad_alloc&) {
    ErrorAt(f, 0, 0, "", "out of memory while parsing");
    return nullptr;
  } catch (const std::exception& e) {
    ErrorAt(f, 0, 0, "", std::string("cannot parse: ") + e.what());
    return nullptr;
  }
  return builder->root() != nullptr ? builder->root() : &kEmpty;
}

ConfigLoadResult Loader::Run(const std::string& text, const std::string& name,
                             const std::string& base_dir, const struct stat* main_identity) {
  if (main_identity != nullptr) {
    main_identity_ = Identity(*main_identity);
    loaded_.emplace(main_identity_, std::make_pair(name, std::string()));
  }
  SourceFile main{name, base_dir, false, next_rank_++};
  ConfigLoadResult result;
  try {
    TreeBuilder builder(&node_count_, text);
    const YamlNode* root = Parse(main, text, &builder);
    if (root != nullptr) ProcessFile(main, root);
  } catch (const std::bad_alloc&) {
    ErrorAt(main, 0, 0, "", "out of memory while loading the config");
  } catch (const std::exception& e) {
    ErrorAt(main, 0, 0, "", std::string("cannot load the config: ") + e.what());
  }
  if (errors_.empty()) {
    result.config.emplace();
    result.config->global = global_;
    result.config->targets = std::move(targets_);
    result.config->files = std::move(files_);
    return result;
  }
  // In file order: the main file's errors, then each included file's, each by place.
  std::vector<size_t> order(errors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const ConfigError& x = errors_[a];
    const ConfigError& y = errors_[b];
    return std::tie(error_ranks_[a], x.line, x.column) <
           std::tie(error_ranks_[b], y.line, y.column);
  });
  result.errors.reserve(errors_.size() + 1);
  for (size_t i : order) result.errors.push_back(std::move(errors_[i]));
  if (suppressed_errors_ > 0) {
    ConfigError& more = result.errors.emplace_back();
    more.file = name;
    more.message = "and " + std::to_string(suppressed_errors_) + " more errors not shown (only the first " +
                   std::to_string(kMaxErrors) + " are reported)";
  }
  return result;
}

}  // namespace

ConfigLoadResult LoadConfigFile(const std::string& path) {
  std::string text;
  std::string why;
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !ReadWholeFile(path, &text, &why)) {
    if (why.empty()) why = ErrnoText(errno);
    ConfigLoadResult result;
    ConfigError& e = result.errors.emplace_back();
    e.file = path;
    e.message = "cannot read config file: " + why;
    return result;
  }
  if (text.empty()) {
    // NOTE: a file rewritten in place (truncate, then write) reads as empty
    // in between; loading that would drop every target. A config meant to
    // watch nothing says so: `targets: []`.
    ConfigLoadResult result;
    ConfigError& e = result.errors.emplace_back();
    e.file = path;
    e.message =
        "the file is empty (being rewritten?); write \"targets: []\" to watch nothing";
    return result;
  }
  Loader loader;
  ConfigLoadResult result = loader.Run(text, path, DirName(path), &st);
  if (result.config) result.config->files.insert(result.config->files.begin(), path);
  return result;
}

std::vector<ConfigKeyGroup> ConfigKeyGroups() {
  auto group = [](std::string_view map, const auto& keys) {
    return ConfigKeyGroup{map, {std::begin(keys), std::end(keys)}};
  };
  return {group("", kMainKeys),           group("included", kIncludedKeys),
          group("global", kGlobalKeys),   group("shard", kShardKeys),
          group("defaults", kSettingKeys),
          group("targets[]", kTargetKeys), group("keepalive", kKeepaliveKeys),
          group("backoff", kBackoffKeys), group("heartbeat", kHeartbeatKeys),
          group("canary", kCanaryKeys),
          group("tls", kTlsKeys)};
}

void SetReadChunkHookForTest(std::function<void(size_t bytes_read)> hook) {
  ReadChunkHook() = std::move(hook);
}

ConfigLoadResult LoadConfigString(const std::string& text, const std::string& name,
                                  const std::string& base_dir) {
  Loader loader;
  return loader.Run(text, name, base_dir, nullptr);
}

}  // namespace connwatch
