#include "core/event_followers.h"

#include <algorithm>

#include "core/event_log.h"

namespace connwatch {

EventFollowers::Follower::Follower(EventFollowers* owner, std::string target, size_t limit)
    : owner_(owner), target_(std::move(target)), limit_(std::max<size_t>(1, limit)) {}

EventFollowers::Follower::~Follower() { owner_->Remove(this); }

void EventFollowers::Follower::Push(const Event& event) {
  if (!target_.empty() && event.target != target_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (overrun_ || closed_) return;
    if (queue_.size() >= limit_) {
      overrun_ = true;
      queue_.clear();
    } else {
      queue_.push_back(event);
    }
  }
  cv_.notify_one();
}

void EventFollowers::Follower::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_one();
}

EventFollowers::Follower::Status EventFollowers::Follower::Wait(std::chrono::milliseconds timeout,
                                                                std::vector<Event>* out) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || overrun_ || closed_; });
  if (overrun_) return Status::kOverrun;
  if (closed_) return Status::kClosed;
  if (queue_.empty()) return Status::kTimeout;
  for (Event& e : queue_) out->push_back(std::move(e));
  queue_.clear();
  return Status::kEvents;
}

EventFollowers::~EventFollowers() { CloseAll(); }

std::unique_ptr<EventFollowers::Follower> EventFollowers::Add(std::string target, size_t limit,
                                                              const std::vector<Event>& backlog) {
  std::unique_ptr<Follower> f(new Follower(this, std::move(target), limit));
  for (const Event& e : backlog) f->Push(e);
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) f->Close();
  followers_.push_back(f.get());
  return f;
}

void EventFollowers::Deliver(const Event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Follower* f : followers_) f->Push(event);
}

void EventFollowers::CloseAll() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (Follower* f : followers_) f->Close();
}

size_t EventFollowers::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return followers_.size();
}

void EventFollowers::Remove(Follower* follower) {
  std::lock_guard<std::mutex> lock(mu_);
  followers_.erase(std::remove(followers_.begin(), followers_.end(), follower), followers_.end());
}

}  // namespace connwatch
