// aico-stress: a tiny blocking REST client (over the engine's libcurl loop,
// src/transport/curl) for the fault endpoint and the integrity check.
// Loopback only; every call is bounded.
#pragma once

#include <chrono>
#include <string>

#include <boost/json.hpp>

#include "src/transport/tls_options.hpp"

namespace aico::stress {

struct http_result {
  int status = 0; ///< 0 = transport error (see error)
  std::string error;
  boost::json::value body; ///< parsed, null if not JSON
};

/// TLS settings of the REST calls (https:// URLs); call before the first
/// call (later calls keep the first settings).
void set_rest_tls(const transport::tls_options& tls);

/// `url` must be http(s)://127.0.0.1... or http(s)://localhost...
http_result http_call(const std::string& method, const std::string& url,
                      const std::string& body, const std::string& token,
                      std::chrono::milliseconds timeout
                      = std::chrono::seconds(5));

/// True if `url` points at the loopback interface.
bool is_loopback_url(const std::string& url);

/// POST /users/authenticate; the access token or "" (err filled).
std::string rest_login(const std::string& base, const std::string& user,
                       const std::string& password, std::string& err,
                       int attempts = 5);

} // namespace aico::stress
