// connwatchctl's logic with a fake HTTP client: the SSE parser, the status
// table and its exit status, the events list and the follow loop (resume,
// reconnect, refusals), reload.

#include <gtest/gtest.h>

#include <deque>
#include <sstream>

#include "events.h"
#include "exit_codes.h"
#include "reload.h"
#include "sse_parser.h"
#include "status.h"
#include "terminal.h"

namespace connwatch::ctl {
namespace {

using std::chrono::milliseconds;

std::vector<SseEvent> ParseAll(const std::vector<std::string>& pieces, SseParser* parser) {
  std::vector<SseEvent> out;
  for (const std::string& p : pieces) parser->Feed(p, &out);
  return out;
}

TEST(SseParser, ParsesTheDaemonsStream) {
  SseParser p;
  auto events = ParseAll({": following connwatchd events\nretry: 2000\n\n",
                          "id: 42\nevent: disconnect\ndata: {\"seq\":42}\n\n", ": keepalive\n\n"},
                         &p);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "disconnect");
  EXPECT_EQ(events[0].data, "{\"seq\":42}");
  EXPECT_EQ(events[0].id, "42");
  EXPECT_EQ(p.retry_ms(), 2000);
  EXPECT_EQ(p.error(), "");
}

TEST(SseParser, EventsSplitAnywhereAndEveryLineEnding) {
  const std::string stream = "event: a\r\ndata: one\r\ndata:two\r\n\r\ndata: three\r\rdata: 4\n\n";
  // Every split point, including inside a CRLF, gives the same events.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser p;
    auto events = ParseAll({stream.substr(0, cut), stream.substr(cut)}, &p);
    ASSERT_EQ(events.size(), 3u) << "cut at " << cut;
    EXPECT_EQ(events[0].event, "a");
    EXPECT_EQ(events[0].data, "one\ntwo");
    EXPECT_EQ(events[1].event, "message");
    EXPECT_EQ(events[1].data, "three");
    EXPECT_EQ(events[2].data, "4");
  }
}

TEST(SseParser, NoDataNoEventAndIncompleteEventsWait) {
  SseParser p;
  auto events = ParseAll({"event: x\n\nid: 3\n\nretry: soon\ndata: half"}, &p);
  EXPECT_TRUE(events.empty());
  EXPECT_FALSE(p.retry_ms().has_value());
  events = ParseAll({"\n\n"}, &p);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "message");  // the earlier event: x was dispatched empty.
  EXPECT_EQ(events[0].data, "half");
}

TEST(SseParser, RefusesAnEndlessLine) {
  SseParser p;
  std::vector<SseEvent> out;
  p.Feed(std::string(SseParser::kMaxLine + 1, 'x'), &out);
  EXPECT_NE(p.error(), "");
  p.Feed("\ndata: late\n\n", &out);
  EXPECT_TRUE(out.empty());
}

// A canned answer per request, and what was asked.
class FakeClient : public HttpClient {
 public:
  struct Answer {
    HttpResult result;
    std::vector<std::string> pieces;  // a stream's body.
  };
  std::deque<Answer> answers;
  std::vector<std::string> requests;  // "GET /path [header]".

  HttpResult Get(const std::string& path) override { return Next("GET " + path).result; }
  HttpResult Post(const std::string& path) override { return Next("POST " + path).result; }
  HttpResult Stream(const std::string& path, const std::vector<std::string>& headers,
                    const std::function<void(std::string_view)>& on_data,
                    const std::function<bool()>& stop) override {
    std::string request = "STREAM " + path;
    for (const auto& h : headers) request += " [" + h + "]";
    Answer a = Next(request);
    if (a.result.status == 200) {
      for (const auto& p : a.pieces) on_data(p);
    }
    return a.result;
  }

 private:
  Answer Next(const std::string& request) {
    requests.push_back(request);
    if (answers.empty()) {
      HttpResult none;
      none.error = "no more answers";
      return {none, {}};
    }
    Answer a = answers.front();
    answers.pop_front();
    return a;
  }
};

FakeClient::Answer Ok(std::string body, int status = 200) {
  FakeClient::Answer a;
  a.result.status = status;
  a.result.body = std::move(body);
  return a;
}

FakeClient::Answer Unreachable() {
  FakeClient::Answer a;
  a.result.error = "Failed to connect to 127.0.0.1 port 9: Couldn't connect to server";
  return a;
}

