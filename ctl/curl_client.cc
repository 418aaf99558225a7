// The libcurl HttpClient. One easy handle per request: connwatchd closes
// every connection after one request, so there is nothing to reuse.

#include <curl/curl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>

#include "http_client.h"

namespace connwatch::ctl {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Transfer {
  std::string body;
  const std::function<void(std::string_view)>* on_data = nullptr;
  SteadyClock::time_point last_data = SteadyClock::now();
};

size_t OnWrite(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  t->last_data = SteadyClock::now();
  // Only a 200 stream goes to the callback; a refusal (503, 401) is a body
  // to show, kept whole.
  if (t->on_data != nullptr) {
    t->on_data->operator()(std::string_view(data, n));
  } else {
    t->body.append(data, n);
  }
  return n;
}

class CurlClient : public HttpClient {
 public:
  CurlClient(ClientOptions options, std::string user_password)
      : options_(std::move(options)), user_password_(std::move(user_password)) {
    while (!options_.url.empty() && options_.url.back() == '/') options_.url.pop_back();
  }

  HttpResult Get(const std::string& path) override { return Perform(path, false); }
  HttpResult Post(const std::string& path) override { return Perform(path, true); }

  HttpResult Stream(const std::string& path, const std::vector<std::string>& headers,
                    const std::function<void(std::string_view)>& on_data,
                    const std::function<bool()>& stop) override {
    Transfer t;
    char error_buffer[CURL_ERROR_SIZE] = "";
    CURL* h = NewHandle(path, &t, error_buffer);
    curl_slist* list = nullptr;
    for (const std::string& header : headers) list = curl_slist_append(list, header.c_str());
    list = curl_slist_append(list, "Accept: text/event-stream");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    // The header callback runs before the body: decide there whether the
    // body is the stream (200) or an error document to keep.
    HeaderState hs{&t, &on_data};
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnStreamHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hs);

    HttpResult result;
    CURLM* m = curl_multi_init();
    curl_multi_add_handle(m, h);
    int running = 1;
    CURLcode code = CURLE_OK;
    while (true) {
      curl_multi_perform(m, &running);
      if (running == 0) break;
      if (stop()) {
        result.stopped = true;
        break;
      }
      if (SteadyClock::now() - t.last_data > options_.stream_idle_timeout) {
        result.error = "nothing received for " +
                       std::to_string(options_.stream_idle_timeout.count() / 1000) +
                       " s (the daemon sends a keepalive every 15 s)";
        break;
      }
      curl_multi_poll(m, nullptr, 0, 100, nullptr);
    }
    if (running == 0) {
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
        if (msg->msg == CURLMSG_DONE) code = msg->data.result;
      }
    }
    Finish(h, code, error_buffer, &t, &result);
    curl_multi_remove_handle(m, h);
    curl_easy_cleanup(h);
    curl_multi_cleanup(m);
    curl_slist_free_all(list);
    return result;
  }

 private:
  struct HeaderState {
    Transfer* t;
    const std::function<void(std::string_view)>* on_data;
  };

  static size_t OnStreamHeader(char* data, size_t size, size_t count, void* user) {
    auto* hs = static_cast<HeaderState*>(user);
    std::string_view line(data, size * count);
    // A status line starts each response (there may be several, e.g. 100).
    if (line.rfind("HTTP/", 0) == 0) {
      size_t sp = line.find(' ');
      const bool ok = sp != std::string_view::npos && line.substr(sp + 1, 3) == "200";
      hs->t->on_data = ok ? hs->on_data : nullptr;
    }
    return size * count;
  }

  CURL* NewHandle(const std::string& path, Transfer* t, char* error_buffer) {
    CURL* h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, (options_.url + path).c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnWrite);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "connwatchctl");
    // Only the daemon's own URL: no redirects to follow, no other protocols.
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!user_password_.empty()) {
      curl_easy_setopt(h, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      curl_easy_setopt(h, CURLOPT_USERPWD, user_password_.c_str());
    }
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    return h;
  }

  HttpResult Perform(const std::string& path, bool post) {
    Transfer t;
    char error_buffer[CURL_ERROR_SIZE] = "";
    CURL* h = NewHandle(path, &t, error_buffer);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    if (post) {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    HttpResult result;
    Finish(h, curl_easy_perform(h), error_buffer, &t, &result);
    curl_easy_cleanup(h);
    return result;
  }

  void Finish(CURL* h, CURLcode code, const char* error_buffer, Transfer* t, HttpResult* result) {
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t retry = -1;
    if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry) == CURLE_OK && retry > 0) {
      result->retry_after_seconds = static_cast<long>(retry);
    }
    result->body = std::move(t->body);
    if (result->stopped || !result->error.empty()) return;
    // A stream that the daemon ends, or that breaks after the headers, has
    // its status; a request that never got an answer has none.
    if (code != CURLE_OK) {
      if (status == 0) {
        result->error = *error_buffer != '\0' ? error_buffer : curl_easy_strerror(code);
      } else if (code != CURLE_PARTIAL_FILE && code != CURLE_RECV_ERROR &&
                 code != CURLE_GOT_NOTHING) {
        result->error = *error_buffer != '\0' ? error_buffer : curl_easy_strerror(code);
        status = 0;
      }
    }
    result->status = static_cast<int>(status);
  }

  ClientOptions options_;
  std::string user_password_;
};

}  // namespace

std::string ReadAuthFile(const std::string& path, std::string* user_password) {
  std::ifstream in(path);
  if (!in) return "cannot read the auth file " + path + ": " + std::strerror(errno);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const size_t colon = line.find(':');
  if (colon == std::string::npos || colon == 0) {
    return "the auth file " + path + " must hold user:password on its first line";
  }
  *user_password = line;
  return "";
}

std::unique_ptr<HttpClient> MakeCurlClient(const ClientOptions& options, std::string* error) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::string user_password;
  if (!options.auth_file.empty()) {
    *error = ReadAuthFile(options.auth_file, &user_password);
    if (!error->empty()) return nullptr;
  }
  return std::make_unique<CurlClient>(options, std::move(user_password));
}

}  // namespace connwatch::ctl
