// connwatch-peer: the TestPeer as a process, for the newcomer demo, the system
// tests and the bench. This file parses flags, wires signals and the control
// socket to TestPeer commands, and runs the demo schedule; the sockets that
// matter live in test_peer.cc. Signals are read from a signalfd by the main
// thread's poll loop, never acted on in a handler.

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "test_peer.h"

namespace connwatch::testing {
namespace {

constexpr std::string_view kUsage = R"(usage: connwatch-peer --listen ADDR:PORT [options]
       connwatch-peer --control PATH --send 'COMMAND'

A TCP server that holds, echoes, ignores, closes (FIN), resets (RST), refuses
and floods connections on command: the far end for connwatchd's demo and tests.

  --listen ADDR:PORT     listen there (repeatable): 127.0.0.1:7001, [::1]:7002;
                         port 0 lets the kernel pick (see --ready-file)
  --listen-range ADDR:LO-HI
                         listen on every port LO..HI (one thread for all)
  --mode MODE            hold (default), echo, silent, never-read, keep-open, close, reset
                           hold        accept, read and discard, never write
                           echo        reply (see --heartbeat), or echo data back
                           silent      read and discard, never reply
                           never-read  never read: the client's sends pile up
                           keep-open   as hold, but never answer the client's FIN
                           close       accept then close at once (FIN)
                           reset       accept then reset at once (RST)
  --heartbeat REQ=REPLY  in echo mode, send REPLY for every REQ received;
                         C escapes allowed: \r \n \t \\ \0 \xHH
  --backlog N            listen backlog (default 4096)
  --demo                 cycle forever, one line per phase:
                           hold -> close (FIN) -> hold -> reset (RST) ->
                           stop (close all, refuse connects) -> listen (recover)
  --phase DURATION       demo phase length: 4s (default), 500ms, 1m
  --control PATH         unix stream socket taking line commands:
                           close | reset | blackhole | alert | close-notify on|off |
                           stop | listen | mode MODE |
                           heartbeat REQ=REPLY | reply TEXT | send TEXT |
                           send-close TEXT | flood BYTES[K|M|G] | stats | help
                         each command gets one reply line: "ok ..." or "error: ..."
  --send COMMAND         with --control: send COMMAND to a running peer, print
                         the reply, exit 0 on "ok", 1 otherwise
  --tls-cert FILE        serve TLS with this certificate chain (PEM); the modes
                         then act on the sessions' data; `close` sends
                         close_notify first (close-notify off: a bare FIN),
                         `alert` sends a fatal alert
  --tls-key FILE         its private key (default: in the --tls-cert file)
  --tls-client-ca FILE   require a client certificate signed by this CA
  --ready-file PATH      once listening, write the bound ports there, one per
                         line, in --listen order (written atomically by rename)
  --help                 this text

Signals: SIGUSR1 = close all (FIN), SIGUSR2 = reset all (RST),
SIGTERM/SIGINT = exit 0. Stdout lines start with "peer: " and are flushed.
)";

struct Flags {
  std::vector<ListenAddress> listen;
  PeerMode mode = PeerMode::kHold;
  bool heartbeat = false;
  std::string request;
  std::string reply;
  int backlog = 4096;
  bool demo = false;
  std::chrono::milliseconds phase{4000};
  std::string control_path;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  bool send = false;
  std::string send_command;
  std::string ready_file;
};

bool ParseUint(std::string_view text, uint64_t max, uint64_t* value) {
  if (text.empty()) return false;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v > max) return false;
  *value = v;
  return true;
}

// "127.0.0.1:7001", "[::1]:7002" -> address without brackets, and port text.
bool SplitHostPort(std::string_view text, std::string* host, std::string_view* port) {
  size_t colon;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    *host = std::string(text.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = text.rfind(':');
    if (colon == std::string_view::npos || text.substr(0, colon).find(':') != std::string::npos) {
      return false;  // no port, or a bare IPv6 address: brackets are required.
    }
    *host = std::string(text.substr(0, colon));
  }
  *port = text.substr(colon + 1);
  return !host->empty();
}

