// The status page's data side: the query, the selection and sorting of rows,
// the strip text and the compact JSON of /api/v1/targets?compact=1.
#include <algorithm>
#include <cctype>

#include "web/api_json.h"
#include "web/status_page.h"

namespace connwatch {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> words;
  std::string lower = Lower(text);
  size_t i = 0;
  while (i < lower.size()) {
    while (i < lower.size() && std::isspace(static_cast<unsigned char>(lower[i]))) ++i;
    size_t end = i;
    while (end < lower.size() && !std::isspace(static_cast<unsigned char>(lower[end]))) ++end;
    if (end > i) words.push_back(lower.substr(i, end - i));
    i = end;
  }
  return words;
}

bool Contains(const std::string& haystack_lower, const std::string& word) {
  return haystack_lower.find(word) != std::string::npos;
}

bool TextMatches(const TargetSnapshot& t, const std::vector<std::string>& words) {
  if (words.empty()) return true;
  if (!t.config) return false;
  // name, address and each "label=value", lower-cased, one per line: a word
  // never matches across two of them.
  std::string hay = Lower(t.config->name) + "\n" + Lower(t.config->Where());
  if (t.endpoint) hay += "\n" + Lower(t.endpoint->endpoint);
  for (const auto& [name, value] : t.config->labels) hay += "\n" + Lower(name) + "=" + Lower(value);
  return std::all_of(words.begin(), words.end(),
                     [&](const std::string& w) { return Contains(hay, w); });
}

bool StateMatches(const TargetSnapshot& t, std::string_view state) {
  if (state.empty()) return true;
  if (state == "down") return !t.up;
  return StateName(t.state) == state;
}

// Down first: backoff, resolving, connecting, then up.
int StateRank(const TargetSnapshot& t) {
  return t.up ? static_cast<int>(kStateCount) : static_cast<int>(t.state);
}

Json NumberOrNull(double v) { return v >= 0 ? Json(v) : Json(nullptr); }

}  // namespace

std::string ParseStatusQuery(std::string_view query, StatusQuery* out) {
  *out = StatusQuery{};
  if (auto q = QueryParam(query, "q")) out->text = *q;
  if (auto state = QueryParam(query, "state")) {
    TargetState parsed;
    if (!state->empty() && *state != "down" && !ParseState(*state, &parsed)) {
      return "invalid state \"" + *state +
             "\": want up, down, backoff, resolving or connecting";
    }
    out->state = *state;
  }
  if (auto sort = QueryParam(query, "sort")) {
    if (*sort != "state" && *sort != "config" && !sort->empty()) {
      return "invalid sort \"" + *sort + "\": want state or config";
    }
    out->by_state = *sort != "config";
  }
  if (auto limit = QueryParam(query, "limit")) {
    if (!ParseLimit(*limit, kMaxStatusRows, &out->limit)) {
      return "invalid limit \"" + *limit + "\": want an integer from 1 to " +
             std::to_string(kMaxStatusRows);
    }
  }
  if (auto offset = QueryParam(query, "offset")) {
    size_t value = 0;
    if (*offset != "0" && !ParseLimit(*offset, 999999999, &value)) {
      return "invalid offset \"" + *offset + "\": want an integer from 0";
    }
    out->offset = value;
  }
  return "";
}

StatusSelection SelectTargets(const Snapshot& snapshot, const StatusQuery& query) {
  const std::vector<std::string> words = Words(query.text);
  std::vector<size_t> all;
  all.reserve(snapshot.targets.size());
  for (size_t i = 0; i < snapshot.targets.size(); ++i) {
    const TargetSnapshot& t = snapshot.targets[i];
    if (StateMatches(t, query.state) && TextMatches(t, words)) all.push_back(i);
  }
  if (query.by_state) {
    std::stable_sort(all.begin(), all.end(), [&](size_t a, size_t b) {
      return StateRank(snapshot.targets[a]) < StateRank(snapshot.targets[b]);
    });
  }
  StatusSelection sel;
  sel.matched = all.size();
  const size_t begin = std::min(query.offset, all.size());
  const size_t end = std::min(all.size(), begin + query.limit);
  sel.rows.assign(all.begin() + static_cast<std::ptrdiff_t>(begin),
                  all.begin() + static_cast<std::ptrdiff_t>(end));
  return sel;
}

