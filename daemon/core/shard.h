#pragma once
// Sharding a target list over N connwatchd instances (docs/FLEET.md). Each
// instance keeps the targets whose name hashes to its shard with rendezvous
// (highest-random-weight) hashing: a target goes to the shard with the
// highest weight(name, shard). Going from N to N+1 shards then moves only
// the targets whose new shard N outweighs their old one, about 1/(N+1) of
// them, and every other target stays where it was. Pure logic, any thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/config.h"

namespace connwatch {

// The largest `total` accepted (by the flag and by global.shard).
inline constexpr int kMaxShards = 65536;

// weight(name, shard) = mix64(fnv1a64(name) ^ ((shard + 1) * 0x9E3779B97F4A7C15)),
// where fnv1a64 is 64-bit FNV-1a over the name's bytes (offset basis
// 0xcbf29ce484222325, prime 0x100000001b3) and mix64 is the SplitMix64
// finaliser. Fixed constants and byte-wise arithmetic: the same on every
// platform, compiler and build, so every instance of a fleet (and every
// version of connwatchd) agrees on where a target goes. Documented in
// docs/FLEET.md; changing it moves targets between shards.
uint64_t ShardWeight(std::string_view name, int shard);

// The shard in [0, total) that keeps `name` (the highest weight; ties, which
// do not happen in practice, go to the lowest index). total <= 1: 0.
int ShardOf(std::string_view name, int total);

// Parses "I/N" (the --shard flag). False with `error` set on anything but
// two decimal integers with 0 <= I < N <= kMaxShards.
bool ParseShardSpec(std::string_view text, ShardConfig* shard, std::string* error);

// Keeps in `config` only the targets of shard `shard` (its index and total
// also become config->global.shard) and sets config->shard_targets_skipped.
// total 1 keeps everything.
void ApplyShard(const ShardConfig& shard, Config* config);

// What the daemon does after every load: the --shard flag when given, else
// the file's global.shard.
inline void ApplyShard(const std::optional<ShardConfig>& flag, Config* config) {
  ApplyShard(flag ? *flag : config->global.shard, config);
}

}  // namespace connwatch
