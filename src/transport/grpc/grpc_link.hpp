// aico engine: the gRPC client loop of the gRPC transport (CAF-free).
//
//   owner ──open/close/send/subscribe (thread-safe calls)──▶ grpc_link
//   owner ◀── handlers: reply / send failed / subscribed / event /
//             stream ended / link up-lost ── (grpc++ callback threads and
//             one channel-state watcher thread)
//
// In the style of src/transport/zmq/dealer_loop.hpp. Channels are numbered
// by the owner ("generation"): open(gen) drops the current channel
// (cancelling what was in flight on it) and creates a fresh one to `target`;
// everything is reported with the generation of the channel it came from,
// and a send or subscribe for another generation than the current channel's
// is not sent (reported as failed, `stale_generation`).
//
// Reconnects: gRPC reconnects a channel by itself; its backoff is bounded
// here (GRPC_ARG_INITIAL/MIN/MAX_RECONNECT_BACKOFF_MS from link_options), so
// a door that comes back is found within `reconnect_max` -- but the owner
// (the supervisor) stays the one that decides on failover and re-subscribing:
// the link reports the channel's connectivity as up (READY) / lost (READY
// left: the door went down, the connection broke or keepalive pings went
// unanswered) and never re-opens a stream by itself.
//
// Calls use the callback API of grpc++ (no thread of ours per call): each
// call's deadline is the call's absolute deadline, as a gRPC deadline; an
// unary call on a channel that is not connected fails at once (UNAVAILABLE,
// no wait-for-ready), so the owner can fail over.
//
// This header names no gRPC or protobuf type; grpc_link.cpp is the only
// engine file that includes grpc++. Handlers run on grpc++'s threads: keep
// them short and non-blocking (e.g. caf::anon_send); they may call open,
// close, send and subscribe, never stop(). No handler runs after stop()
// returned.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/transport/tls_options.hpp"

