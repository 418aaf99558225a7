// The status page's HTML. The same rows are drawn by status_page.js from the
// compact API; the two must read alike (the browser test checks both).
#include "web/status_page.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "web/api_json.h"
#include "web/metrics_text.h"
#include "web/status_assets.h"
#include "version.h"

namespace connwatch {

namespace {

// Said on hover where a target shows an idle cut-off (docs/METRICS.md).
constexpr std::string_view kCutoffTitle =
    "Connections to this target keep dying at this idle age: a NAT, firewall or load balancer "
    "on the path forgets idle flows. Set keepalive.idle well below it.";

// Said on hover where a target shows what its canary found (docs/CONFIG.md).
constexpr std::string_view kCanaryTitle =
    "The canary: a fresh connection to the target beside the held one, every interval, "
    "closed with RST.";

// "45s", "3m 12s", "2h 5m", "3d 4h".
std::string Duration(double seconds) {
  if (seconds < 0) seconds = 0;
  const auto s = static_cast<long long>(seconds);
  char buf[48];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm %llds", s / 60, s % 60);
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh %lldm", s / 3600, s % 3600 / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldd %lldh", s / 86400, s % 86400 / 3600);
  }
  return buf;
}

// "2024-05-01 12:34:56 UTC".
std::string UtcTime(double unix_time) {
  const auto t = static_cast<time_t>(unix_time);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// Rounded down, so that any downtime keeps it below "100%".
std::string Percent(double fraction) {
  if (fraction < 0) return "\xE2\x80\x94";  // em dash: nothing observed
  if (fraction >= 1) return "100%";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f%%", std::floor(fraction * 10000) / 100);
  return buf;
}

std::string StateWord(const TargetSnapshot& t) {
  if (t.up) return "up";
  if (t.state == TargetState::kBackoff) return "down";
  return "down, " + std::string(StateName(t.state));
}

void AppendStripSvg(const std::string& strip, std::string* out) {
  // One rect per run of equal minutes, 2 px a minute; the words are in the
  // title (and the availability columns) for those who cannot see colour.
  size_t up = 0, down = 0, partial = 0;
  for (char c : strip) {
    up += c == 'u';
    down += c == 'd';
    partial += c >= '0' && c <= '9';
  }
  char title[128];
  std::snprintf(title, sizeof title,
                "last hour, a minute each: %zu min up, %zu min down, %zu min partly down", up,
                down, partial);
  *out += "<svg class=\"strip\" width=\"120\" height=\"14\" role=\"img\" aria-label=\"";
  *out += title;
  *out += "\"><title>";
  *out += title;
  *out += "</title>";
  for (size_t i = 0; i < strip.size();) {
    size_t j = i;
    while (j < strip.size() && strip[j] == strip[i]) ++j;
    const char c = strip[i];
    const char* cls = c == 'u' ? "m-u" : c == 'd' ? "m-d" : c == '-' ? "m-n" : "m-p";
    char rect[128];
    std::snprintf(rect, sizeof rect, "<rect class=\"%s\" x=\"%zu\" y=\"0\" width=\"%zu\" height=\"14\"/>",
                  cls, i * 2, (j - i) * 2);
    *out += rect;
    i = j;
  }
  *out += "</svg>";
}

void AppendRow(const TargetSnapshot& t, double now, std::string* out) {
  const UpReport r = t.history.Report(t.history_at);
  const std::string name = t.config ? t.config->name : std::string();
  const std::string state_class = t.up ? "up" : "down";
  *out += "<tr class=\"row-" + state_class + "\"><td class=\"name\">" + HtmlEscape(name) +
          "</td><td class=\"addr\">" + HtmlEscape(t.config ? t.config->Where() : "") +
          // An endpoint of a target that holds every address: which one.
          (t.endpoint ? " \xE2\x86\x92 " + HtmlEscape(t.endpoint->endpoint) : std::string()) +
          "</td><td class=\"labels\">";
  if (t.config) {
    for (const auto& [k, v] : t.config->labels) {
      *out += "<span class=\"label\">" + HtmlEscape(k) + "=" + HtmlEscape(v) + "</span> ";
    }
  }
  *out += "</td><td><span class=\"state st-" + state_class + "\">" + StateWord(t) +
          "</span></td><td class=\"for\" title=\"since " + UtcTime(t.last_change_unix) + "\">" +
          Duration(now - t.last_change_unix) + "</td><td class=\"failure\">";
  if (!t.last_failure_kind.empty()) {
    *out += "<span class=\"reason\">" + std::string(ReasonName(t.last_failure_reason)) + "</span>";
    if (t.last_failure_errno != 0) *out += " (" + std::string(ErrnoName(t.last_failure_errno)) + ")";
    *out += t.last_failure_kind == "disconnect" ? " disconnect" : " connect failure";
    *out += ", <span title=\"" + UtcTime(t.last_failure_unix) + "\">" +
            Duration(now - t.last_failure_unix) + " ago</span>";
  } else {
    *out += "none";
  }
  if (t.idle_cutoff_seconds > 0) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1fs", t.idle_cutoff_seconds);  // as the script does
    *out += "<div class=\"cutoff\" title=\"" + std::string(kCutoffTitle) +
            "\">idle cut-off at most " + seconds + "</div>";
  }
  // The canary, where it disagrees with the held connection or fails.
  if (t.canary && t.canary->attempted && (!t.canary->up || !t.up)) {
    const CanarySnapshot& c = *t.canary;
    std::string words = "new connections work";
    if (!c.up) {
      words = "new connections fail: " + std::string(ReasonName(c.last_reason));
      if (c.last_errno != 0) words += " (" + std::string(ErrnoName(c.last_errno)) + ")";
      words += " for " + Duration(now - c.since_unix);
    }
    *out += "<div class=\"canary" + std::string(c.up ? "" : " canary-down") + "\" title=\"" +
            std::string(kCanaryTitle) + "\">" + words + "</div>";
  }
  *out += "</td><td class=\"num\">" + Percent(r.Availability1h()) + "</td><td class=\"num\" title=\"over " +
          Duration(r.observed_1d) + " watched\">" + Percent(r.Availability1d()) +
          "</td><td class=\"num\">" + std::to_string(r.disconnects_1h) + "</td><td>";
  AppendStripSvg(StripText(r), out);
  *out += "</td></tr>\n";
}

