// Test support: certificates made at test time with OpenSSL 3 (no private
// key is ever committed). Everything is written into a directory the test
// owns; private keys get mode 0600.
#pragma once

#include <string>
#include <vector>

namespace aico::test {

/// The files of a small test PKI.
struct test_pki {
  std::string dir;
  // The gateway's CA and its server certificate (SAN: DNS localhost,
  // IP 127.0.0.1, IP ::1).
  std::string ca_cert;
  std::string server_cert; ///< leaf + (nothing else: the CA is the root)
  std::string server_key;
  /// "sha256//BASE64" of the server key's SubjectPublicKeyInfo (curl's
  /// CURLOPT_PINNEDPUBLICKEY form).
  std::string server_pin;
  // A self-signed server certificate (nobody's CA) and its key.
  std::string self_signed_cert;
  std::string self_signed_key;
  // The CA of devices and one device certificate (CN=kitchen-tablet,
  // O=aico family).
  std::string device_ca_cert;
  std::string device_cert;
  std::string device_key;
  // A CA nobody trusts, and a device certificate it issued.
  std::string rogue_ca_cert;
  std::string rogue_device_cert;
  std::string rogue_device_key;
  /// A pin that matches no key here.
  std::string wrong_pin;
};

/// Creates the PKI under `dir` (which must exist). Throws
/// std::runtime_error if OpenSSL fails.
test_pki make_test_pki(const std::string& dir);

/// The gateway's arguments to serve TLS with this PKI's server certificate
/// and, with `mutual`, to require client certificates of its device CA.
std::vector<std::string> gateway_tls_args(const test_pki& pki, bool mutual);

/// The OpenSSL hashed-directory file name of a CA certificate ("%08lx.0"
/// of its subject name hash), for a CA directory (c_rehash layout).
std::string subject_hash_name(const std::string& cert_file);

/// "sha256//BASE64" of the SubjectPublicKeyInfo of the (first) certificate
/// in a PEM file.
std::string spki_pin_of(const std::string& cert_file);

} // namespace aico::test
