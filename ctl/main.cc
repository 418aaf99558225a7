// connwatchctl: flags and wiring. The commands live in the library (ctl/*.cc).

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "core/duration.h"
#include "events.h"
#include "exit_codes.h"
#include "http_client.h"
#include "monitor/check_config.h"
#include "reload.h"
#include "status.h"
#include "terminal.h"
#include "version.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

// Waits `delay` in short steps so that Ctrl-C ends the wait at once.
bool WaitUnlessStopped(std::chrono::milliseconds delay) {
  const auto end = std::chrono::steady_clock::now() + delay;
  while (g_stop == 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return g_stop == 0;
}

}  // namespace

int main(int argc, char** argv) {
  using connwatch::ctl::kExitUnknown;
  connwatch::ctl::ClientOptions client_options;
  std::string timeout = "5s";
  bool version = false;

  CLI::App app{"connwatchctl: asks connwatchd over its HTTP API"};
  app.require_subcommand(0, 1);
  app.fallthrough();
  app.add_option("--web.url", client_options.url, "Base URL of connwatchd (https:// for TLS)")
      ->capture_default_str();
  app.add_option("--web.auth-file", client_options.auth_file,
                 "File holding user:password for basic auth (never on the command line)")
      ->check(CLI::ExistingFile);
  app.add_option("--web.ca-file", client_options.ca_file,
                 "PEM CA certificates to verify an https:// daemon with")
      ->check(CLI::ExistingFile);
  app.add_option("--timeout", timeout, "Connect and request timeout (a duration: 5s, 500ms)")
      ->capture_default_str();
  app.add_flag("--version", version, "Print the version and exit");

  std::vector<std::string> names;
  CLI::App* status = app.add_subcommand(
      "status", "A table of the targets; exit 0 when all are up, 2 when one is not, 3 without an answer");
  status->add_option("TARGET", names, "Only these targets (exact names)");

  connwatch::ctl::EventsOptions events_options;
  CLI::App* events = app.add_subcommand("events", "The recent events, oldest first");
  events->add_flag("--follow,-f", events_options.follow,
                   "Then new events as they happen, until Ctrl-C");
  events->add_option("--target", events_options.target, "Only this target's events");
  events->add_option("--limit", events_options.limit, "At most this many recent events")
      ->check(CLI::Range(1, 1000));
  events->add_flag("--json", events_options.json, "One JSON object per line, as the API gives it");

  CLI::App* reload = app.add_subcommand("reload", "Ask connwatchd to reload its config (POST /-/reload)");

  std::string config_file, web_config_file;
  CLI::App* check = app.add_subcommand(
      "check-config", "Check a config file as connwatchd --check-config does; exit 0 or 1");
  check->add_option("FILE", config_file, "The configuration file (YAML)")->required();
  check->add_option("--web.config.file", web_config_file, "Also check this web config file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : connwatch::ctl::kExitUsage;
  }
  if (version) {
    std::printf("connwatchctl %s (revision %s)\n", connwatch::kVersion, connwatch::kRevision);
    return 0;
  }
  if (app.get_subcommands().empty()) {
    std::fprintf(stderr, "%s", app.help().c_str());
    return connwatch::ctl::kExitUsage;
  }
  if (check->parsed()) {
    return connwatch::CheckConfigFiles(config_file, web_config_file, stdout, stderr);
  }
  std::string error;
  if (!connwatch::ParseDuration(timeout, &client_options.timeout, &error) ||
      client_options.timeout.count() <= 0) {
    std::fprintf(stderr, "connwatchctl: --timeout: %s\n",
                 error.empty() ? "must be more than 0s" : error.c_str());
    return connwatch::ctl::kExitUsage;
  }
  std::unique_ptr<connwatch::ctl::HttpClient> client =
      connwatch::ctl::MakeCurlClient(client_options, &error);
  if (!client) {
    std::fprintf(stderr, "connwatchctl: %s\n", error.c_str());
    return kExitUnknown;
  }
  const bool colour = connwatch::ctl::UseColour(STDOUT_FILENO, std::getenv("NO_COLOR"));
  if (status->parsed()) {
    return connwatch::ctl::RunStatus(*client, names, colour, std::chrono::system_clock::now(),
                                     std::cout, std::cerr);
  }
  if (reload->parsed()) return connwatch::ctl::RunReload(*client, std::cout, std::cerr);
  // events: Ctrl-C (or SIGTERM) ends a follow with status 0.
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  events_options.colour = colour;
  connwatch::ctl::StopControl stop{WaitUnlessStopped, [] { return g_stop != 0; }};
  (void)events;
  return connwatch::ctl::RunEvents(*client, events_options, stop, std::cout, std::cerr);
}
