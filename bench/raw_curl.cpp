// Raw baseline for the HTTP transport: libcurl on the calling thread. Round
// trips use one reused easy handle (its kept-alive connection); throughput
// uses one multi handle with `window` reused easy handles and the same
// per-host connection limit as the engine (HTTP/1.1: no pipelining, so at
// most that many requests are really on the wire at once).
//
// Exception to the project rule "each C library is included in one place
// only" (src/transport/curl/): the benchmark needs the raw library next to
// the engine to have a baseline measured in the same run. Nothing outside
// bench/ uses this file.
#include <curl/curl.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace aico::bench {

namespace {

using steady = std::chrono::steady_clock;

size_t on_write(char* ptr, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(ptr, size * n);
  return size * n;
}

struct easy {
  CURL* h = nullptr;
  curl_slist* hdrs = nullptr;
  std::string body;

  easy(const std::string& url, const call_spec& call, long timeout_ms) {
    h = curl_easy_init();
    if (!h)
      throw std::runtime_error("curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    if (call.method == "GET")
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, call.method.c_str());
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (!call.token.empty())
      hdrs = curl_slist_append(hdrs,
                               ("Authorization: Bearer " + call.token).c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  }

  ~easy() {
    if (h)
      curl_easy_cleanup(h);
    if (hdrs)
      curl_slist_free_all(hdrs);
  }

  easy(const easy&) = delete;
  easy& operator=(const easy&) = delete;

  /// Checks a finished transfer; "" if it was a 2xx answer.
  std::string check(CURLcode rc) {
    if (rc != CURLE_OK)
      return std::string{"raw curl: "} + curl_easy_strerror(rc);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
      return "raw curl: status " + std::to_string(status);
    return {};
  }
};

struct multi_guard {
  CURLM* m = curl_multi_init();
  ~multi_guard() {
    if (m)
      curl_multi_cleanup(m);
  }
};

} // namespace

run_result raw_curl_run(const std::string& http_url, const call_spec& call,
                        const run_params& p) {
  run_result res;
  try {
    curl_global_init(CURL_GLOBAL_DEFAULT); // reference counted
    auto url = http_url + "/api/v1" + call.path;
    auto timeout_ms = static_cast<long>(p.timeout.count());
    // round trip: one easy handle, its connection kept alive
    {
      easy e{url, call, timeout_ms};
      proc_usage usage0;
      for (int i = 0; i < p.warmup + p.requests; ++i) {
        if (i == p.warmup)
          usage0 = proc_usage_now();
        e.body.clear();
        auto t0 = steady::now();
        auto err = e.check(curl_easy_perform(e.h));
        if (!err.empty()) {
          res.error = err;
          return res;
        }
        if (i >= p.warmup)
          res.rtt_us.push_back(micros(steady::now() - t0));
      }
      res.usage_since(usage0, p.requests);
    }
    // pipelined: `window` easy handles cycling through one multi handle
    multi_guard mg;
    if (!mg.m) {
      res.error = "raw curl: curl_multi_init failed";
      return res;
    }
    long conns = std::max(1, p.http_connections);
    curl_multi_setopt(mg.m, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
    curl_multi_setopt(mg.m, CURLMOPT_MAXCONNECTS, conns + 2);
    std::vector<std::unique_ptr<easy>> handles;
    for (int i = 0; i < p.window; ++i)
      handles.push_back(std::make_unique<easy>(url, call, timeout_ms));
    auto pipelined = [&](int total, std::string& err) {
      int sent = 0;
      int done = 0;
      for (auto& h : handles) {
        if (sent >= total)
          break;
        h->body.clear();
        curl_easy_setopt(h->h, CURLOPT_PRIVATE, h.get());
        curl_multi_add_handle(mg.m, h->h);
        ++sent;
      }
      auto deadline = steady::now() + p.timeout * (1 + total / p.window);
      while (done < total) {
        int running = 0;
        curl_multi_perform(mg.m, &running);
        int left = 0;
        while (CURLMsg* m = curl_multi_info_read(mg.m, &left)) {
          if (m->msg != CURLMSG_DONE)
            continue;
          CURL* h = m->easy_handle;
          auto rc = m->data.result;
          easy* e = nullptr;
          curl_easy_getinfo(h, CURLINFO_PRIVATE, &e);
          curl_multi_remove_handle(mg.m, h);
          err = e->check(rc);
          if (!err.empty())
            return false;
          ++done;
          if (sent < total) {
            e->body.clear();
            curl_multi_add_handle(mg.m, h);
            ++sent;
          }
        }
        if (done >= total)
          break;
        if (steady::now() > deadline) {
          err = "raw curl: timeout in the pipelined phase";
          return false;
        }
        int numfds = 0;
        curl_multi_poll(mg.m, nullptr, 0, 100, &numfds);
      }
      return true;
    };
    std::string err;
    if (p.pipe_warmup > 0 && !pipelined(p.pipe_warmup, err)) {
      res.error = err;
      return res;
    }
    auto t0 = steady::now();
    if (!pipelined(p.total, err)) {
      res.error = err;
      return res;
    }
    res.pipe_seconds = std::chrono::duration<double>(steady::now() - t0)
                         .count();
    res.rps = p.total / res.pipe_seconds;
    // leave nothing attached before the handles go
    for (auto& h : handles)
      curl_multi_remove_handle(mg.m, h->h);
  } catch (const std::exception& e) {
    res.error = std::string{"raw curl: "} + e.what();
  }
  return res;
}

} // namespace aico::bench
