// aico engine: the typed models of the gateway's resources (docs/protocol.md),
// as exposed by the engine's repositories. Plain value types: every one has
// an inspect() overload, so it is a valid CAF 0.17 message type, and an
// operator== for tests and caches.
//
// JSON codecs (decode from untrusted gateway JSON, encode request bodies and
// cache entries) are in src/model/codec.hpp; this header has no JSON
// dependency. Fields that carry free-form JSON (message metadata, envelope
// data/details, user preferences as sent by the gateway) are kept as compact
// JSON text, which CAF serializes as a plain string.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "caf/all.hpp"

namespace aico {

// -- message status -----------------------------------------------------------

/// Where a chat message is in its lifecycle, as observed by the engine:
///
///   queued (offline) -> sending -> sent -> delivered | read
///                          \-> failed{reason}
///
/// - queued: written while offline, waiting in the offline queue;
/// - sending: a POST /conversations/messages is in flight;
/// - sent: accepted by the gateway (the message now carries the gateway's
///   seq, timestamp and timestamp_ms);
/// - delivered: seen back in the gateway's event stream or history;
/// - read: marked read (gateway status "read", read_at set);
/// - failed: given up (failure_reason says why).
///
/// The gateway itself only reports "sent" and "read".
enum class message_status : uint8_t {
  queued = 0,
  sending,
  sent,
  delivered,
  read,
  failed,
};

/// "queued", "sending", "sent", "delivered", "read" or "failed".
inline const char* to_string(message_status s) {
  switch (s) {
    case message_status::queued:
      return "queued";
    case message_status::sending:
      return "sending";
    case message_status::sent:
      return "sent";
    case message_status::delivered:
      return "delivered";
    case message_status::read:
      return "read";
    case message_status::failed:
      return "failed";
  }
  return "?";
}

/// Parses the strings of to_string(message_status); false on anything else
/// (`out` is then unchanged).
inline bool from_string(const std::string& s, message_status& out) {
  static constexpr message_status all[] = {
    message_status::queued,    message_status::sending,
    message_status::sent,      message_status::delivered,
    message_status::read,      message_status::failed,
  };
  for (auto st : all) {
    if (s == to_string(st)) {
      out = st;
      return true;
    }
  }
  return false;
}

// -- conversations ------------------------------------------------------------

/// One chat message (gateway `message`, plus the engine's local state).
struct chat_message {
  /// The client-generated idempotency key; the gateway keeps it as the
  /// message's id (bot replies: "bot-<original id>").
  std::string id;
  std::string conversation_id; ///< empty = the user's current conversation
  std::string content;
  std::string type = "text"; ///< text, image, audio, system
  std::string sender_id;
  std::string sender;    ///< the sender's username ("companion" for the bot)
  std::string timestamp; ///< ISO-8601 UTC with ms, empty until sent
  int64_t timestamp_ms = 0;
  uint64_t seq = 0; ///< gateway-wide order, 0 while not yet known
  message_status status = message_status::queued;
  std::string failure_reason; ///< set when status == failed
  std::string read_at;        ///< ISO-8601, empty if not read
  std::string metadata = "{}"; ///< JSON object text
  std::string reply_to;        ///< id of the answered message, empty if none
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(caf::meta::type_name("aico.chat_message"), x.id, x.conversation_id,
           x.content, x.type, x.sender_id, x.sender, x.timestamp,
           x.timestamp_ms, x.seq, x.status, x.failure_reason, x.read_at,
           x.metadata, x.reply_to);
}

inline bool operator==(const chat_message& a, const chat_message& b) {
  auto t = [](const chat_message& x) {
    return std::tie(x.id, x.conversation_id, x.content, x.type, x.sender_id,
                    x.sender, x.timestamp, x.timestamp_ms, x.seq, x.status,
                    x.failure_reason, x.read_at, x.metadata, x.reply_to);
  };
  return t(a) == t(b);
}

inline bool operator!=(const chat_message& a, const chat_message& b) {
  return !(a == b);
}

/// One chunk of a streamed bot reply (event `message.stream`).
struct stream_chunk {
  std::string conversation_id;
  std::string reply_to;   ///< the user message being answered
  std::string message_id; ///< the id the final message will have
  uint64_t seq_no = 0;    ///< 0, 1, ... per reply
  std::string chunk;
  bool done = false; ///< true on the last chunk
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stream_chunk& x) {
  return f(caf::meta::type_name("aico.stream_chunk"), x.conversation_id,
           x.reply_to, x.message_id, x.seq_no, x.chunk, x.done);
}

inline bool operator==(const stream_chunk& a, const stream_chunk& b) {
  auto t = [](const stream_chunk& x) {
    return std::tie(x.conversation_id, x.reply_to, x.message_id, x.seq_no,
                    x.chunk, x.done);
  };
  return t(a) == t(b);
}

inline bool operator!=(const stream_chunk& a, const stream_chunk& b) {
  return !(a == b);
}

/// One page of a conversation's history (ascending seq).
struct history_page {
  std::string conversation_id;
  std::vector<chat_message> messages;
  bool has_more = false;   ///< messages with seq > next_since exist
  uint64_t next_since = 0; ///< pass as `since` to get the next page
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_page& x) {
  return f(caf::meta::type_name("aico.history_page"), x.conversation_id,
           x.messages, x.has_more, x.next_since);
}

inline bool operator==(const history_page& a, const history_page& b) {
  return a.conversation_id == b.conversation_id && a.messages == b.messages
         && a.has_more == b.has_more && a.next_since == b.next_since;
}

inline bool operator!=(const history_page& a, const history_page& b) {
  return !(a == b);
}

// -- users --------------------------------------------------------------------

/// The JSON type of one preference value.
enum class pref_kind : uint8_t { null = 0, boolean, integer, number, string };

/// "null", "boolean", "integer", "number" or "string".
inline const char* to_string(pref_kind k) {
  switch (k) {
    case pref_kind::null:
      return "null";
    case pref_kind::boolean:
      return "boolean";
    case pref_kind::integer:
      return "integer";
    case pref_kind::number:
      return "number";
    case pref_kind::string:
      return "string";
  }
  return "?";
}

/// One preference value: a JSON scalar. `null` only appears in update
/// bodies, where it deletes the key.
struct pref_value {
  pref_kind kind = pref_kind::null;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0; ///< non-integral (or out of int64 range) numbers
  std::string string;

