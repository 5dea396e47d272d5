#include "src/profile/aico/calls.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include <boost/json.hpp>

#include "src/profile/aico/secure_channel.hpp" // b64url_decode

namespace aico::aico_profile {

namespace json = boost::json;

namespace {

constexpr const char* api = "/api/v1";

std::string str_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string{};
}

int64_t int_of(const json::object& o, std::string_view key, int64_t dflt) {
  auto* v = o.if_contains(key);
  if (!v)
    return dflt;
  if (v->is_int64())
    return v->get_int64();
  if (v->is_uint64())
    return static_cast<int64_t>(v->get_uint64());
  if (v->is_double())
    return static_cast<int64_t>(v->get_double());
  return dflt;
}

std::vector<std::string> segments(std::string_view path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    auto j = path.find('/', i);
    if (j == std::string_view::npos)
      j = path.size();
    out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

/// Matches `path` against a pattern with "{id}" segments; the captured ids.
bool match(std::string_view pattern, std::string_view path,
           std::vector<std::string>& ids) {
  auto p = segments(pattern);
  auto s = segments(path);
  if (p.size() != s.size())
    return false;
  ids.clear();
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == "{id}") {
      if (s[i].empty())
        return false;
      ids.push_back(s[i]);
    } else if (p[i] != s[i]) {
      return false;
    }
  }
  return true;
}

int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0
        && hexval(s[i + 2]) >= 0) {
      out += static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::map<std::string, std::string> query_of(std::string_view q) {
  std::map<std::string, std::string> out;
  std::size_t i = 0;
  while (i <= q.size() && !q.empty()) {
    auto j = q.find('&', i);
    if (j == std::string_view::npos)
      j = q.size();
    auto kv = q.substr(i, j - i);
    auto eq = kv.find('=');
    if (!kv.empty())
      out[url_decode(kv.substr(0, eq))]
        = eq == std::string_view::npos ? std::string{}
                                       : url_decode(kv.substr(eq + 1));
    if (j == q.size())
      break;
    i = j + 1;
  }
  return out;
}

wire_error invalid(std::string code, std::string message) {
  wire_error e;
  e.cls = error_class::validation;
  e.status = 400;
  e.code = std::move(code);
  e.message = std::move(message);
  return e;
}

wire_error malformed(std::string message) {
  wire_error e;
  e.cls = error_class::unknown;
  e.status = 200;
  e.code = "bad_reply";
  e.message = "the AICO server's answer is not a valid reply: "
              + std::move(message);
  return e;
}

bool parse_uint(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 18)
    return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

/// The JWT claims object (empty if malformed).
json::object claims_of(const std::string& token) {
  auto a = token.find('.');
  auto b = a == std::string::npos ? a : token.find('.', a + 1);
  if (b == std::string::npos)
    return {};
  auto payload = b64url_decode(std::string_view(token).substr(a + 1, b - a - 1));
  if (!payload)
    return {};
  json::error_code ec;
  auto v = json::parse(*payload, ec);
  if (ec || !v.is_object())
    return {};
  return v.get_object();
}

json::value user_value(const user& u) {
  json::object o;
  o["id"] = u.id;
  o["username"] = u.username;
  o["display_name"] = u.display_name;
  o["role"] = u.role;
  json::error_code ec;
  auto prefs = json::parse(u.preferences, ec);
  o["preferences"] = ec || !prefs.is_object() ? json::value(json::object{})
                                              : prefs;
  o["created_at"] = u.created_at;
  return o;
}

json::value message_value(const chat_message& m) {
  json::object o;
  o["id"] = m.id;
  o["conversation_id"] = m.conversation_id;
  o["content"] = m.content;
  o["type"] = m.type;
  o["sender_id"] = m.sender_id;
  o["sender"] = m.sender;
  o["timestamp"] = m.timestamp;
  o["timestamp_ms"] = m.timestamp_ms;
  o["seq"] = m.seq;
  o["status"] = to_string(m.status);
  if (m.read_at.empty())
    o["read_at"] = nullptr;
  else
    o["read_at"] = m.read_at;
  json::error_code ec;
  auto meta = json::parse(m.metadata, ec);
  o["metadata"] = ec || !meta.is_object() ? json::value(json::object{}) : meta;
  if (m.reply_to.empty())
    o["reply_to"] = nullptr;
  else
    o["reply_to"] = m.reply_to;
  return o;
}

/// The lifetime of a token from its claims (exp - iat), or `dflt`.
int64_t lifetime_of(const std::string& token, int64_t dflt) {
  auto c = claims_of(token);
  auto exp = int_of(c, "exp", -1);
  auto iat = int_of(c, "iat", -1);
  return exp > 0 && iat > 0 && exp >= iat ? exp - iat : dflt;
}

bool is_reusable_conversation(const std::string& cid) {
  return !cid.empty() && cid != "default" && cid != "current"
         && cid.find('_') != std::string::npos;
}

} // namespace

