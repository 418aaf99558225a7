#include "web/gzip_stream.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

#include "test_util.h"

namespace connwatch {
namespace {

std::string Gunzip(const std::string& in) {
  bool complete = false;
  std::string out = testing::Gunzip(in, &complete);
  EXPECT_TRUE(complete) << "the stream must end with a valid trailer";
  return out;
}

TEST(GzipStream, RoundTripsManyPieces) {
  std::string original, compressed;
  GzipStream gz([&](std::string_view piece) { compressed.append(piece); });
  ASSERT_TRUE(gz.ok());
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::string piece = "connwatch_target_up{target=\"t" + std::to_string(rng() % 50000) + "\"} 1\n";
    original += piece;
    gz.Write(piece);
  }
  gz.Finish();
  EXPECT_EQ(compressed.substr(0, 2), std::string("\x1f\x8b", 2)) << "gzip magic";
  EXPECT_LT(compressed.size(), original.size() / 3);
  EXPECT_EQ(Gunzip(compressed), original);
}

TEST(GzipStream, EmptyInputIsAValidEmptyGzip) {
  std::string compressed;
  GzipStream gz([&](std::string_view piece) { compressed.append(piece); });
  gz.Finish();
  EXPECT_EQ(Gunzip(compressed), "");
}

}  // namespace
}  // namespace connwatch
