// Every PromQL expression shipped with connwatch (the Grafana dashboard, the
// alerting rules and their unit tests) may name only metrics connwatchd
// really exports: the rows of kMetrics in daemon/web/metrics_table.h (a
// histogram as its _bucket, _sum and _count series), plus the series
// Prometheus makes itself (up, ALERTS...). A renamed metric or a typo in a
// panel fails here instead of showing an empty graph.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "web/metrics_table.h"

namespace connwatch {
namespace {

using Json = nlohmann::json;

const std::set<std::string, std::less<>> kFunctions = {
    // PromQL functions.
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad",
    "rate", "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp",
    "vector", "year",
    // The @ modifier's start() and end().
    "start", "end",
    // Grafana's template variable queries.
    "label_values", "label_names", "metrics", "query_result"};

const std::set<std::string, std::less<>> kAggregations = {
    "sum",    "min",   "max",          "avg",     "group", "stddev",
    "stdvar", "count", "count_values", "bottomk", "topk",  "quantile"};

// Followed by a parenthesized list of label names.
const std::set<std::string, std::less<>> kLabelListKeywords = {
    "by", "without", "on", "ignoring", "group_left", "group_right"};

const std::set<std::string, std::less<>> kKeywords = {"and",    "or",    "unless", "bool",
                                                      "offset", "atan2", "inf",    "nan"};

// Series Prometheus writes itself, not connwatchd.
const std::set<std::string, std::less<>> kBuiltinSeries = {"up",
                                                           "ALERTS",
                                                           "ALERTS_FOR_STATE",
                                                           "scrape_duration_seconds",
                                                           "scrape_samples_scraped",
                                                           "scrape_samples_post_metric_relabeling",
                                                           "scrape_series_added"};

std::set<std::string, std::less<>> ExportedSeries() {
  std::set<std::string, std::less<>> names;
  for (const MetricDef& def : kMetrics) {
    if (def.kind == MetricKind::kHistogram) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        names.insert(std::string(def.name) + suffix);
      }
    } else {
      names.insert(std::string(def.name));
    }
  }
  return names;
}

struct Names {
  std::vector<std::string> metrics;    // identifiers used as series names.
  std::vector<std::string> functions;  // called names that are no function.
};

bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }

// Index just past the bracket that closes the one at `open` (strings inside
// skipped); the end of `s` when unbalanced.
size_t SkipBalanced(std::string_view s, size_t open) {
  const char open_c = s[open];
  const char close_c = open_c == '(' ? ')' : open_c == '[' ? ']' : '}';
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      for (++i; i < s.size() && s[i] != c; ++i) {
        if (s[i] == '\\' && c != '`') ++i;
      }
      continue;
    }
    if (c == open_c) ++depth;
    if (c == close_c && --depth == 0) return i + 1;
  }
  return s.size();
}

size_t SkipSpace(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// Grafana variables ($job, ${job}, $__rate_interval, [[job]]) become "0".
std::string ReplaceGrafanaVariables(std::string_view expr) {
  std::string out;
  for (size_t i = 0; i < expr.size(); ++i) {
    if (expr[i] == '$') {
      size_t j = i + 1;
      if (j < expr.size() && expr[j] == '{') {
        while (j < expr.size() && expr[j] != '}') ++j;
        i = j;
      } else {
        while (j < expr.size() && IsIdentChar(expr[j])) ++j;
        i = j - 1;
      }
      out += '0';
    } else {
      out += expr[i];
    }
  }
  return out;
}

void Extract(std::string_view s, Names* names) {
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && c != '`') ++j;
      }
      i = j + 1;
    } else if (c == '{' || c == '[') {
      i = SkipBalanced(s, i);  // label matchers; ranges and subqueries.
    } else if (c == '#') {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if ((c >= '0' && c <= '9') ||
               (c == '.' && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9')) {
      while (i < s.size() && (IsIdentChar(s[i]) || s[i] == '.')) ++i;  // 1e3, 0x1f, 5m.
    } else if (IsIdentStart(c)) {
      size_t end = i;
      while (end < s.size() && IsIdentChar(s[end])) ++end;
      const std::string ident(s.substr(i, end - i));
      std::string lower = ident;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      const size_t next = SkipSpace(s, end);
      const bool call = next < s.size() && s[next] == '(';
      size_t after_word = next;
      while (after_word < s.size() && IsIdentChar(s[after_word])) ++after_word;
      const std::string next_word(s.substr(next, after_word - next));
      i = end;
      if (kLabelListKeywords.count(ident) > 0) {
        if (call) i = SkipBalanced(s, next);
      } else if (kAggregations.count(ident) > 0 &&
                 (call || next_word == "by" || next_word == "without")) {
        // An aggregation; its argument list is read as usual.
      } else if (call && (ident == "label_values" || ident == "query_result")) {
        // Grafana: label_values(label), label_values(series, label),
        // query_result(query). Only the series or query names metrics.
        const size_t close = SkipBalanced(s, next);
        const std::string_view args = s.substr(next + 1, close - next - 2);
        size_t comma = std::string_view::npos;
        for (size_t k = 0; k < args.size(); ++k) {
          if (args[k] == '{' || args[k] == '(' || args[k] == '[') {
            k = SkipBalanced(args, k) - 1;
          } else if (args[k] == ',') {
            comma = k;
            break;
          }
        }
        if (ident == "query_result") {
          Extract(args, names);
        } else if (comma != std::string_view::npos) {
          Extract(args.substr(0, comma), names);
        }
        i = close;
      } else if (call) {
        if (kFunctions.count(ident) == 0) names->functions.push_back(ident);
      } else if (kKeywords.count(lower) > 0) {
        // and, or, offset, Inf...
      } else {
        names->metrics.push_back(ident);
      }
    } else {
      ++i;
    }
  }
}

