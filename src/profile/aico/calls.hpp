// aico wire profile: the mapping of the engine's logical calls
// (docs/protocol.md: what the repositories and the token manager send) onto
// the real AICO backend's wire (../shared/design/aico-backend-wire.md 2.2–2.4),
// and of its answers back into the engine's models (include/aico/models.hpp)
// and the engine's reply envelope ({"success":true,"data":…}), so everything
// above the transports keeps working unchanged. Table-driven: call_table()
// lists every logical call the profile knows; anything else is refused with
// a sentence. Pure code, never throws (except bad_alloc). docs/profiles.md
// "The aico profile" has the table in prose.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "aico/models.hpp" // chat_message, history_page, user, stream_chunk
#include "src/profile/aico/ndjson.hpp"
#include "src/profile/aico/wire_errors.hpp"

namespace aico::aico_profile {

/// One logical call as the engine makes it (the fields of api_call that
/// matter here; path relative to /api/v1, with query).
struct logical_call {
  std::string method;
  std::string path;
  std::string body; ///< JSON text, may be empty
  std::string token;
  /// > 0: the call's whole time (the session bounds every request of it,
  /// and a send's stream, by what is left; 0 = the session's defaults).
  std::chrono::milliseconds timeout{0};
};

/// Which logical call a request is.
enum class call_kind {
  login,   ///< POST /users/authenticate
  refresh, ///< POST /users/refresh
  logout,  ///< POST /users/logout (answered locally)
  me,      ///< GET /users/me (answered locally from the token's claims)
  send,    ///< POST /conversations/messages
  history, ///< GET /conversations/{id|current}/messages
  health,  ///< GET /health, GET /health/detailed
};

const char* to_string(call_kind k);

/// One row of the mapping table.
struct call_route {
  call_kind kind;
  const char* method;        ///< the engine's method
  const char* engine_path;   ///< the engine's path ("{id}" = one segment)
  const char* wire_method;   ///< "" = answered locally, no wire call
  const char* wire_path;     ///< under the base URL
  bool encrypted;            ///< body and answer in the envelope
  bool bearer;               ///< sends the access token
  bool stream;               ///< NDJSON answer (?stream=true)
};

/// The mapping table.
const std::vector<call_route>& call_table();

/// A request ready for the wire (plaintext body; the session wraps it).
struct wire_request {
  call_kind kind = call_kind::health;
  std::string method;
  std::string path;        ///< absolute path with query, e.g. /api/v1/health
  std::string body = "{}"; ///< plaintext JSON ("{}" for GET: encrypted too)
  bool encrypted = true;
  bool stream = false;
  std::string token; ///< Bearer token, "" = no Authorization header
  // -- context for mapping the answer back --
  std::string client_message_id; ///< send: the engine's idempotency key
  std::string content;           ///< send: the text
  std::string message_type = "text";
  std::string metadata = "{}";   ///< send: the engine's metadata object text
  std::string requested_conversation; ///< send/history: as the engine asked
  std::string user_token;             ///< send/me: the caller's access token
  int64_t page = 1;
  int64_t page_size = 50;
};

/// An answer made without a wire call (logout, /users/me).
struct local_answer {
  int32_t status = 200;
  std::string body; ///< the engine's envelope text
};

/// Maps a logical call: a wire request, a local answer, or an error
/// (validation: an unknown call, a malformed body).
std::variant<wire_request, local_answer, wire_error>
map_call(const logical_call& c);

/// The engine's answer for a wire answer: status and envelope text.
struct engine_answer {
  int32_t status = 200;
  std::string body; ///< {"success":true,"data":…}
  std::map<std::string, std::string> headers;
};

/// Maps a complete (non-streamed) answer whose plaintext is `plain` and
/// which decode_error() found to be a success: login and refresh → the
/// engine's auth data, history → history_page, health → system_health.
std::variant<engine_answer, wire_error>
map_reply(const wire_request& rq, int32_t status, std::string_view plain);

/// What a streamed send produced, in the engine's models.
struct send_outcome {
  chat_message sent;  ///< the user's message (id = the engine's key)
  chat_message reply; ///< the assistant's reply (id = the backend's
                      ///< message_id, reply_to = the engine's key)
  std::string thinking;
  std::string aico_message_id; ///< the final chunk's message_id
};

/// Builds the outcome of a stream that ended with its final chunk; the
/// conversation is X-Conversation-ID (`conversation_header`), else the
/// stream's. An error if the stream reported one or never finished.
std::variant<send_outcome, wire_error>
map_send(const wire_request& rq, const reply_stream& s,
         const std::string& conversation_header);

/// The engine's send answer (201, the sent message) for an outcome.
engine_answer send_answer(const send_outcome& o);

/// One streamed chunk in the engine's model (event `message.stream`):
/// reply_to = the engine's key, seq_no counted per reply.
stream_chunk to_stream_chunk(const wire_request& rq, const reply_stream& s,
                             const stream_line& line, uint64_t seq_no);

/// The engine's models from answers (also used by map_reply).
history_page history_from_wire(const wire_request& rq, std::string_view plain,
                               bool& ok);
/// A user from an access token's claims (and the login answer's `user`).
user user_from_claims(const std::string& token, std::string_view user_json = {});
/// "2026-11-24T11:19:49.957719" (naive UTC) → ms since the epoch; -1 if bad.
int64_t parse_aico_time(std::string_view iso);
/// ms since the epoch → "2026-11-24T11:19:49.957Z".
std::string iso_ms(int64_t ms);

// -- engine JSON (the reference gateway's shapes, docs/protocol.md) -----------

std::string message_json(const chat_message& m);
std::string envelope_json(std::string_view data_json);

} // namespace aico::aico_profile
