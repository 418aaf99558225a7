// Bad input: every way an operator, a file system or an HTTP client can hand
// connwatchd something wrong, and what must happen then: a clear error, the
// previous state kept, the process up. Most tests run the connwatchd binary
// (like daemon_test.cc); the config ones that need many iterations call the
// loader directly.
//
// Tests named DISABLED_* reproduce daemon bugs found by this suite that are
// still open (docs/RELIABILITY.md, "Known gaps"); enable each once its fix
// lands. Run them with --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_*'.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/loader.h"
#include "core/duration.h"
#include "http_client.h"
#include "test_peer.h"
#include "test_util.h"

namespace connwatch {
namespace {

using std::chrono::milliseconds;
using testing::Subprocess;
using testing::TempDir;
using testing::TestPeer;
using testing::WaitFor;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

// Generous: these also run under AddressSanitizer and ThreadSanitizer.
constexpr milliseconds kDeadline{20000};
constexpr milliseconds kLong{180000};

// How much slower the binaries are in a sanitizer build, for the few tests
// that bound CPU time (AddressSanitizer measured 4-10x here, ThreadSanitizer
// about 25x on the alias test).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr double kSlowdown = 40;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr double kSlowdown = 40;
#else
constexpr double kSlowdown = 1;
#endif
#else
constexpr double kSlowdown = 1;
#endif

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// `connwatchd --check-config --config.file=PATH`: exit status and output.
using CheckResult = testing::RunResult;

CheckResult CheckConfig(const std::string& path, milliseconds timeout = kLong) {
  return testing::RunProgram({CONNWATCHD_BINARY, "--check-config", "--config.file=" + path},
                             timeout);
}

// Writes `content` to `path` through a temp file and rename(2), as config
// management tools do: a reader sees the old file or the new one, whole.
void WriteAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0) << path;
}

// Rewrites `path` in place (open with O_TRUNC, one write), as `cat > file` does.
void WriteInPlace(const std::string& path, const std::string& content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
}

std::string ManyTargets(size_t n) {
  std::string text = "defaults: {startup_jitter: 0s}\ntargets:\n";
  text.reserve(n * 48);
  for (size_t i = 0; i < n; ++i) {
    text += "  - name: t" + std::to_string(i) + "\n    address: 10." + std::to_string(i >> 16) +
            "." + std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255) + ":" +
            std::to_string(1 + i % 65535) + "\n";
  }
  return text;
}

// A running connwatchd with its HTTP port read from its log.
class Daemon {
 public:
  explicit Daemon(const std::string& config, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {CONNWATCHD_BINARY, "--storage.path=", "--config.file=" + config,
                                     "--web.listen-address=127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<Subprocess>(argv);
  }
  // Waits for the "listening" line; false (with the output) when it never came.
  bool WaitListening(milliseconds timeout = kDeadline) {
    std::string line = process_->WaitForLine("msg=listening", timeout);
    std::smatch m;
    if (line.empty() || !std::regex_search(line, m, std::regex(R"(\bport=(\d+))"))) return false;
    port_ = std::stoi(m[1]);
    return true;
  }
  // Waits until SIGHUP is caught or blocked (a reload, no longer the default
  // action, which terminates), read from /proc: nothing in the log says so.
  bool WaitSighupHandled(milliseconds timeout = kDeadline) const {
    const std::string status_path = "/proc/" + std::to_string(process_->pid()) + "/status";
    return WaitFor(
        [&] {
          std::ifstream in(status_path);
          std::string line;
          unsigned long long caught = 0, blocked = 0;
          while (std::getline(in, line)) {
            if (line.rfind("SigCgt:", 0) == 0) caught = std::stoull(line.substr(7), nullptr, 16);
            if (line.rfind("SigBlk:", 0) == 0) blocked = std::stoull(line.substr(7), nullptr, 16);
          }
          return ((caught | blocked) & (1ull << (SIGHUP - 1))) != 0;
        },
        timeout);
  }
  HttpResponse Get(const std::string& path, milliseconds timeout = milliseconds(10000)) const {
    return HttpGet("127.0.0.1", port_, path, timeout);
  }
  std::string Raw(std::string_view request, std::string* error,
                  milliseconds timeout = milliseconds(10000)) const {
    return HttpRaw("127.0.0.1", port_, request, error, timeout);
  }
  // Target names the API serves; `ok` false when the request failed.
  std::set<std::string> TargetNames(bool* ok) const {
    HttpResponse r = Get("/api/v1/targets");
    std::set<std::string> names;
    *ok = r.ok() && r.status == 200;
    if (!*ok) return names;
    Json j = Json::parse(r.body, nullptr, false);
    if (j.is_discarded()) {
      *ok = false;
      return names;
    }
    for (const auto& t : j["data"]["targets"]) names.insert(t["name"].get<std::string>());
    return names;
  }
  // Waits for the exit and for the last output lines; the exit status or -1.
  int WaitExit(milliseconds timeout = kDeadline) {
    int status = process_->Wait(timeout);
    if (status >= 0) process_->WaitForLine("\x01never\x01", milliseconds(5000));
    return status;
  }
  Subprocess& process() { return *process_; }
  int port() const { return port_; }

 private:
  std::unique_ptr<Subprocess> process_;
  int port_ = 0;
};

// ---------------------------------------------------------------------------
// Size.

TEST(BadInput, HundredThousandTargetsLoad) {
  TempDir dir;
  const std::string path = dir.Write("big.yaml", ManyTargets(100000));
  CheckResult r = CheckConfig(path);
  std::printf("[ info ] --check-config of 100,000 targets (%zu bytes): %.2f s\n",
              static_cast<size_t>(std::filesystem::file_size(path)), r.seconds);
  EXPECT_EQ(r.status, 0) << r.output.substr(0, 2000);
  EXPECT_NE(r.output.find("OK, 100000 target(s) from 1 file(s)"), std::string::npos)
      << r.output.substr(0, 2000);
}

TEST(BadInput, FiftyMegabyteConfigLoads) {
  // 50 MB of valid targets (a 5 KB label each) is under the 64 MiB limit: it loads.
  TempDir dir;
  const std::string pad(5000, 'x');
  std::string text = "targets:\n";
  text.reserve(51u << 20);
  size_t n = 0;
  while (text.size() < (50u << 20)) {
    text += "  - name: t" + std::to_string(n) +
            "\n    address: 127.0.0.1:" + std::to_string(1 + n % 65535) + "\n    labels: {pad: \"" +
            pad + "\"}\n";
    ++n;
  }
  const std::string path = dir.Write("50mb.yaml", text);
  text.clear();
  CheckResult r = CheckConfig(path);
  std::printf("[ info ] --check-config of 50 MB (%zu targets): %.2f s\n", n, r.seconds);
  EXPECT_EQ(r.status, 0) << r.output.substr(0, 2000);
  EXPECT_NE(r.output.find("OK, " + std::to_string(n) + " target(s)"), std::string::npos)
      << r.output.substr(0, 2000);
}

TEST(BadInput, ConfigOverSixtyFourMebibytesIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/65mb.yaml";
  {
    std::ofstream out(path, std::ios::binary);
    out << "targets: []\n# ";
    const std::string chunk(1 << 20, 'y');
    for (int i = 0; i < 65; ++i) out << chunk;
    out << "\n";
  }
  CheckResult r = CheckConfig(path);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(path + ": cannot read config file: larger than 64 MiB"),
            std::string::npos)
      << r.output;
  // The daemon refuses to start on it, with the same words.
  Daemon d(path);
  EXPECT_EQ(d.WaitExit(), 1) << d.process().Output();
  EXPECT_NE(d.process().Output().find("larger than 64 MiB"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Hostile YAML.

TEST(BadInput, DeeplyNestedYamlIsRefused) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"flow-lists.yaml", "targets: " + std::string(100000, '[') + "\n"},
      {"flow-maps.yaml",
       [] {
         std::string s = "targets: ";
         for (int i = 0; i < 20000; ++i) s += "{a: ";
         return s + "\n";
       }()},
      {"block-maps.yaml",
       [] {
         std::string s;
         for (int i = 0; i < 200; ++i) s += std::string(static_cast<size_t>(i) * 2, ' ') + "a:\n";
         return s;
       }()},
      {"block-lists.yaml",
       [] {
         std::string s = "targets:\n";
         for (int i = 0; i < 200; ++i) s += std::string(static_cast<size_t>(i) * 2, ' ') + "-\n";
         return s;
       }()},
  };
  for (const auto& [name, text] : cases) {
    const std::string path = dir.Write(name, text);
    CheckResult r = CheckConfig(path, kDeadline);
    EXPECT_EQ(r.status, 1) << name << ": " << r.output.substr(0, 2000);
    EXPECT_NE(r.output.find("nested more than 64 levels deep"), std::string::npos)
        << name << ": " << r.output.substr(0, 2000);
    EXPECT_LT(r.seconds, 10.0) << name;
  }
}

