#include "sse_parser.h"

#include <cctype>

namespace connwatch::ctl {

void SseParser::Feed(std::string_view bytes, std::vector<SseEvent>* out) {
  for (char c : bytes) {
    if (!error_.empty()) return;
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;  // the LF of a CRLF.
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      Line(line_, out);
      line_.clear();
      continue;
    }
    if (line_.size() >= kMaxLine) {
      error_ = "a line of the event stream is longer than " + std::to_string(kMaxLine) + " bytes";
      return;
    }
    line_ += c;
  }
}

void SseParser::Line(std::string_view line, std::vector<SseEvent>* out) {
  if (line.empty()) {
    // Dispatch; an event without data is none (its fields are forgotten).
    if (has_data_) out->push_back(std::move(pending_));
    pending_ = SseEvent{};
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment (the daemon's keepalive).
  std::string_view field = line, value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) pending_.data += '\n';
    pending_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    pending_.event = std::string(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) pending_.id = std::string(value);
  } else if (field == "retry") {
    bool digits = !value.empty() && value.size() < 10;
    for (char c : value) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) retry_ms_ = std::stol(std::string(value));
  }
  // Other fields are ignored, as the specification says.
}

}  // namespace connwatch::ctl
