// aico engine: ws:// URL parsing and JSON frame codec (see ws_codec.hpp).
#include "src/transport/lws/ws_codec.hpp"

#include <boost/json.hpp>

#include "src/core/json_numbers.hpp"
#include "src/core/url_host.hpp"

#include <cctype>
#include <cstdint>
#include <exception>
#include <limits>

namespace aico::ws_link {

namespace json = boost::json;

namespace {

bool starts_with_ci(const std::string& s, const char* prefix) {
  std::size_t i = 0;
  for (; prefix[i] != '\0'; ++i) {
    if (i >= s.size())
      return false;
    if (std::tolower(static_cast<unsigned char>(s[i]))
        != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  }
  return true;
}

std::string string_member(const json::object& o, const char* key) {
  auto v = o.if_contains(key);
  if (v && v->is_string())
    return std::string(v->as_string());
  return {};
}

/// An integer member in [min, max]: a JSON integer, or a double holding a
/// whole number in range (never an out-of-range cast). Anything else
/// (missing, not a number, fractional, non-finite, out of range): `dflt`.
int64_t int_member(const json::object& o, const char* key, int64_t dflt,
                   int64_t min, int64_t max) {
  auto v = o.if_contains(key);
  if (!v)
    return dflt;
  int64_t i = 0;
  if (v->is_int64()) {
    i = v->as_int64();
  } else if (v->is_uint64()) {
    if (v->as_uint64() > static_cast<uint64_t>(max))
      return dflt;
    i = static_cast<int64_t>(v->as_uint64());
  } else if (v->is_double()) {
    if (!double_to_int64(v->as_double(), min, max, i))
      return dflt;
  } else {
    return dflt;
  }
  return i < min || i > max ? dflt : i;
}

/// An event's seq: a non-negative integer (also above INT64_MAX), else 0.
uint64_t seq_member(const json::object& o) {
  auto v = o.if_contains("seq");
  if (!v)
    return 0;
  if (v->is_uint64())
    return v->as_uint64();
  if (v->is_int64())
    return v->as_int64() > 0 ? static_cast<uint64_t>(v->as_int64()) : 0;
  if (v->is_double()) {
    int64_t i = 0;
    if (double_to_int64(v->as_double(), 0,
                        std::numeric_limits<int64_t>::max(), i))
      return static_cast<uint64_t>(i);
  }
  return 0;
}

constexpr int64_t int32_min = std::numeric_limits<int32_t>::min();
constexpr int64_t int32_max = std::numeric_limits<int32_t>::max();

} // namespace

bool parse_url(const std::string& url, ws_url& out, std::string& why) {
  ws_url res;
  std::size_t pos;
  if (starts_with_ci(url, "ws://")) {
    res.tls = false;
    pos = 5;
  } else if (starts_with_ci(url, "wss://")) {
    res.tls = true;
    pos = 6;
  } else {
    why = "websocket url must start with ws:// or wss://";
    return false;
  }
  auto end_auth = url.find_first_of("/?#", pos);
  std::string authority = url.substr(pos, end_auth == std::string::npos
                                            ? std::string::npos
                                            : end_auth - pos);
  if (authority.find('@') != std::string::npos) {
    why = "websocket url must not contain user info";
    return false;
  }
  url_authority parts;
  if (!split_url_authority(authority, parts, why)) {
    why = "websocket url: " + why;
    return false;
  }
  res.host = std::string{parts.host};
  res.port = parts.port != 0 ? static_cast<uint16_t>(parts.port)
                             : static_cast<uint16_t>(res.tls ? 443 : 80);
  std::string path = end_auth == std::string::npos ? std::string{}
                                                   : url.substr(end_auth);
  auto hash = path.find('#');
  if (hash != std::string::npos)
    path.erase(hash);
  if (path.empty() || path.front() != '/')
    path.insert(path.begin(), '/');
  for (char c : path)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      why = "websocket url: invalid character in path";
      return false;
    }
  res.path = std::move(path);
  out = std::move(res);
  return true;
}

std::string host_header(const ws_url& u) {
  std::string h = u.host.find(':') != std::string::npos ? "[" + u.host + "]"
                                                        : u.host;
  if (u.port != (u.tls ? 443 : 80))
    h += ":" + std::to_string(u.port);
  return h;
}

const char* to_string(frame_kind k) {
  switch (k) {
    case frame_kind::invalid:
      return "invalid";
    case frame_kind::response:
      return "response";
    case frame_kind::event:
      return "event";
    case frame_kind::pong:
      return "pong";
    case frame_kind::auth_ok:
      return "auth_ok";
    case frame_kind::error:
      return "error";
    case frame_kind::other:
      return "other";
  }
  return "?";
}

decoded_frame decode_frame(std::string_view text) {
  decoded_frame f;
  try {
    boost::system::error_code ec;
    json::value v = json::parse(json::string_view{text.data(), text.size()},
                                ec);
    if (ec || !v.is_object())
      return f;
    auto& o = v.as_object();
    auto type = o.if_contains("type");
    if (!type || !type->is_string())
      return f;
    auto t = type->as_string();
    f.id = string_member(o, "id");
    if (t == "response") {
      f.kind = frame_kind::response;
      f.status = static_cast<int32_t>(
        int_member(o, "status", 0, int32_min, int32_max));
      if (auto b = o.if_contains("body"); b && !b->is_null()) {
        if (all_finite(*b))
          f.body = json::serialize(*b);
        else // would serialize as "Infinity": not JSON; a malformed reply
          f.body = error_envelope("bad_number",
                                  "the gateway's answer holds a number "
                                  "out of range");
      }
      if (auto h = o.if_contains("headers"); h && h->is_object())
        for (auto& kv : h->as_object())
          if (all_finite(kv.value()))
            f.headers.emplace(std::string(kv.key()),
                            kv.value().is_string()
                              ? std::string(kv.value().as_string())
                              : json::serialize(kv.value()));
    } else if (t == "event") {
      auto d = o.if_contains("data");
      if (d && !all_finite(*d))
        return f; // invalid: the data cannot be passed on as JSON
      f.kind = frame_kind::event;
      f.topic = string_member(o, "topic");
      f.data = d ? json::serialize(*d) : std::string{"null"};
      f.seq = seq_member(o);
    } else if (t == "pong") {
      f.kind = frame_kind::pong;
    } else if (t == "auth_ok") {
      f.kind = frame_kind::auth_ok;
      if (auto r = o.if_contains("replay"); r && r->is_object()) {
        f.has_replay = true;
        auto c = r->as_object().if_contains("complete");
        f.replay_complete = c && c->is_bool() && c->as_bool();
      }
    } else if (t == "error") {
      f.kind = frame_kind::error;
      f.status = static_cast<int32_t>(
        int_member(o, "status", 0, int32_min, int32_max));
      f.code = string_member(o, "code");
      f.message = string_member(o, "message");
    } else {
      f.kind = frame_kind::other;
    }
  } catch (const std::exception&) {
    f = decoded_frame{};
  }
  return f;
}

bool encode_request(const std::string& id, const std::string& method,
                    const std::string& path, const std::string& body,
                    std::string& out) {
  try {
    json::object o;
    o["type"] = "request";
    o["id"] = id;
    o["method"] = method;
    o["path"] = path;
    if (!body.empty()) {
      boost::system::error_code ec;
      json::parse_options opt;
      opt.max_depth = 100; // the gateway enforces its own limit (64)
      json::value b = json::parse(body, ec, {}, opt);
      if (ec || !all_finite(b))
        return false; // not JSON, or a number beyond the double range
      o["body"] = std::move(b);
    }
    out = json::serialize(o);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::string encode_auth(const std::string& id, const std::string& token,
                        uint64_t since) {
  json::object o;
  o["type"] = "auth";
  o["id"] = id;
  o["token"] = token;
  if (since > 0)
    o["since"] = since;
  return json::serialize(o);
}

std::string encode_ping(const std::string& id) {
  json::object o;
  o["type"] = "ping";
  o["id"] = id;
  return json::serialize(o);
}

std::string error_envelope(const std::string& code,
                           const std::string& message) {
  json::object o;
  o["success"] = false;
  o["message"] = message;
  o["code"] = code;
  return json::serialize(o);
}

} // namespace aico::ws_link