bool ParseListen(std::string_view text, std::vector<ListenAddress>* out, std::string* error) {
  std::string host;
  std::string_view port_text;
  uint64_t port = 0;
  if (!SplitHostPort(text, &host, &port_text) || !ParseUint(port_text, 65535, &port)) {
    *error =
        "--listen " + std::string(text) + ": want ADDR:PORT, e.g. 127.0.0.1:7001 or [::1]:7002";
    return false;
  }
  out->push_back(ListenAddress{host, static_cast<uint16_t>(port)});
  return true;
}

bool ParseListenRange(std::string_view text, std::vector<ListenAddress>* out, std::string* error) {
  std::string host;
  std::string_view range;
  uint64_t lo = 0;
  uint64_t hi = 0;
  size_t dash = std::string_view::npos;
  if (SplitHostPort(text, &host, &range)) dash = range.find('-');
  if (dash == std::string_view::npos || !ParseUint(range.substr(0, dash), 65535, &lo) ||
      !ParseUint(range.substr(dash + 1), 65535, &hi) || lo == 0 || lo > hi) {
    *error = "--listen-range " + std::string(text) +
             ": want ADDR:LO-HI with 1 <= LO <= HI <= 65535, e.g. 127.0.0.1:20000-20999";
    return false;
  }
  for (uint64_t port = lo; port <= hi; ++port) {
    out->push_back(ListenAddress{host, static_cast<uint16_t>(port)});
  }
  return true;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// C escapes: \r \n \t \\ \0 \xHH. False on an unknown or truncated escape.
bool Unescape(std::string_view text, std::string* out) {
  out->clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out->push_back(text[i]);
      continue;
    }
    if (++i == text.size()) return false;
    switch (text[i]) {
      case 'r':
        out->push_back('\r');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 't':
        out->push_back('\t');
        break;
      case '\\':
        out->push_back('\\');
        break;
      case '0':
        out->push_back('\0');
        break;
      case 'x': {
        if (i + 2 >= text.size()) return false;  // needs two hex digits.
        int high = HexDigit(text[i + 1]);
        int low = HexDigit(text[i + 2]);
        if (high < 0 || low < 0) return false;
        out->push_back(static_cast<char>(high * 16 + low));
        i += 2;
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

bool ParseHeartbeat(std::string_view text, std::string* request, std::string* reply) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) return false;
  return Unescape(text.substr(0, eq), request) && Unescape(text.substr(eq + 1), reply) &&
         !request->empty();
}

bool ParseDuration(std::string_view text, std::chrono::milliseconds* out) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t n = 0;
  if (!ParseUint(text.substr(0, digits), uint64_t{1} << 40, &n) || n == 0) return false;
  std::string_view unit = text.substr(digits);
  if (unit == "ms") {
    *out = std::chrono::milliseconds(n);
  } else if (unit == "s" || unit.empty()) {
    *out = std::chrono::seconds(n);
  } else if (unit == "m") {
    *out = std::chrono::minutes(n);
  } else {
    return false;
  }
  return true;
}

// "1048576", "64K", "200M", "1G" (powers of 1024).
bool ParseBytes(std::string_view text, size_t* out) {
  uint64_t scale = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        scale = uint64_t{1} << 10;
        break;
      case 'M':
      case 'm':
        scale = uint64_t{1} << 20;
        break;
      case 'G':
      case 'g':
        scale = uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (scale != 1) text.remove_suffix(1);
  }
  uint64_t n = 0;
  if (!ParseUint(text, (uint64_t{1} << 50) / scale, &n)) return false;
  *out = static_cast<size_t>(n * scale);
  return true;
}

