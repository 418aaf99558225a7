#include "core/idle_cutoff.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace connwatch {

namespace {

double Secs(Millis m) { return static_cast<double>(m.count()) / 1000.0; }

}  // namespace

double IdleDetection(Reason reason, const TargetConfig& config, const TcpSample& at_death) {
  switch (reason) {
    case Reason::kKeepaliveTimeout: {
      // The first probe at keepalive.idle went unanswered, then the others
      // interval apart until the kernel gave up.
      const int probes = at_death.valid && at_death.probes > 0 ? at_death.probes
                                                                : config.keepalive.count;
      return Secs(config.keepalive.interval) * probes;
    }
    case Reason::kUserTimeout:
      // A heartbeat (or other data) went unacknowledged for user_timeout.
      return Secs(config.user_timeout);
    case Reason::kHeartbeatTimeout:
      if (!config.heartbeat) return -1;
      return Secs(config.heartbeat->timeout) +
             Secs(config.heartbeat->interval) * (config.heartbeat->fall - 1);
    case Reason::kPeerReset:
      // A middlebox that answers an unknown flow with RST: at once.
      return 0;
    default:
      return -1;
  }
}

double IdleAgeAtDeath(const IdleDeath& death) {
  if (death.detection < 0 || !death.at_death.valid) return -1;
  const double since_ack = death.at_death.last_ack_recv_ms / 1000.0;
  const double since_data = death.at_death.last_data_recv_ms / 1000.0;
  const double idle = std::min(since_ack, since_data) - death.detection;
  constexpr double kMinIdle = 1.0;
  if (idle < kMinIdle) return -1;
  // Cut at its first idle gap: connected, idle, dead. Allow the handshake,
  // a first heartbeat exchange and timer slack.
  const double slack = std::max(1.0, IdleCutoff::kTolerance * idle);
  if (death.lifetime - death.detection - idle > slack) return -1;
  return idle;
}

bool IdleCutoff::Add(double idle_age) {
  ages_[next_] = idle_age;
  next_ = (next_ + 1) % kKept;
  count_ = std::min(count_ + 1, kKept);
  // The largest group of ages within kTolerance of one of them.
  std::vector<double> best;
  for (size_t i = 0; i < count_; ++i) {
    const double center = ages_[i];
    std::vector<double> group;
    for (size_t j = 0; j < count_; ++j) {
      if (std::fabs(ages_[j] - center) <= kTolerance * center) group.push_back(ages_[j]);
    }
    if (group.size() > best.size()) best = std::move(group);
  }
  if (best.size() < kAgreeing) return false;
  std::sort(best.begin(), best.end());
  const double median = best[best.size() / 2];
  if (seconds_ > 0 && std::fabs(median - seconds_) <= kTolerance * seconds_) return false;
  seconds_ = median;
  return true;
}

bool IdleCutoff::Restore(const std::array<double, kKept>& ages, size_t count, size_t next,
                         double seconds, IdleCutoff* out) {
  if (count > kKept || next >= kKept || !std::isfinite(seconds) || seconds < 0) return false;
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(ages[i]) || ages[i] < 0) return false;
  }
  out->ages_ = ages;
  out->count_ = count;
  out->next_ = next;
  out->seconds_ = seconds;
  return true;
}

}  // namespace connwatch
