// connwatchd: flags, signals and wiring. All logic lives in the library.

#include <malloc.h>
#include <cstdlib>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "config/loader.h"
#include "monitor/check_config.h"
#include "core/event_log.h"
#include "core/duration.h"
#include "core/shard.h"
#include "web/http_server.h"
#include "monitor/monitor.h"
#include "monitor/service_notify.h"
#include "version.h"
#include "web/web_config.h"

namespace {

struct Flags {
  std::string config_file = "/etc/connwatch/connwatch.yaml";
  std::string listen_address = ":9798";
  bool enable_lifecycle = false;
  std::string log_level = "info";
  std::string log_format = "logfmt";
  bool check_config = false;
  bool version = false;
  std::string dns_servers;
  std::string web_config_file;
  std::string shard;
  std::string storage_path = "/var/lib/connwatch";
  std::string storage_interval = "60s";
};

}  // namespace

int main(int argc, char** argv) {
  static char empty_value[] = "";
  // NOTE: writing to a closed connection raises SIGPIPE; every send uses
  // MSG_NOSIGNAL, and this covers libraries that write on their own.
  signal(SIGPIPE, SIG_IGN);
  // NOTE: until the loop installs its signal watchers, SIGHUP, SIGTERM and
  // SIGINT keep their default action, which terminates: a reload sent while
  // a big configuration loads killed the daemon with status 129. Blocked here,
  // before any thread exists, they stay pending until
  // Monitor::InstallSignalHandlers unblocks them on the loop thread, and every
  // thread started in between inherits the mask, so none of them can take one
  // with the default action (under TSan the runtime's own thread start blocks
  // every signal for a moment, which made the gap visible).
  sigset_t handled_later;
  sigemptyset(&handled_later);
  sigaddset(&handled_later, SIGHUP);
  sigaddset(&handled_later, SIGTERM);
  sigaddset(&handled_later, SIGINT);
  pthread_sigmask(SIG_BLOCK, &handled_later, nullptr);
  // NOTE: a scrape of tens of thousands of targets allocates and frees
  // megabytes (the snapshot, the body). With a fixed mmap threshold glibc maps
  // and unmaps those blocks instead of raising the threshold and keeping them
  // in the heap, so resident memory returns to the steady-state level.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // NOTE: glibc gives each thread that allocates its own arena (up to 8 per
  // core), and each keeps what it freed. The HTTP threads (one per
  // connection, and a producer per streamed body) build API responses and
  // /metrics pieces, so with the default every thread that ever served a
  // request held its few MB: 2,000 targets and 180 requests took resident
  // memory from 12 MB to 82 MB, and 25 MB with two arenas (measured with 32
  // fixed workers). Their allocations are short and few; sharing two arenas
  // costs nothing measurable. MALLOC_ARENA_MAX in the environment still overrides this.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);

  Flags flags;
  CLI::App app{"connwatchd: holds a TCP connection to every target and reports why each dies"};
  app.add_option("--config.file", flags.config_file, "Configuration file (YAML)")
      ->capture_default_str();
  app.add_option("--web.listen-address", flags.listen_address,
                 "Address to serve /metrics, the API and health endpoints on "
                 "(:port for every address, IPv4 and IPv6; [ipv6]:port; host:port)")
      ->capture_default_str();
  app.add_flag("--web.enable-lifecycle", flags.enable_lifecycle,
               "Enable POST /-/reload");
  app.add_option("--log.level", flags.log_level, "Minimum level logged: debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_option("--log.format", flags.log_format, "Log line format: logfmt or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"logfmt", "json"}));
  app.add_flag("--check-config", flags.check_config,
               "Validate the configuration file (and its includes) and the web config file, "
               "then exit 0 or 1");
  app.add_flag("--version", flags.version, "Print the version and exit");
  app.add_option("--dns.servers", flags.dns_servers,
                 "Comma-separated DNS servers (host[:port]) to use instead of /etc/resolv.conf");
  app.add_option("--web.config.file", flags.web_config_file,
                 "Web config (exporter-toolkit format) that enables TLS and/or basic auth");
  app.add_option("--shard", flags.shard,
                 "Keep only shard I of N of the targets (I/N, I from 0 to N-1; rendezvous hash of "
                 "the name); overrides global.shard of the config file")
      ->check([](const std::string& value) {
        connwatch::ShardConfig shard;
        std::string error;
        return connwatch::ParseShardSpec(value, &shard, &error) ? std::string() : error;
      });
  app.add_option("--storage.path", flags.storage_path,
                 "Directory of the state file (counters, last reasons and changes, history, "
                 "events) kept across restarts; empty: none. Not created by connwatchd "
                 "(systemd's StateDirectory= does)")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--storage.interval", flags.storage_interval,
                 "How often the state file is written (and at shutdown), a duration")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->check([](const std::string& value) {
        connwatch::Millis d{0};
        std::string error;
        if (!connwatch::ParseDuration(value, &d, &error)) return error;
        return d.count() >= 100 ? std::string() : std::string("at least 100ms");
      });
  // NOTE: CLI11 2.1 refuses an empty value written `--storage.path=` (and
  // `--storage.path ""` is awkward in a unit file), yet empty is how state
  // is turned off: the one spelling is split into the option and an empty
  // argument, which CLI11 takes as the value.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> split;
  for (std::string& a : args) {
    if (a == "--storage.path=") {
      a = "--storage.path";
      split.push_back(a.data());
      split.push_back(empty_value);
      continue;
    }
    split.push_back(a.data());
  }
  const int split_argc = static_cast<int>(split.size());
  split.push_back(nullptr);
  CLI11_PARSE(app, split_argc, split.data());
  std::optional<connwatch::ShardConfig> shard;
  if (!flags.shard.empty()) {
    std::string error;
    connwatch::ParseShardSpec(flags.shard, &shard.emplace(), &error);
  }

  if (flags.version) {
    std::printf("connwatchd %s (revision %s)\n", connwatch::kVersion, connwatch::kRevision);
    return 0;
  }
  if (flags.check_config) {
    return connwatch::CheckConfigFiles(flags.config_file, flags.web_config_file, stdout, stderr,
                                       shard);
  }

  connwatch::LogLevel level = connwatch::LogLevel::kInfo;
  connwatch::LogFormat format = connwatch::LogFormat::kLogfmt;
  connwatch::ParseLogLevel(flags.log_level, &level);
  connwatch::ParseLogFormat(flags.log_format, &format);
  connwatch::EventLog log(stderr, format, level);
  log.Message(connwatch::LogLevel::kInfo, "starting connwatchd",
              {{"version", connwatch::kVersion}, {"revision", connwatch::kRevision}});

  connwatch::HttpServerOptions http_options;
  http_options.listen_address = flags.listen_address;
  http_options.enable_lifecycle = flags.enable_lifecycle;
  if (!flags.web_config_file.empty()) {
    connwatch::WebConfigLoadResult web = connwatch::LoadWebConfigFile(flags.web_config_file);
    if (!web.errors.empty()) {
      for (const auto& e : web.errors) {
        log.Message(connwatch::LogLevel::kError, "web config error", {{"error", e.ToString()}});
      }
      log.Message(connwatch::LogLevel::kError, "cannot start: the web config has errors",
                  {{"file", flags.web_config_file}});
      return 1;
    }
    http_options.web = std::move(*web.config);
  }

  connwatch::Monitor::Options monitor_options{flags.config_file, flags.dns_servers, 0,
                                              connwatch::HttpServer::FdsNeeded(http_options)};
  // bench/probes.py measures what each probe sees on its own; with event
  // reads on, the read of a readable socket would see every FIN and RST first.
  if (const char* v = std::getenv("CONNWATCHD_BENCH_NO_EVENT_READS"); v && *v && *v != '0') {
    monitor_options.event_reads = false;
    log.Message(connwatch::LogLevel::kWarn,
                "event-driven reads are off (CONNWATCHD_BENCH_NO_EVENT_READS): only probes and "
                "heartbeats see a death; for benchmarks, never for monitoring");
  }
  monitor_options.shard = shard;
  monitor_options.storage_path = flags.storage_path;
  {
    connwatch::Millis interval{60000};
    std::string error;
    connwatch::ParseDuration(flags.storage_interval, &interval, &error);
    monitor_options.storage_interval = static_cast<double>(interval.count()) / 1000.0;
  }
  connwatch::Monitor monitor(monitor_options, &log);
  // Before anything can tell systemd we are ready: a SIGHUP or SIGTERM from
  // then on is queued by libev and handled once the loop runs, never fatal.
  monitor.InstallSignalHandlers();
  std::vector<std::string> errors = monitor.Start();
  if (!errors.empty()) {
    for (const auto& e : errors) log.Message(connwatch::LogLevel::kError, "config error", {{"error", e}});
    log.Message(connwatch::LogLevel::kError, "cannot start: the configuration has errors",
                {{"file", flags.config_file}});
    return 1;
  }

  const bool http_options_tls = http_options.web.tls.has_value();
  connwatch::HttpServer http(std::move(http_options), monitor, log);
  std::string http_error = http.Start();
  if (!http_error.empty()) {
    log.Message(connwatch::LogLevel::kError, "cannot serve HTTP", {{"error", http_error}});
    return 1;
  }
  std::string bound;
  for (const std::string& name : http.listening()) bound += (bound.empty() ? "" : ",") + name;
  log.Message(connwatch::LogLevel::kInfo, "listening",
              {{"address", flags.listen_address},
               {"port", http.port()},
               {"bound", bound},
               {"tls", http_options_tls}});

  connwatch::ServiceNotifier notifier(monitor.loop(), [&monitor] { return monitor.StatusLine(); });
  monitor.SetReloadHook([&notifier](bool begin) {
    if (begin) {
      notifier.Reloading();
    } else {
      notifier.Ready();
    }
  });
  monitor.SetShutdownHook([&notifier] { notifier.Stopping(); });
  notifier.Start();
  notifier.Ready();
  monitor.Run();
  http.Stop();
  log.Message(connwatch::LogLevel::kInfo, "stopped");
  return 0;
}
