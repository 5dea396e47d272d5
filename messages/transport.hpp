// aico engine: the interface every transport actor (HTTP, WebSocket, IPC)
// offers, and their factories. One generic actor (actors/transport_actor.cpp)
// implements it for every protocol, hosting the protocol's driver
// (src/transport/driver.hpp, src/transport/<lib>/<x>_driver); the spawn
// functions below and the registry (actors/transport_registry.cpp) pair them.
//
//   supervisor ──connect/disconnect/token/request──▶ transport actor ──▶ I/O thread
//        ▲                                                │
//        └──────── tstate(mode, status, reason) / event ◀─┘
//
// A transport does not reconnect by itself: it reports `down` and the
// supervisor decides (backoff, failover). Requests while not `up` fail at once
// with error_class::network.
#pragma once

#include <chrono>
#include <string>

#include "caf/all.hpp"

#include "src/transport/config.hpp"
#include "src/transport/grpc/grpc_config.hpp"

#include "messages/type_ids.hpp"

namespace aico {

/// Whoever a transport reports to (the supervisor).
using transport_listener_actor = caf::typed_actor<
  /// The transport's link changed. `reason` explains `down` ("" otherwise).
  caf::reacts_to<tstate_atom, transport_mode, transport_status, std::string>,
  /// A server-pushed event arrived on this transport.
  caf::reacts_to<event_atom, server_event>>;

/// The common transport interface.
using transport_actor = caf::typed_actor<
  /// Starts connecting. Progress is reported with tstate: connecting, then
  /// up or down. While connecting: no-op. While up: reports up again.
  caf::reacts_to<connect_atom>,
  /// Closes the link; pending requests fail with network; reports idle.
  caf::reacts_to<disconnect_atom>,
  /// (drain): with `true`, reports idle at once and refuses new requests,
  /// but keeps the connection until the requests in flight are answered or
  /// their deadlines pass, then closes it (a fail-back replaced this
  /// transport: the server may have taken those requests, so they are not
  /// failed for a re-send elsewhere). `false` is the plain disconnect. A
  /// connect while draining keeps the connection (reports up again).
  caf::reacts_to<disconnect_atom, bool>,
  /// Sets the access token used for event subscription (WS auth frame, IPC
  /// Subscribe, SSE Authorization). Empty = no events. The same token again
  /// changes nothing (no second subscribe).
  caf::reacts_to<token_atom, std::string>,
  /// (seq, now): the engine has delivered the events up to `seq`. Every
  /// subscription from now on resumes from it (IPC Subscribe.since, the WS
  /// auth frame's since, SSE Last-Event-ID) unless the transport forwarded
  /// later ones itself; with `now`, a live subscription resubscribes from
  /// exactly `seq` at once (events the transport forwarded while it was not
  /// the active one were dropped). After a resubscribe with a seq > 0 the
  /// transport forwards one event of topic `events.replay` (seq 0, data
  /// {"since","complete"}) before the replayed ones: complete false when the
  /// gateway could not replay everything (or has no replay).
  caf::reacts_to<resume_atom, uint64_t, bool>,
  /// Sends one API call by its deadline: the call's own (api_call::deadline,
  /// set by the supervisor) if it has one, else the time left given here
  /// (whichever is earlier). Replies with the gateway's answer whatever its
  /// status, or an error_class::network / timeout error.
  caf::replies_to<request_atom, api_call, caf::timespan>::with<api_reply>,
  /// A routed call (the supervisor's one-hop path, delegated by it so the
  /// answer goes straight to the original requester): (call with its
  /// deadline set, return address, slot, auth). A final answer (a reply
  /// passed through check_reply, a timeout, any non-network error) goes to
  /// the requester directly, from the I/O thread on the happy path. What
  /// the call router decides instead (a network error, link down, the
  /// transport stopping, a 401 of an authenticated call) goes back to the
  /// return address as (request_atom, call, slot, auth, caf::error) or
  /// (request_atom, call, slot, auth, api_reply) from the original
  /// requester with its request id, so that the return address answers it.
  caf::replies_to<request_atom, api_call, caf::actor, uint64_t,
                  bool>::with<api_reply>>;

transport_actor spawn_http_transport(caf::actor_system& sys,
                                     http_transport_config cfg,
                                     transport_listener_actor listener);

transport_actor spawn_ws_transport(caf::actor_system& sys,
                                   ws_transport_config cfg,
                                   transport_listener_actor listener);

transport_actor spawn_ipc_transport(caf::actor_system& sys,
                                    ipc_transport_config cfg,
                                    transport_listener_actor listener);

} // namespace aico
