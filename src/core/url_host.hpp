// aico engine: validation of the host part of a URL (pure logic, header
// only). Used by the engine's URL parsers (ws:// URLs, the HTTP base URL)
// so that a host with CR/LF, control bytes, spaces or other bytes that
// cannot appear in a host never reaches a Host header, a TLS SNI name or a
// resolver.
#pragma once

#include <string>
#include <string_view>

namespace aico {

/// Checks a host as it appears between "//" and the port: a registered
/// name or IPv4 address (letters, digits, '-', '.', '_', '~'; at most 253
/// bytes, labels at most 63), or an IPv6 literal given WITHOUT its brackets
/// (hex digits, ':' and '.' for an embedded IPv4 address; `bracketed`
/// says it came in brackets). On failure returns false and sets `why` to a
/// sentence naming the problem (never echoing control bytes).
inline bool valid_url_host(std::string_view host, bool bracketed,
                           std::string& why) {
  if (host.empty()) {
    why = "the URL has no host";
    return false;
  }
  for (char ch : host) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') {
      why = "the URL's host contains a line break";
      return false;
    }
    if (c < 0x20 || c == 0x7f) {
      why = "the URL's host contains a control character";
      return false;
    }
    if (c == ' ') {
      why = "the URL's host contains a space";
      return false;
    }
    if (c >= 0x80) {
      why = "the URL's host contains a non-ASCII byte (use its punycode "
            "form)";
      return false;
    }
  }
  if (bracketed) {
    if (host.find(':') == std::string_view::npos) {
      why = "the URL's bracketed host is not an IPv6 address";
      return false;
    }
    for (char c : host) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
      if (!ok) {
        why = "the URL's IPv6 address contains an invalid character";
        return false;
      }
    }
    if (host.size() > 45) {
      why = "the URL's IPv6 address is too long";
      return false;
    }
    return true;
  }
  if (host.size() > 253) {
    why = "the URL's host is longer than 253 characters";
    return false;
  }
  std::size_t label = 0;
  for (char c : host) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_'
              || c == '~';
    if (!ok) {
      why = std::string{"the URL's host contains an invalid character '"}
            + c + "'";
      return false;
    }
    if (c == '.') {
      if (label == 0) {
        why = "the URL's host has an empty label";
        return false;
      }
      label = 0;
    } else if (++label > 63) {
      why = "the URL's host has a label longer than 63 characters";
      return false;
    }
  }
  return true;
}

/// The authority of a URL ("host", "host:port", "[v6]" or "[v6]:port",
/// without user info), split and checked: the host by valid_url_host, the
/// port (if any) a number from 1 to 65535 (`port` 0 = none given).
struct url_authority {
  std::string_view host;
  bool bracketed = false; ///< the host came as an [IPv6] literal
  unsigned port = 0;
};

/// Splits and checks `authority`; on failure returns false and sets `why`.
inline bool split_url_authority(std::string_view authority,
                                url_authority& out, std::string& why) {
  url_authority res;
  std::string_view host = authority;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "the URL's IPv6 address has no closing bracket";
      return false;
    }
    res.bracketed = true;
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "the URL has something after its IPv6 address";
        return false;
      }
      port = after.substr(1);
      has_port = true;
    }
  } else if (auto colon = authority.rfind(':');
             colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    has_port = true;
  }
  if (has_port && port.empty()) {
    why = "the URL's port is empty";
    return false;
  }
  if (!valid_url_host(host, res.bracketed, why))
    return false;
  if (has_port) {
    unsigned long p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) {
        why = "the URL's port is not a number from 1 to 65535";
        return false;
      }
      p = p * 10 + static_cast<unsigned long>(c - '0');
    }
    if (p == 0 || p > 65535) {
      why = "the URL's port is not a number from 1 to 65535";
      return false;
    }
    res.port = static_cast<unsigned>(p);
  }
  res.host = host;
  out = res;
  return true;
}

/// Checks the host of an absolute URL "scheme://[userinfo@]host[:port]/..."
/// (the HTTP transport's base URL before it reaches libcurl). The port, if
/// any, must be 1-65535. On failure returns false and sets `why`.
inline bool valid_url_authority(std::string_view url, std::string& why) {
  auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    why = "the URL has no scheme://";
    return false;
  }
  auto rest = url.substr(sep + 3);
  auto authority = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = authority.rfind('@'); at != std::string_view::npos)
    authority.remove_prefix(at + 1);
  url_authority parts;
  return split_url_authority(authority, parts, why);
}

/// The host of "scheme://host[:port][/...]" (without brackets).
inline std::string url_host(const std::string& url) {
  auto p = url.find("://");
  auto rest = p == std::string::npos ? url : url.substr(p + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string::npos)
    rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    return rest.substr(1, close == std::string::npos ? std::string::npos
                                                     : close - 1);
  }
  return rest.substr(0, rest.find(':'));
}

/// True for a URL whose host is this machine (localhost, 127.x.y.z, ::1):
/// plaintext to it does not cross a network.
inline bool is_loopback_url(const std::string& url) {
  auto host = url_host(url);
  for (auto& ch : host)
    if (ch >= 'A' && ch <= 'Z')
      ch = static_cast<char>(ch - 'A' + 'a');
  if (host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1")
    return true;
  if (host.rfind("127.", 0) != 0)
    return false;
  int dots = 0;
  for (auto ch : host) {
    if (ch == '.')
      ++dots;
    else if (ch < '0' || ch > '9')
      return false;
  }
  return dots == 3;
}

} // namespace aico
