// aico engine: value types exchanged between the engine's actors.
// Every type has an inspect() overload so it is a valid CAF 0.17 message type.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "caf/all.hpp"

#include "aico/actors.hpp" // transport_mode, connection_state, session_info

namespace aico {

/// One call of the gateway's logical API (docs/protocol.md), the same on
/// every transport.
struct api_call {
  /// Correlation id, unique per call; kept when the call is re-sent on
  /// another transport after a failover.
  std::string id;
  std::string method; ///< GET, POST, PUT, DELETE
  std::string path;   ///< relative to /api/v1, with query
  std::string body;   ///< JSON text, may be empty
  std::string token;  ///< bearer access token, empty = none
  /// The one absolute deadline of the call (actor clock, i.e. steady_clock;
  /// default = none). The supervisor sets it once when the call enters the
  /// engine; every send of the call (failover, refresh) and the transport
  /// answer by it.
  std::chrono::steady_clock::time_point deadline{};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_call& x) {
  return f(caf::meta::type_name("aico.api_call"), x.id, x.method, x.path,
           x.body, x.token, x.deadline);
}

/// The gateway's answer, whatever its status (transports deliver 4xx/5xx as
/// replies; the supervisor turns non-2xx into classified errors).
struct api_reply {
  std::string id;
  int32_t status = 0;
  std::string body; ///< JSON envelope text
  std::map<std::string, std::string> headers;
  transport_mode via = transport_mode::http;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_reply& x) {
  return f(caf::meta::type_name("aico.api_reply"), x.id, x.status, x.body,
           x.headers, x.via);
}

/// A server-pushed event (topic + JSON data).
struct server_event {
  std::string topic;
  std::string data; ///< JSON text
  uint64_t seq = 0;
  transport_mode via = transport_mode::http;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, server_event& x) {
  return f(caf::meta::type_name("aico.server_event"), x.topic, x.data, x.seq,
           x.via);
}

/// How the engine's event stream went (supervisor, `stats_atom`).
struct event_stats {
  uint64_t delivered = 0;  ///< events handed to the watchers
  uint64_t duplicates = 0; ///< dropped: their seq was delivered already
  uint64_t malformed = 0;  ///< dropped: data not an object (message, ...)
  uint64_t resumes = 0;    ///< replay outcomes after a resubscribe
  uint64_t gaps = 0;       ///< resumes the gateway could not fill
  uint64_t recovered = 0;  ///< messages delivered from a history catch-up
  uint64_t last_seq = 0;   ///< seq of the last event delivered (0 = none)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_stats& x) {
  return f(caf::meta::type_name("aico.event_stats"), x.delivered,
           x.duplicates, x.malformed, x.resumes, x.gaps, x.recovered,
           x.last_seq);
}

/// What a transport actor reports about its own link.
enum class transport_status : uint8_t {
  idle = 0,   ///< not connected, not trying (initial, or after disconnect)
  connecting, ///< connect in progress
  up,         ///< connected: requests can be sent
  down,       ///< the connection failed or was lost (reason given)
};

const char* to_string(transport_status s);

/// Authentication state published by the token manager.
enum class auth_state : uint8_t {
  logged_out = 0,
  logged_in,
  refreshing,
  auth_expired, ///< refresh token rejected: a new login is required
};

const char* to_string(auth_state s);

} // namespace aico
