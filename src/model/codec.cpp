#include "src/model/codec.hpp"

#include <cctype>

#include <cmath>
#include <limits>
#include <new>
#include <utility>

#include <boost/json.hpp>

#include "src/core/json_numbers.hpp"

namespace aico {

namespace json = boost::json;

namespace {

// -- errors and paths -----------------------------------------------------------

/// The first error of one decode call.
struct ctx {
  caf::error err;
};

/// Keeps error messages bounded when a key or value comes from the input.
std::string clip(std::string_view s, size_t max = 64) {
  if (s.size() <= max)
    return std::string{s};
  // Cut at a UTF-8 character boundary.
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
    --n;
  std::string res{s.substr(0, n)};
  res += "...";
  return res;
}

std::string child(const std::string& at, std::string_view key) {
  if (at.empty())
    return clip(key);
  std::string res = at;
  res += '.';
  res += clip(key);
  return res;
}

std::string item(const std::string& at, size_t i) {
  std::string res = at.empty() ? std::string{"(root)"} : at;
  res += '[';
  res += std::to_string(i);
  res += ']';
  return res;
}

bool fail(ctx& c, const std::string& path, std::string what) {
  std::string msg = "field '";
  msg += path.empty() ? "(root)" : path;
  msg += "': ";
  msg += what;
  c.err = make_engine_error(error_class::validation, std::move(msg), 0,
                            "bad_field");
  return false;
}

caf::error out_of_memory() {
  return make_engine_error(error_class::unknown,
                           "out of memory while decoding JSON", 0,
                           "internal_error");
}

caf::error internal_error(const char* what) {
  std::string msg = "unexpected failure while decoding JSON: ";
  msg += what;
  return make_engine_error(error_class::unknown, std::move(msg), 0,
                           "internal_error");
}

const char* kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "integer";
    case json::kind::double_:
      return "number";
    case json::kind::string:
      return "string";
    case json::kind::array:
      return "array";
    case json::kind::object:
      return "object";
  }
  return "?";
}

bool wrong_type(ctx& c, const std::string& path, const char* expected,
                const json::value& v) {
  std::string what = "expected ";
  what += expected;
  what += ", got ";
  what += kind_name(v);
  return fail(c, path, std::move(what));
}

// -- parsing --------------------------------------------------------------------

json::parse_options parse_opts() {
  json::parse_options opt;
  opt.max_depth = max_json_depth;
  return opt;
}

/// Parses text with the error_code API; offset and reason on failure.
bool parse(ctx& c, std::string_view text, json::value& out) {
  json::stream_parser p{json::storage_ptr{}, parse_opts()};
  boost::system::error_code ec;
  size_t n = p.write(text.data(), text.size(), ec);
  if (!ec)
    p.finish(ec);
  if (ec) {
    std::string msg = "invalid JSON at offset ";
    msg += std::to_string(n);
    msg += ": ";
    msg += ec.message();
    c.err = make_engine_error(error_class::validation, std::move(msg), 0,
                              "bad_json");
    return false;
  }
  out = p.release();
  if (!all_finite(out)) {
    // Boost.JSON reads 1e400 as an infinity, which no model field can hold
    // and which would be written back as "Infinity" (not JSON)
    c.err = make_engine_error(error_class::validation,
                              "invalid JSON: a number is out of range", 0,
                              "bad_json");
    return false;
  }
  return true;
}

/// Parses JSON text held by a model (metadata, data, ...) for embedding;
/// `fallback` when it is not valid (or not an object if `object_only`).
json::value embed(const std::string& text, bool object_only,
                  json::value fallback) {
  boost::system::error_code ec;
  auto v = json::parse(json::string_view{text.data(), text.size()}, ec,
                       json::storage_ptr{}, parse_opts());
  if (ec || (object_only && !v.is_object()) || !all_finite(v))
    return fallback;
  return v;
}

// -- value readers --------------------------------------------------------------

bool read_object(ctx& c, const json::value& v, const std::string& path,
                 const json::object*& out) {
  out = v.if_object();
  return out != nullptr || wrong_type(c, path, "object", v);
}

bool read_array(ctx& c, const json::value& v, const std::string& path,
                const json::array*& out) {
  out = v.if_array();
  return out != nullptr || wrong_type(c, path, "array", v);
}

