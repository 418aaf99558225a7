#pragma once
// The vocabulary of liveness probes: which checks a periodic check runs on a
// held connection (`probes:` in the config), and which path first saw a
// connection die (`detected_by` in events, the `probe` label of
// connwatch_probes_total and connwatch_probe_detections_total). Every word
// comes from here. Constant data; any thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace connwatch {

// A periodic probe of a held connection (shared/docs/tcp-liveness.md says
// what the kernel answers to each, row by row).
enum class Probe : uint8_t {
  kPeek,      // recv(fd, b, 1, MSG_PEEK | MSG_DONTWAIT): EOF, a reset, or EAGAIN (alive).
  kZeroSend,  // send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT): a pending error or a local shutdown.
  kTcpInfo,   // getsockopt(TCP_INFO): tcpi_state (CLOSE_WAIT: a FIN, even behind unread data), rtt.
  kSoError,   // getsockopt(SO_ERROR): the pending error, else the stored ICMP (soft) error.
  kCount
};
inline constexpr size_t kProbeCount = static_cast<size_t>(Probe::kCount);

// What noticed a death (or ran a probe): the four probes plus the
// event-driven read of a readable socket and the heartbeat.
enum class Detector : uint8_t {
  kRead,  // the socket became readable and recv() said EOF or an error.
  kPeek,
  kZeroSend,
  kTcpInfo,
  kSoError,
  kHeartbeat,  // a heartbeat failed (no reply, a wrong reply) or its send failed.
  kCount
};
inline constexpr size_t kDetectorCount = static_cast<size_t>(Detector::kCount);

Detector ProbeDetector(Probe probe);
// "peek", "zero_send", "tcp_info", "so_error".
std::string_view ProbeName(Probe probe);
// "read", "peek", "zero_send", "tcp_info", "so_error", "heartbeat".
std::string_view DetectorName(Detector detector);
// Inverse of ProbeName; false for an unknown word.
bool ParseProbe(std::string_view word, Probe* probe);

// An ordered list of distinct probes (the config's `probes:`), run in order
// until one finds the connection dead. Fixed size: a config of 100,000
// targets holds 100,000 of these.
struct ProbeList {
  std::array<Probe, kProbeCount> order{};
  uint8_t size = 0;

  // The default: [peek, zero_send, tcp_info] (docs/PROBES.md says why).
  static ProbeList Default();
  bool Add(Probe probe);  // false when full or already present
  bool Contains(Probe probe) const;
  const Probe* begin() const { return order.data(); }
  const Probe* end() const { return order.data() + size; }
  bool operator==(const ProbeList& other) const;
};

}  // namespace connwatch
