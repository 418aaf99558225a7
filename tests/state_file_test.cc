// The state file's logic without a daemon: the JSON round trip of every
// field a restart keeps, files refused as a whole (corrupt, cut at any byte,
// another version or format), the up/down history moved to another
// monotonic time base and its unobserved gap, the event ring restored, the
// idle cut-off inference, and the atomic write (its temporary file is gone
// after a failure). Whole-daemon restarts are in state_restart_test.cc.
#include "core/state_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "monitor/state_store.h"
#include "test_util.h"

namespace connwatch {
namespace {

constexpr double kT0 = 1000 * 3600.0;  // on a minute and an hour boundary

TargetSnapshot SampleTarget() {
  auto config = std::make_shared<TargetConfig>();
  config->name = "db-1";
  config->address = "db.example:5432";
  TargetSnapshot t;
  t.config = config;
  t.up = true;
  t.last_change_unix = 1.7e9 + 0.25;
  t.has_last_event = true;
  t.last_event_kind = "connect";
  t.last_reason = Reason::kPeerReset;
  t.last_event_unix = 1.7e9 + 0.25;
  t.last_failure_kind = "disconnect";
  t.last_failure_reason = Reason::kPeerReset;
  t.last_failure_errno = 104;
  t.last_failure_unix = 1.7e9 - 30;
  t.connects = 7;
  t.connect_failures[static_cast<size_t>(Reason::kRefused)] = 3;
  t.disconnects[static_cast<size_t>(Reason::kPeerReset)] = 5;
  t.disconnects[static_cast<size_t>(Reason::kKeepaliveTimeout)] = 1;
  t.icmp_errors[static_cast<size_t>(Reason::kHostUnreachable)] = 2;
  t.dns_failures = 4;
  t.retransmits_total = 99;
  t.has_rtt = true;
  t.rtt_seconds = 0.000321;
  auto tls = std::make_shared<TlsPeerInfo>();
  tls->valid = true;
  tls->version = "TLSv1.3";
  tls->cipher = "TLS_AES_256_GCM_SHA384";
  tls->subject = "CN=db.example";
  tls->issuer = "CN=ca";
  tls->fingerprint = "ab12";
  tls->earliest_expiry_unix = 1.8e9;
  t.tls = tls;
  UpHistory h(kT0);
  h.Up(kT0 + 10);
  h.Down(kT0 + 70, true);
  h.Up(kT0 + 100);
  t.history = h;
  t.history_at = kT0 + 130;  // up for the last 30 s of it
  auto cutoff = std::make_shared<IdleCutoff>();
  cutoff->Add(300);
  cutoff->Add(301);
  cutoff->Add(299);
  t.idle_cutoff = cutoff;
  t.idle_cutoff_seconds = cutoff->seconds();
  return t;
}

Event SampleEvent(uint64_t seq) {
  Event e;
  e.seq = seq;
  e.unix_time = 1.7e9 + static_cast<double>(seq);
  e.level = LogLevel::kWarn;
  e.kind = "disconnect";
  e.target = "db-1";
  e.address = "db.example:5432";
  e.resolved_address = "10.0.0.5:5432";
  e.has_reason = true;
  e.reason = Reason::kPeerReset;
  e.err = 104;
  e.has_detected_by = true;
  e.detected_by = Detector::kPeek;
  e.connected_for = 12.5;
  e.tcp.valid = true;
  e.tcp.rtt_us = 321;
  e.tcp.total_retrans = 3;
  e.detail = "reset \"quoted\"";
  return e;
}

std::string SampleText() {
  Snapshot snap;
  snap.targets.push_back(SampleTarget());
  return EncodeState(snap, {SampleEvent(5), SampleEvent(9)}, 10, 1.7e9 + 1, 123.5);
}

TEST(StateFileTest, RoundTripKeepsEveryField) {
  StoredState s;
  std::string error;
  ASSERT_TRUE(DecodeState(SampleText(), &s, &error)) << error;
  EXPECT_DOUBLE_EQ(s.saved_unix, 1.7e9 + 1);
  EXPECT_DOUBLE_EQ(s.mono_to_unix, 123.5);
  EXPECT_EQ(s.next_seq, 10u);
  ASSERT_EQ(s.targets.size(), 1u);
  const StoredTarget& t = s.targets[0];
  const TargetSnapshot want = SampleTarget();
  EXPECT_EQ(t.name, "db-1");
  EXPECT_EQ(t.address, "db.example:5432");
  EXPECT_TRUE(t.up);
  EXPECT_DOUBLE_EQ(t.last_change_unix, want.last_change_unix);
  EXPECT_TRUE(t.has_last_event);
  EXPECT_EQ(t.last_event_kind, "connect");
  EXPECT_EQ(t.last_failure_kind, "disconnect");
  EXPECT_EQ(t.last_failure_reason, Reason::kPeerReset);
  EXPECT_EQ(t.last_failure_errno, 104);
  EXPECT_DOUBLE_EQ(t.last_failure_unix, want.last_failure_unix);
  EXPECT_EQ(t.connects, 7u);
  EXPECT_EQ(t.connect_failures, want.connect_failures);
  EXPECT_EQ(t.disconnects, want.disconnects);
  EXPECT_EQ(t.icmp_errors, want.icmp_errors);
  EXPECT_EQ(t.dns_failures, 4u);
  EXPECT_EQ(t.retransmits, 99u);
  EXPECT_TRUE(t.has_rtt);
  EXPECT_DOUBLE_EQ(t.rtt_seconds, 0.000321);
  ASSERT_TRUE(t.tls);
  EXPECT_EQ(t.tls->fingerprint, "ab12");
  EXPECT_DOUBLE_EQ(t.tls->earliest_expiry_unix, 1.8e9);
  EXPECT_DOUBLE_EQ(t.history_at, kT0 + 130);
  // Saved down at history_at: the 30 s up until the copy are booked.
  UpHistory h;
  ASSERT_TRUE(UpHistory::Load(t.history, &h));
  EXPECT_FALSE(h.up());
  EXPECT_NEAR(h.UpSecondsTotal(kT0 + 500), 60 + 30, 1e-9);
  EXPECT_EQ(h.Report(kT0 + 130).disconnects_1h, 1u);
  ASSERT_TRUE(t.has_idle_cutoff);
  IdleCutoff cutoff;
  ASSERT_TRUE(IdleCutoff::Restore(t.idle_ages, t.idle_count, t.idle_next, t.idle_cutoff_seconds,
                                  &cutoff));
  EXPECT_DOUBLE_EQ(cutoff.seconds(), 300);
  EXPECT_EQ(cutoff.count(), 3u);
  ASSERT_EQ(s.events.size(), 2u);
  const Event& e = s.events[1];
  EXPECT_EQ(e.seq, 9u);
  EXPECT_EQ(e.kind, "disconnect");
  EXPECT_EQ(e.reason, Reason::kPeerReset);
  EXPECT_EQ(e.detected_by, Detector::kPeek);
  EXPECT_EQ(e.level, LogLevel::kWarn);
  EXPECT_EQ(e.tcp.rtt_us, 321u);
  EXPECT_EQ(e.detail, "reset \"quoted\"");
  EXPECT_DOUBLE_EQ(e.connected_for, 12.5);
}

TEST(StateFileTest, EveryTruncationIsRefusedNeverCrashes) {
  const std::string text = SampleText();
  // Every cut short of the whole document (the trailing newline aside).
  for (size_t n = 0; n + 2 < text.size(); ++n) {
    StoredState s;
    std::string error;
    EXPECT_FALSE(DecodeState(std::string_view(text).substr(0, n), &s, &error)) << "cut at " << n;
    EXPECT_FALSE(error.empty());
  }
}

TEST(StateFileTest, CorruptForeignAndMistypedFilesAreRefusedInWords) {
  auto refuse = [](const std::string& text) {
    StoredState s;
    std::string error;
    EXPECT_FALSE(DecodeState(text, &s, &error)) << text.substr(0, 80);
    return error;
  };
  EXPECT_NE(refuse("\x00\x13garbage").find("not JSON"), std::string::npos);
  EXPECT_NE(refuse("[1,2]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(refuse(R"({"format":"other","version":1})").find("not a connwatch state file"),
            std::string::npos);
  nlohmann::json doc = nlohmann::json::parse(SampleText());
  doc["version"] = 2;
  EXPECT_NE(refuse(doc.dump()).find("version 2, this connwatchd reads version 1"),
            std::string::npos);
  doc = nlohmann::json::parse(SampleText());
  doc["targets"][0]["connects"] = "seven";
  EXPECT_NE(refuse(doc.dump()).find("connects"), std::string::npos);
  doc = nlohmann::json::parse(SampleText());
  doc["targets"][0]["disconnects"]["no_such_reason"] = 1;
  EXPECT_NE(refuse(doc.dump()).find("no_such_reason"), std::string::npos);
  doc = nlohmann::json::parse(SampleText());
  doc["targets"][0]["history"]["minute_up"][3] = 61;  // more than a minute in a minute
  EXPECT_NE(refuse(doc.dump()).find("history"), std::string::npos);
  doc = nlohmann::json::parse(SampleText());
  doc["events"][1]["seq"] = 5;  // not after the one before
  EXPECT_NE(refuse(doc.dump()).find("increase"), std::string::npos);
  doc = nlohmann::json::parse(SampleText());
  doc["targets"][0].erase("history");
  EXPECT_NE(refuse(doc.dump()).find("missing \"history\""), std::string::npos);
}

TEST(StateFileTest, InvalidUtf8InANameIsWrittenAsReplacement) {
  Snapshot snap;
  snap.targets.push_back(SampleTarget());
  auto config = std::make_shared<TargetConfig>(*snap.targets[0].config);
  config->name = "bad\xff";
  snap.targets[0].config = config;
  StoredState s;
  std::string error;
  ASSERT_TRUE(DecodeState(EncodeState(snap, {}, 1, 0, 0), &s, &error)) << error;
  EXPECT_EQ(s.targets[0].name, "bad\xEF\xBF\xBD");
}

TEST(UpHistoryRebaseTest, KeepsTotalsAndWindowsInTheNewTimeBase) {
  UpHistory h(kT0);
  h.Up(kT0);
  h.Down(kT0 + 1800, true);  // up the first half hour
  h.Up(kT0 + 2400);
  h.Down(kT0 + 3000, true);
  const double delta = -kT0 + 12345.678;  // a restarted process's clock is small
  UpHistory r = h.Rebased(delta);
  const double now_old = kT0 + 3000, now_new = now_old + delta;
  const UpReport a = h.Report(now_old), b = r.Report(now_new);
  EXPECT_DOUBLE_EQ(b.up_seconds_total, 2400);
  EXPECT_NEAR(b.up_1h, a.up_1h, 1.0);
  EXPECT_NEAR(b.observed_1h, a.observed_1h, 1e-6);
  EXPECT_NEAR(b.up_1d, a.up_1d, 1.0);
  EXPECT_EQ(b.disconnects_1h, 2u);
  EXPECT_NEAR(b.Availability1h(), 2400.0 / 3000, 0.001);
}

TEST(UpHistoryRebaseTest, TheRestartGapIsNotObserved) {
  UpHistory h(kT0);
  h.Up(kT0);
  h.Down(kT0 + 600, false);  // saved at +600 (up all along), restarted at +1200
  h.Unobserved(kT0 + 600, kT0 + 1200);
  h.Up(kT0 + 1200);
  const UpReport r = h.Report(kT0 + 1830);
  EXPECT_NEAR(r.observed_1h, 1230, 1e-3);
  EXPECT_NEAR(r.Availability1h(), 1.0, 1e-6);
  // Minutes 10-19 were not watched: not observed, not down.
  EXPECT_EQ(r.strip[UpReport::kStripCells - 30 + 15], UpReport::kNotObserved);
  EXPECT_EQ(r.strip[UpReport::kStripCells - 1], 100);
}

TEST(EventLogRestoreTest, RestoredEventsAreListedAndNumberingGoesOn) {
  EventLog log(nullptr, LogFormat::kLogfmt, LogLevel::kInfo);
  ASSERT_TRUE(log.Restore({SampleEvent(5), SampleEvent(9)}, 12));
  Event next = SampleEvent(0);
  log.Record(next);
  std::vector<Event> recent = log.Recent();
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_EQ(recent[0].seq, 12u);
  EXPECT_EQ(recent[1].seq, 9u);
  EXPECT_EQ(recent[2].seq, 5u);
  // Only into an empty ring.
  EXPECT_FALSE(log.Restore({SampleEvent(20)}, 21));
}

TEST(AtomicWriteTest, ReplacesTheFileAndLeavesNoTemporaryOnFailure) {
  testing::TempDir dir;
  const int fd = open(dir.path().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  std::string error;
  ASSERT_TRUE(WriteFileAtomically(fd, "f", "f.tmp", "one", &error)) << error;
  ASSERT_TRUE(WriteFileAtomically(fd, "f", "f.tmp", "two", &error)) << error;
  std::ifstream in(dir.path() + "/f");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "two");
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/f.tmp"));
  // The rename fails (the target is a non-empty directory): the old file
  // stays, the temporary is removed, and the error names the step.
  std::filesystem::create_directories(dir.path() + "/d/x");
  EXPECT_FALSE(WriteFileAtomically(fd, "d", "d.tmp", "three", &error));
  EXPECT_NE(error.find("rename"), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/d.tmp"));
  close(fd);
}

}  // namespace
}  // namespace connwatch
