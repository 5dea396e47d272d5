// aico engine: TLS settings shared by the HTTP (libcurl) and WebSocket
// (libwebsockets) transport wrappers, and the classification of TLS
// failures. Pure: no TLS library here (docs/security.md).
//
// Verification is always on: the gateway's certificate must chain to a
// trusted CA (the system store, or `ca_file`/`ca_dir` when given -- then only
// those) and name the host of the URL. A pin additionally requires the
// certificate's public key (SHA-256 of its SubjectPublicKeyInfo, curl's
// "sha256//BASE64" form; several separated by ';') to be one of the pinned
// ones. `insecure_skip_verify` exists for development against a gateway
// with a throw-away certificate only: the wrappers report a warning every
// time a connection uses it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>

namespace aico::transport {

struct tls_options {
  /// PEM file of the CA certificate(s) to trust instead of the system store.
  std::string ca_file;
  /// Directory of CA certificates (OpenSSL hashed layout, c_rehash) to
  /// trust instead of the system store.
  std::string ca_dir;
  /// "sha256//BASE64[;sha256//BASE64...]": the gateway's public key must be
  /// one of these (checked in addition to the CA chain).
  std::string pinned_public_key;
  /// PEM client certificate (chain) and its key: mutual TLS.
  std::string client_cert;
  std::string client_key;
  /// DEVELOPMENT ONLY: accept any server certificate (the chain and the host
  /// name are not checked; a pin still is). Warned about on every use.
  bool insecure_skip_verify = false;

  auto tie() const {
    return std::tie(ca_file, ca_dir, pinned_public_key, client_cert,
                    client_key, insecure_skip_verify);
  }
  bool operator==(const tls_options& o) const { return tie() == o.tie(); }
  bool operator!=(const tls_options& o) const { return !(*this == o); }
};

/// What went wrong in a TLS handshake, as far as the client can tell.
enum class tls_failure : uint8_t {
  none = 0,
  /// The gateway's certificate is not trusted (unknown CA, self-signed,
  /// expired, wrong host name).
  untrusted,
  /// The certificate chains fine but its public key is not the pinned one.
  pin_mismatch,
  /// The gateway refused this client's certificate, or required one and got
  /// none (mutual TLS).
  client_certificate,
  /// A local file (CA, client certificate or key) could not be used.
  local_files,
  /// Any other TLS failure (protocol versions, ciphers, a non-TLS peer).
  handshake,
};

inline const char* to_string(tls_failure f) {
  switch (f) {
    case tls_failure::none:
      return "none";
    case tls_failure::untrusted:
      return "untrusted";
    case tls_failure::pin_mismatch:
      return "pin_mismatch";
    case tls_failure::client_certificate:
      return "client_certificate";
    case tls_failure::local_files:
      return "local_files";
    case tls_failure::handshake:
      return "handshake";
  }
  return "handshake";
}

/// A sentence for people.
inline const char* explain(tls_failure f) {
  switch (f) {
    case tls_failure::none:
      return "no TLS failure";
    case tls_failure::untrusted:
      return "the gateway's certificate is not trusted (unknown CA, "
             "self-signed, expired or issued for another host)";
    case tls_failure::pin_mismatch:
      return "the gateway's public key does not match the pinned key";
    case tls_failure::client_certificate:
      return "the gateway refused this client's certificate (or required "
             "one)";
    case tls_failure::local_files:
      return "a local TLS file (CA, client certificate or key) could not be "
             "used";
    case tls_failure::handshake:
      return "the TLS handshake failed";
  }
  return "the TLS handshake failed";
}

/// The warning of insecure_skip_verify.
inline const char* insecure_warning() {
  return "WARNING: TLS certificate verification is OFF "
         "(insecure_skip_verify): anyone on the path can impersonate the "
         "gateway; use this for development only";
}

namespace detail {

inline bool contains_ci(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size())
    return false;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    bool eq = true;
    for (std::size_t j = 0; j < needle.size() && eq; ++j) {
      char a = hay[i + j];
      char b = needle[j];
      if (a >= 'A' && a <= 'Z')
        a = static_cast<char>(a - 'A' + 'a');
      if (b >= 'A' && b <= 'Z')
        b = static_cast<char>(b - 'A' + 'a');
      eq = a == b;
    }
    if (eq)
      return true;
  }
  return false;
}

} // namespace detail

/// Classifies an error text of OpenSSL / libcurl / libwebsockets; `none` if
/// it does not look like a TLS failure.
inline tls_failure classify_tls_error_text(std::string_view text) {
  using detail::contains_ci;
  if (contains_ci(text, "pinned") || contains_ci(text, "pinnedpubkey")
      || contains_ci(text, "public key does not match"))
    return tls_failure::pin_mismatch;
  if (contains_ci(text, "alert certificate required")
      || contains_ci(text, "alert bad certificate")
      || contains_ci(text, "alert unknown ca")
      || contains_ci(text, "alert certificate unknown")
      || contains_ci(text, "alert access denied")
      || contains_ci(text, "peer did not return a certificate"))
    return tls_failure::client_certificate;
  if (contains_ci(text, "certificate verify failed")
      || contains_ci(text, "self-signed certificate")
      || contains_ci(text, "self signed certificate")
      || contains_ci(text, "unable to get local issuer")
      || contains_ci(text, "certificate has expired")
      || contains_ci(text, "hostname mismatch")
      || contains_ci(text, "ip address mismatch")
      || contains_ci(text, "no alternative certificate subject name")
      || contains_ci(text, "server certificate")
      || contains_ci(text, "cert didn't look good")
      || contains_ci(text, "unable to verify the first certificate"))
    return tls_failure::untrusted;
  if (contains_ci(text, "unable to set private key")
      || contains_ci(text, "could not load pem client certificate")
      || contains_ci(text, "unable to use client certificate")
      || contains_ci(text, "error setting certificate")
      || contains_ci(text, "error reading ca cert")
      || contains_ci(text, "cafile:") || contains_ci(text, "capath:"))
    return tls_failure::local_files;
  if (contains_ci(text, "ssl") || contains_ci(text, "tls"))
    return tls_failure::handshake;
  return tls_failure::none;
}

/// Whether `pins` has the form "sha256//BASE64[;sha256//BASE64...]" (a
/// 32-byte digest each: 44 base64 characters with one '=').
inline bool valid_pin_list(std::string_view pins) {
  if (pins.empty())
    return false;
  while (!pins.empty()) {
    auto semi = pins.find(';');
    auto one = pins.substr(0, semi);
    pins = semi == std::string_view::npos ? std::string_view{}
                                          : pins.substr(semi + 1);
    constexpr std::string_view prefix = "sha256//";
    if (one.substr(0, prefix.size()) != prefix)
      return false;
    one.remove_prefix(prefix.size());
    if (one.size() != 44 || one[43] != '=')
      return false;
    for (std::size_t i = 0; i < 43; ++i) {
      char c = one[i];
      bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                || (c >= '0' && c <= '9') || c == '+' || c == '/';
      if (!ok)
        return false;
    }
  }
  return true;
}

} // namespace aico::transport