// Returns 0 to go on, -1 after --help, 2 on bad flags.
int ParseFlags(int argc, char** argv, Flags* flags) {
  enum : int {
    kListen = 1000,
    kListenRange,
    kMode,
    kHeartbeat,
    kBacklog,
    kDemo,
    kPhase,
    kControl,
    kSend,
    kReadyFile,
    kTlsCert,
    kTlsKey,
    kTlsClientCa,
    kHelp
  };
  static const option kOptions[] = {
      {"listen", required_argument, nullptr, kListen},
      {"listen-range", required_argument, nullptr, kListenRange},
      {"mode", required_argument, nullptr, kMode},
      {"heartbeat", required_argument, nullptr, kHeartbeat},
      {"backlog", required_argument, nullptr, kBacklog},
      {"demo", no_argument, nullptr, kDemo},
      {"phase", required_argument, nullptr, kPhase},
      {"control", required_argument, nullptr, kControl},
      {"send", required_argument, nullptr, kSend},
      {"ready-file", required_argument, nullptr, kReadyFile},
      {"tls-cert", required_argument, nullptr, kTlsCert},
      {"tls-key", required_argument, nullptr, kTlsKey},
      {"tls-client-ca", required_argument, nullptr, kTlsClientCa},
      {"help", no_argument, nullptr, kHelp},
      {nullptr, 0, nullptr, 0},
  };
  auto bad = [](const std::string& message) {
    std::fprintf(stderr, "connwatch-peer: %s\n(see connwatch-peer --help)\n", message.c_str());
    return 2;
  };
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", kOptions, nullptr)) != -1) {
    std::string_view arg = optarg != nullptr ? optarg : "";
    std::string error;
    uint64_t n = 0;
    switch (c) {
      case kListen:
        if (!ParseListen(arg, &flags->listen, &error)) return bad(error);
        break;
      case kListenRange:
        if (!ParseListenRange(arg, &flags->listen, &error)) return bad(error);
        break;
      case kMode:
        if (!ParsePeerMode(arg, &flags->mode)) {
          return bad("--mode " + std::string(arg) +
                     ": want hold, echo, silent, never-read, close or reset");
        }
        break;
      case kHeartbeat:
        if (!ParseHeartbeat(arg, &flags->request, &flags->reply)) {
          return bad("--heartbeat " + std::string(arg) +
                     ": want REQUEST=REPLY, REQUEST not empty, escapes \\r \\n \\t \\\\ \\0 \\xHH");
        }
        flags->heartbeat = true;
        break;
      case kBacklog:
        if (!ParseUint(arg, 1 << 20, &n) || n == 0) {
          return bad("--backlog " + std::string(arg) + ": want a positive integer");
        }
        flags->backlog = static_cast<int>(n);
        break;
      case kDemo:
        flags->demo = true;
        break;
      case kPhase:
        if (!ParseDuration(arg, &flags->phase)) {
          return bad("--phase " + std::string(arg) + ": want a duration such as 4s, 500ms, 1m");
        }
        break;
      case kControl:
        flags->control_path = std::string(arg);
        break;
      case kSend:
        flags->send = true;
        flags->send_command = std::string(arg);
        break;
      case kReadyFile:
        flags->ready_file = std::string(arg);
        break;
      case kTlsCert:
        flags->tls_cert = std::string(arg);
        break;
      case kTlsKey:
        flags->tls_key = std::string(arg);
        break;
      case kTlsClientCa:
        flags->tls_client_ca = std::string(arg);
        break;
      case kHelp:
        std::fwrite(kUsage.data(), 1, kUsage.size(), stdout);
        return -1;
      default:
        return bad(std::string("unknown or incomplete option ") +
                   (optind > 0 && optind <= argc ? argv[optind - 1] : "?"));
    }
  }
  if (optind < argc) return bad(std::string("unexpected argument ") + argv[optind]);
  if (flags->send) {
    if (flags->control_path.empty()) return bad("--send needs --control PATH");
    return 0;
  }
  if (flags->listen.empty()) return bad("need --listen ADDR:PORT or --listen-range ADDR:LO-HI");
  if (flags->control_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return bad("--control " + flags->control_path + ": path too long for a unix socket");
  }
  return 0;
}

sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// --send: one command to a running peer; prints the reply.
int SendCommand(const Flags& flags) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = UnixAddress(flags.control_path);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "connwatch-peer: connect %s: %s\n", flags.control_path.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::string line = flags.send_command + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::fprintf(stderr, "connwatch-peer: send: %s\n", std::strerror(errno));
      return 1;
    }
    done += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::fwrite(reply.data(), 1, reply.size(), stdout);
  return reply.rfind("ok", 0) == 0 ? 0 : 1;
}

std::string PortsLabel(const TestPeer& peer) {
  std::vector<uint16_t> ports = peer.ports();
  if (ports.size() > 8) {
    return "ports=" + std::to_string(ports.front()) + "-" + std::to_string(ports.back());
  }
  std::string label = "port=";
  for (size_t i = 0; i < ports.size(); ++i) {
    if (i > 0) label += ",";
    label += std::to_string(ports[i]);
  }
  return label;
}

std::string Stats(const TestPeer& peer) {
  return "accepted=" + std::to_string(peer.accepted_total()) +
         " open=" + std::to_string(peer.open_connections()) +
         " listening=" + (peer.listening() ? "1" : "0") +
         " mode=" + std::string(PeerModeName(peer.mode())) +
         " client_fins=" + std::to_string(peer.client_fins()) +
         " client_resets=" + std::to_string(peer.client_resets()) +
         " flooded=" + std::to_string(peer.FloodedBytes()) +
         " flood_pending=" + std::to_string(peer.FloodPendingBytes());
}

// One control command; returns the reply line (without newline).
std::string Execute(TestPeer& peer, std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  size_t space = line.find(' ');
  std::string_view verb = line.substr(0, space);
  std::string_view arg = space == std::string_view::npos ? "" : line.substr(space + 1);
  std::string text;
  if (verb == "close") {
    size_t n = peer.open_connections();
    peer.CloseAll();
    return "ok closed=" + std::to_string(n);
  }
  if (verb == "reset") {
    size_t n = peer.open_connections();
    peer.ResetAll();
    return "ok reset=" + std::to_string(n);
  }
  if (verb == "alert") {
    peer.SendTlsAlertAll();
    return "ok";
  }
  if (verb == "close-notify") {
    if (arg != "on" && arg != "off") return "error: close-notify wants on or off";
    peer.SetCloseNotify(arg == "on");
    return "ok close-notify=" + std::string(arg);
  }
  if (verb == "blackhole") {
    return "ok silent=" + std::to_string(peer.BlackholeAll());
  }
  if (verb == "stop") {
    peer.StopListening();
    return "ok listening=0";
  }
  if (verb == "listen") {
    std::string error = peer.Listen();
    return error.empty() ? "ok listening=1" : "error: " + error;
  }
  if (verb == "mode") {
    PeerMode mode;
    if (!ParsePeerMode(arg, &mode)) {
      return "error: mode " + std::string(arg) +
             ": want hold, echo, silent, never-read, keep-open, close or reset";
    }
    peer.SetMode(mode);
    return "ok mode=" + std::string(PeerModeName(mode));
  }
  if (verb == "heartbeat") {
    std::string request;
    std::string reply;
    if (!ParseHeartbeat(arg, &request, &reply)) return "error: heartbeat wants REQUEST=REPLY";
    peer.SetHeartbeat(std::move(request), std::move(reply));
    return "ok";
  }
  if (verb == "reply" || verb == "send" || verb == "send-close") {
    if (!Unescape(arg, &text)) return "error: bad escape in " + std::string(arg);
    if (verb == "reply") {
      peer.SetReply(std::move(text));
    } else if (verb == "send") {
      peer.SendAll(std::move(text));
    } else {
      peer.SendThenCloseAll(std::move(text));
    }
    return "ok";
  }
  if (verb == "flood") {
    size_t bytes = 0;
    if (!ParseBytes(arg, &bytes)) return "error: flood wants BYTES, e.g. 200M";
    size_t n = peer.open_connections();
    peer.StartFlood(bytes);
    return "ok flood=" + std::to_string(bytes) + " connections=" + std::to_string(n);
  }
  if (verb == "stats") return "ok " + Stats(peer);
  if (verb == "help") {
    return "ok commands: close reset stop listen mode heartbeat reply send send-close flood stats";
  }
  return "error: unknown command '" + std::string(verb) + "' (try help)";
}

