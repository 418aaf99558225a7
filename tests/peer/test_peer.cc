#include "test_peer.h"

#include <linux/filter.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>

namespace connwatch::testing {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
constexpr size_t kReadBurst = 16;     // recv() calls per connection per loop turn.
constexpr size_t kAcceptBurst = 512;  // accept() calls per listener per loop turn.
constexpr size_t kFloodChunk = 64 * 1024;
constexpr size_t kFloodBurst = 1 << 20;  // flood bytes per connection per loop turn.
constexpr size_t kDrainLimit = 64;       // recv() calls when draining before a close.
constexpr int kMaxEvents = 256;
// glibc declares the EPOLL* flags as enumerators; these are their plain values.
constexpr uint32_t kIn = EPOLLIN;
constexpr uint32_t kRdHup = EPOLLRDHUP;

// epoll data tags: 0 is the wake-up eventfd, kListenerTag|i the i-th listener,
// anything else a connection id (ids are never reused, so an event left over
// from a closed connection cannot reach a new one that got the same fd).
constexpr uint64_t kWakeTag = 0;
constexpr uint64_t kListenerTag = uint64_t{1} << 62;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "connwatch TestPeer: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

int64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string StripBrackets(std::string address) {
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    return address.substr(1, address.size() - 2);
  }
  return address;
}