bool read(ctx& c, const json::value& v, const std::string& path,
          std::string& out) {
  auto s = v.if_string();
  if (!s)
    return wrong_type(c, path, "string", v);
  out.assign(s->data(), s->size());
  return true;
}

bool read(ctx& c, const json::value& v, const std::string& path, bool& out) {
  auto b = v.if_bool();
  if (!b)
    return wrong_type(c, path, "boolean", v);
  out = *b;
  return true;
}

/// Integers only (no fraction or exponent), at least `min`.
bool read_int(ctx& c, const json::value& v, const std::string& path,
              int64_t& out, int64_t min) {
  if (auto i = v.if_int64()) {
    if (*i < min) {
      return fail(c, path,
                  min == 0 ? std::string{"must not be negative"}
                           : "must be at least " + std::to_string(min));
    }
    out = *i;
    return true;
  }
  if (auto u = v.if_uint64()) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail(c, path, "out of range");
    out = static_cast<int64_t>(*u);
    return true;
  }
  return wrong_type(c, path, "integer", v);
}

bool read(ctx& c, const json::value& v, const std::string& path,
          uint64_t& out) {
  if (auto u = v.if_uint64()) {
    out = *u;
    return true;
  }
  if (auto i = v.if_int64()) {
    if (*i < 0)
      return fail(c, path, "must not be negative");
    out = static_cast<uint64_t>(*i);
    return true;
  }
  return wrong_type(c, path, "integer", v);
}

// -- field readers --------------------------------------------------------------

const json::value* find(const json::object& o, std::string_view key) {
  return o.if_contains(json::string_view{key.data(), key.size()});
}

/// A required field.
template <class T>
bool req(ctx& c, const json::object& o, const std::string& at,
         std::string_view key, T& out) {
  auto path = child(at, key);
  auto v = find(o, key);
  if (!v)
    return fail(c, path, "missing");
  return read(c, *v, path, out);
}

/// An optional field: missing or null leaves `out` unchanged.
template <class T>
bool opt(ctx& c, const json::object& o, const std::string& at,
         std::string_view key, T& out) {
  auto v = find(o, key);
  if (!v || v->is_null())
    return true;
  return read(c, *v, child(at, key), out);
}

bool req_int(ctx& c, const json::object& o, const std::string& at,
             std::string_view key, int64_t& out, int64_t min) {
  auto path = child(at, key);
  auto v = find(o, key);
  if (!v)
    return fail(c, path, "missing");
  return read_int(c, *v, path, out, min);
}

bool opt_int(ctx& c, const json::object& o, const std::string& at,
             std::string_view key, int64_t& out, int64_t min) {
  auto v = find(o, key);
  if (!v || v->is_null())
    return true;
  return read_int(c, *v, child(at, key), out, min);
}

bool req_nonempty(ctx& c, const json::object& o, const std::string& at,
                  std::string_view key, std::string& out) {
  if (!req(c, o, at, key, out))
    return false;
  return !out.empty() || fail(c, child(at, key), "must not be empty");
}

/// An optional field holding any JSON (or only an object): serialized into
/// `out`; missing or null leaves `out` unchanged.
bool opt_json(ctx& c, const json::object& o, const std::string& at,
              std::string_view key, std::string& out, bool object_only) {
  auto v = find(o, key);
  if (!v || v->is_null())
    return true;
  if (object_only && !v->is_object())
    return wrong_type(c, child(at, key), "object", *v);
  out = json::serialize(*v);
  return true;
}

/// An object of strings.
bool read_string_map(ctx& c, const json::value& v, const std::string& path,
                     std::map<std::string, std::string>& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, path, o))
    return false;
  out.clear();
  for (auto& kv : *o) {
    std::string key{kv.key()};
    std::string val;
    if (!read(c, kv.value(), child(path, key), val))
      return false;
    out[std::move(key)] = std::move(val);
  }
  return true;
}

/// An object of non-negative integers.
bool read_count_map(ctx& c, const json::value& v, const std::string& path,
                    std::map<std::string, int64_t>& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, path, o))
    return false;
  out.clear();
  for (auto& kv : *o) {
    std::string key{kv.key()};
    int64_t val = 0;
    if (!read_int(c, kv.value(), child(path, key), val, 0))
      return false;
    out[std::move(key)] = val;
  }
  return true;
}

// -- model decoders -------------------------------------------------------------

