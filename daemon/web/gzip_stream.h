#pragma once
// gzip (RFC 1952) over a stream of pieces, with zlib: for /metrics when the
// scraper sends Accept-Encoding: gzip (Prometheus does). Compresses each
// piece as it comes and hands the compressed bytes on, so a large exposition
// is never held whole. One response per object; the thread that owns it.

#include <zlib.h>

#include <functional>
#include <string>
#include <string_view>

namespace connwatch {

class GzipStream {
 public:
  using Writer = std::function<void(std::string_view)>;
  // Level 1: the exposition is repetitive text, so the fastest level already
  // shrinks it about tenfold; higher levels cost far more CPU per scrape.
  explicit GzipStream(Writer out, int level = 1);
  ~GzipStream();
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  bool ok() const { return ok_; }
  void Write(std::string_view piece);
  // Writes the trailer. Call once, after the last Write.
  void Finish();

 private:
  void Deflate(std::string_view piece, int flush);

  Writer out_;
  z_stream z_{};
  bool ok_ = false;
  std::string buffer_;
};

}  // namespace connwatch
