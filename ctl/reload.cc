#include "reload.h"

#include "exit_codes.h"

namespace connwatch::ctl {

int RunReload(HttpClient& client, std::ostream& out, std::ostream& err) {
  HttpResult r = client.Post("/-/reload");
  if (!r.answered()) {
    err << "connwatchctl: cannot reach connwatchd: " << r.error << "\n";
    return kExitUnknown;
  }
  std::string body = r.body;
  if (!body.empty() && body.back() != '\n') body += '\n';
  if (r.status == 200) {
    out << body;
    return kExitOk;
  }
  err << "connwatchctl: reload failed (" << r.status << "):\n" << body;
  if (r.status == 403) {
    err << "connwatchctl: connwatchd reloads over HTTP only with --web.enable-lifecycle; "
           "without it, send SIGHUP (systemctl reload connwatch)\n";
  }
  return kExitFailed;
}

}  // namespace connwatch::ctl