std::string StripText(const UpReport& report) {
  std::string out;
  out.reserve(UpReport::kStripCells);
  for (int8_t cell : report.strip) {
    if (cell == UpReport::kNotObserved) {
      out.push_back('-');
    } else if (cell >= 100) {
      out.push_back('u');
    } else if (cell <= 0) {
      out.push_back('d');
    } else {
      out.push_back(static_cast<char>('0' + cell / 10));
    }
  }
  return out;
}

std::string CompactTargetsJson(const Snapshot& snapshot, const StatusQuery& query) {
  const StatusSelection sel = SelectTargets(snapshot, query);
  size_t up = 0;
  for (const TargetSnapshot& t : snapshot.targets) up += t.up ? 1 : 0;
  Json by_state = Json::object();
  for (size_t s = 0; s < kStateCount; ++s) {
    by_state[std::string(StateName(static_cast<TargetState>(s)))] = snapshot.targets_by_state[s];
  }
  std::string out = "{\"status\":\"success\",\"data\":";
  Json head;
  head["now"] = snapshot.taken_unix;
  head["total"] = snapshot.targets.size();
  head["up"] = up;
  head["by_state"] = std::move(by_state);
  head["matched"] = sel.matched;
  head["offset"] = query.offset;
  head["limit"] = query.limit;
  std::string head_text = Dump(head);
  head_text.pop_back();  // the closing brace: the targets follow.
  out += head_text;
  out += ",\"targets\":[";
  bool first = true;
  for (size_t i : sel.rows) {
    const TargetSnapshot& t = snapshot.targets[i];
    const UpReport r = t.history.Report(t.history_at);
    Json j;
    j["name"] = t.config ? t.config->name : std::string();
    j["address"] = t.config ? t.config->Where() : std::string();
    j["endpoint"] = t.endpoint ? Json(t.endpoint->endpoint) : Json(nullptr);
    Json labels = Json::object();
    if (t.config) {
      for (const auto& [name, value] : t.config->labels) labels[name] = value;
    }
    j["labels"] = std::move(labels);
    j["state"] = std::string(StateName(t.state));
    j["up"] = t.up;
    j["since"] = t.last_change_unix;
    if (!t.last_failure_kind.empty()) {
      Json f;
      f["kind"] = std::string(t.last_failure_kind);
      f["reason"] = std::string(ReasonName(t.last_failure_reason));
      f["errno"] = t.last_failure_errno != 0 ? Json(std::string(ErrnoName(t.last_failure_errno)))
                                             : Json(nullptr);
      f["time"] = t.last_failure_unix;
      j["failure"] = std::move(f);
    } else {
      j["failure"] = nullptr;
    }
    j["availability_1h"] = NumberOrNull(r.Availability1h());
    j["availability_1d"] = NumberOrNull(r.Availability1d());
    j["observed_1d_seconds"] = r.observed_1d;
    j["disconnects_1h"] = r.disconnects_1h;
    j["idle_cutoff_seconds"] = t.idle_cutoff_seconds > 0 ? Json(t.idle_cutoff_seconds) : Json(nullptr);
    if (t.canary && t.canary->attempted) {
      const CanarySnapshot& c = *t.canary;
      Json canary;
      canary["up"] = c.up;
      canary["since"] = c.since_unix;
      canary["reason"] = c.up ? Json(nullptr) : Json(std::string(ReasonName(c.last_reason)));
      canary["errno"] = !c.up && c.last_errno != 0 ? Json(std::string(ErrnoName(c.last_errno)))
                                                   : Json(nullptr);
      j["canary"] = std::move(canary);
    } else {
      j["canary"] = nullptr;
    }
    j["strip"] = StripText(r);
    if (!first) out.push_back(',');
    first = false;
    out += Dump(j);
  }
  out += "]}}\n";
  return out;
}

}  // namespace connwatch
