// aico-backend-peer: the sockets. REST (HTTP/1.1, keep-alive, chunked NDJSON
// streams) on one port and the WebSocket adapter on its own port, both on a
// single Boost.Asio io thread that also runs every backend call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "aico_peer/backend.hpp"

namespace aico::peer {

struct server_config {
  std::string http_host = "127.0.0.1";
  uint16_t http_port = 8771; ///< 0 picks a free port
  std::string ws_host = "127.0.0.1";
  uint16_t ws_port = 8772; ///< 0 picks a free port
  /// Idle time of a keep-alive connection between requests (uvicorn's
  /// timeout_keep_alive is 5 s).
  double keep_alive_s = 5;
};

class server {
public:
  server(backend& b, server_config cfg);
  ~server(); ///< stop()s

  /// Binds both ports and starts the io thread. Throws std::runtime_error
  /// when a port cannot be bound.
  void start();
  uint16_t http_port() const;
  uint16_t ws_port() const;
  /// Closes every connection (WebSocket sessions are revoked, as on the
  /// real backend's shutdown) and joins the io thread. Idempotent.
  void stop();

  struct impl; ///< internal (public so the session classes can name it)

private:
  std::unique_ptr<impl> impl_;
};

} // namespace aico::peer
