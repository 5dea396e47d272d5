// aico engine: the settings of the gRPC transport (CAF-free, no grpc++:
// the supervisor's config holds them, the driver next door takes them).
#pragma once

#include <string>

#include "src/transport/config.hpp"

namespace aico {

/// gRPC: grpc++ client (src/transport/grpc/), the gateway's gRPC door
/// (docs/protocol.md "gRPC door"): unary Call per request, one Events
/// server stream for the events.
struct grpc_transport_config : transport_config {
  /// "HOST:PORT" or "grpc://HOST:PORT" (plaintext), "grpcs://HOST:PORT"
  /// (TLS). Empty = not configured (the transport is dropped from the
  /// order, as IPC without an endpoint).
  std::string endpoint;
  /// For grpcs://: CA file, client certificate and key (mutual TLS). A CA
  /// directory, a pinned key or insecure_skip_verify are refused by the
  /// transport (grpc++'s credentials cannot do them).
  transport::tls_options tls;
  /// grpcs://: the name the certificate must carry when it is not the
  /// endpoint's host; empty = the host.
  std::string tls_server_name;
};

} // namespace aico