bool ParseAddress(const std::string& address, uint16_t port, sockaddr_storage* out,
                  socklen_t* len) {
  *out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  *out = {};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::string HostPort(const std::string& address, uint16_t port) {
  if (address.find(':') != std::string::npos) {
    return "[" + address + "]:" + std::to_string(port);
  }
  return address + ":" + std::to_string(port);
}

void CloseFd(int fd) {
  // NOTE: on Linux the fd is released even when close() fails with EINTR;
  // retrying would close someone else's fd.
  ::close(fd);
}

// Reads and discards what is queued, so that a following close() sends FIN
// rather than RST. Stops at EAGAIN, EOF, error or after kDrainLimit reads.
void Drain(int fd, std::vector<char>& buf) {
  for (size_t i = 0; i < kDrainLimit; ++i) {
    ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

void ResetFd(int fd) {
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  CloseFd(fd);
}

}  // namespace

std::string_view PeerModeName(PeerMode mode) {
  switch (mode) {
    case PeerMode::kHold:
      return "hold";
    case PeerMode::kEcho:
      return "echo";
    case PeerMode::kSilent:
      return "silent";
    case PeerMode::kNeverRead:
      return "never-read";
    case PeerMode::kKeepOpen:
      return "keep-open";
    case PeerMode::kCloseOnAccept:
      return "close";
    case PeerMode::kResetOnAccept:
      return "reset";
  }
  return "unknown";
}

bool ParsePeerMode(std::string_view word, PeerMode* mode) {
  for (PeerMode m : {PeerMode::kHold, PeerMode::kEcho, PeerMode::kSilent, PeerMode::kNeverRead,
                     PeerMode::kKeepOpen, PeerMode::kCloseOnAccept, PeerMode::kResetOnAccept}) {
    if (word == PeerModeName(m)) {
      *mode = m;
      return true;
    }
  }
  return false;
}

struct TestPeer::Listener {
  std::string address;  // without brackets.
  uint16_t requested_port = 0;
  std::atomic<uint16_t> bound_port{0};
  int fd = -1;
  size_t open = 0;
  size_t accepted = 0;
};

struct TestPeer::Connection {
  uint64_t id = 0;
  int fd = -1;
  size_t listener_index = 0;
  uint32_t events = 0;    // what epoll is asked for now.
  std::string out;        // queued replies / SendAll data.
  size_t out_offset = 0;  // bytes of `out` already written.
  size_t flood_remaining = 0;
  bool close_after_write = false;
  std::string unmatched;  // kEcho with a request: received bytes not yet matched.
  bool half_closed = false;  // kKeepOpen: the client sent FIN; no longer watched.
  SSL* ssl = nullptr;        // the TLS session (TLS peers)
  bool handshaking = false;
  uint32_t tls_wants = 0;    // EPOLLIN/EPOLLOUT the session waits for
};

TestPeer::TestPeer(PeerOptions opts) : opts_(std::move(opts)) {
  auto add = [this](const std::string& address, uint16_t port) {
    auto listener = std::make_unique<Listener>();
    listener->address = StripBrackets(address);
    listener->requested_port = port;
    listeners_.push_back(std::move(listener));
  };
  add(opts_.bind_address, opts_.port);
  for (const ListenAddress& extra : opts_.extra_listeners) add(extra.address, extra.port);

  read_buf_.resize(kReadBufferSize);
  static constexpr std::string_view kPattern = "connwatch-peer flood 0123456789abcdef\n";
  while (flood_chunk_.size() < kFloodChunk) flood_chunk_ += kPattern;
  flood_chunk_.resize(kFloodChunk);

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) Die("epoll_create1");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) Die("eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) Die("epoll_ctl(eventfd)");
  thread_ = std::thread([this] { Loop(); });
}

TestPeer::~TestPeer() {
  RunInLoop([this] { stopping_ = true; });
  thread_.join();
  for (auto& [id, conn] : connections_) {
    if (conn->ssl != nullptr) SSL_free(conn->ssl);
    CloseFd(conn->fd);
  }
  connections_.clear();
  if (tls_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(tls_ctx_));
  for (auto& listener : listeners_) {
    if (listener->fd >= 0) CloseFd(listener->fd);
  }
  CloseFd(wake_fd_);
  CloseFd(epoll_fd_);
}

void TestPeer::RunInLoop(std::function<void()> fn) const {
  if (std::this_thread::get_id() == thread_.get_id()) {
    fn();
    return;
  }
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  {
    std::lock_guard<std::mutex> lock(commands_mu_);
    commands_.push_back(Command{std::move(fn), &done});
  }
  uint64_t one = 1;
  while (write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
  finished.wait();
}

void TestPeer::Loop() {
  // NOTE: OpenSSL writes TLS records with write(): a client that reset the
  // connection would raise SIGPIPE; blocked on this thread it stays pending.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  std::vector<epoll_event> events(kMaxEvents);
  while (!stopping_) {
    int n = epoll_wait(epoll_fd_, events.data(), kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    bool commands = false;
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        commands = true;
      } else if (tag & kListenerTag) {
        AcceptFrom(static_cast<size_t>(tag & ~kListenerTag), kAcceptBurst);
      } else {
        OnConnectionEvent(tag, events[i].events);
      }
    }
    // Commands last: a command may close connections that still have events
    // in this batch; ids make those events harmless, but running them after
    // keeps the order simple to reason about.
    if (commands) RunCommands();
    NotifyWaiters();
  }
}

void TestPeer::RunCommands() {
  uint64_t count = 0;
  while (read(wake_fd_, &count, sizeof count) < 0 && errno == EINTR) {
  }
  std::vector<Command> batch;
  {
    std::lock_guard<std::mutex> lock(commands_mu_);
    batch.swap(commands_);
  }
  for (Command& command : batch) {
    command.fn();
    // Publish the counters the command changed before its caller resumes.
    NotifyWaiters();
    command.done->set_value();
  }
}

void TestPeer::NotifyWaiters() {
  // Counting the turn under the mutex orders our counter updates before a
  // waiter's next check, so a waiter cannot miss this wake-up.
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    ++loop_turns_;
  }
  wait_cv_.notify_all();
}

bool TestPeer::WaitUntil(const std::function<bool()>& reached, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(wait_mu_);
  for (;;) {
    const uint64_t turn = loop_turns_;
    // `reached` runs without the mutex: it may even call Listeners().
    lock.unlock();
    if (reached()) return true;
    lock.lock();
    if (!wait_cv_.wait_until(lock, deadline, [&] { return loop_turns_ != turn; })) {
      lock.unlock();
      return reached();
    }
  }
}

