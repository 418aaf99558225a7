// UpHistory with a fake clock: the exact up-seconds counter (flaps shorter
// than any scrape interval included), the hour/day windows, the strip, and
// the bounded memory.
#include "core/up_history.h"

#include <gtest/gtest.h>

namespace connwatch {
namespace {

// A start on a minute and hour boundary keeps the expected cells readable.
constexpr double kT0 = 1000 * 3600.0;

TEST(UpHistoryTest, CountsFlapsShorterThanAScrapeExactly) {
  UpHistory h(kT0);
  // A scraper at kT0 and kT0 + 15 would see "down" both times; the target
  // was up 0.25 + 0.1 + 2 seconds in between.
  h.Up(kT0 + 1.0);
  h.Down(kT0 + 1.25, true);
  h.Up(kT0 + 3.0);
  h.Down(kT0 + 3.1, true);
  h.Up(kT0 + 10.0);
  h.Down(kT0 + 12.0, true);
  EXPECT_NEAR(h.UpSecondsTotal(kT0 + 15), 2.35, 1e-9);
  UpReport r = h.Report(kT0 + 15);
  EXPECT_NEAR(r.up_seconds_total, 2.35, 1e-9);
  EXPECT_EQ(r.disconnects_1h, 3u);
  EXPECT_NEAR(r.observed_1h, 15, 1e-9);
  EXPECT_NEAR(r.up_1h, 2.35, 1e-4);
}

TEST(UpHistoryTest, CurrentStretchCountsAtReadTimeWithoutBooking) {
  UpHistory h(kT0);
  h.Up(kT0 + 5);
  EXPECT_DOUBLE_EQ(h.UpSecondsTotal(kT0 + 5), 0);
  EXPECT_DOUBLE_EQ(h.UpSecondsTotal(kT0 + 65), 60);
  EXPECT_DOUBLE_EQ(h.UpSecondsTotal(kT0 + 7205), 7200);
  UpReport r = h.Report(kT0 + 7205);
  EXPECT_DOUBLE_EQ(r.Availability1h(), 1.0);
  EXPECT_NEAR(r.observed_1d, 7205, 1e-9);
  EXPECT_NEAR(r.up_1d, 7200, 1e-3);
  for (int8_t cell : r.strip) EXPECT_EQ(cell, 100);
  EXPECT_EQ(r.disconnects_1h, 0u);
}

TEST(UpHistoryTest, RepeatedTransitionsAreNoOps) {
  UpHistory h(kT0);
  h.Down(kT0 + 1, true);  // already down: not a disconnect
  h.Up(kT0 + 2);
  h.Up(kT0 + 3);  // already up: the stretch still began at +2
  h.Down(kT0 + 4, false);  // our own close: not a disconnect
  EXPECT_DOUBLE_EQ(h.UpSecondsTotal(kT0 + 10), 2);
  EXPECT_EQ(h.Report(kT0 + 10).disconnects_1h, 0u);
}

TEST(UpHistoryTest, StripShowsEachMinuteAndUnobservedTime) {
  // Started 10 minutes ago: the 50 older cells are not observed.
  UpHistory h(kT0);
  h.Up(kT0);
  h.Down(kT0 + 2 * 60 + 30, true);  // down half of minute 2
  h.Up(kT0 + 3 * 60);
  const UpReport r = h.Report(kT0 + 10 * 60);
  // Cells: index 59 is the current minute (minute 10, observed 0 s).
  EXPECT_EQ(r.strip[59], UpReport::kNotObserved);
  for (int i = 0; i < 49; ++i) EXPECT_EQ(r.strip[i], UpReport::kNotObserved) << i;
  EXPECT_EQ(r.strip[49], 100);  // minute 0
  EXPECT_EQ(r.strip[50], 100);
  EXPECT_EQ(r.strip[51], 50);  // minute 2
  EXPECT_EQ(r.strip[52], 100);
  EXPECT_EQ(r.strip_disconnects, uint64_t{1} << 51);
  EXPECT_EQ(r.disconnects_1h, 1u);
  EXPECT_NEAR(r.Availability1h(), 570.0 / 600.0, 1e-6);
}

TEST(UpHistoryTest, AnyDowntimeKeepsACellBelowFull) {
  UpHistory h(kT0);
  h.Up(kT0);
  h.Down(kT0 + 30, true);
  h.Up(kT0 + 30.01);  // down for 10 ms
  const UpReport r = h.Report(kT0 + 60);
  EXPECT_EQ(r.strip[58], 99);
}

TEST(UpHistoryTest, OldHistoryRollsOutOfTheWindows) {
  UpHistory h(kT0);
  h.Up(kT0);
  h.Down(kT0 + 600, true);  // up for the first 10 minutes, then down
  // Two hours later: the hour holds nothing of it, the day all of it.
  UpReport r = h.Report(kT0 + 2 * 3600);
  EXPECT_DOUBLE_EQ(r.up_1h, 0);
  EXPECT_EQ(r.disconnects_1h, 0u);
  EXPECT_NEAR(r.up_1d, 600, 1e-3);
  EXPECT_NEAR(r.observed_1d, 7200, 1e-9);
  // A day and more later, the day forgets it too; the counter never does.
  r = h.Report(kT0 + 30 * 3600);
  EXPECT_DOUBLE_EQ(r.up_1d, 0);
  EXPECT_NEAR(r.observed_1d, 23 * 3600, 1e-9);  // the current hour has just begun
  EXPECT_DOUBLE_EQ(r.up_seconds_total, 600);
}

TEST(UpHistoryTest, ALongStretchBooksOnlyTheWindows) {
  UpHistory h(kT0);
  h.Up(kT0);
  h.Down(kT0 + 10 * 86400 + 30, true);  // ten days up, then a death
  const UpReport r = h.Report(kT0 + 10 * 86400 + 60);
  EXPECT_DOUBLE_EQ(r.up_seconds_total, 10 * 86400 + 30);
  EXPECT_NEAR(r.up_1h, 58 * 60 + 30, 1e-2);  // the current minute has just begun
  EXPECT_NEAR(r.up_1d, 23 * 3600 + 30, 1);
  EXPECT_EQ(r.disconnects_1h, 1u);
}

TEST(UpHistoryTest, CopiesCarryEverything) {
  // What a reload does: the new target takes the old one's history.
  UpHistory old(kT0);
  old.Up(kT0);
  old.Down(kT0 + 100, false);
  UpHistory fresh(kT0 + 100);
  fresh = old;
  fresh.Up(kT0 + 101);
  EXPECT_DOUBLE_EQ(fresh.UpSecondsTotal(kT0 + 111), 110);
  EXPECT_NEAR(fresh.Report(kT0 + 111).observed_1h, 111, 1e-9);
}

TEST(UpHistoryTest, MemoryIsBoundedPerTarget) {
  // docs/ARCHITECTURE.md quotes the figure (504 bytes on x86-64).
  EXPECT_LE(sizeof(UpHistory), 512u);
}

}  // namespace
}  // namespace connwatch
