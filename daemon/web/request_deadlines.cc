#include "web/request_deadlines.h"

#include <sys/socket.h>

namespace connwatch {

void RequestDeadlines::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void RequestDeadlines::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RequestDeadlines::Opened(const void* connection, int fd) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = open_.empty();
    open_[connection] = Entry{fd, Clock::now() + limit_};
  }
  // Deadlines come in order of opening, so only an empty set changes the
  // earliest one the thread waits for.
  if (first) cv_.notify_all();
}

void RequestDeadlines::RequestArrived(const void* connection) {
  std::lock_guard<std::mutex> lock(mu_);
  open_.erase(connection);
}

void RequestDeadlines::Closed(const void* connection) {
  std::lock_guard<std::mutex> lock(mu_);
  open_.erase(connection);
}

uint64_t RequestDeadlines::cut() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_;
}

void RequestDeadlines::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const Clock::time_point now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    for (auto it = open_.begin(); it != open_.end();) {
      if (it->second.deadline <= now) {
        shutdown(it->second.fd, SHUT_RDWR);
        ++cut_;
        it = open_.erase(it);
      } else {
        if (it->second.deadline < next) next = it->second.deadline;
        ++it;
      }
    }
    if (next == Clock::time_point::max()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, next);
    }
  }
}

}  // namespace connwatch
