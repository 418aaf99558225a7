#include "web/piece_stream.h"

#include <algorithm>
#include <cstring>

namespace connwatch {

PieceStream::PieceStream(Producer producer, size_t max_buffered)
    : max_buffered_(std::max<size_t>(1, max_buffered)) {
  thread_ = std::thread([this, producer = std::move(producer)] { Run(producer); });
}

PieceStream::~PieceStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PieceStream::Run(const Producer& producer) {
  Write write = [this](std::string_view piece) {
    if (piece.empty()) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return cancelled_ || buffered_ < max_buffered_; });
    if (cancelled_) throw Cancelled{};
    pieces_.emplace_back(piece);
    buffered_ += piece.size();
    cv_.notify_all();
  };
  bool failed = false;
  try {
    producer(write);
  } catch (const Cancelled&) {
  } catch (...) {
    failed = true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  done_ = true;
  failed_ = failed;
  cv_.notify_all();
}

size_t PieceStream::Read(char* buf, size_t max) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pieces_.empty() || done_; });
  size_t n = 0;
  while (n < max && !pieces_.empty()) {
    const std::string& front = pieces_.front();
    const size_t take = std::min(max - n, front.size() - front_offset_);
    std::memcpy(buf + n, front.data() + front_offset_, take);
    n += take;
    front_offset_ += take;
    if (front_offset_ == front.size()) {
      buffered_ -= front.size();
      pieces_.pop_front();
      front_offset_ = 0;
    }
  }
  cv_.notify_all();
  return n;
}

bool PieceStream::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

}  // namespace connwatch
