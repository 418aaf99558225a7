#include "config/tls_client_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace connwatch {

namespace {

// The last OpenSSL error queued, in words, and the queue cleared.
std::string OpenSslError() {
  unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    text = buf;
  }
  ERR_clear_error();
  return text.empty() ? "unknown OpenSSL error" : text;
}

bool Readable(const std::string& path, std::string* why) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *why = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = "cannot read " + path + ": not a regular file";
    return false;
  }
  // NOTE: files of /proc show size 0 and some block on read (/proc/kmsg):
  // OpenSSL would read them on the loader thread. An empty file holds no
  // certificate anyway; a huge one is not a certificate file.
  constexpr off_t kMaxBytes = 64 * 1024 * 1024;
  if (st.st_size == 0 || st.st_size > kMaxBytes) {
    *why = "cannot use " + path + ": " +
           (st.st_size == 0 ? std::string("the file is empty") : std::string("larger than 64 MiB"));
    return false;
  }
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) {
    *why = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::fclose(f);
  return true;
}

int OpenSslVersion(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls10:
      return TLS1_VERSION;
    case TlsVersion::kTls11:
      return TLS1_1_VERSION;
    case TlsVersion::kTls12:
      return TLS1_2_VERSION;
    case TlsVersion::kTls13:
      return TLS1_3_VERSION;
  }
  return TLS1_2_VERSION;
}

std::string Stamp(const std::string& path) {
  if (path.empty()) return "-";
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return "?";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

std::string TlsFilesStamp(const TlsConfig& tls) {
  return Stamp(tls.ca_file) + "," + Stamp(tls.cert_file) + "," + Stamp(tls.key_file);
}

std::string TlsContextKey(const TlsConfig& tls) {
  return tls.ca_file + '\n' + tls.cert_file + '\n' + tls.key_file + '\n' +
         (tls.insecure_skip_verify ? "insecure" : "verify") + '\n' +
         std::string(TlsVersionName(tls.min_version)) + '\n' + tls.files_stamp;
}

std::shared_ptr<ssl_ctx_st> BuildTlsClientContext(const TlsConfig& tls, TlsContextError* error) {
  ERR_clear_error();
  std::shared_ptr<ssl_ctx_st> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) {
    *error = {"", "cannot make an OpenSSL context: " + OpenSslError()};
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), OpenSslVersion(tls.min_version));
  // NOTE: SSL_MODE_RELEASE_BUFFERS frees a session's 16 KiB read and write
  // buffers whenever they are empty: an idle held session then keeps only
  // its state (docs/PERFORMANCE.md measures it). Partial writes let a
  // heartbeat request that does not fit go out like it does over TCP.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // No session resumption: a held session is made once and kept, and the
  // tickets a server would send (two of 460 bytes each from OpenSSL) would
  // only sit in every held session's memory.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  std::string why;
  if (!tls.ca_file.empty()) {
    if (!Readable(tls.ca_file, &why)) {
      *error = {"ca_file", why};
      return nullptr;
    }
    if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
      *error = {"ca_file", "no usable certificate in " + tls.ca_file + " (" + OpenSslError() + ")"};
      return nullptr;
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    *error = {"ca_file", "cannot load the system trust store: " + OpenSslError()};
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), tls.insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                     nullptr);
  if (!tls.cert_file.empty()) {
    if (!Readable(tls.cert_file, &why)) {
      *error = {"cert_file", why};
      return nullptr;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
      *error = {"cert_file", "no usable certificate in " + tls.cert_file + " (" + OpenSslError() + ")"};
      return nullptr;
    }
    if (!Readable(tls.key_file, &why)) {
      *error = {"key_file", why};
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      // NOTE: OpenSSL 3 checks the key against the certificate already here
      // ("key values mismatch"); other failures mean the file holds no key.
      const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
      const std::string detail = OpenSslError();
      *error = {"key_file", mismatch ? tls.key_file + " is not the key of the certificate in " +
                                           tls.cert_file + " (" + detail + ")"
                                     : "no usable private key in " + tls.key_file + " (" + detail +
                                           ")"};
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      *error = {"key_file", tls.key_file + " is not the key of the certificate in " +
                                tls.cert_file + " (" + OpenSslError() + ")"};
      return nullptr;
    }
  }
  return ctx;
}

}  // namespace connwatch
