// Docs that cannot drift: the documentation is executed and compared with the
// code.
//  - DocsKeys: the config keys the loader accepts (ConfigKeyGroups(), the
//    loader's own tables) against docs/CONFIG.md, connwatch.yaml(5),
//    config/connwatch.schema.json and config/example.yaml, both ways. A key
//    added to the loader fails these until it is documented everywhere.
//  - DocsExamples: every YAML example of docs/*.md, README.md,
//    config/example.yaml and the manual pages goes through
//    `connwatchd --check-config`. Examples marked bad must fail with exactly
//    the output shown after them.
// Markers, invisible when rendered, say what an example is. In Markdown, on
// the line before the fence (a ```yaml block without one is a config):
//   <!-- doc-test: config -->             passes --check-config
//   <!-- doc-test: bad-config -->         fails; the next fenced block is its output
//   <!-- doc-test: web-config -->         passes as --web.config.file (certificates made)
//   <!-- doc-test: prometheus-config -->  checked by tests/docs/promql_examples.py
//   <!-- doc-test: prometheus-rules -->   checked by tests/docs/promql_examples.py
// In a manual page every .nf block carries one on the line before it:
//   .\" doc-test: config | bad-config | output | shell | text
// Paths under /etc/connwatch/ in an example stand for a scratch directory
// laid out like the package's (connwatch.yaml, an empty targets.d/).
// Flags (connwatchd --help against README.md and connwatchd(8), connwatchctl
// --help and its commands' against README.md and connwatchctl(1)) are checked
// by tests/system/packaging_files_test.sh, PromQL by promql_examples.py.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/loader.h"
#include "exit_codes.h"
#include "core/reason.h"
#include "net/admission.h"
#include "test_util.h"
#include "web/web_config.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::RunProgram;
using testing::RunResult;
using testing::TempDir;

const std::string kSourceDir = CONNWATCH_SOURCE_DIR;

