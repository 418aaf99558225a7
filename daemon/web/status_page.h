#pragma once
// The status page at "/" and the compact target list it refreshes from
// (GET /api/v1/targets?compact=1, docs/API.md). The page is rendered whole by
// the server, so it reads without JavaScript (its filter box is a plain GET
// form); the embedded script (status_page.js, compiled in with
// status_page.css, see status_assets.h) then refreshes it in place from the
// compact API every few seconds.
//
// NOTE: bounded at any fleet size: both the page and the compact API carry at
// most one page of rows (kStatusRows by default, kMaxStatusRows at most),
// selected and sorted from the snapshot; the summary counts all targets.
// Every string from the config is HTML- or JSON-escaped. Every URL is
// relative, so the page works under a path prefix, behind TLS and basic auth.
// Pure functions; any thread.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_log.h"
#include "core/snapshot.h"

namespace connwatch {

inline constexpr size_t kStatusRows = 200;
inline constexpr size_t kMaxStatusRows = 1000;
inline constexpr size_t kStatusEvents = 15;  // recent events shown

// Which rows: ?q= (words that must all occur, case-insensitively, in the
// name, the address or a "label=value"), ?state= (up, down = any state but
// up, or a state name), ?sort= (state: down first, the default; config:
// config order), ?offset=, ?limit=.
struct StatusQuery {
  std::string text;
  std::string state;  // "" = any
  bool by_state = true;
  size_t offset = 0;
  size_t limit = kStatusRows;
};

// Parses the query string; returns an error message ("" when valid).
std::string ParseStatusQuery(std::string_view query, StatusQuery* out);

struct StatusSelection {
  std::vector<size_t> rows;  // snapshot indices of the page, in display order
  size_t matched = 0;        // targets the filter keeps (all pages)
};
StatusSelection SelectTargets(const Snapshot& snapshot, const StatusQuery& query);

// The strip of the last hour as text, one character a minute, oldest first:
// 'u' up all of it, 'd' down all of it, '0'..'9' partly up (tens of
// percent, rounded down), '-' not observed (before the daemon watched it).
std::string StripText(const UpReport& report);

// The body of GET /api/v1/targets?compact=1 (one line, '\n'-terminated).
std::string CompactTargetsJson(const Snapshot& snapshot, const StatusQuery& query);

// The whole page, `recent` newest first.
std::string RenderStatusPage(const Snapshot& snapshot, const std::vector<Event>& recent,
                             const StatusQuery& query);

// "&", "<", ">", '"' and "'" as entities; invalid UTF-8 as U+FFFD.
std::string HtmlEscape(std::string_view s);

}  // namespace connwatch