namespace aico::grpc_link {

struct link_options {
  /// gRPC's own reconnect backoff, bounded (GRPC_ARG_INITIAL_/MIN_/
  /// MAX_RECONNECT_BACKOFF_MS).
  std::chrono::milliseconds reconnect_initial{100};
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{1000};
  /// HTTP/2 keepalive pings: a gateway that does not answer one within
  /// `keepalive_timeout` counts as lost. 0 = no pings.
  std::chrono::milliseconds keepalive_interval{5000};
  std::chrono::milliseconds keepalive_timeout{5000};
  /// Largest reply accepted.
  std::size_t max_message_bytes = 4 * 1024 * 1024;
  /// TLS (grpcs): off unless `use_tls`. Supported: `ca_file` (else the
  /// system store), `client_cert` + `client_key` (mutual TLS). Not
  /// supported by grpc++'s credentials: `ca_dir`, `pinned_public_key` and
  /// `insecure_skip_verify` -- open() refuses a channel that asks for them
  /// (on_open_failed) rather than connecting without the check.
  bool use_tls = false;
  transport::tls_options tls;
  /// TLS: the name the certificate must carry when it is not the target's
  /// host (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG); empty = the target's host.
  std::string tls_server_name;
};

/// One API call (the same fields as the engine's api_call, without CAF).
struct request {
  std::string method;
  std::string path;  ///< relative to /api/v1, with query
  std::string body;  ///< JSON text, may be empty
  std::string token; ///< bearer access token, empty = none
};

/// The envelope answer of a call (any HTTP status).
struct reply {
  int32_t status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Why a call or stream failed below the API.
enum class failure {
  deadline,         ///< the call's deadline passed (DEADLINE_EXCEEDED)
  unavailable,      ///< not connected, or the connection broke (UNAVAILABLE)
  unauthenticated,  ///< Events: the token was refused (UNAUTHENTICATED)
  too_large,        ///< a size limit (RESOURCE_EXHAUSTED): too big, or a
                    ///< slow event reader cut off
  cancelled,        ///< closed/reopened by the owner (CANCELLED)
  stale_generation, ///< not sent: `gen` is not the current channel's
  other,            ///< anything else (INTERNAL, UNKNOWN, ...)
};

/// "deadline", "unavailable", ...
const char* to_string(failure f);

struct event {
  uint64_t seq = 0;
  std::string topic;
  std::string data; ///< JSON text
  uint64_t stream = 0; ///< the owner's tag of its stream (subscribe)
};

/// The acknowledgement of a subscription (docs/protocol.md, gRPC door).
struct subscribed {
  std::string user_id;
  bool replay = false; ///< a `since` > 0 was asked
  uint64_t since = 0;
  bool complete = true;
  uint64_t replayed = 0;
  uint64_t stream = 0; ///< the owner's tag of its stream (subscribe)
};

/// How an event stream ended (on_stream_ended).
struct stream_end {
  uint64_t stream = 0;   ///< the owner's tag of the stream (subscribe)
  bool was_open = false; ///< its `Subscribed` had arrived
  bool ok = false;       ///< ended with gRPC status OK (by the gateway)
  failure f = failure::other; ///< how it failed (unless ok)
  int32_t status = 0;    ///< the gateway's `aico-status` (HTTP status), 0 = none
  std::string code;      ///< the gateway's `aico-code`, "" = none
  std::string why;       ///< gRPC's text
};

struct link_handlers {
  /// The answer of call `id` on channel `gen`.
  std::function<void(uint64_t gen, uint64_t id, reply&&)> on_reply;
  /// Call `id` got no answer: why, and gRPC's text.
  std::function<void(uint64_t gen, uint64_t id, failure,
                     const std::string& why)>
    on_send_failed;
  /// The event stream of channel `gen` is open (first message).
  std::function<void(uint64_t gen, subscribed&&)> on_subscribed;
  std::function<void(uint64_t gen, event&&)> on_event;
  /// The event stream of channel `gen` ended (never for one the owner
  /// replaced or closed). `code` is the gateway's envelope code when it
  /// sent one (e.g. "token_expired", "unavailable"), else "".
  std::function<void(uint64_t gen, failure, const std::string& code,
                     const std::string& why)>
    on_stream_end;
  /// Channel `gen` became connected (true) or lost its connection (false).
  std::function<void(uint64_t gen, bool up)> on_link;
  /// Channel `gen` could not be created (bad target, unsupported or
  /// unreadable TLS settings).
  std::function<void(uint64_t gen, const std::string& why)> on_open_failed;
  /// If set, called instead of on_stream_end, with everything known about
  /// the end (the stream's tag, whether it had been accepted, aico-status).
  std::function<void(uint64_t gen, stream_end&&)> on_stream_ended;
  /// Channel `gen` failed to connect before it was ever up (its state went
  /// TRANSIENT_FAILURE: refused, unreachable, TLS handshake failed); once
  /// per channel. gRPC keeps retrying with its bounded backoff, so a door
  /// that comes up is still found (on_link up follows).
  std::function<void(uint64_t gen, const std::string& why)> on_connect_failed;
};

class grpc_link {
public:
  /// Starts the channel-state watcher thread (no channel yet). Throws
  /// std::runtime_error if that fails.
  grpc_link(link_options opts, link_handlers handlers);
  ~grpc_link(); ///< stop()s

  grpc_link(const grpc_link&) = delete;
  grpc_link& operator=(const grpc_link&) = delete;

  /// Drops the current channel (cancelling its calls and stream) and
  /// creates channel `gen` to `target` ("HOST:PORT"); it connects at once.
  void open(uint64_t gen, std::string target);

  /// Drops the current channel (no-op without one).
  void close();

  /// Sends call `id` on channel `gen`, to be answered by `deadline` (a
  /// default time_point = no deadline).
  void send(uint64_t gen, uint64_t id, request req,
            std::chrono::steady_clock::time_point deadline);

  /// Opens the event stream of channel `gen` with `token`, replaying after
  /// `since` (0 = live only); replaces the stream open on it, if any.
  /// `stream` is the owner's tag of it, given back with its events,
  /// its acknowledgement and its end.
  void subscribe(uint64_t gen, std::string token, uint64_t since,
                 uint64_t stream = 0);

  /// Cancels call `id` of the current channel (its deadline passed for the
  /// owner): it ends with on_send_failed `cancelled`, if it was still open.
  void cancel(uint64_t id);

  /// Ends the event stream of the current channel, if any (no on_stream_end).
  void unsubscribe();

  /// Cancels everything, waits for grpc++'s callbacks to finish (briefly),
  /// joins the watcher. Idempotent. Never call it from a handler.
  void stop();

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace aico::grpc_link
