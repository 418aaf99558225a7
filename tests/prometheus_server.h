#pragma once
// A real Prometheus server (Debian's /usr/bin/prometheus) for end-to-end
// tests: started on a free loopback port with its own data directory, asked
// over its HTTP API. Header-only, like http_client.h (the test binary is built
// from tests/*_test.cc).

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "http_client.h"
#include "test_util.h"

namespace connwatch::testing {

inline constexpr const char* kPrometheusBinary = "/usr/bin/prometheus";

// Percent-encodes all but RFC 3986's unreserved characters (a query string).
inline std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// A loopback port that was free a moment ago (Prometheus takes no port 0).
inline int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

class PrometheusServer {
 public:
  // Starts Prometheus on `config_file` with its data under `data_dir`
  // (attempt N uses data_dir/data-N) and waits for /-/ready; "" once ready,
  // else why. A port is free when chosen but may be taken before Prometheus
  // binds it: a few are tried.
  std::string Start(const std::string& config_file, const std::string& data_dir,
                    std::chrono::milliseconds deadline) {
    using std::chrono::milliseconds;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreeLoopbackPort();
      process_ = std::make_unique<Subprocess>(std::vector<std::string>{
          kPrometheusBinary, "--config.file=" + config_file,
          "--storage.tsdb.path=" + data_dir + "/data-" + std::to_string(attempt),
          "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"});
      bool ready = WaitFor(
          [&] {
            return HttpGet(kHost, port_, "/-/ready", milliseconds(1000)).status == 200 ||
                   process_->Wait(milliseconds(0)) >= 0;
          },
          deadline);
      if (ready && HttpGet(kHost, port_, "/-/ready").status == 200) return "";
      if (process_->Output().find("address already in use") == std::string::npos) break;
    }
    return "Prometheus did not become ready on 127.0.0.1:" + std::to_string(port_);
  }

  bool started() const { return process_ != nullptr; }
  int port() const { return port_; }
  std::string Output() const { return process_ ? process_->Output() : std::string(); }

  // GET /api/v1/<path>; the parsed document (null on error).
  nlohmann::json Api(const std::string& path) const {
    HttpResponse r =
        HttpGet(kHost, port_, "/api/v1/" + path, std::chrono::milliseconds(5000));
    if (!r.ok()) return nullptr;
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    return j.is_discarded() ? nlohmann::json(nullptr) : j;
  }
  // An instant query: data.result, or null when the query failed.
  nlohmann::json Query(const std::string& promql) const {
    nlohmann::json j = Api("query?query=" + UrlEncode(promql));
    if (!j.is_object() || j.value("status", "") != "success") return nullptr;
    return j["data"]["result"];
  }

 private:
  static constexpr const char* kHost = "127.0.0.1";
  std::unique_ptr<Subprocess> process_;
  int port_ = 0;
};

}  // namespace connwatch::testing
