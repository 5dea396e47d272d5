#include "src/stress/http_client.hpp"

#include <future>
#include <memory>
#include <thread>

#include "src/config/load_config.hpp"
#include "src/transport/curl/http_loop.hpp"

namespace json = boost::json;

namespace aico::stress {

namespace {

/// The tool's REST calls share one libcurl multi loop (the engine's own
/// src/transport/curl wrapper: libcurl is included there only).
transport::tls_options& rest_tls() {
  static transport::tls_options tls;
  return tls;
}

http::loop& rest_loop() {
  static http::loop lp{[] {
    http::loop_options lo;
    lo.tls = rest_tls();
    return lo;
  }()};
  return lp;
}

} // namespace

void set_rest_tls(const transport::tls_options& tls) {
  rest_tls() = tls;
}

bool is_loopback_url(const std::string& url) {
  return (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0)
         && aico::is_loopback_url(url);
}

http_result http_call(const std::string& method, const std::string& url,
                      const std::string& body, const std::string& token,
                      std::chrono::milliseconds timeout) {
  http_result res;
  if (!is_loopback_url(url)) {
    res.error = "refusing a non-loopback URL";
    return res;
  }
  http::request req;
  req.method = method;
  req.url = url;
  if (method != "GET")
    req.body = body;
  req.headers.push_back("Content-Type: application/json");
  if (!token.empty())
    req.headers.push_back("Authorization: Bearer " + token);
  req.timeout = timeout;
  auto done = std::make_shared<std::promise<http::response>>();
  auto reply = done->get_future();
  auto& lp = rest_loop();
  auto id = lp.submit(std::move(req), [done](http::response r) {
    done->set_value(std::move(r));
  });
  // the loop bounds the transfer by `timeout`; this only guards against a
  // loop that never calls back
  if (reply.wait_for(timeout + std::chrono::seconds(2))
      != std::future_status::ready) {
    lp.cancel(id);
    res.error = "no answer from the HTTP loop";
    return res;
  }
  auto r = reply.get();
  if (r.fail != http::failure::none) {
    res.error = r.error.empty() ? "transfer failed" : r.error;
    return res;
  }
  res.status = r.status;
  boost::system::error_code ec;
  auto jv = json::parse(r.body, ec);
  if (!ec)
    res.body = std::move(jv);
  return res;
}

std::string rest_login(const std::string& base, const std::string& user,
                       const std::string& password, std::string& err,
                       int attempts) {
  json::object req{{"username", user}, {"password", password}};
  auto text = json::serialize(req);
  for (int i = 0; i < attempts; ++i) {
    auto r = http_call("POST", base + "/api/v1/users/authenticate", text, "");
    if (r.status == 200 && r.body.is_object()) {
      auto d = r.body.get_object().if_contains("data");
      if (d && d->is_object())
        if (auto t = d->get_object().if_contains("access_token");
            t && t->is_string())
          return std::string{t->get_string()};
    }
    err = r.status == 0 ? r.error : "HTTP " + std::to_string(r.status);
    if (r.status >= 400 && r.status < 500 && r.status != 429)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(300 * (i + 1)));
  }
  return {};
}

} // namespace aico::stress
