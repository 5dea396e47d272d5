// aico client library: the error taxonomy as a host sees it.
//
// Every failure of the engine has one of the `error_class`es below and a
// `classification` (is it retryable, the HTTP status and the gateway's error
// code if there was one, a sentence for people). The plain C++ facade
// (aico/client.hpp) throws it as `client_error` from a failed future; CAF
// hosts (aico/actors.hpp) get a caf::error and call aico::classify() or
// aico::describe() on it.
//
// No CAF or other third-party header: plain std types only.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "aico/export.hpp"

namespace aico {

/// The error classes (the code of every engine error).
enum class error_class : uint8_t {
  /// Could not reach the gateway: refused, reset, closed, not connected.
  network = 1,
  /// 401: missing, expired or rejected credentials.
  authentication,
  /// 403: authenticated but not allowed.
  authorization,
  /// 400, 404, 405, 409, 413, 422: the request itself is wrong (also: an
  /// invalid configuration).
  validation,
  /// 5xx and 429: the gateway failed or is overloaded.
  server_error,
  /// No answer before the deadline.
  timeout,
  /// Anything else (unexpected status, malformed reply, internal).
  unknown,
};

/// "network", "authentication", ...
AICO_API const char* to_string(error_class c);

/// The result of classification: what happened and may it be retried.
struct classification {
  error_class cls = error_class::unknown;
  bool retryable = false;
  int32_t status = 0;          ///< HTTP status if there was one, else 0
  std::string code;            ///< gateway error code ("token_expired", ...)
  std::string message;         ///< human readable, never contains tokens
  int64_t retry_after_ms = -1; ///< from Retry-After, -1 if none
};

/// The exception stored in a failed future of aico::client (and thrown by
/// aico::load_config): the error's classification; what() is one sentence
/// for people, e.g. "gateway unreachable (no transport available)".
class AICO_API client_error : public std::runtime_error {
public:
  client_error(classification c, const std::string& what);
  ~client_error() override;

  const classification& info() const noexcept { return info_; }
  error_class cls() const noexcept { return info_.cls; }
  bool retryable() const noexcept { return info_.retryable; }
  int32_t status() const noexcept { return info_.status; }
  const std::string& code() const noexcept { return info_.code; }
  const std::string& message() const noexcept { return info_.message; }

private:
  classification info_;
};

} // namespace aico