bool WriteReadyFile(const std::string& path, const TestPeer& peer) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  for (uint16_t port : peer.ports()) std::fprintf(f, "%u\n", unsigned{port});
  bool ok = std::fclose(f) == 0;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

// The demo schedule: each phase's action runs when the phase begins.
class Demo {
 public:
  explicit Demo(TestPeer& peer) : peer_(peer) {}

  void NextPhase() {
    static constexpr const char* kPhases[] = {"hold", "close", "hold", "reset", "stop", "listen"};
    std::string detail;
    size_t open = peer_.open_connections();
    switch (phase_) {
      case 0:
      case 2:
        break;
      case 1:  // the peer closes: FIN.
        peer_.CloseAll();
        detail = " closed=" + std::to_string(open);
        break;
      case 3:  // the peer aborts: RST.
        peer_.ResetAll();
        detail = " reset=" + std::to_string(open);
        break;
      case 4:  // the server goes away: FIN on what is open, then connects are refused.
        peer_.StopListening();
        peer_.CloseAll();
        detail = " closed=" + std::to_string(open) + " refusing=1";
        break;
      case 5: {  // the server is back.
        std::string error = peer_.Listen();
        if (!error.empty()) detail = " error=\"" + error + "\"";
        break;
      }
    }
    std::printf("peer: phase=%s %s open=%zu accepted=%zu listening=%d%s\n", kPhases[phase_],
                PortsLabel(peer_).c_str(), peer_.open_connections(), peer_.accepted_total(),
                peer_.listening() ? 1 : 0, detail.c_str());
    std::fflush(stdout);
    phase_ = (phase_ + 1) % 6;
  }

 private:
  TestPeer& peer_;
  int phase_ = 0;
};

struct ControlClient {
  int fd = -1;
  std::string in;
};

