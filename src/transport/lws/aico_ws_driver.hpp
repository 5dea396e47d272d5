// aico engine: the WebSocket driver of the `aico` wire profile (issue 14,
// docs/profiles.md "The WebSocket part"): the real AICO backend's own
// WebSocket adapter (../shared/design/aico-backend-wire.md 3.1), which
// carries no chat data. So "ws" in this profile means: API calls through a
// call driver it owns (the profile's HTTP path: encrypted REST), and the
// link's liveness from the backend's WebSocket. Chosen by the registry's
// spawn function for engine_config::profile == "aico"; nothing above the
// driver knows.
//
// * open(gen, token): the call driver's open(gen, token), and a WebSocket
//   connection numbered gen to the backend's own port (no Authorization
//   header: the backend reads none). The backend's `welcome` frame is
//   link_up (a server that upgrades but never welcomes runs into the
//   owner's connect deadline).
// * subscribe(gen, sub, token, since): the backend's `auth` frame
//   {"type":"auth","token"}, and subscribed{ok} at once (reported from the
//   owner's thread, an exception to driver.hpp's rule that only means an
//   anon_send from there): this link's events are the call driver's (the
//   chunks of the user's own sends) and do not depend on the socket's auth.
//   The error "Authentication failed" for it is a later subscribed{!ok}
//   (answers come in the order the auth frames went out). `since` is
//   ignored: the backend has no replay.
//   The backend ties the token to the connection and revokes its session
//   when the connection ends, so a token authenticates ONE connection: a
//   reconnect's auth with the previous token is refused, and the
//   capability token_per_connection makes the owner ask the engine for a
//   fresh token (the supervisor refreshes through the token manager and
//   hands it to the transports, which authenticate again). Liveness does
//   not depend on it: heartbeats are answered without auth.
// * ping: {"type":"heartbeat"}; heartbeat_ack (and anything else) is a sign
//   of life. The backend closes a socket without a heartbeat for 90 s
//   (checked every 30 s): max_ping_interval is 30 s whatever the config.
// * send / cancel: the call driver's (its reply, send_failed and
//   message.stream events come back through this driver, same gen). Its
//   link_lost and security_failure are this link's too (REST unreachable,
//   the server key changed); its link_up is not needed (the welcome is).
// * push, for when the backend gets it: a `broadcast` frame {topic, data}
//   is an event_frame (sub 0, seq 0). Nothing sends one today.
#pragma once

#include <functional>
#include <memory>

#include "src/transport/config.hpp"
#include "src/transport/driver.hpp"

namespace aico::ws_link {

/// Builds the driver that carries the API calls (with the events it
/// reports to).
using call_driver_factory = std::function<std::unique_ptr<transport::driver>(
  transport::driver_events)>;

/// Never throws: a bad URL, a service that could not start or a call
/// driver that could not be built is reported by unusable().
std::unique_ptr<transport::driver>
make_aico_ws_driver(const ws_transport_config& cfg,
                    transport::driver_events events,
                    call_driver_factory calls);

/// The frames of the backend's WebSocket adapter (pure; for tests too).
namespace aico_ws {
std::string auth_frame(const std::string& token);
std::string heartbeat_frame();
} // namespace aico_ws

} // namespace aico::ws_link
