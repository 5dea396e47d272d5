// aico reference gateway: HTTP/REST + WebSocket + Server-Sent Events front
// door on one TCP port (Boost.Beast). Contract: docs/protocol.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/api.hpp"
#include "gateway/tls_options.hpp"

namespace aico::gateway {

struct http_server_config {
  std::string host = "127.0.0.1";
  uint16_t port = 8771; ///< 0 picks a free port
  int threads = 2;      ///< io_context threads
  /// Transport-level cap on request bodies and WS frames; larger input is
  /// refused with 413 (HTTP, then the connection is closed) or closes the
  /// WebSocket with 1009. The API core applies its own (smaller)
  /// max_body_bytes limit on top.
  std::size_t max_transport_bytes = 1024 * 1024;
  int ws_idle_timeout_s = 120;  ///< close a WS that sent nothing for this long
  int sse_keepalive_s = 15;     ///< ": keep-alive" comment interval on SSE
  /// Output queued for one WebSocket (responses and events not yet written)
  /// beyond which it is closed with 1008 "slow consumer"; reading further
  /// requests pauses while more than half of it is queued.
  std::size_t ws_max_out_bytes = 32u * 1024u * 1024u;
  /// Output queued for one SSE stream beyond which the stream is ended.
  std::size_t sse_max_out_bytes = 8u * 1024u * 1024u;
  /// TLS (and mutual TLS) on the one port; plaintext when not enabled.
  tls_server_options tls;
};

/// Serves `/api/v1/...` (REST), `/api/v1/ws` (WebSocket) and
/// `/api/v1/events` (SSE) from one listening socket.
class http_server {
public:
  http_server(api& core, http_server_config cfg);
  ~http_server(); ///< stops and joins

  /// Binds and starts the io threads. Throws std::runtime_error if the
  /// address cannot be bound or the TLS files cannot be used.
  void start();

  /// The bound port (after start()).
  uint16_t port() const;

  /// Stops accepting, closes every connection, joins threads. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::gateway
