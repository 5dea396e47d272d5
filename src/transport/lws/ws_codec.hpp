// aico engine: the WebSocket transport's pure logic (no I/O, no
// libwebsockets): ws:// URL parsing and the JSON text frames of
// docs/protocol.md "WebSocket frames". Never throws.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace aico::ws_link {

/// A parsed ws:// or wss:// URL.
struct ws_url {
  bool tls = false;     ///< wss://
  std::string host;     ///< without brackets for IPv6 literals
  uint16_t port = 0;    ///< 80 / 443 when not given
  std::string path = "/"; ///< path with query, always starting with '/'
};

/// Parses `ws://host[:port][/path][?query]` (or wss://). IPv6 literals in
/// brackets. On failure returns false and sets `why`.
bool parse_url(const std::string& url, ws_url& out, std::string& why);

/// The Host header value: host, plus ":port" unless it is the default one
/// (IPv6 literals in brackets).
std::string host_header(const ws_url& u);

/// What a server frame is.
enum class frame_kind : uint8_t {
  invalid = 0, ///< not JSON, not an object, or no string "type"
  response,    ///< {"type":"response","id","status","body","headers"}
  event,       ///< {"type":"event","topic","data","seq"}
  pong,        ///< {"type":"pong","id"}
  auth_ok,     ///< {"type":"auth_ok","id"?,"user"}
  error,       ///< {"type":"error","status","code","message","id"?}
  other,       ///< any other "type"
};

const char* to_string(frame_kind k);

struct decoded_frame {
  frame_kind kind = frame_kind::invalid;
  std::string id;     ///< response/pong/auth_ok/error ("" if absent or not a string)
  int32_t status = 0; ///< response, error
  std::string body;   ///< response: the envelope as JSON text ("" if null/absent)
  std::map<std::string, std::string> headers; ///< response (non-string values serialized)
  std::string topic;  ///< event
  std::string data;   ///< event: JSON text ("null" if absent)
  uint64_t seq = 0;   ///< event
  std::string code;   ///< error
  std::string message; ///< error
  /// auth_ok of an auth frame with `since`: the "replay" object was there
  /// (a gateway with replay) and said complete.
  bool has_replay = false;
  bool replay_complete = false;
};

/// Decodes one text frame from the gateway. Integer members are
/// range-checked, never cast blindly: a `status` that is not a whole number
/// in int32 range reads as 0, a `seq` that is not a non-negative whole
/// number as 0. Numbers beyond the double range (`1e400`) would serialize
/// as `Infinity`, which is not JSON: such a response body becomes a
/// "bad_number" error envelope (a malformed reply), such a header is left
/// out, and such an event is invalid.
decoded_frame decode_frame(std::string_view text);

/// Encodes {"type":"request","id","method","path","body"?}. `body` is JSON
/// text; empty means no "body" member. Returns false (and leaves `out`
/// untouched) if `body` is not valid JSON or holds a number beyond the
/// double range (it would be sent as `Infinity`/`NaN`).
bool encode_request(const std::string& id, const std::string& method,
                    const std::string& path, const std::string& body,
                    std::string& out);

/// Encodes {"type":"auth","id","token"} (plus "since" when > 0: resume
/// the events after that seq).
std::string encode_auth(const std::string& id, const std::string& token,
                        uint64_t since = 0);

/// Encodes {"type":"ping","id"}.
std::string encode_ping(const std::string& id);

/// A gateway-style error envelope
/// {"success":false,"message":...,"code":...} as JSON text.
std::string error_envelope(const std::string& code, const std::string& message);

} // namespace aico::ws_link