std::string ReadSource(const std::string& relative) {
  std::ifstream in(kSourceDir + "/" + relative, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << relative;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

// groff escapes used in the manual pages.
std::string Unroff(std::string s) {
  s = Replace(s, "\\(rs", "\\");
  s = Replace(s, "\\(dq", "\"");
  s = Replace(s, "\\(aq", "'");
  s = Replace(s, "\\-", "-");
  s = Replace(s, "\\&", "");
  s = Replace(s, "\\e", "\\");
  return s;
}

// --- Config keys --------------------------------------------------------------

// A key as the docs place it: "top:include", "global:max_connects_in_flight",
// "target:name" (only in a target), "setting:keepalive.idle" (in defaults and
// in a target).
struct Keys {
  std::set<std::string> leaves;   // keys that hold a value
  std::set<std::string> parents;  // keys that hold a map of further keys
};

class CodeKeys {
 public:
  CodeKeys() {
    for (const ConfigKeyGroup& g : ConfigKeyGroups()) {
      groups_[std::string(g.map)] = {g.keys.begin(), g.keys.end()};
    }
    for (const std::string& k : groups_[""]) keys_.leaves.insert("top:" + k);
    // global.shard is a map of its own (global:shard.index, global:shard.total).
    for (const std::string& k : groups_["global"]) Add("global:", k, 0);
    const std::vector<std::string>& settings = groups_["defaults"];
    for (const std::string& k : settings) Add("setting:", k, 0);
    for (const std::string& k : groups_["targets[]"]) {
      if (std::find(settings.begin(), settings.end(), k) == settings.end()) Add("target:", k, 0);
    }
  }
  const Keys& keys() const { return keys_; }
  bool IsGroup(const std::string& name) const { return groups_.count(name) > 0; }
  const std::vector<std::string>& Group(const std::string& name) const { return groups_.at(name); }
  bool IsSetting(const std::string& key) const {
    const auto& s = groups_.at("defaults");
    return std::find(s.begin(), s.end(), key) != s.end();
  }

 private:
  void Add(const std::string& prefix, const std::string& key, int depth) {
    auto sub = groups_.find(key);
    if (sub == groups_.end() || depth > 4) {
      keys_.leaves.insert(prefix + key);
      return;
    }
    keys_.parents.insert(prefix + key);
    for (const std::string& k : sub->second) Add(prefix + key + ".", k, depth + 1);
  }

  std::map<std::string, std::vector<std::string>> groups_;
  Keys keys_;
};

// The place prefix for a table under `heading` ("Top-level keys",
// "TARGET SETTINGS", "heartbeat"...), or "" when the heading is not one of
// the config's maps.
std::string SectionPrefix(const CodeKeys& code, const std::string& heading) {
  const std::string h = Lower(Trim(Replace(heading, "`", "")));
  if (h == "top-level keys") return "top:";
  if (h == "targets") return "target:";
  if (h == "target settings") return "setting:";
  if (h == "global") return "global:";
  // A map nested in a target or the defaults, documented in its own table.
  if (code.IsGroup(h) && h != "defaults" && h.find('[') == std::string::npos) {
    return (code.IsSetting(h) ? "setting:" : "target:") + h + ".";
  }
  return "";
}

// Compares the keys a document names with the loader's, both ways.
void CompareKeys(const CodeKeys& code, const std::vector<std::pair<std::string, std::string>>& named,
                 const std::string& doc) {
  const Keys& k = code.keys();
  std::set<std::string> seen;
  for (const auto& [key, where] : named) {
    if (k.leaves.count(key) || k.parents.count(key)) {
      seen.insert(key);
    } else {
      ADD_FAILURE() << doc << " documents " << key << " (" << where
                    << "), which the loader does not accept (ConfigKeyGroups() in "
                       "daemon/config/loader.cc)";
    }
  }
  for (const std::string& key : k.leaves) {
    EXPECT_TRUE(seen.count(key)) << doc << " does not document " << key
                                 << ", which the loader accepts";
  }
  EXPECT_GE(seen.size(), 25u) << doc << ": too few keys found; did its layout change?";
}

TEST(DocsKeys, EverySettingIsAlsoATargetKey) {
  // docs/CONFIG.md: "These keys may appear in defaults and in any target."
  CodeKeys code;
  const auto& target = code.Group("targets[]");
  for (const std::string& k : code.Group("defaults")) {
    EXPECT_NE(std::find(target.begin(), target.end(), k), target.end()) << k;
  }
}

TEST(DocsKeys, ConfigMdMatchesTheLoader) {
  CodeKeys code;
  std::vector<std::pair<std::string, std::string>> named;
  std::string heading;
  const std::regex row(R"(^\| `([a-z_][a-z0-9_.]*)` \|)");
  const std::vector<std::string> lines = SplitLines(ReadSource("docs/CONFIG.md"));
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (!lines[i].empty() && lines[i][0] == '#') {
      heading = lines[i].substr(lines[i].find_first_not_of('#'));
    } else if (std::regex_search(lines[i], m, row)) {
      const std::string prefix = SectionPrefix(code, heading);
      const std::string where = "docs/CONFIG.md:" + std::to_string(i + 1);
      if (prefix.empty()) {
        ADD_FAILURE() << where << ": a table of keys under \"" << heading
                      << "\", which is not a map of the config (SectionPrefix in "
                         "tests/docs_test.cc)";
        continue;
      }
      named.emplace_back(prefix + m[1].str(), where);
    }
  }
  CompareKeys(code, named, "docs/CONFIG.md");
}

TEST(DocsKeys, ManPageMatchesTheLoader) {
  CodeKeys code;
  std::vector<std::pair<std::string, std::string>> named;
  std::string section;
  const std::vector<std::string> lines = SplitLines(ReadSource("packaging/man/connwatch.yaml.5.in"));
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind(".SH ", 0) == 0) {
      section = Replace(lines[i].substr(4), "\"", "");
      continue;
    }
    if (lines[i] != ".TP" || i + 1 >= lines.size()) continue;
    const std::string& item = lines[i + 1];
    if (item.rfind(".B ", 0) != 0 && item.rfind(".BR ", 0) != 0) continue;
    std::string key = Unroff(item.substr(item.find(' ') + 1));
    key = key.substr(0, key.find(' '));
    const std::string prefix = SectionPrefix(code, section);
    const std::string where = "connwatch.yaml.5.in:" + std::to_string(i + 2);
    if (prefix.empty()) {
      ADD_FAILURE() << where << ": an item \"" << key << "\" under " << section
                    << ", which is not a map of the config (SectionPrefix in tests/docs_test.cc)";
      continue;
    }
    named.emplace_back(prefix + key, where);
  }
  CompareKeys(code, named, "connwatch.yaml(5)");
}

