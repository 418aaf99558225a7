#include "events.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <vector>

#include "core/duration.h"
#include "exit_codes.h"
#include "sse_parser.h"
#include "terminal.h"

namespace connwatch::ctl {
namespace {

using Json = nlohmann::json;

std::string Str(const Json& e, const char* key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string Seconds(const Json& e, const char* key, const char* label) {
  auto it = e.find(key);
  if (it == e.end() || !it->is_number()) return "";
  return std::string(" ") + label + "=" + FormatSeconds(it->get<double>());
}

uint64_t Seq(const Json& e) {
  auto it = e.find("seq");
  return it != e.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// Percent-encodes a query value (target names are free text).
std::string QueryEscape(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string WithNewline(const std::string& body) {
  return body.empty() || body.back() == '\n' ? body : body + "\n";
}

// Prints events and keeps the last seq, telling on stderr when seqs jump
// (events the ring no longer held) or go back (the daemon restarted).
class Printer {
 public:
  Printer(const EventsOptions& options, std::ostream& out, std::ostream& err)
      : options_(options), out_(out), err_(err) {}

  void Print(const Json& e) {
    const uint64_t seq = Seq(e);
    if (last_seq_ > 0 && seq > last_seq_ + 1 && options_.target.empty()) {
      err_ << "connwatchctl: " << (seq - last_seq_ - 1)
           << " event(s) missed: the daemon no longer held them\n";
    } else if (last_seq_ > 0 && seq != 0 && seq <= last_seq_) {
      err_ << "connwatchctl: event numbers started again at " << seq
           << ": connwatchd restarted\n";
    }
    if (seq != 0) {
      last_seq_ = seq;
      last_time_ = Str(e, "time");
    }
    out_ << (options_.json ? e.dump(-1, ' ', false, Json::error_handler_t::replace)
                           : FormatEvent(e, options_.colour))
         << "\n";
    out_.flush();
  }
  uint64_t last_seq() const { return last_seq_; }

  // Whether `events` (newest first, as listed after a reconnect) come from
  // another daemon than the one printed so far: the numbers went back, the
  // event with the last seq shown is another one, or the ring is empty (the
  // ring of a running daemon never empties; one target's events may leave it).
  bool Restarted(const Json& events) const {
    if (last_seq_ == 0) return false;
    if (events.empty()) return options_.target.empty();
    if (Seq(events.front()) < last_seq_) return true;
    for (const Json& e : events) {
      if (Seq(e) == last_seq_) return Str(e, "time") != last_time_;
    }
    return false;
  }
  // Prints the events of `events` (newest first) after the last one shown,
  // or all of them after a restart.
  void CatchUp(const Json& events, bool restarted) {
    if (restarted) last_seq_ = 0;
    const uint64_t after = last_seq_;
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (Seq(*it) > after) Print(*it);
    }
  }

 private:
  const EventsOptions& options_;
  std::ostream& out_;
  std::ostream& err_;
  uint64_t last_seq_ = 0;
  std::string last_time_;
};

// GET `path`, an events document: its list in `events`. Returns kExitOk, or
// the exit status and the reason in `error`.
int FetchList(HttpClient& client, const std::string& path, Json* events, std::string* error) {
  HttpResult r = client.Get(path);
  if (!r.answered()) {
    *error = "cannot reach connwatchd: " + r.error;
    return kExitUnknown;
  }
  if (r.status != 200) {
    *error = "connwatchd answered " + std::to_string(r.status) + " to GET " + path + ": " +
             WithNewline(r.body);
    return kExitFailed;
  }
  Json doc = Json::parse(r.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("data") || !doc["data"].is_object() ||
      !doc["data"].contains("events") || !doc["data"]["events"].is_array()) {
    *error = "the answer is not an /api/v1/events document";
    return kExitUnknown;
  }
  *events = std::move(doc["data"]["events"]);
  return kExitOk;
}

// Says each new situation of the follow loop once, not at every retry.
class Notices {
 public:
  explicit Notices(std::ostream& err) : err_(err) {}
  void Say(const std::string& text) {
    if (text == last_) return;
    last_ = text;
    err_ << "connwatchctl: " << text << "\n";
  }
  void Clear() { last_.clear(); }

 private:
  std::ostream& err_;
  std::string last_;
};

}  // namespace

std::string FormatEvent(const Json& e, bool colour) {
  const std::string level = Str(e, "level");
  std::string kind = Str(e, "kind");
  std::string line = Str(e, "time") + "  ";
  std::string padded_level = level + std::string(level.size() < 5 ? 5 - level.size() : 0, ' ');
  line += Paint(padded_level, level == "error"  ? Colour::kRed
                              : level == "warn" ? Colour::kYellow
                                                : Colour::kNone,
                colour);
  kind += std::string(kind.size() < 17 ? 17 - kind.size() : 0, ' ');
  line += "  " + kind + "  " + Str(e, "target") + "  " + Str(e, "address");
  const std::string reason = Str(e, "reason"), errno_name = Str(e, "errno");
  if (!reason.empty()) line += "  " + reason;
  if (!errno_name.empty()) line += " (" + errno_name + ")";
  if (const std::string by = Str(e, "detected_by"); !by.empty()) line += " detected_by=" + by;
  line += Seconds(e, "connected_for_seconds", "connected_for");
  line += Seconds(e, "connect_seconds", "connect");
  line += Seconds(e, "tls_handshake_seconds", "tls_handshake");
  if (const std::string cn = Str(e, "close_notify"); !cn.empty()) line += " close_notify=" + cn;
  if (const std::string detail = Str(e, "detail"); !detail.empty()) line += "  " + detail;
  return line;
}

int RunEvents(HttpClient& client, const EventsOptions& options, const StopControl& stop,
              std::ostream& out, std::ostream& err) {
  std::string query;
  if (!options.target.empty()) query += "&target=" + QueryEscape(options.target);
  std::string list_query = query;
  if (options.limit > 0) list_query += "&limit=" + std::to_string(options.limit);
  const std::string list_path =
      "/api/v1/events" + (list_query.empty() ? "" : "?" + list_query.substr(1));
  Json events;
  std::string error;
  if (int rc = FetchList(client, list_path, &events, &error); rc != kExitOk) {
    err << "connwatchctl: " << WithNewline(error);
    return rc;
  }
  Printer printer(options, out, err);
  // The API lists newest first; a log reads oldest first, and the stream
  // continues below it.
  printer.CatchUp(events, false);
  if (!options.follow) return kExitOk;

  // After a broken stream the list is read again before the stream: it
  // tells a restarted daemon (whose numbers start again, so Last-Event-ID
  // would skip its first events) from the same one.
  const std::string catch_up_path =
      "/api/v1/events" + (query.empty() ? "" : "?" + query.substr(1));
  bool catch_up = false;
  std::chrono::milliseconds delay = options.retry;
  const std::string follow_path = "/api/v1/events?follow=1" + query;
  Notices notices(err);
  while (!stop.stopped()) {
    if (catch_up) {
      if (int rc = FetchList(client, catch_up_path, &events, &error); rc == kExitUnknown) {
        notices.Say(error + "; retrying every " + FormatDuration(delay));
        if (!stop.wait(delay)) break;
        continue;
      } else if (rc != kExitOk) {
        err << "connwatchctl: " << WithNewline(error);
        return rc;
      }
      const bool restarted = printer.Restarted(events);
      if (restarted) {
        notices.Say("connwatchd restarted: every event it holds is listed again, oldest first");
      }
      // No event after the last one shown is held (or none of this daemon's
      // was shown): follow from now, without Last-Event-ID.
      printer.CatchUp(events, restarted || events.empty());
      catch_up = false;
    }
    SseParser parser;
    std::vector<SseEvent> parsed;
    std::string ended_by;  // shutdown or overrun, as the daemon said.
    std::vector<std::string> headers;
    if (printer.last_seq() > 0) {
      headers.push_back("Last-Event-ID: " + std::to_string(printer.last_seq()));
    }
    bool connected = false;
    HttpResult s = client.Stream(
        follow_path, headers,
        [&](std::string_view bytes) {
          if (!connected) {
            connected = true;
            notices.Clear();
          }
          parsed.clear();
          parser.Feed(bytes, &parsed);
          for (const SseEvent& e : parsed) {
            if (e.event == "shutdown" || e.event == "overrun") {
              ended_by = e.event;
              continue;
            }
            Json j = Json::parse(e.data, nullptr, false);
            if (j.is_object()) printer.Print(j);
          }
        },
        stop.stopped);
    if (s.stopped || stop.stopped()) break;
    if (parser.retry_ms()) delay = std::chrono::milliseconds(*parser.retry_ms());
    std::chrono::milliseconds wait = delay;
    if (!s.answered()) {
      notices.Say((connected ? "lost the event stream: " : "cannot reach connwatchd: ") + s.error +
                  "; retrying every " + FormatDuration(delay));
    } else if (s.status == 503) {
      if (s.retry_after_seconds > 0) wait = std::chrono::seconds(s.retry_after_seconds);
      notices.Say("connwatchd refused to stream (503): " + WithNewline(s.body).substr(0, 400) +
                  "connwatchctl: retrying every " + FormatDuration(wait));
    } else if (s.status != 200) {
      err << "connwatchctl: connwatchd answered " << s.status << " to GET " << follow_path << ": "
          << WithNewline(s.body);
      return kExitFailed;
    } else if (!parser.error().empty()) {
      notices.Say("the event stream is broken: " + parser.error() + "; reconnecting");
    } else if (ended_by == "shutdown") {
      notices.Say("connwatchd is shutting down; waiting for it to come back");
    } else if (ended_by == "overrun") {
      notices.Say("fell behind the daemon's events and was dropped; resuming");
      wait = std::chrono::milliseconds(0);
    } else {
      notices.Say("the event stream ended; reconnecting");
    }
    catch_up = true;
    if (!stop.wait(wait)) break;
  }
  return kExitOk;
}

}  // namespace connwatch::ctl
