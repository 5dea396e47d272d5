#include "messages/errors.hpp"

#include <algorithm>

#include <boost/json.hpp>

namespace aico {

const char* to_string(error_class c) {
  switch (c) {
    case error_class::network:
      return "network";
    case error_class::authentication:
      return "authentication";
    case error_class::authorization:
      return "authorization";
    case error_class::validation:
      return "validation";
    case error_class::server_error:
      return "server_error";
    case error_class::timeout:
      return "timeout";
    case error_class::unknown:
      return "unknown";
  }
  return "unknown";
}

client_error::client_error(classification c, const std::string& what)
  : std::runtime_error(what), info_(std::move(c)) {
}

client_error::~client_error() = default;

caf::error make_engine_error(error_class cls, std::string message,
                             int32_t status, std::string code,
                             int64_t retry_after_ms) {
  return caf::make_error(cls, status, std::move(code), std::move(message),
                         retry_after_ms);
}

namespace {

error_class class_of_status(int32_t status) {
  switch (status) {
    case 401:
      return error_class::authentication;
    case 403:
      return error_class::authorization;
    case 400:
    case 404:
    case 405:
    case 409:
    case 410:
    case 413:
    case 414:
    case 415:
    case 422:
      return error_class::validation;
    case 408:
      return error_class::timeout;
    case 429:
      return error_class::server_error;
    default:
      if (status >= 500 && status <= 599)
        return error_class::server_error;
      return error_class::unknown;
  }
}

bool retryable(error_class cls, int32_t status) {
  switch (cls) {
    case error_class::network:
    case error_class::timeout:
      return true;
    case error_class::server_error:
      // 501 Not Implemented and 505 will not get better by retrying.
      return status != 501 && status != 505;
    default:
      return false;
  }
}

int64_t parse_retry_after(const std::string& v) {
  if (v.empty())
    return -1;
  try {
    size_t used = 0;
    auto secs = std::stod(v, &used);
    if (used != v.size() || secs < 0)
      return -1;
    return static_cast<int64_t>(secs * 1000);
  } catch (...) {
    return -1; // HTTP-date form is not used by the gateway
  }
}

} // namespace

caf::error make_status_error(int32_t status, const std::string& body,
                             const std::string& retry_after) {
  std::string code;
  std::string message;
  boost::system::error_code ec;
  auto jv = boost::json::parse(body, ec);
  if (!ec && jv.is_object()) {
    auto& obj = jv.get_object();
    if (auto c = obj.if_contains("code"); c && c->is_string())
      code = std::string{c->get_string()};
    if (auto m = obj.if_contains("message"); m && m->is_string())
      message = std::string{m->get_string()};
  }
  if (message.empty())
    message = "gateway answered with status " + std::to_string(status);
  return make_engine_error(class_of_status(status), std::move(message), status,
                           std::move(code), parse_retry_after(retry_after));
}

namespace {

/// "unexpected_message" -> "unexpected message".
std::string words(std::string s) {
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

/// The sentence for a CAF system error that classify does not map.
std::string sec_message(caf::sec code) {
  return "internal error of the engine (" + words(caf::to_string(code)) + ")";
}

} // namespace

classification classify(const caf::error& err) {
  classification res;
  if (!err) {
    res.cls = error_class::unknown;
    res.message = "no error";
    return res;
  }
  if (err.category() == caf::atom("aico")) {
    res.cls = static_cast<error_class>(err.code());
    auto& ctx = err.context();
    if (ctx.match_elements<int32_t, std::string, std::string, int64_t>()) {
      res.status = ctx.get_as<int32_t>(0);
      res.code = ctx.get_as<std::string>(1);
      res.message = ctx.get_as<std::string>(2);
      res.retry_after_ms = ctx.get_as<int64_t>(3);
    }
    if (res.cls < error_class::network || res.cls > error_class::unknown)
      res.cls = error_class::unknown;
    res.retryable = retryable(res.cls, res.status);
    return res;
  }
  if (err.category() == caf::atom("system")) {
    auto code = static_cast<caf::sec>(err.code());
    switch (code) {
      case caf::sec::request_timeout:
        res.cls = error_class::timeout;
        res.message = "request timed out";
        break;
      case caf::sec::request_receiver_down:
        res.cls = error_class::network;
        res.message = "the engine component handling the request is down";
        break;
      default:
        res.cls = error_class::unknown;
        res.message = sec_message(code);
        break;
    }
    res.retryable = retryable(res.cls, 0);
    return res;
  }
  if (err.category() == caf::atom("exit")) {
    res.cls = error_class::unknown;
    res.message = "an engine component stopped ("
                  + words(caf::to_string(
                    static_cast<caf::exit_reason>(err.code())))
                  + ")";
    return res;
  }
  res.cls = error_class::unknown;
  res.message = "error " + std::to_string(err.code()) + " of category '"
                + caf::to_string(err.category()) + "'";
  return res;
}

const char* lead_of(error_class c) {
  switch (c) {
    case error_class::network:
      return "gateway unreachable";
    case error_class::authentication:
      return "authentication failed";
    case error_class::authorization:
      return "not allowed";
    case error_class::validation:
      return "request rejected";
    case error_class::server_error:
      return "the gateway failed";
    case error_class::timeout:
      return "the gateway did not answer in time";
    case error_class::unknown:
      break;
  }
  return "unexpected error";
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  auto c = classify(err);
  std::string detail = c.message;
  if (c.status != 0 || !c.code.empty()) {
    std::string sc;
    if (c.status != 0)
      sc += std::to_string(c.status);
    if (c.status != 0 && !c.code.empty())
      sc += " ";
    sc += c.code;
    detail = detail.empty() ? sc : detail + "; " + sc;
  }
  std::string res = lead_of(c.cls);
  if (!detail.empty() && detail != res)
    res += " (" + detail + ")";
  return res;
}

} // namespace aico
