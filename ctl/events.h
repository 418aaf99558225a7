#pragma once
// `connwatchctl events [--follow] [--target NAME]`: the daemon's recent
// events (GET /api/v1/events), oldest first, then with --follow the new ones
// from the Server-Sent Events stream (GET /api/v1/events?follow=1), resumed
// with Last-Event-ID after the last one shown, so none is missed or repeated
// between the list and the stream, nor across a reconnect.

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "http_client.h"

namespace connwatch::ctl {

struct EventsOptions {
  std::string target;  // "" for every target.
  int limit = 0;       // of the recent events listed first; 0: all the daemon keeps.
  bool follow = false;
  bool json = false;   // one JSON object per line instead of text.
  bool colour = false;
  // Between reconnects when the daemon said nothing else (its `retry:` wins).
  std::chrono::milliseconds retry{2000};
};

// How the follow loop waits and learns that it must end (Ctrl-C): `wait`
// returns false when it was cut short by a stop; `stopped` tells whether one
// was asked for.
struct StopControl {
  std::function<bool(std::chrono::milliseconds)> wait;
  std::function<bool()> stopped;
};

// One event of the API as one line of text (no newline):
// "TIME LEVEL KIND TARGET ADDRESS reason (ERRNO) detected_by=... detail".
std::string FormatEvent(const nlohmann::json& event, bool colour);

// The whole command; returns its exit status (kExitOk after a stop).
int RunEvents(HttpClient& client, const EventsOptions& options, const StopControl& stop,
              std::ostream& out, std::ostream& err);

}  // namespace connwatch::ctl
