#include "web/shared_snapshot.h"

namespace connwatch {

std::shared_ptr<const Snapshot> SharedSnapshots::Get() {
  std::unique_lock<std::mutex> lock(mu_);
  if (in_flight_) {
    const uint64_t mine = generation_;
    ++waiting_;
    done_.wait(lock, [&] { return generation_ != mine; });
    --waiting_;
    std::shared_ptr<const Snapshot> shared = last_;
    if (waiting_ == 0) last_.reset();  // the last one out lets it go.
    return shared;
  }
  in_flight_ = true;
  lock.unlock();
  std::shared_ptr<const Snapshot> snapshot;
  try {
    snapshot = control_.GetSnapshot();
  } catch (...) {
    lock.lock();
    in_flight_ = false;
    last_ = nullptr;
    ++generation_;
    done_.notify_all();
    throw;
  }
  lock.lock();
  in_flight_ = false;
  last_ = snapshot;
  ++generation_;
  done_.notify_all();
  // Not kept beyond the waiters: the next request takes a fresh one.
  if (waiting_ == 0) last_.reset();
  return snapshot;
}

uint64_t SharedSnapshots::taken() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_ + (in_flight_ ? 1 : 0);
}

size_t SharedSnapshots::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

}  // namespace connwatch
