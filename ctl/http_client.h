#pragma once
// How connwatchctl talks to connwatchd: an interface the commands use (the
// tests give them a fake) and its libcurl implementation.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace connwatch::ctl {

struct HttpResult {
  int status = 0;     // the HTTP status; 0 when no answer came (see `error`).
  std::string error;  // why no answer came ("" when one did).
  std::string body;   // the body of a non-streamed answer, or of a refused stream.
  long retry_after_seconds = -1;  // Retry-After, -1 without one.
  bool stopped = false;           // Stream(): ended because `stop` said so.

  bool answered() const { return status != 0; }
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // `path` starts with "/" and is appended to the base URL.
  virtual HttpResult Get(const std::string& path) = 0;
  virtual HttpResult Post(const std::string& path) = 0;
  // GET `path` with `headers` ("Name: value"), the body of a 200 answer handed
  // to `on_data` piece by piece as it arrives. Returns when the stream ends,
  // fails, goes silent for longer than the client's idle limit, or `stop()`
  // (asked every 100 ms at least) returns true.
  virtual HttpResult Stream(const std::string& path, const std::vector<std::string>& headers,
                            const std::function<void(std::string_view)>& on_data,
                            const std::function<bool()>& stop) = 0;
};

struct ClientOptions {
  std::string url = "http://127.0.0.1:9798";
  std::string auth_file;  // "user:password" on the first line; "" for none.
  std::string ca_file;    // PEM CA bundle for an https:// URL; "" for the system's.
  std::chrono::milliseconds timeout{5000};  // connect, and a whole plain request.
  // A stream with nothing (not even the daemon's 15 s keepalive) for this
  // long is taken for dead.
  std::chrono::milliseconds stream_idle_timeout{45000};
};

// Reads an auth file: its first line must be "user:password" (the user not
// empty). Returns "" and sets `user_password`, or the reason it cannot.
std::string ReadAuthFile(const std::string& path, std::string* user_password);

// A libcurl client. On a bad option (unreadable auth file) returns nullptr
// and sets `error`.
std::unique_ptr<HttpClient> MakeCurlClient(const ClientOptions& options, std::string* error);

}  // namespace connwatch::ctl
