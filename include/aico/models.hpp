// aico client library: the value types a host sees (messages, users, the
// gateway's status, the connection state, reads and their origin, queued
// commands). Plain std types only, no CAF or other third-party header: the
// plain C++ facade (aico/client.hpp) and CAF hosts (aico/actors.hpp, which
// adds their CAF inspect() overloads) share them.
//
// Fields that carry free-form JSON (message metadata, user preferences as
// sent by the gateway) are kept as compact JSON text. Durations are
// std::chrono::nanoseconds (what CAF calls caf::timespan), points in time
// std::chrono::system_clock time points of nanoseconds (caf::timestamp).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "aico/errors.hpp"
#include "aico/export.hpp"

namespace aico {

/// Durations in the public API (the same type as caf::timespan).
using duration = std::chrono::duration<int64_t, std::nano>;
/// Points in time in the public API (the same type as caf::timestamp).
using time_point = std::chrono::time_point<std::chrono::system_clock, duration>;


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

inline bool operator==(const system_update_event& a,
                       const system_update_event& b) {
  return std::tie(a.update_id, a.status, a.version, a.timestamp)
         == std::tie(b.update_id, b.status, b.version, b.timestamp);
}

inline bool operator!=(const system_update_event& a,
                       const system_update_event& b) {
  return !(a == b);
}

// -- connection and session ------------------------------------------------------

/// The transports (the default failover order is ipc, ws, http; grpc is
/// used only where the order names it).
enum class transport_mode : uint8_t { ipc = 0, ws = 1, http = 2, grpc = 3 };

/// "ipc", "ws", "http" or "grpc".
AICO_API const char* to_string(transport_mode m);

/// Parses "ipc", "ws", "http" or "grpc"; false on anything else.
AICO_API bool from_string(const std::string& s, transport_mode& out);

/// The engine's observable connection state.
enum class link_state : uint8_t {
  connecting = 0, ///< first connect in progress, nothing up yet
  connected,      ///< an IPC or WebSocket transport is active (mode, since)
  degraded,       ///< the active transport is a degraded one (by default HTTP)
  reconnecting,   ///< nothing up; next attempt in next_attempt_in
  offline,        ///< stopped or every transport disabled/failed (reason)
  auth_expired,   ///< the refresh token was rejected: log in again
};

AICO_API const char* to_string(link_state s);

struct connection_state {
  link_state state = link_state::connecting;
  transport_mode mode = transport_mode::http; ///< valid if connected/degraded
  time_point since;                           ///< when this state began
  duration next_attempt_in{0};                ///< valid if reconnecting
  /// offline: why; reconnecting and degraded: the last transport that went
  /// down and why ("ws: closed by peer (1001 going away)"), empty if none
  /// did yet.
  std::string reason;
};

/// "connected{mode=ipc}" style rendering for logs and the CLI.
AICO_API std::string to_string(const connection_state& s);

/// The state as a sentence for people ("connected over http, degraded: ws:
/// closed by peer (1001 going away)"), as `aico watch` prints it.
AICO_API std::string describe(const connection_state& s);

/// The logged-in session (never contains tokens).
struct session_info {
  std::string user_id;
  std::string username;
  std::string role;
  int64_t access_expires_at = 0; ///< seconds since epoch
};

// -- reads ---------------------------------------------------------------------

/// How fresh a cached read must be.
struct read_options {
  /// Served from the cache without a request while at most this old.
  duration max_age = std::chrono::seconds(30);
  /// Always ask the gateway; the cache answers only if allow_stale.
  bool force_refresh = false;
  /// When the gateway cannot be reached, answer with the cached value of
  /// any age (flagged stale in read_origin). False: the error is the answer
  /// (with force_refresh: never from the cache, e.g. `history --refresh`).
  bool allow_stale = true;
};

/// Where a read's value came from.
struct read_origin {
  bool from_cache = false;
  /// Older than max_age, served because the gateway could not be reached.
  bool stale = false;
  duration age{0};
};

// -- chat ----------------------------------------------------------------------

/// A message to send.
struct outgoing_message {
  /// Idempotency key (1-128 of [A-Za-z0-9_.:-]); empty = generated.
  std::string id;
  /// Empty or "current" = the user's current conversation.
  std::string conversation_id;
  std::string content;
  std::string type = "text";
  std::string metadata = "{}"; ///< JSON object text
  /// How long queueing it durably may take at most (the caller's deadline,
  /// carried down to the queue file); 0 = the engine's request_timeout.
  /// The repository answers within it (plus a grace of about a second); an
  /// answer it cannot give in time is an error with code "outcome_unknown"
  /// naming the message id, never a false "not queued".
  duration timeout{0};
};

struct history_query {
  /// Empty or "current" = the user's current conversation.
  std::string conversation_id;
  /// 0 = the latest `limit` messages; else the first `limit` after it.
  uint64_t since = 0;
  int32_t limit = 50; ///< 1-500
  read_options read;
};

struct history_result {
  history_page page;
  read_origin origin;
};

// -- user and system reads --------------------------------------------------------

struct user_result {
  user value;
  read_origin origin;
};

struct family_result {
  family value;
  read_origin origin;
};

struct health_result {
  system_health value;
  read_origin origin;
};

// -- offline queue -----------------------------------------------------------------

/// What a queued command does.
enum class command_kind : uint8_t {
  send_message = 0,
  mark_read,
  update_preferences,
  generic,
};

inline const char* to_string(command_kind x) {
  switch (x) {
    case command_kind::send_message:
      return "send_message";
    case command_kind::mark_read:
      return "mark_read";
    case command_kind::update_preferences:
      return "update_preferences";
    default:
      return "generic";
  }
}

/// One command of the durable offline queue (sends, mark-read, preference
/// updates), as listed by the queue.
struct queue_entry {
  int64_t seq = 0; ///< local order, never reused; the handle for retry/drop
  std::string idempotency_key;
  command_kind kind = command_kind::generic;
  std::string lane;
  std::string method;
  std::string path;
  std::string body;
  int64_t created_at_ms = 0;      ///< wall clock, ms since the Unix epoch
  int32_t attempts = 0;           ///< sends since enqueue / last reset
  int64_t next_attempt_at_ms = 0; ///< not before (0 = at once)
  /// Storage state: "pending", "in_flight" or "parked".
  std::string state;
  /// queued | sending | retrying | failed (derived from state and the last
  /// error: pending with an error = retrying).
  std::string status;
  /// The last failure, if any (class `unknown` with an empty message if
  /// none).
  error_class last_error_class = error_class::unknown;
  std::string last_error;
  std::string parked_reason; ///< why it failed permanently (if parked)
};

} // namespace aico
