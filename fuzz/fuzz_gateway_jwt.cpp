// libFuzzer harness: the reference gateway's JWT verification
// (src/gateway/jwt.hpp). Arbitrary tokens, and tokens with arbitrary
// header/payload JSON signed with the right secret: verification must
// never crash, must never accept a token not signed with the secret, and
// must reject a token whose claims do not have the right types.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/jwt.hpp"

using namespace aico::gateway;

namespace {

const std::string secret = "fuzz-secret-0123456789abcdef0123";
constexpr int64_t now = 1700000000;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  jwt_claims c;
  // 1. the input as a token: it was not signed with our secret (a forgery
  // by chance is out of reach), so it must not verify
  if (jwt_verify(text, secret, now, &c) == jwt_error::none)
    std::abort();
  // 2. the input split into header and payload JSON, correctly signed
  auto cut = text.find('\n');
  std::string_view header = R"({"alg":"HS256","typ":"JWT"})";
  std::string_view payload = text;
  if (cut != std::string_view::npos) {
    header = text.substr(0, cut);
    payload = text.substr(cut + 1);
  }
  auto token = jwt_sign_raw(header, payload, secret);
  auto e = jwt_verify(token, secret, now, &c);
  if (e == jwt_error::none) {
    if (c.exp <= now)
      std::abort(); // expired tokens are refused
    // the same token under another secret must fail
    if (jwt_verify(token, "another secret", now, nullptr) == jwt_error::none)
      std::abort();
  }
  // 3. the input as a signature of a valid token
  jwt_claims good;
  good.sub = "u_1";
  good.name = "alice";
  good.role = "user";
  good.jti = "j";
  good.iat = now;
  good.exp = now + 60;
  auto t = jwt_sign(good, secret);
  auto dot = t.rfind('.');
  auto forged = t.substr(0, dot + 1) + std::string{text};
  if (forged != t && jwt_verify(forged, secret, now, nullptr) == jwt_error::none)
    std::abort();
  return 0;
}
