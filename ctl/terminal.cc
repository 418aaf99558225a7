#include "terminal.h"

#include <unistd.h>

namespace connwatch::ctl {

bool UseColour(int fd, const char* no_color) {
  if (no_color != nullptr && *no_color != '\0') return false;
  return isatty(fd) == 1;
}

std::string Paint(std::string_view text, Colour colour, bool on) {
  if (!on || colour == Colour::kNone) return std::string(text);
  const char* start = "";
  switch (colour) {
    case Colour::kGreen: start = "\033[32m"; break;
    case Colour::kYellow: start = "\033[33m"; break;
    case Colour::kRed: start = "\033[31m"; break;
    case Colour::kBold: start = "\033[1m"; break;
    case Colour::kDim: start = "\033[2m"; break;
    case Colour::kNone: break;
  }
  return start + std::string(text) + "\033[0m";
}

Colour StateColour(std::string_view state) {
  if (state == "up") return Colour::kGreen;
  if (state == "backoff") return Colour::kRed;
  return Colour::kYellow;
}

}  // namespace connwatch::ctl
