// The periodic-check schedule (net/check_scheduler.h) on a real libev loop:
// slots run in order, every entry of a slot in one batch, cancels in O(1)
// keep the other entries, and an entry re-queued for a slot that already
// ran waits for the next one instead of looping.

#include "net/check_scheduler.h"

#include <ev.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "core/clock.h"

namespace connwatch {
namespace {

class CheckSchedulerTest : public ::testing::Test {
 protected:
  CheckSchedulerTest() : loop_(ev_loop_new(static_cast<unsigned>(EVBACKEND_EPOLL) | static_cast<unsigned>(EVFLAG_NOENV))) {
    now_ = MonoNow();
    ev_check_init(&clock_, [](struct ev_loop*, ev_check* w, int) {
      *static_cast<double*>(w->data) = MonoNow();
    });
    clock_.data = &now_;
    ev_set_priority(&clock_, EV_MAXPRI);
    ev_check_start(loop_, &clock_);
    ev_unref(loop_);
    current_ = this;
    scheduler_ = std::make_unique<CheckScheduler>(loop_, &now_, &CheckSchedulerTest::Due);
  }
  ~CheckSchedulerTest() override {
    scheduler_.reset();
    ev_ref(loop_);
    ev_check_stop(loop_, &clock_);
    ev_loop_destroy(loop_);
  }

  struct Item {
    CheckScheduler::Entry entry;
    int id = 0;
    std::function<void(Item*)> on_due;
  };
  static void Due(CheckScheduler::Entry* e) {
    Item* item = static_cast<Item*>(e->owner);
    current_->ran_.push_back({item->id, current_->batch_});
    if (item->on_due) item->on_due(item);
  }
  Item* Make(int id) {
    auto item = std::make_unique<Item>();
    item->id = id;
    item->entry.owner = item.get();
    items_.push_back(std::move(item));
    return items_.back().get();
  }
  // Runs the loop until `n` entries ran (at most 2 s of loop time).
  void RunUntil(size_t n) {
    const double deadline = MonoNow() + 2.0;
    while (ran_.size() < n && MonoNow() < deadline) {
      ++batch_;
      ev_run(loop_, EVRUN_ONCE);
    }
    ASSERT_GE(ran_.size(), n) << "expected " << n << " checks to run, " << ran_.size() << " ran";
  }

  struct Ran {
    int id;
    int batch;
  };
  static CheckSchedulerTest* current_;
  struct ev_loop* loop_;
  ev_check clock_;
  double now_ = 0;
  std::unique_ptr<CheckScheduler> scheduler_;
  std::vector<std::unique_ptr<Item>> items_;
  std::vector<Ran> ran_;
  int batch_ = 0;
};
CheckSchedulerTest* CheckSchedulerTest::current_ = nullptr;

TEST_F(CheckSchedulerTest, SlotsRunInOrderAndTogether) {
  const double base = CheckScheduler::SlotTime(now_) + 0.1;
  // Two in the slot at base, one in the slot after, one 50 ms later still.
  scheduler_->Schedule(&Make(3)->entry, base + 0.07);
  scheduler_->Schedule(&Make(1)->entry, base + 0.001);
  scheduler_->Schedule(&Make(2)->entry, base + 0.049);
  scheduler_->Schedule(&Make(4)->entry, base + 0.12);
  EXPECT_EQ(scheduler_->scheduled(), 4u);
  RunUntil(4);
  ASSERT_EQ(ran_.size(), 4u);
  EXPECT_EQ(ran_[0].id, 1);
  EXPECT_EQ(ran_[1].id, 2);
  EXPECT_EQ(ran_[0].batch, ran_[1].batch) << "one slot, one loop iteration";
  EXPECT_EQ(ran_[2].id, 3);
  EXPECT_EQ(ran_[3].id, 4);
  EXPECT_LT(ran_[1].batch, ran_[2].batch);
  EXPECT_EQ(scheduler_->scheduled(), 0u);
  EXPECT_GE(now_, base + 0.1 + 0.049) << "the last slot ran before it was due";
}

TEST_F(CheckSchedulerTest, CancelKeepsTheOthers) {
  const double at = now_ + 0.05;
  std::vector<Item*> items;
  for (int i = 0; i < 6; ++i) {
    items.push_back(Make(i));
    scheduler_->Schedule(&items.back()->entry, at);
  }
  scheduler_->Cancel(&items[0]->entry);  // the first: the last moves into its place
  scheduler_->Cancel(&items[3]->entry);
  scheduler_->Cancel(&items[3]->entry);  // twice is harmless
  EXPECT_EQ(items[0]->entry.slot, -1);
  EXPECT_EQ(scheduler_->scheduled(), 4u);
  RunUntil(4);
  std::vector<int> ids;
  for (const Ran& r : ran_) ids.push_back(r.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int>{1, 2, 4, 5}));
}

TEST_F(CheckSchedulerTest, RescheduleMovesAnEntry) {
  Item* a = Make(1);
  scheduler_->Schedule(&a->entry, now_ + 10);
  scheduler_->Schedule(&a->entry, now_ + 0.05);
  EXPECT_EQ(scheduler_->scheduled(), 1u);
  RunUntil(1);
  EXPECT_EQ(ran_.size(), 1u);
}

// A check that asks for its next one "now" (an interval shorter than a
// slot) gets the next slot, not the one running: the batch ends.
TEST_F(CheckSchedulerTest, ReQueuedForTheRunningSlotWaitsForTheNext) {
  Item* a = Make(1);
  int runs = 0;
  a->on_due = [&](Item* self) {
    if (++runs < 3) scheduler_->Schedule(&self->entry, now_);
  };
  scheduler_->Schedule(&a->entry, now_);
  RunUntil(3);
  ASSERT_EQ(ran_.size(), 3u);
  EXPECT_LT(ran_[0].batch, ran_[1].batch);
  EXPECT_LT(ran_[1].batch, ran_[2].batch);
}

}  // namespace
}  // namespace connwatch
