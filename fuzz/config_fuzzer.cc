// libFuzzer target: the config loader on arbitrary YAML text (LoadConfigString).
// Includes resolve against a directory that does not exist, so a glob matches
// nothing and a plain include name is an error: the included-file path is
// fuzzed by config_include_fuzzer.cc.
//
// Beyond "no crash, no leak, no sanitizer report" it checks the loader's
// contract: a config or errors (never both, never neither); every target has a
// name, a port and a unique name; every error has a message.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_set>

#include "config/loader.h"
#include "known_bugs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (connwatch::fuzz::HitsKnownBug(text)) return 0;
  connwatch::ConfigLoadResult r =
      connwatch::LoadConfigString(text, "fuzz.yaml", "/nonexistent-connwatch-fuzz-dir");
  if (r.config.has_value() == !r.errors.empty()) std::abort();
  if (r.config) {
    std::unordered_set<std::string> names;
    for (const auto& t : r.config->targets) {
      if (t->name.empty() || t->port == 0 || t->address.empty()) std::abort();
      if (!names.insert(t->name).second) std::abort();
      if (t->heartbeat && (t->heartbeat->send.empty() || t->heartbeat->expect.empty()))
        std::abort();
      if (t->backoff.max < t->backoff.initial) std::abort();
    }
  }
  for (const auto& e : r.errors) {
    if (e.message.empty()) std::abort();
    (void)e.ToString();
  }
  return 0;
}
