#pragma once
// `connwatchctl reload`: POST /-/reload, the daemon's answer printed.

#include <ostream>

#include "http_client.h"

namespace connwatch::ctl {

// kExitOk when the daemon took the new config, kExitFailed when it answered
// otherwise (rejected config, lifecycle off), kExitUnknown without an answer.
int RunReload(HttpClient& client, std::ostream& out, std::ostream& err);

}  // namespace connwatch::ctl
