#pragma once
// Closes target sockets on a thread of its own. Closing a TCP socket is most
// of what a death costs the loop (about half of it in the profile of 10,000
// deaths at once, docs/PERFORMANCE.md): the kernel sends the FIN (on
// loopback it also runs the peer's side of it) and tears down the socket and
// its epoll entry. None of that is needed to detect and report the death, so
// the loop hands the descriptor over and goes on reading the next socket.
// The closer runs at a lower priority (nice +5 over the daemon): in a burst
// the loop's detection comes first. At most kMaxPending descriptors wait; past
// that the loop closes them itself, so a starved closer cannot make the
// daemon run out of descriptors (pending ones count against the targets'
// share, LoopContext::socket_budget).

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

namespace connwatch {

class SocketCloser {
 public:
  static constexpr size_t kMaxPending = 4096;

  SocketCloser();
  // Closes what is still pending, then joins the thread.
  ~SocketCloser();
  SocketCloser(const SocketCloser&) = delete;
  SocketCloser& operator=(const SocketCloser&) = delete;

  // Closes `fd` soon (with SO_LINGER {1, 0} first when `reset`: an RST
  // instead of a FIN). The caller has stopped watching it. Any thread.
  void Close(int fd, bool reset);
  // Descriptors handed over and not closed yet.
  size_t pending() const { return pending_.load(std::memory_order_relaxed); }
  // Blocks until every descriptor handed over so far is closed (tests, shutdown).
  void Drain();

 private:
  struct Item {
    int fd;
    bool reset;
  };
  static void CloseNow(const Item& item);
  void Main();

  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::vector<Item> queue_;
  bool quit_ = false;
  std::atomic<size_t> pending_{0};
  std::thread thread_;
};

}  // namespace connwatch
