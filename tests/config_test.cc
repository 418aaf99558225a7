#include "config/loader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace connwatch {
namespace {

namespace fs = std::filesystem;

const std::string kSourceDir = CONNWATCH_SOURCE_DIR;

std::string SourcePath(const std::string& relative) { return kSourceDir + "/" + relative; }

// Error lines with the source directory removed, so that they read the same
// wherever the tree is checked out: "tests/configs/bad/x.yaml:3:5: ...".
std::vector<std::string> ErrorLines(const ConfigLoadResult& result) {
  const std::string prefix = kSourceDir + "/";
  std::vector<std::string> lines;
  for (const ConfigError& e : result.errors) {
    std::string line = e.ToString();
    for (size_t at = line.find(prefix); at != std::string::npos; at = line.find(prefix, at)) {
      line.erase(at, prefix.size());
    }
    lines.push_back(line);
  }
  return lines;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

std::string Dump(const ConfigLoadResult& result) { return JoinLines(ErrorLines(result)); }

const TargetConfig& Find(const Config& config, const std::string& name) {
  for (const auto& target : config.targets) {
    if (target->name == name) return *target;
  }
  ADD_FAILURE() << "no target named " << name;
  static const TargetConfig kMissing;
  return kMissing;
}

std::vector<std::string> Names(const Config& config) {
  std::vector<std::string> names;
  for (const auto& target : config.targets) names.push_back(target->name);
  return names;
}

// ---------------------------------------------------------------------------

TEST(ConfigError, ToStringDropsEmptyParts) {
  ConfigError e;
  e.file = "c.yaml";
  e.line = 3;
  e.column = 5;
  e.path = "targets[0].address";
  e.message = "bad";
  EXPECT_EQ(e.ToString(), "c.yaml:3:5: targets[0].address: bad");
  e.path.clear();
  EXPECT_EQ(e.ToString(), "c.yaml:3:5: bad");
  e.column = 0;
  EXPECT_EQ(e.ToString(), "c.yaml:3: bad");
  e.line = 0;
  EXPECT_EQ(e.ToString(), "c.yaml: bad");
  e.file.clear();
  EXPECT_EQ(e.ToString(), "bad");
  e.path = "include[1]";
  EXPECT_EQ(e.ToString(), "include[1]: bad");
}

TEST(ConfigAddressFamily, Names) {
  EXPECT_EQ(AddressFamilyName(AddressFamily::kAny), "any");
  EXPECT_EQ(AddressFamilyName(AddressFamily::kIp4), "ip4");
  EXPECT_EQ(AddressFamilyName(AddressFamily::kIp6), "ip6");
}

// ---------------------------------------------------------------------------
// Valid configs.

TEST(ConfigLoad, FullExampleWithEveryKey) {
  const std::string path = SourcePath("tests/configs/good/full.yaml");
  ConfigLoadResult result = LoadConfigFile(path);
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_TRUE(result.errors.empty());
  const Config& config = *result.config;
  EXPECT_EQ(config.files, std::vector<std::string>{path});
  ASSERT_EQ(Names(config),
            (std::vector<std::string>{"redis-main", "web-v6", "partial", "192.0.2.21:80"}));

  // Everything from defaults.
  const TargetConfig& redis = Find(config, "redis-main");
  EXPECT_EQ(redis.address, "redis.example.org:6379");
  EXPECT_EQ(redis.host, "redis.example.org");
  EXPECT_EQ(redis.port, 6379);
  EXPECT_EQ(redis.labels, (std::vector<std::pair<std::string, std::string>>{{"service", "redis"},
                                                                            {"team", "storage"}}));
  EXPECT_EQ(redis.connect_timeout, Millis(3000));
  EXPECT_EQ(redis.check_interval, Millis(2000));
  EXPECT_EQ(redis.keepalive, (KeepaliveConfig{Millis(20000), Millis(4000), 5}));
  EXPECT_EQ(redis.user_timeout, Millis(45000));
  EXPECT_EQ(redis.backoff, (BackoffConfig{Millis(250), Millis(60000)}));
  EXPECT_EQ(redis.address_family, AddressFamily::kIp4);
  EXPECT_EQ(redis.source_address, "192.0.2.10");
  EXPECT_EQ(redis.startup_jitter, Millis(2000));
  ASSERT_TRUE(redis.heartbeat);
  EXPECT_EQ(*redis.heartbeat,
            (HeartbeatConfig{"PING\r\n", "^\\+PONG", Millis(15000), Millis(3000), 2}));

  // Everything overridden.
  const TargetConfig& web = Find(config, "web-v6");
  EXPECT_EQ(web.address, "[2001:db8::1]:443");
  EXPECT_EQ(web.host, "2001:db8::1");
  EXPECT_EQ(web.port, 443);
  EXPECT_EQ(web.connect_timeout, Millis(500));
  EXPECT_EQ(web.check_interval, Millis(60000));
  EXPECT_EQ(web.keepalive, (KeepaliveConfig{Millis(30000), Millis(10000), 9}));
  EXPECT_EQ(web.user_timeout, Millis(120000));
  EXPECT_EQ(web.backoff, (BackoffConfig{Millis(1000), Millis(10000)}));
  EXPECT_EQ(web.address_family, AddressFamily::kIp6);
  EXPECT_EQ(web.source_address, "2001:db8::10");
  EXPECT_EQ(web.startup_jitter, Millis(0));
  ASSERT_TRUE(web.heartbeat);
  EXPECT_EQ(*web.heartbeat, (HeartbeatConfig{"HEAD / HTTP/1.0\r\n\r\n", "^HTTP/1\\.[01] ",
                                             Millis(30000), Millis(5000), 3}));

  // One key of each group overridden; the others inherited key by key.
  const TargetConfig& partial = Find(config, "partial");
  EXPECT_EQ(partial.keepalive, (KeepaliveConfig{Millis(20000), Millis(4000), 2}));
  EXPECT_EQ(partial.backoff, (BackoffConfig{Millis(250), Millis(300000)}));
  ASSERT_TRUE(partial.heartbeat);
  EXPECT_EQ(*partial.heartbeat,
            (HeartbeatConfig{"PING\r\n", "PONG", Millis(15000), Millis(3000), 2}));
  EXPECT_TRUE(partial.labels.empty());

  // Heartbeat off, source address back to the kernel's choice.
  const TargetConfig& plain = Find(config, "192.0.2.21:80");
  EXPECT_EQ(plain.address, "192.0.2.21:80");
  EXPECT_FALSE(plain.heartbeat);
  EXPECT_EQ(plain.source_address, "");
  EXPECT_EQ(plain.address_family, AddressFamily::kAny);
}

TEST(ConfigLoad, BuiltInDefaultsAndDerivedUserTimeout) {
  ConfigLoadResult result = LoadConfigFile(SourcePath("tests/configs/good/defaults-derived.yaml"));
  ASSERT_TRUE(result.config) << Dump(result);
  const Config& config = *result.config;
  ASSERT_EQ(config.targets.size(), 5u);

  const TargetConfig& first = *config.targets[0];
  const TargetConfig builtin;
  EXPECT_EQ(first.connect_timeout, builtin.connect_timeout);
  EXPECT_EQ(first.check_interval, builtin.check_interval);
  EXPECT_EQ(first.backoff, builtin.backoff);
  EXPECT_EQ(first.startup_jitter, builtin.startup_jitter);
  EXPECT_EQ(first.address_family, AddressFamily::kAny);
  EXPECT_FALSE(first.heartbeat);
  // idle 10s + interval 2s * count 3 (built in).
  EXPECT_EQ(first.keepalive, (KeepaliveConfig{Millis(10000), Millis(2000), 3}));
  EXPECT_EQ(first.user_timeout, Millis(16000));
  // The target's own count changes the derived value.
  EXPECT_EQ(config.targets[1]->user_timeout, Millis(10000 + 2000 * 4));
  // Capped at what TCP_USER_TIMEOUT holds (32767 + 32767 * 127 s does not fit).
  EXPECT_EQ(config.targets[2]->user_timeout, Millis(2147483647));

  const TargetConfig& v6 = *config.targets[3];
  EXPECT_EQ(v6.name, "[::1]:80");
  EXPECT_EQ(v6.address, "[::1]:80");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 80);

  // The name stands in for a missing address.
  const TargetConfig& named = *config.targets[4];
  EXPECT_EQ(named.name, "db.example.org:5432");
  EXPECT_EQ(named.address, "db.example.org:5432");
  EXPECT_EQ(named.host, "db.example.org");
  EXPECT_EQ(named.port, 5432);
}

TEST(ConfigLoad, IncludesAreRelativeToTheIncludingFile) {
  const std::string dir = SourcePath("tests/configs/good/includes");
  // Load from another working directory: the globs must not depend on it.
  const fs::path cwd = fs::current_path();
  fs::current_path("/");
  ConfigLoadResult result = LoadConfigFile(dir + "/main.yaml");
  fs::current_path(cwd);
  ASSERT_TRUE(result.config) << Dump(result);
  const Config& config = *result.config;
  // The main file's targets, then each include in order, each glob sorted.
  EXPECT_EQ(Names(config),
            (std::vector<std::string>{"main-1", "db-1", "db-2", "web-1", "extra-1"}));
  EXPECT_EQ(config.files,
            (std::vector<std::string>{dir + "/main.yaml", dir + "/targets.d/10-db.yaml",
                                      dir + "/targets.d/20-web.yaml",
                                      dir + "/targets.d/30-empty.yaml", dir + "/extra.yaml"}));
  // Included targets inherit the main file's defaults and may override them.
  EXPECT_EQ(Find(config, "db-1").connect_timeout, Millis(2000));
  EXPECT_EQ(Find(config, "web-1").connect_timeout, Millis(1000));
}

TEST(ConfigLoad, StringWithBaseDirResolvesIncludes) {
  const std::string dir = SourcePath("tests/configs/good/includes");
  ConfigLoadResult result =
      LoadConfigString("include: [targets.d/1*.yaml, empty.d/*.yaml]\n", "<inline>", dir);
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(Names(*result.config), (std::vector<std::string>{"db-1", "db-2"}));
  // Only files actually read are listed; a string has none of its own.
  EXPECT_EQ(result.config->files, std::vector<std::string>{dir + "/targets.d/10-db.yaml"});
}

TEST(ConfigLoad, EmptyConfigsAreValid) {
  for (const char* text : {"", "\n", "# nothing yet\n", "targets: []\n", "targets:\n",
                           "defaults: {connect_timeout: 1s}\n", "{}\n", "---\n", "~\n",
                           "include: []\ntargets: []\n"}) {
    ConfigLoadResult result = LoadConfigString(text, "empty.yaml", "");
    ASSERT_TRUE(result.config) << "\"" << text << "\"\n" << Dump(result);
    EXPECT_TRUE(result.config->targets.empty());
    EXPECT_TRUE(result.errors.empty());
  }
}

TEST(ConfigLoad, IncludeGlobMatchingNothingIsFine) {
  ConfigLoadResult result = LoadConfigString(
      "include: [\"nothing-here.d/*.yaml\", \"*.no-such-extension\"]\ntargets: []\n", "c.yaml",
      SourcePath("tests/configs/good/includes"));
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_TRUE(result.config->targets.empty());
  EXPECT_TRUE(result.config->files.empty());
}

TEST(ConfigLoad, GlobCharactersInTheDirectoryAreLiteral) {
  const fs::path dir = fs::temp_directory_path() / ("connwatch[1]*-" + std::to_string(getpid()));
  fs::create_directories(dir / "targets.d");
  std::ofstream(dir / "main.yaml") << "include: [\"targets.d/*.yaml\"]\n";
  std::ofstream(dir / "targets.d" / "a.yaml") << "targets: [{address: \"192.0.2.1:80\"}]\n";
  ConfigLoadResult result = LoadConfigFile((dir / "main.yaml").string());
  fs::remove_all(dir);
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(Names(*result.config), std::vector<std::string>{"192.0.2.1:80"});
}

TEST(ConfigLoad, AddressForms) {
  ConfigLoadResult result = LoadConfigString(R"(
targets:
  - address: "[::1]:80"
  - address: "[fe80::1%eth0]:22"
  - address: 192.0.2.1:1
  - address: db.example.org:65535
  - address: under_score.example.org:8080
  - name: named
    address: "[2001:db8::a]:5432"
)",
                                             "c.yaml", "");
  ASSERT_TRUE(result.config) << Dump(result);
  const auto& t = result.config->targets;
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[0]->host, "::1");
  EXPECT_EQ(t[0]->port, 80);
  EXPECT_EQ(t[1]->host, "fe80::1%eth0");
  EXPECT_EQ(t[1]->port, 22);
  EXPECT_EQ(t[2]->host, "192.0.2.1");
  EXPECT_EQ(t[2]->port, 1);
  EXPECT_EQ(t[3]->host, "db.example.org");
  EXPECT_EQ(t[3]->port, 65535);
  EXPECT_EQ(t[4]->host, "under_score.example.org");
  EXPECT_EQ(t[5]->name, "named");
  EXPECT_EQ(t[5]->address, "[2001:db8::a]:5432");
  EXPECT_EQ(t[5]->host, "2001:db8::a");
}