bool decode(ctx& c, const json::value& v, const std::string& at,
            chat_message& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  chat_message m;
  std::string status;
  if (!req_nonempty(c, *o, at, "id", m.id)
      || !req(c, *o, at, "conversation_id", m.conversation_id)
      || !req(c, *o, at, "content", m.content)
      || !opt(c, *o, at, "type", m.type)
      || !req(c, *o, at, "sender_id", m.sender_id)
      || !req(c, *o, at, "sender", m.sender)
      || !req(c, *o, at, "timestamp", m.timestamp)
      || !req_int(c, *o, at, "timestamp_ms", m.timestamp_ms, 0)
      || !req(c, *o, at, "seq", m.seq) || !req(c, *o, at, "status", status)
      || !opt(c, *o, at, "failure_reason", m.failure_reason)
      || !opt(c, *o, at, "read_at", m.read_at)
      || !opt_json(c, *o, at, "metadata", m.metadata, true)
      || !opt(c, *o, at, "reply_to", m.reply_to))
    return false;
  if (!from_string(status, m.status))
    return fail(c, child(at, "status"),
                "unknown value \"" + clip(status) + "\"");
  out = std::move(m);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            stream_chunk& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  stream_chunk x;
  if (!req(c, *o, at, "conversation_id", x.conversation_id)
      || !req(c, *o, at, "reply_to", x.reply_to)
      || !req_nonempty(c, *o, at, "message_id", x.message_id)
      || !req(c, *o, at, "seq_no", x.seq_no)
      || !req(c, *o, at, "chunk", x.chunk) || !req(c, *o, at, "done", x.done))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            history_page& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  history_page x;
  if (!req(c, *o, at, "conversation_id", x.conversation_id))
    return false;
  auto path = child(at, "messages");
  auto mv = find(*o, "messages");
  if (!mv)
    return fail(c, path, "missing");
  const json::array* arr = nullptr;
  if (!read_array(c, *mv, path, arr))
    return false;
  x.messages.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    chat_message m;
    if (!decode(c, (*arr)[i], item(path, i), m))
      return false;
    x.messages.push_back(std::move(m));
  }
  if (!req(c, *o, at, "has_more", x.has_more)
      || !req(c, *o, at, "next_since", x.next_since))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            user_preferences& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  user_preferences x;
  for (auto& kv : *o) {
    std::string key{kv.key()};
    auto& jv = kv.value();
    pref_value pv;
    switch (jv.kind()) {
      case json::kind::null:
        break;
      case json::kind::bool_:
        pv = pref_value::of(jv.get_bool());
        break;
      case json::kind::int64:
        pv = pref_value::of(jv.get_int64());
        break;
      case json::kind::uint64: {
        auto u = jv.get_uint64();
        if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          pv = pref_value::of(static_cast<int64_t>(u));
        else
          pv = pref_value::of(static_cast<double>(u));
        break;
      }
      case json::kind::double_:
        if (!std::isfinite(jv.get_double()))
          return fail(c, child(at, key), "number out of range");
        pv = pref_value::of(jv.get_double());
        break;
      case json::kind::string: {
        auto& s = jv.get_string();
        pv = pref_value::of(std::string{s.data(), s.size()});
        break;
      }
      default:
        return wrong_type(c, child(at, key), "string, number, boolean or null",
                          jv);
    }
    x.values[std::move(key)] = std::move(pv);
  }
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at, user& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  user x;
  if (!req_nonempty(c, *o, at, "id", x.id)
      || !req(c, *o, at, "username", x.username)
      || !req(c, *o, at, "display_name", x.display_name)
      || !req(c, *o, at, "role", x.role))
    return false;
  if (auto pv = find(*o, "preferences"); pv && !pv->is_null()) {
    user_preferences prefs; // validates the flat shape
    if (!decode(c, *pv, child(at, "preferences"), prefs))
      return false;
    x.preferences = json::serialize(*pv);
  }
  if (!req(c, *o, at, "created_at", x.created_at))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            family_member& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  family_member x;
  if (!req_nonempty(c, *o, at, "id", x.id)
      || !req(c, *o, at, "username", x.username)
      || !req(c, *o, at, "display_name", x.display_name)
      || !req(c, *o, at, "role", x.role))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            family& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  auto path = child(at, "members");
  auto mv = find(*o, "members");
  if (!mv)
    return fail(c, path, "missing");
  const json::array* arr = nullptr;
  if (!read_array(c, *mv, path, arr))
    return false;
  family x;
  x.members.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    family_member m;
    if (!decode(c, (*arr)[i], item(path, i), m))
      return false;
    x.members.push_back(std::move(m));
  }
  out = std::move(x);
  return true;
}

