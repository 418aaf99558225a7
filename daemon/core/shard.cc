#include "core/shard.h"

#include <charconv>

namespace connwatch {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = kFnvOffset;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= kFnvPrime;
  }
  return h;
}

// SplitMix64's finaliser: FNV-1a alone mixes its last bytes poorly, and the
// weights of one name for different shards must look independent.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

bool ParseInt(std::string_view text, int* value) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

uint64_t ShardWeight(std::string_view name, int shard) {
  return Mix64(Fnv1a64(name) ^ (static_cast<uint64_t>(shard) + 1) * kGolden);
}

int ShardOf(std::string_view name, int total) {
  if (total <= 1) return 0;
  const uint64_t base = Fnv1a64(name);
  int best = 0;
  uint64_t best_weight = 0;
  for (int i = 0; i < total; ++i) {
    const uint64_t w = Mix64(base ^ (static_cast<uint64_t>(i) + 1) * kGolden);
    if (i == 0 || w > best_weight) {
      best = i;
      best_weight = w;
    }
  }
  return best;
}

bool ParseShardSpec(std::string_view text, ShardConfig* shard, std::string* error) {
  const size_t slash = text.find('/');
  int index = 0, total = 0;
  if (slash == std::string_view::npos || !ParseInt(text.substr(0, slash), &index) ||
      !ParseInt(text.substr(slash + 1), &total)) {
    *error = "expected I/N (shard I of N, I from 0 to N-1, e.g. 0/4), got \"" +
             std::string(text) + "\"";
    return false;
  }
  if (total < 1 || total > kMaxShards) {
    *error = "the number of shards N must be from 1 to " + std::to_string(kMaxShards) +
             ", got " + std::to_string(total);
    return false;
  }
  if (index < 0 || index >= total) {
    *error = "the shard index I must be from 0 to N-1 = " + std::to_string(total - 1) +
             ", got " + std::to_string(index);
    return false;
  }
  shard->index = index;
  shard->total = total;
  return true;
}

void ApplyShard(const ShardConfig& shard, Config* config) {
  config->global.shard = shard;
  config->shard_targets_skipped = 0;
  if (shard.total <= 1) return;
  std::vector<std::shared_ptr<const TargetConfig>> kept;
  kept.reserve(config->targets.size() / static_cast<size_t>(shard.total) + 16);
  for (auto& target : config->targets) {
    if (ShardOf(target->name, shard.total) == shard.index) {
      kept.push_back(std::move(target));
    } else {
      ++config->shard_targets_skipped;
    }
  }
  config->targets = std::move(kept);
}

}  // namespace connwatch