Names ExtractNames(std::string_view expr) {
  Names names;
  Extract(ReplaceGrafanaVariables(expr), &names);
  return names;
}

std::string SourcePath(const std::string& relative);

// The series the shipped rules record (connwatch:...): a dashboard or
// another rule may use them like exported ones.
std::set<std::string, std::less<>> RecordedSeries() {
  std::set<std::string, std::less<>> names;
  YAML::Node root = YAML::LoadFile(SourcePath("packaging/prometheus/connwatch-rules.yml"));
  for (const auto& group : root["groups"]) {
    for (const auto& rule : group["rules"]) {
      if (rule["record"]) names.insert(rule["record"].as<std::string>());
    }
  }
  return names;
}

// The unknown names of `expr`, as "metric x" / "function f" strings.
std::vector<std::string> Unknown(std::string_view expr) {
  static const auto exported = ExportedSeries();
  static const auto recorded = RecordedSeries();
  std::vector<std::string> unknown;
  Names names = ExtractNames(expr);
  for (const std::string& m : names.metrics) {
    if (exported.count(m) == 0 && kBuiltinSeries.count(m) == 0 && recorded.count(m) == 0) {
      unknown.push_back("metric " + m);
    }
  }
  for (const std::string& f : names.functions) unknown.push_back("function " + f);
  return unknown;
}

std::string SourcePath(const std::string& relative) {
  return std::string(CONNWATCH_SOURCE_DIR) + "/" + relative;
}

struct Expr {
  std::string where;  // "panel 'Up ratio'", "alert ConnwatchTargetDown"...
  std::string expr;
};

void CollectJson(const nlohmann::json& j, const std::string& where, std::vector<Expr>* out) {
  if (j.is_object()) {
    std::string here = where;
    if (j.contains("title") && j["title"].is_string()) {
      here = "panel '" + j["title"].get<std::string>() + "'";
    } else if (j.contains("name") && j["name"].is_string()) {
      here = "'" + j["name"].get<std::string>() + "'";
    }
    const bool variable = j.value("type", "") == "query";
    for (const auto& [key, value] : j.items()) {
      if (key == "expr" && value.is_string()) {
        out->push_back({here, value.get<std::string>()});
      } else if (variable && key == "query") {
        // A query variable: "query" is the string, or {"query": string, ...}.
        const Json& q = value.is_object() ? value.value("query", Json()) : value;
        if (q.is_string()) out->push_back({"variable " + here, q.get<std::string>()});
      } else if (variable && key == "definition") {
        // Grafana's display copy of the query.
      } else {
        CollectJson(value, here, out);
      }
    }
  } else if (j.is_array()) {
    for (const auto& v : j) CollectJson(v, where, out);
  }
}

std::vector<Expr> DashboardExprs() {
  std::ifstream in(SourcePath("packaging/grafana/connwatch.json"));
  EXPECT_TRUE(in) << "cannot read packaging/grafana/connwatch.json";
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "packaging/grafana/connwatch.json is not JSON";
  std::vector<Expr> out;
  if (!j.is_discarded()) CollectJson(j, "dashboard", &out);
  return out;
}

std::vector<Expr> RuleExprs() {
  std::vector<Expr> out;
  YAML::Node root = YAML::LoadFile(SourcePath("packaging/prometheus/connwatch-rules.yml"));
  for (const auto& group : root["groups"]) {
    for (const auto& rule : group["rules"]) {
      std::string name = rule["alert"] ? "alert " + rule["alert"].as<std::string>()
                                       : "record " + rule["record"].as<std::string>();
      out.push_back({name, rule["expr"].as<std::string>()});
    }
  }
  return out;
}

// The input series and PromQL tests of the rules' unit tests: they must
// speak about the same metrics as the daemon, or they test nothing.
std::vector<Expr> RuleTestExprs() {
  std::vector<Expr> out;
  YAML::Node root = YAML::LoadFile(SourcePath("packaging/prometheus/connwatch-rules.test.yml"));
  int n = 0;
  for (const auto& test : root["tests"]) {
    ++n;
    for (const auto& series : test["input_series"]) {
      out.push_back(
          {"test " + std::to_string(n) + " input series", series["series"].as<std::string>()});
    }
    for (const auto& t : test["promql_expr_test"]) {
      out.push_back(
          {"test " + std::to_string(n) + " promql_expr_test", t["expr"].as<std::string>()});
    }
  }
  return out;
}

