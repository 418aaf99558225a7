#pragma once
// HTTP basic auth against the bcrypt hashes of --web.config.file
// (basic_auth_users), with libxcrypt's crypt_r.
//
// Timing: a bcrypt check costs what its hash's cost factor says (cost 10
// about 60 ms here, each step doubling it), so the time of a failed login
// would tell a known user from an unknown one, and users from each other.
// Every check is therefore made to take as long as a check at the highest
// configured cost: an unknown user is checked against a dummy hash of that
// cost (made at start with a random salt), and a known user whose hash has a
// lower cost waits out the difference (asleep, no CPU): until the median of
// the last five checks at the highest cost would have ended.
//
// Work: bcrypt runs on at most `max_concurrent` threads at once; a check
// waits at most `max_wait` for a turn and at most `max_waiting` checks wait,
// beyond that the answer is kBusy (the server says 503), so a flood of
// guesses costs at most those cores. Credentials that passed once are
// remembered (a SHA-256 digest, never the password) and pass again without
// bcrypt and without waiting for a turn: a scraper's every-15-s scrape costs
// nothing, even during a flood of guesses.
//
// Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace connwatch {

struct BasicAuthUser {
  std::string name;
  std::string bcrypt_hash;  // "$2a$", "$2b$" or "$2y$", cost 4..31.
};

struct BasicAuthLimits {
  size_t max_concurrent = 2;  // bcrypt computations at once.
  size_t max_waiting = 16;    // checks waiting for a turn; more get kBusy at once.
  std::chrono::milliseconds max_wait{2000};
};

class BasicAuthenticator {
 public:
  enum class Verdict { kOk, kDenied, kBusy };

  explicit BasicAuthenticator(std::vector<BasicAuthUser> users, BasicAuthLimits limits = {});

  bool enabled() const { return !users_.empty(); }
  // `authorization` is the Authorization header's value ("" when absent).
  // kOk when it is "Basic base64(user:password)" with a configured user and
  // that user's password; kBusy when no bcrypt turn came in time.
  Verdict Authenticate(std::string_view authorization);
  // Authenticate() == kOk.
  bool Check(std::string_view authorization) { return Authenticate(authorization) == Verdict::kOk; }

  struct Stats {
    uint64_t bcrypt_runs = 0;
    uint64_t busy = 0;            // checks refused for want of a turn.
    size_t peak_concurrent = 0;   // most bcrypt computations seen at once.
  };
  Stats stats() const;
  int max_cost() const { return max_cost_; }

 private:
  Verdict Verify(std::string_view user, std::string_view password);
  // One crypt_r when a turn comes in time (else false): whether it matched,
  // when it began and how long it took.
  bool Bcrypt(const std::string& password, const std::string& hash, bool* match,
              std::chrono::steady_clock::time_point* began, std::chrono::nanoseconds* took);

  void NoteMaxCostTime(std::chrono::nanoseconds took);  // under mu_ (or in the constructor).

  const std::vector<BasicAuthUser> users_;
  const BasicAuthLimits limits_;
  int max_cost_ = 0;
  std::string dummy_hash_;  // cost max_cost_, random salt and password.

  mutable std::mutex mu_;  // guards everything below.
  std::condition_variable turn_;
  size_t running_ = 0, waiting_ = 0;
  std::unordered_set<std::string> verified_;  // digests of good credentials.
  // The last few times of a check at max_cost_ (ring), and their median:
  // what a check of a cheaper hash is padded to.
  std::chrono::nanoseconds recent_[5]{};
  size_t recent_count_ = 0;
  std::chrono::nanoseconds max_cost_time_{0};
  Stats stats_;
};

// Decodes standard base64 (RFC 4648, with padding); false when malformed.
bool Base64Decode(std::string_view in, std::string* out);

// The cost of a bcrypt hash ("$2b$12$..." -> 12); 0 when not one.
int BcryptCost(std::string_view hash);

}  // namespace connwatch
