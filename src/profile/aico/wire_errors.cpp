#include "src/profile/aico/wire_errors.hpp"

#include <algorithm>
#include <cctype>

#include <boost/json.hpp>

namespace aico::aico_profile {

namespace json = boost::json;

namespace {

bool retryable_of(error_class cls, int32_t status) {
  switch (cls) {
    case error_class::network:
    case error_class::timeout:
      return true;
    case error_class::server_error:
      return status != 501 && status != 505;
    default:
      return false;
  }
}

error_class class_of_status(int32_t status) {
  switch (status) {
    case 400:
    case 404:
    case 405:
    case 409:
    case 413:
    case 422:
      return error_class::validation;
    case 401:
      return error_class::authentication;
    case 403:
      return error_class::authorization;
    case 408:
      return error_class::timeout;
    case 423:
      return error_class::authentication; // locked account
    case 429:
      return error_class::server_error;
    default:
      if (status >= 500 && status <= 599)
        return error_class::server_error;
      return error_class::unknown;
  }
}

std::string code_of_status(int32_t status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 409:
      return "conflict";
    case 422:
      return "validation_error";
    case 423:
      return "locked";
    case 429:
      return "rate_limited";
    default:
      return status >= 500 ? "internal_error" : "unexpected_status";
  }
}

/// Printable, bounded text from the server (no control bytes).
std::string clean(std::string_view s, std::size_t max = 200) {
  std::string out;
  for (char ch : s) {
    if (out.size() >= max) {
      out += "…";
      break;
    }
    auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7f) ? ' ' : ch;
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

std::string str_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string{};
}

/// `detail` as a sentence: a string, or pydantic's list of
/// {"loc":[…],"msg":…} ("field 'body.pin': field required").
std::string detail_text(const json::value* d) {
  if (!d)
    return {};
  if (d->is_string())
    return clean(d->get_string());
  if (d->is_array()) {
    std::string out;
    for (auto& item : d->get_array()) {
      if (!item.is_object())
        continue;
      auto& e = item.get_object();
      std::string loc;
      if (auto* l = e.if_contains("loc"); l && l->is_array()) {
        for (auto& p : l->get_array()) {
          if (!loc.empty())
            loc += '.';
          if (p.is_string())
            loc += std::string(p.get_string());
          else if (p.is_int64())
            loc += std::to_string(p.get_int64());
        }
      }
      auto msg = str_of(e, "msg");
      if (!out.empty())
        out += "; ";
      out += loc.empty() ? clean(msg) : "field '" + clean(loc, 80) + "': "
                                          + clean(msg);
      if (out.size() > 300)
        break;
    }
    return out;
  }
  return {};
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}

wire_error make(error_class cls, int32_t status, std::string code,
                std::string message) {
  wire_error e;
  e.cls = cls;
  e.status = status;
  e.retryable = retryable_of(cls, status);
  e.code = std::move(code);
  e.message = std::move(message);
  return e;
}

/// The application-level failure texts of login and refresh (200
/// success:false).
wire_error app_failure(const std::string& err) {
  if (err == "Invalid PIN" || err == "User not found")
    return make(error_class::authentication, 200, "invalid_credentials",
                "the AICO server rejected the login: wrong user id or PIN");
  if (err == "Account locked")
    return make(error_class::authentication, 200, "account_locked",
                "the AICO server has locked this account after repeated wrong "
                "PINs; try again in a few minutes");
  if (err == "No authentication configured")
    return make(error_class::authentication, 200, "no_pin_configured",
                "the AICO server has no PIN configured for this user");
  if (starts_with(err, "Refresh token expired"))
    return make(error_class::authentication, 200, "invalid_refresh_token",
                "the session has expired on the AICO server; log in again");
  if (starts_with(err, "Invalid token type") || err == "Invalid refresh token"
      || err == "Refresh token required")
    return make(error_class::authentication, 200, "invalid_refresh_token",
                "the AICO server rejected the refresh token ("
                  + clean(err) + "); log in again");
  auto msg = err.empty() ? std::string{"the AICO server reported a failure"}
                         : "the AICO server reported a failure: " + clean(err);
  return make(error_class::unknown, 200, "app_failure", std::move(msg));
}

} // namespace

