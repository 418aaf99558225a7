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
namespace connwatch {

namespace config_detail {

std::string Identity(const struct stat& st) {
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
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

}  // namespace config_detail

using namespace config_detail;  // NOLINT: the loader's own helpers

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
