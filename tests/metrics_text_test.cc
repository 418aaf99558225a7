// The streaming writer must produce exactly the bytes prometheus-cpp's
// TextSerializer writes for the same snapshot.

#include "web/metrics_text.h"

#include <algorithm>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <limits>
#include <random>

#include "web/metrics_table.h"
#include "web/metrics_view.h"

namespace connwatch {
namespace {

std::string ReferenceTargetText(const Snapshot& snapshot) {
  std::vector<prometheus::MetricFamily> all = BuildMetricFamilies(snapshot);
  std::vector<prometheus::MetricFamily> per_target;
  for (auto& f : all) {
    // The per-target families: their first label is `target` (not every
    // such name starts with connwatch_target_: connwatch_dns_failures_total).
    for (const MetricDef& def : kMetrics) {
      if (def.name == f.name && def.labels[0] == "target") per_target.push_back(std::move(f));
    }
  }
  return prometheus::TextSerializer().Serialize(per_target);
}

std::string StreamedTargetText(const Snapshot& snapshot) {
  std::string out;
  AppendTargetFamilies(snapshot, &out);
  return out;
}

Snapshot RandomSnapshot(std::mt19937_64& rng, size_t targets) {
  const std::string pieces[] = {"db", "-", "_", ".", "\"", "\\", "\n", "é", "\xff", "\xc3", "ü",
                                "\xed\xa0\x80", "😀", "x", " ", "{", "}", "=", ","};
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  auto text = [&] {
    std::string s;
    const size_t n = 1 + pick(6);
    for (size_t i = 0; i < n; ++i) s += pieces[pick(std::size(pieces))];
    return s;
  };
  auto chance = [&](int percent) { return static_cast<int>(pick(100)) < percent; };
  const double doubles[] = {0, 1, 0.1, 3e-06, 1.0 / 3, 1795617962.628006, 1e17, 123456789012345678.0,
                            2.5e-320, 42};
  Snapshot snap;
  for (size_t i = 0; i < targets; ++i) {
    auto cfg = std::make_shared<TargetConfig>();
    cfg->name = text() + std::to_string(i);
    cfg->address = text() + ":" + std::to_string(1 + pick(65535));
    const size_t labels = pick(3);
    for (size_t l = 0; l < labels; ++l) cfg->labels.emplace_back("l" + std::to_string(l), text());
    TargetSnapshot t;
    t.config = cfg;
    t.up = chance(50);
    t.last_change_unix = doubles[pick(std::size(doubles))];
    t.connects = chance(30) ? 0 : rng() >> pick(64);
    for (size_t r = 0; r < kReasonCount; ++r) {
      if (chance(20)) t.connect_failures[r] = rng() >> pick(64);
      if (chance(20)) t.disconnects[r] = 1 + pick(1000);
      if (chance(10)) t.icmp_errors[r] = 1 + pick(50);
    }
    t.retransmits_total = pick(10);
    if (chance(30)) {
      // An endpoint of a target that holds every address (srv: with priority, weight).
      auto endpoint = std::make_shared<EndpointInfo>();
      endpoint->endpoint = chance(50) ? "10.0.0." + std::to_string(pick(256)) + ":6379"
                                      : "[" + text() + "]:80";
      if (chance(50)) {
        endpoint->srv_host = text();
        endpoint->priority = static_cast<int>(pick(65536));
        endpoint->weight = static_cast<int>(pick(65536));
        if (chance(30)) cfg->labels.emplace_back("priority", text());  // left out
      }
      if (chance(20)) cfg->labels.emplace_back("endpoint", text());  // left out
      std::sort(cfg->labels.begin(), cfg->labels.end());
      t.endpoint = endpoint;
      t.name_series = chance(50);
      t.dns_failures = t.name_series ? pick(100) : 0;
    } else {
      t.resolves_name = chance(50);
      t.address_stale = t.resolves_name && chance(30);
      t.dns_failures = t.resolves_name ? pick(100) : 0;
    }
    t.has_rtt = chance(60);
    t.rtt_seconds = doubles[pick(std::size(doubles))];
    if (chance(30)) {
      auto tls = std::make_shared<TlsPeerInfo>();
      tls->version = chance(50) ? "TLSv1.3" : "TLSv1.2";
      tls->cipher = text();
      tls->subject = text();
      tls->issuer = text();
      tls->fingerprint = text();
      tls->earliest_expiry_unix = chance(80) ? doubles[pick(std::size(doubles))] : 0;
      t.tls = tls;
    }
    if (chance(40)) {
      auto canary = std::make_shared<CanarySnapshot>();
      canary->attempted = chance(80);
      canary->up = canary->attempted && chance(50);
      canary->has_duration = canary->attempted && chance(70);
      canary->connect_seconds = doubles[pick(std::size(doubles))];
      for (size_t r = 0; r < kReasonCount; ++r) {
        if (canary->attempted && chance(15)) canary->failures[r] = 1 + pick(1000);
      }
      t.canary = canary;
    }
    t.has_heartbeat = chance(30);
    t.heartbeat_seconds = std::uniform_real_distribution<double>(0, 3)(rng);
    snap.targets.push_back(std::move(t));
  }
  return snap;
}

TEST(MetricsText, ByteIdenticalToTextSerializerOnRandomSnapshots) {
  std::mt19937_64 rng(20261125);
  for (int round = 0; round < 200; ++round) {
    Snapshot snap = RandomSnapshot(rng, static_cast<size_t>(round % 17));
    ASSERT_EQ(StreamedTargetText(snap), ReferenceTargetText(snap)) << "round " << round;
  }
}

TEST(MetricsText, OptionalFamiliesAppearOnlyWithSeries) {
  Snapshot snap;
  TargetSnapshot t;
  auto cfg = std::make_shared<TargetConfig>();
  cfg->name = "a";
  cfg->address = "192.0.2.1:80";
  t.config = cfg;
  snap.targets.push_back(t);
  std::string text = StreamedTargetText(snap);
  EXPECT_EQ(text, ReferenceTargetText(snap));
  EXPECT_EQ(text.find("connwatch_target_rtt_seconds"), std::string::npos);
  EXPECT_EQ(text.find("connwatch_target_disconnects_total"), std::string::npos);
  EXPECT_NE(text.find("connwatch_target_info{target=\"a\",address=\"192.0.2.1:80\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(StreamedTargetText(Snapshot{}), "");
}

TEST(MetricsText, DoublesAsPrometheusCppWritesThem) {
  struct Row {
    double v;
    const char* text;
  } rows[] = {{1, "1"},           {0, "0"},
              {3e-06, "3e-06"},   {1795617962.628006, "1795617962.628006"},
              {0.1, "0.1"},       {1e17, "1e+17"},
              {std::numeric_limits<double>::infinity(), "+Inf"},
              {-std::numeric_limits<double>::infinity(), "-Inf"},
              {std::nan(""), "Nan"}};
  for (const auto& row : rows) {
    std::string out;
    AppendPrometheusDouble(row.v, &out);
    EXPECT_EQ(out, row.text);
  }
}

TEST(MetricsText, RenderMetricsKeepsTableOrderAndDaemonFamilies) {
  std::mt19937_64 rng(7);
  Snapshot snap = RandomSnapshot(rng, 5);
  std::string body = RenderMetrics(snap);
  EXPECT_EQ(body.rfind(ReferenceTargetText(snap), 0), 0u) << "per-target families come first";
  EXPECT_NE(body.find("# TYPE connwatch_targets gauge"), std::string::npos);
  EXPECT_NE(body.find("connwatch_build_info{"), std::string::npos);
}

}  // namespace
}  // namespace connwatch

namespace connwatch {
namespace {

TEST(MetricsText, StreamedInBoundedPiecesWithTheSameBytes) {
  std::mt19937_64 rng(99);
  Snapshot snap = RandomSnapshot(rng, 3000);
  std::string joined;
  size_t pieces = 0, largest = 0;
  WriteTargetFamilies(snap, [&](std::string_view piece) {
    ++pieces;
    largest = std::max(largest, piece.size());
    joined.append(piece);
  });
  EXPECT_EQ(joined, ReferenceTargetText(snap));
  EXPECT_GT(pieces, 3u);
  EXPECT_LT(largest, kChunkBytes + 4096) << "a piece is one chunk plus at most one line";
}

}  // namespace
}  // namespace connwatch
