#pragma once
// Text helpers of the config loader: how values are quoted in messages, the
// paths of keys ("targets[0].labels.team"), suggestions for misspelt keys,
// address and host syntax, and the check that a file is UTF-8 text.

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "config/yaml_tree.h"
#include "core/config.h"

namespace connwatch::config_detail {

// A value quoted in an error message, cut at 80 bytes (on a UTF-8 boundary):
// a message must stay readable, and a huge value aliased many times must not
// multiply into gigabytes of error text.
std::string Quote(std::string_view s);
// "an empty value", "the string \"x\"", "a list", "a map".
std::string Describe(const YamlNode* node);
// "targets[0].labels.team"; a key that is not a plain word is quoted:
// `labels."team name"`.
std::string Join(const std::string& parent, std::string_view key);
std::string Index(const std::string& parent, size_t i);
std::string ErrnoText(int err);
size_t EditDistance(std::string_view a, std::string_view b);

template <size_t N>
bool Contains(const std::string_view (&keys)[N], std::string_view key) {
  return std::find(std::begin(keys), std::end(keys), key) != std::end(keys);
}

// The word of `known` closest to `word` when it looks like a misspelling of
// it, else "".
template <size_t N>
std::string_view ClosestWord(std::string_view word, const std::string_view (&known)[N]) {
  std::string_view best;
  size_t best_distance = 3;  // suggest only close misspellings.
  for (std::string_view candidate : known) {
    size_t d = EditDistance(word, candidate);
    if (d < best_distance && d < std::max<size_t>(word.size(), 2) / 2 + 1) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

// `unknown key "conect_timeout" (did you mean "connect_timeout"?)`.
template <size_t N>
std::string UnknownKeyMessage(std::string_view key, const std::string_view (&known)[N]) {
  std::string message = "unknown key " + Quote(key);
  std::string_view best = ClosestWord(key, known);
  if (!best.empty()) message += " (did you mean " + Quote(best) + "?)";
  if (key == "<<") message += ": merge keys are not supported; put shared settings in \"defaults\"";
  return message;
}

bool IsIpv4Literal(std::string_view s);
bool IsIpv6Literal(std::string_view s);
// "[fe80::1%eth0]" holds an IPv6 address with an optional zone.
bool IsIpv6WithZone(std::string_view s);
bool IsHostName(std::string_view s);
// Splits "host:port" / "[v6]:port". On failure `why` says what is wrong.
bool ParseAddress(std::string_view text, std::string* host, uint16_t* port, std::string* why);

enum class IpVersion : uint8_t { kNone, kV4, kV6 };
IpVersion LiteralVersion(std::string_view host);
std::string_view VersionName(IpVersion v);
bool FamilyAllows(AddressFamily family, IpVersion v);

bool IsLabelNameChar(char c, bool first);
// Checks that `text` is UTF-8 without control characters (other than tab,
// CR, LF); otherwise sets the 1-based place of the first bad byte.
bool CheckText(std::string_view text, int* line, int* column, std::string* why);

}  // namespace connwatch::config_detail
