// aico wire profile: THE error decoder. The real AICO backend has no single
// error envelope (../shared/design/aico-backend-wire.md, section 2.8); this
// reads every shape it produces and maps it onto the engine's error classes
// (include/aico/errors.hpp, the classes messages/errors.hpp builds) with a
// sentence for people:
//
//   clear   401 {"error":"Encryption required","message":…}  → rehandshake
//   clear   400 {"error":"Encryption error","detail":…}
//   clear   500 {"error":"Internal server error"}
//   clear   400/405/500 handshake errors {"error":…}
//   encrypted {"detail":"<string>"} any status (HTTPException)
//   encrypted 403 {"detail":"Not authenticated"}                 → missing token
//   encrypted 422 {"detail":[{"loc","msg","type",…}]}
//   encrypted 401 {"detail":"This endpoint requires encrypted communication…"}
//   clear text/plain 500 "Internal Server Error"
//   200 {"success":false,"error":…} (login, refresh)
//   NDJSON {"type":"error","error":…} (streaming)
//
// The caller unwraps the body first (secure_channel::unwrap) and passes the
// plaintext and how it arrived. Pure code, never throws (except bad_alloc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "aico/errors.hpp" // error_class (CAF-free)

namespace aico::aico_profile {

/// A decoded failure of the aico wire.
struct wire_error {
  error_class cls = error_class::unknown;
  bool retryable = false;
  int32_t status = 0;  ///< HTTP status (200 for success:false and streams)
  std::string code;    ///< machine code, e.g. "invalid_credentials"
  std::string message; ///< one sentence for people; never a token
  /// The server has no (valid) encryption channel for us: handshake again,
  /// then resend once (clear 401 "Encryption required").
  bool rehandshake = false;
  /// The call carried no usable token (403 "Not authenticated").
  bool missing_token = false;
  /// The server may have applied the call before failing (a send whose
  /// stream broke or timed out): its outcome is unknown.
  bool outcome_unknown = false;
};

/// Decodes a complete answer. `plain` is the body after unwrapping (the raw
/// body when it was clear), `encrypted` whether it came in an envelope,
/// `undecryptable` whether it was an envelope that did not open.
/// nullopt for a success: a 2xx whose body is not `"success": false`.
std::optional<wire_error> decode_error(int32_t status,
                                       std::string_view content_type,
                                       std::string_view plain, bool encrypted,
                                       bool undecryptable = false);

/// Decodes one (decrypted) NDJSON line: nullopt unless it is
/// {"type":"error",…}. A "Streaming timeout" is class timeout with an
/// unknown outcome (the message was stored; the reply was not seen).
std::optional<wire_error> decode_stream_error(std::string_view line);

/// A transport failure before any answer (connect refused, reset, timeout):
/// `timeout` or `network` class. For a send, `after_request_sent` makes the
/// outcome unknown.
wire_error transport_error(bool timed_out, const std::string& detail,
                           bool outcome_unknown);

} // namespace aico::aico_profile
