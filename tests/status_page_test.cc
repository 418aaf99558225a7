// The status page's pure side: the query, selection and sorting, the strip,
// the compact JSON, and the HTML (escaped, readable without the script).
#include "web/status_page.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>

namespace connwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::shared_ptr<TargetConfig> Config(std::string name, std::string address,
                                     std::vector<std::pair<std::string, std::string>> labels) {
  auto c = std::make_shared<TargetConfig>();
  c->name = std::move(name);
  c->address = std::move(address);
  c->labels = std::move(labels);
  return c;
}

TargetSnapshot Target(std::string name, TargetState state,
                      std::vector<std::pair<std::string, std::string>> labels = {}) {
  TargetSnapshot t;
  t.config = Config(name, name + ".example:80", std::move(labels));
  t.state = state;
  t.up = state == TargetState::kUp;
  t.last_change_unix = 1000;
  return t;
}

Snapshot Fleet() {
  Snapshot s;
  s.taken_unix = 1600;
  s.targets.push_back(Target("alpha", TargetState::kUp, {{"team", "storage"}}));
  s.targets.push_back(Target("beta", TargetState::kBackoff, {{"team", "web"}}));
  s.targets.push_back(Target("gamma", TargetState::kUp, {{"team", "web"}}));
  s.targets.push_back(Target("delta", TargetState::kConnecting));
  for (const auto& t : s.targets) ++s.targets_by_state[static_cast<size_t>(t.state)];
  return s;
}

std::vector<std::string> Names(const Snapshot& s, const StatusSelection& sel) {
  std::vector<std::string> out;
  for (size_t i : sel.rows) out.push_back(s.targets[i].config->name);
  return out;
}

StatusQuery Parse(std::string_view text) {
  StatusQuery q;
  EXPECT_EQ(ParseStatusQuery(text, &q), "") << text;
  return q;
}

TEST(StatusPageTest, DownTargetsComeFirstThenConfigOrder) {
  const Snapshot s = Fleet();
  EXPECT_EQ(Names(s, SelectTargets(s, Parse(""))),
            (std::vector<std::string>{"beta", "delta", "alpha", "gamma"}));
  EXPECT_EQ(Names(s, SelectTargets(s, Parse("sort=config"))),
            (std::vector<std::string>{"alpha", "beta", "gamma", "delta"}));
}

TEST(StatusPageTest, FilterMatchesNameAddressAndLabelsWithEveryWord) {
  const Snapshot s = Fleet();
  EXPECT_EQ(Names(s, SelectTargets(s, Parse("q=team%3Dweb"))),
            (std::vector<std::string>{"beta", "gamma"}));
  EXPECT_EQ(Names(s, SelectTargets(s, Parse("q=WEB+gam"))), std::vector<std::string>{"gamma"});
  EXPECT_EQ(Names(s, SelectTargets(s, Parse("q=delta.example"))),
            std::vector<std::string>{"delta"});
  EXPECT_EQ(Names(s, SelectTargets(s, Parse("state=down"))),
            (std::vector<std::string>{"beta", "delta"}));
  EXPECT_EQ(Names(s, SelectTargets(s, Parse("state=up&q=storage"))),
            std::vector<std::string>{"alpha"});
  // A word never spans two fields (name and address are separate lines).
  EXPECT_TRUE(SelectTargets(s, Parse("q=alphaalpha")).rows.empty());
}

TEST(StatusPageTest, PagesAreBoundedAndCountTheMatches) {
  const Snapshot s = Fleet();
  StatusSelection sel = SelectTargets(s, Parse("limit=2&offset=1"));
  EXPECT_EQ(sel.matched, 4u);
  EXPECT_EQ(Names(s, sel), (std::vector<std::string>{"delta", "alpha"}));
  EXPECT_TRUE(SelectTargets(s, Parse("offset=10")).rows.empty());
  StatusQuery q;
  EXPECT_NE(ParseStatusQuery("limit=0", &q), "");
  EXPECT_NE(ParseStatusQuery("limit=1001", &q), "");
  EXPECT_NE(ParseStatusQuery("state=sideways", &q), "");
  EXPECT_NE(ParseStatusQuery("sort=random", &q), "");
  EXPECT_NE(ParseStatusQuery("offset=-1", &q), "");
  EXPECT_EQ(Parse("").limit, kStatusRows);
}