std::string TestPeer::Start() {
  std::string error;
  RunInLoop([this, &error] {
    if (started_) {
      error = "TestPeer::Start called twice";
      return;
    }
    for (auto& listener : listeners_) {
      error = OpenListener(*listener);
      if (!error.empty()) break;
    }
    if (!error.empty()) {
      for (auto& listener : listeners_) CloseListener(*listener);
      return;
    }
    if (!opts_.tls_cert_file.empty()) {
      SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
      if (SSL_CTX_use_certificate_chain_file(ctx, opts_.tls_cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(ctx, opts_.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        error = "TLS certificate or key: cannot load " + opts_.tls_cert_file + " / " +
                opts_.tls_key_file;
        SSL_CTX_free(ctx);
      } else {
        if (!opts_.tls_client_ca_file.empty()) {
          SSL_CTX_load_verify_locations(ctx, opts_.tls_client_ca_file.c_str(), nullptr);
          SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        }
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        tls_ctx_ = ctx;
      }
      ERR_clear_error();
      if (!error.empty()) {
        for (auto& listener : listeners_) CloseListener(*listener);
        return;
      }
    }
    started_ = true;
    listening_ = true;
  });
  return error;
}

std::string TestPeer::OpenListener(Listener& listener) {
  if (listener.fd >= 0) return "";
  uint16_t port = listener.bound_port != 0 ? listener.bound_port.load() : listener.requested_port;
  std::string where = HostPort(listener.address, port);
  sockaddr_storage addr;
  socklen_t addr_len = 0;
  if (!ParseAddress(listener.address, port, &addr, &addr_len)) {
    return "bind " + where + ": not a numeric IPv4 or IPv6 address";
  }
  auto fail = [&where](const char* call, int fd) {
    std::string error = std::string(call) + " " + where + ": " + std::strerror(errno);
    if (fd >= 0) CloseFd(fd);
    return error;
  };
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket", -1);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return fail("setsockopt(SO_REUSEADDR)", fd);
  }
  // "::" must not also claim the IPv4 port: other listeners may want it.
  if (addr.ss_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
    return fail("setsockopt(IPV6_V6ONLY)", fd);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) return fail("bind", fd);
  if (listen(fd, opts_.backlog) != 0) return fail("listen", fd);
  sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return fail("getsockname", fd);
  }
  uint16_t bound_port = bound.ss_family == AF_INET
                            ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                            : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  size_t index = 0;
  while (listeners_[index].get() != &listener) ++index;
  epoll_event ev{};
  ev.events = accept_paused_ || accept_held_ ? 0u : kIn;
  ev.data.u64 = kListenerTag | index;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return fail("epoll_ctl", fd);
  listener.fd = fd;
  listener.bound_port = bound_port;
  return "";
}

void TestPeer::CloseListener(Listener& listener) {
  if (listener.fd < 0) return;
  CloseFd(listener.fd);  // also leaves the epoll set: the fd has no duplicate.
  listener.fd = -1;
}

void TestPeer::SetAccepting(bool accepting) {
  accept_paused_ = !accepting;
  for (size_t i = 0; i < listeners_.size(); ++i) {
    if (listeners_[i]->fd < 0) continue;
    epoll_event ev{};
    ev.events = accepting && !accept_held_ ? kIn : 0u;
    ev.data.u64 = kListenerTag | i;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listeners_[i]->fd, &ev);
  }
}

