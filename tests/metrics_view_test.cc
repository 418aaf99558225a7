#include "web/metrics_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "web/metrics_table.h"
#include "version.h"

namespace connwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// --- A small parser of the text exposition format -----------------------

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::vector<std::string> label_order;
  double value = 0;
};

struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, std::string> helps;  // family -> help
  std::vector<std::string> families;         // in order of # TYPE lines

  std::vector<const Sample*> Find(const std::string& name) const {
    std::vector<const Sample*> out;
    for (const Sample& s : samples) {
      if (s.name == name) out.push_back(&s);
    }
    return out;
  }
  // The value of the one series `name` with exactly `labels`.
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
};

// Parses `text`; on a line it cannot read, adds a gtest failure.
Exposition Parse(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      e.types[rest.substr(0, sp)] = rest.substr(sp + 1);
      e.families.push_back(rest.substr(0, sp));
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) {
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      e.helps[rest.substr(0, sp)] = rest.substr(sp + 1);
      continue;
    }
    if (line[0] == '#') continue;
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        std::string name = line.substr(i, eq - i);
        i = eq + 2;  // skip ="
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            char c = line[++i];
            value.push_back(c == 'n' ? '\n' : c);
          } else {
            value.push_back(line[i]);
          }
          ++i;
        }
        ++i;  // closing quote
        if (i < line.size() && line[i] == ',') ++i;
        s.labels[name] = value;
        s.label_order.push_back(name);
      }
      ++i;  // '}'
    }
    std::string value = line.substr(i + 1);
    if (value == "+Inf") {
      s.value = std::numeric_limits<double>::infinity();
    } else {
      char* end = nullptr;
      s.value = std::strtod(value.c_str(), &end);
      EXPECT_TRUE(end && *end == '\0') << "cannot parse the value of: " << line;
    }
    e.samples.push_back(std::move(s));
  }
  return e;
}

// --- promtool -------------------------------------------------------------

constexpr const char* kPromtool = "/usr/bin/promtool";