TEST(StatusPageTest, StripTextHasOneCharacterPerMinute) {
  UpReport r;
  r.strip.fill(UpReport::kNotObserved);
  r.strip[57] = 100;
  r.strip[58] = 0;
  r.strip[59] = 95;
  const std::string text = StripText(r);
  ASSERT_EQ(text.size(), 60u);
  EXPECT_EQ(text.substr(55), "--ud9");
}

TEST(StatusPageTest, CompactJsonCarriesWhatThePageShows) {
  Snapshot s = Fleet();
  TargetSnapshot& beta = s.targets[1];
  beta.last_failure_kind = "disconnect";
  beta.last_failure_reason = Reason::kPeerReset;
  beta.last_failure_errno = 104;  // ECONNRESET
  beta.last_failure_unix = 1500;
  beta.history = UpHistory(1000);
  beta.history.Up(1000);
  beta.history.Down(1300, true);
  beta.history_at = 1600;
  beta.idle_cutoff_seconds = 350.25;
  auto canary = std::make_shared<CanarySnapshot>();
  canary->attempted = true;
  canary->since_unix = 1450;
  canary->last_reason = Reason::kRefused;
  canary->last_errno = 111;  // ECONNREFUSED
  beta.canary = canary;
  const std::string body = CompactTargetsJson(s, Parse("q=beta"));
  auto j = nlohmann::json::parse(body);
  const auto& d = j["data"];
  EXPECT_EQ(d["total"], 4);
  EXPECT_EQ(d["up"], 2);
  EXPECT_EQ(d["matched"], 1);
  EXPECT_EQ(d["now"], 1600);
  const auto& t = d["targets"][0];
  EXPECT_EQ(t["name"], "beta");
  EXPECT_EQ(t["state"], "backoff");
  EXPECT_EQ(t["labels"]["team"], "web");
  EXPECT_EQ(t["failure"]["kind"], "disconnect");
  EXPECT_EQ(t["failure"]["reason"], "peer_reset");
  EXPECT_EQ(t["failure"]["errno"], "ECONNRESET");
  EXPECT_DOUBLE_EQ(t["availability_1h"].get<double>(), 0.5);
  EXPECT_EQ(t["disconnects_1h"], 1);
  EXPECT_EQ(t["strip"].get<std::string>().size(), 60u);
  EXPECT_DOUBLE_EQ(t["idle_cutoff_seconds"].get<double>(), 350.25);
  EXPECT_EQ(t["canary"]["up"], false);
  EXPECT_EQ(t["canary"]["since"], 1450);
  EXPECT_EQ(t["canary"]["reason"], "refused");
  EXPECT_EQ(t["canary"]["errno"], "ECONNREFUSED");
  EXPECT_TRUE(CompactTargetsJson(s, Parse("q=alpha")).find("\"canary\":null") !=
              std::string::npos);
  EXPECT_TRUE(d["targets"].size() == 1);
  EXPECT_TRUE(CompactTargetsJson(s, Parse("q=alpha")).find("\"idle_cutoff_seconds\":null") !=
              std::string::npos);
  EXPECT_TRUE(CompactTargetsJson(s, Parse("q=alpha")).find("\"failure\":null") != std::string::npos);
}