void TestPeer::AcceptFrom(size_t index, size_t limit) {
  Listener& listener = *listeners_[index];
  for (size_t i = 0; i < limit && listener.fd >= 0 && !accept_paused_ && !accept_held_; ++i) {
    int fd = accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;  // the client left first.
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      ++accept_errors_;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Level-triggered epoll would report the listener again at once:
        // pause until a connection closes and frees an fd.
        std::fprintf(stderr, "connwatch TestPeer: accept: %s; pausing accepts\n",
                     std::strerror(errno));
        SetAccepting(false);
      }
      return;
    }
    ++accepted_total_;
    ++listener.accepted;
    switch (loop_mode_) {
      case PeerMode::kCloseOnAccept:
        shutdown(fd, SHUT_WR);
        Drain(fd, read_buf_);
        CloseFd(fd);
        break;
      case PeerMode::kResetOnAccept:
        ResetFd(fd);
        break;
      default:
        AddConnection(fd, index);
        break;
    }
  }
}

void TestPeer::AcceptBacklog() {
  for (size_t i = 0; i < listeners_.size(); ++i) AcceptFrom(i, SIZE_MAX);
}

void TestPeer::AddConnection(int fd, size_t listener_index) {
  auto conn = std::make_unique<Connection>();
  conn->id = next_connection_id_++;
  conn->fd = fd;
  conn->listener_index = listener_index;
  conn->events = (Reading() ? kIn : 0u) | kRdHup;
  epoll_event ev{};
  ev.events = conn->events;
  ev.data.u64 = conn->id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ++accept_errors_;
    CloseFd(fd);
    return;
  }
  if (tls_ctx_ != nullptr) {
    conn->ssl = SSL_new(static_cast<SSL_CTX*>(tls_ctx_));
    SSL_set_fd(conn->ssl, fd);
    SSL_set_accept_state(conn->ssl);
    conn->handshaking = true;
    conn->tls_wants = EPOLLIN;
  }
  ++listeners_[listener_index]->open;
  ++open_connections_;
  connections_.emplace(conn->id, std::move(conn));
}

bool TestPeer::ContinueHandshake(Connection& conn) {
  ERR_clear_error();
  const int r = SSL_do_handshake(conn.ssl);
  if (r == 1) {
    conn.handshaking = false;
    conn.tls_wants = 0;
    ++tls_handshakes_;
    UpdateInterest(conn);
    return true;
  }
  const int code = SSL_get_error(conn.ssl, r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
    conn.tls_wants = code == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
    UpdateInterest(conn);
    return true;
  }
  ERR_clear_error();
  ++tls_failures_;
  CloseConnection(conn, CloseHow::kGone);
  return false;
}

ssize_t TestPeer::ConnRecv(Connection& conn, char* buf, size_t len) {
  if (conn.ssl == nullptr) return recv(conn.fd, buf, len, MSG_DONTWAIT);
  ERR_clear_error();
  errno = 0;
  const int r = SSL_read(conn.ssl, buf, static_cast<int>(len));
  if (r > 0) return r;
  const int code = SSL_get_error(conn.ssl, r);
  ERR_clear_error();
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (code == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify
  if (code == SSL_ERROR_SYSCALL && errno != 0) return -1;
  return 0;  // EOF (with or without close_notify), or a TLS error: the session is over
}

ssize_t TestPeer::ConnSend(Connection& conn, const char* data, size_t len) {
  if (conn.ssl == nullptr) return send(conn.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  ERR_clear_error();
  errno = 0;
  const int r = SSL_write(conn.ssl, data, static_cast<int>(len));
  if (r > 0) return r;
  const int code = SSL_get_error(conn.ssl, r);
  ERR_clear_error();
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (errno == 0) errno = EPIPE;
  return -1;
}

bool TestPeer::Reading() const { return loop_mode_ != PeerMode::kNeverRead; }

void TestPeer::OnConnectionEvent(uint64_t id, uint32_t events) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;  // closed earlier in this batch.
  Connection& conn = *it->second;
  if (conn.handshaking) {
    if (ContinueHandshake(conn) && !conn.handshaking && Reading()) ReadFrom(conn);
    return;
  }
  if ((events & EPOLLOUT) && !Flush(conn)) return;
  if (Reading()) {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ReadFrom(conn);
    return;
  }
  // kNeverRead: only the end of the connection matters.
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(conn.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == ECONNRESET) {
      ++client_resets_;
    } else {
      ++client_fins_;
    }
    CloseConnection(conn, err != 0 ? CloseHow::kGone : CloseHow::kGraceful);
  }
}