/// The fields /health, /health/detailed and /system/status share.
template <class T>
bool decode_health_common(ctx& c, const json::object& o, const std::string& at,
                          T& x) {
  if (!req(c, o, at, "is_healthy", x.is_healthy)
      || !req(c, o, at, "version", x.version)
      || !req(c, o, at, "timestamp", x.timestamp))
    return false;
  auto path = child(at, "services");
  auto sv = find(o, "services");
  if (!sv)
    return fail(c, path, "missing");
  return read_string_map(c, *sv, path, x.services);
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            system_status& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  system_status x;
  if (!decode_health_common(c, *o, at, x)
      || !req_int(c, *o, at, "uptime_s", x.uptime_s, 0))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            system_health& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  system_health x;
  if (!decode_health_common(c, *o, at, x)
      || !opt_int(c, *o, at, "uptime_s", x.uptime_s, 0))
    return false;
  if (auto cv = find(*o, "connections"); cv && !cv->is_null())
    if (!read_count_map(c, *cv, child(at, "connections"), x.connections))
      return false;
  if (auto cv = find(*o, "counts"); cv && !cv->is_null())
    if (!read_count_map(c, *cv, child(at, "counts"), x.counts))
      return false;
  if (!opt_json(c, *o, at, "faults", x.faults, true))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            update_ticket& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  update_ticket x;
  if (!req_nonempty(c, *o, at, "update_id", x.update_id)
      || !req(c, *o, at, "status", x.status))
    return false;
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            system_update_event& out) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  system_update_event x;
  if (!req_nonempty(c, *o, at, "update_id", x.update_id)
      || !req(c, *o, at, "status", x.status)
      || !req(c, *o, at, "version", x.version)
      || !req(c, *o, at, "timestamp", x.timestamp))
    return false;
  out = std::move(x);
  return true;
}

/// The envelope's fields; `data` (if given) receives the data value.
bool decode_envelope_fields(ctx& c, const json::value& v, const std::string& at,
                            envelope& out, json::value* data) {
  const json::object* o = nullptr;
  if (!read_object(c, v, at, o))
    return false;
  envelope x;
  x.status = out.status;
  if (!req(c, *o, at, "success", x.success)
      || !opt(c, *o, at, "message", x.message)
      || !opt(c, *o, at, "code", x.code))
    return false;
  if (auto dv = find(*o, "data")) {
    x.data = json::serialize(*dv);
    if (data)
      *data = *dv;
  }
  if (auto dv = find(*o, "details"))
    x.details = json::serialize(*dv);
  out = std::move(x);
  return true;
}

bool decode(ctx& c, const json::value& v, const std::string& at,
            envelope& out) {
  return decode_envelope_fields(c, v, at, out, nullptr);
}

bool is_2xx(int32_t status) {
  return status == 0 || (status >= 200 && status <= 299);
}

/// decode_envelope, optionally keeping the data value.
bool decode_envelope_impl(ctx& c, int32_t status, std::string_view body,
                          envelope& out, json::value* data) {
  out = envelope{};
  out.status = status;
  json::value root;
  bool ok = parse(c, body, root)
            && decode_envelope_fields(c, root, std::string{}, out, data);
  if (!ok) {
    if (is_2xx(status))
      return false;
    // Not an envelope, but the status says what happened.
    c.err = caf::error{};
    out = envelope{};
    out.status = status;
  }
  if (!is_2xx(status))
    out.success = false;
  if (!out.success && out.message.empty())
    out.message = "gateway answered with status " + std::to_string(status);
  return true;
}

// -- encoders -------------------------------------------------------------------

json::value null_if_empty(const std::string& s) {
  if (s.empty())
    return nullptr;
  return json::value(json::string_view{s.data(), s.size()});
}

json::value str(const std::string& s) {
  return json::value(json::string_view{s.data(), s.size()});
}

json::value pref_json(const pref_value& p) {
  switch (p.kind) {
    case pref_kind::null:
      return nullptr;
    case pref_kind::boolean:
      return p.boolean;
    case pref_kind::integer:
      return p.integer;
    case pref_kind::number:
      if (!std::isfinite(p.number))
        return nullptr; // not representable in JSON
      return p.number;
    case pref_kind::string:
      return str(p.string);
  }
  return nullptr;
}