void AppendEvent(const Event& e, std::string* out) {
  *out += "<li class=\"ev ev-" + HtmlEscape(e.kind) + "\"><time>" + UtcTime(e.unix_time) +
          "</time> <span class=\"ev-kind\">" + HtmlEscape(e.kind) + "</span> <b>" +
          HtmlEscape(e.target) + "</b>";
  if (e.has_reason) *out += " " + std::string(ReasonName(e.reason));
  if (e.err != 0) *out += " (" + std::string(ErrnoName(e.err)) + ")";
  if (!e.detail.empty()) *out += " \xE2\x80\x94 " + HtmlEscape(e.detail);
  *out += "</li>\n";
}

// For the pager's links (the filter text goes back into a query string).
std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string Selected(bool yes) { return yes ? " selected" : ""; }

}  // namespace

std::string HtmlEscape(std::string_view s) {
  const std::string valid = ValidUtf8(s);
  std::string out;
  out.reserve(valid.size());
  for (char c : valid) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string RenderStatusPage(const Snapshot& snapshot, const std::vector<Event>& recent,
                             const StatusQuery& query) {
  const StatusSelection sel = SelectTargets(snapshot, query);
  const double now = snapshot.taken_unix;
  size_t up = 0;
  for (const TargetSnapshot& t : snapshot.targets) up += t.up ? 1 : 0;
  const size_t total = snapshot.targets.size();

  std::string summary = std::to_string(up) + " of " + std::to_string(total) + " up";
  if (up < total) {
    summary += ", " + std::to_string(total - up) + " down (";
    bool first = true;
    for (size_t s = 0; s < kStateCount; ++s) {
      if (static_cast<TargetState>(s) == TargetState::kUp || snapshot.targets_by_state[s] == 0) {
        continue;
      }
      if (!first) summary += ", ";
      first = false;
      summary += std::string(StateName(static_cast<TargetState>(s))) + " " +
                 std::to_string(snapshot.targets_by_state[s]);
    }
    summary += ")";
  }

  std::string page;
  page.reserve(4096 + sel.rows.size() * 900);
  page += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<title>connwatch: " + summary + "</title>\n<style>\n";
  page += kStatusPageCss;
  page += "</style>\n</head>\n<body>\n<header><h1>connwatch</h1>\n"
          "<p id=\"summary\" class=\"summary";
  page += up < total ? " bad" : " good";
  page += "\">" + summary + "</p></header>\n";

  page += "<form id=\"filter\" method=\"get\" action=\"./\" role=\"search\">\n"
          "<label>Filter <input id=\"q\" type=\"search\" name=\"q\" value=\"" +
          HtmlEscape(query.text) +
          "\" placeholder=\"name, address or label=value\" autocomplete=\"off\"></label>\n"
          "<label>State <select id=\"state\" name=\"state\">";
  for (const char* s : {"", "down", "up", "backoff", "resolving", "connecting"}) {
    page += "<option value=\"" + std::string(s) + "\"" + Selected(query.state == s) + ">" +
            (*s ? s : "any") + "</option>";
  }
  page += "</select></label>\n<label>Sort <select id=\"sort\" name=\"sort\">"
          "<option value=\"state\"" + Selected(query.by_state) + ">down first</option>"
          "<option value=\"config\"" + Selected(!query.by_state) + ">config order</option>"
          "</select></label>\n<button type=\"submit\">Apply</button>\n"
          "<span id=\"live\" class=\"live\">as of " + UtcTime(now) + "</span>\n</form>\n";

  const size_t first_row = sel.rows.empty() ? 0 : query.offset + 1;
  page += "<p id=\"matched\">" + std::to_string(sel.matched) + " match; showing " +
          std::to_string(first_row) + "\xE2\x80\x93" + std::to_string(query.offset + sel.rows.size());
  page += "</p>\n<nav id=\"pager\">";
  auto link = [&](size_t offset, const char* text) {
    page += "<a href=\"./?q=" + HtmlEscape(UrlEncode(query.text)) + "&amp;state=" +
            HtmlEscape(query.state) + "&amp;sort=" + (query.by_state ? "state" : "config") +
            "&amp;offset=" + std::to_string(offset) + "\">" + text + "</a> ";
  };
  if (query.offset > 0) link(query.offset > query.limit ? query.offset - query.limit : 0, "previous");
  if (query.offset + sel.rows.size() < sel.matched) link(query.offset + query.limit, "next");
  page += "</nav>\n";

  page += "<table id=\"targets\">\n<thead><tr><th>Target</th><th>Address</th><th>Labels</th>"
          "<th>State</th><th>For</th><th>Last failure</th><th>Avail. 1h</th><th>Avail. 1d</th>"
          "<th>Disconnects 1h</th><th>Last hour</th></tr></thead>\n<tbody id=\"rows\">\n";
  for (size_t i : sel.rows) AppendRow(snapshot.targets[i], now, &page);
  page += "</tbody>\n</table>\n"
          "<p class=\"note\">Availability, disconnects and the last-hour strip are connwatchd's "
          "own accounting since it started (and since a target was added): time before that is "
          "not counted. For exact availability over any window, use "
          "<code>connwatch_target_up_seconds_total</code> in Prometheus. Strip: green up, red "
          "down, amber partly down, grey not watched; one minute each, newest on the right.</p>\n";

  page += "<section><h2>Recent events</h2>\n<ol id=\"events\">\n";
  for (const Event& e : recent) AppendEvent(e, &page);
  page += "</ol></section>\n<footer>connwatchd ";
  page += kVersion;
  page += " (" + std::string(kRevision) +
          ") \xC2\xB7 <a href=\"metrics\">metrics</a> \xC2\xB7 "
          "<a href=\"api/v1/targets\">api/v1/targets</a> \xC2\xB7 "
          "<a href=\"api/v1/events\">api/v1/events</a> \xC2\xB7 "
          "<a href=\"-/healthy\">-/healthy</a> \xC2\xB7 <a href=\"-/ready\">-/ready</a>"
          "</footer>\n<script>\n";
  page += kStatusPageJs;
  page += "</script>\n</body>\n</html>\n";
  return page;
}

}  // namespace connwatch
