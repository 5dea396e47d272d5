// aico reference gateway: ZeroMQ IPC front door (ROUTER socket, protobuf
// frames from proto/ipc.proto). Contract: docs/protocol.md, "IPC".
#pragma once

#include <memory>
#include <string>

#include "gateway/api.hpp"

namespace aico::gateway {

struct ipc_server_config {
  std::string endpoint; ///< e.g. ipc:///tmp/x/gateway.ipc (or tcp://127.0.0.1:N)
  std::size_t max_frame_bytes = 1024 * 1024;
  /// A subscribed peer that sent nothing (no ping, no request) for this long
  /// is dropped from event delivery.
  int peer_timeout_s = 60;
  int workers = 2; ///< threads running api::handle for IPC requests
  /// CurveZMQ: the gateway's secret key (Z85, 40 characters); empty = off.
  /// With CURVE on, `allow_file` lists the client keys let in (a ZAP
  /// handler checks them; see ipc_curve.hpp). A tcp:// endpoint without
  /// CURVE is refused by start().
  std::string curve_secret_key;
  std::string allow_file;
};

class ipc_server {
public:
  ipc_server(api& core, ipc_server_config cfg);
  ~ipc_server(); ///< stops and joins

  /// Binds and starts the socket thread. Throws std::runtime_error if the
  /// endpoint cannot be bound, is tcp:// without CURVE, or the allow-list
  /// cannot be used. An ipc:// socket file is made 0600.
  void start();

  /// The endpoint actually bound.
  std::string endpoint() const;

  /// Stops, closes the socket (LINGER 0), joins. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::gateway
