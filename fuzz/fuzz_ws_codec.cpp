// libFuzzer harness: the WebSocket transport's codec
// (src/transport/lws/ws_codec.hpp): frame decoding of untrusted gateway
// frames, URL parsing, and request encoding of arbitrary bodies.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "src/transport/lws/ws_codec.hpp"

namespace {

bool is_json(const std::string& text) {
  boost::system::error_code ec;
  boost::json::parse(text, ec);
  return !ec;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace aico::ws_link;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  auto f = decode_frame(text);
  if (f.kind == frame_kind::response && !f.body.empty() && !is_json(f.body))
    std::abort(); // the body is handed to the model codecs as JSON
  if (f.kind == frame_kind::event && !is_json(f.data))
    std::abort();
  if (f.kind == frame_kind::response || f.kind == frame_kind::error) {
    volatile auto s = f.status; // read: must be a defined value
    (void) s;
  }
  std::string out;
  if (encode_request("id", "POST", "/p", std::string{text}, out)) {
    if (!is_json(out)) // a bare Infinity/NaN would not parse
      std::abort();
  }
  ws_url u;
  std::string why;
  std::string url{text};
  if (parse_url(url, u, why)) {
    for (char c : u.host) {
      auto b = static_cast<unsigned char>(c);
      if (b <= 0x20 || b >= 0x7f)
        std::abort(); // a host that could smuggle a header
    }
    auto h = host_header(u);
    (void) h;
  } else if (why.empty()) {
    std::abort();
  }
  return 0;
}
