// aico reference gateway: the server side of TLS (OpenSSL 3 through
// Boost.Asio): the context built from --tls-cert/--tls-key/--client-ca and
// the device identity of a client certificate. docs/security.md.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "gateway/tls_options.hpp"

namespace aico::gateway {

/// Builds the server context: TLS 1.2 or later, the certificate chain and
/// key (the key file must be private, see secure_files.hpp; the key must
/// match the certificate) and, with a client CA, mandatory verified client
/// certificates. Throws std::runtime_error with a sentence naming the file
/// and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context>
make_tls_server_context(const tls_server_options& opts);

/// The subject of the certificate the peer of `ssl` presented, in RFC 2253
/// form ("CN=kitchen-tablet,O=family"), or "" without one. `ssl` is an
/// OpenSSL SSL* (void* so that this header needs no OpenSSL include).
std::string peer_certificate_subject(void* ssl);

} // namespace aico::gateway
