// libFuzzer target: the heartbeat matcher fed arbitrary peer bytes.
//
// Target::OnHeartbeatBytes (daemon/target.cc) is private and needs a live
// Target, so this reproduces its matching step exactly: the `expect` pattern
// compiled as LoopContext::Regex does (default RE2::Options, log_errors off),
// the received bytes appended to a buffer capped at the last 4096 bytes
// (Target::kHeartbeatBufferCap), RE2::PartialMatch over the whole buffer on
// every chunk, the buffer cleared on a match. Keep it in step with target.cc
// (or move that code into a HeartbeatMatcher class and fuzz that instead).
//
// Input: [pattern length byte][pattern][chunks: length byte, bytes]...

#include <fuzzer/FuzzedDataProvider.h>
#include <re2/re2.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {
constexpr size_t kHeartbeatBufferCap = 4096;  // Target::kHeartbeatBufferCap
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string pattern = in.ConsumeRandomLengthString(512);
  if (pattern.empty()) return 0;  // the config loader refuses an empty expect.
  RE2::Options options;
  options.set_log_errors(false);
  RE2 expect(pattern, options);
  if (!expect.ok()) return 0;  // the config loader refuses it too.

  std::string received;
  while (in.remaining_bytes() > 0) {
    // Chunks up to 16 KiB, as one recv() of the drain buffer can return.
    size_t len = in.ConsumeIntegralInRange<size_t>(0, 16 * 1024);
    std::string chunk = in.ConsumeBytesAsString(len);
    // A chunk may repeat to push the buffer past its cap cheaply.
    const int repeat = in.ConsumeIntegralInRange<int>(1, 4);
    for (int i = 0; i < repeat; ++i) {
      received.append(chunk);
      if (received.size() > kHeartbeatBufferCap) {
        received.erase(0, received.size() - kHeartbeatBufferCap);
      }
      if (received.size() > kHeartbeatBufferCap) std::abort();
      if (RE2::PartialMatch(received, expect)) received.clear();
    }
  }
  return 0;
}
