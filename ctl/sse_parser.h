#pragma once
// An incremental parser of a Server-Sent Events stream (the WHATWG "event
// stream interpretation"): bytes in as they arrive, in pieces of any size,
// whole events out. Lines end with LF, CRLF or CR (a CRLF may be split
// between two pieces); ":" starts a comment; an empty line dispatches.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace connwatch::ctl {

struct SseEvent {
  std::string event = "message";  // the `event:` field, "message" without one.
  std::string data;               // the `data:` lines joined by "\n".
  std::optional<std::string> id;  // the `id:` field of this event, if it had one.
};

class SseParser {
 public:
  // A line longer than this is refused (error()): the stream is not SSE.
  static constexpr size_t kMaxLine = 4 << 20;

  // Appends every event that `bytes` completes to `out`. After an error it
  // parses nothing more.
  void Feed(std::string_view bytes, std::vector<SseEvent>* out);
  // The last `retry:` value, in milliseconds.
  std::optional<long> retry_ms() const { return retry_ms_; }
  const std::string& error() const { return error_; }

 private:
  void Line(std::string_view line, std::vector<SseEvent>* out);

  std::string line_;
  bool after_cr_ = false;  // the last byte was a CR: a LF next ends nothing.
  SseEvent pending_;
  bool has_data_ = false;
  std::optional<long> retry_ms_;
  std::string error_;
};

}  // namespace connwatch::ctl
