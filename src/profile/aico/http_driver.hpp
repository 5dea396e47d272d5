// aico wire profile: the HTTP driver of the generic transport actor
// (src/transport/driver.hpp) for the real AICO backend. The registry
// (actors/transport_registry.cpp) spawns it instead of the gateway's HTTP
// driver when http_transport_config::profile is "aico"; everything above the
// transports (repositories, queue, cache, breakers, retry, supervisor, token
// manager) sees the reference gateway's envelopes and events as before.
//
// * open(gen): a fresh aico_http_session (the channel is handshaken again
//   after every reconnect; the conversation is kept), then the clear
//   GET /api/v1/health within connect_timeout: a 2xx answer is link_up, any
//   other answer or a failure link_lost. The backend has no event stream:
//   the link is judged by this probe, by the supervisor's periodic health
//   check (GET /health, mapped to the same path) and by the calls (a network
//   failure of a call takes it down).
// * send: the logical call through aico_http_session (encryption, login /
//   refresh mapping, NDJSON send) bounded by the call's time left; the answer
//   is the engine's envelope (reply, matched by key). Local answers (logout,
//   /users/me) and refusals ("the aico profile has no equivalent of …") come
//   back at once (send_result::answer). Errors: see error_answer() below.
// * The chunks of a streamed send are event_frames of topic
//   `message.stream` (the reference gateway's stream_chunk JSON, seq_no
//   counting the reply's chunks from 0), in arrival order; the model's
//   inner monologue (`thinking`) is a message of its own: the reply's id
//   with ":thinking", its own seq_no. Once the stream is complete, the
//   stored messages follow as `message` events, as the gateway pushes them:
//   the user's own, the thinking (metadata {"aico_thinking":true}) if any,
//   the reply; then the send's answer.
// * subscribe: there is nothing to subscribe to (no pushed events on the
//   real backend); it is accepted at once (`subscribed`, no replay) so the
//   stream chunks of the user's own sends reach the listeners.
// * close: every transfer aborted, kept-alive connections dropped.
// Capabilities: calls matched by key, own timeouts (the owner's trail them
// by 250 ms); no heartbeat, no separate event stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "src/profile/aico/wire_errors.hpp"
#include "src/transport/config.hpp"
#include "src/transport/driver.hpp"

namespace aico::aico_profile {

/// Never throws: a loop that could not start, a bad base URL or an unusable
/// identity file is reported by unusable().
std::unique_ptr<transport::driver>
make_aico_http_driver(const http_transport_config& cfg,
                      transport::driver_events events);

/// How a wire_error reaches the engine.
struct error_delivery {
  /// true: a driver failure (send_failed of `failure`), which the engine
  /// may re-send elsewhere: only failures before the application saw the
  /// call (network, timeout without outcome_unknown).
  bool driver_failure = false;
  transport::call_failure failure = transport::call_failure::unknown;
  bool link_down = false;
  /// else: a reply with this status and the gateway's error envelope
  /// {"success":false,"message","code","details":{"aico_code",…}}.
  int32_t status = 0;
  std::string body;
};

/// The one mapping of the profile's errors onto the engine's:
/// * network (not outcome_unknown) → send_failed network, link down;
///   timeout (not outcome_unknown) → send_failed timeout;
/// * outcome_unknown (a send that may have been stored) → status 0, code
///   "outcome_unknown": class unknown, never retried or failed over (a
///   resend could store the message twice);
/// * authentication → 401 (code: missing_token → "unauthenticated",
///   else the decoder's: token_expired, invalid_token,
///   invalid_credentials, invalid_refresh_token, account_locked, …);
///   authorization → 403; validation → its 4xx status or 400;
///   server_error → its 5xx/429 status or 500; unknown → 0.
error_delivery error_answer(const wire_error& e);

} // namespace aico::aico_profile