// The property paths under a schema node ("keepalive.idle"), following $ref
// and anyOf/oneOf/allOf; a property with properties of its own is a parent.
void SchemaPaths(const nlohmann::json& root, const nlohmann::json& node, const std::string& prefix,
                 Keys* out, int depth = 0) {
  if (!node.is_object() || depth > 12) return;
  if (node.contains("$ref")) {
    const std::string ref = node["$ref"];
    SchemaPaths(root, root["definitions"][ref.substr(ref.rfind('/') + 1)], prefix, out, depth + 1);
  }
  for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
    if (!node.contains(combinator)) continue;
    for (const auto& sub : node[combinator]) SchemaPaths(root, sub, prefix, out, depth + 1);
  }
  if (!node.contains("properties")) return;
  for (const auto& [name, sub] : node["properties"].items()) {
    Keys inner;
    SchemaPaths(root, sub, "", &inner, depth + 1);
    if (inner.leaves.empty() && inner.parents.empty()) {
      out->leaves.insert(prefix + name);
    } else {
      out->parents.insert(prefix + name);
      for (const auto& k : inner.leaves) out->leaves.insert(prefix + name + "." + k);
      for (const auto& k : inner.parents) out->parents.insert(prefix + name + "." + k);
    }
  }
}

TEST(DocsKeys, SchemaMatchesTheLoader) {
  CodeKeys code;
  const nlohmann::json schema =
      nlohmann::json::parse(ReadSource("config/connwatch.schema.json"), nullptr, false);
  ASSERT_FALSE(schema.is_discarded()) << "config/connwatch.schema.json is not JSON";
  std::vector<std::pair<std::string, std::string>> named;
  auto add = [&](const std::string& prefix, const nlohmann::json& node, const std::string& where,
                 const std::set<std::string>& skip = {}) {
    Keys k;
    SchemaPaths(schema, node, "", &k);
    for (const auto& key : k.leaves) {
      if (!skip.count(key)) named.emplace_back(prefix + key, where);
    }
    for (const auto& key : k.parents) {
      if (!skip.count(key)) named.emplace_back(prefix + key, where);
    }
  };
  // The top level: its maps are compared below, by what they hold.
  for (const auto& [name, sub] : schema["properties"].items()) {
    named.emplace_back("top:" + name, "properties");
  }
  add("global:", schema["properties"]["global"], "properties.global");
  add("setting:", schema["definitions"]["defaults"], "definitions.defaults");
  // A target takes the settings and its own keys.
  Keys target;
  SchemaPaths(schema, schema["definitions"]["target"], "", &target);
  const Keys& k = code.keys();
  for (const auto& key : target.leaves) {
    named.emplace_back((k.leaves.count("setting:" + key) ? "setting:" : "target:") + key,
                       "definitions.target");
  }
  std::set<std::string> target_has(target.leaves.begin(), target.leaves.end());
  for (const auto& key : k.leaves) {
    if (key.rfind("setting:", 0) == 0) {
      EXPECT_TRUE(target_has.count(key.substr(8)))
          << "the schema's definitions.target lacks " << key.substr(8)
          << ", which a target may set";
    }
  }
  CompareKeys(code, named, "config/connwatch.schema.json");
}

TEST(DocsKeys, ExampleYamlShowsEveryKey) {
  // README.md and docs/CONFIG.md: "config/example.yaml (every key, commented)".
  CodeKeys code;
  const std::string text = ReadSource("config/example.yaml");
  for (const std::string& key : code.keys().leaves) {
    const std::string path = key.substr(key.find(':') + 1);
    // Each part of the path, in order, as a YAML key (commented out or not).
    size_t at = 0;
    bool found = true;
    std::stringstream parts(path);
    for (std::string part; std::getline(parts, part, '.');) {
      const std::regex re("(^|[\\s{,#])" + part + ":");
      std::smatch m;
      const std::string rest = text.substr(at);
      if (!std::regex_search(rest, m, re)) {
        found = false;
        break;
      }
      at += static_cast<size_t>(m.position(0) + m.length(0));
    }
    EXPECT_TRUE(found) << "config/example.yaml does not show " << path;
  }
}

