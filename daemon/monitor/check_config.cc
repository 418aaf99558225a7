#include "monitor/check_config.h"

#include <vector>

#include "config/loader.h"
#include "core/shard.h"
#include "web/web_config.h"

namespace connwatch {
namespace {

// Prints every error of `path` and a count to `err`; false when there were any.
bool ReportErrors(const std::string& path, const std::vector<ConfigError>& errors,
                  std::FILE* err) {
  for (const auto& e : errors) std::fprintf(err, "%s\n", e.ToString().c_str());
  if (!errors.empty()) std::fprintf(err, "%s: %zu error(s)\n", path.c_str(), errors.size());
  return errors.empty();
}

}  // namespace

int CheckConfigFiles(const std::string& config_file, const std::string& web_config_file,
                     std::FILE* out, std::FILE* err, const std::optional<ShardConfig>& shard) {
  int status = 0;
  ConfigLoadResult result = LoadConfigFile(config_file);
  if (!ReportErrors(config_file, result.errors, err)) {
    status = 1;
  } else {
    Config& config = *result.config;
    const size_t all = config.targets.size();
    ApplyShard(shard, &config);
    if (config.global.shard.total > 1) {
      std::fprintf(out, "%s: OK, %zu target(s) from %zu file(s); shard %d/%d keeps %zu of them\n",
                   config_file.c_str(), all, config.files.size(), config.global.shard.index,
                   config.global.shard.total, config.targets.size());
    } else {
      std::fprintf(out, "%s: OK, %zu target(s) from %zu file(s)\n", config_file.c_str(), all,
                   config.files.size());
    }
  }
  if (web_config_file.empty()) return status;
  WebConfigLoadResult web = LoadWebConfigFile(web_config_file);
  if (!ReportErrors(web_config_file, web.errors, err)) return 1;
  std::fprintf(out, "%s: OK, %s, %zu basic-auth user(s)\n", web_config_file.c_str(),
               web.config->tls ? "TLS" : "no TLS", web.config->basic_auth_users.size());
  return status;
}

}  // namespace connwatch
