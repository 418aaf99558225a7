// Sharding (core/shard.h, docs/FLEET.md): N shards partition a list exactly,
// growing from N to N+1 moves about 1/(N+1) of the targets, the hash is the
// documented one, and the loader's global.shard and the --shard spec.

#include "core/shard.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "config/loader.h"

namespace connwatch {
namespace {

std::vector<std::string> Names(size_t n) {
  std::vector<std::string> names;
  names.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // Names as operators write them, similar to each other.
    names.push_back("db-" + std::to_string(i) + ".prod.example.com:5432");
  }
  return names;
}

Config ConfigOf(const std::vector<std::string>& names) {
  Config config;
  for (const std::string& name : names) {
    auto target = std::make_shared<TargetConfig>();
    target->name = name;
    config.targets.push_back(std::move(target));
  }
  return config;
}

TEST(Shard, EveryTargetInExactlyOneShard) {
  const std::vector<std::string> names = Names(5000);
  for (int total : {1, 2, 3, 4, 5, 7, 16}) {
    std::vector<int> owners(names.size(), 0);
    size_t kept_sum = 0;
    for (int index = 0; index < total; ++index) {
      Config config = ConfigOf(names);
      ApplyShard(ShardConfig{index, total}, &config);
      EXPECT_EQ(config.targets.size() + config.shard_targets_skipped, names.size());
      EXPECT_EQ(config.global.shard, (ShardConfig{index, total}));
      kept_sum += config.targets.size();
      // Each shard holds about 1/total of the list (5000 names: within 15%).
      const double expected = static_cast<double>(names.size()) / total;
      EXPECT_NEAR(static_cast<double>(config.targets.size()), expected, expected * 0.15)
          << "shard " << index << "/" << total;
      size_t j = 0;
      for (const auto& target : config.targets) {
        // In file order: the kept targets are a subsequence of the list.
        while (j < names.size() && names[j] != target->name) ++j;
        ASSERT_LT(j, names.size()) << target->name << " out of order in shard " << index;
        ++owners[j];
      }
    }
    EXPECT_EQ(kept_sum, names.size()) << total << " shards";
    for (size_t i = 0; i < names.size(); ++i) {
      ASSERT_EQ(owners[i], 1) << names[i] << " is in " << owners[i] << " of " << total
                              << " shards";
    }
  }
}

TEST(Shard, FourToFiveShardsMovesAboutAFifth) {
  const std::vector<std::string> names = Names(20000);
  size_t moved = 0;
  for (const std::string& name : names) {
    const int before = ShardOf(name, 4);
    const int after = ShardOf(name, 5);
    if (before != after) {
      ++moved;
      // Rendezvous: a target only ever moves to the new shard.
      EXPECT_EQ(after, 4) << name << " moved from " << before << " to " << after;
    }
  }
  const double fraction = static_cast<double>(moved) / static_cast<double>(names.size());
  std::printf("[ measured ] 4 -> 5 shards: %zu of %zu targets moved (%.4f; ideal 1/5 = 0.2000)\n",
              moved, names.size(), fraction);
  // 20,000 names: the binomial standard deviation is 0.0028; 0.02 is 7 of them.
  EXPECT_NEAR(fraction, 0.2, 0.02);
}

TEST(Shard, WeightIsTheDocumentedHash) {
  // Pinned values: every instance of a fleet, on any platform and in any
  // version, must agree on where a target goes (docs/FLEET.md gives the
  // formula). A change here moves targets between shards.
  auto fnv = [](const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
  };
  auto mix = [](uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  for (const std::string name : {"", "a", "redis-main", "db-7.prod.example.com:5432"}) {
    for (int shard : {0, 1, 4, 65535}) {
      EXPECT_EQ(ShardWeight(name, shard),
                mix(fnv(name) ^ (static_cast<uint64_t>(shard) + 1) * 0x9E3779B97F4A7C15ULL))
          << name << " " << shard;
    }
  }
  // Fixed outputs, computed once by an independent implementation (Python).
  EXPECT_EQ(ShardWeight("redis-main", 0), 0xba014030dcec717fULL);
  EXPECT_EQ(ShardWeight("", 3), 0xf874f271eebd27eeULL);
  EXPECT_EQ(ShardOf("redis-main", 4), 2);
  EXPECT_EQ(ShardOf("db", 4), 3);
  EXPECT_EQ(ShardOf("fleet-0", 4), 0);
  EXPECT_EQ(ShardOf("fleet-0", 5), 4);
  EXPECT_EQ(ShardOf("fleet-2", 5), 0);
}

TEST(Shard, ParsesTheFlag) {
  ShardConfig s;
  std::string error;
  ASSERT_TRUE(ParseShardSpec("0/1", &s, &error)) << error;
  EXPECT_EQ(s, (ShardConfig{0, 1}));
  ASSERT_TRUE(ParseShardSpec("3/4", &s, &error)) << error;
  EXPECT_EQ(s, (ShardConfig{3, 4}));
  struct Bad {
    const char* text;
    const char* error;
  };
  for (const Bad& bad : {
           Bad{"4/4", "the shard index I must be from 0 to N-1 = 3, got 4"},
           Bad{"0/0", "the number of shards N must be from 1 to 65536, got 0"},
           Bad{"0/70000", "the number of shards N must be from 1 to 65536, got 70000"},
           Bad{"-1/4", "the shard index I must be from 0 to N-1 = 3, got -1"},
           Bad{"1", "expected I/N (shard I of N, I from 0 to N-1, e.g. 0/4), got \"1\""},
           Bad{"1/", "expected I/N (shard I of N, I from 0 to N-1, e.g. 0/4), got \"1/\""},
           Bad{"a/b", "expected I/N (shard I of N, I from 0 to N-1, e.g. 0/4), got \"a/b\""},
           Bad{" 1/2", "expected I/N (shard I of N, I from 0 to N-1, e.g. 0/4), got \" 1/2\""},
       }) {
    error.clear();
    EXPECT_FALSE(ParseShardSpec(bad.text, &s, &error)) << bad.text;
    EXPECT_EQ(error, bad.error) << bad.text;
  }
}

std::string ErrorsOf(const ConfigLoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.ToString() + "\n";
  return out;
}

TEST(ShardConfigKey, LoadsIndexAndTotal) {
  ConfigLoadResult r = LoadConfigString(
      "global:\n  shard: {index: 2, total: 3}\ntargets:\n  - address: 127.0.0.1:1\n", "c.yaml",
      "/tmp");
  ASSERT_TRUE(r.config) << ErrorsOf(r);
  EXPECT_EQ(r.config->global.shard, (ShardConfig{2, 3}));
  // The loader keeps every target; the daemon applies the shard after it.
  EXPECT_EQ(r.config->targets.size(), 1u);

  r = LoadConfigString("global:\n  shard: {total: 1}\ntargets: []\n", "c.yaml", "/tmp");
  ASSERT_TRUE(r.config) << ErrorsOf(r);
  EXPECT_EQ(r.config->global.shard, (ShardConfig{0, 1}));

  r = LoadConfigString("targets: []\n", "c.yaml", "/tmp");
  ASSERT_TRUE(r.config) << ErrorsOf(r);
  EXPECT_EQ(r.config->global.shard, (ShardConfig{0, 1}));
}

TEST(ShardConfigKey, FlagOverridesTheFile) {
  ConfigLoadResult r = LoadConfigString(
      "global:\n  shard: {index: 0, total: 2}\ntargets:\n"
      "  - address: 127.0.0.1:1\n  - address: 127.0.0.1:2\n  - address: 127.0.0.1:3\n"
      "  - address: 127.0.0.1:4\n  - address: 127.0.0.1:5\n  - address: 127.0.0.1:6\n",
      "c.yaml", "/tmp");
  ASSERT_TRUE(r.config) << ErrorsOf(r);
  Config from_file = *r.config;
  ApplyShard(std::optional<ShardConfig>(), &from_file);
  EXPECT_EQ(from_file.global.shard, (ShardConfig{0, 2}));
  EXPECT_EQ(from_file.targets.size() + from_file.shard_targets_skipped, 6u);

  Config from_flag = *r.config;
  ApplyShard(std::optional<ShardConfig>(ShardConfig{0, 1}), &from_flag);
  EXPECT_EQ(from_flag.global.shard, (ShardConfig{0, 1}));
  EXPECT_EQ(from_flag.targets.size(), 6u);
  EXPECT_EQ(from_flag.shard_targets_skipped, 0u);
}

TEST(ShardConfigKey, ErrorsHaveTheirPlace) {
  struct Case {
    const char* yaml;
    const char* errors;
  };
  for (const Case& c : {
           Case{"global:\n  shard: {index: 3, total: 3}\ntargets: []\n",
                "c.yaml:2:18: global.shard.index: must be below total (3 shards: index 0 to 2), "
                "got 3\n"},
           Case{"global:\n  shard: 1/3\ntargets: []\n",
                "c.yaml:2:10: global.shard: expected a map {index: I, total: N} (shard I of N, I "
                "from 0 to N-1), got the string \"1/3\"\n"},
           Case{"global:\n  shard:\n    total: 3\ntargets: []\n",
                "c.yaml:3:5: global.shard: missing \"index\" (this instance's shard, 0 to "
                "total-1)\n"},
           Case{"global:\n  shard:\n    index: 0\ntargets: []\n",
                "c.yaml:3:5: global.shard: missing \"total\" (the number of shards)\n"},
       }) {
    ConfigLoadResult r = LoadConfigString(c.yaml, "c.yaml", "/tmp");
    EXPECT_FALSE(r.config) << c.yaml;
    EXPECT_EQ(ErrorsOf(r), c.errors) << c.yaml;
  }
}

}  // namespace
}  // namespace connwatch
