// Loader (config/loader_impl.h): how errors are recorded, and the scalar
// values every key is made of (strings, durations, integers, booleans, the
// probe list).
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

}  // namespace connwatch::config_detail
