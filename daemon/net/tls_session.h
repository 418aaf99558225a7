#pragma once
// A TLS session on a target's connected socket (OpenSSL, non-blocking): the
// handshake driven by the target's one ev_io, reads and writes of the held
// connection, and what each OpenSSL answer means in connwatch's reasons.
// Owned by a Target; loop thread only.
//
// NOTE: OpenSSL turns a socket error into SSL_ERROR_SYSCALL and the session
// is unusable afterwards. The target reads a pending ICMP error (report_icmp)
// with SO_ERROR before calling in here, so a soft error never reaches OpenSSL.

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

#include "core/config.h"
#include "core/tls_peer.h"
#include "core/reason.h"

namespace connwatch {

class TlsSession {
 public:
  // `ctx` from the target's TlsConfig; `tls.server_name` is sent as SNI
  // (unless it is an IP address) and verified against the certificate.
  TlsSession(ssl_ctx_st* ctx, int fd, const TlsConfig& tls);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // The outcome of one step: done, wait for the socket, or over (`failure`).
  enum class Status : uint8_t { kDone, kWantRead, kWantWrite, kFailed, kClosed };
  struct Failure {
    Reason reason = Reason::kError;
    int err = 0;            // errno when the socket said it, else 0
    std::string detail;     // OpenSSL's words ("certificate has expired", "tlsv1 alert ...")
    bool close_notify = false;  // kClosed: the peer sent close_notify before its FIN
  };

  // SSL_do_handshake. kFailed: failure() says tls_verify (the certificate),
  // tls_handshake (anything else), with OpenSSL's text.
  Status Handshake();
  // SSL_read into buf. kDone with *n > 0 bytes; kClosed when the peer ended
  // the session (close_notify, or EOF without it: both peer_closed);
  // kFailed: a fatal alert or protocol error (tls_alert) or a socket error.
  Status Read(char* buf, size_t cap, size_t* n);
  // SSL_write of up to len bytes; *written is how many went. kWantWrite:
  // call again with the same bytes when the socket is writable.
  Status Write(const char* data, size_t len, size_t* written);
  // Bytes OpenSSL decrypted and holds (no socket event will announce them).
  bool HasBuffered() const;
  // NOTE: in TLS 1.3 the client's handshake ends before the server has
  // judged the client's certificate: a server that rejects it says so with
  // an alert in its next flight. True when the handshake was TLS 1.3 and the
  // server asked for a certificate: the verdict is still to come.
  bool VerdictPending() const;
  // Frees the session's read and write buffers if nothing is in them.
  // NOTE: SSL_MODE_RELEASE_BUFFERS frees the read buffer after application
  // data only; a session that reads nothing but handshake records (TLS 1.3
  // session tickets) kept its 16.6 KiB read buffer for good (heaptrack, 1,000
  // held sessions: 16.6 MB of read buffers allocated in SSL_read). Called
  // whenever a read or write leaves the session idle.
  void ReleaseBuffers();
  // Our own close: send close_notify once, without waiting for the peer's.
  void Shutdown();

  const Failure& failure() const { return failure_; }
  const TlsPeerInfo& peer() const { return peer_; }

 private:
  Status Fail(int ssl_result, bool handshaking);
  void CapturePeer();

  static void OnMessage(int write_p, int version, int content_type, const void* buf, size_t len,
                        SSL* ssl, void* arg);

  SSL* ssl_;
  bool client_auth_requested_ = false;  // the server sent a CertificateRequest
  Failure failure_;
  TlsPeerInfo peer_;
};

}  // namespace connwatch