const std::chrono::system_clock::time_point kNow = [] {
  std::chrono::system_clock::time_point t;
  EXPECT_TRUE(ParseApiTime("2026-11-25T16:05:37.498Z", &t));
  return t;
}();

std::string TargetsDoc() {
  return R"({"status":"success","data":{"targets":[
    {"name":"redis-main","address":"127.0.0.1:6379","state":"up","up":true,
     "since":"2026-11-25T15:05:37.498Z",
     "last_event":{"kind":"connect","reason":null,"errno":null}},
    {"name":"db","address":"10.0.0.5:5432","state":"backoff","up":false,
     "since":"2026-11-25T16:05:00.000Z",
     "last_event":{"kind":"disconnect","reason":"peer_reset","errno":"ECONNRESET"}}]}})";
}

TEST(CtlStatus, ParsesAndRendersAnAlignedTable) {
  std::vector<TargetRow> rows;
  std::string error;
  ASSERT_TRUE(ParseTargets(TargetsDoc(), kNow, &rows, &error)) << error;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_DOUBLE_EQ(rows[0].for_seconds, 3600);
  EXPECT_EQ(rows[1].reason, "peer_reset (ECONNRESET)");
  EXPECT_EQ(RenderTable(rows, false),
            "NAME        STATE    FOR  ADDRESS         LAST REASON\n"
            "redis-main  up       1h   127.0.0.1:6379  -\n"
            "db          backoff  37s  10.0.0.5:5432   peer_reset (ECONNRESET)\n");
}

TEST(CtlStatus, ColoursOnlyTheWordsAndKeepsTheColumns) {
  std::vector<TargetRow> rows;
  std::string error;
  ASSERT_TRUE(ParseTargets(TargetsDoc(), kNow, &rows, &error));
  const std::string table = RenderTable(rows, true);
  EXPECT_NE(table.find("\033[32mup\033[0m       1h"), std::string::npos) << table;
  EXPECT_NE(table.find("\033[31mbackoff\033[0m  37s"), std::string::npos) << table;
  EXPECT_FALSE(UseColour(-1, nullptr));  // not a terminal
  EXPECT_FALSE(UseColour(1, "1"));       // NO_COLOR set
}

TEST(CtlStatus, ExitStatusIsTheWorstOfTheSelected) {
  auto run = [](std::vector<std::string> names, std::string* out, std::string* err) {
    FakeClient c;
    c.answers.push_back(Ok(TargetsDoc()));
    std::ostringstream o, e;
    int rc = RunStatus(c, names, false, kNow, o, e);
    *out = o.str();
    *err = e.str();
    return rc;
  };
  std::string out, err;
  EXPECT_EQ(run({}, &out, &err), kExitDown);
  EXPECT_NE(out.find("1 of 2 up; not up: db"), std::string::npos) << out;
  EXPECT_EQ(run({"redis-main"}, &out, &err), kExitOk);
  EXPECT_EQ(out.find("db "), std::string::npos) << out;
  EXPECT_EQ(run({"db", "redis-main"}, &out, &err), kExitDown);
  EXPECT_LT(out.find("db "), out.find("redis-main")) << "the order asked for: " << out;
  EXPECT_EQ(run({"redis-main", "nope", "nada"}, &out, &err), kExitUnknown);
  EXPECT_NE(err.find("no target named nope, nada"), std::string::npos) << err;
}

TEST(CtlStatus, NoAnswerOrABadOneIsUnknown) {
  for (FakeClient::Answer a : {Unreachable(), Ok("{\"status\":\"error\"}", 401),
                               Ok("<html>not the API</html>")}) {
    FakeClient c;
    c.answers.push_back(a);
    std::ostringstream o, e;
    EXPECT_EQ(RunStatus(c, {}, false, kNow, o, e), kExitUnknown) << a.result.body;
    EXPECT_NE(e.str(), "");
    EXPECT_EQ(o.str(), "");
  }
  FakeClient c;
  c.answers.push_back(Unreachable());
  std::ostringstream o, e;
  RunStatus(c, {}, false, kNow, o, e);
  EXPECT_NE(e.str().find("cannot reach connwatchd: Failed to connect"), std::string::npos);
}

