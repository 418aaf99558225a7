// Unit tests of the event log's line formats: logfmt as the README shows it,
// JSON with numbers and booleans typed.

#include "core/event_log.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace connwatch {
namespace {

using Json = nlohmann::json;

// 2026-11-25T14:46:23.254Z, the README's example.
constexpr double kTime = 1795617983.254;

Event Disconnect() {
  Event e;
  e.unix_time = kTime;
  e.level = LogLevel::kWarn;
  e.kind = "disconnect";
  e.target = "demo-cycle-a";
  e.address = "127.0.0.1:17001";
  e.resolved_address = "127.0.0.1:17001";
  e.has_reason = true;
  e.reason = Reason::kPeerReset;
  e.err = ECONNRESET;
  e.has_detected_by = true;  // every disconnect says what saw it
  e.detected_by = Detector::kRead;
  e.connected_for = 4.0123;
  e.tcp.valid = true;
  e.tcp.rtt_us = 32;
  e.tcp.total_retrans = 0;
  e.tcp.last_data_recv_ms = 4012;
  e.tcp.probes = 0;
  e.tcp.unacked = 0;
  return e;
}

// The line README.md shows is the line the daemon writes for that event.
TEST(EventLogFormat, LogfmtDisconnectLineIsTheReadmeExample) {
  EventLog log(nullptr, LogFormat::kLogfmt, LogLevel::kDebug);
  const std::string line = log.FormatEvent(Disconnect());
  EXPECT_EQ(line,
            "ts=2026-11-25T14:46:23.254000Z level=warn event=disconnect target=demo-cycle-a "
            "address=127.0.0.1:17001 resolved=127.0.0.1:17001 reason=peer_reset errno=ECONNRESET "
            "detected_by=read connected_for=4s rtt=32us retrans=0 last_data_recv=4s probes=0 unacked=0");
  std::ifstream readme(std::string(CONNWATCH_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(readme) << "cannot read README.md";
  std::string shown;
  for (std::string l; std::getline(readme, l);) {
    if (l.rfind("ts=", 0) == 0 && l.find("event=disconnect") != std::string::npos) shown = l;
  }
  EXPECT_EQ(shown, line) << "README.md's example event line differs from what connwatchd writes";
}

TEST(EventLogFormat, JsonNumbersAreNumbers) {
  EventLog log(nullptr, LogFormat::kJson, LogLevel::kDebug);
  const std::string line = log.FormatEvent(Disconnect());
  const Json j = Json::parse(line);
  EXPECT_EQ(j["ts"], "2026-11-25T14:46:23.254000Z") << line;
  EXPECT_EQ(j["level"], "warn") << line;
  EXPECT_EQ(j["event"], "disconnect") << line;
  EXPECT_EQ(j["reason"], "peer_reset") << line;
  EXPECT_EQ(j["errno"], "ECONNRESET") << line;
  // Counters are integers, durations numbers of seconds.
  for (const char* key : {"retrans", "probes", "unacked"}) {
    EXPECT_TRUE(j[key].is_number_unsigned()) << key << " in " << line;
  }
  EXPECT_EQ(j["retrans"], 0) << line;
  EXPECT_EQ(j["unacked"], 0) << line;
  for (const char* key : {"connected_for", "rtt", "last_data_recv"}) {
    EXPECT_TRUE(j[key].is_number_float()) << key << " in " << line;
  }
  EXPECT_DOUBLE_EQ(j["connected_for"].get<double>(), 4.0123) << line;
  EXPECT_DOUBLE_EQ(j["rtt"].get<double>(), 32e-6) << line;
  EXPECT_DOUBLE_EQ(j["last_data_recv"].get<double>(), 4.012) << line;
  // Field order is the logfmt order.
  EXPECT_EQ(line.find("\"ts\""), 1u) << line;
  EXPECT_LT(line.find("\"connected_for\""), line.find("\"rtt\"")) << line;
}

TEST(EventLogFormat, JsonConnectTime) {
  EventLog log(nullptr, LogFormat::kJson, LogLevel::kDebug);
  Event e;
  e.unix_time = kTime;
  e.kind = "connect";
  e.target = "t";
  e.address = "127.0.0.1:1";
  e.connect_seconds = 0.00042;
  const Json j = Json::parse(log.FormatEvent(e));
  EXPECT_DOUBLE_EQ(j["connect_time"].get<double>(), 0.00042);
  EXPECT_FALSE(j.contains("reason"));
}

TEST(EventLogFormat, MessageFieldsKeepTheirType) {
  const std::vector<LogField> fields = {
      {"file", std::string("/etc/connwatch/connwatch.yaml")},
      {"port", 9798},
      {"targets", size_t{3}},
      {"offset", int64_t{-2}},
      {"ok", true},
      {"ratio", 0.25},
      LogField::Fixed("load_ms", 12.345, 1),
      LogField::Seconds("waited", 1.2),
      {"signal", "SIGTERM"},
  };
  EventLog json(nullptr, LogFormat::kJson, LogLevel::kDebug);
  const std::string line = json.FormatMessage(kTime, LogLevel::kInfo, "config loaded", fields);
  EXPECT_EQ(line,
            "{\"ts\":\"2026-11-25T14:46:23.254000Z\",\"level\":\"info\",\"msg\":\"config loaded\","
            "\"file\":\"/etc/connwatch/connwatch.yaml\",\"port\":9798,\"targets\":3,\"offset\":-2,"
            "\"ok\":true,\"ratio\":0.25,\"load_ms\":12.3,\"waited\":1.2,\"signal\":\"SIGTERM\"}");

  EventLog logfmt(nullptr, LogFormat::kLogfmt, LogLevel::kDebug);
  EXPECT_EQ(logfmt.FormatMessage(kTime, LogLevel::kInfo, "config loaded", fields),
            "ts=2026-11-25T14:46:23.254000Z level=info msg=\"config loaded\" "
            "file=/etc/connwatch/connwatch.yaml port=9798 targets=3 offset=-2 ok=true ratio=0.25 "
            "load_ms=12.3 waited=1.2s signal=SIGTERM");
}

TEST(EventLogFormat, JsonNonFiniteNumbersAreNull) {
  EventLog json(nullptr, LogFormat::kJson, LogLevel::kDebug);
  const Json j = Json::parse(json.FormatMessage(kTime, LogLevel::kInfo, "m",
                                                {{"x", std::nan("")}, LogField::Seconds("y", std::numeric_limits<double>::infinity())}));
  EXPECT_TRUE(j["x"].is_null());
  EXPECT_TRUE(j["y"].is_null());
}

// The date of a second is formatted once and reused: going forward, back and
// across a day's end each line still gets its own time.
TEST(EventLogFormat, TimestampsAcrossSecondsAndDays) {
  EventLog log(nullptr, LogFormat::kLogfmt, LogLevel::kDebug);
  auto ts = [&](double t) {
    const std::string line = log.FormatMessage(t, LogLevel::kInfo, "m", {});
    return line.substr(3, line.find(' ') - 3);
  };
  EXPECT_EQ(ts(kTime), "2026-11-25T14:46:23.254000Z");
  EXPECT_EQ(ts(kTime + 0.000001), "2026-11-25T14:46:23.254001Z");
  EXPECT_EQ(ts(kTime + 1), "2026-11-25T14:46:24.254000Z");
  EXPECT_EQ(ts(kTime), "2026-11-25T14:46:23.254000Z");
  EXPECT_EQ(ts(1795651199.9999996), "2026-11-26T00:00:00.000000Z");  // rounds up into the next day
  EXPECT_EQ(ts(1795651199.5), "2026-11-25T23:59:59.500000Z");
}

std::string FileText(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fseek(f, 0, SEEK_END);
  return text;
}

size_t Lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// The loop's lines wait for Flush (one write per loop iteration); a line from
// another thread goes out at once, after them, so the order of the calls is
// the order of the lines; nothing is lost, and a big buffer goes out by itself.
TEST(EventLogBuffer, LoopLinesWaitForFlushOthersKeepTheOrder) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    EventLog log(f, LogFormat::kLogfmt, LogLevel::kDebug);
    log.BufferOnThisThread();
    log.Message(LogLevel::kInfo, "first");
    log.Record(Disconnect());
    EXPECT_EQ(FileText(f), "") << "buffered until Flush";
    EXPECT_EQ(log.total_recorded(), 1u) << "the ring has it at once";
    std::thread([&] { log.Message(LogLevel::kInfo, "from another thread"); }).join();
    std::string text = FileText(f);
    ASSERT_EQ(Lines(text), 3u) << text;
    EXPECT_LT(text.find("msg=first"), text.find("event=disconnect"));
    EXPECT_LT(text.find("event=disconnect"), text.find("msg=\"from another thread\""));
    log.Message(LogLevel::kInfo, "second");
    log.Flush();
    EXPECT_EQ(Lines(FileText(f)), 4u);
    // Over kFlushBytes the buffer is written without waiting for Flush.
    size_t written = 0;
    for (size_t i = 0; written < EventLog::kFlushBytes; ++i) {
      log.Record(Disconnect());
      written += log.FormatEvent(Disconnect()).size() + 1;
    }
    EXPECT_GE(FileText(f).size(), EventLog::kFlushBytes) << "a full buffer goes out by itself";
    log.Message(LogLevel::kInfo, "last");
    log.StopBuffering();
    text = FileText(f);
    EXPECT_EQ(text.substr(text.size() - 9), "msg=last\n");
    log.Message(LogLevel::kInfo, "unbuffered");
    EXPECT_NE(FileText(f).find("msg=unbuffered"), std::string::npos) << "no buffering after StopBuffering";
    log.BufferOnThisThread();
    log.Message(LogLevel::kInfo, "at exit");
  }
  // The destructor flushes what is left.
  const std::string text = FileText(f);
  const std::string tail = "msg=\"at exit\"\n";
  EXPECT_EQ(text.substr(text.size() - tail.size()), tail);
  std::fclose(f);
}

}  // namespace
}  // namespace connwatch
