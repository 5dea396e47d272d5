// aico-backend-peer: cryptographic helpers. libsodium does Ed25519, X25519,
// crypto_box (XSalsa20-Poly1305), Argon2id and base64; OpenSSL does
// HMAC-SHA256 and SHA-256. Nothing here is hand-written cryptography.
// This file (crypto.cpp) is the only place of the peer that includes
// sodium.h or OpenSSL headers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace aico::peer {

/// Initialises libsodium (idempotent). Throws std::runtime_error on failure.
void crypto_init();

/// Standard base64 with padding (Python's base64.b64encode).
std::string b64_encode(std::string_view bytes);
/// Standard base64 with padding; whitespace is ignored, anything else that
/// is not base64 (or a wrong padding) fails.
std::optional<std::string> b64_decode(std::string_view text);
/// base64url without padding (JWT segments).
std::string b64url_encode(std::string_view bytes);
std::optional<std::string> b64url_decode(std::string_view text);

/// Lower-case hex.
std::string hex(std::string_view bytes);

std::string random_bytes(std::size_t n);
/// A random (version 4) UUID, lower case with dashes.
std::string uuid4();

struct sign_keypair {
  std::string pk; ///< 32 bytes
  std::string sk; ///< 64 bytes (libsodium's seed || pk form)
};
/// The Ed25519 key pair of a 32-byte seed.
sign_keypair ed25519_from_seed(std::string_view seed);
/// Detached Ed25519 signature (64 bytes).
std::string ed25519_sign(std::string_view message, const std::string& sk);
bool ed25519_verify(std::string_view message, std::string_view signature,
                    std::string_view pk);

struct box_keypair {
  std::string pk; ///< 32 bytes
  std::string sk; ///< 32 bytes
};
box_keypair x25519_generate();

/// A crypto_box between one local secret key and one peer public key,
/// precomputed (crypto_box_beforenm). Wire form of a box:
/// nonce(24) || ciphertext+MAC, as PyNaCl's Box.encrypt produces.
class nacl_box {
public:
  /// nullopt if a key has the wrong size or the shared key is degenerate.
  static std::optional<nacl_box> make(std::string_view peer_pk,
                                      std::string_view own_sk);
  std::string seal(std::string_view plain) const;
  /// nullopt if too short or the MAC does not verify.
  std::optional<std::string> open(std::string_view nonce_and_box) const;

private:
  std::string key_; ///< the precomputed shared key
};

/// Raw 32-byte HMAC-SHA256 (OpenSSL).
std::string hmac_sha256(std::string_view key, std::string_view data);
/// SHA-256 as lower-case hex (OpenSSL).
std::string sha256_hex(std::string_view data);

/// Argon2id PIN hash (libsodium crypto_pwhash_str, minimal cost: a test peer).
std::string pin_hash(std::string_view pin);
bool pin_verify(std::string_view pin, const std::string& stored);

/// Constant-time equality of two byte strings of the same length.
bool bytes_equal(std::string_view a, std::string_view b);

} // namespace aico::peer