std::string EventJson(int seq, const std::string& kind, const std::string& target,
                      const std::string& time = "2026-11-25T15:05:37.428Z") {
  return R"({"seq":)" + std::to_string(seq) + R"(,"time":")" + time +
         R"(","level":"warn","kind":")" +
         kind + R"(","target":")" + target +
         R"(","address":"127.0.0.1:1","reason":"peer_reset","errno":"ECONNRESET","detected_by":"read","connected_for_seconds":1.5,"detail":""})";
}

std::string EventsDoc(const std::vector<std::string>& newest_first) {
  std::string list;
  for (const auto& e : newest_first) list += (list.empty() ? "" : ",") + e;
  return R"({"status":"success","data":{"events":[)" + list + "]}}";
}

std::string Sse(int seq, const std::string& kind, const std::string& target) {
  return "id: " + std::to_string(seq) + "\nevent: " + kind + "\ndata: " + EventJson(seq, kind, target) +
         "\n\n";
}

TEST(CtlEvents, FormatsAnEventOnOneLine) {
  EXPECT_EQ(FormatEvent(nlohmann::json::parse(EventJson(2, "disconnect", "db")), false),
            "2026-11-25T15:05:37.428Z  warn   disconnect         db  127.0.0.1:1  peer_reset "
            "(ECONNRESET) detected_by=read connected_for=1.5s");
}

StopControl NoStop(int* waits) {
  return {[waits](milliseconds) { ++*waits; return true; }, [] { return false; }};
}

TEST(CtlEvents, ListsOldestFirstWithTheQuery) {
  FakeClient c;
  c.answers.push_back(Ok(EventsDoc({EventJson(3, "connect", "db"), EventJson(2, "disconnect", "db")})));
  EventsOptions o;
  o.target = "db x";
  o.limit = 5;
  int waits = 0;
  std::ostringstream out, err;
  EXPECT_EQ(RunEvents(c, o, NoStop(&waits), out, err), kExitOk);
  EXPECT_EQ(c.requests, std::vector<std::string>{"GET /api/v1/events?target=db%20x&limit=5"});
  const std::string text = out.str();
  EXPECT_LT(text.find("disconnect"), text.find("connect  ")) << text;
  EXPECT_EQ(err.str(), "");
}

TEST(CtlEvents, FollowResumesAfterTheLastShownAndReconnects) {
  FakeClient c;
  const std::string list_7_8 = EventsDoc({EventJson(8, "connect", "db"), EventJson(7, "disconnect", "db")});
  c.answers.push_back(Ok(EventsDoc({EventJson(7, "disconnect", "db")})));
  FakeClient::Answer stream1 = Ok("");
  stream1.pieces = {": following connwatchd events\nretry: 300\n\n", Sse(8, "connect", "db").substr(0, 9),
                    Sse(8, "connect", "db").substr(9)};
  c.answers.push_back(stream1);  // ends: the daemon closed it.
  c.answers.push_back(Ok(list_7_8));  // the same daemon: nothing new.
  c.answers.push_back(Unreachable());  // the stream
  c.answers.push_back(Unreachable());  // the list
  c.answers.push_back(Ok(list_7_8));
  FakeClient::Answer busy = Ok(R"({"error":"too many followers"})", 503);
  busy.result.retry_after_seconds = 10;
  c.answers.push_back(busy);
  c.answers.push_back(Ok(EventsDoc({EventJson(8, "connect", "db")})));
  FakeClient::Answer stream2 = Ok("");
  stream2.pieces = {Sse(11, "disconnect", "db"), "event: shutdown\ndata: {}\n\n"};
  c.answers.push_back(stream2);
  // A new daemon: numbers from 1 again, so the list is printed whole.
  c.answers.push_back(Ok(EventsDoc({EventJson(2, "connect", "db", "2026-11-25T15:09:00.000Z"),
                                    EventJson(1, "connect_failure", "db", "2026-11-25T15:08:59.000Z")})));
  c.answers.push_back(Ok("Unauthorized", 401));

  EventsOptions o;
  o.follow = true;
  std::vector<milliseconds> delays;
  StopControl stop{[&](milliseconds d) { delays.push_back(d); return true; }, [] { return false; }};
  std::ostringstream out, err;
  EXPECT_EQ(RunEvents(c, o, stop, out, err), kExitFailed);  // the 401 ends it.
  EXPECT_EQ(c.requests, (std::vector<std::string>{
                            "GET /api/v1/events",
                            "STREAM /api/v1/events?follow=1 [Last-Event-ID: 7]",
                            "GET /api/v1/events",
                            "STREAM /api/v1/events?follow=1 [Last-Event-ID: 8]",
                            "GET /api/v1/events",
                            "GET /api/v1/events",
                            "STREAM /api/v1/events?follow=1 [Last-Event-ID: 8]",
                            "GET /api/v1/events",
                            "STREAM /api/v1/events?follow=1 [Last-Event-ID: 8]",
                            "GET /api/v1/events",
                            "STREAM /api/v1/events?follow=1 [Last-Event-ID: 2]",
                        }));
  // The stream's retry: 300 from then on, but the 503's Retry-After.
  EXPECT_EQ(delays, (std::vector<milliseconds>{milliseconds(300), milliseconds(300), milliseconds(300),
                                               milliseconds(10000), milliseconds(300)}));
  const std::string text = out.str(), notes = err.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5) << text;  // 7, 8, 11, then 1, 2
  EXPECT_LT(text.find("connect_failure"), text.find("T15:09:00")) << text;
  EXPECT_NE(notes.find("2 event(s) missed"), std::string::npos) << notes;
  EXPECT_NE(notes.find("the event stream ended"), std::string::npos) << notes;
  EXPECT_NE(notes.find("cannot reach connwatchd"), std::string::npos) << notes;
  EXPECT_NE(notes.find("refused to stream (503)"), std::string::npos) << notes;
  EXPECT_NE(notes.find("shutting down"), std::string::npos) << notes;
  EXPECT_NE(notes.find("connwatchd restarted"), std::string::npos) << notes;
  EXPECT_EQ(notes.find("started again"), std::string::npos) << "the catch-up saw it: " << notes;
  EXPECT_NE(notes.find("answered 401"), std::string::npos) << notes;
}

