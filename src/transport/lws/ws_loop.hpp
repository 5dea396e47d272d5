// aico engine: the libwebsockets client service of the WebSocket transport,
// shared by every loop of the process.
//
//   owners (actors) ──open/close/send (one mutex queue + lws_cancel_service)──▶ service thread
//   owners ◀──────── handlers: open / message / closed ──────────────────────── (lws_service)
//
// A ws_loop is one owner's handle on a process-wide service: ONE lws_context
// and ONE service thread for all loops (one service per TLS setting),
// created with the first loop and stopped and joined when the last loop is
// destroyed (reference-counted). A session therefore costs one fd (its
// socket) and no thread: the engine targets 10,000 idle sessions in one
// process, which a context + thread + wake-up pipe per session would not fit
// into (fd and thread limits). The service thread is the only one that ever
// touches the context or a connection; owners only queue commands and wake
// it with lws_cancel_service (thread-safe), at most once per batch: one
// wake-up drains every command queued meanwhile. Each connection is an
// object whose address is the connection's lws `user` pointer; per-loop
// options (max_message, write_chunk) and per-open ones (URL, token) stay
// with the connection. The context runs on a libev loop (epoll: a wake-up
// costs the ready connections, not all of them) and falls back to lws' own
// poll() loop if libev cannot be used (or with AICO_WS_EVENT_LOOP=poll).
// Its fd tables are sized by the process' RLIMIT_NOFILE (soft) when the
// service starts: a host that wants more sessions raises that limit before
// the first loop.
//
// Connections are numbered by the owner ("generation"). At most one per
// loop is current: open(gen) closes the current one first. Everything
// reported carries the generation of the connection it came from, and a
// send for another generation than the current connection's is dropped.
//
// This header names no libwebsockets type. Handlers run on the shared
// service thread: keep them short and non-blocking (e.g. caf::anon_send),
// since a slow handler delays every session. They are never called after
// stop() returned: stop() waits only for a handler of its own loop that is
// running at that moment, never for the service thread, which closes the
// loop's connection and lets go of it afterwards (everything it still
// touches then is reference-counted). The service thread never waits for
// an owner. One loop's failure or stop never affects the other loops.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "src/transport/lws/ws_codec.hpp"
#include "src/transport/tls_options.hpp"

namespace aico::ws_link {

struct loop_options {
  /// Initialize TLS in the context (needed for wss:// only).
  bool tls = false;
  /// Largest message accepted from the peer (assembled from fragments);
  /// a bigger one closes the connection.
  std::size_t max_message = 16u * 1024u * 1024u;
  /// Outgoing messages are written in fragments of at most this size.
  std::size_t write_chunk = 64u * 1024u;
  /// With `tls`: CA file/dir (then only those are trusted), SPKI SHA-256
  /// pin (checked in the certificate verification callback), client
  /// certificate and key (mutual TLS). The server certificate is always
  /// verified (chain and host name) unless tls_config.insecure_skip_verify,
  /// which is reported through on_warning on every connection. Loops with
  /// the same TLS settings share one service.
  transport::tls_options tls_config;
};

struct loop_handlers {
  /// Connection `gen` completed the WebSocket handshake.
  std::function<void(uint64_t gen)> on_open;
  /// Connection `gen` received one complete message (fragments joined).
  std::function<void(uint64_t gen, std::string&& text)> on_message;
  /// Connection `gen` failed to connect or was closed, not at the owner's
  /// request (those are not reported). Called at most once per connection.
  /// `reason` is human readable and never contains the token: e.g.
  /// "websocket upgrade refused: HTTP 401" or "closed by peer (1001 ...)".
  std::function<void(uint64_t gen, const std::string& reason)> on_closed;
  /// Connection `gen` failed in TLS: called right before its on_closed
  /// (whose reason then starts with "websocket TLS: ").
  std::function<void(uint64_t gen, transport::tls_failure kind)>
    on_tls_failure;
  /// A warning for people about connection `gen` (e.g. certificate
  /// verification switched off).
  std::function<void(uint64_t gen, const std::string& warning)> on_warning;
};

class ws_loop {
public:
  /// Joins the process' shared service (creating its lws context and
  /// service thread if this is the first loop with these TLS settings).
  /// Throws std::runtime_error if that fails (e.g. a TLS file that cannot
  /// be used: the message says which).
  ws_loop(loop_options opts, loop_handlers handlers);

  /// stop()s; the last loop of a service stops and joins its thread.
  ~ws_loop();

  ws_loop(const ws_loop&) = delete;
  ws_loop& operator=(const ws_loop&) = delete;

  /// Closes the current connection (if any) and connects a new one numbered
  /// `gen` to `url`; a non-empty `bearer_token` goes into the upgrade
  /// request's Authorization header. Thread-safe.
  void open(uint64_t gen, ws_url url, std::string bearer_token);

  /// Closes the current connection (no-op without one): a close frame if it
  /// is established, else the attempt is abandoned. Thread-safe.
  void close();

  /// Queues one text message for connection `gen`; dropped if that is not
  /// the current connection. Thread-safe.
  void send(uint64_t gen, std::string text);

  /// No handler is called after it returned (it waits for one that is
  /// running right now); open/close/send are ignored afterwards. The service
  /// thread then closes this loop's connection (a close frame if it is
  /// established) and lets go of the loop. The other loops are not
  /// affected. Idempotent. Never call it from a handler.
  void stop();

  /// What the shared services hold right now (for tests and diagnostics).
  struct service_stats {
    std::size_t services = 0;    ///< running services (threads)
    std::size_t loops = 0;       ///< ws_loops using them
    std::size_t connections = 0; ///< connections lws still holds
    /// Event loop of a running service: "libev" (epoll) or "poll".
    std::string backend;
  };
  static service_stats stats();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::ws_link
