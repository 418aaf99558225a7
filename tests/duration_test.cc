#include "core/duration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace connwatch {
namespace {

struct ValidCase {
  const char* text;
  int64_t millis;
};

TEST(DurationParse, AcceptsPrometheusSyntax) {
  const ValidCase cases[] = {
      {"0", 0},
      {"0s", 0},
      {"0ms", 0},
      {"1ms", 1},
      {"250ms", 250},
      {"1s", 1000},
      {"5s", 5000},
      {"90s", 90000},
      {"1m", 60000},
      {"1m30s", 90000},
      {"1m30s500ms", 90500},
      {"2h", 7200000},
      {"1h1m1s1ms", 3661001},
      {"1d", 86400000},
      {"1w", 604800000},
      {"1y", 31536000000},
      {"1y1w1d1h1m1s1ms", 31536000000 + 604800000 + 86400000 + 3600000 + 60000 + 1000 + 1},
      {"007s", 7000},
      {"1000ms", 1000},
      {"292471208y35w2d7h12m55s807ms", std::numeric_limits<int64_t>::max()},
  };
  for (const ValidCase& c : cases) {
    Millis d(-1);
    std::string error = "untouched";
    EXPECT_TRUE(ParseDuration(c.text, &d, &error)) << c.text << ": " << error;
    EXPECT_EQ(d.count(), c.millis) << c.text;
  }
}

struct InvalidCase {
  const char* text;
  const char* error;
};

TEST(DurationParse, RejectsWithAClearMessage) {
  const InvalidCase cases[] = {
      {"", R"(invalid duration "": empty (write e.g. "5s", or "0"))"},
      {"5x", R"(invalid duration "5x": unknown unit "x")"},
      {"10sec", R"(invalid duration "10sec": unknown unit "sec")"},
      {"5S", R"(invalid duration "5S": unknown unit "S")"},
      {"5", R"(invalid duration "5": missing unit (e.g. "5s"))"},
      {"00", R"(invalid duration "00": missing unit (e.g. "00s"))"},
      {"1m30", R"(invalid duration "1m30": missing unit after "30")"},
      {"-1s", R"(invalid duration "-1s": negative durations are not allowed)"},
      {"-0", R"(invalid duration "-0": negative durations are not allowed)"},
      {"+1s", R"(invalid duration "+1s": unexpected character "+")"},
      {"1.5s", R"(invalid duration "1.5s": fractional amounts are not allowed; write "1s500ms")"},
      {"0.5m", R"(invalid duration "0.5m": fractional amounts are not allowed; write "30s")"},
      {"1.0001s",
       R"(invalid duration "1.0001s": fractional amounts are not allowed; use a smaller unit)"},
      {".5s", R"(invalid duration ".5s": fractional amounts are not allowed; use a smaller unit)"},
      {"1.5", R"(invalid duration "1.5": fractional amounts are not allowed; use a smaller unit)"},
      {"s", R"(invalid duration "s": missing number before unit "s")"},
      {"1s s", R"(invalid duration "1s s": unexpected character " ")"},
      {" 1s", R"(invalid duration " 1s": unexpected character " ")"},
      {"1s ", R"(invalid duration "1s ": unexpected character " ")"},
      {"5 s", R"(invalid duration "5 s": unexpected character " ")"},
      {"30s1m",
       R"(invalid duration "30s1m": unit "m" after "s": units must go from largest to smallest (y w d h m s ms))"},
      {"1ms1s",
       R"(invalid duration "1ms1s": unit "s" after "ms": units must go from largest to smallest (y w d h m s ms))"},
      {"1s1s", R"(invalid duration "1s1s": unit "s" appears twice)"},
      {"99999999999999999999s", R"(invalid duration "99999999999999999999s": too large)"},
      {"292471209y", R"(invalid duration "292471209y": too large)"},
      {"292471208y35w2d7h12m55s808ms",
       R"(invalid duration "292471208y35w2d7h12m55s808ms": too large)"},
  };
  for (const InvalidCase& c : cases) {
    Millis d(1234);
    std::string error;
    EXPECT_FALSE(ParseDuration(c.text, &d, &error)) << c.text;
    EXPECT_EQ(error, c.error);
    EXPECT_EQ(d.count(), 1234) << "output written on failure for " << c.text;
  }
}

TEST(DurationParse, NullErrorIsAllowed) {
  Millis d;
  EXPECT_FALSE(ParseDuration("nope", &d, nullptr));
}

TEST(DurationFormat, WritesLargestUnitsFirst) {
  EXPECT_EQ(FormatDuration(Millis(0)), "0s");
  EXPECT_EQ(FormatDuration(Millis(1)), "1ms");
  EXPECT_EQ(FormatDuration(Millis(250)), "250ms");
  EXPECT_EQ(FormatDuration(Millis(1000)), "1s");
  EXPECT_EQ(FormatDuration(Millis(90500)), "1m30s500ms");
  EXPECT_EQ(FormatDuration(Millis(3600000)), "1h");
  EXPECT_EQ(FormatDuration(Millis(3601000)), "1h1s");
  EXPECT_EQ(FormatDuration(Millis(8 * 86400000LL)), "1w1d");
  EXPECT_EQ(FormatDuration(Millis(365 * 86400000LL)), "1y");
  EXPECT_EQ(FormatDuration(Millis(2147483647)), "3w3d20h31m23s647ms");
  EXPECT_EQ(FormatDuration(Millis(-1500)), "-1s500ms");
  EXPECT_EQ(FormatDuration(Millis(std::numeric_limits<int64_t>::min())),
            "-292471208y35w2d7h12m55s808ms");
}

TEST(DurationFormat, RoundTripsThroughParse) {
  const int64_t samples[] = {0,
                             1,
                             999,
                             1000,
                             1001,
                             59999,
                             60000,
                             90500,
                             3599999,
                             86400000,
                             604800000 + 1,
                             31536000000LL * 3 + 7,
                             std::numeric_limits<int64_t>::max()};
  for (int64_t ms : samples) {
    const std::string text = FormatDuration(Millis(ms));
    Millis back(-1);
    std::string error;
    ASSERT_TRUE(ParseDuration(text, &back, &error)) << text << ": " << error;
    EXPECT_EQ(back.count(), ms) << text;
  }
  // And every value in a dense range, which covers each unit boundary below 2 minutes.
  for (int64_t ms = 0; ms < 130000; ms += 7) {
    Millis back;
    ASSERT_TRUE(ParseDuration(FormatDuration(Millis(ms)), &back, nullptr));
    ASSERT_EQ(back.count(), ms);
  }
}

TEST(DurationFormatSeconds, HumanForms) {
  EXPECT_EQ(FormatSeconds(0), "0s");
  EXPECT_EQ(FormatSeconds(0.00042), "420us");
  EXPECT_EQ(FormatSeconds(0.000001), "1us");
  EXPECT_EQ(FormatSeconds(0.0000004), "0us");
  EXPECT_EQ(FormatSeconds(0.0009994), "999us");
  EXPECT_EQ(FormatSeconds(0.0009996), "1ms");  // rounds up into the next unit.
  EXPECT_EQ(FormatSeconds(0.0123), "12.3ms");
  EXPECT_EQ(FormatSeconds(0.25), "250ms");
  EXPECT_EQ(FormatSeconds(0.99996), "1s");
  EXPECT_EQ(FormatSeconds(1.2), "1.2s");
  EXPECT_EQ(FormatSeconds(1.0), "1s");
  EXPECT_EQ(FormatSeconds(59), "59s");
  EXPECT_EQ(FormatSeconds(59.94), "59.9s");
  EXPECT_EQ(FormatSeconds(59.96), "1m");
  EXPECT_EQ(FormatSeconds(60), "1m");
  EXPECT_EQ(FormatSeconds(61.4), "1m1s");
  EXPECT_EQ(FormatSeconds(10921), "3h2m1s");
  EXPECT_EQ(FormatSeconds(90061), "1d1h1m1s");
  EXPECT_EQ(FormatSeconds(-1.5), "-1.5s");
  EXPECT_EQ(FormatSeconds(std::nan("")), "NaN");
  EXPECT_EQ(FormatSeconds(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatSeconds(1e300), "1e+300s");
}

}  // namespace
}  // namespace connwatch
