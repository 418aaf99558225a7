#pragma once
// --check-config: every file the daemon would read at start, each checked in
// full (an error in one does not hide the errors of the other). Shared by
// `connwatchd --check-config` and `connwatchctl check-config`, so both print
// the same lines and exit with the same status.

#include <cstdio>
#include <optional>
#include <string>

#include "core/config.h"

namespace connwatch {

// Checks `config_file` and, unless "", `web_config_file`. Prints one
// "FILE: OK, ..." line per good file to `out`, every error and a count per bad
// file to `err`. Returns the exit status: 0 when every file is good, else 1.
// A sharded config (global.shard, or `shard` from --shard, which overrides
// it) adds how many of the file's targets this shard keeps.
int CheckConfigFiles(const std::string& config_file, const std::string& web_config_file,
                     std::FILE* out, std::FILE* err,
                     const std::optional<ShardConfig>& shard = std::nullopt);

}  // namespace connwatch
