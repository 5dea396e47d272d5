// aico engine: the libwebsockets client service thread of the WebSocket
// transport.
//
//   owner (actor) ──open/close/send (mutex queue + lws_cancel_service)──▶ service thread
//   owner ◀──────── handlers: open / message / closed ────────────────── (lws_service)
//
// One lws_context per loop, created by the constructor and destroyed on the
// service thread when the loop stops; the thread is the only one that ever
// touches the context or a connection (the owner only queues commands and
// calls lws_cancel_service, which is thread-safe). Each connection is an
// object owned by the loop whose address is the connection's lws `user`
// pointer.
//
// Connections are numbered by the owner ("generation"). At most one is
// current: open(gen) closes the current one first. Everything reported
// carries the generation of the connection it came from, and a send for
// another generation than the current connection's is dropped.
//
// This header names no libwebsockets type. Handlers run on the service
// thread: keep them short and non-blocking (e.g. caf::anon_send). They are
// never called after stop() returned.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "src/transport/lws/ws_codec.hpp"

namespace aico::ws_link {

struct loop_options {
  /// Initialize TLS in the context (needed for wss:// only).
  bool tls = false;
  /// Largest message accepted from the peer (assembled from fragments);
  /// a bigger one closes the connection.
  std::size_t max_message = 16u * 1024u * 1024u;
  /// Outgoing messages are written in fragments of at most this size.
  std::size_t write_chunk = 64u * 1024u;
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
};

class ws_loop {
public:
  /// Creates the lws context and starts the service thread. Throws
  /// std::runtime_error if that fails.
  ws_loop(loop_options opts, loop_handlers handlers);

  /// stop()s.
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

  /// Stops the service thread (it destroys the context, closing every
  /// connection) and joins it. Idempotent. Never call it from a handler.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::ws_link
