// A fleet end to end (docs/FLEET.md): two connwatchd shards (--shard=0/2 and
// 1/2) run the same config, one real Prometheus (Debian's /usr/bin/prometheus)
// scrapes both, and Prometheus alone is asked whether the picture is whole:
// every target up exactly once, the shards' skipped counts adding up to the
// list, and a reload of both growing the list. Also the flag's errors and
// what --check-config says about a shard.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/shard.h"
#include "http_client.h"
#include "prometheus_server.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using testing::RunProgram;
using testing::RunResult;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;
using testing::WaitFor;

constexpr const char* kPrometheus = testing::kPrometheusBinary;
constexpr milliseconds kDeadline{20000};

// `count` targets, all held to the one peer (names decide the shard).
std::string FleetConfig(int count, uint16_t port) {
  std::string yaml =
      "defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
      "  backoff: {initial: 100ms, max: 500ms}\ntargets:\n";
  for (int i = 0; i < count; ++i) {
    yaml += "  - name: fleet-" + std::to_string(i) + "\n    address: 127.0.0.1:" +
            std::to_string(port) + "\n";
  }
  return yaml;
}

class FleetE2E : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      if (prometheus_.started()) std::cerr << "--- prometheus output:\n" << prometheus_.Output();
      for (size_t i = 0; i < shards_.size(); ++i) {
        std::cerr << "--- connwatchd shard " << i << " output:\n" << shards_[i]->Output();
      }
    }
    prometheus_ = testing::PrometheusServer();
    shards_.clear();
  }

  int StartShard(const std::string& config, const std::string& spec) {
    shards_.push_back(std::make_unique<Subprocess>(std::vector<std::string>{
        CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config, "--web.listen-address=127.0.0.1:0",
        "--shard=" + spec}));
    std::string line = shards_.back()->WaitForLine("msg=listening", milliseconds(5000));
    return line.empty() ? 0 : std::stoi(testing::LogfmtValue(line, "port"));
  }

  void StartPrometheus(const std::vector<int>& ports) {
    std::string targets;
    for (int port : ports) {
      targets += std::string(targets.empty() ? "" : ", ") + "'127.0.0.1:" + std::to_string(port) +
                 "'";
    }
    const std::string config = dir_.Write(
        "prometheus.yml",
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: connwatch\n    static_configs:\n      - targets: [" +
            targets + "]\n");
    const std::string why = prometheus_.Start(config, dir_.path(), kDeadline);
    if (!why.empty()) FAIL() << why;
  }

  // The value of a one-series instant query ("" when it has no single result).
  std::string Scalar(const std::string& promql) {
    const Json result = prometheus_.Query(promql);
    if (!result.is_array() || result.size() != 1) return "";
    return result[0]["value"][1].get<std::string>();
  }
  void ExpectEventually(const std::string& promql, const std::string& value) {
    std::string last;
    bool ok = WaitFor(
        [&] {
          last = Scalar(promql);
          return last == value;
        },
        kDeadline);
    EXPECT_TRUE(ok) << promql << ": expected " << value << " within " << kDeadline.count()
                    << " ms, last answer \"" << last << "\"";
  }

  TempDir dir_;
  std::vector<std::unique_ptr<Subprocess>> shards_;
  testing::PrometheusServer prometheus_;
};

