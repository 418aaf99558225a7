#include "config/config_text.h"

#include <arpa/inet.h>

#include <cstdio>
#include <system_error>
#include <vector>

namespace connwatch::config_detail {

// A value quoted in an error message, cut at 80 bytes (on a UTF-8 boundary):
// a message must stay readable, and a huge value aliased many times must not
// multiply into gigabytes of error text.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 80;
  if (s.size() <= kMax) return "\"" + std::string(s) + "\"";
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return "\"" + std::string(s.substr(0, cut)) + "\"... (" + std::to_string(s.size()) + " bytes)";
}

std::string Describe(const YamlNode* node) {
  switch (node->kind) {
    case YamlNode::Kind::kNull:
      return "an empty value";
    case YamlNode::Kind::kScalar:
      return "the string " + Quote(node->value);
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kMap:
      return "a map";
  }
  return "something else";
}

// "targets[0].labels.team"; a key that is not a plain word is quoted:
// `labels."team name"`.
std::string Join(const std::string& parent, std::string_view key) {
  bool plain = !key.empty();
  for (char c : key) {
    plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.');
  }
  std::string out = parent;
  if (!out.empty()) out += '.';
  if (plain) {
    out += key;
  } else {
    out += '"';
    out += key;
    out += '"';
  }
  return out;
}

std::string Index(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

std::string ErrnoText(int err) { return std::generic_category().message(err); }

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool IsIpv4Literal(std::string_view s) {
  in_addr a;
  return inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}
bool IsIpv6Literal(std::string_view s) {
  in6_addr a;
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// "[fe80::1%eth0]" holds an IPv6 address with an optional zone.
bool IsIpv6WithZone(std::string_view s) {
  size_t percent = s.find('%');
  if (percent == std::string_view::npos) return IsIpv6Literal(s);
  return percent + 1 < s.size() && IsIpv6Literal(s.substr(0, percent));
}

bool IsHostName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Splits "host:port" / "[v6]:port". On failure `why` says what is wrong.
bool ParseAddress(std::string_view text, std::string* host, uint16_t* port, std::string* why) {
  if (text.empty()) {
    *why = "must not be empty (expected host:port or [ipv6]:port)";
    return false;
  }
  const std::string prefix = "invalid address " + Quote(text) + ": ";
  for (char c : text) {
    if (c == ' ' || c == '\t') {
      *why = prefix + "contains whitespace";
      return false;
    }
  }
  std::string_view host_part;
  std::string_view port_part;
  if (text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      *why = prefix + "missing \"]\" after the IPv6 address (expected [ipv6]:port)";
      return false;
    }
    host_part = text.substr(1, close - 1);
    if (host_part.empty()) {
      *why = prefix + "empty IPv6 address between \"[\" and \"]\"";
      return false;
    }
    if (!IsIpv6WithZone(host_part)) {
      *why = prefix + Quote(host_part) + " in brackets is not an IPv6 address";
      return false;
    }
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) {
      *why = prefix + "missing port (expected [ipv6]:port)";
      return false;
    }
    if (rest[0] != ':') {
      *why = prefix + "expected \":port\" after \"]\"";
      return false;
    }
    port_part = rest.substr(1);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      *why = prefix + "missing port (expected host:port)";
      return false;
    }
    if (text.find(':') != colon) {
      *why = prefix + "an IPv6 address must be written in brackets, e.g. \"[2001:db8::1]:80\"";
      return false;
    }
    host_part = text.substr(0, colon);
    port_part = text.substr(colon + 1);
    if (host_part.empty()) {
      *why = prefix + "missing host before \":\"";
      return false;
    }
    if (!IsIpv4Literal(host_part) && !IsHostName(host_part)) {
      *why = prefix + "host " + Quote(host_part) +
             " is neither an IPv4 address nor a host name (letters, digits, \"-\", \".\", \"_\")";
      return false;
    }
  }
  if (port_part.empty()) {
    *why = prefix + "missing port after \":\"";
    return false;
  }
  for (char c : port_part) {
    if (c < '0' || c > '9') {
      *why = prefix + "port " + Quote(port_part) + " is not a number (1..65535)";
      return false;
    }
  }
  long value = port_part.size() > 5 ? 100000 : std::stol(std::string(port_part));
  if (value < 1 || value > 65535) {
    *why = prefix + "port " + std::string(port_part) + " is out of range 1..65535";
    return false;
  }
  *host = std::string(host_part);
  *port = static_cast<uint16_t>(value);
  return true;
}

IpVersion LiteralVersion(std::string_view host) {
  if (IsIpv4Literal(host)) return IpVersion::kV4;
  if (IsIpv6WithZone(host)) return IpVersion::kV6;
  return IpVersion::kNone;
}

std::string_view VersionName(IpVersion v) { return v == IpVersion::kV4 ? "IPv4" : "IPv6"; }

bool FamilyAllows(AddressFamily family, IpVersion v) {
  if (family == AddressFamily::kAny || v == IpVersion::kNone) return true;
  return (family == AddressFamily::kIp4) == (v == IpVersion::kV4);
}

bool IsLabelNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (!first && c >= '0' && c <= '9');
}

// Checks that `text` is UTF-8 without control characters (other than tab,
// CR, LF); otherwise sets the 1-based place of the first bad byte.
bool CheckText(std::string_view text, int* line, int* column, std::string* why) {
  int l = 1;
  int c = 1;
  size_t i = 0;
  const size_t n = text.size();
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  auto continuation = [&](size_t k, unsigned char lo, unsigned char hi) {
    return k < n && byte(k) >= lo && byte(k) <= hi;
  };
  while (i < n) {
    unsigned char b = byte(i);
    size_t length = 0;
    if (b < 0x80) {
      if ((b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7f) {
        char buf[80];
        std::snprintf(buf, sizeof buf, "control character 0x%02x is not allowed in a config file",
                      b);
        *why = buf;
        *line = l;
        *column = c;
        return false;
      }
      length = 1;
    } else if (b >= 0xc2 && b <= 0xdf) {
      if (continuation(i + 1, 0x80, 0xbf)) length = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
      unsigned char lo = b == 0xe0 ? 0xa0 : 0x80;
      unsigned char hi = b == 0xed ? 0x9f : 0xbf;
      if (continuation(i + 1, lo, hi) && continuation(i + 2, 0x80, 0xbf)) length = 3;
    } else if (b >= 0xf0 && b <= 0xf4) {
      unsigned char lo = b == 0xf0 ? 0x90 : 0x80;
      unsigned char hi = b == 0xf4 ? 0x8f : 0xbf;
      if (continuation(i + 1, lo, hi) && continuation(i + 2, 0x80, 0xbf) &&
          continuation(i + 3, 0x80, 0xbf)) {
        length = 4;
      }
    }
    if (length == 0) {
      char buf[80];
      std::snprintf(buf, sizeof buf, "invalid UTF-8 (byte 0x%02x); a config file must be UTF-8", b);
      *why = buf;
      *line = l;
      *column = c;
      return false;
    }
    if (b == '\n') {
      ++l;
      c = 1;
    } else {
      c += static_cast<int>(length);  // columns count bytes, as yaml-cpp's do.
    }
    i += length;
  }
  return true;
}

}  // namespace connwatch::config_detail
