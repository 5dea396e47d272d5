// aico engine: reads the claims of a JWT access token WITHOUT verifying it
// (pure logic, no I/O). The engine only needs the claims for scheduling the
// proactive refresh (`exp`, `iat`) and for showing the session (`sub`,
// `name`, `role`); the gateway is the one that verifies signatures.
//
// A token is three base64url parts `header.payload.signature`; the payload
// is a JSON object. Missing claims are left empty / 0. Anything malformed is
// reported as an error value (error_class::validation) whose message never
// contains the token; nothing throws out of these functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "caf/all.hpp"

#include "messages/errors.hpp"

namespace aico {

struct jwt_claims {
  std::string sub;  ///< user id (a numeric `sub` is rendered as a string)
  std::string name; ///< username
  std::string role;
  int64_t exp = 0; ///< seconds since epoch, 0 = absent
  int64_t iat = 0; ///< seconds since epoch, 0 = absent
};

/// Decodes base64url (RFC 4648 §5), with or without `=` padding. Also
/// accepts the standard alphabet's `+` and `/`. Returns false on any
/// character outside the alphabet or an impossible length.
bool base64url_decode(std::string_view in, std::string& out);

/// Encodes as base64url without padding (used by tests and tools).
std::string base64url_encode(std::string_view in);

/// Decodes the payload of `token` without verifying its signature.
caf::expected<jwt_claims> decode_jwt_claims(std::string_view token);

} // namespace aico
