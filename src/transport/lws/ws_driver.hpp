// aico engine: the WebSocket (libwebsockets, JSON text frames) driver of the
// generic transport actor (src/transport/driver.hpp; docs/protocol.md
// "WebSocket frames").
//
// * open(gen, token): a connection numbered gen on the process' shared
//   service thread (src/transport/lws/ws_loop); a non-empty token goes into
//   the upgrade's Authorization header, which subscribes at once (live).
//   The handshake completing is link_up; a failed connect or a refused
//   upgrade ("HTTP 401", "HTTP 503") or a close by the peer is link_lost
//   with that reason (never containing the token).
// * send: {"type":"request","id","method","path","body"}; a body that is
//   not valid JSON is answered here with 400 bad_json, a frame over 1 MiB
//   with 413 payload_too_large (as the gateway would). A call token that
//   differs from the connection's goes out as an auth frame first (the
//   gateway handles frames in order). Responses are matched by id; an
//   {"type":"error","id"} for a request is its reply (400 bad_frame).
// * subscribe: an auth frame {"type":"auth","id":"auth-s<sub>","token",
//   "since"}; auth_ok / error for it is `subscribed`. Ids starting with
//   "auth-" are reserved. unsubscribe: nothing (a connection cannot be
//   un-authenticated; the owner stops forwarding events).
// * heartbeat: {"type":"ping","id":"hb-N"}; anything received is a sign of
//   life.
// Capabilities: heartbeat, subscribes_on_open, wire ids.
#pragma once

#include <memory>

#include "src/transport/config.hpp"
#include "src/transport/driver.hpp"

namespace aico::ws_link {

/// Never throws: a bad URL or a service that could not start is reported
/// by unusable().
std::unique_ptr<transport::driver>
make_ws_driver(const ws_transport_config& cfg, transport::driver_events events);

} // namespace aico::ws_link