void ExpectOnlyExportedMetrics(const std::vector<Expr>& exprs) {
  for (const Expr& e : exprs) {
    std::vector<std::string> unknown = Unknown(e.expr);
    std::string list;
    for (const std::string& u : unknown) list += "\n  unknown " + u;
    EXPECT_TRUE(unknown.empty()) << e.where << ": " << e.expr << list;
  }
}

TEST(PromqlNames, ExtractsSeriesNamesAndSkipsEverythingElse) {
  Names n = ExtractNames(
      "histogram_quantile(0.9, sum by (le, job) (rate(connwatch_connect_duration_seconds_bucket"
      "{job=~\"$job\", target=\"a{b}\"}[$__rate_interval])))\n"
      "/ on (job) group_left (version) connwatch_build_info offset 5m\n"
      "or sum(up) without (instance) and bool 1e3 > Inf unless label_replace(ALERTS, \"dst\", "
      "\"$1\", \"src\", \"(.*)\") or count_values(\"v\", process_open_fds) @ start()\n"
      "or max_over_time(connwatch_target_up[1h:5m]) # comment metric_in_comment");
  EXPECT_EQ(n.metrics, (std::vector<std::string>{"connwatch_connect_duration_seconds_bucket",
                                                 "connwatch_build_info", "up", "ALERTS",
                                                 "process_open_fds", "connwatch_target_up"}));
  EXPECT_TRUE(n.functions.empty());
  EXPECT_EQ(ExtractNames("label_values(connwatch_target_info{job=~\"$job\"}, target)").metrics,
            std::vector<std::string>{"connwatch_target_info"});
  EXPECT_TRUE(ExtractNames("label_values(target)").metrics.empty());
  EXPECT_EQ(ExtractNames("query_result(topk(5, connwatch_target_rtt_seconds))").metrics,
            std::vector<std::string>{"connwatch_target_rtt_seconds"});
}

// The checker catches what it exists for: a deliberately wrong expression.
TEST(PromqlNames, CatchesTyposRemovedMetricsAndBareHistograms) {
  EXPECT_EQ(Unknown("sum by (reason) (rate(connwatch_target_disconect_total{job=\"x\"}[5m]))"),
            std::vector<std::string>{"metric connwatch_target_disconect_total"});
  EXPECT_EQ(Unknown("connwatch_target_up == 0 and connwatch_target_dwon"),
            std::vector<std::string>{"metric connwatch_target_dwon"});
  // A classic histogram has no series under its bare name.
  EXPECT_EQ(Unknown("rate(connwatch_connect_duration_seconds[5m])"),
            std::vector<std::string>{"metric connwatch_connect_duration_seconds"});
  EXPECT_EQ(Unknown("label_values(connwatch_target_inf, target)"),
            std::vector<std::string>{"metric connwatch_target_inf"});
  EXPECT_EQ(Unknown("histogram_quantil(0.9, connwatch_connect_duration_seconds_bucket)"),
            std::vector<std::string>{"function histogram_quantil"});
  EXPECT_TRUE(Unknown("histogram_quantile(0.9, sum by (le) (rate("
                      "connwatch_connection_lifetime_seconds_bucket[5m])))")
                  .empty());
  EXPECT_TRUE(Unknown("up{job=\"connwatch\"} == 0 or absent(up{job=\"connwatch\"})").empty());
  EXPECT_TRUE(Unknown("time() - process_start_time_seconds").empty());
}

TEST(PromqlNames, DashboardUsesOnlyExportedMetrics) {
  std::vector<Expr> exprs = DashboardExprs();
  // Panels, annotations and variables all contribute; an empty result would
  // mean the walk found nothing to check.
  EXPECT_GE(exprs.size(), 30u);
  size_t variables = 0, annotations = 0;
  for (const Expr& e : exprs) {
    if (e.where.rfind("variable", 0) == 0) ++variables;
    if (e.expr.find("changes(") != std::string::npos) ++annotations;
    EXPECT_FALSE(ExtractNames(e.expr).metrics.empty()) << e.where << " names no metric: " << e.expr;
  }
  EXPECT_EQ(variables, 3u);
  EXPECT_GE(annotations, 2u);
  ExpectOnlyExportedMetrics(exprs);
}

TEST(PromqlNames, RulesUseOnlyExportedMetrics) {
  std::vector<Expr> exprs = RuleExprs();
  EXPECT_EQ(exprs.size(), 12u);  // every rule of connwatch-rules.yml
  for (const Expr& e : exprs) {
    EXPECT_FALSE(ExtractNames(e.expr).metrics.empty()) << e.where << ": " << e.expr;
  }
  ExpectOnlyExportedMetrics(exprs);
}

TEST(PromqlNames, RuleTestsUseOnlyExportedMetrics) {
  std::vector<Expr> exprs = RuleTestExprs();
  EXPECT_GE(exprs.size(), 10u);
  ExpectOnlyExportedMetrics(exprs);
}

}  // namespace
}  // namespace connwatch
