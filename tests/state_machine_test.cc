// The target state machine and the backoff bounds.

#include <gtest/gtest.h>

#include "core/backoff.h"
#include "core/target_state.h"

namespace connwatch {
namespace {

TEST(StateMachine, HappyPathAndEveryFailureLeadsToBackoff) {
  EXPECT_EQ(NextState(TargetState::kBackoff, TargetEvent::kAttemptDue), TargetState::kResolving);
  EXPECT_EQ(NextState(TargetState::kResolving, TargetEvent::kResolved), TargetState::kConnecting);
  EXPECT_EQ(NextState(TargetState::kConnecting, TargetEvent::kConnected), TargetState::kUp);
  EXPECT_EQ(NextState(TargetState::kUp, TargetEvent::kDied), TargetState::kBackoff);
  EXPECT_EQ(NextState(TargetState::kResolving, TargetEvent::kResolveFailed), TargetState::kBackoff);
  EXPECT_EQ(NextState(TargetState::kConnecting, TargetEvent::kConnectFailed),
            TargetState::kBackoff);
}

TEST(StateMachine, EveryOtherPairIsRejected) {
  const TargetEvent events[] = {TargetEvent::kAttemptDue, TargetEvent::kResolved,
                                TargetEvent::kResolveFailed, TargetEvent::kConnected,
                                TargetEvent::kConnectFailed, TargetEvent::kDied};
  int allowed = 0;
  for (size_t s = 0; s < kStateCount; ++s) {
    for (TargetEvent e : events) {
      TargetState next;
      if (TryNextState(static_cast<TargetState>(s), e, &next)) ++allowed;
    }
  }
  EXPECT_EQ(allowed, 6) << "exactly the six transitions above are legal";
  TargetState next = TargetState::kUp;
  EXPECT_FALSE(TryNextState(TargetState::kUp, TargetEvent::kConnected, &next));
  EXPECT_EQ(next, TargetState::kUp) << "a rejected event leaves the output alone";
}

TEST(StateMachineDeathTest, InvalidTransitionAborts) {
  EXPECT_DEATH(NextState(TargetState::kBackoff, TargetEvent::kDied), "invalid transition");
}

TEST(Backoff, CeilingDoublesUpToMax) {
  BackoffConfig cfg{Millis(500), Millis(30000)};
  EXPECT_EQ(BackoffCeiling(cfg, 0), Millis(500));
  EXPECT_EQ(BackoffCeiling(cfg, 1), Millis(1000));
  EXPECT_EQ(BackoffCeiling(cfg, 5), Millis(16000));
  EXPECT_EQ(BackoffCeiling(cfg, 6), Millis(30000));
  EXPECT_EQ(BackoffCeiling(cfg, 63), Millis(30000)) << "no overflow at large attempts";
  EXPECT_EQ(BackoffCeiling(cfg, 4000000000u), Millis(30000));
}

TEST(Backoff, FullJitterStaysWithinZeroAndCeiling) {
  BackoffConfig cfg{Millis(100), Millis(1000)};
  for (uint32_t attempt = 0; attempt < 10; ++attempt) {
    for (double u : {0.0, 0.25, 0.5, 0.999999}) {
      Millis d = BackoffDelay(cfg, attempt, u);
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d, BackoffCeiling(cfg, attempt)) << "attempt " << attempt << " u " << u;
    }
  }
  EXPECT_EQ(BackoffDelay(cfg, 0, 0.0), Millis(0));
  EXPECT_EQ(BackoffDelay(cfg, 3, 0.5), Millis(400));
  EXPECT_EQ(BackoffDelay(cfg, 0, 7.0), Millis(100)) << "u is clamped to [0,1]";
}

TEST(Backoff, MaxBelowInitialIsTreatedAsInitial) {
  BackoffConfig cfg{Millis(2000), Millis(10)};
  EXPECT_EQ(BackoffCeiling(cfg, 3), Millis(2000));
}

}  // namespace
}  // namespace connwatch