const char* to_string(call_kind k) {
  switch (k) {
    case call_kind::login:
      return "login";
    case call_kind::refresh:
      return "refresh";
    case call_kind::logout:
      return "logout";
    case call_kind::me:
      return "me";
    case call_kind::send:
      return "send";
    case call_kind::history:
      return "history";
    case call_kind::health:
      return "health";
  }
  return "?";
}

const std::vector<call_route>& call_table() {
  static const std::vector<call_route> table = {
    // kind, method, engine path, wire method, wire path, enc, bearer, stream
    {call_kind::login, "POST", "/users/authenticate", "POST",
     "/api/v1/users/authenticate", true, false, false},
    {call_kind::refresh, "POST", "/users/refresh", "POST",
     "/api/v1/users/refresh", true, false, false},
    {call_kind::logout, "POST", "/users/logout", "", "", false, false, false},
    {call_kind::me, "GET", "/users/me", "", "", false, false, false},
    {call_kind::send, "POST", "/conversations/messages", "POST",
     "/api/v1/conversation/messages?stream=true", true, true, true},
    {call_kind::history, "GET", "/conversations/{id}/messages", "GET",
     "/api/v1/conversation/messages", true, true, false},
    {call_kind::health, "GET", "/health", "GET", "/api/v1/health", false,
     false, false},
    {call_kind::health, "GET", "/health/detailed", "GET",
     "/api/v1/health/detailed", true, false, false},
  };
  return table;
}

std::string envelope_json(std::string_view data_json) {
  std::string out = "{\"success\":true,\"data\":";
  out.append(data_json.data(), data_json.size());
  out += '}';
  return out;
}

std::string message_json(const chat_message& m) {
  return json::serialize(message_value(m));
}

int64_t parse_aico_time(std::string_view iso) {
  int y, mo, d, h, mi, s;
  if (iso.size() < 19)
    return -1;
  std::string head(iso.substr(0, 19));
  if (std::sscanf(head.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi,
                  &s)
      != 6)
    return -1;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  auto secs = ::timegm(&tm);
  if (secs < 0)
    return -1;
  int64_t ms = 0;
  if (iso.size() > 20 && iso[19] == '.') {
    int digits = 0;
    for (std::size_t i = 20; i < iso.size() && digits < 3; ++i, ++digits) {
      if (iso[i] < '0' || iso[i] > '9')
        break;
      ms = ms * 10 + (iso[i] - '0');
    }
    while (digits++ < 3)
      ms *= 10;
  }
  return static_cast<int64_t>(secs) * 1000 + ms;
}

