#pragma once
// The config loader: YAML (the file operators edit) turned into the plain
// structs of core/config.h. Loading reports every error found, each with its
// place: `file:line:col: path: what is wrong`. Runs on the caller's thread
// (the main thread at start, the loader thread on reload).

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace connwatch {

// Reads `path` and the files its `include` globs name (relative to the
// including file's directory).
ConfigLoadResult LoadConfigFile(const std::string& path);

// Same, from text; `name` is used in error places and `base_dir` resolves
// includes.
ConfigLoadResult LoadConfigString(const std::string& text, const std::string& name,
                                  const std::string& base_dir);

// The keys the loader accepts, map by map: "" (the main file's top level),
// "included" (an included file's top level), "global", "defaults",
// "targets[]" (one target), and the maps nested in a target or the defaults
// ("keepalive", "backoff", "heartbeat", "canary", "tls"; "shard" in global).
// A key named like one of these maps holds that map ("targets" holds a list
// of "targets[]"). The docs tests
// compare this with docs/CONFIG.md, connwatch.yaml(5) and the JSON schema,
// both ways, so a key added here fails them until it is documented.
struct ConfigKeyGroup {
  std::string_view map;
  std::vector<std::string_view> keys;
};
std::vector<ConfigKeyGroup> ConfigKeyGroups();

// Test-only: `hook` runs in the loader's file reader after each chunk it reads
// (at most 64 KiB), with the bytes read so far in that pass over the file, so
// a test can rewrite the file at an exact point of a read. An empty function
// removes it. Set it only while no load runs (it is not synchronised).
void SetReadChunkHookForTest(std::function<void(size_t bytes_read)> hook);

}  // namespace connwatch