bool TestPeer::ReadFrom(Connection& conn) {
  for (size_t i = 0; i < kReadBurst; ++i) {
    ssize_t n = ConnRecv(conn, read_buf_.data(), read_buf_.size());
    if (n > 0) {
      bool open = loop_mode_ != PeerMode::kEcho ||
                  Reply(conn, std::string_view(read_buf_.data(), static_cast<size_t>(n)));
      bytes_received_ += static_cast<size_t>(n);
      if (!open) return false;
      continue;
    }
    if (n == 0) {
      ++client_fins_;
      if (loop_mode_ == PeerMode::kKeepOpen) {
        // Half open: nothing more to read, and no FIN from us. Stop watching
        // the socket (EOF stays readable forever) but keep it.
        epoll_event ev{};
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev);
        conn.events = 0;
        conn.half_closed = true;
        return false;
      }
      CloseConnection(conn, CloseHow::kGone);
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    if (errno == ECONNRESET) ++client_resets_;
    CloseConnection(conn, CloseHow::kGone);
    return false;
  }
  return true;  // more may be queued: level-triggered epoll reports it again.
}

bool TestPeer::Reply(Connection& conn, std::string_view received) {
  size_t before = conn.out.size();
  if (request_.empty()) {
    if (reply_.empty()) {
      conn.out.append(received);
    } else {
      conn.out += reply_;
    }
  } else {
    conn.unmatched.append(received);
    size_t pos;
    while ((pos = conn.unmatched.find(request_)) != std::string::npos) {
      conn.out += reply_;
      conn.unmatched.erase(0, pos + request_.size());
    }
    // Keep only what could be the start of a request split across chunks.
    if (conn.unmatched.size() >= request_.size()) {
      conn.unmatched.erase(0, conn.unmatched.size() - (request_.size() - 1));
    }
  }
  if (conn.out.size() == before) return true;
  return Flush(conn);
}