// -- API boundary ---------------------------------------------------------------

template <class T>
caf::expected<T> decode_value_impl(const json::value& v) {
  try {
    ctx c;
    if (!all_finite(v))
      return make_engine_error(error_class::validation,
                               "invalid JSON: a number is out of range", 0,
                               "bad_json");
    T out;
    if (!decode(c, v, std::string{}, out))
      return std::move(c.err);
    return out;
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  } catch (const std::exception& e) {
    return internal_error(e.what());
  } catch (...) {
    return internal_error("unknown exception");
  }
}

template <class T>
caf::expected<T> decode_as_impl(std::string_view text) {
  try {
    ctx c;
    json::value root;
    if (!parse(c, text, root))
      return std::move(c.err);
    T out;
    if (!decode(c, root, std::string{}, out))
      return std::move(c.err);
    return out;
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  } catch (const std::exception& e) {
    return internal_error(e.what());
  } catch (...) {
    return internal_error("unknown exception");
  }
}

} // namespace

// -- generic entry points -------------------------------------------------------

template <class T>
caf::expected<T> decode_value(const json::value& v) {
  return decode_value_impl<T>(v);
}

template <class T>
caf::expected<T> decode_as(std::string_view text) {
  return decode_as_impl<T>(text);
}

template <class T>
caf::expected<T> decode_reply(int32_t status, std::string_view body) {
  try {
    ctx c;
    envelope env;
    json::value data;
    if (!decode_envelope_impl(c, status, body, env, &data))
      return std::move(c.err);
    if (!env.success)
      return make_status_error(status, std::string{body});
    T out;
    if (!decode(c, data, std::string{}, out))
      return std::move(c.err);
    return out;
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  } catch (const std::exception& e) {
    return internal_error(e.what());
  } catch (...) {
    return internal_error("unknown exception");
  }
}

template <class T>
std::string encode(const T& x) {
  return json::serialize(to_json_value(x));
}

#define AICO_MODEL_INSTANTIATE(T)                                              \
  template caf::expected<T> decode_value<T>(const json::value&);               \
  template caf::expected<T> decode_as<T>(std::string_view);                    \
  template std::string encode<T>(const T&);

AICO_MODEL_INSTANTIATE(chat_message)
AICO_MODEL_INSTANTIATE(stream_chunk)
AICO_MODEL_INSTANTIATE(history_page)
AICO_MODEL_INSTANTIATE(user_preferences)
AICO_MODEL_INSTANTIATE(user)
AICO_MODEL_INSTANTIATE(family_member)
AICO_MODEL_INSTANTIATE(family)
AICO_MODEL_INSTANTIATE(system_status)
AICO_MODEL_INSTANTIATE(system_health)
AICO_MODEL_INSTANTIATE(update_ticket)
AICO_MODEL_INSTANTIATE(system_update_event)
AICO_MODEL_INSTANTIATE(envelope)

#undef AICO_MODEL_INSTANTIATE

template caf::expected<chat_message> decode_reply<chat_message>(int32_t,
                                                                std::string_view);
template caf::expected<stream_chunk> decode_reply<stream_chunk>(int32_t,
                                                                std::string_view);
template caf::expected<history_page> decode_reply<history_page>(int32_t,
                                                                std::string_view);
template caf::expected<user_preferences>
  decode_reply<user_preferences>(int32_t, std::string_view);
template caf::expected<user> decode_reply<user>(int32_t, std::string_view);
template caf::expected<family_member>
  decode_reply<family_member>(int32_t, std::string_view);
template caf::expected<family> decode_reply<family>(int32_t, std::string_view);
template caf::expected<system_status>
  decode_reply<system_status>(int32_t, std::string_view);
template caf::expected<system_health>
  decode_reply<system_health>(int32_t, std::string_view);
template caf::expected<update_ticket>
  decode_reply<update_ticket>(int32_t, std::string_view);
template caf::expected<system_update_event>
  decode_reply<system_update_event>(int32_t, std::string_view);

// -- gateway answers -------------------------------------------------------------

std::string reply_header(const api_reply& r, std::string_view name) {
  for (auto& [k, v] : r.headers)
    if (k.size() == name.size()
        && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a))
                    == std::tolower(static_cast<unsigned char>(b));
           }))
      return v;
  return {};
}

