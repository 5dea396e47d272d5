// libFuzzer harness: the IPC protobuf codec (src/transport/zmq/ipc_codec.hpp)
// on untrusted frames, and re-encoding of what decodes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/transport/zmq/ipc_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace aico::ipc_link;
  auto f = decode_frame(data, size);
  switch (f.kind) {
    case frame_kind::invalid:
      if (f.error.empty())
        std::abort(); // an invalid frame says why
      break;
    case frame_kind::request: {
      auto again = decode_frame(encode_request(f.request));
      if (again.kind != frame_kind::request || again.request.id != f.request.id
          || again.request.body != f.request.body)
        std::abort();
      break;
    }
    case frame_kind::response: {
      auto again = decode_frame(encode_response(f.response));
      if (again.kind != frame_kind::response
          || again.response.status != f.response.status
          || again.response.body != f.response.body)
        std::abort();
      break;
    }
    case frame_kind::event: {
      auto again = decode_frame(encode_event(f.event));
      if (again.kind != frame_kind::event || again.event.seq != f.event.seq)
        std::abort();
      break;
    }
    case frame_kind::ping:
    case frame_kind::pong:
      (void) encode_pong(f.ping.nonce, f.ping.sent_at_ms);
      break;
    case frame_kind::subscribe:
      (void) encode_subscribe(f.subscribe.id, f.subscribe.token);
      break;
    case frame_kind::unsubscribe:
      (void) encode_unsubscribe(f.subscribe.id);
      break;
  }
  return 0;
}
