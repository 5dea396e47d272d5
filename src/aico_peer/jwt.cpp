#include "aico_peer/jwt.hpp"

#include "aico_peer/crypto.hpp"
#include "aico_peer/pyjson.hpp"

namespace aico::peer {

std::string jwt_sign_raw(std::string_view header_json,
                         std::string_view payload_json,
                         std::string_view secret) {
  std::string signing_input
    = b64url_encode(header_json) + "." + b64url_encode(payload_json);
  return signing_input + "."
         + b64url_encode(hmac_sha256(secret, signing_input));
}

std::string jwt_issue(const token_claims& c, std::string_view secret) {
  json::object p;
  p["sub"] = c.user_uuid;
  p["user_uuid"] = c.user_uuid;
  p["username"] = c.username;
  json::array roles;
  for (auto& r : c.roles)
    roles.emplace_back(r);
  p["roles"] = std::move(roles);
  json::array perms;
  for (auto& r : c.permissions)
    perms.emplace_back(r);
  p["permissions"] = std::move(perms);
  p["iat"] = c.iat;
  p["exp"] = c.exp;
  p["iss"] = "aico-api-gateway";
  p["type"] = c.type;
  return jwt_sign_raw(R"({"alg":"HS256","typ":"JWT"})",
                      py_dumps(p, {true, true}), secret);
}

jwt_result jwt_check(std::string_view token, std::string_view secret,
                     double now_s, json::object* payload) {
  auto d1 = token.find('.');
  if (d1 == std::string_view::npos)
    return jwt_result::invalid;
  auto d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos
      || token.find('.', d2 + 1) != std::string_view::npos)
    return jwt_result::invalid;
  auto header_raw = b64url_decode(token.substr(0, d1));
  auto payload_raw = b64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  auto sig = b64url_decode(token.substr(d2 + 1));
  if (!header_raw || !payload_raw || !sig)
    return jwt_result::invalid;
  auto header = parse_json(*header_raw);
  if (!header || !header->is_object())
    return jwt_result::invalid;
  auto alg = header->as_object().if_contains("alg");
  if (alg == nullptr || !alg->is_string() || alg->get_string() != "HS256")
    return jwt_result::invalid;
  auto expected = hmac_sha256(secret, token.substr(0, d2));
  if (!bytes_equal(expected, *sig))
    return jwt_result::invalid;
  auto body = parse_json(*payload_raw);
  if (!body || !body->is_object())
    return jwt_result::invalid;
  auto& o = body->as_object();
  if (auto exp = o.if_contains("exp")) {
    double e = 0;
    if (exp->is_int64())
      e = static_cast<double>(exp->get_int64());
    else if (exp->is_uint64())
      e = static_cast<double>(exp->get_uint64());
    else if (exp->is_double())
      e = exp->get_double();
    else
      return jwt_result::invalid;
    if (e <= now_s)
      return jwt_result::expired;
  }
  if (payload)
    *payload = std::move(o);
  return jwt_result::ok;
}

} // namespace aico::peer
