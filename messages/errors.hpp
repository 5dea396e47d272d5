// aico engine: the one error taxonomy. Every failure anywhere in the engine
// becomes a caf::error of category "aico" with an `error_class` code, and is
// classified by one function, `classify`.
#pragma once

#include <cstdint>
#include <string>

#include "caf/all.hpp"

#include "aico/actors.hpp" // error_class, classification, classify, describe

namespace aico {

/// Builds an engine error. The context carries (status, code, message,
/// retry_after_ms) so `classify` can recover them.
caf::error make_engine_error(error_class cls, std::string message,
                             int32_t status = 0, std::string code = {},
                             int64_t retry_after_ms = -1);

/// Builds the error for a non-2xx gateway reply from its status, envelope
/// body (for `code`/`message`) and Retry-After header value.
caf::error make_status_error(int32_t status, const std::string& envelope_body,
                             const std::string& retry_after = {});

/// Shorthand for classify(err).retryable.
inline bool is_retryable(const caf::error& err) {
  return classify(err).retryable;
}

/// The leading phrase describe() uses for a class ("gateway unreachable").
const char* lead_of(error_class c);

} // namespace aico