// --- Numbers the docs state ---------------------------------------------------

// "a token bucket holding N ms worth of attempts", in docs/CONFIG.md and
// connwatch.yaml(5), is the bucket the code builds at the default rate.
TEST(DocsClaims, TokenBucketSizeIsTheCodes) {
  struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
  ASSERT_NE(loop, nullptr);
  double ms = 0;
  {
    Admission admission(loop);
    admission.Configure(GlobalConfig{});
    ms = admission.bucket_seconds() * 1000;
  }
  ev_loop_destroy(loop);
  const std::regex stated(R"(token\s+bucket\s+holding\s+([0-9.]+)\s+ms\s+worth)");
  for (const char* doc : {"docs/CONFIG.md", "packaging/man/connwatch.yaml.5.in"}) {
    std::string text = Unroff(ReadSource(doc));
    std::smatch m;
    ASSERT_TRUE(std::regex_search(text, m, stated)) << doc << " no longer states the bucket size";
    EXPECT_DOUBLE_EQ(std::stod(m[1]), ms) << doc << " says " << m[1] << " ms; the code holds " << ms;
  }
}

// docs/CONFIG.md and connwatch.yaml(5): "A file without targets ... is
// valid ... An empty file (0 bytes), main or included, is refused".
TEST(DocsClaims, EmptyFilesAreRefusedAndFilesWithoutTargetsAccepted) {
  for (const char* doc : {"docs/CONFIG.md", "packaging/man/connwatch.yaml.5.in"}) {
    std::string text = Unroff(ReadSource(doc));
    std::string flat;
    for (char c : text) {
      if (c == '\n') c = ' ';
      if (!(c == ' ' && !flat.empty() && flat.back() == ' ')) flat += c;
    }
    flat = Replace(Replace(flat, " .RB ", " "), " .B ", " ");
    EXPECT_NE(flat.find("An empty file (0 bytes), main or included, is refused"), std::string::npos)
        << doc << " no longer says that empty files are refused";
  }
  TempDir dir;
  const std::string empty = dir.Write("empty.yaml", "");
  const std::string includes = dir.Write("includes.yaml", "include: [empty.yaml]\n");
  for (const std::string& path : {empty, includes}) {
    ConfigLoadResult r = LoadConfigFile(path);
    ASSERT_EQ(r.errors.size(), 1u) << path;
    EXPECT_EQ(r.errors[0].ToString(),
              empty + ": the file is empty (being rewritten?); write \"targets: []\" to watch nothing");
  }
  for (const char* text : {"targets: []\n", "targets:\n#  - address: 192.0.2.1:80\n", "# nothing yet\n"}) {
    ConfigLoadResult r = LoadConfigFile(dir.Write("none.yaml", text));
    EXPECT_TRUE(r.errors.empty()) << text << ": " << r.errors[0].ToString();
    EXPECT_TRUE(r.config && r.config->targets.empty()) << text;
  }
}

// The reason words a doc lists after `head` ("Connect failures:"), up to the
// first "." outside parentheses; words in parentheses are comments.
std::set<std::string> ListedReasons(const std::string& flat, const std::string& head) {
  std::set<std::string> words;
  const size_t start = flat.find(head);
  if (start == std::string::npos) return words;
  int depth = 0;
  std::string word;
  for (size_t i = start + head.size(); i < flat.size(); ++i) {
    const char c = flat[i];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && ((c >= 'a' && c <= 'z') || c == '_')) {
      word += c;
      continue;
    }
    if (!word.empty() && word != "and") words.insert(word);
    word.clear();
    if (depth == 0 && c == '.') break;
  }
  return words;
}

