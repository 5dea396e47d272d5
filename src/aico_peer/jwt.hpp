// aico-backend-peer: HS256 JWTs as the AICO backend issues them (PyJWT):
// header {"alg":"HS256","typ":"JWT"}, payload serialised compactly in claim
// order sub, user_uuid, username, roles, permissions, iat, exp, iss, type.
// Two tokens with the same claims issued in the same second are therefore
// byte-identical, as on the real backend.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

namespace aico::peer {

struct token_claims {
  std::string user_uuid;
  std::string username;
  std::vector<std::string> roles;
  std::vector<std::string> permissions;
  int64_t iat = 0;
  int64_t exp = 0;
  std::string type; ///< "access" or "refresh"
};

/// Signs the claims (iss "aico-api-gateway").
std::string jwt_issue(const token_claims& c, std::string_view secret);

enum class jwt_result { ok, invalid, expired };

/// PyJWT's decode with algorithms=["HS256"], verify_aud off: the signature
/// is checked first, then `exp` (expired when exp <= now). On success
/// `payload` holds the decoded claims object.
jwt_result jwt_check(std::string_view token, std::string_view secret,
                     double now_s, boost::json::object* payload);

/// Signs arbitrary header/payload JSON text (for tests of forged tokens).
std::string jwt_sign_raw(std::string_view header_json,
                         std::string_view payload_json,
                         std::string_view secret);

} // namespace aico::peer
