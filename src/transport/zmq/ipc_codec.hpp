// aico engine: the IPC wire codec (proto/ipc.proto <-> plain structs).
//
// The only code that sees the generated protobuf header is ipc_codec.cpp;
// everything else (the socket loop's users, the actor, tests) works with the
// plain structs below. Pure functions, no I/O, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace aico::ipc_link {

/// Frame{request}: a call of the logical API.
struct wire_request {
  std::string id;
  std::string method;
  std::string path;
  std::string token; ///< bearer access token, empty if none
  std::string body;  ///< JSON text, may be empty
};

/// Frame{response}: the answer to a request or (un)subscribe.
struct wire_response {
  std::string id;
  int32_t status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};

/// Frame{event}: a server push.
struct wire_event {
  std::string topic;
  std::string data;
  uint64_t seq = 0;
};

/// Frame{ping} and Frame{pong}.
struct wire_ping {
  uint64_t nonce = 0;
  int64_t sent_at_ms = 0;
};

/// Frame{subscribe} (token empty for unsubscribe).
struct wire_subscribe {
  std::string id;
  std::string token;
};

enum class frame_kind : uint8_t {
  invalid = 0, ///< could not be parsed, or no kind set (see `error`)
  request,
  response,
  event,
  ping,
  pong,
  subscribe,
  unsubscribe,
};

const char* to_string(frame_kind k);

/// One decoded frame; only the member matching `kind` is filled.
struct decoded_frame {
  frame_kind kind = frame_kind::invalid;
  wire_request request;
  wire_response response;
  wire_event event;
  wire_ping ping;           ///< ping or pong
  wire_subscribe subscribe; ///< subscribe or unsubscribe (id only)
  std::string error;        ///< why it is invalid
};

// -- encoding (client -> gateway); an empty string means "could not encode" --

std::string encode_request(const wire_request& r);
std::string encode_ping(uint64_t nonce, int64_t sent_at_ms);
/// Subscribe{id, token, since}; since 0 = no replay asked.
std::string encode_subscribe(const std::string& id, const std::string& token,
                             uint64_t since = 0);
std::string encode_unsubscribe(const std::string& id);

// -- encoding of the server's kinds (for tests and tools) ---------------------

std::string encode_response(const wire_response& r);
std::string encode_event(const wire_event& e);
std::string encode_pong(uint64_t nonce, int64_t sent_at_ms);

/// Decodes one serialized Frame. Never throws.
decoded_frame decode_frame(const void* data, std::size_t size);

inline decoded_frame decode_frame(const std::string& bytes) {
  return decode_frame(bytes.data(), bytes.size());
}

} // namespace aico::ipc_link