// connwatchctl(1)'s EXIT STATUS lists exactly the statuses ctl/exit_codes.h
// defines, and README.md's connwatchctl section gives status's three.
TEST(DocsClaims, ConnwatchctlExitStatusesAreTheCodes) {
  const std::string page = ReadSource("packaging/man/connwatchctl.1.in");
  const size_t from = page.find(".SH EXIT STATUS"), to = page.find(".SH", from + 1);
  ASSERT_NE(from, std::string::npos);
  std::set<int> documented;
  const std::regex item(R"(\.TP\n\.B (\d+)\n)");
  const std::string section = page.substr(from, to - from);
  for (std::sregex_iterator it(section.begin(), section.end(), item), end; it != end; ++it) {
    documented.insert(std::stoi((*it)[1]));
  }
  EXPECT_EQ(documented, (std::set<int>{ctl::kExitOk, ctl::kExitFailed, ctl::kExitDown,
                                       ctl::kExitUnknown, ctl::kExitUsage}));
  const std::string readme = ReadSource("README.md");
  EXPECT_NE(readme.find("exit " + std::to_string(ctl::kExitOk) + " all up, " +
                        std::to_string(ctl::kExitDown) + " one is not, " +
                        std::to_string(ctl::kExitUnknown) + " no answer"),
            std::string::npos);
}

// README.md, docs/METRICS.md and connwatchd(8) list the reasons of connect
// failures and of disconnects: exactly the code's (core/reason.h).
TEST(DocsClaims, ReasonListsAreTheCodes) {
  std::set<std::string> connect, disconnect;
  for (size_t i = 0; i < kReasonCount; ++i) {
    const Reason r = static_cast<Reason>(i);
    if (IsConnectFailureReason(r)) connect.insert(std::string(ReasonName(r)));
    if (IsDisconnectReason(r)) disconnect.insert(std::string(ReasonName(r)));
  }
  for (const char* doc : {"README.md", "docs/METRICS.md", "packaging/man/connwatchd.8.in"}) {
    std::string flat;
    for (const std::string& line : SplitLines(Unroff(ReadSource(doc)))) {
      std::string l = line;
      for (const char* request : {".BR ", ".B "}) {
        if (l.rfind(request, 0) == 0) l = l.substr(std::string(request).size());
      }
      flat += Replace(l, "`", "") + " ";
    }
    EXPECT_EQ(ListedReasons(flat, "Connect failures:"), connect)
        << doc << ": the connect failure reasons it lists are not the code's";
    EXPECT_EQ(ListedReasons(flat, "Disconnects:"), disconnect)
        << doc << ": the disconnect reasons it lists are not the code's";
  }
}

// --- Examples -------------------------------------------------------------------

struct Example {
  std::string where;  // file:line of the block
  std::string kind;
  std::string text;
  std::string expected;  // bad-config: the output shown after it
};

const std::set<std::string> kMarkdownKinds = {"config", "bad-config", "web-config",
                                              "prometheus-config", "prometheus-rules"};
const std::set<std::string> kManKinds = {"config", "bad-config", "output", "shell", "text"};

std::vector<Example> MarkdownExamples(const std::string& relative) {
  std::vector<Example> out;
  const std::vector<std::string> lines = SplitLines(ReadSource(relative));
  const std::regex marker(R"(^\s*<!-- doc-test: ([a-z-]+) -->\s*$)");
  std::string pending;  // a marker waiting for its fence
  bool want_output = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (std::regex_match(lines[i], m, marker)) {
      pending = m[1];
      EXPECT_TRUE(kMarkdownKinds.count(pending))
          << relative << ":" << i + 1 << ": unknown doc-test kind \"" << pending << "\"";
      continue;
    }
    const std::string line = lines[i].substr(std::min(lines[i].find_first_not_of(' '), lines[i].size()));
    if (line.rfind("```", 0) != 0) {
      if (!Trim(lines[i]).empty()) {
        EXPECT_TRUE(pending.empty()) << relative << ":" << i + 1
                                     << ": a doc-test marker not followed by a code block";
        pending.clear();
      }
      continue;
    }
    const std::string lang = Trim(line.substr(3));
    const size_t indent = lines[i].size() - line.size();  // a block in a list item
    Example e{relative + ":" + std::to_string(i + 1), pending, "", ""};
    size_t j = i + 1;
    for (; j < lines.size() && Trim(lines[j]).rfind("```", 0) != 0; ++j) {
      e.text += (lines[j].size() >= indent ? lines[j].substr(indent) : Trim(lines[j])) + "\n";
    }
    i = j;
    if (want_output) {
      out.back().expected = e.text;
      want_output = false;
      pending.clear();
      continue;
    }
    if (lang == "yaml") {
      if (e.kind.empty()) e.kind = "config";
      want_output = e.kind == "bad-config";
      out.push_back(e);
    } else {
      EXPECT_TRUE(pending.empty()) << e.where << ": a doc-test marker on a " << lang
                                   << " block (only yaml blocks are run)";
    }
    pending.clear();
  }
  EXPECT_FALSE(want_output) << relative << ": a bad-config example without its output after it";
  return out;
}

