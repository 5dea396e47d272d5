#include "support/test_pki.hpp"

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace aico::test {

namespace {

[[noreturn]] void fail(const std::string& what) {
  char buf[256] = "unknown";
  if (auto e = ERR_get_error())
    ERR_error_string_n(e, buf, sizeof buf);
  throw std::runtime_error("test PKI: " + what + ": " + buf);
}

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using x509_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

pkey_ptr new_key() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (!k)
    fail("EVP_EC_gen");
  return pkey_ptr(k, EVP_PKEY_free);
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext)
    fail(std::string("extension ") + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/// A certificate for `key`, issued by (issuer, issuer_key) or self-signed.
x509_ptr make_cert(const std::string& cn, const std::string& org,
                   EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
                   bool ca, const char* san, bool server) {
  x509_ptr cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!org.empty())
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(
                                 org.c_str()),
                               -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(
                               cn.c_str()),
                             -1, -1, 0);
  X509* iss = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(iss));
  if (ca) {
    add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), iss, NID_key_usage,
            "critical,digitalSignature,keyAgreement");
    add_ext(cert.get(), iss, NID_ext_key_usage,
            server ? "serverAuth" : "clientAuth");
  }
  add_ext(cert.get(), iss, NID_subject_key_identifier, "hash");
  if (san)
    add_ext(cert.get(), iss, NID_subject_alt_name, san);
  if (!X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()))
    fail("X509_sign " + cn);
  return cert;
}

FILE* open_file(const std::string& path, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    throw std::runtime_error("test PKI: cannot write " + path);
  ::fchmod(fd, mode);
  FILE* f = ::fdopen(fd, "w");
  if (!f) {
    ::close(fd);
    throw std::runtime_error("test PKI: fdopen " + path);
  }
  return f;
}

void write_cert(const std::string& path, X509* cert) {
  FILE* f = open_file(path, 0644);
  bool ok = PEM_write_X509(f, cert) == 1;
  std::fclose(f);
  if (!ok)
    fail("PEM_write_X509 " + path);
}

void write_key(const std::string& path, EVP_PKEY* key) {
  FILE* f = open_file(path, 0600);
  bool ok = PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr,
                                 nullptr)
            == 1;
  std::fclose(f);
  if (!ok)
    fail("PEM_write_PrivateKey " + path);
}

std::string pin_of(X509* cert) {
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pub, &der);
  if (len <= 0)
    fail("i2d_PUBKEY");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<std::size_t>(len), digest);
  OPENSSL_free(der);
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, sizeof digest);
  return "sha256//" + std::string(reinterpret_cast<char*>(b64),
                                  static_cast<std::size_t>(n));
}

} // namespace

std::string subject_hash_name(const std::string& cert_file) {
  FILE* f = std::fopen(cert_file.c_str(), "re");
  if (!f)
    throw std::runtime_error("test PKI: cannot read " + cert_file);
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!cert)
    fail("PEM_read_X509 " + cert_file);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08lx.0", X509_subject_name_hash(cert));
  X509_free(cert);
  return buf;
}

std::string spki_pin_of(const std::string& cert_file) {
  FILE* f = std::fopen(cert_file.c_str(), "re");
  if (!f)
    throw std::runtime_error("test PKI: cannot read " + cert_file);
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!cert)
    fail("PEM_read_X509 " + cert_file);
  auto pin = pin_of(cert);
  X509_free(cert);
  return pin;
}

test_pki make_test_pki(const std::string& dir) {
  test_pki p;
  p.dir = dir;
  auto path = [&](const char* name) { return dir + "/" + name; };

  auto ca_key = new_key();
  auto ca = make_cert("aico test CA", "aico tests", ca_key.get(), nullptr,
                      nullptr, true, nullptr, false);
  auto srv_key = new_key();
  auto srv = make_cert("aico-gateway", "aico tests", srv_key.get(), ca.get(),
                       ca_key.get(), false,
                       "DNS:localhost,IP:127.0.0.1,IP:::1", true);
  auto self_key = new_key();
  auto self = make_cert("aico-gateway", "self signed", self_key.get(),
                        nullptr, nullptr, false,
                        "DNS:localhost,IP:127.0.0.1,IP:::1", true);
  auto dev_ca_key = new_key();
  auto dev_ca = make_cert("aico device CA", "aico family", dev_ca_key.get(),
                          nullptr, nullptr, true, nullptr, false);
  auto dev_key = new_key();
  auto dev = make_cert("kitchen-tablet", "aico family", dev_key.get(),
                       dev_ca.get(), dev_ca_key.get(), false, nullptr, false);
  auto rogue_ca_key = new_key();
  auto rogue_ca = make_cert("rogue CA", "nobody", rogue_ca_key.get(), nullptr,
                            nullptr, true, nullptr, false);
  auto rogue_key = new_key();
  auto rogue = make_cert("intruder", "nobody", rogue_key.get(), rogue_ca.get(),
                         rogue_ca_key.get(), false, nullptr, false);

  p.ca_cert = path("ca.pem");
  write_cert(p.ca_cert, ca.get());
  p.server_cert = path("server.pem");
  write_cert(p.server_cert, srv.get());
  p.server_key = path("server.key");
  write_key(p.server_key, srv_key.get());
  p.server_pin = pin_of(srv.get());
  p.self_signed_cert = path("self.pem");
  write_cert(p.self_signed_cert, self.get());
  p.self_signed_key = path("self.key");
  write_key(p.self_signed_key, self_key.get());
  p.device_ca_cert = path("device-ca.pem");
  write_cert(p.device_ca_cert, dev_ca.get());
  p.device_cert = path("device.pem");
  write_cert(p.device_cert, dev.get());
  p.device_key = path("device.key");
  write_key(p.device_key, dev_key.get());
  p.rogue_ca_cert = path("rogue-ca.pem");
  write_cert(p.rogue_ca_cert, rogue_ca.get());
  p.rogue_device_cert = path("rogue-device.pem");
  write_cert(p.rogue_device_cert, rogue.get());
  p.rogue_device_key = path("rogue-device.key");
  write_key(p.rogue_device_key, rogue_key.get());
  p.wrong_pin = pin_of(self.get());
  return p;
}

std::vector<std::string> gateway_tls_args(const test_pki& pki, bool mutual) {
  std::vector<std::string> args{"--tls-cert", pki.server_cert, "--tls-key",
                                pki.server_key};
  if (mutual)
    args.insert(args.end(), {"--client-ca", pki.device_ca_cert});
  return args;
}

} // namespace aico::test
