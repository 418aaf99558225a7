#pragma once
// connwatchctl's exit statuses. status follows the monitoring-plugin
// convention (0 OK, 2 CRITICAL, 3 UNKNOWN), so it serves as a check as is;
// the other commands use the same 3 for "no answer".

namespace connwatch::ctl {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;       // the daemon answered, and said no (reload, check-config).
constexpr int kExitDown = 2;         // status: a selected target is not up.
constexpr int kExitUnknown = 3;      // no usable answer: unreachable, an error, an unknown target.
constexpr int kExitUsage = 64;       // a bad command line (sysexits' EX_USAGE).

}  // namespace connwatch::ctl
