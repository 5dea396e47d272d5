// aico reference gateway: the gRPC front door (grpc++, proto/gateway.proto).
// Contract: docs/protocol.md, "gRPC door". This header names no gRPC type;
// grpc_server.cpp is the only gateway file that includes grpc++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "gateway/api.hpp"
#include "gateway/tls_options.hpp"

namespace aico::gateway {

struct grpc_server_config {
  std::string host = "127.0.0.1";
  uint16_t port = 0; ///< 0 = pick a free one (kept across fault down/up)
  /// The same TLS settings as the HTTP/WebSocket port (--tls-cert,
  /// --tls-key, --client-ca); empty = plaintext.
  tls_server_options tls;
  /// Largest CallRequest accepted (the transport cap, like HTTP's 1 MiB):
  /// larger ones fail with RESOURCE_EXHAUSTED before reaching the API.
  std::size_t max_message_bytes = 1024 * 1024 + 4096;
  /// Events queued for one stream that the client does not read fast
  /// enough: beyond this many bytes the stream ends (RESOURCE_EXHAUSTED).
  std::size_t max_out_bytes = 8 * 1024 * 1024;
  /// Upper bound on the threads grpc++ runs handlers on (every open Events
  /// stream holds one); calls beyond it fail with RESOURCE_EXHAUSTED.
  int max_threads = 256;
};

class grpc_server {
public:
  grpc_server(api& core, grpc_server_config cfg);
  ~grpc_server(); ///< stop()s

  grpc_server(const grpc_server&) = delete;
  grpc_server& operator=(const grpc_server&) = delete;

  /// Listens and starts serving. Throws std::runtime_error (address in use,
  /// unusable TLS files, a private key that is not private).
  void start();

  /// The port actually bound.
  uint16_t port() const;

  /// Ends every stream (UNAVAILABLE), shuts the server down (in-flight
  /// calls get up to 250 ms) and joins. Idempotent.
  void stop();

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace aico::gateway
