#include "gateway/json_util.hpp"

#include <cmath>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace aico::gateway {

std::string ok_body(const json::value& data, std::string_view message) {
  json::object o;
  o["success"] = true;
  o["data"] = data;
  if (!message.empty())
    o["message"] = message;
  return json::serialize(o);
}

std::string error_body(std::string_view code, std::string_view message,
                       const json::object& details) {
  json::object o;
  o["success"] = false;
  o["message"] = message;
  o["code"] = code;
  o["details"] = details;
  return json::serialize(o);
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

int64_t now_s() {
  return now_ms() / 1000;
}

std::string iso8601_ms(int64_t ms) {
  int64_t secs = ms / 1000;
  int64_t rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    --secs;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(rem));
  return buf;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace

std::string percent_decode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>>
parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{}
                                          : query.substr(amp + 1);
    if (part.empty())
      continue;
    auto eq = part.find('=');
    if (eq == std::string_view::npos)
      out.emplace_back(percent_decode(part, true), std::string{});
    else
      out.emplace_back(percent_decode(part.substr(0, eq), true),
                       percent_decode(part.substr(eq + 1), true));
  }
  return out;
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80)
      ++n;
  return n;
}

std::optional<json::value> parse_json(std::string_view text) {
  json::parse_options opts;
  opts.max_depth = 64;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, opts);
  if (ec)
    return std::nullopt;
  return v;
}

namespace {

bool non_finite_at(const json::value& v, std::string& path) {
  switch (v.kind()) {
    case json::kind::double_:
      return !std::isfinite(v.get_double());
    case json::kind::array: {
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        auto mark = path.size();
        path += "[" + std::to_string(i) + "]";
        if (non_finite_at(a[i], path))
          return true;
        path.resize(mark);
      }
      return false;
    }
    case json::kind::object:
      for (const auto& [key, value] : v.get_object()) {
        auto mark = path.size();
        if (!path.empty())
          path += '.';
        path.append(key.data(), key.size());
        if (non_finite_at(value, path))
          return true;
        path.resize(mark);
      }
      return false;
    default:
      return false;
  }
}

} // namespace

bool find_non_finite(const json::value& v, std::string* where) {
  std::string path;
  bool found = non_finite_at(v, path);
  if (found && where)
    *where = std::move(path);
  return found;
}

json::object parse_object_or_empty(std::string_view text) {
  auto v = parse_json(text);
  if (v && v->is_object())
    return v->as_object();
  return {};
}

std::optional<int64_t> as_int64(const json::value& v) {
  if (v.is_int64())
    return v.as_int64();
  if (v.is_uint64()) {
    auto u = v.as_uint64();
    if (u <= static_cast<uint64_t>(INT64_MAX))
      return static_cast<int64_t>(u);
    return std::nullopt;
  }
  if (v.is_double()) {
    double d = v.as_double();
    if (std::isfinite(d) && std::floor(d) == d && d >= -9.2e18 && d <= 9.2e18)
      return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

} // namespace aico::gateway
