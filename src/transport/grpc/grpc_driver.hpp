// aico engine: the gRPC (grpc++, the gateway's gRPC door) driver of the
// generic transport actor (src/transport/driver.hpp; docs/protocol.md "gRPC
// door"), over the CAF-free client loop src/transport/grpc/grpc_link.
//
// * open(gen): a fresh channel numbered gen to the endpoint ("HOST:PORT",
//   "grpc://HOST:PORT", "grpcs://HOST:PORT" = TLS); it connects at once.
//   The channel becoming READY is link_up; READY left (the door went down,
//   the connection broke, keepalive pings went unanswered) is link_lost; a
//   first connect that fails (TRANSIENT_FAILURE before ever READY: refused,
//   unreachable, TLS handshake) is link_lost at once, so the supervisor can
//   fail over without waiting for the connect timeout. gRPC's own reconnect
//   backoff is bounded in grpc_link; the owner never uses a channel again
//   after link_lost (a reconnect is a new open), so the supervisor stays the
//   one owner of reconnect policy.
// * send: a unary Call (method, path, body; the token as `authorization:
//   Bearer` metadata) with the call's absolute deadline as its gRPC
//   deadline. Matched by the owner's key (no wire ids). Every API answer,
//   4xx/5xx included, is a reply; a gRPC error status means the call never
//   reached the API: DEADLINE_EXCEEDED is send_failed `timeout`, UNAVAILABLE
//   `network` with link_down (the door is not there: fail over), anything
//   else `unknown`. cancel(handle) cancels the Call.
// * subscribe: an Events stream (EventsRequest{since}, the token in the
//   metadata) tagged with the owner's subscription number; its first
//   message `Subscribed` is `subscribed` (replay complete = replay &&
//   complete, exactly as the WebSocket driver's auth_ok), then event_frame
//   per Event. A stream that ends is subscription_lost: kind 0 with the
//   gateway's `aico-status` for an UNAUTHENTICATED end (401: the token was
//   refused or revoked; the owner waits for a new token) or an OK end
//   (status 200), `network` for UNAVAILABLE / CANCELLED, `timeout` for
//   DEADLINE_EXCEEDED, `unknown` otherwise (e.g. RESOURCE_EXHAUSTED, a slow
//   consumer cut off: reopened with the resume point). unsubscribe cancels
//   the stream.
// * heartbeat: none in the owner's sense. HTTP/2 keepalive pings in
//   grpc_link notice a dead peer: a ping every `ping_interval`, the
//   connection is lost when one is not answered within `dead_peer_timeout`
//   minus `ping_interval` (at least 1 s), so a silent gateway is noticed
//   after about `dead_peer_timeout`, as with the heartbeat transports. Of
//   the link session's timing only `connect_timeout` and the call
//   deadlines apply.
// Capabilities: separate_event_stream (the Events stream ends on its own),
// refresh_keeps_subscription (the gateway keeps a stream open while its
// token merely expires), no wire ids, own_timeout_grace 250 ms (the gRPC
// deadline answers first; the owner's deadline is the safety net).
#pragma once

#include <memory>

#include "src/transport/grpc/grpc_config.hpp"
#include "src/transport/driver.hpp"

namespace aico::grpc_link {

/// Never throws: a bad endpoint or a link that could not start is reported
/// by unusable().
std::unique_ptr<transport::driver>
make_grpc_driver(const grpc_transport_config& cfg,
                 transport::driver_events events);

/// Splits "HOST:PORT", "grpc://HOST:PORT" or "grpcs://HOST:PORT" into the
/// target grpc++ takes ("HOST:PORT") and whether it is TLS. False with a
/// sentence in `error` for anything else ("expected HOST:PORT ..."; the
/// driver and the config loader say whose endpoint it is).
bool parse_grpc_endpoint(const std::string& endpoint, std::string& target,
                         bool& tls, std::string& error);

} // namespace aico::grpc_link