TEST(ConfigLoad, LabelsAreSortedAndScalarsKeepTheirText) {
  ConfigLoadResult result = LoadConfigString(R"(
targets:
  - address: 192.0.2.1:80
    labels: {zeta: z, alpha: "a b", _mid: 1, port: 06379, on: yes, quoted: "null"}
)",
                                             "c.yaml", "");
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(result.config->targets[0]->labels,
            (std::vector<std::pair<std::string, std::string>>{{"_mid", "1"},
                                                              {"alpha", "a b"},
                                                              {"on", "yes"},
                                                              {"port", "06379"},
                                                              {"quoted", "null"},
                                                              {"zeta", "z"}}));
}

TEST(ConfigLoad, SameFileLoadsEqualTargets) {
  // Reload keeps the connection of equal targets: loading twice must compare equal.
  const std::string path = SourcePath("tests/configs/good/full.yaml");
  ConfigLoadResult a = LoadConfigFile(path);
  ConfigLoadResult b = LoadConfigFile(path);
  ASSERT_TRUE(a.config && b.config);
  ASSERT_EQ(a.config->targets.size(), b.config->targets.size());
  for (size_t i = 0; i < a.config->targets.size(); ++i) {
    EXPECT_EQ(*a.config->targets[i], *b.config->targets[i]) << i;
  }
}

