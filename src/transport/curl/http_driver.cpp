// aico engine: the HTTP driver (see http_driver.hpp).
#include "src/transport/curl/http_driver.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <string>
#include <utility>

#include "src/core/log_line.hpp"
#include "src/core/url_host.hpp"
#include "src/transport/curl/http_loop.hpp"
#include "src/transport/curl/sse_parser.hpp"

namespace aico::http {

namespace {

using namespace std::chrono_literals;
using namespace aico::transport;

/// The gateway's ": keep-alive" period on the event stream.
constexpr auto sse_keepalive_period = std::chrono::seconds(15);

/// The owner's deadlines trail the transfers' own timeouts by this.
constexpr duration safety_grace = 250ms;

std::chrono::milliseconds ceil_ms(duration d) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(d);
  return std::max(ms, std::chrono::milliseconds{1});
}

bool is_aico_replay(const std::string& k) {
  static constexpr char name[] = "aico-replay";
  return k.size() == sizeof(name) - 1
         && std::equal(k.begin(), k.end(), name, [](char a, char b) {
              return std::tolower(static_cast<unsigned char>(a)) == b;
            });
}

class http_driver final : public driver {
public:
  http_driver(const http_transport_config& cfg, driver_events events)
    : cfg_(cfg),
      events_(std::make_shared<const driver_events>(std::move(events))) {
    try {
      loop_options lo;
      // One connection more than cfg.max_connections: the long-lived event
      // stream holds one for good, the requests keep max_connections.
      lo.max_host_connections = std::max(1, cfg_.max_connections) + 1;
      lo.connect_timeout = ceil_ms(cfg_.connect_timeout);
      lo.tls = cfg_.tls;
      lo.on_warning = [](const std::string& w) {
        log_line("aico: http: " + w);
      };
      loop_ = std::make_unique<loop>(lo);
    } catch (...) {
      loop_.reset(); // unusable() says so
    }
  }

  ~http_driver() override {
    try {
      stop();
    } catch (...) {
      // never throw from a destructor
    }
  }

  const char* name() const override { return "http"; }

  driver_caps capabilities() const override {
    driver_caps c;
    c.separate_event_stream = true;
    c.refresh_keeps_subscription = true;
    c.uses_wire_ids = false;
    c.own_timeout_grace = safety_grace;
    c.concurrent_send = true; // send() only builds and queues a transfer
    return c;
  }

  std::string unusable() const override {
    if (!loop_)
      return "http transport: no I/O thread";
    if (std::string why; !valid_url_authority(cfg_.base_url, why))
      return "http transport: bad base URL: " + why;
    return {};
  }

  void open(uint64_t gen, const std::string&) override {
    if (!loop_)
      return;
    close();
    request rq;
    rq.method = "GET";
    rq.url = api_url(cfg_.base_url, "/health");
    rq.headers.emplace_back("Accept: application/json");
    rq.timeout = ceil_ms(cfg_.connect_timeout);
    auto ev = events_;
    loop_->submit(std::move(rq), [ev, gen](response r) {
      if (r.fail == failure::none) {
        ev->on_link_up(link_up{gen});
        return;
      }
      ev->on_link_lost(link_lost{
        gen, (r.fail == failure::timeout ? "health check timed out: "
                                         : "health check failed: ")
               + r.error});
    });
  }

  void close() override {
    stream_ = 0;
    if (loop_)
      loop_->reset(); // every transfer (also the stream and the probe)
  }

  send_result send(uint64_t gen, outgoing_call call) override {
    if (!loop_)
      return send_result::fail(call_failure::network,
                               "http transport: no I/O thread");
    request rq;
    rq.method = call.method.empty() ? std::string{"GET"} : call.method;
    rq.url = api_url(cfg_.base_url, call.path);
    rq.body = std::move(call.body);
    rq.headers.emplace_back("Accept: application/json");
    if (!rq.body.empty())
      rq.headers.emplace_back("Content-Type: application/json");
    if (!call.token.empty())
      rq.headers.emplace_back("Authorization: Bearer " + call.token);
    rq.timeout = ceil_ms(call.time_left);
    auto ev = events_;
    auto key = call.key;
    auto tid = loop_->submit(std::move(rq), [ev, gen, key](response r) {
      if (r.fail == failure::none) {
        reply rep;
        rep.gen = gen;
        rep.key = key;
        rep.status = r.status;
        rep.body = std::move(r.body);
        rep.headers = std::move(r.headers);
        ev->on_reply(std::move(rep));
        return;
      }
      send_failed f;
      f.gen = gen;
      f.key = key;
      switch (r.fail) {
        case failure::timeout:
          f.kind = call_failure::timeout;
          f.reason = "http request timed out: " + r.error;
          break;
        case failure::network:
          f.kind = call_failure::network;
          f.reason = "http request failed: " + r.error;
          f.link_down = true; // the gateway is unreachable
          break;
        default:
          f.kind = call_failure::unknown;
          f.reason = "http request failed: " + r.error;
          break;
      }
      ev->on_send_failed(std::move(f));
    });
    return send_result::queued(tid);
  }