TEST(BadInput, BillionLaughsIsRefusedQuickly) {
  // Nine levels of nine aliases: 9^9 = 387 million "lol"s if expanded.
  std::string text =
      "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  std::string previous = "a";
  for (char level = 'b'; level <= 'i'; ++level) {
    std::string name(1, level);
    text += name + ": &" + name + " [";
    for (int i = 0; i < 9; ++i) text += (i ? ",*" : "*") + previous;
    text += "]\n";
    previous = name;
  }
  TempDir dir;
  for (const std::string& tail :
       {std::string("targets: *i\n"), std::string("targets:\n  - name: x\n    address: a:1\n"
                                                  "    labels: *i\n")}) {
    const std::string path = dir.Write("laughs.yaml", text + tail);
    CheckResult r = CheckConfig(path, kDeadline);
    EXPECT_EQ(r.status, 1) << r.output.substr(0, 2000);
    EXPECT_LT(r.seconds, 5.0);
    EXPECT_LT(r.output.size(), 100000u) << "the errors must not be multiplied by the aliases";
  }
}

// `x: &m {k0: 1, ..., k999: 1}` and a target list of `aliases` references to it.
std::string AliasesOfAKeyMap(int aliases) {
  std::string keys;
  for (int i = 0; i < 1000; ++i) keys += (i ? ", k" : "k") + std::to_string(i) + ": 1";
  std::string refs;
  for (int i = 0; i < aliases; ++i) refs += i ? ",*m" : "*m";
  return "x: &m {" + keys + "}\ntargets: [" + refs + "]\n";
}

// Known gap 1 (docs/RELIABILITY.md), fixed: the loader walks an alias every
// time it is referenced and reported an error per walk, each quoting the
// value in full. A 38 KB file (a map of 1,000 unknown keys aliased 10,000
// times) gave 10,010,001 errors, 100 s of CPU and 3 GB of memory; a 1 MB
// scalar aliased 2,000 times, 2 GB of error text. Errors now stop at 200 and
// quotes at 80 bytes, and a document whose aliases expand it past
// max(1,000,000, 16 x its written nodes) is refused while it is parsed (the
// test below this one).
TEST(BadInput, AliasAmplificationIsBounded) {
  TempDir dir;
  // 400 aliases of the 1,000-key map expand to 800,000 nodes, under the
  // limit: the loader walks every one, and the error cap bounds the output.
  const std::string many_errors = dir.Write("keys.yaml", AliasesOfAKeyMap(400));
  CheckResult r = CheckConfig(many_errors, kLong);
  EXPECT_EQ(r.status, 1);
  EXPECT_LT(r.seconds, 5.0 * kSlowdown) << "400 aliases of a 1,000-key map";
  EXPECT_LT(r.output.size(), 1u << 20) << "error output of a 10 KB file";
  EXPECT_NE(r.output.find("more errors not shown (only the first 200 are reported)"),
            std::string::npos)
      << r.output.substr(0, 2000);
  // 2,000 aliases (4,000,000 nodes) are refused for their expansion: one error.
  const std::string expanded = dir.Write("expanded.yaml", AliasesOfAKeyMap(2000));
  r = CheckConfig(expanded, kLong);
  EXPECT_EQ(r.status, 1);
  EXPECT_LT(r.seconds, 5.0 * kSlowdown) << "2,000 aliases of a 1,000-key map";
  EXPECT_NE(r.output.find(expanded + ":2:1505: aliases expand the config to more than 1000000 "
                                     "nodes"),
            std::string::npos)
      << r.output.substr(0, 2000);
  EXPECT_NE(r.output.find("1 error(s)"), std::string::npos) << r.output.substr(0, 2000);

  const std::string big(256 << 10, 'z');
  std::string refs;
  for (int i = 0; i < 1000; ++i) refs += i ? ",*a" : "*a";
  const std::string big_errors =
      dir.Write("scalar.yaml", "x: &a \"" + big + "\"\ntargets: [" + refs + "]\n");
  r = CheckConfig(big_errors, kLong);
  EXPECT_EQ(r.status, 1);
  EXPECT_LT(r.output.size(), 4u << 20) << "a 256 KB value aliased 1,000 times";
}

