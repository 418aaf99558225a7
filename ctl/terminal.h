#pragma once
// Colours for a terminal: on only when stdout is one and NO_COLOR
// (https://no-color.org) is unset or empty.

#include <string>
#include <string_view>

namespace connwatch::ctl {

enum class Colour { kNone, kGreen, kYellow, kRed, kBold, kDim };

// Whether to colour what goes to file descriptor `fd`, given NO_COLOR's value
// (nullptr when unset).
bool UseColour(int fd, const char* no_color);

// `text` wrapped in the escape sequences of `colour` when `on`, else as is.
std::string Paint(std::string_view text, Colour colour, bool on);

// The colour of a target state word: up green, backoff red, the rest yellow.
Colour StateColour(std::string_view state);

}  // namespace connwatch::ctl