caf::error bad_reply_error(int32_t status, const std::string& why) {
  return make_engine_error(error_class::unknown,
                           "the gateway's answer (status "
                             + std::to_string(status)
                             + ") is not a valid reply: " + why,
                           status, "bad_reply");
}

bool is_bad_reply(const caf::error& err) {
  return classify(err).code == "bad_reply";
}

caf::expected<api_reply> check_reply(api_reply r) {
  try {
    if (r.status < 200 || r.status > 299)
      return make_status_error(r.status, r.body,
                               reply_header(r, "Retry-After"));
    auto env = decode_envelope(r.status, r.body);
    if (!env)
      return bad_reply_error(r.status, classify(env.error()).message);
    if (!env->success)
      return bad_reply_error(r.status,
                             "success is false"
                               + (env->message.empty()
                                    ? std::string{}
                                    : " (" + env->message + ")"));
    return r;
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  }
}

// -- named decoders -------------------------------------------------------------

caf::expected<envelope> decode_envelope(int32_t status, std::string_view body) {
  try {
    ctx c;
    envelope env;
    if (!decode_envelope_impl(c, status, body, env, nullptr))
      return std::move(c.err);
    return env;
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  } catch (const std::exception& e) {
    return internal_error(e.what());
  } catch (...) {
    return internal_error("unknown exception");
  }
}

caf::expected<chat_message> decode_message(std::string_view json) {
  return decode_as<chat_message>(json);
}

caf::expected<history_page> decode_history_page(std::string_view json) {
  return decode_as<history_page>(json);
}

caf::expected<user> decode_user(std::string_view json) {
  return decode_as<user>(json);
}

caf::expected<user_preferences> decode_preferences(std::string_view json) {
  return decode_as<user_preferences>(json);
}

caf::expected<family> decode_family(std::string_view json) {
  return decode_as<family>(json);
}

caf::expected<system_status> decode_system_status(std::string_view json) {
  return decode_as<system_status>(json);
}

caf::expected<system_health> decode_system_health(std::string_view json) {
  return decode_as<system_health>(json);
}

caf::expected<update_ticket> decode_update_ticket(std::string_view json) {
  return decode_as<update_ticket>(json);
}

caf::expected<stream_chunk> decode_stream_chunk(std::string_view json) {
  return decode_as<stream_chunk>(json);
}

caf::expected<system_update_event>
decode_system_update_event(std::string_view json) {
  return decode_as<system_update_event>(json);
}

caf::expected<user_preferences> preferences_of(const user& u) {
  return decode_as<user_preferences>(u.preferences);
}

// -- request bodies -------------------------------------------------------------

std::string encode_send_message_body(const chat_message& m) {
  json::object o;
  o["id"] = str(m.id);
  if (!m.conversation_id.empty())
    o["conversation_id"] = str(m.conversation_id);
  o["content"] = str(m.content);
  o["type"] = str(m.type.empty() ? std::string{"text"} : m.type);
  o["metadata"] = embed(m.metadata, true, json::object{});
  return json::serialize(o);
}

std::string encode_preferences_update_body(const user_preferences& p) {
  return encode(p);
}

// -- full encoders --------------------------------------------------------------

json::value to_json_value(const chat_message& x) {
  json::object o;
  o["id"] = str(x.id);
  o["conversation_id"] = str(x.conversation_id);
  o["content"] = str(x.content);
  o["type"] = str(x.type);
  o["sender_id"] = str(x.sender_id);
  o["sender"] = str(x.sender);
  o["timestamp"] = str(x.timestamp);
  o["timestamp_ms"] = x.timestamp_ms;
  o["seq"] = x.seq;
  o["status"] = to_string(x.status);
  if (!x.failure_reason.empty())
    o["failure_reason"] = str(x.failure_reason);
  o["read_at"] = null_if_empty(x.read_at);
  o["metadata"] = embed(x.metadata, true, json::object{});
  o["reply_to"] = null_if_empty(x.reply_to);
  return o;
}

json::value to_json_value(const stream_chunk& x) {
  json::object o;
  o["conversation_id"] = str(x.conversation_id);
  o["reply_to"] = str(x.reply_to);
  o["message_id"] = str(x.message_id);
  o["seq_no"] = x.seq_no;
  o["chunk"] = str(x.chunk);
  o["done"] = x.done;
  return o;
}

