#include "gzip_stream.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

namespace connwatch {
namespace {

std::string Gunzip(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[65536];
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc == Z_OK);
  EXPECT_EQ(rc, Z_STREAM_END) << "the stream must end with a valid trailer";
  inflateEnd(&z);
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
