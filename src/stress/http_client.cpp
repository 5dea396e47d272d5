#include "src/stress/http_client.hpp"

#include <curl/curl.h>

#include <thread>

namespace json = boost::json;

namespace aico::stress {

namespace {

size_t on_data(char* ptr, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(ptr, size * n);
  return size * n;
}

} // namespace

bool is_loopback_url(const std::string& url) {
  for (auto p : {"http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:",
                 "http://localhost/", "http://[::1]:"})
    if (url.rfind(p, 0) == 0)
      return true;
  return url == "http://127.0.0.1" || url == "http://localhost";
}

http_result http_call(const std::string& method, const std::string& url,
                      const std::string& body, const std::string& token,
                      std::chrono::milliseconds timeout) {
  http_result res;
  if (!is_loopback_url(url)) {
    res.error = "refusing a non-loopback URL";
    return res;
  }
  CURL* h = curl_easy_init();
  if (!h) {
    res.error = "curl_easy_init failed";
    return res;
  }
  std::string raw;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  std::string auth;
  if (!token.empty()) {
    auth = "Authorization: Bearer " + token;
    headers = curl_slist_append(headers, auth.c_str());
  }
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &raw);
  if (method != "GET") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  auto rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    res.error = curl_easy_strerror(rc);
  } else {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    res.status = static_cast<int>(code);
    boost::system::error_code ec;
    auto jv = json::parse(raw, ec);
    if (!ec)
      res.body = std::move(jv);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
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
