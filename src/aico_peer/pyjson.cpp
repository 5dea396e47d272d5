#include "aico_peer/pyjson.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace aico::peer {

namespace {

void put_u16(std::string& out, unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "\\u%04x", v & 0xFFFFu);
  out += buf;
}

/// Decodes one UTF-8 sequence at s[i]; returns the code point and advances
/// i. Invalid bytes come back as U+FFFD (Boost.JSON only yields valid UTF-8,
/// so this is a guard).
unsigned next_cp(std::string_view s, std::size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = (c >> 5) == 0x6    ? 1
                  : (c >> 4) == 0xE  ? 2
                  : (c >> 3) == 0x1E ? 3
                                     : 0;
  if (n == 0 || i + n >= s.size()) {
    ++i;
    return 0xFFFD;
  }
  unsigned cp = n == 1 ? (c & 0x1Fu) : n == 2 ? (c & 0x0Fu) : (c & 0x07u);
  for (std::size_t k = 1; k <= n; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
  i += n + 1;
  return cp;
}

void put_string(std::string& out, std::string_view s, bool ascii) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ascii && c == 0x7F))
          put_u16(out, c);
        else
          out += static_cast<char>(c);
      }
      continue;
    }
    if (!ascii) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    unsigned cp = next_cp(s, i);
    if (cp >= 0x10000) {
      cp -= 0x10000;
      put_u16(out, 0xD800 + (cp >> 10));
      put_u16(out, 0xDC00 + (cp & 0x3FF));
    } else {
      put_u16(out, cp);
    }
  }
  out += '"';
}

void dump(std::string& out, const json::value& v, const py_style& st) {
  switch (v.kind()) {
  case json::kind::null:
    out += "null";
    return;
  case json::kind::bool_:
    out += v.get_bool() ? "true" : "false";
    return;
  case json::kind::int64:
    out += std::to_string(v.get_int64());
    return;
  case json::kind::uint64:
    out += std::to_string(v.get_uint64());
    return;
  case json::kind::double_:
    out += py_float(v.get_double());
    return;
  case json::kind::string:
    put_string(out, v.get_string(), st.ensure_ascii);
    return;
  case json::kind::array: {
    out += '[';
    bool first = true;
    for (auto& e : v.get_array()) {
      if (!first)
        out += st.compact ? "," : ", ";
      first = false;
      dump(out, e, st);
    }
    out += ']';
    return;
  }
  case json::kind::object: {
    out += '{';
    bool first = true;
    for (auto& kv : v.get_object()) {
      if (!first)
        out += st.compact ? "," : ", ";
      first = false;
      put_string(out, kv.key(), st.ensure_ascii);
      out += st.compact ? ":" : ": ";
      dump(out, kv.value(), st);
    }
    out += '}';
    return;
  }
  }
}

} // namespace

std::string py_float(double d) {
  if (std::isnan(d))
    return "NaN";
  if (std::isinf(d))
    return d > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits in scientific form: "-d.ddde±XX".
  char buf[64];
  auto r
    = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  bool neg = !sci.empty() && sci[0] == '-';
  if (neg)
    sci.erase(0, 1);
  auto e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (char ch : mant)
    if (ch != '.')
      digits += ch;
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) { // Python repr: fixed for 1e-4 <= |d| < 1e16
    if (exp >= 0) {
      auto int_len = static_cast<std::size_t>(exp) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    } else {
      out
        += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1)
    out += "." + digits.substr(1);
  char eb[16];
  std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+',
                exp < 0 ? -exp : exp);
  out += eb;
  return out;
}

std::string py_dumps(const json::value& v, py_style style) {
  std::string out;
  dump(out, v, style);
  return out;
}

std::optional<json::value> parse_json(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec)
    return std::nullopt;
  return v;
}

bool py_truthy(const json::value& v) {
  switch (v.kind()) {
  case json::kind::null:
    return false;
  case json::kind::bool_:
    return v.get_bool();
  case json::kind::int64:
    return v.get_int64() != 0;
  case json::kind::uint64:
    return v.get_uint64() != 0;
  case json::kind::double_:
    return v.get_double() != 0.0;
  case json::kind::string:
    return !v.get_string().empty();
  case json::kind::array:
    return !v.get_array().empty();
  case json::kind::object:
    return !v.get_object().empty();
  }
  return false;
}

} // namespace aico::peer
