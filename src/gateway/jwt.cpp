#include "gateway/jwt.hpp"

#include "gateway/secure_files.hpp"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "gateway/json_util.hpp"

namespace aico::gateway {

namespace {

constexpr char b64url_chars[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

constexpr std::size_t max_token_size = 8192;

} // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto at = [&](std::size_t k) {
    return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k]));
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(b64url_chars[(v >> 18) & 63]);
    out.push_back(b64url_chars[(v >> 12) & 63]);
    out.push_back(b64url_chars[(v >> 6) & 63]);
    out.push_back(b64url_chars[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = at(i) << 16;
    out.push_back(b64url_chars[(v >> 18) & 63]);
    out.push_back(b64url_chars[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out.push_back(b64url_chars[(v >> 18) & 63]);
    out.push_back(b64url_chars[(v >> 12) & 63]);
    out.push_back(b64url_chars[(v >> 6) & 63]);
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = b64url_value(c);
    if (v < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero (canonical encoding).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
    return std::nullopt;
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

std::string sha256_hex(std::string_view data) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string raw = sha256(data);
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // HMAC() rejects a null key pointer; use a dummy byte for empty keys.
  static const unsigned char empty = 0;
  const void* k = key.empty() ? static_cast<const void*>(&empty)
                              : static_cast<const void*>(key.data());
  if (!HMAC(EVP_sha256(), k, static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(),
            md, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (n > 0
      && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                    static_cast<int>(n))
           != 1)
    throw std::runtime_error("RAND_bytes failed");
  return out;
}

std::string random_hex(std::size_t n) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string raw = random_bytes(n);
  std::string out;
  out.reserve(n * 2);
  for (unsigned char c : raw) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::string random_token(std::size_t n) {
  return base64url_encode(random_bytes(n));
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  if (a.empty())
    return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {

/// Password hashing is deliberately expensive (milliseconds of CPU each):
/// at most half the cores hash at once, so a burst of logins (thousands of
/// sessions starting together) cannot starve the I/O threads that answer
/// pings and health checks on every open connection. Callers beyond that
/// wait their turn.
class hash_gate {
public:
  hash_gate()
    : free_(std::max(1, static_cast<int>(std::thread::hardware_concurrency())
                          / 2)) {
  }
  void enter() {
    std::unique_lock<std::mutex> g{mx_};
    cv_.wait(g, [this] { return free_ > 0; });
    --free_;
  }
  void leave() {
    {
      std::lock_guard<std::mutex> g{mx_};
      ++free_;
    }
    cv_.notify_one();
  }

private:
  std::mutex mx_;
  std::condition_variable cv_;
  int free_;
};

hash_gate& gate() {
  static hash_gate g;
  return g;
}

std::string pbkdf2(std::string_view password, std::string_view salt,
                   int iterations) {
  gate().enter();
  struct leave_gate {
    ~leave_gate() { gate().leave(); }
  } leave;
  unsigned char out[32];
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations,
                        EVP_sha256(), sizeof(out), out)
      != 1)
    throw std::runtime_error("PBKDF2 failed");
  return std::string(reinterpret_cast<char*>(out), sizeof(out));
}

} // namespace

std::string hash_password(std::string_view password, int iterations) {
  std::string salt = random_bytes(16);
  return "pbkdf2_sha256$" + std::to_string(iterations) + "$"
         + base64url_encode(salt) + "$"
         + base64url_encode(pbkdf2(password, salt, iterations));
}

bool verify_password(std::string_view password, std::string_view stored) {
  constexpr std::string_view prefix = "pbkdf2_sha256$";
  if (stored.substr(0, prefix.size()) != prefix)
    return false;
  auto rest = stored.substr(prefix.size());
  auto d1 = rest.find('$');
  if (d1 == std::string_view::npos)
    return false;
  auto d2 = rest.find('$', d1 + 1);
  if (d2 == std::string_view::npos)
    return false;
  auto iter_text = rest.substr(0, d1);
  if (iter_text.empty() || iter_text.size() > 7)
    return false;
  int iterations = 0;
  for (char c : iter_text) {
    if (c < '0' || c > '9')
      return false;
    iterations = iterations * 10 + (c - '0');
  }
  if (iterations < 1)
    return false;
  auto salt = base64url_decode(rest.substr(d1 + 1, d2 - d1 - 1));
  auto hash = base64url_decode(rest.substr(d2 + 1));
  if (!salt || !hash || hash->size() != 32)
    return false;
  return constant_time_equal(pbkdf2(password, *salt, iterations), *hash);
}

std::string load_or_create_secret(const std::string& path) {
  std::string fresh = random_bytes(32);
  if (create_private_file(path, fresh))
    return fresh;
  // It exists: use it only if nobody else can have read or changed it
  // (owned by this user, mode 0600 or stricter, not a symbolic link).
  std::string secret = read_private_file(path, "the JWT secret", 4096);
  if (secret.size() < 16)
    throw std::runtime_error(path + " is too short (need at least 16 bytes)");
  return secret;
}

std::string jwt_sign_raw(std::string_view header_json,
                         std::string_view payload_json,
                         std::string_view secret) {
  std::string signing_input = base64url_encode(header_json) + "."
                              + base64url_encode(payload_json);
  std::string sig = base64url_encode(hmac_sha256(secret, signing_input));
  return signing_input + "." + sig;
}

std::string jwt_sign(const jwt_claims& c, std::string_view secret) {
  json::object p;
  p["sub"] = c.sub;
  p["name"] = c.name;
  p["role"] = c.role;
  p["iat"] = c.iat;
  p["exp"] = c.exp;
  p["jti"] = c.jti;
  return jwt_sign_raw(R"({"alg":"HS256","typ":"JWT"})", json::serialize(p),
                      secret);
}

jwt_error jwt_verify(std::string_view token, std::string_view secret,
                     int64_t now, jwt_claims* out) {
  if (token.empty() || token.size() > max_token_size)
    return jwt_error::malformed;
  auto d1 = token.find('.');
  if (d1 == std::string_view::npos)
    return jwt_error::malformed;
  auto d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != token.npos)
    return jwt_error::malformed;
  auto h64 = token.substr(0, d1);
  auto p64 = token.substr(d1 + 1, d2 - d1 - 1);
  auto s64 = token.substr(d2 + 1);
  if (h64.empty() || p64.empty())
    return jwt_error::malformed;
  // Header: only HS256 is accepted (this also rejects "none").
  auto header_text = base64url_decode(h64);
  if (!header_text)
    return jwt_error::malformed;
  auto header = parse_json(*header_text);
  if (!header || !header->is_object())
    return jwt_error::malformed;
  auto& ho = header->as_object();
  auto alg = ho.if_contains("alg");
  if (!alg || !alg->is_string() || alg->as_string() != "HS256")
    return jwt_error::bad_alg;
  if (auto typ = ho.if_contains("typ");
      typ && (!typ->is_string() || typ->as_string() != "JWT"))
    return jwt_error::malformed;
  if (ho.contains("crit"))
    return jwt_error::malformed;
  // Signature (constant-time compare of the canonical encoding).
  if (s64.empty())
    return jwt_error::bad_signature;
  std::string signing_input(token.substr(0, d2));
  std::string expected = base64url_encode(hmac_sha256(secret, signing_input));
  if (!constant_time_equal(expected, s64))
    return jwt_error::bad_signature;
  // Claims.
  auto payload_text = base64url_decode(p64);
  if (!payload_text)
    return jwt_error::malformed;
  auto payload = parse_json(*payload_text);
  if (!payload || !payload->is_object())
    return jwt_error::malformed;
  auto& po = payload->as_object();
  jwt_claims c;
  auto get_str = [&](const char* key, std::string& dst) {
    auto v = po.if_contains(key);
    if (!v || !v->is_string() || v->as_string().empty())
      return false;
    dst = std::string(v->as_string());
    return true;
  };
  auto get_int = [&](const char* key, int64_t& dst) {
    auto v = po.if_contains(key);
    if (!v)
      return false;
    auto i = as_int64(*v);
    if (!i)
      return false;
    dst = *i;
    return true;
  };
  if (!get_str("sub", c.sub) || !get_str("name", c.name)
      || !get_str("role", c.role) || !get_str("jti", c.jti)
      || !get_int("iat", c.iat) || !get_int("exp", c.exp))
    return jwt_error::malformed;
  if (c.exp <= now)
    return jwt_error::expired;
  if (out)
    *out = std::move(c);
  return jwt_error::none;
}

} // namespace aico::gateway
