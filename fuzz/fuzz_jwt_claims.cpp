// libFuzzer harness: the engine's unverified JWT claims reader
// (src/core/jwt_claims.hpp) and its base64url codec.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "src/core/jwt_claims.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  // as a whole token
  (void) aico::decode_jwt_claims(text);
  // as a payload: header.payload.signature around base64url(input)
  auto token = "eyJhbGciOiJIUzI1NiJ9." + aico::base64url_encode(text) + ".sig";
  (void) aico::decode_jwt_claims(token);
  std::string back;
  if (!aico::base64url_decode(aico::base64url_encode(text), back)
      || back != text)
    std::abort(); // base64url round trip
  std::string raw;
  (void) aico::base64url_decode(text, raw);
  return 0;
}
