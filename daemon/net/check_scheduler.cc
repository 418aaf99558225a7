#include "net/check_scheduler.h"

#include <cmath>
#include <cstdlib>

namespace connwatch {

namespace {
int64_t SlotOf(double at) {
  return static_cast<int64_t>(std::ceil(at / CheckScheduler::kSlotSeconds - 1e-9));
}
}  // namespace

CheckScheduler::CheckScheduler(struct ev_loop* loop, const double* now, DueFn due)
    : loop_(loop), now_(now), due_(due) {
  ev_timer_init(&timer_, &CheckScheduler::TimerCb, 0., 0.);
  timer_.data = this;
}

CheckScheduler::~CheckScheduler() {
  ev_timer_stop(loop_, &timer_);
  for (auto& [slot, list] : slots_) {
    for (Entry* e : list) e->slot = -1;
  }
}

double CheckScheduler::SlotTime(double at) {
  return static_cast<double>(SlotOf(at)) * kSlotSeconds;
}

void CheckScheduler::Schedule(Entry* entry, double at) {
  if (entry->slot >= 0) Cancel(entry);
  int64_t slot = SlotOf(at);
  if (slot <= last_run_slot_) slot = last_run_slot_ + 1;
  std::vector<Entry*>& list = slots_[slot];
  entry->slot = slot;
  entry->index = static_cast<uint32_t>(list.size());
  list.push_back(entry);
  ++scheduled_;
  if (armed_slot_ < 0 || slot < armed_slot_) Arm();
}

void CheckScheduler::Cancel(Entry* entry) {
  if (entry->slot < 0) return;
  auto it = slots_.find(entry->slot);
  if (it == slots_.end() || entry->index >= it->second.size() ||
      it->second[entry->index] != entry) {
    std::abort();  // broken invariant: the entry is not where it says it is
  }
  std::vector<Entry*>& list = it->second;
  Entry* last = list.back();
  list[entry->index] = last;
  last->index = entry->index;
  list.pop_back();
  entry->slot = -1;
  --scheduled_;
  // An empty slot stays in the map until it is due (cheaper than erasing
  // and re-creating it while targets churn); RunDue drops it.
}

void CheckScheduler::Arm() {
  ev_timer_stop(loop_, &timer_);
  if (slots_.empty()) {
    armed_slot_ = -1;
    return;
  }
  armed_slot_ = slots_.begin()->first;
  const double delay = static_cast<double>(armed_slot_) * kSlotSeconds - *now_;
  ev_timer_set(&timer_, delay > 0 ? delay : 0., 0.);
  ev_timer_start(loop_, &timer_);
}

void CheckScheduler::TimerCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  static_cast<CheckScheduler*>(w->data)->RunDue();
}

void CheckScheduler::RunDue() {
  constexpr double kSlack = 0.0005;  // timers may fire a hair early
  // The last slot whose time has come (SlotOf rounds up: that is the next).
  const int64_t due_slot =
      static_cast<int64_t>(std::floor((*now_ + kSlack) / kSlotSeconds));
  armed_slot_ = -1;
  if (due_slot > last_run_slot_) last_run_slot_ = due_slot;
  while (!slots_.empty() && slots_.begin()->first <= due_slot) {
    auto first = slots_.begin();
    running_.swap(first->second);
    slots_.erase(first);
    scheduled_ -= running_.size();
    // The owners are spread over the heap and each is a cache miss: fetch a
    // few ahead (an entry's owner keeps what its check reads next to it).
    // NOTE: an entry leaves its slot just before its owner runs, so nothing
    // touches an owner before the prefetch. A due function may schedule or
    // cancel its own entry only, never another one of this batch.
    constexpr size_t kAhead = 8;
    const size_t n = running_.size();
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) {
        __builtin_prefetch(running_[i + kAhead]);
        __builtin_prefetch(reinterpret_cast<const char*>(running_[i + kAhead]) + 64);
      }
      running_[i]->slot = -1;
      due_(running_[i]);
    }
    running_.clear();
  }
  Arm();
}

}  // namespace connwatch
