#pragma once
// The config loader's insides (config/loader.h is its interface): the
// settings shared by `defaults:` and targets, and the Loader class, whose
// methods live in three files by concern: loader.cc (files, includes, the
// main keys, targets), loader_values.cc (errors and the scalar values:
// durations, integers, booleans, probe lists) and loader_settings.cc (the
// setting keys and their maps: keepalive, backoff, heartbeat, canary, tls,
// and the checks between keys).

#include <sys/stat.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "config/config_text.h"
#include "config/yaml_tree.h"
#include "core/config.h"

struct ssl_ctx_st;

namespace connwatch::config_detail {

// The kernel takes TCP_KEEPIDLE / TCP_KEEPINTVL in whole seconds, 1..32767.
inline constexpr int64_t kMaxKeepaliveSeconds = 32767;
inline constexpr int kMaxKeepaliveCount = 127;  // TCP_KEEPCNT
// TCP_USER_TIMEOUT is an int of milliseconds.
inline constexpr int64_t kMaxUserTimeoutMs = std::numeric_limits<int32_t>::max();

// Labels connwatch itself puts on every series; a user label may not shadow them.
inline constexpr std::string_view kReservedLabels[] = {"target", "address", "endpoint"};
// Labels of connwatch_target_info for `srv:` targets (SRV priority and weight).
inline constexpr std::string_view kSrvLabels[] = {"priority", "weight"};

// The keys of each map. Every array here is listed in ConfigKeyGroups() (at
// the end of loader.cc), which the docs tests compare with the documentation.
inline constexpr std::string_view kMainKeys[] = {"global", "defaults", "targets", "include"};
inline constexpr std::string_view kGlobalKeys[] = {"max_connects_in_flight", "max_connects_per_second",
                                           "shard"};
inline constexpr std::string_view kShardKeys[] = {"index", "total"};
inline constexpr std::string_view kIncludedKeys[] = {"targets"};
inline constexpr std::string_view kSettingKeys[] = {
    "connect_timeout", "check_interval", "keepalive",    "user_timeout", "backoff",
    "address_family",  "source_address", "startup_jitter", "check_jitter", "heartbeat",
    "probes",          "report_icmp",    "tls",            "resolve_interval",
    "on_address_change", "canary", "addresses"};
inline constexpr std::string_view kTargetKeys[] = {
    "name",           "address",        "labels",         "connect_timeout", "check_interval",
    "keepalive",      "user_timeout",   "backoff",        "address_family",  "source_address",
    "startup_jitter", "check_jitter",   "heartbeat",      "probes",          "report_icmp",
    "tls",            "resolve_interval", "on_address_change", "canary", "addresses", "srv"};
inline constexpr std::string_view kKeepaliveKeys[] = {"idle", "interval", "count"};
inline constexpr std::string_view kBackoffKeys[] = {"initial", "max"};
inline constexpr std::string_view kHeartbeatKeys[] = {"send", "expect", "interval", "timeout", "fall"};
inline constexpr std::string_view kCanaryKeys[] = {"interval", "timeout"};
inline constexpr std::string_view kProbeWords[] = {"peek", "zero_send", "tcp_info", "so_error"};
inline constexpr std::string_view kTlsKeys[] = {"server_name", "ca_file",           "cert_file",
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
void ApplySettings(const Settings& own, const Settings& d, TargetConfig* target);

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

}  // namespace connwatch::config_detail
