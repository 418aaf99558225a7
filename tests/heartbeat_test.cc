// The heartbeat's matching rules (core/heartbeat.h) on synthetic times and
// bytes: on-time replies, late replies that never count for a newer request,
// wrong replies, and the send that cannot go out.

#include "core/heartbeat.h"

#include <gtest/gtest.h>
#include <re2/re2.h>

#include <memory>

namespace connwatch {
namespace {

class HeartbeatTest : public ::testing::Test {
 protected:
  HeartbeatTest() {
    config_.send = "PING\n";
    config_.expect = "PONG\n";
    config_.interval = Millis(1000);
    config_.timeout = Millis(200);
    config_.fall = 3;
  }
  HeartbeatTracker Make() {
    return HeartbeatTracker(&config_, std::make_shared<const re2::RE2>(config_.expect));
  }
  HeartbeatConfig config_;
};

TEST_F(HeartbeatTest, OnTimeReplyIsASuccessWithItsRoundTrip) {
  HeartbeatTracker hb = Make();
  EXPECT_FALSE(hb.waiting());
  hb.OnSent(10.0);
  EXPECT_TRUE(hb.waiting());
  EXPECT_DOUBLE_EQ(hb.deadline(), 10.2);
  // A reply in two pieces.
  EXPECT_EQ(hb.OnBytes("PO", 10.01).on_time, 0u);
  HeartbeatTracker::Replies r = hb.OnBytes("NG\n", 10.05);
  EXPECT_EQ(r.on_time, 1u);
  EXPECT_EQ(r.late, 0u);
  EXPECT_FALSE(hb.waiting());
  ASSERT_TRUE(hb.has_rtt());
  EXPECT_NEAR(hb.last_rtt(), 0.05, 1e-9);
}

TEST_F(HeartbeatTest, UnsolicitedBytesAreDiscarded) {
  HeartbeatTracker hb = Make();
  EXPECT_EQ(hb.OnBytes("PONG\n", 1.0).on_time, 0u);
  hb.OnSent(2.0);
  // The stray PONG before the request does not answer it.
  EXPECT_TRUE(hb.waiting());
  EXPECT_EQ(hb.OnBytes("PONG\n", 2.1).on_time, 1u);
}

// The defect this class exists for: the reply to request N, arriving after
// N's deadline and after N+1 was sent, is N's (late), never N+1's success.
TEST_F(HeartbeatTest, LateReplyBelongsToItsOwnRequest) {
  HeartbeatTracker hb = Make();
  hb.OnSent(0.0);
  HeartbeatTracker::Failure f = hb.OnDeadline();  // at 0.2
  EXPECT_EQ(f.reason, Reason::kHeartbeatTimeout);
  EXPECT_EQ(f.failures, 1);
  EXPECT_FALSE(f.fatal);
  hb.OnSent(1.0);  // N+1
  HeartbeatTracker::Replies r = hb.OnBytes("PONG\n", 1.01);  // N's reply, late
  EXPECT_EQ(r.late, 1u);
  EXPECT_EQ(r.on_time, 0u);
  EXPECT_TRUE(hb.waiting()) << "N+1 is still waiting for its own reply";
  EXPECT_EQ(hb.failures(), 1) << "a late reply resets nothing";
  EXPECT_FALSE(hb.has_rtt()) << "no round trip is taken from a late reply";
  // N+1's own reply then counts.
  r = hb.OnBytes("PONG\n", 1.05);
  EXPECT_EQ(r.on_time, 1u);
  EXPECT_EQ(hb.failures(), 0);
  EXPECT_NEAR(hb.last_rtt(), 0.05, 1e-9);
}

// A peer that always answers one interval late never looks healthy: every
// reply is late, failures add up to `fall`.
TEST_F(HeartbeatTest, PeerSlowerThanIntervalFails) {
  HeartbeatTracker hb = Make();
  HeartbeatTracker::Failure f;
  for (int i = 0; i < 3; ++i) {
    const double t = i * 1.0;
    hb.OnSent(t);
    if (i > 0) {
      EXPECT_EQ(hb.OnBytes("PONG\n", t + 0.01).late, 1u) << "request " << i - 1;
    }
    f = hb.OnDeadline();
  }
  EXPECT_EQ(f.failures, 3);
  EXPECT_TRUE(f.fatal);
  EXPECT_NE(f.detail.find("came after the deadline"), std::string::npos) << f.detail;
}

TEST_F(HeartbeatTest, SeveralRepliesInOneChunkAnswerInOrder) {
  HeartbeatTracker hb = Make();
  hb.OnSent(0.0);
  hb.OnDeadline();
  hb.OnSent(1.0);
  hb.OnDeadline();
  hb.OnSent(2.0);
  HeartbeatTracker::Replies r = hb.OnBytes("PONG\nPONG\nPONG\n", 2.1);
  EXPECT_EQ(r.late, 2u);
  EXPECT_EQ(r.on_time, 1u);
  EXPECT_EQ(hb.failures(), 0);
}

TEST_F(HeartbeatTest, WrongReplyIsAMismatchAndClearsWhatIsOwed) {
  HeartbeatTracker hb = Make();
  hb.OnSent(0.0);
  hb.OnBytes("ERR busy\n", 0.05);
  HeartbeatTracker::Failure f = hb.OnDeadline();
  EXPECT_EQ(f.reason, Reason::kHeartbeatMismatch);
  EXPECT_NE(f.detail.find("did not match"), std::string::npos) << f.detail;
  EXPECT_FALSE(hb.waiting());
  // The next request's reply is its own.
  hb.OnSent(1.0);
  EXPECT_EQ(hb.OnBytes("PONG\n", 1.01).on_time, 1u);
}

TEST_F(HeartbeatTest, FallCountsConsecutiveFailuresOnly) {
  config_.fall = 2;
  HeartbeatTracker hb = Make();
  hb.OnSent(0.0);
  EXPECT_FALSE(hb.OnDeadline().fatal);
  hb.OnSent(1.0);
  hb.OnBytes("PONG\n", 1.0);  // late for 0
  hb.OnBytes("PONG\n", 1.1);  // on time for 1: resets
  EXPECT_EQ(hb.failures(), 0);
  hb.OnSent(2.0);
  EXPECT_FALSE(hb.OnDeadline().fatal);
  hb.OnSent(3.0);
  EXPECT_TRUE(hb.OnDeadline().fatal);
}

TEST_F(HeartbeatTest, BlockedSendIsAFailure) {
  HeartbeatTracker hb = Make();
  HeartbeatTracker::Failure f = hb.OnSendBlocked(1234);
  EXPECT_EQ(f.reason, Reason::kHeartbeatTimeout);
  EXPECT_EQ(f.failures, 1);
  EXPECT_NE(f.detail.find("1234 bytes"), std::string::npos) << f.detail;
}

TEST_F(HeartbeatTest, OwedRequestsAreBounded) {
  HeartbeatTracker hb = Make();
  for (int i = 0; i < 100; ++i) {
    hb.OnSent(i);
    hb.OnDeadline();
  }
  // Only the newest kMaxOwed are remembered: that many late replies, then
  // the next reply answers the waiting request.
  hb.OnSent(100.0);
  std::string replies;
  for (size_t i = 0; i < HeartbeatTracker::kMaxOwed; ++i) replies += "PONG\n";
  EXPECT_EQ(hb.OnBytes(replies, 100.01).late, HeartbeatTracker::kMaxOwed);
  EXPECT_TRUE(hb.waiting());
  EXPECT_EQ(hb.OnBytes("PONG\n", 100.02).on_time, 1u);
}

TEST_F(HeartbeatTest, ResetForgetsEverything) {
  HeartbeatTracker hb = Make();
  hb.OnSent(0.0);
  hb.OnDeadline();
  hb.Reset();
  EXPECT_EQ(hb.failures(), 0);
  hb.OnSent(1.0);
  EXPECT_EQ(hb.OnBytes("PONG\n", 1.01).on_time, 1u);
}

}  // namespace
}  // namespace connwatch
