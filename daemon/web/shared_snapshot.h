#pragma once
// One snapshot for every request that wants one at the same time. A snapshot
// costs the event loop O(targets) (it copies every target's state), so 32
// concurrent scrapes at 18,000 targets used to cost 32 copies, on the loop
// and in memory at once. SharedSnapshots takes one and hands it to every
// request that arrived while it was being taken; a request that arrives after
// it was handed out starts the next one. So what a request gets was started
// at most one snapshot time before the request arrived, never earlier.
//
// Thread-safe; `control` must outlive it.

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "core/snapshot.h"

namespace connwatch {

class SharedSnapshots {
 public:
  explicit SharedSnapshots(DaemonControl& control) : control_(control) {}

  // The snapshot being taken when called, else a new one; nullptr when the
  // loop did not answer in time (every request sharing it gets nullptr).
  std::shared_ptr<const Snapshot> Get();

  uint64_t taken() const;   // snapshots asked of the daemon so far.
  size_t waiting() const;   // requests waiting for the one being taken.

 private:
  DaemonControl& control_;
  mutable std::mutex mu_;
  std::condition_variable done_;
  bool in_flight_ = false;
  uint64_t generation_ = 0;  // snapshots finished.
  size_t waiting_ = 0;
  std::shared_ptr<const Snapshot> last_;
};

}  // namespace connwatch