std::string iso_ms(int64_t ms) {
  if (ms < 0)
    ms = 0;
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

user user_from_claims(const std::string& token, std::string_view user_json) {
  user u;
  auto c = claims_of(token);
  u.id = str_of(c, "user_uuid");
  if (u.id.empty())
    u.id = str_of(c, "sub");
  u.display_name = str_of(c, "username");
  u.username = u.id;
  u.role = "user";
  if (auto* r = c.if_contains("roles"); r && r->is_array()) {
    for (auto& x : r->get_array())
      if (x.is_string() && x.get_string() == "admin")
        u.role = "admin";
  }
  if (!user_json.empty()) {
    json::error_code ec;
    auto v = json::parse(user_json, ec);
    if (!ec && v.is_object()) {
      auto& o = v.get_object();
      if (auto id = str_of(o, "uuid"); !id.empty())
        u.id = u.username = id;
      if (auto n = str_of(o, "full_name"); !n.empty())
        u.display_name = n;
      u.created_at = str_of(o, "created_at");
    }
  }
  return u;
}

std::variant<wire_request, local_answer, wire_error>
map_call(const logical_call& c) {
  auto q = c.path.find('?');
  std::string path = c.path.substr(0, q);
  auto query = query_of(q == std::string::npos ? std::string_view{}
                                               : std::string_view(c.path).substr(q + 1));
  if (path.rfind(api, 0) == 0)
    path.erase(0, std::char_traits<char>::length(api));
  const call_route* route = nullptr;
  std::vector<std::string> ids;
  for (auto& r : call_table()) {
    if (c.method == r.method && match(r.engine_path, path, ids)) {
      route = &r;
      break;
    }
  }
  if (!route)
    return invalid("unsupported",
                   "the aico profile has no equivalent of " + c.method + " "
                     + path + " (the AICO backend offers login, refresh, "
                              "chat send, history and health)");
  json::object body;
  if (!c.body.empty()) {
    json::error_code ec;
    auto v = json::parse(c.body, ec);
    if (ec || !v.is_object())
      return invalid("bad_json", "the request body is not a JSON object");
    body = std::move(v.get_object());
  }
  wire_request rq;
  rq.kind = route->kind;
  rq.method = route->wire_method;
  rq.path = route->wire_path;
  rq.encrypted = route->encrypted;
  rq.stream = route->stream;
  rq.token = route->bearer ? c.token : std::string{};
  rq.user_token = c.token;
  switch (route->kind) {
    case call_kind::login: {
      auto uuid = str_of(body, "user_uuid");
      if (uuid.empty())
        uuid = str_of(body, "username");
      auto pin = str_of(body, "pin");
      if (pin.empty())
        pin = str_of(body, "password");
      if (uuid.empty() || pin.empty())
        return invalid("validation_error",
                       "an AICO login needs the user's UUID and PIN");
      json::object w;
      w["user_uuid"] = uuid;
      w["pin"] = pin;
      rq.body = json::serialize(w);
      return rq;
    }
    case call_kind::refresh: {
      auto rt = str_of(body, "refresh_token");
      if (rt.empty())
        return invalid("validation_error", "a refresh needs the refresh token");
      json::object w;
      w["refresh_token"] = rt;
      rq.body = json::serialize(w);
      return rq;
    }
    case call_kind::logout: {
      // the backend's /users/logout always fails (wire document 2.2): the
      // logout is local, the tokens are forgotten by the token manager
      local_answer a;
      a.body = envelope_json("{\"logged_out\":true}");
      return a;
    }
    case call_kind::me: {
      if (c.token.empty()) {
        wire_error e;
        e.cls = error_class::authentication;
        e.status = 401;
        e.code = "unauthenticated";
        e.message = "the request carried no access token; log in first";
        e.missing_token = true;
        return e;
      }
      auto u = user_from_claims(c.token);
      if (u.id.empty())
        return invalid("invalid_token", "the access token has no user id");
      local_answer a;
      a.body = envelope_json(json::serialize(user_value(u)));
      return a;
    }
    case call_kind::send: {
      rq.client_message_id = str_of(body, "id");
      rq.content = str_of(body, "content");
      if (auto t = str_of(body, "type"); !t.empty())
        rq.message_type = t;
      rq.requested_conversation = str_of(body, "conversation_id");
      if (auto* m = body.if_contains("metadata"); m && m->is_object())
        rq.metadata = json::serialize(*m);
      if (rq.client_message_id.empty())
        return invalid("validation_error", "a message needs its id");
      json::object w;
      w["message"] = rq.content;
      w["message_type"] = "text";
      if (is_reusable_conversation(rq.requested_conversation))
        w["conversation_id"] = rq.requested_conversation;
      w["context"] = json::object{};
      w["metadata"] = json::object{};
      rq.body = json::serialize(w);
      return rq;
    }
    case call_kind::history: {
      rq.requested_conversation = ids.empty() ? std::string{} : url_decode(ids[0]);
      int64_t since = 0, limit = 50;
      if (auto i = query.find("since");
          i != query.end() && !parse_uint(i->second, since))
        return invalid("validation_error", "since must be a page number");
      if (auto i = query.find("limit");
          i != query.end() && (!parse_uint(i->second, limit) || limit < 1))
        return invalid("validation_error", "limit must be a positive number");
      rq.page = since < 1 ? 1 : since;
      rq.page_size = std::min<int64_t>(limit, 100);
      rq.path += "?page=" + std::to_string(rq.page)
                 + "&page_size=" + std::to_string(rq.page_size);
      if (is_reusable_conversation(rq.requested_conversation))
        rq.path += "&conversation_id=" + url_encode(rq.requested_conversation);
      return rq;
    }
    case call_kind::health:
      return rq;
  }
  return invalid("unsupported", "unsupported call");
}

history_page history_from_wire(const wire_request& rq, std::string_view plain,
                               bool& ok) {
  history_page page;
  ok = false;
  json::error_code ec;
  auto v = json::parse(plain, ec);
  if (ec || !v.is_object())
    return page;
  auto& o = v.get_object();
  auto* msgs = o.if_contains("messages");
  if (!msgs || !msgs->is_array())
    return page;
  page.conversation_id = str_of(o, "conversation_id");
  if (is_reusable_conversation(rq.requested_conversation))
    page.conversation_id = rq.requested_conversation;
  else if (page.conversation_id.rfind("user_", 0) == 0)
    // asked without a conversation: the backend labels the user's messages
    // of every conversation "user_<uuid>", which is no conversation (a send
    // to it would start one of that name): the engine's "current" is empty
    page.conversation_id.clear();
  for (auto& item : msgs->get_array()) {
    if (!item.is_object())
      continue;
    auto& m = item.get_object();
    chat_message cm;
    cm.id = str_of(m, "id");
    if (cm.id.empty())
      continue;
    cm.conversation_id = str_of(m, "conversation_id");
    cm.content = str_of(m, "content");
    cm.type = "text";
    bool assistant = str_of(m, "role") == "assistant";
    cm.sender_id = assistant ? "companion" : str_of(m, "user_id");
    cm.sender = assistant ? "companion" : cm.sender_id;
    auto ms = parse_aico_time(str_of(m, "timestamp"));
    cm.timestamp_ms = ms < 0 ? 0 : ms;
    cm.timestamp = iso_ms(cm.timestamp_ms);
    // the backend has no sequence numbers: its time orders the history
    cm.seq = static_cast<uint64_t>(cm.timestamp_ms);
    cm.status = message_status::sent;
    json::object meta;
    meta["aico_role"] = str_of(m, "role");
    meta["aico_message_type"] = str_of(m, "message_type");
    cm.metadata = json::serialize(meta);
    page.messages.push_back(std::move(cm));
  }
  // the backend pages newest first: the engine's pages are ascending
  std::reverse(page.messages.begin(), page.messages.end());
  auto page_no = int_of(o, "page", rq.page);
  auto page_size = int_of(o, "page_size", rq.page_size);
  // total_count is capped at page*page_size: a full page may have more
  page.has_more = page_size > 0
                  && static_cast<int64_t>(msgs->get_array().size()) >= page_size
                  && int_of(o, "total_count", 0) >= page_no * page_size;
  page.next_since = page.has_more ? static_cast<uint64_t>(page_no + 1)
                                  : static_cast<uint64_t>(page_no);
  ok = true;
  return page;
}

std::variant<engine_answer, wire_error>
map_reply(const wire_request& rq, int32_t status, std::string_view plain) {
  engine_answer a;
  a.status = status;
  json::error_code ec;
  auto v = json::parse(plain, ec);
  if (ec || !v.is_object())
    return malformed("not a JSON object");
  auto& o = v.get_object();
  switch (rq.kind) {
    case call_kind::login:
    case call_kind::refresh: {
      auto at = str_of(o, "jwt_token");
      auto rt = str_of(o, "refresh_token");
      if (at.empty() || rt.empty())
        return malformed("no tokens in the authentication answer");
      std::string user_json;
      if (auto* u = o.if_contains("user"); u && u->is_object())
        user_json = json::serialize(*u);
      json::object d;
      d["access_token"] = at;
      d["refresh_token"] = rt;
      d["token_type"] = "Bearer";
      d["expires_in"] = lifetime_of(at, 900);
      d["refresh_expires_in"] = lifetime_of(rt, 604800);
      d["user"] = user_value(user_from_claims(at, user_json));
      a.body = envelope_json(json::serialize(d));
      return a;
    }
    case call_kind::history: {
      bool ok = false;
      auto page = history_from_wire(rq, plain, ok);
      if (!ok)
        return malformed("no messages list in the history answer");
      json::object d;
      d["conversation_id"] = page.conversation_id;
      json::array arr;
      for (auto& m : page.messages)
        arr.push_back(message_value(m));
      d["messages"] = std::move(arr);
      d["has_more"] = page.has_more;
      d["next_since"] = page.next_since;
      a.body = envelope_json(json::serialize(d));
      return a;
    }
    case call_kind::health: {
      json::object d;
      if (o.if_contains("container")) { // /health/detailed
        d["is_healthy"] = str_of(o, "container") == "healthy";
        json::object services;
        if (auto* s = o.if_contains("services"); s && s->is_object())
          for (auto& kv : s->get_object()) {
            bool up = kv.value().is_object()
                      && kv.value().get_object().if_contains("healthy")
                      && kv.value().get_object().at("healthy").is_bool()
                      && kv.value().get_object().at("healthy").get_bool();
            services[kv.key()] = up ? "up" : "down";
          }
        d["services"] = std::move(services);
        d["version"] = str_of(o, "version");
        d["timestamp"] = str_of(o, "timestamp");
      } else {
        d["is_healthy"] = str_of(o, "status") == "healthy";
        d["version"] = str_of(o, "version");
        d["timestamp"] = str_of(o, "timestamp");
        d["services"] = json::object{{"http", "up"}};
        if (auto* u = o.if_contains("uptime_seconds"); u && u->is_number())
          d["uptime_s"] = static_cast<int64_t>(u->to_number<double>());
      }
      a.body = envelope_json(json::serialize(d));
      return a;
    }
    default:
      return malformed("an unexpected answer");
  }
}

std::variant<send_outcome, wire_error>
map_send(const wire_request& rq, const reply_stream& s,
         const std::string& conversation_header) {
  if (s.error())
    return *s.error();
  if (!s.done()) {
    wire_error e;
    e.cls = error_class::network;
    e.status = 200;
    e.code = "stream_cut";
    e.message = "the AICO server's reply stream ended before the reply was "
                "complete; the message itself was received";
    e.outcome_unknown = true;
    return e;
  }
  send_outcome o;
  auto cid = !conversation_header.empty() ? conversation_header
                                          : s.conversation_id();
  auto who = user_from_claims(rq.user_token);
  auto ms = parse_aico_time(s.timestamp());
  if (ms < 0)
    ms = 0;
  o.aico_message_id = s.message_id();
  o.thinking = s.thinking();
  auto& m = o.sent;
  m.id = rq.client_message_id;
  m.conversation_id = cid;
  m.content = rq.content;
  m.type = rq.message_type;
  m.sender_id = who.id;
  m.sender = who.username;
  m.timestamp_ms = ms;
  m.timestamp = iso_ms(ms);
  m.seq = static_cast<uint64_t>(ms);
  m.status = message_status::sent;
  {
    json::error_code ec;
    auto meta = json::parse(rq.metadata, ec);
    json::object mo = !ec && meta.is_object() ? meta.get_object()
                                              : json::object{};
    mo["aico_message_id"] = s.message_id();
    m.metadata = json::serialize(mo);
  }
  auto& r = o.reply;
  r.id = s.message_id().empty() ? "bot-" + rq.client_message_id
                                : s.message_id();
  r.conversation_id = cid;
  r.content = s.response();
  r.type = "text";
  r.sender_id = "companion";
  r.sender = "companion";
  r.timestamp_ms = ms;
  r.timestamp = iso_ms(ms);
  r.seq = static_cast<uint64_t>(ms) + 1;
  r.status = message_status::sent;
  r.reply_to = rq.client_message_id;
  return o;
}

engine_answer send_answer(const send_outcome& o) {
  engine_answer a;
  a.status = 201;
  a.body = envelope_json(message_json(o.sent));
  return a;
}

stream_chunk to_stream_chunk(const wire_request& rq, const reply_stream& s,
                             const stream_line& line, uint64_t seq_no) {
  stream_chunk c;
  c.conversation_id = s.conversation_id();
  c.reply_to = rq.client_message_id;
  c.message_id = s.message_id().empty() ? "bot-" + rq.client_message_id
                                        : s.message_id();
  c.seq_no = seq_no;
  c.chunk = line.content;
  c.done = line.kind == line_kind::final;
  return c;
}

} // namespace aico::aico_profile
