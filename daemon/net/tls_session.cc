#include "net/tls_session.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "core/liveness.h"

namespace connwatch {

namespace {

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// OpenSSL's text for the queued error, the queue cleared.
std::string TakeOpenSslError() {
  const unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    const char* reason = ERR_reason_error_string(code);
    text = reason != nullptr ? reason : "";
    if (text.empty()) {
      char buf[256];
      ERR_error_string_n(code, buf, sizeof buf);
      text = buf;
    }
  }
  ERR_clear_error();
  return text;
}

std::string NameText(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data != nullptr ? data : "", static_cast<size_t>(len > 0 ? len : 0));
  BIO_free(bio);
  return out;
}

double NotAfterUnix(const X509* cert) {
  const ASN1_TIME* t = X509_get0_notAfter(cert);
  struct tm tm;
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<double>(timegm(&tm));
}

}  // namespace

TlsSession::TlsSession(ssl_ctx_st* ctx, int fd, const TlsConfig& tls) : ssl_(SSL_new(ctx)) {
  if (ssl_ == nullptr) return;
  SSL_set_fd(ssl_, fd);
  SSL_set_connect_state(ssl_);
  SSL_set_msg_callback(ssl_, &TlsSession::OnMessage);
  SSL_set_msg_callback_arg(ssl_, this);
  if (IsIpLiteral(tls.server_name)) {
    // RFC 6066: no SNI for an address; the certificate must name the IP.
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), tls.server_name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, tls.server_name.c_str());
    SSL_set1_host(ssl_, tls.server_name.c_str());
  }
}

TlsSession::~TlsSession() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

TlsSession::Status TlsSession::Fail(int ssl_result, bool handshaking) {
  const int code = SSL_get_error(ssl_, ssl_result);
  switch (code) {
    case SSL_ERROR_WANT_READ:
      return Status::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Status::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      // NOTE: close_notify: the peer ended the session on purpose; its FIN
      // follows. A peer's FIN without it is peer_closed too (close_notify=no).
      ERR_clear_error();
      failure_ = {Reason::kPeerClosed, 0, "close_notify", true};
      return Status::kClosed;
    default:
      break;
  }
  const int err = errno;
  const unsigned long queued = ERR_peek_last_error();
  if (code == SSL_ERROR_SSL && ERR_GET_REASON(queued) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    // NOTE: OpenSSL 3 reports a FIN without close_notify this way.
    ERR_clear_error();
    if (handshaking) {
      failure_ = {Reason::kTlsHandshake, 0, "the peer closed the connection during the handshake",
                  false};
      return Status::kFailed;
    }
    failure_ = {Reason::kPeerClosed, 0, "FIN without close_notify", false};
    return Status::kClosed;
  }
  if (code == SSL_ERROR_SYSCALL) {
    // The socket said it (errno is valid: the call returned <= 0 and
    // OpenSSL queued nothing of its own), or EOF at a place OpenSSL does not
    // name (older versions).
    ERR_clear_error();
    if (err == 0 || err == EAGAIN) {
      if (handshaking) {
        failure_ = {Reason::kTlsHandshake, 0,
                    "the peer closed the connection during the handshake", false};
        return Status::kFailed;
      }
      failure_ = {Reason::kPeerClosed, 0, "FIN without close_notify", false};
      return Status::kClosed;
    }
    TcpSample none;
    failure_.reason = handshaking ? Reason::kTlsHandshake : ClassifyDisconnectError(err, none, none);
    failure_.err = err;
    failure_.detail = handshaking ? std::string("socket error during the handshake: ") +
                                        std::strerror(err)
                                  : "";
    return Status::kFailed;
  }
  // SSL_ERROR_SSL: a protocol error, or an alert from the peer.
  if (handshaking) {
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      ERR_clear_error();
      failure_ = {Reason::kTlsVerify, 0, X509_verify_cert_error_string(verify), false};
      return Status::kFailed;
    }
    failure_ = {Reason::kTlsHandshake, 0, TakeOpenSslError(), false};
    return Status::kFailed;
  }
  failure_ = {Reason::kTlsAlert, 0, TakeOpenSslError(), false};
  return Status::kFailed;
}

TlsSession::Status TlsSession::Handshake() {
  if (ssl_ == nullptr) {
    failure_ = {Reason::kLocalError, ENOMEM, "SSL_new failed", false};
    return Status::kFailed;
  }
  ERR_clear_error();
  errno = 0;
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    CapturePeer();
    return Status::kDone;
  }
  return Fail(r, true);
}

TlsSession::Status TlsSession::Read(char* buf, size_t cap, size_t* n) {
  ERR_clear_error();
  errno = 0;
  const int r = SSL_read(ssl_, buf, static_cast<int>(cap));
  if (r > 0) {
    *n = static_cast<size_t>(r);
    return Status::kDone;
  }
  *n = 0;
  return Fail(r, false);
}

TlsSession::Status TlsSession::Write(const char* data, size_t len, size_t* written) {
  ERR_clear_error();
  errno = 0;
  const int r = SSL_write(ssl_, data, static_cast<int>(len));
  if (r > 0) {
    *written = static_cast<size_t>(r);
    return Status::kDone;
  }
  *written = 0;
  return Fail(r, false);
}

bool TlsSession::HasBuffered() const { return ssl_ != nullptr && SSL_pending(ssl_) > 0; }

void TlsSession::OnMessage(int write_p, int /*version*/, int content_type, const void* buf,
                           size_t len, SSL* /*ssl*/, void* arg) {
  // A received handshake message of type certificate_request (13).
  constexpr int kHandshake = 22;
  constexpr unsigned char kCertificateRequest = 13;
  if (write_p == 0 && content_type == kHandshake && len > 0 &&
      static_cast<const unsigned char*>(buf)[0] == kCertificateRequest) {
    static_cast<TlsSession*>(arg)->client_auth_requested_ = true;
  }
}

bool TlsSession::VerdictPending() const {
  return ssl_ != nullptr && client_auth_requested_ && SSL_version(ssl_) == TLS1_3_VERSION;
}

void TlsSession::ReleaseBuffers() {
  if (ssl_ != nullptr && SSL_pending(ssl_) == 0) SSL_free_buffers(ssl_);
}

void TlsSession::Shutdown() {
  if (ssl_ == nullptr) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sends close_notify; the answer is not awaited
  ERR_clear_error();
}

void TlsSession::CapturePeer() {
  peer_ = TlsPeerInfo();
  peer_.valid = true;
  peer_.version = SSL_get_version(ssl_);
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  peer_.cipher = cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
  X509* leaf = SSL_get1_peer_certificate(ssl_);
  if (leaf != nullptr) {
    peer_.subject = NameText(X509_get_subject_name(leaf));
    peer_.issuer = NameText(X509_get_issuer_name(leaf));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(leaf, EVP_sha256(), md, &md_len) == 1) {
      static const char kHex[] = "0123456789abcdef";
      for (unsigned int i = 0; i < md_len; ++i) {
        peer_.fingerprint.push_back(kHex[md[i] >> 4]);
        peer_.fingerprint.push_back(kHex[md[i] & 15]);
      }
    }
    peer_.earliest_expiry_unix = NotAfterUnix(leaf);
    X509_free(leaf);
  }
  // NOTE: on a client the chain includes the leaf (SSL_get_peer_cert_chain).
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    const double t = NotAfterUnix(sk_X509_value(chain, i));
    if (t > 0 && (peer_.earliest_expiry_unix == 0 || t < peer_.earliest_expiry_unix)) {
      peer_.earliest_expiry_unix = t;
    }
  }
}

}  // namespace connwatch