  void cancel(uint64_t handle) override {
    if (loop_ && handle != 0)
      loop_->cancel(handle);
  }

  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t since) override {
    unsubscribe(gen);
    if (!loop_ || token.empty())
      return;
    request rq;
    rq.method = "GET";
    rq.url = api_url(cfg_.base_url, "/events");
    rq.headers.emplace_back("Accept: text/event-stream");
    rq.headers.emplace_back("Cache-Control: no-cache");
    rq.headers.emplace_back("Authorization: Bearer " + token);
    if (since > 0)
      rq.headers.emplace_back("Last-Event-ID: " + std::to_string(since));
    stream_options so;
    so.open_timeout = ceil_ms(cfg_.connect_timeout);
    so.idle_timeout = ceil_ms(cfg_.dead_peer_timeout + sse_keepalive_period);
    auto parser = std::make_shared<sse_parser>();
    auto opened = std::make_shared<bool>(false); // loop thread only
    auto ev = events_;
    stream_handlers h;
    h.on_open = [ev, gen, sub, opened](
                  int status, const std::map<std::string, std::string>& hs) {
      if (status < 200 || status >= 300)
        return; // on_close follows with the status
      *opened = true;
      bool complete = false;
      for (auto& [k, v] : hs)
        if (is_aico_replay(k))
          complete = v == "complete";
      ev->on_subscribed(subscribed{gen, sub, true, complete});
    };
    h.on_data = [ev, gen, sub, parser](std::string_view chunk) {
      auto dropped = parser->dropped_events();
      auto evs = parser->feed(chunk);
      if (parser->dropped_events() != dropped)
        log_line("aico: event stream: dropped an event larger than "
                 + std::to_string(sse_parser::default_max_event)
                 + " bytes (" + std::to_string(parser->dropped_events())
                 + " so far on this stream)");
      for (auto& e : evs) {
        event_frame f;
        f.gen = gen;
        f.sub = sub;
        f.topic = std::move(e.event);
        f.data = std::move(e.data);
        f.seq = parse_seq(e.id);
        ev->on_event(std::move(f));
      }
      return !parser->failed();
    };
    h.on_close = [ev, gen, sub, parser, opened](response r) {
      subscription_lost l;
      l.gen = gen;
      l.sub = sub;
      l.was_open = *opened;
      l.kind = static_cast<uint8_t>(r.fail);
      l.status = r.status;
      l.reason = parser->failed()
                   ? "the event stream was closed: " + parser->error()
                   : r.error;
      ev->on_subscription_lost(std::move(l));
    };
    stream_ = loop_->open_stream(std::move(rq), so, std::move(h));
  }

  void unsubscribe(uint64_t) override {
    if (stream_ != 0 && loop_)
      loop_->cancel(stream_);
    stream_ = 0;
  }

  std::string describe(timing_cause, duration, duration) const override {
    return "health check timed out";
  }

  void stop() override {
    if (loop_) {
      loop_->stop();
      loop_.reset();
    }
  }

private:
  http_transport_config cfg_;
  std::shared_ptr<const driver_events> events_;
  uint64_t stream_ = 0; ///< transfer id of the event stream (0 = none)
  /// Last member: destroyed first (stops and joins the loop thread).
  std::unique_ptr<loop> loop_;
};

} // namespace

std::string api_url(const std::string& base_url, const std::string& path) {
  std::string base = base_url;
  while (!base.empty() && base.back() == '/')
    base.pop_back();
  std::string p = path.empty() || path.front() != '/' ? "/" + path : path;
  static const std::string prefix = "/api/v1";
  if (p.compare(0, prefix.size(), prefix) == 0
      && (p.size() == prefix.size() || p[prefix.size()] == '/'
          || p[prefix.size()] == '?'))
    return base + p;
  return base + prefix + p;
}

std::unique_ptr<driver> make_http_driver(const http_transport_config& cfg,
                                         driver_events events) {
  return std::make_unique<http_driver>(cfg, std::move(events));
}

} // namespace aico::http
