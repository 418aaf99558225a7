#pragma once
// Test support: temporary directories, waiting for conditions with a
// deadline (never sleeping as synchronisation), and running the daemon binary
// (or any program) with its output captured.

#include <crypt.h>
#include <fcntl.h>
#include <zlib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace connwatch::testing {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/connwatch-test-XXXXXX";
    const char* made = mkdtemp(tmpl);
    path_ = made ? made : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& content) const {
    std::string p = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    return p;
  }

 private:
  std::string path_;
};

// Polls `condition` until it holds or `timeout` passes. The short pause
// between polls is not synchronisation: the deadline is.
inline bool WaitFor(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

// A child process with its stderr and stdout captured line by line.
class Subprocess {
 public:
  explicit Subprocess(std::vector<std::string> argv, std::vector<std::string> env = {}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    out_fd_ = fds[0];
    reader_ = std::thread([this] { ReadLoop(); });
  }
  ~Subprocess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait(milliseconds(5000));
    }
    if (reader_.joinable()) reader_.join();
    if (out_fd_ >= 0) close(out_fd_);
  }
  pid_t pid() const { return pid_; }
  void Signal(int sig) const { kill(pid_, sig); }

  // Waits for exit; returns the exit code, 128+signal, or -1 on timeout.
  int Wait(milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (SteadyClock::now() >= deadline) return -1;
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  // Waits for an output line containing `needle`; returns it or "".
  std::string WaitForLine(const std::string& needle, milliseconds timeout, size_t from = 0) {
    std::unique_lock<std::mutex> lock(mu_);
    std::string found;
    cv_.wait_for(lock, timeout, [&] {
      for (size_t i = from; i < lines_.size(); ++i) {
        if (lines_[i].find(needle) != std::string::npos) {
          found = lines_[i];
          return true;
        }
      }
      return eof_;
    });
    return found;
  }
  size_t line_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_.size();
  }
  std::string Output() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string all;
    for (const auto& l : lines_) all += l + "\n";
    return all;
  }

 private:
  void ReadLoop() {
    std::string partial;
    char buf[4096];
    while (true) {
      ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n <= 0) break;
      partial.append(buf, static_cast<size_t>(n));
      size_t pos;
      while ((pos = partial.find('\n')) != std::string::npos) {
        std::lock_guard<std::mutex> lock(mu_);
        lines_.push_back(partial.substr(0, pos));
        partial.erase(0, pos + 1);
        cv_.notify_all();
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!partial.empty()) lines_.push_back(partial);
    eof_ = true;
    cv_.notify_all();
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool exited_ = false;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool eof_ = false;
};

// What RunProgram saw: the exit code (128+signal; -1 when it did not exit
// in time, and was killed), stdout and stderr together, and the wall time.
struct RunResult {
  int status = -1;
  std::string output;
  double seconds = 0;
};

// Runs argv (argv[0] is a path: no shell, no PATH search; for redirections
// run {"/bin/sh", "-c", ...}) until it exits or `timeout` passes.
inline RunResult RunProgram(std::vector<std::string> argv, milliseconds timeout) {
  const auto start = SteadyClock::now();
  Subprocess p(std::move(argv));
  RunResult r;
  r.status = p.Wait(timeout);
  r.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  // The reader thread may still be draining the pipe after the exit: wait
  // for the end of the output (a line that never comes; WaitForLine returns
  // at the end of the output).
  p.WaitForLine("\x01never\x01", milliseconds(r.status < 0 ? 0 : 2000));
  r.output = p.Output();
  return r;
}

// Standard base64 (RFC 4648) with padding, as HTTP basic auth sends it.
inline std::string Base64Encode(const std::string& in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

// Decompresses a whole gzip stream; *complete is false without a valid trailer.
inline std::string Gunzip(const std::string& in, bool* complete) {
  z_stream z{};
  inflateInit2(&z, 15 + 16);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[65536];
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc == Z_OK);
  inflateEnd(&z);
  *complete = rc == Z_STREAM_END;
  return out;
}

// The value of `key=` in a logfmt line ("" when absent).
inline std::string LogfmtValue(const std::string& line, const std::string& key) {
  std::string needle = " " + key + "=";
  size_t pos = line.find(needle);
  if (pos == std::string::npos) {
    if (line.rfind(key + "=", 0) == 0) pos = 0; else return "";
  } else {
    pos += 1;
  }
  pos += key.size() + 1;
  if (pos < line.size() && line[pos] == '"') {
    size_t end = line.find('"', pos + 1);
    return line.substr(pos + 1, end - pos - 1);
  }
  size_t end = line.find(' ', pos);
  return line.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

// A bcrypt hash of `password` (cost 4 by default: fast, and as valid as 10).
inline std::string BcryptHash(const std::string& password, unsigned long cost = 4,
                              const char* prefix = "$2b$") {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn(prefix, cost, nullptr, 0, salt, sizeof salt)) return "";
  crypt_data data;
  std::memset(&data, 0, sizeof data);
  const char* hash = crypt_r(password.c_str(), salt, &data);
  return hash ? hash : "";
}

// "Basic base64(user:password)".
inline std::string BasicAuthHeader(const std::string& user, const std::string& password) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string in = user + ":" + password, out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[n & 63] : '=';
  }
  return "Basic " + out;
}

}  // namespace connwatch::testing
