// aico engine: the connection supervisor's interface.
//
//                      ┌────────────── supervisor ───────────────┐
//   request ─────────▶ │ active transport (IPC > WS > HTTP)      │──▶ transport actors
//   state / watch ───▶ │ failover, backoff probes, fail-back,     │◀── tstate / event
//                      │ health checks, in-flight re-send         │
//                      └──────────────────────────────────────────┘
//   watchers ◀── state(connection_state) / event(server_event)
//
// Connects in preference order, fails over when the active transport dies
// or fails a health check, probes better transports in the background with
// exponential backoff + jitter and fails back when one passes its probes.
// Requests in flight on a dying transport are re-sent on the next one with
// the same id. Transport actors are monitored and restarted when they crash.
#pragma once

#include <chrono>
#include <functional>
#include <vector>

#include "caf/all.hpp"

#include "messages/token_manager.hpp"
#include "messages/transport.hpp"
#include "src/core/backoff.hpp"

namespace aico {

/// Receives the engine's connection state and server events. Events come
/// in seq order, each once, with no hole across reconnects, failovers and
/// token refreshes (the gateway replays after a resubscribe; where it
/// cannot, `message` events are recovered from the history and delivered
/// with seq 0). A `message`, `message.read`, `message.stream` or
/// `system.update` event whose data is not a JSON object is dropped and
/// counted (stats_atom).
using engine_listener_actor = caf::typed_actor<
  caf::reacts_to<state_atom, connection_state>,
  caf::reacts_to<event_atom, server_event>>;

using supervisor_actor = caf::typed_actor<
  /// Sends an API call on the active transport. With `true`, attaches the
  /// token manager's access token and, on a 401, refreshes once and
  /// retries. Replies with the 2xx reply, or a classified error (non-2xx
  /// statuses become errors via make_status_error). Network failures and
  /// timeouts of one transport are retried on the next while time is left.
  /// The timespan gives the call its one absolute deadline (now + timespan,
  /// or the call's own api_call::deadline if earlier), kept across sends.
  caf::replies_to<request_atom, api_call, caf::timespan, bool>::with<
    api_reply>,
  /// The current connection state.
  caf::replies_to<state_atom>::with<connection_state>,
  /// Adds a watcher (gets the current state at once, then every change and
  /// every server event).
  caf::reacts_to<watch_atom, engine_listener_actor>,
  /// Sets the token manager (for authenticated requests and event
  /// subscription); the supervisor watches its auth state.
  caf::reacts_to<auth_atom, token_manager_actor>,
  /// Starts connecting (the supervisor starts idle).
  caf::reacts_to<connect_atom>,
  /// Closes every transport; state offline("disconnected").
  caf::reacts_to<disconnect_atom>,
  /// "Check the active transport now": one health check (GET /health) on
  /// the active transport, as the periodic one; a failed check fails over.
  /// Sent by the resilient client when a circuit breaker opens. Ignored
  /// when no transport is active.
  caf::reacts_to<health_atom>,
  /// How the event stream went: delivered, duplicates and malformed events
  /// dropped, resumes and the gaps a history read had to fill.
  caf::replies_to<stats_atom>::with<event_stats>>;

/// Creates a transport actor for a mode (injectable for tests).
using transport_factory = std::function<transport_actor(
  caf::actor_system&, transport_mode, transport_listener_actor)>;

struct supervisor_config {
  /// Transports to use, best first. Default IPC, WebSocket, HTTP.
  std::vector<transport_mode> order{transport_mode::ipc, transport_mode::ws,
                                    transport_mode::http};
  http_transport_config http;
  ws_transport_config ws;
  ipc_transport_config ipc;
  /// Used only where `order` names grpc.
  grpc_transport_config grpc;
  // Code that sets what all transports share (timeouts, the wire profile,
  // the TLS options) goes through the registry's for_each_transport /
  // for_each_tls (actors/transport_registry.hpp), naming none of them.
  /// Reconnect / probe backoff (gRPC-style, jitter after the cap).
  backoff_options backoff;
  /// Health check of the active transport (GET /health).
  caf::timespan health_interval = std::chrono::seconds(30);
  caf::timespan health_timeout = std::chrono::seconds(5);
  /// Consecutive successful health probes a better transport needs before
  /// the supervisor fails back to it.
  int failback_probes = 2;
  /// Transport actors restarted more often than this within a minute are
  /// given up (state offline).
  int max_restarts_per_minute = 10;
  /// Null = the real transports from the configs above.
  transport_factory factory;
  /// The one-hop path (docs/architecture.md, "How a request flows"): a call
  /// is delegated to the active transport, which answers the caller itself
  /// and hands back to the supervisor only what the call router decides.
  /// On by default since the replaced transport drains on a fail-back (the
  /// session loss it showed before was that, docs/performance.md); off
  /// routes every call through the supervisor's router both ways.
  bool one_hop = true;
  /// With one_hop: the supervisor sends the call straight to the active
  /// transport's driver through its call lane (actors/transport_actor.hpp)
  /// instead of through the transport actor's mailbox, so that a call
  /// crosses one thread hand-off each way on the happy path (supervisor ->
  /// I/O thread -> requester). Transports whose driver cannot send from
  /// another thread take the actor's path regardless.
  bool call_lane = true;
};

supervisor_actor spawn_supervisor(caf::actor_system& sys,
                                  supervisor_config cfg);

} // namespace aico