// Known gap 1 (docs/RELIABILITY.md), what was left, fixed: the error cap
// bounded the output, but the loader still walked every alias of a bad map
// and built each suppressed message (edit distances included): this 38 KB
// file of 10,000 aliases of a 1,000-key map kept the event loop busy 10 s on
// a reload (release build), and the time grew with the file (a 1 MB file:
// minutes). Now the parser counts the nodes each alias stands for and stops
// at the alias that takes the document past 1,000,000: one error, at once.
TEST(BadInput, AliasExpansionIsBoundedInTime) {
  TempDir dir;
  const std::string path = dir.Write("keys.yaml", AliasesOfAKeyMap(10000));
  const auto start = Clock::now();
  ConfigLoadResult r = LoadConfigFile(path);
  const double seconds = SecondsSince(start);
  std::printf("[ info ] 10,000 aliases of a 1,000-key map refused in %.3f s\n", seconds);
  EXPECT_FALSE(r.config.has_value());
  EXPECT_LT(seconds, 1.0 * kSlowdown) << "10,000 aliases of a 1,000-key map";
  ASSERT_EQ(r.errors.size(), 1u);
  // The 499th alias (line 2, column 11 + 3 x 498) is the one that crosses.
  EXPECT_EQ(r.errors[0].ToString(),
            path +
                ":2:1505: aliases expand the config to more than 1000000 nodes (it has 2005 "
                "written up to here; the limit is 16 times that, at least 1000000); alias only "
                "small shared pieces such as a labels map, or write the repeated parts out"
                "; nothing else in this file is checked until it parses, so more errors may be hidden");
}

TEST(BadInput, NonUtf8BytesAreRefusedWithTheirPlace) {
  TempDir dir;
  struct Case {
    std::string name;
    std::string text;
    std::string expected;  // after "path:"
  };
  const std::vector<Case> cases = {
      {"latin1.yaml", "targets:\n  - name: caf\xe9\n    address: a:1\n",
       "2:14: invalid UTF-8 (byte 0xe9); a config file must be UTF-8"},
      {"utf16.yaml", std::string("\xff\xfet\0a\0r\0", 8), "1:1: invalid UTF-8 (byte 0xff)"},
      {"nul.yaml", std::string("targets: []\n\0\n", 14), "2:1: control character 0x00"},
      {"overlong.yaml", "targets: [\xc0\xaf]\n", "1:11: invalid UTF-8 (byte 0xc0)"},
      {"surrogate.yaml", "targets: [\xed\xa0\x80]\n", "1:11: invalid UTF-8 (byte 0xed)"},
      {"truncated.yaml", "targets: []\n# \xe2\x82", "2:3: invalid UTF-8 (byte 0xe2)"},
  };
  for (const Case& c : cases) {
    const std::string path = dir.Write(c.name, c.text);
    CheckResult r = CheckConfig(path, kDeadline);
    EXPECT_EQ(r.status, 1) << c.name << ": " << r.output;
    EXPECT_NE(r.output.find(path + ":" + c.expected), std::string::npos)
        << c.name << ": " << r.output;
  }
  // In an included file, the error names that file.
  const std::string main = dir.Write("main.yaml", "include: [inc.yaml]\n");
  const std::string inc = dir.Write("inc.yaml", "targets:\n  - address: \"a:1\xff\"\n");
  CheckResult r = CheckConfig(main, kDeadline);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(inc + ":2:18: invalid UTF-8 (byte 0xff)"), std::string::npos) << r.output;
  // A UTF-8 byte order mark is valid UTF-8 and loads.
  const std::string bom = dir.Write("bom.yaml", "\xef\xbb\xbftargets:\n  - address: a:1\n");
  r = CheckConfig(bom, kDeadline);
  EXPECT_EQ(r.status, 0) << r.output;
}

// Known gap 5 (docs/RELIABILITY.md), fixed. As found: FractionToMillis overflowed __int128
// (undefined behaviour; UndefinedBehaviorSanitizer aborts here). Found by
// fuzz/duration_fuzzer.
TEST(BadInput, DurationFractionOverflow) {
  Millis d{};
  std::string error;
  EXPECT_FALSE(ParseDuration("114368547783685475.143685477836854775m", &d, &error));
  EXPECT_NE(error.find("fractional amounts are not allowed"), std::string::npos) << error;
}

// ---------------------------------------------------------------------------
// Files and includes.

