// aico engine: Boost.JSON codecs for the models of messages/models.hpp.
//
// Decoding takes untrusted gateway JSON and never throws: every failure is a
// caf::error of class `validation` (messages/errors.hpp) whose message names
// the offending field by its path, e.g.
//   "field 'messages[3].timestamp_ms': expected integer"
//   "field 'seq': missing"
//   "invalid JSON: syntax error (offset 17)"
// Error codes: "bad_json" (not parseable: syntax, invalid UTF-8, nesting
// deeper than max_json_depth) and "bad_field" (parseable, but a field is
// missing, has the wrong type or is out of range). Paths are relative to the
// decoded value (for decode_reply: relative to the envelope's `data`).
//
// Rules: required fields must be present with the right JSON type; optional
// fields (read_at, reply_to, metadata, failure_reason, ...) may be missing or
// null and then get their defaults; unknown fields are ignored; integers must
// be JSON integers (no fraction/exponent) in range (seq >= 0,
// timestamp_ms >= 0, ...).
//
// Encoding produces compact JSON text: request bodies (encode_send_message_body,
// encode_preferences_update_body) and the full representation of every model
// (encode / encode_*), which decodes back to an equal value (for the response
// cache). Encoders do not throw except std::bad_alloc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "caf/expected.hpp"

#include "messages/errors.hpp"
#include "messages/models.hpp"
#include "messages/types.hpp"

namespace aico {

/// Maximum nesting of JSON accepted by the decoders (the gateway accepts
/// request bodies nested up to 64; envelopes add a few levels).
constexpr size_t max_json_depth = 100;

// -- generic entry points -------------------------------------------------------

/// Decodes a model from a parsed JSON value. Instantiated for every model
/// type of messages/models.hpp (chat_message, stream_chunk, history_page,
/// user_preferences, user, family_member, family, system_status,
/// system_health, update_ticket, system_update_event, envelope).
template <class T>
caf::expected<T> decode_value(const boost::json::value& v);

/// Parses JSON text and decodes a model from it.
template <class T>
caf::expected<T> decode_as(std::string_view json);

/// One step from a gateway reply to a model: decodes the envelope, turns a
/// failed one (success false or non-2xx status) into the classified error of
/// make_status_error(status, body), and decodes `data` as T.
template <class T>
caf::expected<T> decode_reply(int32_t status, std::string_view body);

// -- named decoders (JSON text) -------------------------------------------------

// -- gateway answers -------------------------------------------------------------

/// The value of a reply header (name compared case-insensitively), "" if
/// absent.
std::string reply_header(const api_reply& r, std::string_view name);

/// THE check of every gateway answer (the supervisor applies it to every
/// reply; callers that may sit behind something else apply it too): a 2xx
/// passes only as a valid envelope with `"success": true`. Anything else is
/// an error:
/// - non-2xx: make_status_error(status, body, Retry-After), classified by
///   its status;
/// - a 2xx that is not JSON, not an envelope, or `success: false`: the
///   bad_reply error (the call's outcome is unknown: it may or may not have
///   been applied).
caf::expected<api_reply> check_reply(api_reply r);

/// The error of an answer that is not what its route promises: class
/// unknown (a malformed reply: not retried in-call, not counted by the
/// circuit breakers; the offline queue resends such commands with the same
/// idempotency key a bounded number of times), the answer's status, code
/// "bad_reply", message "the gateway's answer (status 200) is not a valid
/// reply: <why>".
caf::error bad_reply_error(int32_t status, const std::string& why);

/// Whether `err` is a bad_reply error.
bool is_bad_reply(const caf::error& err);

/// Parses an envelope. On 2xx the body must be an envelope with
/// `"success": bool` (else a validation error). On a non-2xx status a body
/// that is not an envelope (e.g. a proxy's HTML page) still yields an
/// envelope with success = false and a generic message.
caf::expected<envelope> decode_envelope(int32_t status, std::string_view body);

caf::expected<chat_message> decode_message(std::string_view json);
caf::expected<history_page> decode_history_page(std::string_view json);
caf::expected<user> decode_user(std::string_view json);
caf::expected<user_preferences> decode_preferences(std::string_view json);
caf::expected<family> decode_family(std::string_view json);
caf::expected<system_status> decode_system_status(std::string_view json);
caf::expected<system_health> decode_system_health(std::string_view json);
caf::expected<update_ticket> decode_update_ticket(std::string_view json);
caf::expected<stream_chunk> decode_stream_chunk(std::string_view json);
caf::expected<system_update_event>
decode_system_update_event(std::string_view json);

/// The preferences of a decoded user as a typed map.
caf::expected<user_preferences> preferences_of(const user& u);

// -- request bodies -------------------------------------------------------------

/// Body of POST /conversations/messages:
/// {"id","conversation_id","content","type","metadata"} (conversation_id is
/// left out when empty; metadata text that is not a JSON object becomes {}).
std::string encode_send_message_body(const chat_message& m);

/// Body of PUT /users/me/preferences: the flat object; null values delete.
std::string encode_preferences_update_body(const user_preferences& p);

// -- full encoders (round trip with the decoders) -----------------------------

boost::json::value to_json_value(const chat_message& x);
boost::json::value to_json_value(const stream_chunk& x);
boost::json::value to_json_value(const history_page& x);
boost::json::value to_json_value(const user_preferences& x);
boost::json::value to_json_value(const user& x);
boost::json::value to_json_value(const family_member& x);
boost::json::value to_json_value(const family& x);
boost::json::value to_json_value(const system_status& x);
boost::json::value to_json_value(const system_health& x);
boost::json::value to_json_value(const update_ticket& x);
boost::json::value to_json_value(const system_update_event& x);
/// The envelope body (status is not part of it).
boost::json::value to_json_value(const envelope& x);

/// Compact JSON text of to_json_value(x).
template <class T>
std::string encode(const T& x);

std::string encode_message(const chat_message& x);
std::string encode_stream_chunk(const stream_chunk& x);
std::string encode_history_page(const history_page& x);
std::string encode_preferences(const user_preferences& x);
std::string encode_user(const user& x);
std::string encode_family(const family& x);
std::string encode_system_status(const system_status& x);
std::string encode_system_health(const system_health& x);
std::string encode_update_ticket(const update_ticket& x);
std::string encode_system_update_event(const system_update_event& x);
std::string encode_envelope(const envelope& x);

} // namespace aico
