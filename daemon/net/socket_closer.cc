#include "net/socket_closer.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace connwatch {

SocketCloser::SocketCloser() : thread_([this] { Main(); }) {}

SocketCloser::~SocketCloser() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  wake_.notify_one();
  thread_.join();
  for (const Item& item : queue_) CloseNow(item);  // the thread is gone: nobody else touches it
  queue_.clear();
}

void SocketCloser::CloseNow(const Item& item) {
  if (item.reset) {
    struct linger lg {1, 0};
    setsockopt(item.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(item.fd);
}

void SocketCloser::Close(int fd, bool reset) {
  if (pending_.load(std::memory_order_relaxed) >= kMaxPending) {
    CloseNow({fd, reset});  // the closer is behind: no more descriptors wait
    return;
  }
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_empty = queue_.empty();
    queue_.push_back({fd, reset});
    pending_.fetch_add(1, std::memory_order_relaxed);
  }
  if (was_empty) wake_.notify_one();  // otherwise it is awake already
}

void SocketCloser::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  drained_.wait(lock, [this] { return pending_.load() == 0 || quit_; });
}

void SocketCloser::Main() {
  // Below the loop: in a burst, detecting the next death comes first.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)),
              getpriority(PRIO_PROCESS, 0) + 5);
  std::vector<Item> batch;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return quit_ || !queue_.empty(); });
    if (queue_.empty() && quit_) return;
    batch.swap(queue_);
    lock.unlock();
    for (const Item& item : batch) {
      CloseNow(item);
      pending_.fetch_sub(1, std::memory_order_relaxed);
    }
    batch.clear();
    lock.lock();
    if (queue_.empty()) drained_.notify_all();
  }
}

}  // namespace connwatch
