// Basic auth: equal time for known and unknown users whatever the costs of
// the configured hashes, and bounded bcrypt work.

#include "web/basic_auth.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string Bcrypt(const std::string& password, unsigned long cost) {
  return testing::BcryptHash(password, cost);
}
std::string Header(const std::string& user, const std::string& password) {
  return testing::BasicAuthHeader(user, password);
}

// Median wall times of failed checks with each of `headers`, measured in
// turns (one of each, again and again) so that load on the machine falls on
// all of them alike.
std::vector<double> MedianMs(BasicAuthenticator& auth, const std::vector<std::string>& headers,
                             int rounds) {
  std::vector<std::vector<double>> ms(headers.size());
  for (int i = 0; i < rounds; ++i) {
    for (size_t h = 0; h < headers.size(); ++h) {
      const auto start = Clock::now();
      EXPECT_FALSE(auth.Check(headers[h]));
      ms[h].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
  }
  std::vector<double> medians;
  for (auto& m : ms) {
    std::sort(m.begin(), m.end());
    medians.push_back(m[m.size() / 2]);
  }
  return medians;
}

TEST(BasicAuthTiming, UnknownAndKnownUsersTakeAsLongWhateverTheCosts) {
  // Costs 11 and 4: a check at 11 costs about 128 times one at 4. The dummy
  // hash of an unknown user must cost as much as the highest one, and the
  // cheap user must wait as long.
  BasicAuthenticator auth({{"alice", Bcrypt("right", 11)}, {"bob", Bcrypt("right", 4)}});
  ASSERT_EQ(auth.max_cost(), 11);
  const std::vector<double> m = MedianMs(
      auth, {Header("alice", "wrong"), Header("bob", "wrong"), Header("mallory", "wrong")}, 7);
  const double alice = m[0], bob = m[1], nobody = m[2];
  // Within a third of each other (the machine is shared; bcrypt at 4 alone
  // would be below 1% of alice's time).
  EXPECT_GT(alice, 20.0) << "cost 11 took " << alice << " ms: too fast to compare";
  EXPECT_NEAR(bob / alice, 1.0, 0.34) << "alice " << alice << " ms, bob " << bob << " ms";
  EXPECT_NEAR(nobody / alice, 1.0, 0.34) << "alice " << alice << " ms, unknown " << nobody << " ms";
  EXPECT_TRUE(auth.Check(Header("bob", "right")));
  EXPECT_TRUE(auth.Check(Header("alice", "right")));
}

TEST(BasicAuthWork, BcryptRunsOnAtMostTheConfiguredThreads) {
  BasicAuthLimits limits;
  limits.max_concurrent = 2;
  limits.max_waiting = 16;
  limits.max_wait = milliseconds(30000);
  BasicAuthenticator auth({{"alice", Bcrypt("right", 8)}}, limits);
  std::vector<std::thread> guesses;
  std::atomic<int> refused{0};
  for (int i = 0; i < 8; ++i) {
    guesses.emplace_back([&, i] {
      if (!auth.Check(Header(i % 2 ? "alice" : "nobody", "guess" + std::to_string(i)))) {
        refused.fetch_add(1);
      }
    });
  }
  for (auto& t : guesses) t.join();
  EXPECT_EQ(refused.load(), 8);
  const BasicAuthenticator::Stats stats = auth.stats();
  EXPECT_EQ(stats.bcrypt_runs, 8u);
  EXPECT_LE(stats.peak_concurrent, 2u);
  EXPECT_EQ(stats.busy, 0u);
}

TEST(BasicAuthWork, PastTheBoundAGuessIsBusyButKnownCredentialsStillPass) {
  BasicAuthLimits limits;
  limits.max_concurrent = 1;
  limits.max_waiting = 0;
  BasicAuthenticator auth({{"prometheus", Bcrypt("scrape", 12)}}, limits);
  ASSERT_TRUE(auth.Check(Header("prometheus", "scrape")));  // now remembered.
  const uint64_t runs = auth.stats().bcrypt_runs;
  std::thread guess([&] { auth.Check(Header("prometheus", "guess")); });
  ASSERT_TRUE(testing::WaitFor([&] { return auth.stats().bcrypt_runs > runs; }, milliseconds(5000)));
  // A cost-12 check takes a few hundred ms: these come while it runs.
  EXPECT_EQ(auth.Authenticate(Header("other", "x")), BasicAuthenticator::Verdict::kBusy);
  EXPECT_EQ(auth.Authenticate(Header("prometheus", "scrape")), BasicAuthenticator::Verdict::kOk);
  guess.join();
  EXPECT_EQ(auth.stats().busy, 1u);
}

}  // namespace
}  // namespace connwatch