std::vector<Example> ManExamples(const std::string& relative) {
  std::vector<Example> out;
  const std::vector<std::string> lines = SplitLines(ReadSource(relative));
  const std::regex marker(R"(^\.\\" doc-test: ([a-z-]+)\s*$)");
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] != ".nf") continue;
    std::smatch m;
    std::string kind;
    if (i > 0 && std::regex_match(lines[i - 1], m, marker)) kind = m[1];
    EXPECT_TRUE(kManKinds.count(kind))
        << relative << ":" << i + 1 << ": a .nf block without a known .\\\" doc-test: marker "
        << "before it (config, bad-config, output, shell or text)";
    Example e{relative + ":" + std::to_string(i + 1), kind, "", ""};
    size_t j = i + 1;
    for (; j < lines.size() && lines[j] != ".fi"; ++j) {
      if (lines[j] == ".RS" || lines[j] == ".RE") continue;
      e.text += Unroff(lines[j]) + "\n";
    }
    i = j;
    if (kind == "output") {
      if (!out.empty() && out.back().kind == "bad-config" && out.back().expected.empty()) {
        out.back().expected = e.text;
      } else {
        ADD_FAILURE() << e.where << ": an output block that follows no bad-config block";
      }
      continue;
    }
    if (kind == "config" || kind == "bad-config") out.push_back(e);
  }
  return out;
}

// Uncomments the YAML that config/example.yaml shows commented out: a line
// "# key: ..." whose key the loader knows, and the deeper commented lines that
// follow it.
std::string Uncomment(const std::string& text) {
  std::set<std::string> names;
  for (const ConfigKeyGroup& g : ConfigKeyGroups()) {
    for (std::string_view k : g.keys) names.insert(std::string(k));
  }
  const std::regex key_line(R"(^(\s*)# ([a-z_]+):( .*)?$)");
  const std::regex deeper(R"(^(\s*)# (\s+\S.*)$)");
  std::string out;
  std::string block;  // the indentation of the uncommented key, while inside its block
  bool in_block = false;
  for (const std::string& line : SplitLines(text)) {
    std::smatch m;
    if (std::regex_match(line, m, key_line) && names.count(m[2])) {
      out += m[1].str() + m[2].str() + ":" + m[3].str() + "\n";
      block = m[1];
      in_block = true;
    } else if (in_block && std::regex_match(line, m, deeper) && m[1] == block) {
      out += m[1].str() + m[2].str() + "\n";
    } else {
      out += line + "\n";
      in_block = false;
    }
  }
  return out;
}

struct CheckRun {
  RunResult result;
  std::string output;  // with the scratch directory written as /etc/connwatch/
};

// Runs `connwatchd --check-config` on `yaml` as /etc/connwatch/connwatch.yaml
// of a scratch directory (with `web`, when given, as /etc/connwatch/web.yml).
CheckRun Check(const std::string& yaml, const std::string& web = "") {
  TempDir dir;
  const std::string etc = dir.path() + "/etc/connwatch/";
  std::filesystem::create_directories(etc + "targets.d");
  const std::string config = dir.Write("etc/connwatch/connwatch.yaml",
                                       Replace(yaml, "/etc/connwatch/", etc));
  std::vector<std::string> argv = {CONNWATCHD_BINARY, "--check-config", "--config.file=" + config};
  if (!web.empty()) {
    RunResult cert = RunProgram(
        {"/bin/sh", "-c",
         "cd " + etc +
             " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-days 2 -subj /CN=localhost -keyout tls.key -out tls.crt 2>&1"},
        milliseconds(20000));
    EXPECT_EQ(cert.status, 0) << "openssl (run scripts/setup.sh): " << cert.output;
    argv.push_back("--web.config.file=" +
                   dir.Write("etc/connwatch/web.yml", Replace(web, "/etc/connwatch/", etc)));
  }
  CheckRun run;
  run.result = RunProgram(argv, milliseconds(20000));
  run.output = Replace(run.result.output, etc, "/etc/connwatch/");
  return run;
}

