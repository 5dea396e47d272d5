#include "src/core/jwt_claims.hpp"

#include <cmath>
#include <limits>

#include <boost/json.hpp>

namespace aico {

namespace {

constexpr char b64url_alphabet[]
  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// 0..63 for a valid character, -1 otherwise.
int b64_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-' || c == '+')
    return 62;
  if (c == '_' || c == '/')
    return 63;
  return -1;
}

caf::error malformed(std::string what) {
  // never include the token (or any part of it) in the message
  return make_engine_error(error_class::validation,
                           "malformed access token: " + std::move(what));
}

/// Reads an integral claim given as an integer or a (finite) number.
bool read_seconds(const boost::json::value& v, int64_t& out) {
  if (v.is_int64()) {
    out = v.get_int64();
    return true;
  }
  if (v.is_uint64()) {
    auto u = v.get_uint64();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return false;
    out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_double()) {
    auto d = v.get_double();
    if (!std::isfinite(d) || d < -9.0e18 || d > 9.0e18)
      return false;
    out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}

/// Reads a claim given as a string or a number (ids are sometimes numeric).
bool read_text(const boost::json::value& v, std::string& out) {
  if (v.is_string()) {
    out.assign(v.get_string().data(), v.get_string().size());
    return true;
  }
  if (v.is_int64()) {
    out = std::to_string(v.get_int64());
    return true;
  }
  if (v.is_uint64()) {
    out = std::to_string(v.get_uint64());
    return true;
  }
  return false;
}

} // namespace

bool base64url_decode(std::string_view in, std::string& out) {
  out.clear();
  // strip padding
  while (!in.empty() && in.back() == '=')
    in.remove_suffix(1);
  if (in.size() % 4 == 1)
    return false; // 6 bits cannot encode a byte
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    auto v = b64_value(c);
    if (v < 0) {
      out.clear();
      return false;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFFu));
    }
  }
  return true;
}

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(b64url_alphabet[(acc >> bits) & 0x3Fu]);
    }
  }
  if (bits > 0)
    out.push_back(b64url_alphabet[(acc << (6 - bits)) & 0x3Fu]);
  return out;
}

caf::expected<jwt_claims> decode_jwt_claims(std::string_view token) {
  try {
    auto dot1 = token.find('.');
    if (dot1 == std::string_view::npos)
      return malformed("expected three dot-separated parts");
    auto dot2 = token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos
        || token.find('.', dot2 + 1) != std::string_view::npos)
      return malformed("expected three dot-separated parts");
    auto payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
    if (payload_b64.empty())
      return malformed("empty payload");
    std::string payload;
    if (!base64url_decode(payload_b64, payload))
      return malformed("payload is not valid base64url");
    boost::system::error_code ec;
    auto jv = boost::json::parse(payload, ec);
    if (ec)
      return malformed("payload is not valid JSON");
    if (!jv.is_object())
      return malformed("payload is not a JSON object");
    const auto& obj = jv.get_object();
    jwt_claims res;
    if (auto v = obj.if_contains("sub"); v && !v->is_null()
                                         && !read_text(*v, res.sub))
      return malformed("claim 'sub' has the wrong type");
    if (auto v = obj.if_contains("name"); v && !v->is_null()
                                          && !read_text(*v, res.name))
      return malformed("claim 'name' has the wrong type");
    if (auto v = obj.if_contains("role"); v && !v->is_null()
                                          && !read_text(*v, res.role))
      return malformed("claim 'role' has the wrong type");
    if (auto v = obj.if_contains("exp"); v && !v->is_null()
                                         && !read_seconds(*v, res.exp))
      return malformed("claim 'exp' is not a number");
    if (auto v = obj.if_contains("iat"); v && !v->is_null()
                                         && !read_seconds(*v, res.iat))
      return malformed("claim 'iat' is not a number");
    return res;
  } catch (...) {
    // only allocation failures can get here
    return malformed("could not decode");
  }
}

} // namespace aico
