#pragma once
// A fixed-bucket histogram the event loop accumulates into (no locks: loop
// thread only); Snapshot() copies it for other threads.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/snapshot.h"

namespace connwatch {

class FixedHistogram {
 public:
  explicit FixedHistogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {}
  void Observe(double value) {
    auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
    ++buckets_[static_cast<size_t>(it - bounds_.begin())];
    ++count_;
    sum_ += value;
  }
  HistogramSnapshot Snapshot() const { return {bounds_, buckets_, count_, sum_}; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace connwatch