// Runs `promtool check metrics` on `body`; returns its exit status and fills
// `output` with what it printed.
int Promtool(const std::string& body, std::string* output) {
  char path[] = "/tmp/connwatch_metrics_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  FILE* f = fdopen(fd, "w");
  fwrite(body.data(), 1, body.size(), f);
  fclose(f);
  std::string cmd = std::string(kPromtool) + " check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    unlink(path);
    return -1;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  int status = pclose(p);
  unlink(path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

// Shared with http_server_test.cc: fails the test unless promtool accepts
// `body` without a single complaint.
void ExpectPromtoolAccepts(const std::string& body) {
  ASSERT_EQ(access(kPromtool, X_OK), 0)
      << kPromtool << " is not installed. It is part of the development setup: run the "
      << "setup script (it installs the Debian package `prometheus`, which ships promtool).";
  std::string output;
  int status = Promtool(body, &output);
  EXPECT_EQ(status, 0) << "promtool check metrics failed:\n"
                       << output << "\n--- body ---\n"
                       << body;
  EXPECT_EQ(output, "") << "promtool check metrics complained:\n" << output;
}

namespace {

// --- A synthetic snapshot ---------------------------------------------------

std::shared_ptr<TargetConfig> MakeConfig(std::string name, std::string address,
                                         std::vector<std::pair<std::string, std::string>> labels) {
  auto c = std::make_shared<TargetConfig>();
  c->name = std::move(name);
  c->address = std::move(address);
  c->labels = std::move(labels);
  return c;
}

size_t R(Reason r) { return static_cast<size_t>(r); }

Snapshot MakeSnapshot() {
  Snapshot s;
  s.taken_unix = 1714567890.5;
  s.config_loaded = true;
  s.last_reload_successful = true;
  s.last_reload_success_unix = 1714567000.25;

  TargetSnapshot redis;
  redis.config = MakeConfig("redis", "10.0.0.5:6379", {{"env", "prod"}, {"team", "cache"}});
  redis.state = TargetState::kUp;
  redis.up = true;
  redis.last_change_unix = 1714567800.125;
  redis.resolved_address = "10.0.0.5:6379";
  redis.connects = 4;
  redis.connect_failures[R(Reason::kRefused)] = 3;
  redis.disconnects[R(Reason::kPeerReset)] = 2;
  redis.disconnects[R(Reason::kKeepaliveTimeout)] = 1;
  redis.icmp_errors[R(Reason::kHostUnreachable)] = 2;
  redis.retransmits_total = 17;
  redis.has_rtt = true;
  redis.rtt_seconds = 0.000421;
  // Held up, new connections refused: its canary is down.
  auto canary = std::make_shared<CanarySnapshot>();
  canary->attempted = true;
  canary->failures[R(Reason::kRefused)] = 6;
  canary->has_duration = true;
  canary->connect_seconds = 0.00031;
  redis.canary = canary;
  s.targets.push_back(redis);

  TargetSnapshot db;
  db.config = MakeConfig("db", "db.example:5432", {{"env", "staging"}});
  db.state = TargetState::kBackoff;
  db.up = false;
  db.last_change_unix = 1714567000;
  db.connect_failures[R(Reason::kTimeout)] = 5;
  db.connect_failures[R(Reason::kDnsError)] = 1;
  s.targets.push_back(db);

  TargetSnapshot hb;
  hb.config = MakeConfig("hb", "[::1]:7000", {});
  hb.state = TargetState::kUp;
  hb.up = true;
  hb.last_change_unix = 1714567850;
  hb.connects = 1;
  hb.has_rtt = true;
  hb.rtt_seconds = 0.00005;
  hb.has_heartbeat = true;
  hb.heartbeat_seconds = 0.0021;
  auto tls = std::make_shared<TlsPeerInfo>();
  tls->valid = true;
  tls->version = "TLSv1.3";
  tls->cipher = "TLS_AES_256_GCM_SHA384";
  tls->subject = "CN=hb.example,O=Example \"Q\"";
  tls->issuer = "CN=Example CA";
  tls->fingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  tls->earliest_expiry_unix = 1735689600;
  hb.tls = tls;
  hb.idle_cutoff_seconds = 350.5;
  hb.resolves_name = true;  // its address is a name: the re-resolution series
  hb.address_stale = true;
  hb.dns_failures = 3;
  s.targets.push_back(hb);

  s.targets_by_state[static_cast<size_t>(TargetState::kUp)] = 2;
  s.targets_by_state[static_cast<size_t>(TargetState::kBackoff)] = 1;

  s.connect_duration.bounds = {0.001, 0.01, 0.1, 1};
  s.connect_duration.buckets = {2, 3, 0, 0, 0};
  s.connect_duration.count = 5;
  s.connect_duration.sum = 0.0123;

  s.connection_lifetime.bounds = {1, 60, 3600};
  s.connection_lifetime.buckets = {1, 0, 1, 1};
  s.connection_lifetime.count = 3;
  s.connection_lifetime.sum = 9000.5;
  s.tls_handshake_duration.bounds = {0.01, 0.1};
  s.tls_handshake_duration.buckets = {1, 0, 0};
  s.tls_handshake_duration.count = 1;
  s.tls_handshake_duration.sum = 0.004;
  s.checks = 120;
  s.probe_runs[static_cast<size_t>(Detector::kPeek)] = 120;
  s.probe_runs[static_cast<size_t>(Detector::kRead)] = 7;
  s.detections[static_cast<size_t>(Detector::kRead)][R(Reason::kPeerReset)] = 2;
  s.detections[static_cast<size_t>(Detector::kTcpInfo)][R(Reason::kKeepaliveTimeout)] = 1;
  return s;
}

// --- The table ---------------------------------------------------------------

bool IsMetricName(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  }
  return true;
}

TEST(MetricsTable, NamesAreUniqueValidAndFollowConventions) {
  std::set<std::string_view> names;
  for (const MetricDef& def : kMetrics) {
    EXPECT_TRUE(names.insert(def.name).second) << "duplicate " << def.name;
    EXPECT_TRUE(IsMetricName(def.name)) << def.name;
    bool total = def.name.size() > 6 && def.name.substr(def.name.size() - 6) == "_total";
    EXPECT_EQ(total, def.kind == MetricKind::kCounter) << def.name;
    EXPECT_FALSE(def.help.empty()) << def.name;
    EXPECT_EQ(def.help.find('\n'), std::string_view::npos) << def.name;
    EXPECT_EQ(def.help.find('\\'), std::string_view::npos) << def.name;
    EXPECT_EQ(def.help.find('|'), std::string_view::npos) << def.name << " (breaks Markdown)";
    for (size_t i = 0; i < def.label_count(); ++i) {
      EXPECT_TRUE(IsMetricName(def.labels[i])) << def.name;
      EXPECT_NE(def.labels[i].substr(0, 2), "__") << def.name;
    }
  }
  EXPECT_EQ(names.size(), kMetricCount);
}

TEST(MetricsTable, MarkdownHasARowPerMetric) {
  std::string md = MetricsMarkdownTable();
  EXPECT_EQ(md.rfind("| Metric | Type | Labels | Description |\n|---|---|---|---|\n", 0), 0u);
  size_t rows = 0;
  for (char c : md) rows += c == '\n';
  EXPECT_EQ(rows, kMetricCount + 2);
  EXPECT_THAT(md, HasSubstr("| `connwatch_target_connect_failures_total` | counter | `target`, "
                            "`endpoint` (addresses: all, srv), `reason` |"));
  EXPECT_THAT(md, HasSubstr("| `connwatch_target_info` | gauge | `target`, `endpoint` "
                            "(addresses: all, srv), `priority`, `weight` (srv), `address`, user "
                            "labels |"));
  EXPECT_THAT(md, HasSubstr("| `connwatch_dns_failures_total` | counter | `target` |"));
  EXPECT_THAT(md, HasSubstr("| `connwatch_connect_duration_seconds` | histogram | `le` |"));
  EXPECT_THAT(md, HasSubstr("| `process_open_fds` | gauge | - |"));
}

constexpr std::string_view kBeginMarker = "<!-- BEGIN GENERATED METRICS TABLE -->\n";
constexpr std::string_view kEndMarker = "<!-- END GENERATED METRICS TABLE -->\n";

// docs/METRICS.md embeds MetricsMarkdownTable() between two markers. Run with
// CONNWATCH_UPDATE_DOCS=1 to rewrite that part of the file after changing the
// table.
TEST(MetricsTable, DocsMatchTheTable) {
  const std::string path = std::string(CONNWATCH_SOURCE_DIR) + "/docs/METRICS.md";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string doc = buffer.str();
  size_t begin = doc.find(kBeginMarker);
  size_t end = doc.find(kEndMarker);
  ASSERT_NE(begin, std::string::npos) << path << " lacks the line " << kBeginMarker;
  ASSERT_NE(end, std::string::npos) << path << " lacks the line " << kEndMarker;
  ASSERT_LT(begin, end);
  begin += kBeginMarker.size();
  std::string documented = doc.substr(begin, end - begin);
  std::string generated = MetricsMarkdownTable();
  if (documented != generated && std::getenv("CONNWATCH_UPDATE_DOCS") != nullptr) {
    doc.replace(begin, end - begin, generated);
    std::ofstream(path, std::ios::trunc) << doc;
    GTEST_SKIP() << "rewrote the table in " << path;
  }
  EXPECT_EQ(documented, generated)
      << path << " is out of date with daemon/web/metrics_table.h; re-run this test with "
      << "CONNWATCH_UPDATE_DOCS=1 to regenerate it.";
}

// --- The exposition ------------------------------------------------------------

TEST(MetricsView, PerTargetSeries) {
  Exposition e = Parse(RenderMetrics(MakeSnapshot()));
  EXPECT_EQ(e.Value("connwatch_target_up", {{"target", "redis"}}), 1);
  EXPECT_EQ(e.Value("connwatch_target_up", {{"target", "db"}}), 0);
  EXPECT_EQ(e.Value("connwatch_target_up", {{"target", "hb"}}), 1);
  EXPECT_EQ(e.Find("connwatch_target_up").size(), 3u);

  EXPECT_EQ(e.Value("connwatch_target_connects_total", {{"target", "redis"}}), 4);
  EXPECT_EQ(e.Value("connwatch_target_connects_total", {{"target", "db"}}), 0);
  EXPECT_EQ(e.Value("connwatch_target_last_change_timestamp_seconds", {{"target", "redis"}}),
            1714567800.125);
  EXPECT_EQ(e.Value("connwatch_target_retransmits_total", {{"target", "redis"}}), 17);
  EXPECT_EQ(e.Value("connwatch_target_retransmits_total", {{"target", "db"}}), 0);
  EXPECT_EQ(e.types.at("connwatch_target_connects_total"), "counter");
  EXPECT_EQ(e.types.at("connwatch_target_up"), "gauge");
}

TEST(MetricsView, InfoCarriesAddressAndUserLabels) {
  Exposition e = Parse(RenderMetrics(MakeSnapshot()));
  EXPECT_EQ(
      e.Value(
          "connwatch_target_info",
          {{"target", "redis"}, {"address", "10.0.0.5:6379"}, {"env", "prod"}, {"team", "cache"}}),
      1);
  EXPECT_EQ(e.Value("connwatch_target_info",
                    {{"target", "db"}, {"address", "db.example:5432"}, {"env", "staging"}}),
            1);
  EXPECT_EQ(e.Value("connwatch_target_info", {{"target", "hb"}, {"address", "[::1]:7000"}}), 1);
  // Fixed labels first, then the user labels in config (sorted) order.
  auto info = e.Find("connwatch_target_info");
  ASSERT_EQ(info.size(), 3u);
  EXPECT_EQ(info[0]->label_order, (std::vector<std::string>{"target", "address", "env", "team"}));
}

TEST(MetricsView, ReasonSeriesAppearOnlyOnceCounted) {
  Exposition e = Parse(RenderMetrics(MakeSnapshot()));
  auto failures = e.Find("connwatch_target_connect_failures_total");
  ASSERT_EQ(failures.size(), 3u);
  EXPECT_EQ(e.Value("connwatch_target_connect_failures_total",
                    {{"target", "redis"}, {"reason", "refused"}}),
            3);
  EXPECT_EQ(
      e.Value("connwatch_target_connect_failures_total", {{"target", "db"}, {"reason", "timeout"}}),
      5);
  EXPECT_EQ(e.Value("connwatch_target_connect_failures_total",
                    {{"target", "db"}, {"reason", "dns_error"}}),
            1);
  EXPECT_FALSE(e.Value("connwatch_target_connect_failures_total",
                       {{"target", "redis"}, {"reason", "timeout"}}));

  auto disconnects = e.Find("connwatch_target_disconnects_total");
  ASSERT_EQ(disconnects.size(), 2u);
  EXPECT_EQ(e.Value("connwatch_target_disconnects_total",
                    {{"target", "redis"}, {"reason", "peer_reset"}}),
            2);
  EXPECT_EQ(e.Value("connwatch_target_disconnects_total",
                    {{"target", "redis"}, {"reason", "keepalive_timeout"}}),
            1);
  for (const Sample* s : disconnects) EXPECT_NE(s->labels.at("target"), "hb");
}

TEST(MetricsView, NoReasonFamilyBeforeAnyReasonHappened) {
  Snapshot s = MakeSnapshot();
  for (TargetSnapshot& t : s.targets) {
    t.connect_failures.fill(0);
    t.disconnects.fill(0);
  }
  std::string text = RenderMetrics(s);
  EXPECT_THAT(text, Not(HasSubstr("connwatch_target_connect_failures_total")));
  EXPECT_THAT(text, Not(HasSubstr("connwatch_target_disconnects_total")));
  ExpectPromtoolAccepts(text);
}

TEST(MetricsView, RttAndHeartbeatOnlyWhenKnown) {
  Exposition e = Parse(RenderMetrics(MakeSnapshot()));
  auto rtt = e.Find("connwatch_target_rtt_seconds");
  ASSERT_EQ(rtt.size(), 2u);
  EXPECT_EQ(e.Value("connwatch_target_rtt_seconds", {{"target", "redis"}}), 0.000421);
  EXPECT_EQ(e.Value("connwatch_target_rtt_seconds", {{"target", "hb"}}), 0.00005);
  auto hb = e.Find("connwatch_target_heartbeat_duration_seconds");
  ASSERT_EQ(hb.size(), 1u);
  EXPECT_EQ(hb[0]->labels.at("target"), "hb");
  EXPECT_EQ(hb[0]->value, 0.0021);
}

TEST(MetricsView, AllFourStatesAlwaysPresent) {
  for (bool empty : {false, true}) {
    Snapshot s = empty ? Snapshot() : MakeSnapshot();
    Exposition e = Parse(RenderMetrics(s));
    EXPECT_EQ(e.Find("connwatch_targets").size(), 4u);
    EXPECT_EQ(e.Value("connwatch_targets", {{"state", "up"}}), empty ? 0 : 2);
    EXPECT_EQ(e.Value("connwatch_targets", {{"state", "backoff"}}), empty ? 0 : 1);
    EXPECT_EQ(e.Value("connwatch_targets", {{"state", "resolving"}}), 0);
    EXPECT_EQ(e.Value("connwatch_targets", {{"state", "connecting"}}), 0);
  }
}

TEST(MetricsView, HistogramsAreCumulativeWithInfEqualToCount) {
  Snapshot s = MakeSnapshot();
  Exposition e = Parse(RenderMetrics(s));
  struct Case {
    std::string name;
    const HistogramSnapshot* h;
  };
  for (const Case& c : {Case{"connwatch_connect_duration_seconds", &s.connect_duration},
                        Case{"connwatch_connection_lifetime_seconds", &s.connection_lifetime}}) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(e.types.at(c.name), "histogram");
    auto buckets = e.Find(c.name + "_bucket");
    ASSERT_EQ(buckets.size(), c.h->bounds.size() + 1);
    double previous = 0;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      const Sample* b = buckets[i];
      EXPECT_GE(b->value, previous);
      previous = b->value;
      cumulative += c.h->buckets[i];
      EXPECT_EQ(b->value, static_cast<double>(cumulative));
      if (i < c.h->bounds.size()) {
        EXPECT_EQ(std::strtod(b->labels.at("le").c_str(), nullptr), c.h->bounds[i]);
      } else {
        EXPECT_EQ(b->labels.at("le"), "+Inf");
      }
    }
    EXPECT_EQ(e.Value(c.name + "_bucket", {{"le", "+Inf"}}), c.h->count);
    EXPECT_EQ(e.Value(c.name + "_count"), c.h->count);
    EXPECT_EQ(e.Value(c.name + "_sum"), c.h->sum);
  }
  EXPECT_EQ(e.Value("connwatch_connect_duration_seconds_bucket", {{"le", "0.01"}}), 5);
  EXPECT_EQ(e.Value("connwatch_connection_lifetime_seconds_bucket", {{"le", "60"}}), 1);
  EXPECT_EQ(e.Value("connwatch_connection_lifetime_seconds_bucket", {{"le", "3600"}}), 2);
}

