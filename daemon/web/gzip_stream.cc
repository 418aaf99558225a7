#include "web/gzip_stream.h"

namespace connwatch {

GzipStream::GzipStream(Writer out, int level) : out_(std::move(out)), buffer_(64 * 1024, '\0') {
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  ok_ = deflateInit2(&z_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
}

GzipStream::~GzipStream() {
  if (ok_) deflateEnd(&z_);
}

void GzipStream::Deflate(std::string_view piece, int flush) {
  z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
  z_.avail_in = static_cast<uInt>(piece.size());
  do {
    z_.next_out = reinterpret_cast<Bytef*>(buffer_.data());
    z_.avail_out = static_cast<uInt>(buffer_.size());
    const int rc = deflate(&z_, flush);
    if (rc == Z_STREAM_ERROR) {
      ok_ = false;
      return;
    }
    const size_t produced = buffer_.size() - z_.avail_out;
    if (produced > 0) out_(std::string_view(buffer_.data(), produced));
  } while (z_.avail_out == 0);
}

void GzipStream::Write(std::string_view piece) {
  if (ok_ && !piece.empty()) Deflate(piece, Z_NO_FLUSH);
}

void GzipStream::Finish() {
  if (ok_) Deflate({}, Z_FINISH);
}

}  // namespace connwatch
