#include "core/config.h"

#include <string>

namespace connwatch {

std::string_view AddressFamilyName(AddressFamily f) {
  switch (f) {
    case AddressFamily::kAny:
      return "any";
    case AddressFamily::kIp4:
      return "ip4";
    case AddressFamily::kIp6:
      return "ip6";
  }
  return "any";
}

std::string ConfigError::ToString() const {
  std::string out = file;
  if (line > 0) {
    if (!out.empty()) out += ':';
    out += std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  for (const std::string* part : {&path, &message}) {
    if (part->empty()) continue;
    if (!out.empty()) out += ": ";
    out += *part;
  }
  return out;
}

}  // namespace connwatch