TEST(CtlEvents, AStopEndsTheFollowWithZeroAndJsonLinesAreTheApis) {
  FakeClient c;
  c.answers.push_back(Ok(EventsDoc({})));
  FakeClient::Answer stream = Ok("");
  stream.pieces = {Sse(1, "connect", "db")};
  stream.result.stopped = true;
  c.answers.push_back(stream);
  EventsOptions o;
  o.follow = true;
  o.json = true;
  o.target = "db";
  int waits = 0;
  std::ostringstream out, err;
  EXPECT_EQ(RunEvents(c, o, NoStop(&waits), out, err), kExitOk);
  EXPECT_EQ(waits, 0);
  EXPECT_EQ(c.requests.back(), "STREAM /api/v1/events?follow=1&target=db");
  EXPECT_EQ(nlohmann::json::parse(out.str()), nlohmann::json::parse(EventJson(1, "connect", "db")));
}

TEST(CtlEvents, ListFailures) {
  int waits = 0;
  for (auto [answer, want] : std::vector<std::pair<FakeClient::Answer, int>>{
           {Unreachable(), kExitUnknown}, {Ok("bad", 400), kExitFailed}, {Ok("[]"), kExitUnknown}}) {
    FakeClient c;
    c.answers.push_back(answer);
    std::ostringstream out, err;
    EXPECT_EQ(RunEvents(c, EventsOptions{}, NoStop(&waits), out, err), want) << err.str();
    EXPECT_NE(err.str(), "");
  }
}

TEST(CtlReload, PrintsTheAnswerAndFailsOnARefusal) {
  struct Case {
    FakeClient::Answer answer;
    int want;
    std::string in_out, in_err;
  };
  for (const Case& k : std::vector<Case>{
           {Ok("OK"), kExitOk, "OK\n", ""},
           {Ok("a.yaml:3:5: targets[0].address: bad port\n", 500), kExitFailed, "",
            "a.yaml:3:5: targets[0].address: bad port"},
           {Ok("Lifecycle APIs are not enabled", 403), kExitFailed, "", "--web.enable-lifecycle"},
           {Unreachable(), kExitUnknown, "", "cannot reach"}}) {
    FakeClient c;
    c.answers.push_back(k.answer);
    std::ostringstream out, err;
    EXPECT_EQ(RunReload(c, out, err), k.want);
    EXPECT_EQ(c.requests, std::vector<std::string>{"POST /-/reload"});
    EXPECT_NE(out.str().find(k.in_out), std::string::npos) << out.str();
    EXPECT_NE(err.str().find(k.in_err), std::string::npos) << err.str();
  }
}

}  // namespace
}  // namespace connwatch::ctl
