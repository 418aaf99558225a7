#pragma once
// The documents of the HTTP API (docs/API.md) and the request parsing they
// need: the JSON of a target and of an event, query parameters, the
// Accept-Encoding test. Pure functions; any thread.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/event_log.h"
#include "core/reason.h"
#include "core/snapshot.h"

namespace connwatch {

using Json = nlohmann::ordered_json;

// "2024-05-01T12:34:56.789Z"; null for a time that was never set.
Json Rfc3339(double unix_time);
// One line of JSON; invalid UTF-8 replaced by U+FFFD.
std::string Dump(const Json& j);

// application/x-www-form-urlencoded decoding; a malformed %-escape is kept.
std::string UrlDecode(std::string_view s);
// The decoded value of the first `key` parameter of `query`.
std::optional<std::string> QueryParam(std::string_view query, std::string_view key);
bool ParseState(std::string_view word, TargetState* state);
// A decimal integer in [1, max], nothing else.
bool ParseLimit(std::string_view text, size_t max, size_t* limit);
// True when an Accept-Encoding value allows gzip (RFC 9110 12.5.3).
bool AcceptsGzip(std::string_view header);

Json TargetJson(const TargetSnapshot& t);
// A target's `canary` object (targets with a canary).
Json CanaryJson(const CanarySnapshot& c);
Json EventJson(const Event& e);

}  // namespace connwatch
