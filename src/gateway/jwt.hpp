// aico reference gateway: crypto helpers (OpenSSL) and HS256 JWTs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aico::gateway {

/// Unpadded base64url (RFC 4648 section 5).
std::string base64url_encode(std::string_view bytes);

/// Strict decoding: no padding, no foreign characters; nullopt on error.
std::optional<std::string> base64url_decode(std::string_view text);

/// Raw 32-byte SHA-256 digest / its lower-case hex form.
std::string sha256(std::string_view data);
std::string sha256_hex(std::string_view data);

/// Raw 32-byte HMAC-SHA256.
std::string hmac_sha256(std::string_view key, std::string_view data);

/// Cryptographically random bytes (throws std::runtime_error on failure).
std::string random_bytes(std::size_t n);
/// `n` random bytes as lower-case hex (2n characters).
std::string random_hex(std::size_t n);
/// `n` random bytes as base64url.
std::string random_token(std::size_t n = 32);

/// Constant-time equality (length is not secret).
bool constant_time_equal(std::string_view a, std::string_view b);

/// PBKDF2-HMAC-SHA256 with a random 16-byte salt:
/// `pbkdf2_sha256$ITERATIONS$SALT$HASH` (base64url parts).
std::string hash_password(std::string_view password, int iterations = 10000);
/// False for malformed or empty stored hashes (e.g. the bot user).
bool verify_password(std::string_view password, std::string_view stored);

/// Reads the signing secret from `path`, or creates it (32 random bytes,
/// mode 0600). Throws std::runtime_error if that fails, or if the existing
/// file is not private (another owner, group/other permission bits, a
/// symbolic link): docs/security.md, "Files".
std::string load_or_create_secret(const std::string& path);

struct jwt_claims {
  std::string sub;
  std::string name;
  std::string role;
  std::string jti;
  int64_t iat = 0;
  int64_t exp = 0;
};

enum class jwt_error { none, malformed, bad_alg, bad_signature, expired };

/// Signs the claims with `{"alg":"HS256","typ":"JWT"}`.
std::string jwt_sign(const jwt_claims& claims, std::string_view secret);

/// Signs arbitrary header and payload JSON (HS256 signature), for tests.
std::string jwt_sign_raw(std::string_view header_json,
                         std::string_view payload_json,
                         std::string_view secret);

/// Verifies an HS256 token: header alg must be "HS256", signature must match,
/// all claims must be present with the right types, and exp > now_s.
/// The signature is checked before expiry, so a forged expired token is
/// `bad_signature`, not `expired`.
jwt_error jwt_verify(std::string_view token, std::string_view secret,
                     int64_t now_s, jwt_claims* out);

} // namespace aico::gateway
