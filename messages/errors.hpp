// aico engine: the one error taxonomy. Every failure anywhere in the engine
// becomes a caf::error of category "aico" with an `error_class` code, and is
// classified by one function, `classify`.
#pragma once

#include <cstdint>
#include <string>

#include "caf/all.hpp"

namespace aico {

/// The error classes (the code of every engine error).
enum class error_class : uint8_t {
  /// Could not reach the gateway: refused, reset, closed, not connected.
  network = 1,
  /// 401: missing, expired or rejected credentials.
  authentication,
  /// 403: authenticated but not allowed.
  authorization,
  /// 400, 404, 405, 409, 413, 422: the request itself is wrong.
  validation,
  /// 5xx and 429: the gateway failed or is overloaded.
  server_error,
  /// No answer before the deadline.
  timeout,
  /// Anything else (unexpected status, malformed reply, internal).
  unknown,
};

const char* to_string(error_class c);

/// The result of classification: what happened and may it be retried.
struct classification {
  error_class cls = error_class::unknown;
  bool retryable = false;
  int32_t status = 0;          ///< HTTP status if there was one, else 0
  std::string code;            ///< gateway error code ("token_expired", ...)
  std::string message;         ///< human readable, never contains tokens
  int64_t retry_after_ms = -1; ///< from Retry-After, -1 if none
};

/// Builds an engine error. The context carries (status, code, message,
/// retry_after_ms) so `classify` can recover them.
caf::error make_engine_error(error_class cls, std::string message,
                             int32_t status = 0, std::string code = {},
                             int64_t retry_after_ms = -1);

/// Builds the error for a non-2xx gateway reply from its status, envelope
/// body (for `code`/`message`) and Retry-After header value.
caf::error make_status_error(int32_t status, const std::string& envelope_body,
                             const std::string& retry_after = {});

/// THE classification function: engine errors, CAF system errors
/// (request_timeout -> timeout, request_receiver_down -> network, ...) and
/// anything else (unknown). Retryable: network, timeout, server_error
/// (5xx except 501, and 429).
classification classify(const caf::error& err);

/// Shorthand for classify(err).retryable.
inline bool is_retryable(const caf::error& err) {
  return classify(err).retryable;
}

/// THE way an error is shown to a person (CLI, aico-chat, aico-stress,
/// queue reasons, logs): one sentence, "<what happened> (<detail>)", e.g.
/// "gateway unreachable (no transport available)" or "the gateway failed
/// (injected; 503 unavailable)". Never a raw caf::error rendering
/// (`error(1, 'aico', ...)`): CAF's own errors become sentences too.
/// Machine-readable detail (class, status, code) is in classify().
std::string describe(const caf::error& err);

/// The leading phrase describe() uses for a class ("gateway unreachable").
const char* lead_of(error_class c);

} // namespace aico

CAF_ERROR_CODE_ENUM(aico::error_class, "aico")