json::value to_json_value(const history_page& x) {
  json::object o;
  o["conversation_id"] = str(x.conversation_id);
  json::array arr;
  arr.reserve(x.messages.size());
  for (auto& m : x.messages)
    arr.push_back(to_json_value(m));
  o["messages"] = std::move(arr);
  o["has_more"] = x.has_more;
  o["next_since"] = x.next_since;
  return o;
}

json::value to_json_value(const user_preferences& x) {
  json::object o;
  for (auto& [key, val] : x.values)
    o[json::string_view{key.data(), key.size()}] = pref_json(val);
  return o;
}

json::value to_json_value(const user& x) {
  json::object o;
  o["id"] = str(x.id);
  o["username"] = str(x.username);
  o["display_name"] = str(x.display_name);
  o["role"] = str(x.role);
  o["preferences"] = embed(x.preferences, true, json::object{});
  o["created_at"] = str(x.created_at);
  return o;
}

json::value to_json_value(const family_member& x) {
  json::object o;
  o["id"] = str(x.id);
  o["username"] = str(x.username);
  o["display_name"] = str(x.display_name);
  o["role"] = str(x.role);
  return o;
}

json::value to_json_value(const family& x) {
  json::array arr;
  arr.reserve(x.members.size());
  for (auto& m : x.members)
    arr.push_back(to_json_value(m));
  json::object o;
  o["members"] = std::move(arr);
  return o;
}

namespace {

json::object string_map_json(const std::map<std::string, std::string>& m) {
  json::object o;
  for (auto& [k, v] : m)
    o[json::string_view{k.data(), k.size()}] = str(v);
  return o;
}

json::object count_map_json(const std::map<std::string, int64_t>& m) {
  json::object o;
  for (auto& [k, v] : m)
    o[json::string_view{k.data(), k.size()}] = v;
  return o;
}

} // namespace

json::value to_json_value(const system_status& x) {
  json::object o;
  o["is_healthy"] = x.is_healthy;
  o["version"] = str(x.version);
  o["timestamp"] = str(x.timestamp);
  o["services"] = string_map_json(x.services);
  o["uptime_s"] = x.uptime_s;
  return o;
}

json::value to_json_value(const system_health& x) {
  json::object o;
  o["is_healthy"] = x.is_healthy;
  o["version"] = str(x.version);
  o["timestamp"] = str(x.timestamp);
  o["services"] = string_map_json(x.services);
  if (x.uptime_s >= 0)
    o["uptime_s"] = x.uptime_s;
  if (!x.connections.empty())
    o["connections"] = count_map_json(x.connections);
  if (!x.counts.empty())
    o["counts"] = count_map_json(x.counts);
  if (!x.faults.empty())
    o["faults"] = embed(x.faults, true, json::object{});
  return o;
}

json::value to_json_value(const update_ticket& x) {
  json::object o;
  o["update_id"] = str(x.update_id);
  o["status"] = str(x.status);
  return o;
}

json::value to_json_value(const system_update_event& x) {
  json::object o;
  o["update_id"] = str(x.update_id);
  o["status"] = str(x.status);
  o["version"] = str(x.version);
  o["timestamp"] = str(x.timestamp);
  return o;
}

json::value to_json_value(const envelope& x) {
  json::object o;
  o["success"] = x.success;
  o["data"] = embed(x.data, false, nullptr);
  if (!x.message.empty())
    o["message"] = str(x.message);
  if (!x.code.empty())
    o["code"] = str(x.code);
  o["details"] = embed(x.details, false, json::object{});
  return o;
}

std::string encode_message(const chat_message& x) {
  return encode(x);
}

std::string encode_stream_chunk(const stream_chunk& x) {
  return encode(x);
}

std::string encode_history_page(const history_page& x) {
  return encode(x);
}

std::string encode_preferences(const user_preferences& x) {
  return encode(x);
}

std::string encode_user(const user& x) {
  return encode(x);
}

std::string encode_family(const family& x) {
  return encode(x);
}

std::string encode_system_status(const system_status& x) {
  return encode(x);
}

std::string encode_system_health(const system_health& x) {
  return encode(x);
}

std::string encode_update_ticket(const update_ticket& x) {
  return encode(x);
}

std::string encode_system_update_event(const system_update_event& x) {
  return encode(x);
}

std::string encode_envelope(const envelope& x) {
  return encode(x);
}

} // namespace aico
