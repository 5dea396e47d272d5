// aico engine: the HTTP (libcurl multi loop + Server-Sent Events) driver of
// the generic transport actor (src/transport/driver.hpp; docs/protocol.md).
//
// * open(gen): GET /api/v1/health within connect_timeout on the curl loop
//   (src/transport/curl/http_loop); any HTTP answer is link_up, a failure
//   link_lost ("health check failed: ..." / "health check timed out: ...").
// * send: {base}/api/v1{path} with the time left as CURLOPT_TIMEOUT_MS and
//   the call's token as Authorization; any status is the reply (matched by
//   key). A network failure is send_failed with link_down (the gateway is
//   unreachable), a timeout send_failed (timeout).
// * subscribe: GET /api/v1/events (one SSE stream, replacing the last) with
//   Last-Event-ID = since; its 2xx header is `subscribed` (replay complete
//   = the Aico-Replay header says "complete"), its events event_frame, its
//   end subscription_lost. unsubscribe: the stream is cancelled.
// * no heartbeat: the stream has the gateway's keep-alive comments (an idle
//   stream past dead_peer_timeout + 15 s fails with timeout).
// * close: every transfer aborted, kept-alive connections dropped.
// Capabilities: separate_event_stream, refresh_keeps_subscription, calls
// matched by key, own timeouts (the owner's trail them by 250 ms).
#pragma once

#include <memory>
#include <string>

#include "src/transport/config.hpp"
#include "src/transport/driver.hpp"

namespace aico::http {

/// Never throws: a loop that could not start or a bad base URL is reported
/// by unusable().
std::unique_ptr<transport::driver>
make_http_driver(const http_transport_config& cfg,
                 transport::driver_events events);

/// {base_url}/api/v1{path}; a path that already carries /api/v1 is kept.
std::string api_url(const std::string& base_url, const std::string& path);

} // namespace aico::http
