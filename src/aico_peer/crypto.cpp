#include "aico_peer/crypto.hpp"

#include <stdexcept>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

namespace aico::peer {

namespace {

const unsigned char* u8(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string b64_enc(std::string_view bytes, int variant) {
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), u8(bytes), bytes.size(), variant);
  out.resize(out.size() - 1); // the terminating NUL
  return out;
}

std::optional<std::string> b64_dec(std::string_view text, int variant,
                                   const char* ignore) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()),
                        out.size(), text.data(), text.size(), ignore, &len,
                        &end, variant)
        != 0
      || end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

} // namespace

void crypto_init() {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium could not be initialised");
}

std::string b64_encode(std::string_view bytes) {
  return b64_enc(bytes, sodium_base64_VARIANT_ORIGINAL);
}

std::optional<std::string> b64_decode(std::string_view text) {
  return b64_dec(text, sodium_base64_VARIANT_ORIGINAL, " \t\r\n");
}

std::string b64url_encode(std::string_view bytes) {
  return b64_enc(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

std::optional<std::string> b64url_decode(std::string_view text) {
  return b64_dec(text, sodium_base64_VARIANT_URLSAFE_NO_PADDING, nullptr);
}

std::string hex(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), u8(bytes), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

std::string uuid4() {
  auto b = random_bytes(16);
  b[6] = static_cast<char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3F) | 0x80);
  auto h = hex(b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-"
         + h.substr(16, 4) + "-" + h.substr(20);
}

sign_keypair ed25519_from_seed(std::string_view seed) {
  if (seed.size() != crypto_sign_SEEDBYTES)
    throw std::runtime_error("Ed25519 seed must be 32 bytes");
  sign_keypair kp;
  kp.pk.resize(crypto_sign_PUBLICKEYBYTES);
  kp.sk.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(kp.pk.data()),
                           reinterpret_cast<unsigned char*>(kp.sk.data()),
                           u8(seed));
  return kp;
}

std::string ed25519_sign(std::string_view message, const std::string& sk) {
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       u8(message), message.size(), u8(sk));
  return sig;
}

bool ed25519_verify(std::string_view message, std::string_view signature,
                    std::string_view pk) {
  if (signature.size() != crypto_sign_BYTES
      || pk.size() != crypto_sign_PUBLICKEYBYTES)
    return false;
  return crypto_sign_verify_detached(u8(signature), u8(message), message.size(),
                                     u8(pk))
         == 0;
}

box_keypair x25519_generate() {
  box_keypair kp;
  kp.pk.resize(crypto_box_PUBLICKEYBYTES);
  kp.sk.resize(crypto_box_SECRETKEYBYTES);
  crypto_box_keypair(reinterpret_cast<unsigned char*>(kp.pk.data()),
                     reinterpret_cast<unsigned char*>(kp.sk.data()));
  return kp;
}

std::optional<nacl_box> nacl_box::make(std::string_view peer_pk,
                                       std::string_view own_sk) {
  if (peer_pk.size() != crypto_box_PUBLICKEYBYTES
      || own_sk.size() != crypto_box_SECRETKEYBYTES)
    return std::nullopt;
  nacl_box b;
  b.key_.resize(crypto_box_BEFORENMBYTES);
  if (crypto_box_beforenm(reinterpret_cast<unsigned char*>(b.key_.data()),
                          u8(peer_pk), u8(own_sk))
      != 0)
    return std::nullopt;
  return b;
}

std::string nacl_box::seal(std::string_view plain) const {
  std::string out(crypto_box_NONCEBYTES + crypto_box_MACBYTES + plain.size(),
                  '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, crypto_box_NONCEBYTES);
  crypto_box_easy_afternm(nonce + crypto_box_NONCEBYTES, u8(plain),
                          plain.size(), nonce, u8(key_));
  return out;
}

std::optional<std::string> nacl_box::open(std::string_view data) const {
  if (data.size() < crypto_box_NONCEBYTES + crypto_box_MACBYTES)
    return std::nullopt;
  auto ct = data.substr(crypto_box_NONCEBYTES);
  std::string out(ct.size() - crypto_box_MACBYTES, '\0');
  if (crypto_box_open_easy_afternm(reinterpret_cast<unsigned char*>(out.data()),
                                   u8(ct), ct.size(), u8(data), u8(key_))
      != 0)
    return std::nullopt;
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), u8(data),
           data.size(), md, &len)
      == nullptr)
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr)
      != 1)
    throw std::runtime_error("SHA-256 failed");
  return hex(std::string_view(reinterpret_cast<char*>(md), len));
}

std::string pin_hash(std::string_view pin) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(
        out, pin.data(), pin.size(), crypto_pwhash_OPSLIMIT_MIN,
        crypto_pwhash_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13)
      != 0)
    throw std::runtime_error("PIN hashing failed (out of memory)");
  return out;
}

bool pin_verify(std::string_view pin, const std::string& stored) {
  if (stored.empty())
    return false;
  return crypto_pwhash_str_verify(stored.c_str(), pin.data(), pin.size()) == 0;
}

bool bytes_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size()
         && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace aico::peer
