// aico reference gateway: HTTP/REST + WebSocket + Server-Sent Events front
// door on one TCP port (Boost.Beast). Contract: docs/protocol.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/api.hpp"

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
};

/// Serves `/api/v1/...` (REST), `/api/v1/ws` (WebSocket) and
/// `/api/v1/events` (SSE) from one listening socket.
class http_server {
public:
  http_server(api& core, http_server_config cfg);
  ~http_server(); ///< stops and joins

  /// Binds and starts the io threads. Throws std::runtime_error if the
  /// address cannot be bound.
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
