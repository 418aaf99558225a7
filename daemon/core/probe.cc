#include "core/probe.h"

#include <algorithm>

namespace connwatch {

namespace {
constexpr std::string_view kProbeNames[kProbeCount] = {"peek", "zero_send", "tcp_info",
                                                       "so_error"};
constexpr std::string_view kDetectorNames[kDetectorCount] = {
    "read", "peek", "zero_send", "tcp_info", "so_error", "heartbeat"};
}  // namespace

Detector ProbeDetector(Probe probe) {
  switch (probe) {
    case Probe::kPeek:
      return Detector::kPeek;
    case Probe::kZeroSend:
      return Detector::kZeroSend;
    case Probe::kTcpInfo:
      return Detector::kTcpInfo;
    case Probe::kSoError:
    case Probe::kCount:
      break;
  }
  return Detector::kSoError;
}

std::string_view ProbeName(Probe probe) {
  auto i = static_cast<size_t>(probe);
  return i < kProbeCount ? kProbeNames[i] : std::string_view("unknown");
}

std::string_view DetectorName(Detector detector) {
  auto i = static_cast<size_t>(detector);
  return i < kDetectorCount ? kDetectorNames[i] : std::string_view("unknown");
}

bool ParseProbe(std::string_view word, Probe* probe) {
  for (size_t i = 0; i < kProbeCount; ++i) {
    if (kProbeNames[i] == word) {
      *probe = static_cast<Probe>(i);
      return true;
    }
  }
  return false;
}

ProbeList ProbeList::Default() {
  ProbeList list;
  list.Add(Probe::kPeek);
  list.Add(Probe::kZeroSend);
  list.Add(Probe::kTcpInfo);
  return list;
}

bool ProbeList::Add(Probe probe) {
  if (size >= kProbeCount || Contains(probe)) return false;
  order[size++] = probe;
  return true;
}

bool ProbeList::Contains(Probe probe) const { return std::find(begin(), end(), probe) != end(); }

bool ProbeList::operator==(const ProbeList& other) const {
  return size == other.size && std::equal(begin(), end(), other.begin());
}

}  // namespace connwatch
