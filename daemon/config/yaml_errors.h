#pragma once
// YAML syntax errors in words an operator can act on. yaml-cpp stops at the
// first syntax error with parser jargon ("end of map not found", "illegal
// block entry" for a tab) at the place where it gave up, which is often a
// line or more after the cause. ExplainYamlError looks at the text around
// that place and names the likely cause (a tab in the indentation, a key out
// of line with its map, an unclosed quote or bracket, an unquoted value that
// YAML reads as something else) at the cause's place. Pure functions of the
// text: no I/O, any thread.

#include <cstddef>
#include <string>
#include <string_view>

namespace connwatch {

struct YamlProblem {
  int line = 0;    // 1-based place of the cause.
  int column = 0;  // 1-based, in bytes.
  std::string message;
};

// Appended to every syntax error: the loader checks nothing else in a file
// that does not parse.
inline constexpr std::string_view kNotCheckedFurther =
    "; nothing else in this file is checked until it parses, so more errors may be hidden";

// `line`, `column` (1-based) and `parser_message` are yaml-cpp's. The message
// ends with the parser's own words and place when they differ from the cause,
// then kNotCheckedFurther.
YamlProblem ExplainYamlError(std::string_view text, int line, int column,
                             std::string_view parser_message);

// True when the quote at byte `pos` of `text` (a '"' or '\'' that opens a
// quoted scalar) is closed before the end of the text. yaml-cpp 0.7 accepts a
// quoted scalar that runs to the end of the file; the loader refuses it.
bool QuoteIsClosed(std::string_view text, size_t pos);

}  // namespace connwatch
