// The idle cut-off inference (core/idle_cutoff.h): which deaths count, the
// idle age they give, and when agreeing deaths make a cut-off known.

#include "core/idle_cutoff.h"

#include <gtest/gtest.h>

namespace connwatch {
namespace {

TcpSample Idle(double seconds) {
  TcpSample s;
  s.valid = true;
  s.last_ack_recv_ms = static_cast<uint32_t>(seconds * 1000);
  s.last_data_recv_ms = static_cast<uint32_t>(seconds * 1000);
  return s;
}

TargetConfig KeepaliveConfig(int idle_s, int interval_s, int count) {
  TargetConfig c;
  c.keepalive.idle = Millis(idle_s * 1000);
  c.keepalive.interval = Millis(interval_s * 1000);
  c.keepalive.count = count;
  return c;
}

TEST(IdleCutoff, KeepaliveDeathAtItsFirstProbeGivesTheIdleAge) {
  // keepalive {idle: 600s, interval: 10s, count: 3}: a flow cut while idle
  // dies 630 s after its last answer, at a lifetime of 630 s.
  const TargetConfig c = KeepaliveConfig(600, 10, 3);
  IdleDeath d{Reason::kKeepaliveTimeout, Idle(630), 630.2,
              IdleDetection(Reason::kKeepaliveTimeout, c, Idle(630))};
  EXPECT_DOUBLE_EQ(d.detection, 30) << "no probes in TCP_INFO: keepalive.count of them";
  EXPECT_NEAR(IdleAgeAtDeath(d), 600, 1e-9);
}

TEST(IdleCutoff, KeepaliveDetectionCountsTheProbesTheKernelSent) {
  // keepalive {idle: 3s, interval: 1s, count: 2} with user_timeout 10s: the
  // kernel sends 7 probes and kills the connection 10 s after the last answer.
  const TargetConfig c = KeepaliveConfig(3, 1, 2);
  TcpSample at_death = Idle(10.3);
  at_death.probes = 7;
  IdleDeath d{Reason::kKeepaliveTimeout, at_death, 10.3,
              IdleDetection(Reason::kKeepaliveTimeout, c, at_death)};
  EXPECT_DOUBLE_EQ(d.detection, 7);
  EXPECT_NEAR(IdleAgeAtDeath(d), 3.3, 1e-9);
}

TEST(IdleCutoff, APeerThatLivedLongAndThenDiedIsNotACutoff) {
  // The same keepalive death after a day of answered probes: the peer died.
  const TargetConfig c = KeepaliveConfig(600, 10, 3);
  IdleDeath d{Reason::kKeepaliveTimeout, Idle(630), 86400,
              IdleDetection(Reason::kKeepaliveTimeout, c, Idle(630))};
  EXPECT_LT(IdleAgeAtDeath(d), 0);
}

TEST(IdleCutoff, OnlySilentDeathsCount) {
  const TargetConfig c = KeepaliveConfig(600, 10, 3);
  for (Reason r : {Reason::kPeerClosed, Reason::kRefused, Reason::kTimeout,
                   Reason::kHostUnreachable, Reason::kTlsAlert}) {
    EXPECT_LT(IdleDetection(r, c, Idle(400)), 0) << ReasonName(r);
  }
  // No heartbeat configured: a heartbeat timeout cannot be judged.
  EXPECT_LT(IdleDetection(Reason::kHeartbeatTimeout, c, Idle(400)), 0);
  // An RST after 400 s idle: detection is immediate.
  IdleDeath reset{Reason::kPeerReset, Idle(400), 400.5, IdleDetection(Reason::kPeerReset, c, Idle(400))};
  EXPECT_NEAR(IdleAgeAtDeath(reset), 400, 1e-9);
  // An RST on a busy connection says nothing.
  IdleDeath busy{Reason::kPeerReset, Idle(0.2), 0.3, 0};
  EXPECT_LT(IdleAgeAtDeath(busy), 0);
  // Nor does a death without TCP_INFO.
  IdleDeath blind{Reason::kPeerReset, TcpSample{}, 400, 0};
  EXPECT_LT(IdleAgeAtDeath(blind), 0);
}

TEST(IdleCutoff, HeartbeatDetectionCountsFallAndTimeout) {
  TargetConfig c = KeepaliveConfig(15, 5, 3);
  HeartbeatConfig hb;
  hb.interval = Millis(300000);
  hb.timeout = Millis(2000);
  hb.fall = 2;
  c.heartbeat = hb;
  EXPECT_DOUBLE_EQ(IdleDetection(Reason::kHeartbeatTimeout, c, Idle(302)), 302);
}

TEST(IdleCutoff, ThreeAgreeingDeathsMakeItKnownOnce) {
  IdleCutoff cut;
  EXPECT_FALSE(cut.Add(350));
  EXPECT_FALSE(cut.Add(900));  // an unrelated death
  EXPECT_EQ(cut.seconds(), 0);
  EXPECT_FALSE(cut.Add(355));  // two agree
  EXPECT_TRUE(cut.Add(352));   // 350, 355, 352 are within 5%
  EXPECT_NEAR(cut.seconds(), 352, 1e-3);
  EXPECT_FALSE(cut.Add(351)) << "already known";
  EXPECT_NEAR(cut.seconds(), 352, 1e-3);
}

TEST(IdleCutoff, AgesFurtherApartThanFivePercentNeverAgree) {
  IdleCutoff cut;
  for (double age : {100.0, 110.0, 121.0, 133.1, 146.4, 161.1}) EXPECT_FALSE(cut.Add(age));
  EXPECT_EQ(cut.seconds(), 0);
}

TEST(IdleCutoff, ANewCutoffReplacesTheOldOne) {
  IdleCutoff cut;
  cut.Add(600);
  cut.Add(601);
  EXPECT_TRUE(cut.Add(602));
  // The operator lowered keepalive below 600 s; a new middlebox cuts at 240 s.
  EXPECT_FALSE(cut.Add(240));
  EXPECT_FALSE(cut.Add(241));
  // Three agree on 240 s, but the 600 s group still has three (of eight kept).
  EXPECT_FALSE(cut.Add(240.5));
  EXPECT_NEAR(cut.seconds(), 601, 1e-3);
  EXPECT_TRUE(cut.Add(240.2)) << "four at 240 s outnumber three at 600 s";
  EXPECT_NEAR(cut.seconds(), 240.5, 1e-3);
}

}  // namespace
}  // namespace connwatch