TEST(BadInput, IncludeLoopsAreErrors) {
  TempDir dir;
  // A glob that matches the main file itself.
  std::string main = dir.Write("self/main.yaml", "include: [\"*.yaml\"]\n");
  CheckResult r = CheckConfig(main, kDeadline);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("is the main config file itself"), std::string::npos) << r.output;

  // An included file that includes the main one back.
  main = dir.Write("back/main.yaml", "include: [inc.yaml]\n");
  dir.Write("back/inc.yaml", "include: [main.yaml]\ntargets: []\n");
  r = CheckConfig(main, kDeadline);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("\"include\" is not allowed in an included file"), std::string::npos)
      << r.output;

  // The main file reached again through a symlink, and a file included twice.
  main = dir.Write("link/main.yaml", "include: [\"d/*.yaml\", \"other.yaml\", \"again/*.yaml\"]\n");
  dir.Write("link/other.yaml", "targets: [{address: \"a:1\"}]\n");
  std::filesystem::create_directories(dir.path() + "/link/d");
  std::filesystem::create_directories(dir.path() + "/link/again");
  std::filesystem::create_symlink("../main.yaml", dir.path() + "/link/d/loop.yaml");
  std::filesystem::create_symlink("../other.yaml", dir.path() + "/link/again/other.yaml");
  r = CheckConfig(main, kDeadline);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("is the main config file itself"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("a file may be included only once"), std::string::npos) << r.output;
  // A directory symlinked into itself: glob(3) does not recurse, so it ends.
  main = dir.Write("cycle/main.yaml", "include: [\"d/d/d/d/*.yaml\"]\n");
  std::filesystem::create_directories(dir.path() + "/cycle/d");
  std::filesystem::create_symlink(".", dir.path() + "/cycle/d/d");
  dir.Write("cycle/d/t.yaml", "targets: [{address: \"b:1\"}]\n");
  r = CheckConfig(main, kDeadline);
  EXPECT_EQ(r.status, 0) << r.output;
}

// Found by fuzz/config_include_fuzzer (an include glob "/*/*" matched
// /proc/kmsg): a "regular file" whose read blocks until the kernel logs
// something hung the loader for good. Reads no longer block. As root the
// file opens and the read would block; otherwise open() is refused. Either
// way the answer must come at once, never a hang.
TEST(BadInput, IncludeOfAFileWhoseReadBlocksIsAnError) {
  struct stat st;
  if (stat("/proc/kmsg", &st) != 0 || !S_ISREG(st.st_mode)) {
    GTEST_SKIP() << "no /proc/kmsg as a regular file here";
  }
  TempDir dir;
  const std::string path = dir.Write("main.yaml", "targets: []\ninclude: [/proc/kmsg]\n");
  CheckResult r = CheckConfig(path, milliseconds(10000));
  ASSERT_NE(r.status, -1) << "--check-config hung on /proc/kmsg";
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("cannot read included file \"/proc/kmsg\""), std::string::npos)
      << r.output;
  if (geteuid() == 0) {
    EXPECT_NE(r.output.find("reading it would block"), std::string::npos) << r.output;
  }
}

TEST(BadInput, IncludeGlobMatchingNothingLoads) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/targets.d");
  const std::string main =
      dir.Write("main.yaml",
                "include: [\"targets.d/*.yaml\", \"missing.d/*.yaml\", \"*.none\"]\n"
                "targets:\n  - address: 127.0.0.1:1\n");
  CheckResult r = CheckConfig(main, kDeadline);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("OK, 1 target(s) from 1 file(s)"), std::string::npos) << r.output;
  // A name without glob characters must exist.
  const std::string strict = dir.Write("strict.yaml", "include: [\"absent.yaml\"]\n");
  r = CheckConfig(strict, kDeadline);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("cannot read included file"), std::string::npos) << r.output;
}

TEST(BadInput, ConfigFileThatCannotBeReadIsAClearError) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/a-directory");
  const std::string fifo = dir.path() + "/a-fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  std::filesystem::create_symlink(dir.path() + "/nowhere", dir.path() + "/dangling");
  struct Case {
    std::string path;
    std::string expected;
  };
  std::vector<Case> cases = {
      {dir.path() + "/a-directory", "cannot read config file: is a directory"},
      {fifo, "cannot read config file: not a regular file"},  // and does not block
      {"/dev/zero", "cannot read config file: not a regular file"},
      {dir.path() + "/absent.yaml", "cannot read config file: No such file or directory"},
      {dir.path() + "/dangling", "cannot read config file: No such file or directory"},
      {"/proc/self/mem", "cannot read config file: "},
  };
  const std::string unreadable = dir.Write("unreadable.yaml", "targets: []\n");
  chmod(unreadable.c_str(), 0);
  if (geteuid() == 0) {
    std::printf("[ skip ] unreadable file: running as root, which reads any file\n");
  } else {
    cases.push_back({unreadable, "cannot read config file: Permission denied"});
  }
  for (const Case& c : cases) {
    CheckResult r = CheckConfig(c.path, kDeadline);
    EXPECT_EQ(r.status, 1) << c.path << ": " << r.output;
    EXPECT_NE(r.output.find(c.path + ": " + c.expected), std::string::npos)
        << c.path << ": " << r.output;
    Daemon d(c.path);
    EXPECT_EQ(d.WaitExit(), 1) << c.path << ": " << d.process().Output();
    EXPECT_NE(d.process().Output().find(c.expected), std::string::npos) << d.process().Output();
  }
}

// ---------------------------------------------------------------------------
// A config that changes while it is read.

// Two versions of one config of the same size, each a single flow list (so a
// truncated prefix is not valid YAML) of 16 targets padded to 64 KiB each (so
// the loader's 64 KiB reads cross from one target to the next).
std::string Version(char tag) {
  std::string text = "targets: [\n";
  const std::string pad(64 << 10, tag == 'a' ? 'p' : 'q');
  for (int i = 0; i < 16; ++i) {
    text += std::string(i ? "," : " ") + "{name: " + tag + std::to_string(i) +
            ", address: \"127.0.0.1:1\", labels: {pad: \"" + pad + "\"}}\n";
  }
  return text + "]\n";
}