int Run(const Flags& flags) {
  // Block the signals we read from the signalfd before TestPeer starts its
  // thread, so that thread inherits the mask and never takes them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::fprintf(stderr, "connwatch-peer: signalfd: %s\n", std::strerror(errno));
    return 1;
  }

  PeerOptions opts;
  opts.bind_address = flags.listen.front().address;
  opts.port = flags.listen.front().port;
  opts.backlog = flags.backlog;
  opts.extra_listeners.assign(flags.listen.begin() + 1, flags.listen.end());
  opts.tls_cert_file = flags.tls_cert;
  opts.tls_key_file = flags.tls_key.empty() ? flags.tls_cert : flags.tls_key;
  opts.tls_client_ca_file = flags.tls_client_ca;
  TestPeer peer(opts);
  peer.SetMode(flags.mode);
  if (flags.heartbeat) peer.SetHeartbeat(flags.request, flags.reply);
  std::string error = peer.Start();
  if (!error.empty()) {
    std::fprintf(stderr, "connwatch-peer: %s\n", error.c_str());
    return 1;
  }

  int control_fd = -1;
  if (!flags.control_path.empty()) {
    unlink(flags.control_path.c_str());  // a socket left by an earlier run.
    sockaddr_un addr = UnixAddress(flags.control_path);
    control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (control_fd < 0 || bind(control_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(control_fd, 16) != 0) {
      std::fprintf(stderr, "connwatch-peer: control socket %s: %s\n", flags.control_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
  }

  std::vector<ListenerStats> listeners = peer.Listeners();
  for (const ListenerStats& l : listeners) {
    bool v6 = l.address.find(':') != std::string::npos;
    std::printf("peer: listening %s%s%s:%u mode=%s\n", v6 ? "[" : "", l.address.c_str(),
                v6 ? "]" : "", unsigned{l.port}, std::string(PeerModeName(peer.mode())).c_str());
  }
  std::fflush(stdout);
  if (!flags.ready_file.empty() && !WriteReadyFile(flags.ready_file, peer)) {
    std::fprintf(stderr, "connwatch-peer: ready file %s: %s\n", flags.ready_file.c_str(),
                 std::strerror(errno));
    return 1;
  }

  int timer_fd = -1;
  Demo demo(peer);
  if (flags.demo) {
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    auto ms = flags.phase.count();
    itimerspec spec{};
    spec.it_interval.tv_sec = ms / 1000;
    spec.it_interval.tv_nsec = (ms % 1000) * 1'000'000;
    spec.it_value = spec.it_interval;
    if (timer_fd < 0 || timerfd_settime(timer_fd, 0, &spec, nullptr) != 0) {
      std::fprintf(stderr, "connwatch-peer: timerfd: %s\n", std::strerror(errno));
      return 1;
    }
    demo.NextPhase();
  }

  std::vector<ControlClient> clients;
  int exit_code = -1;
  while (exit_code < 0) {
    std::vector<pollfd> fds;
    fds.push_back({signal_fd, POLLIN, 0});
    fds.push_back({timer_fd, POLLIN, 0});  // poll ignores fd -1.
    fds.push_back({control_fd, POLLIN, 0});
    for (const ControlClient& client : clients) fds.push_back({client.fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "connwatch-peer: poll: %s\n", std::strerror(errno));
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      while (read(signal_fd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGUSR1) {
          std::printf("peer: signal=USR1 %s\n", Execute(peer, "close").c_str());
        } else if (info.ssi_signo == SIGUSR2) {
          std::printf("peer: signal=USR2 %s\n", Execute(peer, "reset").c_str());
        } else {
          std::printf("peer: exiting signal=%s\n", info.ssi_signo == SIGTERM ? "TERM" : "INT");
          exit_code = 0;
        }
        std::fflush(stdout);
      }
    }
    if (fds[1].revents & POLLIN) {
      uint64_t expirations = 0;
      if (read(timer_fd, &expirations, sizeof expirations) == sizeof expirations) {
        demo.NextPhase();
      }
    }
    if (fds[2].revents & POLLIN) {
      int fd = accept4(control_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) clients.push_back(ControlClient{fd, ""});
    }
    // Control clients: one reply line per command line; closed at EOF.
    for (size_t i = 0; i < clients.size() && i + 3 < fds.size(); ++i) {
      if (fds[i + 3].revents == 0) continue;
      ControlClient& client = clients[i];
      char buf[4096];
      ssize_t n = recv(client.fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n > 0) client.in.append(buf, static_cast<size_t>(n));
      size_t newline;
      while ((newline = client.in.find('\n')) != std::string::npos) {
        std::string line = client.in.substr(0, newline);
        client.in.erase(0, newline + 1);
        std::string reply = Execute(peer, line);
        std::printf("peer: control=\"%s\" %s\n", line.c_str(), reply.c_str());
        std::fflush(stdout);
        reply += "\n";
        // A control reply is short; the socket buffer takes it whole.
        if (send(client.fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) break;
      }
      if (n <= 0 || client.in.size() > 65536) {
        close(client.fd);
        client.fd = -1;
      }
    }
    std::erase_if(clients, [](const ControlClient& client) { return client.fd < 0; });
  }

  for (const ControlClient& client : clients) close(client.fd);
  if (control_fd >= 0) {
    close(control_fd);
    unlink(flags.control_path.c_str());
  }
  if (timer_fd >= 0) close(timer_fd);
  close(signal_fd);
  return exit_code;
}

}  // namespace
}  // namespace connwatch::testing

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  connwatch::testing::Flags flags;
  int code = connwatch::testing::ParseFlags(argc, argv, &flags);
  if (code == -1) return 0;  // --help
  if (code != 0) return code;
  if (flags.send) return connwatch::testing::SendCommand(flags);
  return connwatch::testing::Run(flags);
}