TEST(StatusPageTest, EverythingFromTheConfigIsEscaped) {
  Snapshot s;
  s.taken_unix = 1600;
  s.targets.push_back(Target("<script>alert(1)</script>", TargetState::kBackoff,
                             {{"team\"><img src=x>", "a&b"}}));
  s.targets_by_state[static_cast<size_t>(TargetState::kBackoff)] = 1;
  Event e;
  e.kind = "disconnect";
  e.target = "<b>x</b>";
  e.detail = "'quoted'";
  const std::string page = RenderStatusPage(s, {e}, Parse("q=%3Cscript%3E"));
  EXPECT_THAT(page, Not(HasSubstr("<script>alert")));
  EXPECT_THAT(page, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(page, Not(HasSubstr("<img src=x>")));
  EXPECT_THAT(page, HasSubstr("team&quot;&gt;&lt;img src=x&gt;=a&amp;b"));
  EXPECT_THAT(page, HasSubstr("&lt;b&gt;x&lt;/b&gt;"));
  EXPECT_THAT(page, HasSubstr("&#39;quoted&#39;"));
  EXPECT_THAT(page, HasSubstr("value=\"&lt;script&gt;\""));  // the filter box keeps the text
  EXPECT_EQ(HtmlEscape("caf\xC3\xA9 \xFF"), "caf\xC3\xA9 \xEF\xBF\xBD");
}

TEST(StatusPageTest, PageReadsWithoutTheScript) {
  Snapshot s = Fleet();
  s.targets[1].last_failure_kind = "connect_failure";
  s.targets[1].last_failure_reason = Reason::kRefused;
  s.targets[1].last_failure_errno = 111;  // ECONNREFUSED
  s.targets[1].last_failure_unix = 1540;
  s.targets[1].idle_cutoff_seconds = 350.2;
  // beta (down): new connections work; alpha (up): they fail.
  auto works = std::make_shared<CanarySnapshot>();
  works->attempted = true;
  works->up = true;
  s.targets[1].canary = works;
  auto fails = std::make_shared<CanarySnapshot>();
  fails->attempted = true;
  fails->since_unix = 1480;
  fails->last_reason = Reason::kTimeout;
  s.targets[0].canary = fails;
  const std::string page = RenderStatusPage(s, {}, Parse(""));
  EXPECT_THAT(page, HasSubstr(">new connections work</div>"));
  EXPECT_THAT(page, HasSubstr("<div class=\"canary canary-down\""));
  EXPECT_THAT(page, HasSubstr(">new connections fail: timeout for 2m 0s</div>"));
  EXPECT_THAT(page, HasSubstr("2 of 4 up, 2 down (backoff 1, connecting 1)"));
  // State as colour (class) and as a word.
  EXPECT_THAT(page, HasSubstr("<span class=\"state st-down\">down</span>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"state st-down\">down, connecting</span>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"state st-up\">up</span>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"reason\">refused</span> (ECONNREFUSED) connect failure"));
  EXPECT_THAT(page, HasSubstr(">1m 0s ago<"));
  EXPECT_THAT(page, HasSubstr(">idle cut-off at most 350.2s</div>"));
  const std::string cutoff_div = "<div class=\"cutoff\"";
  EXPECT_EQ(page.find(cutoff_div, page.find(cutoff_div) + 1), std::string::npos)
      << "only the target with a cut-off shows one";
  EXPECT_THAT(page, HasSubstr("<td class=\"for\" title=\"since 1970-01-01 00:16:40 UTC\">10m 0s</td>"));
  EXPECT_THAT(page, HasSubstr("since it started"));
  EXPECT_THAT(page, HasSubstr("<form id=\"filter\" method=\"get\" action=\"./\""));
  // The first row is the down one.
  EXPECT_LT(page.find("<td class=\"name\">beta</td>"), page.find("<td class=\"name\">alpha</td>"));
}


// Any query string: parsed or refused, never a crash; whatever the filter
// text, the page carries it escaped and never raw markup from it.
TEST(StatusPageTest, RandomQueriesAreParsedOrRefusedAndAlwaysEscaped) {
  const Snapshot s = Fleet();
  std::mt19937 rng(7);
  int raw_checks = 0;
  const std::string alphabet = "<>&\"'=%3C%3E%22%00 abq&state=up;sort=offset=limit=19\xff\xc3";
  for (int i = 0; i < 2000; ++i) {
    std::string query = rng() % 4 == 0 ? "" : "q=";
    const size_t n = rng() % 40;
    for (size_t k = 0; k < n; ++k) query.push_back(alphabet[rng() % alphabet.size()]);
    if (rng() % 2) query += "&state=down";
    StatusQuery q;
    if (!ParseStatusQuery(query, &q).empty()) continue;
    EXPECT_LE(q.limit, kMaxStatusRows);
    const std::string page = RenderStatusPage(s, {}, q);
    EXPECT_NE(page.find("value=\"" + HtmlEscape(q.text) + "\""), std::string::npos) << query;
    if (q.text.find('<') != std::string::npos && q.text.size() >= 4) {
      ++raw_checks;
      EXPECT_EQ(page.find(q.text), std::string::npos) << query;
    }
    EXPECT_FALSE(nlohmann::json::parse(CompactTargetsJson(s, q), nullptr, false).is_discarded())
        << query;
  }
  EXPECT_GT(raw_checks, 100);  // the generator does reach markup in the filter
}

}  // namespace
}  // namespace connwatch
