#pragma once
// The idle cut-off of a middlebox, inferred from how a target's connections
// die. NATs, firewalls and load balancers forget a flow that has been idle
// for a fixed time; the next packet of the flow (a keepalive probe, a
// heartbeat) is then dropped or answered with RST, and the connection dies at
// the same idle age every time. Pure logic; each Target owns one (made on
// the first death that could be such a cut), loop thread only.

#include <array>
#include <cstddef>
#include <cstdint>

#include "core/config.h"
#include "core/reason.h"
#include "core/tcp_sample.h"

namespace connwatch {

// What a death says about an idle cut-off.
struct IdleDeath {
  Reason reason = Reason::kError;
  TcpSample at_death;     // TCP_INFO read at the death (valid or not)
  double lifetime = 0;    // seconds from connect to death
  // The time the kernel or the heartbeat spent finding the flow dead after
  // its first unanswered packet, from the target's settings (IdleDetection).
  double detection = 0;
};

// Seconds between the flow's first unanswered packet and the death being
// known, for a death of `reason` under `config` with `at_death` read at the
// death; < 0 when such a death is not one a middlebox's cut-off causes (a
// FIN, a refused connect...).
// NOTE: a keepalive death is counted from the probes the kernel sent
// (tcpi_probes x keepalive.interval), not from keepalive.count: with
// TCP_USER_TIMEOUT set (connwatchd always sets it) the kernel ignores the
// count and kills the connection at the first probe at least user_timeout
// after the last answer (net/ipv4/tcp_timer.c, tcp_keepalive_timer).
double IdleDetection(Reason reason, const TargetConfig& config, const TcpSample& at_death);

// The idle age (seconds) at which the flow went unanswered: the time since
// the peer last acknowledged anything, less the detection time. < 0 when the
// death tells nothing about a cut-off: a reason no middlebox causes, an idle
// age under 1 s, or a connection that was answered after its first idle gap
// (lifetime much longer than idle age plus detection: a peer that lived a
// while and then died, not a flow cut at its first idle gap). Held
// connections carry no traffic but keepalive probes and heartbeats, so a flow
// that a middlebox forgets dies at its first probe after the cut.
double IdleAgeAtDeath(const IdleDeath& death);

class IdleCutoff {
 public:
  static constexpr size_t kKept = 8;          // last deaths remembered
  static constexpr size_t kAgreeing = 3;      // deaths that must agree
  static constexpr double kTolerance = 0.05;  // within 5% of the same idle age

  // Records the idle age of one death (IdleAgeAtDeath >= 0). Returns true
  // when this makes a cut-off known, or moves it by more than kTolerance.
  bool Add(double idle_age);
  // The cut-off in seconds (the median of the agreeing idle ages); 0: none.
  double seconds() const { return seconds_; }

  // The remembered deaths, for the state file (monitor/state_store.h): the
  // idle ages in their slots, how many are used and the slot of the next.
  const std::array<double, kKept>& ages() const { return ages_; }
  size_t count() const { return count_; }
  size_t next() const { return next_; }
  // The inference as saved; false (and *out untouched) for values Add could
  // not have made.
  static bool Restore(const std::array<double, kKept>& ages, size_t count, size_t next,
                      double seconds, IdleCutoff* out);

 private:
  std::array<double, kKept> ages_{};
  size_t count_ = 0;  // ages_ used (up to kKept)
  size_t next_ = 0;   // the slot the next age goes to
  double seconds_ = 0;
};

}  // namespace connwatch
