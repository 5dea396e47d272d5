// aico reference gateway: TLS settings of the HTTP/WebSocket/SSE door
// (docs/security.md). Plain strings: no TLS library here.
#pragma once

#include <string>

namespace aico::gateway {

struct tls_server_options {
  /// PEM certificate chain (leaf first). Empty = plaintext.
  std::string cert_file;
  /// PEM private key of the leaf; must be a private file (0600, ours).
  std::string key_file;
  /// PEM CA certificate(s): when set, every client must present a
  /// certificate issued by one of them (mutual TLS); its subject is logged
  /// as the device identity.
  std::string client_ca_file;

  bool enabled() const { return !cert_file.empty(); }
};

} // namespace aico::gateway