TEST(MetricsView, EmptyHistogramHasOnlyInf) {
  Exposition e = Parse(RenderMetrics(Snapshot()));
  EXPECT_EQ(e.Find("connwatch_connect_duration_seconds_bucket").size(), 1u);
  EXPECT_EQ(e.Value("connwatch_connect_duration_seconds_bucket", {{"le", "+Inf"}}), 0);
  EXPECT_EQ(e.Value("connwatch_connect_duration_seconds_count"), 0);
}

TEST(MetricsView, ConfigAndBuildInfo) {
  Snapshot s = MakeSnapshot();
  Exposition e = Parse(RenderMetrics(s));
  EXPECT_EQ(e.Value("connwatch_config_last_reload_successful"), 1);
  EXPECT_EQ(e.Value("connwatch_config_last_reload_success_timestamp_seconds"), 1714567000.25);
  EXPECT_EQ(e.Value("connwatch_build_info", {{"version", kVersion}, {"revision", kRevision}}), 1);
  s.last_reload_successful = false;
  EXPECT_EQ(Parse(RenderMetrics(s)).Value("connwatch_config_last_reload_successful"), 0);
}

TEST(MetricsView, ProcessMetrics) {
  std::optional<ProcessStats> stats = ReadProcessStats();
  ASSERT_TRUE(stats);
  EXPECT_GE(stats->cpu_seconds, 0);
  EXPECT_GT(stats->resident_memory_bytes, 1 << 20);
  EXPECT_GE(stats->virtual_memory_bytes, stats->resident_memory_bytes);
  EXPECT_GE(stats->open_fds, 3);  // stdin, stdout, stderr at least
  EXPECT_GE(stats->max_fds, stats->open_fds);
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(stats->start_time_seconds, now + 1);
  EXPECT_GT(stats->start_time_seconds, now - 7 * 24 * 3600.0)
      << "the test process started more than a week ago?";

  Exposition e = Parse(RenderMetrics(Snapshot()));
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                           "process_start_time_seconds"}) {
    EXPECT_EQ(e.Find(name).size(), 1u) << name;
  }
  EXPECT_EQ(e.types.at("process_cpu_seconds_total"), "counter");
}