// Rewrites a file in place with two contents in turn until destroyed, back to
// back, or pausing a random time under `max_pause` after each rewrite (pacing,
// so that the file also stays whole for a while between rewrites).
class InPlaceWriter {
 public:
  InPlaceWriter(std::string path, const std::string& a, const std::string& b,
                std::chrono::microseconds max_pause = std::chrono::microseconds(0))
      : thread_([this, path = std::move(path), &a, &b, max_pause] {
          std::mt19937 rng(1);
          for (int i = 0; !stop_.load(); ++i) {
            WriteInPlace(path, i % 2 ? a : b);
            if (max_pause.count() > 0) {
              std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_pause.count()));
            }
          }
        }) {}
  ~InPlaceWriter() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Which version a target set is: 'a', 'b', or '?' (a mix, or incomplete).
char WhichVersion(const std::set<std::string>& names) {
  for (char tag : {'a', 'b'}) {
    std::set<std::string> want;
    for (int i = 0; i < 16; ++i) want.insert(tag + std::to_string(i));
    if (names == want) return tag;
  }
  return '?';
}

// Known gap 2 (docs/RELIABILITY.md), fixed: ReadWholeFile read in 64 KiB
// chunks without checking that the file stayed the same, so a load could mix
// two versions. Then a read had to be bracketed by two equal fstat()s, which
// left a residue: two versions of the same size written within one tick of
// the kernel's coarse clock (about 4 ms) look unchanged. Now the file is read
// a second time and must give the same bytes. A mix needs the reader to stall
// between two reads while the writer truncates and writes past it, which is
// rare: this test saw none before the fix either (3 runs here, also with the
// reader made to stall); it looks for any in real races.
// ConfigLoad.FileRewrittenWithinOneClockTickIsNeverMixed makes one on
// purpose, and failed before the fix.
TEST(BadInput, ConfigRewrittenInPlaceWhileLoadingIsNeverAMix) {
  TempDir dir;
  const std::string a = Version('a');
  const std::string b = Version('b');
  const std::string path = dir.Write("live.yaml", a);
  int loads = 0, rejected = 0, empty = 0, changing = 0, mixed = 0;
  std::string example;
  const auto start = Clock::now();
  // A rewrite every 0.5 ms on average: several within one tick of the
  // kernel's clock, and the file whole long enough for about 100 loads to
  // succeed. (Back to back, none did here: the O_TRUNC of the 1 MB file
  // takes about 0.8 ms on ext4, the write 0.2 ms, and the file reads empty
  // meanwhile.)
  InPlaceWriter writer(path, a, b, std::chrono::microseconds(1000));
  while (SecondsSince(start) < 5 && mixed == 0) {
    ConfigLoadResult r = LoadConfigFile(path);
    ++loads;
    if (!r.config) {
      ++rejected;
      const std::string& message = r.errors.at(0).message;
      empty += message.find("the file is empty") != std::string::npos;
      changing += message.find("kept changing") != std::string::npos;
      continue;
    }
    std::set<std::string> names;
    for (const auto& t : r.config->targets) names.insert(t->name);
    if (WhichVersion(names) == '?') {
      ++mixed;
      if (names.empty()) example = "(empty) ";
      for (const auto& n : names) example += n + " ";
    }
  }
  // The rejected: read empty (between O_TRUNC and the write), kept changing
  // through every attempt, or the rest (half written: invalid YAML).
  std::printf(
      "[ info ] %d loads while rewriting in place: %d whole, %d rejected (%d empty, %d kept "
      "changing, %d half written), %d mixed\n",
      loads, loads - rejected - mixed, rejected, empty, changing, rejected - empty - changing,
      mixed);
  EXPECT_EQ(mixed, 0) << "a load mixed two versions: " << example;
}

// The daemon under SIGHUP while the file is rewritten in place: every target
// set it serves must be one whole version (a torn read rejected), it stays up
// and ends on the last version.
// Known gap 2 (docs/RELIABILITY.md), fixed: besides the mixes above, a reload
// that read the file between the writer's O_TRUNC and its write saw an empty
// file, then a valid config, and dropped every target (on 2,988 of 2,989 API
// reads in 4 s here). An empty file is now refused.
TEST(BadInput, ConfigRewrittenDuringSighupsAppliesWholeVersionsOnly) {
  TempDir dir;
  const std::string a = Version('a');
  const std::string b = Version('b');
  const std::string path = dir.Write("live.yaml", a);
  Daemon d(path);
  ASSERT_TRUE(d.WaitListening()) << d.process().Output();
  ASSERT_TRUE(d.WaitSighupHandled());
  int seen_a = 0, seen_b = 0, torn = 0, empty = 0;
  std::string example;
  {
    InPlaceWriter writer(path, a, b);
    const auto start = Clock::now();
    while (SecondsSince(start) < 4) {
      d.process().Signal(SIGHUP);
      bool ok = false;
      std::set<std::string> names = d.TargetNames(&ok);
      ASSERT_TRUE(ok) << "the API stopped answering; output:\n"
                      << d.process().Output().substr(0, 4000);
      switch (WhichVersion(names)) {
        case 'a':
          ++seen_a;
          break;
        case 'b':
          ++seen_b;
          break;
        default:
          if (names.empty()) ++empty;
          if (torn++ == 0) {
            for (const auto& n : names) example += n + " ";
          }
      }
    }
  }
  std::printf("[ info ] served version a %d times, b %d times, neither %d times (%d empty)\n",
              seen_a, seen_b, torn, empty);
  if (torn > 0) {
    ADD_FAILURE() << "served a target set that is neither version " << torn << " times (" << empty
                  << " of them empty), e.g. {" << example << "}";
  }
  // The last version, written whole, wins.
  WriteAtomically(path, b);
  d.process().Signal(SIGHUP);
  EXPECT_TRUE(WaitFor(
      [&] {
        bool ok = false;
        return WhichVersion(d.TargetNames(&ok)) == 'b' && ok;
      },
      kDeadline));
  EXPECT_EQ(d.Get("/-/healthy").status, 200);
  d.process().Signal(SIGTERM);
  EXPECT_EQ(d.process().Wait(kDeadline), 0) << d.process().Output().substr(0, 4000);
}

