#pragma once
// A hard bound on the time from accept until a request's headers are in,
// TLS handshake included. The HTTP library's own timeout counts idle time
// only (every byte received starts it again), so a client that trickles a
// ClientHello or a header a byte at a time could hold a connection for ever;
// this cuts it off at `limit` however it trickles: shutdown(2) of its socket,
// after which the library sees the connection end and closes it.
//
// The fd is touched only between Opened() and Closed(), under the mutex the
// library's close notification also takes before it closes the fd, so a
// number reused by a later socket is never shut down.
//
// Thread-safe; one thread of its own between Start() and Stop().

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace connwatch {

class RequestDeadlines {
 public:
  explicit RequestDeadlines(std::chrono::milliseconds limit) : limit_(limit) {}
  ~RequestDeadlines() { Stop(); }
  RequestDeadlines(const RequestDeadlines&) = delete;
  RequestDeadlines& operator=(const RequestDeadlines&) = delete;

  void Start();
  void Stop();

  void Opened(const void* connection, int fd);  // its deadline starts now.
  void RequestArrived(const void* connection);  // no deadline any more.
  void Closed(const void* connection);

  uint64_t cut() const;  // connections cut off so far.

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    int fd;
    Clock::time_point deadline;
  };
  void Run();

  const std::chrono::milliseconds limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<const void*, Entry> open_;
  bool stop_ = false;
  uint64_t cut_ = 0;
  std::thread thread_;
};

}  // namespace connwatch
