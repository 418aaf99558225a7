#pragma once
// A response body made by a writer that pushes pieces (StreamMetrics, the
// targets JSON), read by an HTTP library that pulls them (libmicrohttpd asks
// for the next bytes when the socket can take them). The writer runs on its
// own thread and blocks while `max_buffered` bytes wait to be read, so memory
// per response stays bounded whatever the body's size and however slowly the
// client reads. Destroying the stream before the end (the client went away)
// makes the writer's next write throw, which ends it early.
//
// Threads: Read() and the destructor are for one thread (the connection's).

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace connwatch {

class PieceStream {
 public:
  using Write = std::function<void(std::string_view)>;
  using Producer = std::function<void(const Write& write)>;

  explicit PieceStream(Producer producer, size_t max_buffered = 256 * 1024);
  ~PieceStream();
  PieceStream(const PieceStream&) = delete;
  PieceStream& operator=(const PieceStream&) = delete;

  // Copies up to `max` bytes into `buf`, waiting until some are ready.
  // Returns 0 at the end of the body.
  size_t Read(char* buf, size_t max);
  // True once the producer ended by an exception (the body is cut short).
  bool failed() const;

 private:
  struct Cancelled {};

  void Run(const Producer& producer);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;
  size_t front_offset_ = 0;  // bytes of pieces_.front() already read.
  size_t buffered_ = 0;
  const size_t max_buffered_;
  bool done_ = false;
  bool failed_ = false;
  bool cancelled_ = false;
  std::thread thread_;
};

}  // namespace connwatch