void RunExample(const Example& e) {
  SCOPED_TRACE(e.where + " (" + e.kind + ")");
  if (e.kind == "config") {
    CheckRun run = Check(e.text);
    EXPECT_EQ(run.result.status, 0) << e.where << ": the example fails --check-config:\n"
                                    << run.output << "\nexample:\n"
                                    << e.text;
    EXPECT_NE(run.output.find(": OK, "), std::string::npos) << run.output;
  } else if (e.kind == "bad-config") {
    CheckRun run = Check(e.text);
    EXPECT_EQ(run.result.status, 1) << e.where << ": the bad example passes --check-config";
    EXPECT_EQ(Trim(run.output), Trim(e.expected))
        << e.where << ": --check-config prints something else than the documented output";
  } else if (e.kind == "web-config") {
    CheckRun run = Check("targets: []\n", e.text);
    EXPECT_EQ(run.result.status, 0) << e.where << ": the web config example fails:\n"
                                    << run.output;
    // `user: $2y$... # bcrypt of "password"`: the hash is that password's.
    const std::regex user(R"re(^\s+([A-Za-z0-9_.-]+): (\$2[aby]\$\S+)\s+# bcrypt of "([^"]*)")re");
    for (const std::string& line : SplitLines(e.text)) {
      std::smatch m;
      if (!std::regex_search(line, m, user)) continue;
      BasicAuthenticator auth({{m[1], m[2]}});
      EXPECT_TRUE(auth.Check("Basic " + testing::Base64Encode(m[1].str() + ":" + m[3].str())))
          << e.where << ": the hash of " << m[1] << " is not the bcrypt of \"" << m[3] << "\"";
    }
  }
}

std::vector<Example> AllExamples() {
  std::vector<Example> all;
  std::vector<std::string> docs = {"README.md"};
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir + "/docs")) {
    if (entry.path().extension() == ".md") docs.push_back("docs/" + entry.path().filename().string());
  }
  std::sort(docs.begin(), docs.end());
  for (const std::string& doc : docs) {
    for (Example& e : MarkdownExamples(doc)) all.push_back(std::move(e));
  }
  for (const char* page : {"packaging/man/connwatch.yaml.5.in", "packaging/man/connwatchd.8.in",
                           "packaging/man/connwatchctl.1.in"}) {
    for (Example& e : ManExamples(page)) all.push_back(std::move(e));
  }
  return all;
}

TEST(DocsExamples, EveryYamlExampleChecksAsDocumented) {
  std::vector<Example> all = AllExamples();
  std::map<std::string, int> kinds;
  for (const Example& e : all) {
    ++kinds[e.kind];
    RunExample(e);
  }
  EXPECT_GE(kinds["config"], 6) << "too few config examples found";
  EXPECT_GE(kinds["bad-config"], 3) << "too few bad-config examples found";
  EXPECT_GE(kinds["web-config"], 1) << "no web-config example found";
}

TEST(DocsExamples, ExampleYamlChecksAsIsAndUncommented) {
  const std::string text = ReadSource("config/example.yaml");
  CheckRun as_is = Check(text);
  EXPECT_EQ(as_is.result.status, 0) << as_is.output;
  const std::string uncommented = Uncomment(text);
  EXPECT_NE(uncommented, text) << "nothing was uncommented in config/example.yaml";
  CheckRun run = Check(uncommented);
  EXPECT_EQ(run.result.status, 0) << "config/example.yaml with its commented keys uncommented:\n"
                                  << run.output << "\n"
                                  << uncommented;
}

}  // namespace
}  // namespace connwatch