TEST(MetricsView, FamiliesFollowTheTable) {
  Exposition e = Parse(RenderMetrics(MakeSnapshot()));
  std::vector<std::string> expected;
  for (const MetricDef& def : kMetrics) {
    expected.emplace_back(def.name);
    EXPECT_EQ(e.types.at(std::string(def.name)), MetricKindName(def.kind)) << def.name;
    EXPECT_EQ(e.helps.at(std::string(def.name)), def.help) << def.name;
  }
  EXPECT_EQ(e.families, expected);
}

TEST(MetricsView, EscapesAnyByteInLabelValues) {
  Snapshot s;
  TargetSnapshot t;
  t.config = MakeConfig("we\"ird\\na\nme \xff\xfe end", "h:1", {{"note", "tab\there \xc3\x28"}});
  t.connect_failures[R(Reason::kRefused)] = 1;
  s.targets.push_back(t);
  std::string text = RenderMetrics(s);
  ExpectPromtoolAccepts(text);
  Exposition e = Parse(text);
  EXPECT_EQ(
      e.Value("connwatch_target_up", {{"target", "we\"ird\\na\nme \xEF\xBF\xBD\xEF\xBF\xBD end"}}),
      0);
  EXPECT_EQ(
      e.Value("connwatch_target_info", {{"target", "we\"ird\\na\nme \xEF\xBF\xBD\xEF\xBF\xBD end"},
                                        {"address", "h:1"},
                                        {"note", "tab\there \xEF\xBF\xBD("}}),
      1);
}