TEST(ConfigLoad, ShippedExampleIsValid) {
  ConfigLoadResult result = LoadConfigFile(SourcePath("config/example.yaml"));
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_GE(result.config->targets.size(), 3u);
  // Only documentation addresses (RFC 5737, RFC 3849, example.org).
  for (const auto& target : result.config->targets) {
    const std::string& host = target->srv.empty() ? target->host : target->srv;
    bool documentation = host.rfind("192.0.2.", 0) == 0 || host.rfind("198.51.100.", 0) == 0 ||
                         host.rfind("203.0.113.", 0) == 0 || host.rfind("2001:db8:", 0) == 0 ||
                         (host.size() >= 11 && host.substr(host.size() - 11) == "example.org");
    EXPECT_TRUE(documentation) << host;
  }
}

// ---------------------------------------------------------------------------
// Errors.

TEST(ConfigLoad, MissingFile) {
  ConfigLoadResult result = LoadConfigFile("/nonexistent/connwatch.yaml");
  EXPECT_FALSE(result.config);
  EXPECT_EQ(ErrorLines(result),
            std::vector<std::string>{"/nonexistent/connwatch.yaml: cannot read config file: No "
                                     "such file or directory"});
}

TEST(ConfigLoad, DirectoryInsteadOfFile) {
  ConfigLoadResult result = LoadConfigFile("/");
  EXPECT_EQ(ErrorLines(result),
            std::vector<std::string>{"/: cannot read config file: is a directory"});
}