TEST_F(FleetE2E, TwoShardsAndOnePrometheusSeeTheWholeList) {
  ASSERT_EQ(access(kPrometheus, X_OK), 0)
      << kPrometheus << " is missing: run scripts/setup.sh (it installs Debian's prometheus)";
  TestPeer peer;
  ASSERT_EQ(peer.Start(), "");
  constexpr int kTargets = 12;
  const std::string config = dir_.Write("connwatch.yaml", FleetConfig(kTargets, peer.port()));
  // The split is the hash's: this checks the test is not vacuous (each shard
  // has some targets).
  int on_zero = 0;
  for (int i = 0; i < kTargets; ++i) on_zero += ShardOf("fleet-" + std::to_string(i), 2) == 0;
  ASSERT_GT(on_zero, 0);
  ASSERT_LT(on_zero, kTargets);

  const int port0 = StartShard(config, "0/2");
  ASSERT_GT(port0, 0) << shards_.back()->Output();
  const int port1 = StartShard(config, "1/2");
  ASSERT_GT(port1, 0) << shards_.back()->Output();
  StartPrometheus({port0, port1});
  if (HasFatalFailure()) return;

  const std::string all = std::to_string(kTargets);
  ExpectEventually("count(up{job=\"connwatch\"} == 1)", "2");
  ExpectEventually("count(connwatch_target_up)", all);
  ExpectEventually("sum(connwatch_target_up)", all);
  // No target is watched twice, and each shard skips what the other keeps.
  ExpectEventually("max(count by (target) (connwatch_target_up))", "1");
  ExpectEventually("sum(connwatch_shard_targets_skipped)", all);
  ExpectEventually("count(connwatch_shard_info{total=\"2\"})", "2");
  ExpectEventually("count(connwatch_target_up{instance=\"127.0.0.1:" + std::to_string(port0) +
                       "\"})",
                   std::to_string(on_zero));
  EXPECT_TRUE(peer.WaitForOpenConnections(kTargets, kDeadline))
      << "the peer holds " << peer.open_connections() << " connections, expected " << kTargets;

  // Reload applies the shard to the new list too.
  constexpr int kGrown = 20;
  dir_.Write("connwatch.yaml", FleetConfig(kGrown, peer.port()));
  for (auto& shard : shards_) shard->Signal(SIGHUP);
  ExpectEventually("count(connwatch_target_up)", std::to_string(kGrown));
  ExpectEventually("max(count by (target) (connwatch_target_up))", "1");
  ExpectEventually("sum(connwatch_shard_targets_skipped)", std::to_string(kGrown));
}

TEST(FleetFlags, CheckConfigReportsTheShard) {
  TempDir dir;
  const std::string config = dir.Write("connwatch.yaml", FleetConfig(12, 9));
  int kept = 0;
  for (int i = 0; i < 12; ++i) kept += ShardOf("fleet-" + std::to_string(i), 3) == 1;
  RunResult r = RunProgram(
      {CONNWATCHD_BINARY, "--check-config", "--config.file=" + config, "--shard=1/3"},
      milliseconds(10000));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, config + ": OK, 12 target(s) from 1 file(s); shard 1/3 keeps " +
                          std::to_string(kept) + " of them\n");
  // The flag overrides the file; 0/1 is no sharding.
  const std::string sharded = dir.Write(
      "sharded.yaml", "global:\n  shard: {index: 0, total: 2}\n" + FleetConfig(12, 9));
  r = RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + sharded, "--shard=0/1"},
                 milliseconds(10000));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, sharded + ": OK, 12 target(s) from 1 file(s)\n");
}

TEST(FleetFlags, BadShardFlagIsAClearError) {
  TempDir dir;
  const std::string config = dir.Write("connwatch.yaml", "targets: []\n");
  for (const auto& [spec, message] : std::vector<std::pair<std::string, std::string>>{
           {"2/2", "the shard index I must be from 0 to N-1 = 1, got 2"},
           {"1of2", "expected I/N (shard I of N, I from 0 to N-1, e.g. 0/4), got \"1of2\""},
           {"0/0", "the number of shards N must be from 1 to 65536, got 0"}}) {
    RunResult r = RunProgram(
        {CONNWATCHD_BINARY, "--check-config", "--config.file=" + config, "--shard=" + spec},
        milliseconds(10000));
    EXPECT_NE(r.status, 0) << spec << ": " << r.output;
    EXPECT_NE(r.output.find("--shard"), std::string::npos) << spec << ": " << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << spec << ": " << r.output;
  }
}

}  // namespace
}  // namespace connwatch