TEST(MetricsView, PromtoolAcceptsTheExposition) {
  ExpectPromtoolAccepts(RenderMetrics(MakeSnapshot()));
  ExpectPromtoolAccepts(RenderMetrics(Snapshot()));
}

TEST(MetricsView, CollectableUsesTheLatestSnapshot) {
  auto snapshot = std::make_shared<Snapshot>(MakeSnapshot());
  std::shared_ptr<const Snapshot> current = snapshot;
  int calls = 0;
  MetricsView view([&] {
    ++calls;
    return current;
  });
  std::vector<prometheus::MetricFamily> families = view.Collect();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(families.size(), kMetricCount);
  Exposition e = Parse(prometheus::TextSerializer().Serialize(families));
  EXPECT_EQ(e.Value("connwatch_target_up", {{"target", "redis"}}), 1);

  snapshot = std::make_shared<Snapshot>(MakeSnapshot());
  snapshot->targets[0].up = false;
  current = snapshot;
  e = Parse(prometheus::TextSerializer().Serialize(view.Collect()));
  EXPECT_EQ(e.Value("connwatch_target_up", {{"target", "redis"}}), 0);

  // No snapshot: only what does not come from the loop.
  current = nullptr;
  std::set<std::string> names;
  for (const auto& f : view.Collect()) names.insert(f.name);
  EXPECT_EQ(names, (std::set<std::string>{"connwatch_build_info", "process_cpu_seconds_total",
                                          "process_resident_memory_bytes",
                                          "process_virtual_memory_bytes", "process_open_fds",
                                          "process_max_fds", "process_start_time_seconds"}));
}

TEST(MetricsView, ManyTargets) {
  Snapshot s;
  constexpr size_t kTargets = 20000;
  s.targets.reserve(kTargets);
  for (size_t i = 0; i < kTargets; ++i) {
    TargetSnapshot t;
    t.config = MakeConfig("t" + std::to_string(i), "10.0.0.1:" + std::to_string(i % 65535),
                          {{"shard", std::to_string(i % 16)}});
    t.up = i % 2 == 0;
    t.has_rtt = t.up;
    t.rtt_seconds = 0.001;
    if (i % 100 == 0) t.disconnects[R(Reason::kPeerClosed)] = 1;
    s.targets.push_back(std::move(t));
  }
  Exposition e = Parse(RenderMetrics(s));
  EXPECT_EQ(e.Find("connwatch_target_up").size(), kTargets);
  EXPECT_EQ(e.Find("connwatch_target_rtt_seconds").size(), kTargets / 2);
  EXPECT_EQ(e.Find("connwatch_target_disconnects_total").size(), kTargets / 100);
}

}  // namespace
}  // namespace connwatch