TEST(ConfigLoad, ErrorsMeanNoConfig) {
  // One bad target among good ones: nothing is returned, so a reload changes nothing.
  ConfigLoadResult result = LoadConfigString(
      "targets:\n  - address: 192.0.2.1:80\n  - address: 192.0.2.2:0\n", "c.yaml", "");
  EXPECT_FALSE(result.config);
  EXPECT_EQ(ErrorLines(result),
            std::vector<std::string>{"c.yaml:3:14: targets[1].address: invalid address "
                                     "\"192.0.2.2:0\": port 0 is out of range 1..65535"});
}

TEST(ConfigLoad, UnreadableIncludeDirectoryIsReported) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads any directory";
  const fs::path dir =
      fs::temp_directory_path() / ("connwatch-config-test-" + std::to_string(getpid()));
  fs::create_directories(dir / "locked.d");
  chmod((dir / "locked.d").c_str(), 0);
  ConfigLoadResult result =
      LoadConfigString("include: [\"locked.d/*.yaml\"]\n", "c.yaml", dir.string());
  chmod((dir / "locked.d").c_str(), 0700);
  fs::remove_all(dir);
  EXPECT_EQ(ErrorLines(result),
            std::vector<std::string>{"c.yaml:1:11: include[0]: cannot expand \"" + dir.string() +
                                     "/locked.d/*.yaml\": cannot read directory \"" + dir.string() +
                                     "/locked.d\": Permission denied"});
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define CONNWATCH_SMALL_STACK_TEST 1
// Runs `fn` on a thread with a small stack: a parser that recursed once per
// nesting level would overflow it on the documents below.
void RunWithSmallStack(void (*fn)()) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t thread;
  ASSERT_EQ(pthread_create(
                &thread, &attr,
                [](void* arg) -> void* {
                  reinterpret_cast<void (*)()>(arg)();
                  return nullptr;
                },
                reinterpret_cast<void*>(fn)),
            0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}
#endif

TEST(ConfigLoad, DeepNestingIsAnErrorNotACrash) {
  static const std::vector<std::pair<std::string, std::string>> cases = {
      {std::string(10000, '[') + std::string(10000, ']'),
       "deep.yaml:1:65: nested more than 64 levels deep; a connwatch config needs four"
       "; nothing else in this file is checked until it parses, so more errors may be hidden"},
      {std::string(10000, '['),
       "deep.yaml:1:33: nested more than 64 levels deep; a connwatch config needs four"
       "; nothing else in this file is checked until it parses, so more errors may be hidden"},
      {[] {
         std::string s;
         for (int i = 0; i < 10000; ++i) s += "{a: ";
         return s;
       }(),
       "deep.yaml:1:253: nested more than 64 levels deep; a connwatch config needs four"
       "; nothing else in this file is checked until it parses, so more errors may be hidden"},
      {[] {
         std::string s;
         for (int i = 0; i < 10000; ++i) s += "- ";
         return s + "x\n";
       }(),
       "deep.yaml:1:129: nested more than 64 levels deep; a connwatch config needs four"
       "; nothing else in this file is checked until it parses, so more errors may be hidden"},
      {[] {
         std::string s;
         for (int i = 0; i < 100; ++i) s += std::string(i, ' ') + "a:\n";
         return s;
       }(),
       "deep.yaml:65:65: nested more than 64 levels deep; a connwatch config needs four"
       "; nothing else in this file is checked until it parses, so more errors may be hidden"},
  };
  // 64 levels are still parsed (and then refused by the schema, not the parser).
  ConfigLoadResult ok = LoadConfigString(std::string(64, '[') + std::string(64, ']'), "d.yaml", "");
  EXPECT_EQ(ErrorLines(ok), std::vector<std::string>{
                                "d.yaml:1:1: the top level must be a map (with \"targets\", and "
                                "optionally \"global\", \"defaults\" and \"include\"), got a list"});
  for (const auto& [text, expected] : cases) {
    ConfigLoadResult result = LoadConfigString(text, "deep.yaml", "");
    EXPECT_EQ(ErrorLines(result), std::vector<std::string>{expected});
  }
#ifdef CONNWATCH_SMALL_STACK_TEST
  // Sanitizers need far bigger frames, so only plain builds run this part.
  // yaml-cpp alone recurses up to 500 levels, more than this stack holds.
  RunWithSmallStack([] {
    for (const auto& [text, expected] : cases) {
      ConfigLoadResult result = LoadConfigString(text, "deep.yaml", "");
      EXPECT_EQ(result.errors.size(), 1u);
    }
  });
#endif
}

TEST(ConfigLoad, GarbageNeverCrashes) {
  std::ifstream in(SourcePath("tests/configs/good/full.yaml"), std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string base = buffer.str();
  ASSERT_FALSE(base.empty());
  const std::string specials = "[]{}:-,#&*!|>'\"%@`?\n\t \\\x80\xff\x01";
  std::mt19937 rng(20240601);
  int loaded = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % (text.size() + 1);
      switch (rng() % 4) {
        case 0:
          text.insert(at, 1, specials[rng() % specials.size()]);
          break;
        case 1:
          if (at < text.size()) text.erase(at, 1 + rng() % 16);
          break;
        case 2:
          if (at < text.size()) text[at] = static_cast<char>(rng() % 256);
          break;
        case 3:
          text.resize(at);
          break;
      }
    }
    ConfigLoadResult result = LoadConfigString(text, "fuzz.yaml", "");
    // Exactly one of the two, and every error says something.
    ASSERT_NE(result.config.has_value(), !result.errors.empty()) << text;
    for (const ConfigError& e : result.errors) ASSERT_FALSE(e.message.empty()) << text;
    loaded += result.config.has_value();
  }
  // Most mutations break something; a few land in comments and still load.
  EXPECT_GT(loaded, 0);
  EXPECT_LT(loaded, 3000);
}

