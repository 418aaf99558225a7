#pragma once
// dnsmasq (Debian's dnsmasq-base) as the real DNS server of the tests that
// follow names (tests/dns_test.cc, tests/endpoints_test.cc): in the
// foreground on a free loopback UDP port, authoritative for the names of one
// hosts file that a test rewrites and SIGHUPs (dnsmasq rereads --addn-hosts
// on SIGHUP and logs "read <file>"), with the TTL the test chooses.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "test_util.h"

namespace connwatch::testing {

inline constexpr std::chrono::milliseconds kDnsmasqDeadline{5000};
inline constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";

inline uint16_t FreeUdpPort() {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  close(fd);
  return ntohs(sin.sin_port);
}

// dnsmasq in the foreground, authoritative for the names of one hosts file.
class Dnsmasq {
 public:
  // `extra`: more options, e.g. --srv-host=_svc._tcp.name,host,port,priority,weight.
  Dnsmasq(const TempDir& dir, const std::string& hosts, int ttl,
          const std::vector<std::string>& extra = {})
      : dir_(dir), hosts_path_(dir.Write("dns-hosts", hosts)) {
    if (access(kDnsmasq, X_OK) != 0) {
      why_not_ = std::string(kDnsmasq) + " is not installed (Debian package dnsmasq-base)";
      return;
    }
    // NOTE: dnsmasq binds TCP as well as UDP on its port, and the TCP port of
    // a free UDP port may be taken (the tests hold thousands of loopback
    // connections): a bind failure is retried on another port.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = FreeUdpPort();
      const std::string user = geteuid() == 0 ? "root" : "";
      std::vector<std::string> argv = {kDnsmasq,
                                       "--keep-in-foreground",
                                       "--no-resolv",
                                       "--no-hosts",
                                       "--no-poll",
                                       "--addn-hosts=" + hosts_path_,
                                       "--local-ttl=" + std::to_string(ttl),
                                       "--port=" + std::to_string(port_),
                                       "--listen-address=127.0.0.1",
                                       "--bind-interfaces",
                                       "--pid-file=",
                                       "--log-facility=-"};
      if (!user.empty()) argv.push_back("--user=" + user);
      argv.insert(argv.end(), extra.begin(), extra.end());
      process_ = std::make_unique<Subprocess>(argv);
      if (!process_->WaitForLine("read " + hosts_path_, kDnsmasqDeadline).empty()) {
        why_not_.clear();
        return;
      }
      why_not_ = "dnsmasq did not start: " + process_->Output();
      if (why_not_.find("Address already in use") == std::string::npos) return;
    }
  }

  const std::string& why_not() const { return why_not_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  // Rewrites the records and waits until dnsmasq has reread them.
  void SetHosts(const std::string& hosts) {
    const size_t from = process_->line_count();
    dir_.Write("dns-hosts", hosts);
    process_->Signal(SIGHUP);
    ASSERT_FALSE(process_->WaitForLine("read " + hosts_path_, kDnsmasqDeadline, from).empty())
        << "dnsmasq did not reread " << hosts_path_ << ":\n" << process_->Output();
  }

  void Stop() {
    process_->Signal(SIGTERM);
    ASSERT_GE(process_->Wait(kDnsmasqDeadline), 0) << "dnsmasq did not exit";
  }

 private:
  const TempDir& dir_;
  std::string hosts_path_;
  uint16_t port_ = 0;
  std::unique_ptr<Subprocess> process_;
  std::string why_not_;
};

}  // namespace connwatch::testing
