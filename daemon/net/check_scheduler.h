#pragma once
// When each held connection's next periodic check is due. Checks are taken in
// 50 ms slots: every check due in a slot runs in one loop iteration, from one
// libev timer for the whole daemon, so a check costs its probes and a few
// memory reads: no per-target timer, no heap operation (at 18,000 targets a
// per-target ev_timer cost more per check than the probes' system calls).
//
// A slot is a list; an entry knows its slot and its place in the list, so
// scheduling and cancelling are O(1) (plus a map lookup per distinct slot).
// Owned by the Monitor; loop thread only.

#include <ev.h>

#include <cstdint>
#include <map>
#include <vector>

namespace connwatch {

class CheckScheduler {
 public:
  static constexpr double kSlotSeconds = 0.050;

  // One scheduled check, embedded in its owner (a Target).
  struct Entry {
    void* owner = nullptr;
    int64_t slot = -1;   // the slot it waits in; -1 when not scheduled
    uint32_t index = 0;  // its place in that slot's list
  };
  // Called for each entry whose slot is due (the entry is no longer
  // scheduled then; the owner schedules its next check).
  using DueFn = void (*)(Entry* entry);

  // `now` is the loop's cached monotonic time (LoopContext::now).
  CheckScheduler(struct ev_loop* loop, const double* now, DueFn due);
  ~CheckScheduler();
  CheckScheduler(const CheckScheduler&) = delete;
  CheckScheduler& operator=(const CheckScheduler&) = delete;

  // The slot boundary a check due at `at` runs at (rounded up to 50 ms).
  static double SlotTime(double at);
  // Queues `entry` for the slot at or after `at` (re-queues it if needed).
  void Schedule(Entry* entry, double at);
  void Cancel(Entry* entry);
  size_t scheduled() const { return scheduled_; }

 private:
  static void TimerCb(struct ev_loop* loop, ev_timer* w, int revents);
  void RunDue();
  void Arm();

  struct ev_loop* loop_;
  const double* now_;
  DueFn due_;
  ev_timer timer_;
  std::map<int64_t, std::vector<Entry*>> slots_;
  std::vector<Entry*> running_;  // the slot being run (reused buffer)
  int64_t armed_slot_ = -1;
  int64_t last_run_slot_ = -1;  // a check is never queued for a slot already run
  size_t scheduled_ = 0;
};

}  // namespace connwatch