TEST(ConfigLoad, HundredThousandTargetsLoadQuickly) {
  std::string text =
      "defaults:\n  heartbeat: {send: \"PING\\r\\n\", expect: \"^\\\\+PONG\"}\ntargets:\n";
  constexpr int kTargets = 100000;
  for (int i = 0; i < kTargets; ++i) {
    const std::string n = std::to_string(i);
    text += "  - name: t" + n + "\n    address: host" + n +
            ".example.org:" + std::to_string(1 + i % 65535) +
            "\n    labels: {service: redis, shard: \"" + n + "\"}\n";
  }
  // A duplicate at the very end must still point back at the first.
  text += "  - name: t0\n    address: 192.0.2.1:80\n";
  const auto start = std::chrono::steady_clock::now();
  ConfigLoadResult result = LoadConfigString(text, "big.yaml", "");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ErrorLines(result),
            std::vector<std::string>{"big.yaml:300004:11: targets[100000].name: duplicate "
                                     "target name \"t0\" (first defined at 4:11)"});
  // About 2 s on one core; a quadratic step would take minutes.
  EXPECT_LT(seconds, 30.0);

  text.resize(text.rfind("  - name: t0\n"));
  result = LoadConfigString(text, "big.yaml", "");
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(result.config->targets.size(), static_cast<size_t>(kTargets));
  EXPECT_EQ(result.config->targets.back()->name, "t99999");
}

// ---------------------------------------------------------------------------
// Aliases: a document may expand to max(1,000,000, 16 x its written nodes).

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// `targets: [*m, *m, ...]`, `count` aliases of a map of 1,000 keys.
std::string AliasesOfABigMap(int count) {
  std::string text = "x: &m {";
  for (int i = 0; i < 1000; ++i) text += (i ? ", k" : "k") + std::to_string(i) + ": 1";
  text += "}\ntargets: [";
  for (int i = 0; i < count; ++i) text += i ? ",*m" : "*m";
  return text + "]\n";
}

TEST(ConfigAliases, ExpansionPastTheLimitIsOneErrorAtTheAlias) {
  // 2,005 nodes written (the map 2,001); each alias stands for 2,001 more:
  // the 499th takes the document past 1,000,000 (2,005 + 499 x 2,001). It
  // starts at column 11 + 3 x 498 of line 2.
  const auto start = std::chrono::steady_clock::now();
  ConfigLoadResult result = LoadConfigString(AliasesOfABigMap(10000), "alias.yaml", "");
  EXPECT_EQ(ErrorLines(result),
            std::vector<std::string>{
                "alias.yaml:2:1505: aliases expand the config to more than 1000000 nodes (it "
                "has 2005 written up to here; the limit is 16 times that, at least 1000000); "
                "alias only small shared pieces such as a labels map, or write the repeated "
                "parts out; nothing else in this file is checked until it parses, so more errors may be hidden"});
  // Refused while parsing: no alias is walked (before the limit, 10 s).
  EXPECT_LT(SecondsSince(start), 5.0);
  // One alias fewer expands to 998,503 nodes: not refused for its size (the
  // loader walks it and reports what is wrong with the targets instead).
  result = LoadConfigString(AliasesOfABigMap(498), "alias.yaml", "");
  ASSERT_FALSE(result.errors.empty());
  for (const ConfigError& e : result.errors) {
    EXPECT_EQ(e.message.find("aliases expand"), std::string::npos) << e.ToString();
  }
}

// `n` targets that write only an address and alias one labels map of
// `labels` labels, the first writing it out.
std::string TargetsAliasingLabels(int n, int labels) {
  std::string map = "{";
  for (int i = 0; i < labels; ++i) map += (i ? ", l" : "l") + std::to_string(i) + ": v";
  map += "}";
  std::string text = "targets:\n";
  for (int i = 0; i < n; ++i) {
    text += "  - address: h" + std::to_string(i) +
            ":1\n    labels: " + (i == 0 ? "&common " + map : std::string("*common")) + "\n";
  }
  return text;
}

TEST(ConfigAliases, EveryTargetMayAliasALabelsMapOfUpTo29Labels) {
  // A target writes 4 nodes (its map, "address" and its value, "labels") and
  // its alias stands for 1 + 2 x 29 = 59 more: 63 / 4 < 16. 20,000 targets
  // expand past the floor (1,260,000 nodes), so the factor decides.
  ConfigLoadResult result = LoadConfigString(TargetsAliasingLabels(20000, 29), "l29.yaml", "");
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(result.config->targets.size(), 20000u);
  EXPECT_EQ(result.config->targets.back()->labels.size(), 29u);
  // One label more is 65 / 4 > 16: refused at the alias that crosses
  // 16 x the nodes written, once past 1,000,000.
  result = LoadConfigString(TargetsAliasingLabels(20000, 30), "l30.yaml", "");
  ASSERT_EQ(result.errors.size(), 1u) << Dump(result);
  const ConfigError& e = result.errors[0];
  EXPECT_EQ(e.message.rfind("aliases expand the config to more than ", 0), 0u) << e.message;
  EXPECT_EQ(e.line % 2, 1) << "on a \"labels: *common\" line: " << e.ToString();
  EXPECT_EQ(e.column, 13) << e.ToString();
  EXPECT_GT(e.line, 2 * 15000) << "refused before 1,000,000 nodes: " << e.ToString();
}

