// libFuzzer harness: the model codecs (src/model/codec.hpp) on untrusted
// gateway JSON. Every decoder must return a value or a validation error,
// never crash, and whatever decodes must encode to valid JSON (no
// Infinity/NaN) that decodes back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "src/model/codec.hpp"

namespace {

template <class T>
void round_trip(const caf::expected<T>& x) {
  if (!x)
    return;
  auto text = aico::encode(*x);
  boost::system::error_code ec;
  boost::json::parse(text, ec);
  if (ec) // e.g. a bare Infinity/NaN, which Boost.JSON would write
    std::abort(); // an encoder wrote something that is not JSON
  auto again = aico::decode_as<T>(text);
  if (!again)
    std::abort(); // what we encode, we must read back
}

template <class T>
void one(std::string_view text, int32_t status) {
  round_trip(aico::decode_as<T>(text));
  round_trip(aico::decode_reply<T>(status, text));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  // first byte: which status the reply had; the rest: the body
  int32_t status = (data[0] & 1) ? 200 : 400 + (data[0] >> 1);
  std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
  one<aico::chat_message>(text, status);
  one<aico::history_page>(text, status);
  one<aico::user>(text, status);
  one<aico::user_preferences>(text, status);
  one<aico::family>(text, status);
  one<aico::system_status>(text, status);
  one<aico::system_health>(text, status);
  one<aico::update_ticket>(text, status);
  one<aico::stream_chunk>(text, status);
  one<aico::system_update_event>(text, status);
  auto env = aico::decode_envelope(status, text);
  if (env)
    round_trip(env);
  aico::api_reply r;
  r.status = status;
  r.body = std::string{text};
  (void) aico::check_reply(std::move(r));
  return 0;
}
