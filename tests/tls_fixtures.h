#pragma once
// Certificates for the TLS tests, made with the openssl command line in a
// temporary directory: a CA, server certificates for localhost and
// 127.0.0.1 (good, expired, for the wrong name, self-signed), and a client CA
// with a client certificate. The expired one is signed under faketime
// (Debian's faketime), a year in the past.

#include <string>
#include <vector>

#include "test_util.h"

namespace connwatch::testing {

class TlsFixtures {
 public:
  // Makes every file; ok() tells whether it worked, error() why not.
  explicit TlsFixtures(const TempDir& dir) : dir_(dir.path()) {
    auto run = [this](const std::string& command) {
      if (!error_.empty()) return;
      RunResult r = RunProgram({"/bin/sh", "-c", "cd '" + dir_ + "' && " + command + " 2>&1"},
                               std::chrono::milliseconds(30000));
      if (r.status != 0) error_ = command + ": " + r.output;
    };
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run("openssl req -x509 " + ec + " -days 30 -subj /CN=connwatch-test-ca -keyout ca.key -out ca.crt"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    auto leaf = [&](const std::string& name, const std::string& san, const std::string& prefix) {
      run("openssl req " + ec + " -subj /CN=" + name + " -keyout " + name + ".key -out " + name +
          ".csr");
      run("printf 'subjectAltName=" + san + "\\nbasicConstraints=CA:FALSE\\n' > " + name + ".ext");
      run(prefix + "openssl x509 -req -in " + name + ".csr -CA ca.crt -CAkey ca.key -CAcreateserial"
          " -days 30 -extfile " + name + ".ext -out " + name + ".crt");
    };
    leaf("server", "DNS:localhost,IP:127.0.0.1,IP:::1", "");
    leaf("wrongname", "DNS:wrong.example,IP:10.9.9.9", "");
    leaf("expired", "DNS:localhost,IP:127.0.0.1", "faketime -f -400d ");
    run("openssl req -x509 " + ec + " -days 30 -subj /CN=selfsigned -keyout selfsigned.key"
        " -out selfsigned.crt -addext subjectAltName=DNS:localhost,IP:127.0.0.1");
    run("openssl req -x509 " + ec + " -days 30 -subj /CN=connwatch-client-ca -keyout clientca.key"
        " -out clientca.crt -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign");
    run("openssl req " + ec + " -subj /CN=connwatch-client -keyout client.key -out client.csr");
    run("openssl x509 -req -in client.csr -CA clientca.crt -CAkey clientca.key -CAcreateserial"
        " -days 30 -out client.crt");
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  std::string Path(const std::string& file) const { return dir_ + "/" + file; }

 private:
  std::string dir_;
  std::string error_;
};

}  // namespace connwatch::testing