TEST(ConfigAliases, HundredThousandTargetsAliasingOneLabelsMapLoad) {
  // A real large config: every target has a name and an address, and shares
  // one labels map of 5 keys: 6 nodes written and 17 expanded per target,
  // 1,700,000 in all (over the floor, under the factor).
  std::string text = "defaults: {startup_jitter: 0s}\ntargets:\n";
  constexpr int kTargets = 100000;
  for (int i = 0; i < kTargets; ++i) {
    const std::string n = std::to_string(i);
    text += "  - name: t" + n + "\n    address: host" + n +
            ".example.org:" + std::to_string(1 + i % 65535) + "\n    labels: " +
            (i == 0 ? "&common {team: storage, service: redis, env: prod, region: eu-west-1, "
                      "tier: gold}"
                    : "*common") +
            "\n";
  }
  const auto start = std::chrono::steady_clock::now();
  ConfigLoadResult result = LoadConfigString(text, "aliased.yaml", "");
  std::printf("[ info ] 100,000 targets aliasing one labels map: loaded in %.2f s\n",
              SecondsSince(start));
  ASSERT_TRUE(result.config) << Dump(result);
  ASSERT_EQ(result.config->targets.size(), static_cast<size_t>(kTargets));
  const std::vector<std::pair<std::string, std::string>> labels = {{"env", "prod"},
                                                                   {"region", "eu-west-1"},
                                                                   {"service", "redis"},
                                                                   {"team", "storage"},
                                                                   {"tier", "gold"}};
  EXPECT_EQ(result.config->targets.front()->labels, labels);
  EXPECT_EQ(result.config->targets.back()->labels, labels);
}

TEST(ConfigAliases, TheLimitCountsEveryFileOfALoad) {
  // Each file alone expands to about 610,000 nodes; together they pass
  // 1,000,000, which is refused in the included file, the one that crosses.
  // (A label whose value is a map is one error per target and is not walked;
  // 60 per file stay under the 200 errors reported.)
  auto file = [](int aliases, const std::string& head) {
    std::string text = head + "targets:\n  - address: \"a:1\"\n    labels: &m {";
    for (int i = 0; i < 5000; ++i) text += (i ? ", k" : "k") + std::to_string(i) + ": v";
    text += "}\n";
    for (int i = 0; i < aliases; ++i) {
      text += "  - {address: \"t" + std::to_string(i) + ":1\", labels: {x: *m}}\n";
    }
    return text;
  };
  testing::TempDir dir;
  const std::string inc = dir.Write("inc.yaml", file(60, ""));
  const std::string main = dir.Write("main.yaml", file(60, "include: [inc.yaml]\n"));
  for (const std::string& alone : {inc, dir.Write("alone.yaml", file(60, ""))}) {
    ConfigLoadResult result = LoadConfigFile(alone);
    ASSERT_FALSE(result.errors.empty());
    EXPECT_EQ(Dump(result).find("aliases expand"), std::string::npos) << Dump(result);
  }
  ConfigLoadResult result = LoadConfigFile(main);
  const std::string errors = Dump(result);
  const size_t at = errors.find("aliases expand the config to more than 1000000 nodes");
  ASSERT_NE(at, std::string::npos) << errors.substr(0, 2000);
  const size_t line_start = errors.rfind('\n', at) + 1;
  EXPECT_EQ(errors.compare(line_start, inc.size() + 1, inc + ":"), 0)
      << errors.substr(line_start, 300);
}

// ---------------------------------------------------------------------------
// A file rewritten while it is read.

// Two versions of a config of the same size: a flow list (a prefix is not
// valid YAML) of 4 targets padded to 64 KiB each, so a read takes several
// chunks.
std::string PaddedVersion(char tag) {
  std::string text = "targets: [\n";
  for (int i = 0; i < 4; ++i) {
    text += std::string(i ? "," : " ") + "{name: " + tag + std::to_string(i) +
            ", address: \"127.0.0.1:1\", labels: {pad: \"" + std::string(64 << 10, tag) + "\"}}\n";
  }
  return text + "]\n";
}

// What the kernel's coarse clock allows: the file rewritten in place (truncate,
// write) with a version of the same size, within the tick of the previous
// write, so its size and mtime are unchanged. Done after the reader's first
// 64 KiB, the rest of its read comes from the new version.
TEST(ConfigLoad, FileRewrittenWithinOneClockTickIsNeverMixed) {
  testing::TempDir dir;
  const std::string a = PaddedVersion('a');
  const std::string b = PaddedVersion('b');
  ASSERT_EQ(a.size(), b.size());
  const std::string path = dir.Write("live.yaml", a);
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  int rewrites = 0;
  SetReadChunkHookForTest([&](size_t bytes_read) {
    if (rewrites > 0 || bytes_read == 0 || bytes_read >= a.size()) return;
    ++rewrites;
    const int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, b.data(), b.size()), static_cast<ssize_t>(b.size()));
    const struct timespec times[2] = {{0, UTIME_OMIT}, before.st_mtim};
    ASSERT_EQ(futimens(fd, times), 0);
    close(fd);
  });
  ConfigLoadResult result = LoadConfigFile(path);
  SetReadChunkHookForTest(nullptr);
  ASSERT_EQ(rewrites, 1) << "the hook never ran inside a read";
  struct stat after;
  ASSERT_EQ(stat(path.c_str(), &after), 0);
  ASSERT_EQ(after.st_size, before.st_size);
  ASSERT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(Names(*result.config), (std::vector<std::string>{"b0", "b1", "b2", "b3"}))
      << "a mix of the version read first and the one written during the read";
}

