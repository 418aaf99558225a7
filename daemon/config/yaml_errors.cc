#include "config/yaml_errors.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <vector>

namespace connwatch {

namespace {

constexpr size_t npos = std::string_view::npos;

struct Line {
  std::string_view text;  // without '\n' and a trailing '\r'.
  size_t offset = 0;      // of its first byte in the whole text.
};

std::vector<Line> SplitLines(std::string_view text) {
  std::vector<Line> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == npos) end = text.size();
    std::string_view s = text.substr(start, end - start);
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    lines.push_back({s, start});
    if (end == text.size()) break;
    start = end + 1;
  }
  return lines;
}

// A short excerpt of the text in quotes, cut on a UTF-8 boundary.
std::string Q(std::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() <= kMax) return "\"" + std::string(s) + "\"";
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return "\"" + std::string(s.substr(0, cut)) + "...\"";
}

std::string Place(int line, int column) {
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

bool Blank(char c) { return c == ' ' || c == '\t'; }

// The index just past the quote that closes the quoted scalar opening at
// s[i], or npos when it does not close within `s`. '\\' escapes in double
// quotes, '' is a quote in single quotes.
size_t QuoteEnd(std::string_view s, size_t i) {
  const char q = s[i];
  for (size_t j = i + 1; j < s.size(); ++j) {
    if (q == '"' && s[j] == '\\') {
      ++j;
    } else if (s[j] == q) {
      if (q == '\'' && j + 1 < s.size() && s[j + 1] == '\'') {
        ++j;
      } else {
        return j + 1;
      }
    }
  }
  return npos;
}

// The index of the ':' that ends a key starting at s[i], or npos when s[i...]
// is not "key: ..." (a plain or quoted key).
size_t KeyColon(std::string_view s, size_t i) {
  const size_t n = s.size();
  auto colon_at = [&](size_t j) { return j < n && s[j] == ':' && (j + 1 == n || Blank(s[j + 1])); };
  if (s[i] == '"' || s[i] == '\'') {
    size_t j = QuoteEnd(s, i);
    if (j == npos) return npos;
    while (j < n && Blank(s[j])) ++j;
    return colon_at(j) ? j : npos;
  }
  if (std::strchr("[{|>#&*!%@`", s[i]) != nullptr) return npos;
  for (size_t j = i; j < n; ++j) {
    if (colon_at(j)) return j;
    if (s[j] == '#' && j > i && Blank(s[j - 1])) return npos;
  }
  return npos;
}

// The structure a block line starts with: list entries ("- "), then a key
// ("name:") or a value. Blank and comment lines have none.
enum class Kind { kEntry, kKey, kValue };
struct Token {
  int line = 0;
  int column = 0;
  Kind kind = Kind::kValue;
  std::string_view text;
  bool has_value = false;  // a key with a value on its own line.
  int colon = 0;           // a key's ':' column.
};

std::vector<Token> Tokens(const Line& l, int number) {
  std::string_view s = l.text;
  const size_t n = s.size();
  size_t i = 0;
  while (i < n && s[i] == ' ') ++i;
  std::vector<Token> out;
  if (i == n || s[i] == '#' || s[i] == '\t') return out;
  while (i < n) {
    if (s[i] == '-' && (i + 1 == n || Blank(s[i + 1]))) {
      out.push_back({number, static_cast<int>(i) + 1, Kind::kEntry, s.substr(i, 1)});
      ++i;
      while (i < n && Blank(s[i])) ++i;
      if (i < n && s[i] == '#') break;
      continue;
    }
    Token t{number, static_cast<int>(i) + 1, Kind::kValue, {}};
    const size_t colon = KeyColon(s, i);
    if (colon != npos) {
      t.kind = Kind::kKey;
      size_t end = colon;
      while (end > i && Blank(s[end - 1])) --end;
      t.text = s.substr(i, end - i);
      t.colon = static_cast<int>(colon) + 1;
      size_t j = colon + 1;
      while (j < n && Blank(s[j])) ++j;
      t.has_value = j < n && s[j] != '#';
    } else {
      size_t end = n;
      for (size_t j = i + 1; j < n; ++j) {
        if (s[j] == '#' && Blank(s[j - 1])) {
          end = j;
          break;
        }
      }
      while (end > i && Blank(s[end - 1])) --end;
      t.text = s.substr(i, end - i);
    }
    out.push_back(t);
    break;
  }
  return out;
}

std::string Describe(const Token& t) {
  return (t.kind == Kind::kEntry ? std::string("the \"-\"") : Q(t.text)) + " in column " +
         std::to_string(t.column) + " of line " + std::to_string(t.line);
}

// The column of a tab in the indentation of line `l`, or 0.
int TabInIndentation(const Line& l) {
  for (size_t i = 0; i < l.text.size(); ++i) {
    if (l.text[i] == '\t') {
      // Only a tab before the line's content counts; a comment line is fine.
      size_t j = i;
      while (j < l.text.size() && Blank(l.text[j])) ++j;
      return j < l.text.size() && l.text[j] != '#' ? static_cast<int>(i) + 1 : 0;
    }
    if (l.text[i] != ' ') return 0;
  }
  return 0;
}

// What the brackets and quotes of the text are doing up to byte `limit`.
struct Opener {
  char c = 0;
  size_t pos = 0;
};
struct Scan {
  std::vector<Opener> open;          // flow brackets still open at `limit`, innermost last.
  std::optional<Opener> bad_closer;  // a closer before `limit` that matches no opener.
  std::optional<Opener> mismatched;  // ... or the wrong one (with the opener in `open`).
  // The last quoted scalar opened before `limit` that did not close on its
  // own line, and where it closed (npos: never).
  std::optional<Opener> long_quote;
  size_t long_quote_end = npos;
};

Scan ScanText(std::string_view text, size_t limit) {
  Scan scan;
  const size_t n = text.size();
  limit = std::min(limit, n);
  size_t pos = 0;
  bool value_start = true;  // block context: a node may start here.
  auto skip_line = [&] {
    while (pos < n && text[pos] != '\n') ++pos;
  };
  auto skip_quote = [&] {
    const size_t start = pos;
    const size_t end = QuoteEnd(text, pos);
    const size_t eol = text.find('\n', start);
    if (end == npos || (eol != npos && end > eol)) {
      scan.long_quote = Opener{text[start], start};
      scan.long_quote_end = end;
    }
    pos = end == npos ? n : end;
  };
  while (pos < limit) {
    const char c = text[pos];
    if (c == '\n') {
      ++pos;
      value_start = scan.open.empty();
      while (pos < n && text[pos] == ' ' && scan.open.empty()) ++pos;
      continue;
    }
    if (scan.open.empty()) {  // block context
      if (Blank(c)) {
        ++pos;
        continue;
      }
      if (c == '#') {
        skip_line();
        continue;
      }
      if (!value_start) {
        skip_line();
        continue;
      }
      if (c == '-' && (pos + 1 == n || Blank(text[pos + 1]) || text[pos + 1] == '\n')) {
        ++pos;
        continue;
      }
      if (c == '[' || c == '{') {
        scan.open.push_back({c, pos++});
        continue;
      }
      if (c == '"' || c == '\'') {
        skip_quote();
        // A quoted key: its value may follow.
        while (pos < n && Blank(text[pos])) ++pos;
        value_start = pos < n && text[pos] == ':';
        if (value_start) ++pos;
        continue;
      }
      const size_t eol = std::min(text.find('\n', pos), n);
      const size_t colon = KeyColon(text.substr(pos, eol - pos), 0);
      if (colon == npos) {
        skip_line();  // a plain value
        continue;
      }
      pos += colon + 1;
      continue;
    }
    // Flow context.
    if (c == '#' && pos > 0 && Blank(text[pos - 1])) {
      skip_line();
      continue;
    }
    if (c == '"' || c == '\'') {
      skip_quote();
      continue;
    }
    if (c == '[' || c == '{') {
      scan.open.push_back({c, pos++});
      continue;
    }
    if (c == ']' || c == '}') {
      const char want = scan.open.back().c == '[' ? ']' : '}';
      if (c != want) {
        scan.mismatched = Opener{c, pos};
        return scan;
      }
      scan.open.pop_back();
      ++pos;
      value_start = false;
      continue;
    }
    ++pos;
  }
  // A closer right at the limit (where the parser stopped).
  if (limit < n && (text[limit] == ']' || text[limit] == '}')) {
    if (scan.open.empty()) {
      scan.bad_closer = Opener{text[limit], limit};
    } else if (text[limit] != (scan.open.back().c == '[' ? ']' : '}')) {
      scan.mismatched = Opener{text[limit], limit};
    }
  }
  return scan;
}

struct Where {
  int line = 0;
  int column = 0;
};

Where WhereIs(const std::vector<Line>& lines, size_t pos) {
  auto it = std::upper_bound(lines.begin(), lines.end(), pos,
                             [](size_t p, const Line& l) { return p < l.offset; });
  const size_t index = static_cast<size_t>(it - lines.begin()) - 1;
  return {static_cast<int>(index) + 1, static_cast<int>(pos - lines[index].offset) + 1};
}

// The open block structure above line `e` (1-based): for each indentation
// level, the innermost token that set it, innermost first.
std::vector<Token> Chain(const std::vector<Line>& lines, int e) {
  std::vector<Token> chain;
  int limit = INT_MAX;
  for (int l = e - 1; l >= 1 && limit > 1; --l) {
    std::vector<Token> tokens = Tokens(lines[static_cast<size_t>(l) - 1], l);
    for (auto it = tokens.rbegin(); it != tokens.rend(); ++it) {
      if (it->column < limit) {
        chain.push_back(*it);
        limit = it->column;
      }
    }
  }
  return chain;
}

// The cause of a parser error that is about the block structure ("end of map
// not found", "illegal map value"...): a line out of line with those above.
std::optional<YamlProblem> Indentation(const std::vector<Line>& lines, int e) {
  if (e < 2 || static_cast<size_t>(e) > lines.size()) return std::nullopt;
  std::vector<Token> here = Tokens(lines[static_cast<size_t>(e) - 1], e);
  std::vector<Token> chain = Chain(lines, e);
  if (here.empty() || chain.empty()) return std::nullopt;
  const Token& t = here.front();
  const Token& prev = chain.front();
  const std::string what = t.kind == Kind::kEntry ? std::string("a list entry (\"-\")") : Q(t.text);
  const std::string same = t.kind == Kind::kEntry
                               ? "; the entries of one list start in the same column"
                               : "; the keys of one map start in the same column";
  YamlProblem p{t.line, t.column, {}};

  // "- address 192.0.2.1:80" then "  name: x": the first is one long value.
  if (prev.kind == Kind::kValue && t.column >= prev.column && t.kind == Kind::kKey) {
    p.line = prev.line;
    p.column = prev.column;
    p.message = Q(prev.text) + " is not a \"key: value\" pair, so line " + std::to_string(e) +
                " reads as more of it: is a \":\" (with a space after it) missing after the key?";
    return p;
  }
  if (t.column > prev.column) {
    if (prev.kind == Kind::kKey && prev.has_value) {
      p.message = "wrong indentation: " + what + " starts in column " + std::to_string(t.column) +
                  ", deeper than " + Describe(prev) + ", which already has a value" + same;
      return p;
    }
    return std::nullopt;  // deeper after "key:" or "-" is how YAML nests
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const Token& c = chain[i];
    if (c.column == t.column) {
      if (t.kind == Kind::kKey && c.kind == Kind::kEntry) {
        std::string inside;
        if (i > 0 && chain[i - 1].line == c.line) {
          inside = ", or indent it to column " + std::to_string(chain[i - 1].column) +
                   " to add it to the entry of line " + std::to_string(c.line);
        }
        p.message = "wrong indentation: " + what + " in column " + std::to_string(t.column) +
                    " lines up with " + Describe(c) +
                    ", where only a new list entry may start: write \"- " + std::string(t.text) +
                    "\" to start one" + inside;
        return p;
      }
      if (t.kind == Kind::kEntry && c.kind == Kind::kKey) {
        std::string where = "a list must be the value of a key (\"key:\" on the line above)";
        for (size_t k = i + 1; k < chain.size(); ++k) {
          if (chain[k].kind == Kind::kEntry) {
            where = "the entries of the list of line " + std::to_string(chain[k].line) +
                    " start in column " + std::to_string(chain[k].column);
            break;
          }
        }
        p.message = "wrong indentation: " + what + " in column " + std::to_string(t.column) +
                    " lines up with the keys of a map (" + Describe(c) + "); " + where;
        return p;
      }
      return std::nullopt;  // in line with its kind: not an indentation problem
    }
    if (c.column < t.column) {
      p.message = "wrong indentation: " + what + " starts in column " + std::to_string(t.column) +
                  ", which lines up with nothing above it (nearest: " + Describe(chain[i - 1]) +
                  ", and " + Describe(c) + ")" + same;
      return p;
    }
  }
  p.message = "wrong indentation: " + what + " starts in column " + std::to_string(t.column) +
              ", left of everything above it (" + Describe(chain.back()) + ")" + same;
  return p;
}

// `address: [2001:db8::1]:443` is a YAML list followed by junk.
std::optional<YamlProblem> UnquotedBrackets(const std::vector<Line>& lines, int e) {
  for (int l = e; l >= std::max(1, e - 1); --l) {
    std::string_view s = lines[static_cast<size_t>(l) - 1].text;
    const size_t open = s.find(": [");
    if (open == npos) continue;
    const size_t close = s.find("]:", open);
    if (close == npos) continue;
    const size_t end = std::min(s.find_first_of(" #", close), s.size());
    std::string_view value = s.substr(open + 2, end - open - 2);
    return YamlProblem{l, static_cast<int>(open) + 3,
                       "an address in brackets must be quoted, " + Q(value) +
                           ": unquoted, \"[\" starts a YAML list"};
  }
  return std::nullopt;
}

std::optional<YamlProblem> Explain(std::string_view text, const std::vector<Line>& lines, int e,
                                   int column, std::string_view msg) {
  const size_t line_index = static_cast<size_t>(e) - 1;
  const size_t mark = lines[line_index].offset + static_cast<size_t>(std::max(column, 1)) - 1;
  std::string_view line = lines[line_index].text;

  // A tab in the indentation of this line or the content line above it.
  for (int l = e; l >= 1 && l >= e - 1; --l) {
    if (int tab = TabInIndentation(lines[static_cast<size_t>(l) - 1])) {
      return YamlProblem{l, tab, "a tab in the indentation: YAML indents with spaces only"};
    }
  }

  const Scan scan = ScanText(text, mark);
  // A quote that runs past its line up to where the parser failed.
  if (scan.long_quote) {
    const Where open = WhereIs(lines, scan.long_quote->pos);
    if (scan.long_quote_end == npos) {
      return YamlProblem{open.line, open.column,
                         "the quote opened here is never closed, so the value runs to the end of "
                         "the file: add the closing " + std::string(1, scan.long_quote->c)};
    }
    const Where close = WhereIs(lines, scan.long_quote_end - 1);
    if (close.line >= e - 1) {
      return YamlProblem{open.line, open.column,
                         "the quote opened here is not closed on its line, so the value runs on "
                         "to the quote on " + Place(close.line, close.column) +
                             ": add the closing " + std::string(1, scan.long_quote->c)};
    }
  }
  if (scan.mismatched && !scan.open.empty()) {
    const Where w = WhereIs(lines, scan.mismatched->pos);
    const Where o = WhereIs(lines, scan.open.back().pos);
    const char want = scan.open.back().c == '[' ? ']' : '}';
    return YamlProblem{w.line, w.column,
                       "\"" + std::string(1, scan.mismatched->c) + "\" closes the \"" +
                           std::string(1, scan.open.back().c) + "\" opened at " +
                           Place(o.line, o.column) + ", which needs \"" + std::string(1, want) +
                           "\""};
  }
  if (scan.bad_closer) {
    const Where w = WhereIs(lines, scan.bad_closer->pos);
    return YamlProblem{w.line, w.column,
                       "\"" + std::string(1, scan.bad_closer->c) +
                           "\" closes nothing: no bracket is open here"};
  }
  if (msg == "end of sequence flow not found" || msg == "end of map flow not found") {
    if (!scan.open.empty()) {
      const Opener& o = scan.open.back();
      const Where w = WhereIs(lines, o.pos);
      return YamlProblem{w.line, w.column,
                         o.c == '[' ? "the \"[\" opened here is never closed: a flow list "
                                      "([a, b]) must end with \"]\""
                                    : "the \"{\" opened here is never closed: a flow map "
                                      "({a: 1, b: 2}) must end with \"}\""};
    }
  }
  if (msg.rfind("unknown escape character: ", 0) == 0) {
    const size_t backslash = line.rfind('\\', static_cast<size_t>(std::max(column, 1)) - 1);
    const int at = backslash == npos ? column : static_cast<int>(backslash) + 1;
    const std::string escape =
        backslash != npos && backslash + 1 < line.size() ? std::string(line.substr(backslash, 2))
                                                         : "\\" + std::string(msg.substr(26));
    return YamlProblem{e, at,
                       "unknown escape " + Q(escape) +
                           " in a double-quoted value: write \"\\\\\" for a backslash, or use "
                           "single quotes, in which a backslash is an ordinary character"};
  }
  if (msg == "unknown token" && mark < text.size()) {
    const char c = text[mark];
    if (c == '@' || c == '`' || c == '%') {
      return YamlProblem{e, column,
                         "\"" + std::string(1, c) +
                             "\" cannot start a value without quotes (YAML reserves it): quote "
                             "the value"};
    }
  }
  if (msg == "the referenced anchor is not defined" && mark < text.size() && text[mark] == '*') {
    size_t end = mark + 1;
    while (end < text.size() && !Blank(text[end]) && std::strchr(",]}\r\n", text[end]) == nullptr) {
      ++end;
    }
    const std::string name(text.substr(mark + 1, end - mark - 1));
    return YamlProblem{e, column,
                       "the alias \"*" + name + "\" names no anchor: put \"&" + name +
                           "\" on a value above it in the same file (anchors do not reach into "
                           "other files)"};
  }
  if (auto p = UnquotedBrackets(lines, e)) return p;
  if (msg == "illegal map value") {
    // "name: a: b": a second ": " on the line of a key.
    std::vector<Token> tokens = Tokens(lines[line_index], e);
    if (!tokens.empty() && tokens.back().kind == Kind::kKey && column > tokens.back().colon) {
      const Token& key = tokens.back();
      size_t v = static_cast<size_t>(key.colon);
      while (v < line.size() && Blank(line[v])) ++v;
      return YamlProblem{e, static_cast<int>(v) + 1,
                         "the value of " + Q(key.text) +
                             " holds \": \", which YAML reads as a second key on the line: "
                             "quote the value"};
    }
  }
  if (msg == "illegal map value" || msg == "end of map not found" ||
      msg == "end of sequence not found" || msg == "illegal block entry") {
    if (auto p = Indentation(lines, e)) return p;
  }
  return std::nullopt;
}

}  // namespace

bool QuoteIsClosed(std::string_view text, size_t pos) {
  return pos < text.size() && QuoteEnd(text, pos) != npos;
}

YamlProblem ExplainYamlError(std::string_view text, int line, int column,
                             std::string_view parser_message) {
  const std::vector<Line> lines = SplitLines(text);
  std::optional<YamlProblem> p;
  if (line >= 1 && static_cast<size_t>(line) <= lines.size()) {
    p = Explain(text, lines, line, column, parser_message);
  }
  if (!p) {
    return {line, column, "invalid YAML: " + std::string(parser_message) + std::string(kNotCheckedFurther)};
  }
  p->message += " (YAML parser: \"" + std::string(parser_message) + "\"";
  if (p->line != line || p->column != column) p->message += " at " + Place(line, column);
  p->message += ")";
  p->message += kNotCheckedFurther;
  return *p;
}

}  // namespace connwatch
