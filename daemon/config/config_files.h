#pragma once
// File reading of the config loader: a config file read whole and never
// half of one version and half of another, and the paths and globs of
// `include`.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace connwatch::config_detail {

constexpr size_t kMaxFileBytes = 64 << 20;

// Reads the regular file at `path` (at most kMaxFileBytes) into `out`, or
// sets `why`. A file rewritten while it is read is read again; one that keeps
// changing is an error.
bool ReadWholeFile(const std::string& path, std::string* out, std::string* why);

// The test hook of SetReadChunkHookForTest (config/loader.h).
std::function<void(size_t)>& ReadChunkHook();

std::string DirName(const std::string& path);
std::string JoinPath(const std::string& dir, const std::string& path);

// glob(3) reports a directory it cannot read through a plain function
// pointer; the details travel back through this thread-local.
struct GlobFailure {
  std::string path;
  int err = 0;
};
extern thread_local GlobFailure glob_failure;

// glob(3)'s error callback: a directory that does not exist matches
// nothing; any other failure is kept in glob_failure and stops the expansion.
int OnGlobError(const char* path, int err);
std::string EscapeGlob(std::string_view s);
bool HasGlobChars(std::string_view s);

}  // namespace connwatch::config_detail