// ---------------------------------------------------------------------------
// The corpus: tests/configs/bad/NN-name.yaml, each with the exact error lines
// in NN-name.expected. CONNWATCH_UPDATE_GOLDEN=1 rewrites the .expected files
// (then read the diff before committing it).

std::vector<std::string> BadConfigs() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(SourcePath("tests/configs/bad"))) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
      names.push_back(entry.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class ConfigBadFileTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConfigBadFileTest, ReportsExactlyTheExpectedErrors) {
  const std::string stem = SourcePath("tests/configs/bad/" + GetParam());
  ConfigLoadResult result = LoadConfigFile(stem + ".yaml");
  EXPECT_FALSE(result.config);
  const std::vector<std::string> actual = ErrorLines(result);
  if (std::getenv("CONNWATCH_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(stem + ".expected") << JoinLines(actual);
    return;
  }
  ASSERT_TRUE(fs::exists(stem + ".expected")) << "missing " << stem << ".expected";
  const std::vector<std::string> expected = ReadLines(stem + ".expected");
  EXPECT_EQ(actual, expected) << "actual errors:\n" << JoinLines(actual);
}

INSTANTIATE_TEST_SUITE_P(ConfigBad, ConfigBadFileTest, ::testing::ValuesIn(BadConfigs()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name = param.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(ConfigBadCorpus, IsLargeAndShowsSeveralErrorsPerFile) {
  const std::vector<std::string> names = BadConfigs();
  EXPECT_GE(names.size(), 25u);
  int with_several = 0;
  for (const std::string& name : names) {
    const auto lines = ReadLines(SourcePath("tests/configs/bad/" + name + ".expected"));
    EXPECT_FALSE(lines.empty()) << name;
    with_several += lines.size() > 1;
  }
  EXPECT_GE(with_several, 15);
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

TEST(ConfigLoad, GlobalConnectLimitsAndCheckJitter) {
  ConfigLoadResult result = LoadConfigString(R"(
global: {max_connects_in_flight: 7, max_connects_per_second: 250}
defaults: {check_interval: 10s}
targets:
  - address: 192.0.2.1:80
  - address: 192.0.2.2:80
    check_jitter: 250ms
)",
                                             "g.yaml", "");
  ASSERT_TRUE(result.config) << Dump(result);
  EXPECT_EQ(result.config->global.max_connects_in_flight, 7);
  EXPECT_EQ(result.config->global.max_connects_per_second, 250);
  EXPECT_EQ(result.config->targets[0]->check_jitter, Millis(1000)) << "10% of check_interval";
  EXPECT_EQ(result.config->targets[1]->check_jitter, Millis(250));

  ConfigLoadResult defaults = LoadConfigString("targets: [{address: 192.0.2.1:80}]\n", "d.yaml", "");
  ASSERT_TRUE(defaults.config) << Dump(defaults);
  EXPECT_EQ(defaults.config->global.max_connects_in_flight, 1000);
  EXPECT_EQ(defaults.config->global.max_connects_per_second, 1000);
}

TEST(ConfigLoad, GlobalRejectsUnknownKeysAndBadValues) {
  ConfigLoadResult result = LoadConfigString(R"(
global:
  max_connects_in_flight: 0
  max_connects_per_second: lots
  connects: 3
)",
                                             "g.yaml", "");
  EXPECT_FALSE(result.config);
  ASSERT_EQ(result.errors.size(), 3u) << Dump(result);
  EXPECT_EQ(result.errors[0].path, "global.max_connects_in_flight");
  EXPECT_EQ(result.errors[1].path, "global.max_connects_per_second");
  EXPECT_NE(result.errors[2].message.find("unknown key \"connects\""), std::string::npos)
      << Dump(result);
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

std::vector<std::string> ProbeWords(const ProbeList& list) {
  std::vector<std::string> words;
  for (Probe p : list) words.emplace_back(ProbeName(p));
  return words;
}

TEST(ConfigProbes, DefaultOrderInheritanceAndOwnLists) {
  ConfigLoadResult result = LoadConfigString(R"(
targets:
  - address: 192.0.2.1:80
  - address: 192.0.2.2:80
    probes: [so_error, tcp_info]
    report_icmp: true
)",
                                             "p.yaml", "");
  ASSERT_TRUE(result.config) << Dump(result);
  const auto& t = result.config->targets;
  EXPECT_EQ(ProbeWords(t[0]->probes), (std::vector<std::string>{"peek", "zero_send", "tcp_info"}));
  EXPECT_FALSE(t[0]->report_icmp);
  EXPECT_EQ(ProbeWords(t[1]->probes), (std::vector<std::string>{"so_error", "tcp_info"}));
  EXPECT_TRUE(t[1]->report_icmp);

  ConfigLoadResult inherited = LoadConfigString(R"(
defaults: {probes: [tcp_info, peek, so_error, zero_send], report_icmp: true}
targets:
  - address: 192.0.2.1:80
  - address: 192.0.2.2:80
    probes: [peek]
    report_icmp: false
)",
                                                "i.yaml", "");
  ASSERT_TRUE(inherited.config) << Dump(inherited);
  const auto& u = inherited.config->targets;
  EXPECT_EQ(ProbeWords(u[0]->probes),
            (std::vector<std::string>{"tcp_info", "peek", "so_error", "zero_send"}));
  EXPECT_TRUE(u[0]->report_icmp);
  EXPECT_EQ(ProbeWords(u[1]->probes), (std::vector<std::string>{"peek"}));
  EXPECT_FALSE(u[1]->report_icmp);
}

// A change of the probe list or of report_icmp is a changed target on reload
// (it reconnects); the same list is equal.
TEST(ConfigProbes, ListsTakePartInEquality) {
  auto load = [](const std::string& extra) {
    ConfigLoadResult r = LoadConfigString("targets:\n  - address: 192.0.2.1:80\n" + extra, "e.yaml", "");
    EXPECT_TRUE(r.config) << Dump(r);
    return r.config ? *r.config->targets[0] : TargetConfig{};
  };
  EXPECT_EQ(load(""), load("    probes: [peek, zero_send, tcp_info]\n"));
  EXPECT_FALSE(load("") == load("    probes: [zero_send, peek, tcp_info]\n"));
  EXPECT_FALSE(load("") == load("    report_icmp: true\n"));
}

// canary: absent means none; a map turns it on (30s by default), merged key
// by key over the defaults' canary; the timeout follows the target's own
// connect_timeout unless set; false turns off one set in defaults.
TEST(ConfigCanary, DefaultsMergingTimeoutAndOff) {
  ConfigLoadResult plain = LoadConfigString(R"(
targets:
  - address: 192.0.2.1:80
  - address: 192.0.2.2:80
    connect_timeout: 2s
    canary: {}
  - address: 192.0.2.3:80
    canary: {interval: 250ms, timeout: 100ms}
)",
                                            "c.yaml", "");
  ASSERT_TRUE(plain.config) << Dump(plain);
  const auto& t = plain.config->targets;
  EXPECT_FALSE(t[0]->canary);
  ASSERT_TRUE(t[1]->canary);
  EXPECT_EQ(*t[1]->canary, (CanaryConfig{Millis(30000), Millis(2000)}));
  ASSERT_TRUE(t[2]->canary);
  EXPECT_EQ(*t[2]->canary, (CanaryConfig{Millis(250), Millis(100)}));

  ConfigLoadResult inherited = LoadConfigString(R"(
defaults:
  connect_timeout: 3s
  canary: {interval: 10s}
targets:
  - address: 192.0.2.1:80
  - address: 192.0.2.2:80
    connect_timeout: 700ms
    canary: {timeout: 1s}
  - address: 192.0.2.3:80
    connect_timeout: 700ms
  - address: 192.0.2.4:80
    canary: false
  - address: 192.0.2.5:80
    canary:
)",
                                                "d.yaml", "");
  ASSERT_TRUE(inherited.config) << Dump(inherited);
  const auto& u = inherited.config->targets;
  ASSERT_TRUE(u[0]->canary);
  EXPECT_EQ(*u[0]->canary, (CanaryConfig{Millis(10000), Millis(3000)}));
  ASSERT_TRUE(u[1]->canary);
  EXPECT_EQ(*u[1]->canary, (CanaryConfig{Millis(10000), Millis(1000)}));
  ASSERT_TRUE(u[2]->canary);
  EXPECT_EQ(*u[2]->canary, (CanaryConfig{Millis(10000), Millis(700)}));
  EXPECT_FALSE(u[3]->canary);
  EXPECT_FALSE(u[4]->canary);
}