  static pref_value null_value() {
    return {};
  }
  static pref_value of(bool b) {
    pref_value v;
    v.kind = pref_kind::boolean;
    v.boolean = b;
    return v;
  }
  static pref_value of(int64_t i) {
    pref_value v;
    v.kind = pref_kind::integer;
    v.integer = i;
    return v;
  }
  static pref_value of(int i) {
    return of(static_cast<int64_t>(i));
  }
  static pref_value of(double d) {
    pref_value v;
    v.kind = pref_kind::number;
    v.number = d;
    return v;
  }
  static pref_value of(std::string s) {
    pref_value v;
    v.kind = pref_kind::string;
    v.string = std::move(s);
    return v;
  }
  static pref_value of(const char* s) {
    return of(std::string{s});
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pref_value& x) {
  return f(caf::meta::type_name("aico.pref_value"), x.kind, x.boolean,
           x.integer, x.number, x.string);
}

/// Compares only the member selected by `kind`.
inline bool operator==(const pref_value& a, const pref_value& b) {
  if (a.kind != b.kind)
    return false;
  switch (a.kind) {
    case pref_kind::null:
      return true;
    case pref_kind::boolean:
      return a.boolean == b.boolean;
    case pref_kind::integer:
      return a.integer == b.integer;
    case pref_kind::number:
      return a.number == b.number;
    case pref_kind::string:
      return a.string == b.string;
  }
  return false;
}

inline bool operator!=(const pref_value& a, const pref_value& b) {
  return !(a == b);
}

/// The user's preferences: the gateway's flat JSON object as a map from key
/// to scalar (string, integer, number, boolean; null in updates = delete).
/// A struct of std::map + std::string only, so CAF 0.17 serializes it.
struct user_preferences {
  std::map<std::string, pref_value> values;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_preferences& x) {
  return f(caf::meta::type_name("aico.user_preferences"), x.values);
}

inline bool operator==(const user_preferences& a, const user_preferences& b) {
  return a.values == b.values;
}

inline bool operator!=(const user_preferences& a, const user_preferences& b) {
  return !(a == b);
}

/// A user of the gateway (GET /users/me, PUT /users/me/preferences).
struct user {
  std::string id;
  std::string username;
  std::string display_name;
  std::string role;               ///< user, admin, bot
  std::string preferences = "{}"; ///< flat JSON object text (validated)
  std::string created_at;         ///< ISO-8601
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user& x) {
  return f(caf::meta::type_name("aico.user"), x.id, x.username,
           x.display_name, x.role, x.preferences, x.created_at);
}

inline bool operator==(const user& a, const user& b) {
  auto t = [](const user& x) {
    return std::tie(x.id, x.username, x.display_name, x.role, x.preferences,
                    x.created_at);
  };
  return t(a) == t(b);
}

inline bool operator!=(const user& a, const user& b) {
  return !(a == b);
}

/// Another member of the household (an entry of GET /users/me/family; the
/// gateway sends full `user` objects, the engine keeps these fields).
struct family_member {
  std::string id;
  std::string username;
  std::string display_name;
  std::string role;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, family_member& x) {
  return f(caf::meta::type_name("aico.family_member"), x.id, x.username,
           x.display_name, x.role);
}

inline bool operator==(const family_member& a, const family_member& b) {
  return std::tie(a.id, a.username, a.display_name, a.role)
         == std::tie(b.id, b.username, b.display_name, b.role);
}

inline bool operator!=(const family_member& a, const family_member& b) {
  return !(a == b);
}

/// GET /users/me/family.
struct family {
  std::vector<family_member> members;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, family& x) {
  return f(caf::meta::type_name("aico.family"), x.members);
}

inline bool operator==(const family& a, const family& b) {
  return a.members == b.members;
}

inline bool operator!=(const family& a, const family& b) {
  return !(a == b);
}

// -- health and system --------------------------------------------------------

/// GET /system/status.
struct system_status {
  bool is_healthy = false;
  std::string version;
  std::string timestamp;
  std::map<std::string, std::string> services; ///< name -> "up" / "down"
  int64_t uptime_s = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, system_status& x) {
  return f(caf::meta::type_name("aico.system_status"), x.is_healthy,
           x.version, x.timestamp, x.services, x.uptime_s);
}

inline bool operator==(const system_status& a, const system_status& b) {
  return std::tie(a.is_healthy, a.version, a.timestamp, a.services, a.uptime_s)
         == std::tie(b.is_healthy, b.version, b.timestamp, b.services,
                     b.uptime_s);
}

inline bool operator!=(const system_status& a, const system_status& b) {
  return !(a == b);
}

/// GET /health and GET /health/detailed. The detailed fields are empty
/// (uptime_s = -1) for the plain /health answer.
struct system_health {
  bool is_healthy = false;
  std::string version;
  std::string timestamp;
  std::map<std::string, std::string> services; ///< name -> "up" / "down"
  int64_t uptime_s = -1;                       ///< -1 unless detailed
  std::map<std::string, int64_t> connections;  ///< per door: http, ws, ipc
  std::map<std::string, int64_t> counts; ///< users, messages, subscriptions
  std::string faults; ///< JSON object text, empty unless detailed
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, system_health& x) {
  return f(caf::meta::type_name("aico.system_health"), x.is_healthy,
           x.version, x.timestamp, x.services, x.uptime_s, x.connections,
           x.counts, x.faults);
}

inline bool operator==(const system_health& a, const system_health& b) {
  auto t = [](const system_health& x) {
    return std::tie(x.is_healthy, x.version, x.timestamp, x.services,
                    x.uptime_s, x.connections, x.counts, x.faults);
  };
  return t(a) == t(b);
}

inline bool operator!=(const system_health& a, const system_health& b) {
  return !(a == b);
}

/// The 202 answer of POST /system/update.
struct update_ticket {
  std::string update_id;
  std::string status; ///< "scheduled"
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, update_ticket& x) {
  return f(caf::meta::type_name("aico.update_ticket"), x.update_id, x.status);
}

inline bool operator==(const update_ticket& a, const update_ticket& b) {
  return a.update_id == b.update_id && a.status == b.status;
}

inline bool operator!=(const update_ticket& a, const update_ticket& b) {
  return !(a == b);
}

/// Event `system.update`.
struct system_update_event {
  std::string update_id;
  std::string status;
  std::string version;
  std::string timestamp;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, system_update_event& x) {
  return f(caf::meta::type_name("aico.system_update_event"), x.update_id,
           x.status, x.version, x.timestamp);
}

inline bool operator==(const system_update_event& a,
                       const system_update_event& b) {
  return std::tie(a.update_id, a.status, a.version, a.timestamp)
         == std::tie(b.update_id, b.status, b.version, b.timestamp);
}

inline bool operator!=(const system_update_event& a,
                       const system_update_event& b) {
  return !(a == b);
}

// -- envelope -----------------------------------------------------------------

/// The gateway's response envelope:
/// `{"success":true,"data":...,"message":...}` or
/// `{"success":false,"message":...,"code":...,"details":{...}}`.
struct envelope {
  int32_t status = 0; ///< the HTTP status it came with (0 if unknown)
  bool success = false;
  std::string data = "null"; ///< JSON text (any value)
  std::string message;
  std::string code;           ///< error code, empty on success
  std::string details = "{}"; ///< JSON text (any value)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(caf::meta::type_name("aico.envelope"), x.status, x.success, x.data,
           x.message, x.code, x.details);
}

inline bool operator==(const envelope& a, const envelope& b) {
  return std::tie(a.status, a.success, a.data, a.message, a.code, a.details)
         == std::tie(b.status, b.success, b.data, b.message, b.code,
                     b.details);
}

inline bool operator!=(const envelope& a, const envelope& b) {
  return !(a == b);
}

} // namespace aico
