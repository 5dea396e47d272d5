// aico engine: the interface every transport actor (HTTP, WebSocket, IPC)
// offers, and their factories. Behaviour lives in actors/<x>_transport.cpp,
// the library wrappers in src/transport/<lib>/.
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

#include "src/transport/tls_options.hpp"

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
  caf::replies_to<request_atom, api_call, caf::timespan>::with<api_reply>>;

/// Settings shared by all transports.
struct transport_config {
  /// Time allowed for establishing the link.
  caf::timespan connect_timeout = std::chrono::seconds(5);
  /// Interval of liveness pings (WS, IPC).
  caf::timespan ping_interval = std::chrono::seconds(30);
  /// No traffic (pong or anything else) for this long = dead peer -> down.
  /// Pings go at most every half of it, so the default (twice the ping
  /// interval, as SignalR's server timeout) keeps the 30 s ping and lets one
  /// ping go unanswered; a closed connection is noticed at once anyway.
  caf::timespan dead_peer_timeout = std::chrono::seconds(60);
};

/// HTTP: libcurl multi, keep-alive reuse; events via SSE (/api/v1/events).
struct http_transport_config : transport_config {
  std::string base_url = "http://127.0.0.1:8771"; ///< without /api/v1
  int max_connections = 8; ///< per host
  /// For https:// URLs: CA file/dir, SPKI pin, client certificate and key
  /// (src/transport/tls_options.hpp). The certificate is always verified
  /// unless tls.insecure_skip_verify (development only, warned about).
  transport::tls_options tls;
};

/// WebSocket: libwebsockets client.
struct ws_transport_config : transport_config {
  std::string url = "ws://127.0.0.1:8771/api/v1/ws";
  /// For wss:// URLs, as http_transport_config::tls.
  transport::tls_options tls;
};

/// IPC: cppzmq DEALER (Lazy Pirate: a lost reply closes and reopens the
/// socket).
struct ipc_transport_config : transport_config {
  std::string endpoint; ///< e.g. ipc:///path/gateway.ipc
  /// After ZeroMQ reports the connection lost, how long at most to wait for
  /// its own reconnect before the link is declared down. A reconnect that is
  /// refused (nothing listening: `ipc: down`, gateway stopped) is down at
  /// once, 30-60 ms after the loss (libzmq's reconnect interval plus its
  /// jitter).
  caf::timespan reconnect_grace = std::chrono::milliseconds(500);
  /// CurveZMQ (docs/security.md): the gateway's public key (Z85, 40
  /// characters; the gateway's DATA_DIR/ipc-curve.pub). Empty = no CURVE
  /// (allowed for ipc:// only; the profile builder refuses tcp:// without).
  std::string curve_server_key;
  /// This client's key pair (Z85); its public key must be in the gateway's
  /// allow-list. Empty: taken from curve_key_file if set, else a fresh
  /// pair per socket.
  std::string curve_public_key;
  std::string curve_secret_key;
  /// File holding this client's key pair (created 0600 on first use by the
  /// transport; see ipc_link::load_or_create_client_keys).
  std::string curve_key_file;
};

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