bool TestPeer::Flush(Connection& conn) {
  auto failed = [this, &conn] {
    if (errno == ECONNRESET) ++client_resets_;
    CloseConnection(conn, CloseHow::kGone);
    return false;
  };
  while (conn.out_offset < conn.out.size()) {
    ssize_t n = ConnSend(conn, conn.out.data() + conn.out_offset, conn.out.size() - conn.out_offset);
    if (n >= 0) {
      conn.out_offset += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return failed();  // EPIPE, ECONNRESET: the client is gone.
  }
  if (conn.out_offset == conn.out.size()) {
    conn.out.clear();
    conn.out_offset = 0;
  }
  size_t budget = kFloodBurst;
  while (conn.out.empty() && conn.flood_remaining > 0 && budget > 0) {
    size_t chunk = std::min({conn.flood_remaining, flood_chunk_.size(), budget});
    ssize_t n = ConnSend(conn, flood_chunk_.data(), chunk);
    if (n >= 0) {
      size_t sent = static_cast<size_t>(n);
      conn.flood_remaining -= sent;
      budget -= sent;
      flooded_bytes_ += sent;
      flood_pending_ -= sent;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return failed();
  }
  if (conn.close_after_write && conn.out.empty() && conn.flood_remaining == 0) {
    CloseConnection(conn, CloseHow::kGraceful);
    return false;
  }
  UpdateInterest(conn);
  return true;
}

void TestPeer::UpdateInterest(Connection& conn) {
  if (conn.half_closed) return;
  uint32_t want = (Reading() ? kIn : 0u) | kRdHup;
  if (!conn.out.empty() || conn.flood_remaining > 0) want |= EPOLLOUT;
  if (conn.handshaking) want = Reading() ? (conn.tls_wants | kRdHup) : kRdHup;
  if (want == conn.events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = conn.id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev) != 0) Die("epoll_ctl(MOD)");
  conn.events = want;
}

void TestPeer::CloseConnection(Connection& conn, CloseHow how) {
  if (conn.ssl != nullptr) {
    if (how == CloseHow::kGraceful && close_notify_ && !conn.handshaking) {
      ERR_clear_error();
      SSL_shutdown(conn.ssl);  // close_notify, then the FIN below
    }
    ERR_clear_error();
    SSL_free(conn.ssl);
    conn.ssl = nullptr;
  }
  switch (how) {
    case CloseHow::kGraceful:
      shutdown(conn.fd, SHUT_WR);  // FIN first, behind whatever is queued.
      Drain(conn.fd, read_buf_);
      CloseFd(conn.fd);
      break;
    case CloseHow::kReset:
      ResetFd(conn.fd);
      break;
    case CloseHow::kGone:
      CloseFd(conn.fd);
      break;
  }
  flood_pending_ -= conn.flood_remaining;
  --listeners_[conn.listener_index]->open;
  --open_connections_;
  connections_.erase(conn.id);  // `conn` is gone from here on.
  if (accept_paused_) SetAccepting(true);
}

uint16_t TestPeer::port() const { return listeners_.front()->bound_port; }

std::vector<uint16_t> TestPeer::ports() const {
  std::vector<uint16_t> result;
  for (const auto& listener : listeners_) result.push_back(listener->bound_port);
  return result;
}

std::vector<ListenerStats> TestPeer::Listeners() const {
  std::vector<ListenerStats> result;
  RunInLoop([this, &result] {
    for (const auto& listener : listeners_) {
      result.push_back(ListenerStats{listener->address, listener->bound_port, listener->fd >= 0,
                                     listener->open, listener->accepted});
    }
  });
  return result;
}

void TestPeer::SetMode(PeerMode mode) {
  RunInLoop([this, mode] {
    loop_mode_ = mode;
    mode_ = mode;
    for (auto& [id, conn] : connections_) UpdateInterest(*conn);
  });
}

PeerMode TestPeer::mode() const { return mode_; }

void TestPeer::SetReply(std::string reply) { SetHeartbeat("", std::move(reply)); }

void TestPeer::SetHeartbeat(std::string request, std::string reply) {
  RunInLoop([this, &request, &reply] {
    request_ = std::move(request);
    reply_ = std::move(reply);
    for (auto& [id, conn] : connections_) conn->unmatched.clear();
  });
}

size_t TestPeer::accepted_total() const { return accepted_total_; }
size_t TestPeer::open_connections() const { return open_connections_; }
size_t TestPeer::client_fins() const { return client_fins_; }
size_t TestPeer::client_resets() const { return client_resets_; }
size_t TestPeer::accept_errors() const { return accept_errors_; }
size_t TestPeer::bytes_received() const { return bytes_received_; }
bool TestPeer::listening() const { return listening_; }
size_t TestPeer::FloodedBytes() const { return flooded_bytes_; }
size_t TestPeer::FloodPendingBytes() const { return flood_pending_; }
int64_t TestPeer::close_started_ns() const { return close_started_ns_; }
int64_t TestPeer::close_finished_ns() const { return close_finished_ns_; }

bool TestPeer::WaitForOpenConnections(size_t n, std::chrono::milliseconds timeout) {
  return WaitUntil([this, n] { return open_connections_ == n; }, timeout);
}

bool TestPeer::WaitForAcceptedTotal(size_t n, std::chrono::milliseconds timeout) {
  return WaitUntil([this, n] { return accepted_total_ >= n; }, timeout);
}

void TestPeer::CloseAll() {
  RunInLoop([this] {
    close_started_ns_ = RealtimeNs();
    AcceptBacklog();
    while (!connections_.empty()) {
      CloseConnection(*connections_.begin()->second, CloseHow::kGraceful);
    }
    close_finished_ns_ = RealtimeNs();
  });
}

void TestPeer::ResetAll() {
  RunInLoop([this] {
    close_started_ns_ = RealtimeNs();
    AcceptBacklog();
    while (!connections_.empty()) {
      CloseConnection(*connections_.begin()->second, CloseHow::kReset);
    }
    close_finished_ns_ = RealtimeNs();
  });
}

void TestPeer::SendThenCloseAll(std::string data) {
  RunInLoop([this, &data] {
    AcceptBacklog();
    std::vector<uint64_t> ids;
    for (auto& [id, conn] : connections_) ids.push_back(id);
    for (uint64_t id : ids) {
      Connection& conn = *connections_.at(id);
      conn.out += data;
      conn.close_after_write = true;
      Flush(conn);  // closes it when everything is written.
    }
  });
}

void TestPeer::SetCloseNotify(bool send) {
  RunInLoop([this, send] { close_notify_ = send; });
}

void TestPeer::SendTlsAlertAll() {
  RunInLoop([this] {
    // A TLS 1.2-format alert record: fatal (2), internal_error (80).
    static const unsigned char kAlert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50};
    for (auto& [id, conn] : connections_) {
      if (conn->ssl != nullptr && !conn->handshaking) {
        send(conn->fd, kAlert, sizeof kAlert, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
    }
  });
}

size_t TestPeer::tls_handshakes() const { return tls_handshakes_; }
size_t TestPeer::tls_failures() const { return tls_failures_; }

size_t TestPeer::BlackholeAll() {
  size_t n = 0;
  RunInLoop([this, &n] {
    AcceptBacklog();
    static sock_filter drop_all[] = {{BPF_RET | BPF_K, 0, 0, 0}};
    sock_fprog prog{1, drop_all};
    for (auto& [id, conn] : connections_) {
      if (setsockopt(conn->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0) ++n;
      conn->out.clear();
      conn->out_offset = 0;
      conn->flood_remaining = 0;
    }
  });
  return n;
}

void TestPeer::SendAll(std::string data) {
  RunInLoop([this, &data] {
    AcceptBacklog();
    std::vector<uint64_t> ids;
    for (auto& [id, conn] : connections_) ids.push_back(id);
    for (uint64_t id : ids) {
      Connection& conn = *connections_.at(id);
      conn.out += data;
      Flush(conn);
    }
  });
}

void TestPeer::StartFlood(size_t total_bytes) {
  RunInLoop([this, total_bytes] {
    AcceptBacklog();
    std::vector<uint64_t> ids;
    for (auto& [id, conn] : connections_) ids.push_back(id);
    for (uint64_t id : ids) {
      Connection& conn = *connections_.at(id);
      conn.flood_remaining += total_bytes;
      flood_pending_ += total_bytes;
      Flush(conn);
    }
  });
}

void TestPeer::StopListening() {
  RunInLoop([this] {
    for (auto& listener : listeners_) CloseListener(*listener);
    listening_ = false;
  });
}

void TestPeer::PauseAccepting() {
  RunInLoop([this] {
    accept_held_ = true;
    SetAccepting(!accept_paused_);
  });
}

void TestPeer::ResumeAccepting() {
  RunInLoop([this] {
    accept_held_ = false;
    SetAccepting(!accept_paused_);
    AcceptBacklog();
  });
}

std::string TestPeer::Listen() {
  std::string error;
  RunInLoop([this, &error] {
    for (auto& listener : listeners_) {
      std::string one = OpenListener(*listener);
      if (!one.empty()) error += (error.empty() ? "" : "; ") + one;
    }
    started_ = true;
    listening_ = std::all_of(listeners_.begin(), listeners_.end(),
                             [](const auto& listener) { return listener->fd >= 0; });
  });
  return error;
}

}  // namespace connwatch::testing
