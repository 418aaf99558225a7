// libFuzzer target: the config loader reading real files with includes
// (LoadConfigFile). The input is split at its first NUL byte: what comes
// before is written as main.yaml, what comes after as inc.yaml and as
// d/a.yaml, in a private temp dir, so `include: [inc.yaml]`,
// `include: "d/*.yaml"`, `include: [main.yaml]` (a loop) and friends are all
// reachable. The seeds in tests/fuzz-corpus/config_include/ show the form.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_set>

#include "config/loader.h"
#include "known_bugs.h"

namespace {

std::string MakeDir() {
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  std::string tmpl = std::string(base) + "/connwatch-fuzz-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  if (mkdir((tmpl + "/d").c_str(), 0700) != 0) std::abort();
  return tmpl;
}

void WriteFile(const std::string& path, const char* data, size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n <= 0) std::abort();
    data += n;
    size -= static_cast<size_t>(n);
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = MakeDir();
  if (connwatch::fuzz::HitsKnownBug(std::string_view(reinterpret_cast<const char*>(data), size))) {
    return 0;
  }
  const char* text = reinterpret_cast<const char*>(data);
  size_t split = 0;
  while (split < size && text[split] != '\0') ++split;
  const size_t rest = split < size ? split + 1 : size;
  WriteFile(dir + "/main.yaml", text, split);
  WriteFile(dir + "/inc.yaml", text + rest, size - rest);
  WriteFile(dir + "/d/a.yaml", text + rest, size - rest);

  connwatch::ConfigLoadResult r = connwatch::LoadConfigFile(dir + "/main.yaml");
  if (r.config.has_value() == !r.errors.empty()) std::abort();
  if (r.config) {
    std::unordered_set<std::string> names;
    for (const auto& t : r.config->targets) {
      if (t->name.empty() || t->port == 0) std::abort();
      if (!names.insert(t->name).second) std::abort();
    }
    // Each file read once: main first, no repeats.
    std::unordered_set<std::string> files(r.config->files.begin(), r.config->files.end());
    if (files.size() != r.config->files.size()) std::abort();
  }
  for (const auto& e : r.errors) {
    if (e.message.empty()) std::abort();
  }
  return 0;
}
