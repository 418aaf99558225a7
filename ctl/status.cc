#include "status.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "core/duration.h"
#include "exit_codes.h"
#include "terminal.h"

namespace connwatch::ctl {
namespace {

using Json = nlohmann::json;

std::string StringOr(const Json& object, const char* key, const std::string& fallback = "") {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// "3h2m1s" at whole seconds: how long is readable; milliseconds are not.
std::string FormatFor(double seconds) {
  if (seconds < 0) return "-";
  return FormatDuration(Millis(static_cast<int64_t>(seconds) * 1000));
}

}  // namespace

bool ParseApiTime(const std::string& text, std::chrono::system_clock::time_point* out) {
  std::tm tm{};
  int millis = 0, consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &millis, &consumed) != 7 ||
      consumed != static_cast<int>(text.size())) {
    return false;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const time_t seconds = timegm(&tm);
  *out = std::chrono::system_clock::from_time_t(seconds) + std::chrono::milliseconds(millis);
  return true;
}

bool ParseTargets(const std::string& body, std::chrono::system_clock::time_point now,
                  std::vector<TargetRow>* rows, std::string* error) {
  Json doc = Json::parse(body, nullptr, false);
  const Json* targets = nullptr;
  if (doc.is_object() && doc.contains("data") && doc["data"].is_object()) {
    auto it = doc["data"].find("targets");
    if (it != doc["data"].end() && it->is_array()) targets = &*it;
  }
  if (targets == nullptr) {
    *error = "the answer is not an /api/v1/targets document";
    return false;
  }
  for (const Json& t : *targets) {
    if (!t.is_object()) continue;
    TargetRow row;
    row.name = StringOr(t, "name");
    row.state = StringOr(t, "state", "?");
    row.up = t.value("up", false);
    row.since = StringOr(t, "since");
    row.address = StringOr(t, "address");
    // An endpoint of a target with addresses: all or srv: which one.
    const std::string endpoint = StringOr(t, "endpoint");
    if (!endpoint.empty()) row.address += " -> " + endpoint;
    std::chrono::system_clock::time_point since;
    if (ParseApiTime(row.since, &since)) {
      row.for_seconds = std::max(0.0, std::chrono::duration<double>(now - since).count());
    }
    if (auto e = t.find("last_event"); e != t.end() && e->is_object()) {
      row.reason = StringOr(*e, "reason");
      const std::string errno_name = StringOr(*e, "errno");
      if (!row.reason.empty() && !errno_name.empty()) row.reason += " (" + errno_name + ")";
    }
    rows->push_back(std::move(row));
  }
  return true;
}

std::string RenderTable(const std::vector<TargetRow>& rows, bool colour) {
  const std::vector<std::string> header = {"NAME", "STATE", "FOR", "ADDRESS", "LAST REASON"};
  std::vector<std::vector<std::string>> cells;
  for (const TargetRow& r : rows) {
    cells.push_back({r.name, r.state, FormatFor(r.for_seconds), r.address,
                     r.reason.empty() ? "-" : r.reason});
  }
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : cells) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& row, bool is_header) {
    std::string out;
    for (size_t c = 0; c < row.size(); ++c) {
      const bool last = c + 1 == row.size();
      std::string cell = row[c];
      std::string padding = last ? "" : std::string(width[c] - cell.size() + 2, ' ');
      if (is_header) {
        cell = Paint(cell, Colour::kBold, colour);
      } else if (c == 1) {
        cell = Paint(cell, StateColour(row[c]), colour);
      }
      out += cell + padding;
    }
    return out + "\n";
  };
  std::string out = line(header, true);
  for (const auto& row : cells) out += line(row, false);
  return out;
}

int StatusExitCode(const std::vector<TargetRow>& rows) {
  for (const TargetRow& r : rows) {
    if (!r.up) return kExitDown;
  }
  return kExitOk;
}

std::vector<TargetRow> SelectTargets(const std::vector<TargetRow>& rows,
                                     const std::vector<std::string>& names,
                                     std::vector<std::string>* unknown) {
  if (names.empty()) return rows;
  std::vector<TargetRow> selected;
  for (const std::string& name : names) {
    auto it = std::find_if(rows.begin(), rows.end(),
                           [&](const TargetRow& r) { return r.name == name; });
    if (it == rows.end()) {
      unknown->push_back(name);
    } else {
      selected.push_back(*it);
    }
  }
  return selected;
}

int RunStatus(HttpClient& client, const std::vector<std::string>& names, bool colour,
              std::chrono::system_clock::time_point now, std::ostream& out, std::ostream& err) {
  HttpResult r = client.Get("/api/v1/targets");
  if (!r.answered()) {
    err << "connwatchctl: cannot reach connwatchd: " << r.error << "\n";
    return kExitUnknown;
  }
  if (r.status != 200) {
    err << "connwatchctl: connwatchd answered " << r.status << " to GET /api/v1/targets: " << r.body
        << (r.body.empty() || r.body.back() != '\n' ? "\n" : "");
    return kExitUnknown;
  }
  std::vector<TargetRow> rows;
  std::string error;
  if (!ParseTargets(r.body, now, &rows, &error)) {
    err << "connwatchctl: " << error << "\n";
    return kExitUnknown;
  }
  std::vector<std::string> unknown;
  std::vector<TargetRow> selected = SelectTargets(rows, names, &unknown);
  if (!unknown.empty()) {
    std::string list;
    for (const std::string& n : unknown) list += (list.empty() ? "" : ", ") + n;
    err << "connwatchctl: connwatchd watches no target named " << list
        << " (connwatchctl status without names lists them all)\n";
    return kExitUnknown;
  }
  if (selected.empty()) {
    out << "connwatchd watches no targets\n";
    return kExitOk;
  }
  out << RenderTable(selected, colour);
  size_t up = 0;
  std::string down;
  for (const TargetRow& row : selected) {
    if (row.up) {
      ++up;
    } else {
      down += (down.empty() ? "" : ", ") + row.name;
    }
  }
  out << up << " of " << selected.size() << " up";
  if (!down.empty()) out << "; not up: " << down;
  out << "\n";
  return StatusExitCode(selected);
}

}  // namespace connwatch::ctl