// ---------------------------------------------------------------------------
// Signals.

std::string Generation(int g, int n) {
  std::string text =
      "defaults: {startup_jitter: 0s, backoff: {initial: 10s, max: 10s}}\ntargets:\n";
  for (int i = 0; i < n; ++i) {
    text += "  - name: g" + std::to_string(g) + "-" + std::to_string(i) +
            "\n    address: 127.0.0.1:" + std::to_string(1 + i) + "\n";
  }
  return text;
}

TEST(BadInput, SighupStormEndsOnTheLastConfig) {
  TempDir dir;
  const std::string path = dir.Write("storm.yaml", Generation(0, 50));
  Daemon d(path);
  ASSERT_TRUE(d.WaitListening()) << d.process().Output();
  ASSERT_TRUE(d.WaitSighupHandled());
  // 100 SIGHUPs in one second, each after a new version was written whole; a
  // prober asks for a snapshot (a round trip through the loop) meanwhile.
  std::atomic<bool> stop{false};
  std::atomic<int> probe_failures{0};
  std::atomic<int64_t> probe_max_us{0};
  std::thread prober([&] {
    while (!stop.load()) {
      const auto t0 = Clock::now();
      HttpResponse r = d.Get("/api/v1/targets?target=__probe__", milliseconds(5000));
      const int64_t us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
      if (r.status != 404) probe_failures++;
      if (us > probe_max_us.load()) probe_max_us = us;
      std::this_thread::sleep_for(milliseconds(5));
    }
  });
  const auto start = Clock::now();
  for (int g = 1; g <= 100; ++g) {
    WriteAtomically(path, Generation(g, 50));
    d.process().Signal(SIGHUP);
    std::this_thread::sleep_until(start + milliseconds(10 * g));
  }
  bool ok = false;
  std::set<std::string> want;
  for (int i = 0; i < 50; ++i) want.insert("g100-" + std::to_string(i));
  EXPECT_TRUE(WaitFor([&] { return d.TargetNames(&ok) == want; }, kDeadline))
      << "not on the last config; output:\n"
      << d.process().Output().substr(0, 4000);
  stop = true;
  prober.join();
  std::printf("[ info ] SIGHUP storm: slowest snapshot %.1f ms\n", probe_max_us.load() / 1000.0);
  EXPECT_EQ(probe_failures.load(), 0);
  EXPECT_LT(probe_max_us.load(), 2000000) << "the loop stalled";
  // The daemon's own measure: no loop iteration of the storm took 0.5 s
  // (generous: this also runs under sanitizers).
  const std::string metrics = d.Get("/metrics").body;
  std::smatch all, half;
  if (std::regex_search(
          metrics, all,
          std::regex(R"(connwatch_event_loop_busy_seconds_bucket\{le="\+Inf"\} (\d+))")) &&
      std::regex_search(
          metrics, half,
          std::regex(R"(connwatch_event_loop_busy_seconds_bucket\{le="0\.5"\} (\d+))"))) {
    EXPECT_EQ(all[1], half[1]) << "event-loop iterations over 0.5 s during the storm";
  }
  EXPECT_EQ(d.Get("/-/healthy").status, 200);
  EXPECT_NE(d.process().Output().find("config reloaded"), std::string::npos);
  EXPECT_EQ(d.process().Output().find("reload failed"), std::string::npos);
  d.process().Signal(SIGTERM);
  EXPECT_EQ(d.process().Wait(kDeadline), 0);
}

// SIGHUP kept its default action (terminate) until the loop installed its
// watcher, after the config load and the HTTP start: a reload sent during
// start-up killed the daemon with status 129 (known gap 3, fixed by installing
// the watchers before Monitor::Start). It was still fatal between exec and
// the watchers: under TSan, whose thread start blocks every signal for a
// moment, /proc showed SIGHUP blocked, the SIGHUP went out, and the default
// action ran once the mask came back (seen in CI). main() now blocks it before
// anything else. The SIGHUP goes out once the first log line (printed after
// that block) is out and /proc shows it blocked or handled, while 50,000
// targets are still loading, so the test does not depend on how fast the
// binary starts (sanitizers slow it a lot).
TEST(BadInput, SighupDuringStartupDoesNotKill) {
  TempDir dir;
  const std::string path = dir.Write("big.yaml", ManyTargets(50000));
  Daemon d(path);
  ASSERT_FALSE(d.process().WaitForLine("starting connwatchd", kLong).empty())
      << d.process().Output().substr(0, 4000);
  ASSERT_TRUE(d.WaitSighupHandled(kLong)) << d.process().Output().substr(0, 4000);
  const bool during_start = d.process().Output().find("msg=listening") == std::string::npos;
  d.process().Signal(SIGHUP);
  ASSERT_TRUE(d.WaitListening(kLong)) << "exit " << d.process().Wait(milliseconds(1000)) << "\n"
                                      << d.process().Output().substr(0, 4000);
  if (!during_start) std::printf("[ info ] start-up was over before the SIGHUP went out\n");
  // The early SIGHUP is not lost: it reloads once the loop runs.
  EXPECT_FALSE(d.process().WaitForLine("reloading on SIGHUP", kLong).empty())
      << d.process().Output().substr(0, 4000);
  d.process().Signal(SIGTERM);
  EXPECT_EQ(d.WaitExit(kLong), 0);
}

// ---------------------------------------------------------------------------
// HTTP.

class BadHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(peer_.Start(), "");
    config_ = dir_.Write("c.yaml",
                         "defaults: {startup_jitter: 0s}\ntargets:\n  - name: alpha\n"
                         "    address: 127.0.0.1:" +
                             std::to_string(peer_.port()) + "\n");
    daemon_ = std::make_unique<Daemon>(config_);
    ASSERT_TRUE(daemon_->WaitListening()) << daemon_->process().Output();
    // "listening" is logged just before the loop starts turning; /-/healthy
    // answers 503 until it does.
    ASSERT_TRUE(WaitFor([&] { return daemon_->Get("/-/healthy").status == 200; }, kDeadline));
  }
  // Status of a raw request's (first) response; 0 when the server closed
  // without answering. `responses` counts status lines in what came back.
  int RawStatus(std::string_view request, std::string* body = nullptr, int* responses = nullptr) {
    std::string error;
    std::string raw = daemon_->Raw(request, &error);
    if (body) *body = raw;
    if (responses) {
      *responses = 0;
      for (size_t p = raw.find("HTTP/1."); p != std::string::npos; p = raw.find("HTTP/1.", p + 1)) {
        if (p == 0 || raw[p - 1] == '\n') ++*responses;
      }
    }
    if (raw.size() < 12 || raw.compare(0, 5, "HTTP/") != 0) return 0;
    return std::atoi(raw.substr(9, 3).c_str());
  }
  void ExpectStillServing() {
    EXPECT_EQ(daemon_->Get("/-/healthy").status, 200);
    HttpResponse m = daemon_->Get("/metrics");
    EXPECT_EQ(m.status, 200);
    EXPECT_NE(m.body.find("connwatch_target_info{target=\"alpha\""), std::string::npos);
  }

  TempDir dir_;
  TestPeer peer_;
  std::string config_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(BadHttp, BadParametersGet400WithAJsonError) {
  const std::vector<std::pair<std::string, int>> cases = {
      {"/api/v1/events?limit=abc", 400},      {"/api/v1/events?limit=%zz", 400},
      {"/api/v1/events?limit=0", 400},        {"/api/v1/events?limit=1001", 400},
      {"/api/v1/events?limit=-1", 400},       {"/api/v1/events?limit=1e3", 400},
      {"/api/v1/events?limit=", 400},         {"/api/v1/events?limit=99999999999999999999", 400},
      {"/api/v1/events?limit=%31%30", 200},   {"/api/v1/events?limit=10&limit=x", 200},
      {"/api/v1/targets?state=unknown", 400}, {"/api/v1/targets?state=UP", 400},
      {"/api/v1/targets?state=%ff%fe", 400},  {"/api/v1/targets?state=%75p", 200},
      {"/api/v1/targets?state=up%00", 400},   {"/api/v1/targets?target=%00", 404},
      {"/api/v1/targets?target=%E2%82", 404}, {"/api/v1/targets?target=alpha", 200},
      {"/api/v1/events?target=%zz%", 200},    {"/api/v1/targets?&&&=&=%", 200},
  };
  for (const auto& [path, status] : cases) {
    HttpResponse r = daemon_->Get(path);
    ASSERT_TRUE(r.ok()) << path << ": " << r.error;
    EXPECT_EQ(r.status, status) << path << ": " << r.body;
    Json j = Json::parse(r.body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << path << " is not JSON: " << r.body;
    if (status == 400) {
      EXPECT_EQ(j["status"], "error") << path;
      EXPECT_EQ(j["errorType"], "bad_data") << path;
      EXPECT_FALSE(j["error"].get<std::string>().empty()) << path;
    }
  }
  ExpectStillServing();
}

TEST_F(BadHttp, WrongMethodsTraversalAndGarbage) {
  std::string body;
  // Known path, wrong method: 405 with Allow.
  EXPECT_EQ(RawStatus("DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &body), 405) << body;
  EXPECT_NE(body.find("Allow: GET, HEAD"), std::string::npos) << body;
  EXPECT_EQ(RawStatus("GET /-/reload HTTP/1.1\r\nHost: x\r\n\r\n", &body), 405) << body;
  // Lifecycle off: 403, never a reload.
  EXPECT_EQ(RawStatus("POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), 403);
  // Unknown methods and protocols: an error status, or the connection closed.
  for (const char* request :
       {"FOO /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET /metrics\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n", "\r\n\r\n", "GET /metrics HTTP/1.1\r\nbad header line\r\n\r\n"}) {
    int status = RawStatus(request, &body);
    EXPECT_TRUE(status == 0 || status == 200 || status == 400 || status == 404 || status == 405 ||
                status == 505)
        << request << " -> " << body.substr(0, 300);
  }
  // Path traversal never reaches the file system (no document root is served).
  for (const char* path :
       {"/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/v1/../../../../etc/passwd",
        "//etc/passwd", "/metrics/../../etc/passwd", "/..%2f..%2fetc%2fpasswd", "/%00/etc/passwd",
        "/api/v1/targets/../../../etc/shadow"}) {
    int status = RawStatus(std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\n\r\n", &body);
    // NOTE: a server that decodes "/%00/etc/passwd" to "/" (the string ends
    // at the NUL) serves the status page for it; that is harmless.
    const bool landing =
        status == 200 && body.find("<title>connwatch: ") != std::string::npos;
    EXPECT_TRUE(status == 0 || status == 400 || status == 404 || landing)
        << path << " -> " << body.substr(0, 300);
    EXPECT_EQ(body.find("root:"), std::string::npos) << path;
  }
  ExpectStillServing();
}

TEST_F(BadHttp, HugeRequestsAreRefused) {
  std::string body;
  // A 100 KB header, 1,000 headers, a 100 KB URI: the HTTP library refuses
  // them (413/414/431/400) or closes; the daemon lives on.
  int status = RawStatus(
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100 << 10, 'h') + "\r\n\r\n",
      &body);
  EXPECT_NE(status, 200) << body.substr(0, 300);
  std::string many = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 1000; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  // Whether the library takes them all or refuses: any answer will do.
  RawStatus(many + "\r\n", &body);
  status = RawStatus(
      "GET /api/v1/targets?target=" + std::string(100 << 10, 'u') + " HTTP/1.1\r\nHost: x\r\n\r\n",
      &body);
  EXPECT_TRUE(status == 0 || status >= 400) << body.substr(0, 300);
  // A large body on a GET is read or refused, not served as a second request.
  status = RawStatus("GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" +
                         std::string(1000000, 'b'),
                     &body);
  EXPECT_TRUE(status == 200 || status == 0 || status >= 400) << body.substr(0, 300);
  ExpectStillServing();
}

TEST_F(BadHttp, SmuggledRequestsGetOneResponse) {
  // One request per connection (keep-alive is off): whatever follows the
  // first request is never answered as a second one.
  const std::vector<std::string> requests = {
      // CL.TE: Content-Length and Transfer-Encoding together.
      "POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
      "\r\n0\r\n\r\nGET /api/v1/targets HTTP/1.1\r\nHost: x\r\n\r\n",
      // TE.CL
      "POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
      "\r\n8\r\nSMUGGLED\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
      // Two Content-Lengths that disagree.
      "GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n"
      "GET /api/v1/targets HTTP/1.1\r\nHost: x\r\n\r\n",
      // An obfuscated Transfer-Encoding.
      "GET /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : xchunked\r\n\r\n"
      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
      // Pipelining after a complete GET, with keep-alive requested.
      "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
  };
  for (const std::string& request : requests) {
    std::string body;
    int responses = 0;
    RawStatus(request, &body, &responses);
    EXPECT_LE(responses, 1) << request << "\n->\n" << body.substr(0, 600);
    EXPECT_EQ(body.find("connwatch_target_info"), std::string::npos)
        << "the smuggled /metrics was served:\n"
        << body.substr(0, 600);
  }
  ExpectStillServing();
}

// Many clients sending malformed requests at once: the HTTP library answers
// each with its own error page (400 for a request line without a version,
// 505 for an unknown version) from several connection threads in parallel.
// A request line without even a URI ("GARBAGE") is closed without a word.
TEST_F(BadHttp, ConcurrentGarbageGetsAnswers) {
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        std::string error;
        const char* garbage = (t + i) % 2 ? "GET /metrics\r\n\r\n" : "GET /x HTTP/9.9\r\n\r\n";
        std::string raw = daemon_->Raw(garbage, &error, milliseconds(10000));
        if (raw.rfind("HTTP/", 0) == 0) answered++;
        daemon_->Raw("GARBAGE\r\n\r\n", &error, milliseconds(10000));
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(answered.load(), 320);
  ExpectStillServing();
}

// Clients that open connections and send their request a byte at a time.
class Slowloris {
 public:
  Slowloris(int port, int n) {
    for (int i = 0; i < n; ++i) {
      std::string error;
      int fd = http_client_internal::Connect("127.0.0.1", port, Clock::now() + milliseconds(2000),
                                             &error);
      if (fd >= 0) {
        send(fd, "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL);
        fds_.push_back(fd);
      }
    }
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        for (int fd : fds_) send(fd, "X", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        std::this_thread::sleep_for(milliseconds(200));
      }
    });
  }
  ~Slowloris() {
    stop_ = true;
    thread_.join();
    for (int fd : fds_) close(fd);
  }
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A few slow clients do not stop the others from being served.
TEST_F(BadHttp, SlowClientsBelowTheWorkerCount) {
  Slowloris slow(daemon_->port(), 2);
  ASSERT_EQ(slow.size(), 2u);
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    EXPECT_EQ(daemon_->Get("/-/healthy", milliseconds(5000)).status, 200);
    EXPECT_LT(SecondsSince(start), 2.0);
  }
}

// Connections to `port` as process `pid` sees them, from /proc: `accepted`
// are ESTABLISHED on its side and held by one of its fds (a connection still
// in the listen queue has no inode yet); `read` are those with nothing left
// in their receive queue, so a worker has read what the client sent.
struct ServerConnections {
  int accepted = 0;
  int read = 0;
};

ServerConnections ConnectionsOf(pid_t pid, int port) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<std::string> inodes;  // of the process's sockets
  std::error_code ec;
  for (const auto& fd : std::filesystem::directory_iterator(proc + "/fd", ec)) {
    std::error_code link_ec;
    const std::string target = std::filesystem::read_symlink(fd.path(), link_ec).string();
    if (target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  ServerConnections seen;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream in(proc + table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode;
      const size_t colon = local.rfind(':');
      if (colon == std::string::npos || state != "01" ||  // TCP_ESTABLISHED
          std::stoi(local.substr(colon + 1), nullptr, 16) != port || inodes.count(inode) == 0) {
        continue;
      }
      ++seen.accepted;
      const size_t q = queues.find(':');
      if (q != std::string::npos && std::stoul(queues.substr(q + 1), nullptr, 16) == 0) ++seen.read;
    }
  }
  return seen;
}

// Known gap 4 (docs/RELIABILITY.md), fixed: with 4 workers and a 10 s request
// timeout, eight slow clients held every worker and a scrape waited 10-20 s.
// Now every connection has its own thread, one client address at most 32,
// and a request must be in 3 s after the connect.
TEST_F(BadHttp, SlowlorisDoesNotStarveOtherClients) {
  Slowloris slow(daemon_->port(), 16);
  ASSERT_EQ(slow.size(), 16u);
  // The slow clients occupy workers once the daemon has accepted each
  // connection and a worker has read its first bytes.
  ServerConnections seen;
  ASSERT_TRUE(WaitFor(
      [&] {
        seen = ConnectionsOf(daemon_->process().pid(), daemon_->port());
        return seen.read >= 16;
      },
      kDeadline))
      << "expected the daemon to accept and read 16 slow connections; it accepted " << seen.accepted
      << " and read " << seen.read;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    HttpResponse r = daemon_->Get("/-/healthy", milliseconds(30000));
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_LT(SecondsSince(start), 2.0) << "a health check waited behind slow clients";
  }
}

}  // namespace
}  // namespace connwatch
