#pragma once
// A streaming writer for the per-target families of /metrics. With tens of
// thousands of targets, building prometheus::MetricFamily vectors and running
// them through prometheus::TextSerializer costs hundreds of milliseconds per
// scrape; this writer appends the same bytes straight from the snapshot.
// prometheus-cpp stays the reference: a test proves the output byte-identical
// to TextSerializer over BuildMetricFamilies for the same snapshot, and the
// daemon-wide families (state counts, histograms, build info, process_*) are
// still serialized by prometheus-cpp. Pure functions; any thread.

#include <functional>
#include <string>
#include <string_view>

#include "core/snapshot.h"

namespace connwatch {

// Receives the exposition in pieces of about kChunkBytes.
using TextWriter = std::function<void(std::string_view)>;
inline constexpr size_t kChunkBytes = 64 * 1024;

// Writes every per-target family (connwatch_target_*) for `snapshot`, in
// table order, exactly as TextSerializer would write them, handing `write`
// a piece whenever about kChunkBytes are ready: memory stays O(1) in the
// number of targets and no large buffer is ever touched.
void WriteTargetFamilies(const Snapshot& snapshot, const TextWriter& write);

// The same bytes appended to one string (tests, small snapshots).
void AppendTargetFamilies(const Snapshot& snapshot, std::string* out);

// Appends `value` as prometheus-cpp 1.0.1 writes a double ("%.16g"; "Nan",
// "+Inf", "-Inf").
void AppendPrometheusDouble(double value, std::string* out);

// `value` with every byte that is not part of valid UTF-8 (overlong forms,
// surrogates, code points above U+10FFFF, stray bytes) replaced by U+FFFD.
std::string ValidUtf8(std::string_view value);

// Appends a label value escaped for the text format (\\, \" and \n), after
// replacing invalid UTF-8 with U+FFFD.
void AppendLabelValue(std::string_view value, std::string* out);
// A label connwatch_target_info sets itself (target, address, endpoint; for
// an srv endpoint priority and weight): a user label of that name is left out.
bool IsOwnInfoLabel(std::string_view name, bool srv);

}  // namespace connwatch
