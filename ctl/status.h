#pragma once
// `connwatchctl status [TARGET...]`: the targets of GET /api/v1/targets as a
// table, and the exit status of a monitoring check.

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "http_client.h"

namespace connwatch::ctl {

struct TargetRow {
  std::string name;
  std::string state;    // up, backoff, resolving, connecting.
  bool up = false;
  std::string since;    // as the API gives it ("" when it gave none).
  double for_seconds = -1;  // now - since; -1 when unknown.
  std::string address;
  std::string reason;   // of the last event: "peer_reset (ECONNRESET)", "" for a connect.
};

// "2026-11-25T15:05:37.498Z" -> a time point; false when it is not that form.
bool ParseApiTime(const std::string& text, std::chrono::system_clock::time_point* out);

// The rows of an /api/v1/targets document, in its order; false and `error`
// when it is not one.
bool ParseTargets(const std::string& body, std::chrono::system_clock::time_point now,
                  std::vector<TargetRow>* rows, std::string* error);

// The table, header first, columns padded to their widest cell; `colour`
// paints the state words (the padding stays outside the escape sequences).
std::string RenderTable(const std::vector<TargetRow>& rows, bool colour);

// kExitOk when every row is up (and when there are none), else kExitDown.
int StatusExitCode(const std::vector<TargetRow>& rows);

// Keeps the rows named in `names` in that order ("" names: all). Names the
// daemon does not watch go to `unknown`.
std::vector<TargetRow> SelectTargets(const std::vector<TargetRow>& rows,
                                     const std::vector<std::string>& names,
                                     std::vector<std::string>* unknown);

// The whole command; returns its exit status.
int RunStatus(HttpClient& client, const std::vector<std::string>& names, bool colour,
              std::chrono::system_clock::time_point now, std::ostream& out, std::ostream& err);

}  // namespace connwatch::ctl
