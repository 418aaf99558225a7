#include "web/basic_auth.h"

#include <crypt.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <thread>

namespace connwatch {

namespace {

using Clock = std::chrono::steady_clock;

// Remembered good credentials; past this the set starts again (a scraper
// sends one set of credentials, so this only bounds a pathological client).
constexpr size_t kMaxVerifiedCredentials = 256;

// Constant-time comparison of two equally long byte strings.
bool SameBytes(const char* a, const char* b, size_t n) {
  unsigned char diff = 0;
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string Sha256(const std::string& material) {
  unsigned char digest[32];
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, material.data(), material.size(), digest) != 0) return "";
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

// crypt_r of `password` with the setting (salt and cost) of `hash`; "" on failure.
std::string CryptR(const std::string& password, const std::string& hash) {
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_r(password.c_str(), hash.c_str(), data.get());
  std::string result = out != nullptr && out[0] != '*' ? std::string(out) : std::string();
  explicit_bzero(data.get(), sizeof(crypt_data));
  return result;
}

}  // namespace

int BcryptCost(std::string_view h) {
  if (h.size() < 7 || h[0] != '$' || h[1] != '2' || h[3] != '$' || h[6] != '$') return 0;
  if (h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9') return 0;
  return (h[4] - '0') * 10 + (h[5] - '0');
}

BasicAuthenticator::BasicAuthenticator(std::vector<BasicAuthUser> users, BasicAuthLimits limits)
    : users_(std::move(users)), limits_(limits) {
  if (users_.empty()) return;
  for (const BasicAuthUser& u : users_) max_cost_ = std::max(max_cost_, BcryptCost(u.bcrypt_hash));
  max_cost_ = std::clamp(max_cost_, 4, 31);
  // The dummy hash has the highest configured cost and a random salt; making
  // it is also the first measurement of a check at that cost.
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", static_cast<unsigned long>(max_cost_), nullptr, 0, salt,
                       sizeof salt) != nullptr) {
    const Clock::time_point start = Clock::now();
    dummy_hash_ = CryptR("connwatch: no such user", salt);
    NoteMaxCostTime(Clock::now() - start);
  }
  // Without a random salt (no entropy source) the dummy stays empty: crypt_r
  // then fails at once and unknown users are refused, faster than known ones.
}

BasicAuthenticator::Verdict BasicAuthenticator::Authenticate(std::string_view authorization) {
  if (users_.empty()) return Verdict::kOk;
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  constexpr std::string_view kScheme = "basic";
  if (authorization.size() <= kScheme.size() ||
      strncasecmp(authorization.data(), kScheme.data(), kScheme.size()) != 0 ||
      authorization[kScheme.size()] != ' ') {
    return Verdict::kDenied;
  }
  authorization.remove_prefix(kScheme.size());
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  while (!authorization.empty() && authorization.back() == ' ') authorization.remove_suffix(1);
  std::string decoded;
  if (!Base64Decode(authorization, &decoded)) return Verdict::kDenied;
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return Verdict::kDenied;
  Verdict v = Verify(std::string_view(decoded).substr(0, colon),
                     std::string_view(decoded).substr(colon + 1));
  explicit_bzero(decoded.data(), decoded.size());
  return v;
}

bool BasicAuthenticator::Bcrypt(const std::string& password, const std::string& hash,
                                bool* match, Clock::time_point* began,
                                std::chrono::nanoseconds* took) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (running_ >= limits_.max_concurrent) {
      if (waiting_ >= limits_.max_waiting) {
        ++stats_.busy;
        return false;
      }
      ++waiting_;
      const bool turn = turn_.wait_for(lock, limits_.max_wait,
                                       [&] { return running_ < limits_.max_concurrent; });
      --waiting_;
      if (!turn) {
        ++stats_.busy;
        return false;
      }
    }
    ++running_;
    ++stats_.bcrypt_runs;
    stats_.peak_concurrent = std::max(stats_.peak_concurrent, running_);
  }
  *began = Clock::now();
  const std::string out = CryptR(password, hash);
  *took = Clock::now() - *began;
  *match = !out.empty() && out.size() == hash.size() && SameBytes(out.data(), hash.data(), hash.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
  turn_.notify_one();
  return true;
}

BasicAuthenticator::Verdict BasicAuthenticator::Verify(std::string_view user,
                                                       std::string_view password) {
  const BasicAuthUser* found = nullptr;
  for (const BasicAuthUser& u : users_) {
    if (u.name == user) found = &u;
  }
  const std::string& hash = found ? found->bcrypt_hash : dummy_hash_;
  // crypt_r takes a C string: a password with a NUL byte cannot match.
  const bool has_nul = password.find('\0') != std::string_view::npos;

  // Key of the remembered-credentials set: SHA-256(user NUL hash NUL password).
  std::string material;
  material.reserve(user.size() + hash.size() + password.size() + 2);
  material.append(user).push_back('\0');
  material.append(hash).push_back('\0');
  material.append(password);
  const std::string key = Sha256(material);
  explicit_bzero(material.data(), material.size());
  if (found && !has_nul && !key.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (verified_.count(key) > 0) return Verdict::kOk;
  }

  std::string pw(has_nul ? std::string_view() : password);
  bool match = false;
  Clock::time_point began;
  std::chrono::nanoseconds took{0};
  const bool ran = Bcrypt(pw, hash, &match, &began, &took);
  explicit_bzero(pw.data(), pw.size());
  if (!ran) return Verdict::kBusy;
  std::chrono::nanoseconds target{0};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (BcryptCost(hash) >= max_cost_) {
      NoteMaxCostTime(took);
    } else {
      target = max_cost_time_;
    }
  }
  // A cheaper hash waits until a check at the highest cost would have ended.
  if (target.count() > 0) std::this_thread::sleep_until(began + target);
  match = match && found != nullptr && !has_nul;
  if (match && !key.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (verified_.size() >= kMaxVerifiedCredentials) verified_.clear();
    verified_.insert(key);
  }
  return match ? Verdict::kOk : Verdict::kDenied;
}

void BasicAuthenticator::NoteMaxCostTime(std::chrono::nanoseconds took) {
  // The median of the last five follows the machine's load quickly and is
  // not thrown by one check that was descheduled.
  recent_[recent_count_ % std::size(recent_)] = took;
  ++recent_count_;
  const size_t n = std::min(recent_count_, std::size(recent_));
  std::chrono::nanoseconds sorted[std::size(recent_)];
  std::copy(recent_, recent_ + n, sorted);
  std::sort(sorted, sorted + n);
  max_cost_time_ = sorted[n / 2];
}

BasicAuthenticator::Stats BasicAuthenticator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool Base64Decode(std::string_view in, std::string* out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return false;
  out->clear();
  out->reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      char c = in[i + j];
      if (c == '=') {
        // Padding only at the very end, in the last one or two places.
        if (i + 4 != in.size() || j < 2) return false;
        ++pad;
        v[j] = 0;
        continue;
      }
      if (pad > 0) return false;
      v[j] = value(c);
      if (v[j] < 0) return false;
    }
    uint32_t n = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                 (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out->push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2) out->push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

}  // namespace connwatch
