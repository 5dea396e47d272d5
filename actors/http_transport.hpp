// aico engine: the HTTP transport actor's implementation type and state
// (internal to actors/http_transport.cpp and its tests; users only see
// aico::transport_actor and aico::spawn_http_transport).
//
//   connect ──▶ GET /api/v1/health (connect_timeout) ──any status──▶ up
//   request ──▶ {base}/api/v1{path} on the curl loop ──▶ api_reply | error
//   token   ──▶ GET /api/v1/events (SSE) ──▶ event(server_event) to listener
//
// The curl loop thread talks back with anon_send through a weak address.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "caf/all.hpp"

#include "messages/transport.hpp"
#include "src/core/link_session.hpp"

namespace aico {

namespace http {
class loop; // src/transport/curl/http_loop.hpp
} // namespace http

/// The outcome of one exchange on the curl loop (thread -> actor).
struct http_result {
  uint8_t fail = 0;  ///< http::failure
  std::string error; ///< libcurl's text, never contains tokens
  int32_t status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_result& x) {
  return f(caf::meta::type_name("aico.http_result"), x.fail, x.error,
           x.status, x.body, x.headers);
}

/// Messages the transport sends itself (timers, loop-thread callbacks).
using http_transport_internal = caf::typed_actor<
  /// A request or the connect probe (key) completed.
  caf::reacts_to<io_atom, uint64_t, http_result>,
  /// The link's one timer (safety nets of the connect probe and of the
  /// requests): a deadline may have passed.
  caf::reacts_to<timeout_atom>,
  /// Event stream `gen` got its response header with this status and
  /// Aico-Replay header ("" if absent).
  caf::reacts_to<event_atom, uint64_t, int32_t, std::string>,
  /// Event stream `gen` delivered an event.
  caf::reacts_to<event_atom, uint64_t, server_event>,
  /// Event stream `gen` ended (or failed).
  caf::reacts_to<event_atom, uint64_t, http_result>,
  /// Reopen event stream `gen` (after a delay).
  caf::reacts_to<probe_atom, uint64_t>>;

using http_transport_impl
  = transport_actor::extend_with<http_transport_internal>;

struct http_transport_state {
  enum class sse_phase : uint8_t { off, opening, open, waiting };

  struct pending_request {
    caf::typed_response_promise<api_reply> rp;
    std::string id;       ///< api_call id
    uint64_t transfer = 0; ///< loop transfer id
  };

  using time_point = caf::actor_clock::time_point;

  http_transport_config cfg;
  transport_listener_actor listener;
  /// The link: status, the connect probe's deadline (connect timeout +
  /// safety grace), the requests in flight by key (deadline = time left +
  /// safety grace; no heartbeat: the event stream has its own keep-alive).
  link_session<pending_request> link{link_timing{}};
  std::string token;

  uint64_t next_key = 1;
  uint64_t connect_key = 0;      ///< key of the connect probe in flight
  uint64_t connect_transfer = 0; ///< its transfer id

  // Server-Sent Events
  sse_phase sse = sse_phase::off;
  uint64_t sse_gen = 0;      ///< current stream generation (stale otherwise)
  uint64_t sse_transfer = 0; ///< loop transfer id of the stream
  std::string sse_token;     ///< the token the stream was opened with
  uint64_t sse_since = 0;    ///< its Last-Event-ID (0 = none)
  /// Events up to this seq were delivered: a stream resumes from it.
  uint64_t resume_seq = 0;
  int sse_tries = 0;         ///< consecutive reopen attempts
  time_point sse_opened_at; ///< on the actor clock

  /// Last member: destroyed first. Its destructor stops and joins the loop
  /// thread (promptly: it wakes up on curl_multi_wakeup).
  std::unique_ptr<http::loop> loop;

  http_transport_state();
  ~http_transport_state();

  static constexpr const char* name = "aico.http-transport";
};

} // namespace aico
