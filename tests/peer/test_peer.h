#pragma once
// TestPeer: a scriptable TCP server for connwatch's integration tests, its
// system tests (through the connwatch-peer binary) and the newcomer demo. It
// listens on one or more numeric addresses and, on command, holds, echoes,
// ignores, closes (FIN), resets (RST), refuses (stops listening), floods or
// recovers the connections it accepted, so every way a connection can die
// (docs tcp-liveness.md) can be produced on loopback without root.
//
// Ownership and threads: a TestPeer owns one thread that runs an epoll loop;
// only that thread touches sockets. Every public method is thread-safe. The
// methods that act (Start, SetMode, CloseAll, ...) hand a command to the loop
// and return only after the loop has applied it, so a test acts and then
// checks without sleeping; the getters read atomics and never block.
//
// Limits: the peer raises no resource limit. The caller sets RLIMIT_NOFILE
// (one fd per accepted connection, plus one per listener and two of its own).
// When accept() fails with EMFILE/ENFILE the peer stops accepting (the kernel
// keeps completing handshakes into the backlog) until a connection closes, and
// counts the failure in accept_errors().

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace connwatch::testing {

// One address to listen on.
struct ListenAddress {
  std::string address;  // numeric IPv4 or IPv6, brackets optional: "127.0.0.1", "::1", "[::1]".
  uint16_t port = 0;    // 0: the kernel picks; ports() tells which.
};

struct PeerOptions {
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;
  int backlog = 4096;  // the kernel caps it at net.core.somaxconn.
  // More addresses served by the same thread and commands (connwatch-peer
  // --listen-range uses this: one thread for a thousand ports). port() is
  // always the first one (bind_address:port).
  std::vector<ListenAddress> extra_listeners;
  // TLS: with a certificate (chain, PEM) and its key every connection is a
  // TLS server session (OpenSSL, TLS 1.2 and up); the modes then act on the
  // session's data. With a client CA the peer requires a client certificate
  // that CA signed. In kNeverRead the handshake never starts (the client's
  // ClientHello is never answered).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

// What the peer does with the connections it accepts. A mode change applies
// at once to the connections already open (except the two *OnAccept modes,
// which only act on new accepts; open connections are then held as in kHold).
enum class PeerMode : uint8_t {
  kHold,           // accept, drain and discard what the client sends, never write.
  kEcho,           // heartbeat responder: see SetReply / SetHeartbeat.
  kSilent,         // accept, read and discard, never reply (a heartbeat timeout).
  kNeverRead,      // accept and never read: the client's sends pile up unacked.
  kKeepOpen,       // as kHold, but a client's FIN is not answered: the connection
                   // stays half open (the client sits in FIN_WAIT2).
  kCloseOnAccept,  // accept, then close at once (FIN).
  kResetOnAccept,  // accept, then close with SO_LINGER {1,0} (RST).
};

// "hold", "echo", "silent", "never-read", "keep-open", "close", "reset" (the CLI words).
std::string_view PeerModeName(PeerMode mode);
bool ParsePeerMode(std::string_view word, PeerMode* mode);

// One listener, as seen by Listeners().
struct ListenerStats {
  std::string address;  // as given, without brackets.
  uint16_t port = 0;    // bound port (0 before the first successful bind).
  bool listening = false;
  size_t open = 0;      // open connections accepted on this listener.
  size_t accepted = 0;  // connections ever accepted on this listener.
};

class TestPeer {
 public:
  // Creates the loop thread. Does not bind: call Start().
  explicit TestPeer(PeerOptions opts = {});
  // Stops the thread and closes every socket (plain close).
  ~TestPeer();
  TestPeer(const TestPeer&) = delete;
  TestPeer& operator=(const TestPeer&) = delete;

  // Binds and listens on every configured address (SO_REUSEADDR, IPV6_V6ONLY
  // for IPv6). Returns "" or "bind 127.0.0.1:7001: Address already in use".
  // On error nothing stays bound. Call once.
  std::string Start();
  uint16_t port() const;                // the first listener's bound port.
  std::vector<uint16_t> ports() const;  // every listener's bound port, in order.
  std::vector<ListenerStats> Listeners() const;

  void SetMode(PeerMode mode);
  PeerMode mode() const;
  // kEcho replies. With neither set, kEcho echoes back what it receives.
  // SetReply: reply with `reply` once per chunk received (one recv() result).
  void SetReply(std::string reply);
  // SetHeartbeat: reply with `reply` once per occurrence of `request` in the
  // received byte stream (matched across chunk boundaries); other bytes are
  // discarded. An empty `request` is SetReply(reply).
  void SetHeartbeat(std::string request, std::string reply);

  size_t accepted_total() const;    // connections ever accepted (all modes).
  size_t open_connections() const;  // accepted connections currently open.
  size_t client_fins() const;       // connections the client closed (we read EOF).
  size_t client_resets() const;     // connections the client reset (ECONNRESET).
  size_t accept_errors() const;     // accept() failures other than EAGAIN/ECONNABORTED.
  size_t bytes_received() const;    // bytes read from clients (all modes, replies sent first).
  size_t tls_handshakes() const;    // TLS handshakes completed
  size_t tls_failures() const;      // TLS handshakes that failed (no client certificate...)
  bool listening() const;           // every listener is bound and listening.

  // Block until open_connections() == n / accepted_total() >= n, or until
  // `timeout` passes. True when reached.
  bool WaitForOpenConnections(size_t n, std::chrono::milliseconds timeout);
  bool WaitForAcceptedTotal(size_t n, std::chrono::milliseconds timeout);
  // Block until `reached()` is true, or until `timeout` passes. `reached` is
  // checked now and after every loop turn (and command), so it should depend
  // on the getters above, e.g. [&] { return peer.FloodedBytes() == total; }.
  // It runs on the caller's thread without any TestPeer lock held.
  bool WaitUntil(const std::function<bool()>& reached, std::chrono::milliseconds timeout);

  // The four below first accept every connection the kernel has already
  // completed (the backlog), so "connect, then CloseAll" needs no wait.
  //
  // FIN every open connection: shutdown(SHUT_WR), drain what the client sent,
  // close. NOTE: close() with unread received data sends RST instead of FIN
  // (tcp_close in net/ipv4/tcp.c), hence the drain; data the client sends
  // after our close is answered with RST by the kernel, as for any server.
  void CloseAll();
  // TLS: whether CloseAll sends close_notify before the FIN (the default) or
  // just the FIN, as a peer that exits without ending its sessions does.
  void SetCloseNotify(bool send);
  // TLS: a fatal alert (internal_error) on every open session after its
  // handshake, written as a plain record into the stream: the client takes
  // it as the fatal error it is and ends the session. The connections stay
  // open on this side.
  void SendTlsAlertAll();
  // RST every open connection: SO_LINGER {1,0}, then close.
  void ResetAll();
  // Queue `data` on every open connection, then FIN after the last byte: on
  // the client the FIN hides behind unread data (recv MSG_PEEK returns data,
  // tcpi_state is CLOSE_WAIT). Returns when queued; a connection whose data
  // did not fit in the socket buffer is closed once it is written.
  void SendThenCloseAll(std::string data);
  // Every open connection goes silent, like a peer that lost power or a
  // firewall that drops: a socket filter makes our kernel drop every segment
  // the client sends (no ACK, no RST), and nothing is written any more. The
  // client's keepalive or TCP_USER_TIMEOUT then ends the connection. Returns
  // the number of connections made silent.
  size_t BlackholeAll();
  void SendAll(std::string data);
  // Write `total_bytes` more to every open connection, as fast as each client
  // reads (non-blocking, at most 1 MiB per connection per loop turn so the
  // loop stays responsive). FloodedBytes() counts bytes written so far, over
  // all connections and floods.
  void StartFlood(size_t total_bytes);
  size_t FloodedBytes() const;
  size_t FloodPendingBytes() const;  // bytes still to write, all connections.

  // Close every listening socket: new connects are refused (ECONNREFUSED);
  // connections already accepted stay open; handshakes completed but not yet
  // accepted are reset by the kernel. The port is freed: with port 0 in the
  // options another process may take it meanwhile, and Listen() then fails
  // with EADDRINUSE.
  void StopListening();
  // Listen again on the same ports (SO_REUSEADDR lets the bind succeed while
  // accepted connections from that port still exist). "" or an error.
  std::string Listen();

  // Stop calling accept() while still listening: the kernel completes
  // handshakes into the backlog until it is full (backlog + 1 connections),
  // then drops new SYNs, as a server that hangs does. ResumeAccepting
  // accepts what waits and carries on.
  void PauseAccepting();
  void ResumeAccepting();

  // CLOCK_REALTIME, in ns since the epoch, at which the last CloseAll /
  // ResetAll began and ended (0 before the first one). For latency measures:
  // a client's detection time minus close_started_ns().
  int64_t close_started_ns() const;
  int64_t close_finished_ns() const;

 private:
  struct Listener;
  struct Connection;
  struct Command {
    std::function<void()> fn;
    std::promise<void>* done;
  };
  enum class CloseHow : uint8_t { kGraceful, kReset, kGone };
  // TLS I/O of a connection (plain send/recv without a session); the same
  // results as recv()/send(), with errno set on -1.
  ssize_t ConnRecv(Connection& conn, char* buf, size_t len);
  ssize_t ConnSend(Connection& conn, const char* data, size_t len);
  // false when the connection was closed (handshake failed).
  bool ContinueHandshake(Connection& conn);

  // Runs `fn` on the loop thread and returns once it has run.
  void RunInLoop(std::function<void()> fn) const;
  void Loop();
  void RunCommands();
  void NotifyWaiters();

  std::string OpenListener(Listener& listener);
  void CloseListener(Listener& listener);
  void SetAccepting(bool accepting);
  // Accepts up to `limit` connections; false when accepting is paused.
  void AcceptFrom(size_t index, size_t limit);
  void AcceptBacklog();
  void AddConnection(int fd, size_t listener_index);
  void OnConnectionEvent(uint64_t id, uint32_t events);
  // These return false when they closed the connection (it is then gone).
  bool ReadFrom(Connection& conn);
  bool Reply(Connection& conn, std::string_view received);
  bool Flush(Connection& conn);
  void UpdateInterest(Connection& conn);
  void CloseConnection(Connection& conn, CloseHow how);
  bool Reading() const;

  const PeerOptions opts_;
  void* tls_ctx_ = nullptr;  // SSL_CTX* when TLS is configured
  std::vector<std::unique_ptr<Listener>> listeners_;  // fixed size after construction.
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: commands are waiting.

  mutable std::mutex commands_mu_;
  mutable std::vector<Command> commands_;

  // Loop-thread state.
  bool started_ = false;
  bool stopping_ = false;
  bool accept_paused_ = false;  // out of descriptors: until a connection closes
  bool accept_held_ = false;    // PauseAccepting: until ResumeAccepting
  PeerMode loop_mode_ = PeerMode::kHold;
  std::string request_;
  std::string reply_;
  uint64_t next_connection_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<char> read_buf_;
  std::string flood_chunk_;

  // Published by the loop, read by any thread.
  std::atomic<PeerMode> mode_{PeerMode::kHold};
  std::atomic<size_t> accepted_total_{0};
  std::atomic<size_t> open_connections_{0};
  std::atomic<size_t> client_fins_{0};
  std::atomic<size_t> client_resets_{0};
  std::atomic<size_t> accept_errors_{0};
  std::atomic<size_t> bytes_received_{0};
  std::atomic<size_t> tls_handshakes_{0};
  std::atomic<size_t> tls_failures_{0};
  bool close_notify_ = true;
  std::atomic<size_t> flooded_bytes_{0};
  std::atomic<size_t> flood_pending_{0};
  std::atomic<bool> listening_{false};
  std::atomic<int64_t> close_started_ns_{0};
  std::atomic<int64_t> close_finished_ns_{0};

  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  uint64_t loop_turns_ = 0;  // guarded by wait_mu_; bumped by NotifyWaiters.

  std::thread thread_;  // runs Loop(); started at the end of the constructor.
};

}  // namespace connwatch::testing