std::optional<wire_error> decode_error(int32_t status,
                                       std::string_view content_type,
                                       std::string_view plain, bool encrypted,
                                       bool undecryptable) {
  if (undecryptable)
    return make(error_class::unknown, status, "undecryptable",
                "the AICO server's answer could not be decrypted with the "
                "current channel (HTTP "
                  + std::to_string(status) + ")");
  json::error_code ec;
  json::value v;
  bool is_json = false;
  {
    auto first = plain.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos
        && (plain[first] == '{' || plain[first] == '[')) {
      v = json::parse(plain, ec);
      is_json = !ec;
    }
  }
  const json::object* o = is_json && v.is_object() ? &v.get_object() : nullptr;

  if (status >= 200 && status < 300) {
    if (o) {
      auto* s = o->if_contains("success");
      if (s && s->is_bool() && !s->get_bool())
        return app_failure(str_of(*o, "error"));
      // a stream error line given as a whole body
      if (str_of(*o, "type") == "error")
        return decode_stream_error(plain);
    }
    return std::nullopt;
  }

  (void)content_type;
  std::string err = o ? str_of(*o, "error") : std::string{};
  std::string detail = o ? detail_text(o->if_contains("detail")) : std::string{};
  std::string message = o ? str_of(*o, "message") : std::string{};

  // -- clear answers of the encryption middleware and the handshake ----------
  if (!encrypted && o && !err.empty()) {
    if (status == 401 && err == "Encryption required") {
      auto e = make(error_class::authentication, 401, "encryption_required",
                    "the AICO server has no encryption channel for this "
                    "client (expired or lost on a restart); a new handshake "
                    "is needed");
      e.rehandshake = true;
      return e;
    }
    if (err == "Encryption error")
      return make(error_class::validation, status, "encryption_error",
                  "the AICO server could not decrypt the request"
                    + (detail.empty() ? std::string{} : " (" + detail + ")"));
    if (err == "Invalid handshake format")
      return make(error_class::validation, status, "handshake_invalid",
                  "the AICO server rejected the handshake as malformed");
    if (err == "Handshake processing failed")
      return make(error_class::server_error, status, "handshake_failed",
                  "the AICO server could not process the encryption handshake "
                  "(check that this machine's clock is right)");
    if (err == "Method not allowed")
      return make(error_class::validation, status, "method_not_allowed",
                  "the AICO server does not allow this method here");
    if (err == "Internal server error")
      return make(error_class::server_error, status, "internal_error",
                  "the AICO server failed with an internal error");
    auto e = make(class_of_status(status), status, code_of_status(status),
                  "the AICO server answered HTTP " + std::to_string(status)
                    + ": " + clean(err)
                    + (message.empty() ? std::string{} : " (" + clean(message) + ")"));
    return e;
  }

  // -- FastAPI HTTPException / validation (normally encrypted) --------------
  if (o && o->if_contains("detail")) {
    if (status == 403 && iequals(detail, "Not authenticated")) {
      auto e = make(error_class::authentication, 403, "unauthenticated",
                    "the request carried no access token; log in first");
      e.missing_token = true;
      return e;
    }
    if (status == 401 && detail == "Token has expired")
      return make(error_class::authentication, 401, "token_expired",
                  "the access token has expired");
    if (status == 401 && detail == "Invalid token")
      return make(error_class::authentication, 401, "invalid_token",
                  "the AICO server rejected the access token");
    if (status == 401 && starts_with(detail, "This endpoint requires encrypted"))
      return make(error_class::validation, 401, "unknown_route",
                  "the AICO server has no such endpoint (it answered: "
                    + detail + ")");
    if (status == 422)
      return make(error_class::validation, 422, "validation_error",
                  "the AICO server rejected the request as invalid"
                    + (detail.empty() ? std::string{} : ": " + detail));
    if (status == 404 && detail == "Not Found")
      return make(error_class::validation, 404, "not_found",
                  "the AICO server has no such endpoint");
    auto cls = class_of_status(status);
    return make(cls, status, code_of_status(status),
                "the AICO server answered HTTP " + std::to_string(status)
                  + (detail.empty() ? std::string{} : ": " + detail));
  }

  // -- an encrypted or clear JSON object with error/message only --------------
  if (o && (!err.empty() || !message.empty())) {
    auto text = !err.empty() ? err : message;
    return make(class_of_status(status), status, code_of_status(status),
                "the AICO server answered HTTP " + std::to_string(status) + ": "
                  + clean(text));
  }

  // -- text/plain (Starlette's "Internal Server Error") or anything else -----
  std::string text = is_json ? std::string{} : clean(plain, 120);
  auto cls = class_of_status(status);
  std::string sentence = "the AICO server answered HTTP "
                         + std::to_string(status);
  if (!text.empty())
    sentence += ": " + text;
  if (status >= 500 && !encrypted && !is_json)
    sentence += " (an unhandled failure inside the server)";
  return make(cls, status, code_of_status(status), std::move(sentence));
}

std::optional<wire_error> decode_stream_error(std::string_view line) {
  json::error_code ec;
  auto v = json::parse(line, ec);
  if (ec || !v.is_object())
    return std::nullopt;
  auto& o = v.get_object();
  if (str_of(o, "type") != "error")
    return std::nullopt;
  auto err = str_of(o, "error");
  if (err == "Streaming timeout") {
    auto e = make(error_class::timeout, 200, "streaming_timeout",
                  "the AICO server gave up waiting for the model's reply "
                  "(streaming timeout); the message itself was received");
    e.retryable = false; // resending would store the message twice
    e.outcome_unknown = true;
    return e;
  }
  auto e = make(error_class::server_error, 200, "stream_error",
                "the AICO server reported an error while streaming the reply"
                  + (err.empty() ? std::string{} : ": " + clean(err)));
  e.retryable = false; // the message was stored on arrival
  e.outcome_unknown = true;
  return e;
}

wire_error transport_error(bool timed_out, const std::string& detail,
                           bool outcome_unknown) {
  auto e = timed_out
             ? make(error_class::timeout, 0, "timeout",
                    "the AICO server did not answer in time"
                      + (detail.empty() ? std::string{} : " (" + detail + ")"))
             : make(error_class::network, 0, "unreachable",
                    "the AICO server is unreachable"
                      + (detail.empty() ? std::string{} : " (" + detail + ")"));
  e.outcome_unknown = outcome_unknown;
  if (outcome_unknown)
    e.retryable = false;
  return e;
}

} // namespace aico::aico_profile
