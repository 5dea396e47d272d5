#include "gateway/tls_server.hpp"

#include <stdexcept>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gateway/secure_files.hpp"

namespace aico::gateway {

namespace {

/// OpenSSL's reasons queued on this thread, joined ("" if none).
std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty())
      out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + openssl_errors());
}

} // namespace

std::shared_ptr<boost::asio::ssl::context>
make_tls_server_context(const tls_server_options& opts) {
  namespace ssl = boost::asio::ssl;
  if (opts.cert_file.empty() || opts.key_file.empty())
    throw std::runtime_error("TLS needs both --tls-cert and --tls-key");
  // The key is a secret: refuse it unless only we can read it.
  require_private_file(opts.key_file, "the TLS private key");
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION
                                | SSL_OP_NO_RENEGOTIATION
                                | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(native, opts.cert_file.c_str()) != 1)
    fail("cannot load the TLS certificate " + opts.cert_file);
  if (SSL_CTX_use_PrivateKey_file(native, opts.key_file.c_str(),
                                  SSL_FILETYPE_PEM)
      != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
      fail("the TLS private key " + opts.key_file
           + " does not belong to the certificate " + opts.cert_file);
    fail("cannot load the TLS private key " + opts.key_file);
  }
  if (SSL_CTX_check_private_key(native) != 1)
    fail("the TLS private key " + opts.key_file
         + " does not belong to the certificate " + opts.cert_file);
  if (!opts.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(native, opts.client_ca_file.c_str(),
                                      nullptr)
        != 1)
      fail("cannot load the client CA file " + opts.client_ca_file);
    // Tell clients which CAs we accept (the CertificateRequest).
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(
      opts.client_ca_file.c_str());
    if (!names)
      fail("no CA certificate in " + opts.client_ca_file);
    SSL_CTX_set_client_CA_list(native, names);
    SSL_CTX_set_verify(native,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
    SSL_CTX_set_verify_depth(native, 8);
  } else {
    SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
  }
  // No session tickets/cache across connections: every connection proves
  // its client certificate again (simple, and cheap at our scale).
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(native, 0);
  ERR_clear_error();
  return ctx;
}

std::string peer_certificate_subject(void* ssl) {
  if (!ssl)
    return {};
  X509* cert = SSL_get1_peer_certificate(static_cast<SSL*>(ssl));
  if (!cert)
    return {};
  std::string out;
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB)
        >= 0) {
      char* data = nullptr;
      long n = BIO_get_mem_data(bio, &data);
      if (n > 0 && data)
        out.assign(data, static_cast<std::size_t>(n));
    }
    BIO_free(bio);
  }
  X509_free(cert);
  // Printable and bounded (it goes into log lines).
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = '?';
  if (out.size() > 256)
    out.resize(256);
  return out;
}

} // namespace aico::gateway