TEST(ConfigCanary, BadValuesHaveTheirPlace) {
  ConfigLoadResult r = LoadConfigString(R"(targets:
  - address: 192.0.2.1:80
    canary: {interval: 10ms}
  - address: 192.0.2.2:80
    canary: {interval: 30s, timeout: 0s, every: 1m}
  - address: 192.0.2.3:80
    canary: 30s
)",
                                        "bad.yaml", "");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(Dump(r),
            "bad.yaml:3:24: targets[0].canary.interval: must be between 100ms and 1d, got 10ms\n"
            "bad.yaml:5:38: targets[1].canary.timeout: must be greater than 0\n"
            "bad.yaml:5:42: targets[1].canary: unknown key \"every\"\n"
            "bad.yaml:7:13: targets[2].canary: expected a map (interval, timeout; {} for the "
            "defaults), or false to turn the canary off, got the string \"30s\"\n");
}

// A changed canary is a changed target (it reconnects on reload, as any
// other setting); the same canary is equal.
TEST(ConfigCanary, TakesPartInEquality) {
  auto load = [](const std::string& extra) {
    ConfigLoadResult r =
        LoadConfigString("targets:\n  - address: 192.0.2.1:80\n" + extra, "e.yaml", "");
    EXPECT_TRUE(r.config) << Dump(r);
    return r.config ? *r.config->targets[0] : TargetConfig{};
  };
  EXPECT_EQ(load("    canary: {interval: 30s}\n"), load("    canary: {}\n"));
  EXPECT_FALSE(load("") == load("    canary: {}\n"));
  EXPECT_FALSE(load("    canary: {interval: 30s}\n") == load("    canary: {interval: 31s}\n"));
}

}  // namespace
}  // namespace connwatch
