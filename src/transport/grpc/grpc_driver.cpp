// aico engine: the gRPC driver (see grpc_driver.hpp).
#include "src/transport/grpc/grpc_driver.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <utility>

#include "src/transport/grpc/grpc_link.hpp"

namespace aico::grpc_link {

namespace {

using namespace aico::transport;
using std::chrono::milliseconds;

int64_t to_ms(duration d) {
  return std::chrono::duration_cast<milliseconds>(d).count();
}

milliseconds ms_of(duration d) {
  return std::chrono::duration_cast<milliseconds>(d);
}

call_failure call_failure_of(failure f) {
  switch (f) {
    case failure::deadline:
      return call_failure::timeout;
    case failure::unavailable:
    case failure::cancelled:
    case failure::stale_generation:
      return call_failure::network;
    case failure::unauthenticated:
    case failure::too_large:
    case failure::other:
      break;
  }
  return call_failure::unknown;
}

link_handlers make_handlers(std::shared_ptr<const driver_events> ev,
                            std::string target) {
  link_handlers h;
  h.on_reply = [ev](uint64_t gen, uint64_t id, aico::grpc_link::reply&& r) {
    transport::reply out;
    out.gen = gen;
    out.key = id;
    out.status = r.status;
    out.body = std::move(r.body);
    for (auto& [k, v] : r.headers)
      out.headers[k] = std::move(v);
    ev->on_reply(std::move(out));
  };
  h.on_send_failed = [ev](uint64_t gen, uint64_t id, failure f,
                          const std::string& why) {
    send_failed out;
    out.gen = gen;
    out.key = id;
    out.kind = call_failure_of(f);
    if (f == failure::deadline)
      out.reason = "grpc request timed out (" + why + ")";
    else
      out.reason = "grpc request failed (" + why + ")";
    // UNAVAILABLE: the call did not reach the door (it is down or the
    // connection broke): the link is dead, fail over.
    out.link_down = f == failure::unavailable;
    ev->on_send_failed(std::move(out));
  };
  h.on_subscribed = [ev](uint64_t gen, aico::grpc_link::subscribed&& s) {
    ev->on_subscribed(
      transport::subscribed{gen, s.stream, true, s.replay && s.complete});
  };
  h.on_event = [ev](uint64_t gen, event&& e) {
    event_frame out;
    out.gen = gen;
    out.sub = e.stream;
    out.topic = std::move(e.topic);
    out.data = std::move(e.data);
    out.seq = e.seq;
    ev->on_event(std::move(out));
  };
  h.on_stream_ended = [ev](uint64_t gen, stream_end&& e) {
    subscription_lost out;
    out.gen = gen;
    out.sub = e.stream;
    out.was_open = e.was_open;
    if (e.ok) {
      out.kind = 0;
      out.status = 200;
      out.reason = "the gateway ended the grpc event stream";
    } else if (e.f == failure::unauthenticated) {
      out.kind = 0;
      out.status = e.status != 0 ? e.status : 401;
      out.reason = "grpc event stream refused"
                   + (e.code.empty() ? std::string{} : " (" + e.code + ")");
    } else {
      out.kind = static_cast<uint8_t>(call_failure_of(e.f));
      out.status = e.status;
      out.reason = "grpc event stream ended (" + e.why + ")";
    }
    ev->on_subscription_lost(std::move(out));
  };
  h.on_link = [ev, target](uint64_t gen, bool up) {
    if (up)
      ev->on_link_up(link_up{gen});
    else
      ev->on_link_lost(
        link_lost{gen, "the connection to the grpc door at " + target
                         + " was lost"});
  };
  h.on_open_failed = [ev](uint64_t gen, const std::string& why) {
    ev->on_link_lost(link_lost{gen, "grpc transport: " + why});
  };
  h.on_connect_failed = [ev](uint64_t gen, const std::string& why) {
    ev->on_link_lost(link_lost{gen, why});
  };
  return h;
}

class grpc_driver final : public driver {
public:
  grpc_driver(const grpc_transport_config& cfg, driver_events events)
    : cfg_(cfg) {
    if (cfg_.endpoint.empty()) {
      error_ = "grpc transport: no endpoint (--grpc HOST:PORT, AICO_GRPC or "
               "\"grpc\" in the config file)";
      return;
    }
    if (!parse_grpc_endpoint(cfg_.endpoint, target_, tls_, error_)) {
      error_ = "grpc transport: " + error_;
      return;
    }
    try {
      link_options lo;
      lo.use_tls = tls_;
      if (tls_) {
        lo.tls = cfg_.tls;
        lo.tls_server_name = cfg_.tls_server_name;
      }
      // HTTP/2 keepalive instead of the owner's heartbeat (header comment)
      auto interval = std::max(ms_of(cfg_.ping_interval), milliseconds{1000});
      auto timeout = std::max(ms_of(cfg_.dead_peer_timeout) - interval,
                              milliseconds{1000});
      lo.keepalive_interval = interval;
      lo.keepalive_timeout = timeout;
      link_ = std::make_unique<grpc_link>(
        lo, make_handlers(
              std::make_shared<const driver_events>(std::move(events)),
              target_));
    } catch (const std::exception& e) {
      link_.reset();
      error_ = std::string{"grpc transport: "} + e.what();
    } catch (...) {
      link_.reset();
      error_ = "grpc transport: cannot start the channel watcher";
    }
  }

  ~grpc_driver() override {
    try {
      stop();
    } catch (...) {
      // never throw from a destructor
    }
  }

  const char* name() const override { return "grpc"; }

  driver_caps capabilities() const override {
    driver_caps c;
    c.heartbeat = false;
    c.separate_event_stream = true;
    c.refresh_keeps_subscription = true;
    c.uses_wire_ids = false;
    c.own_timeout_grace = milliseconds{250};
    c.concurrent_send = true; // grpc_link::send locks what it shares
    return c;
  }

  std::string unusable() const override {
    if (!error_.empty())
      return error_;
    if (!link_)
      return "grpc transport: no client loop";
    return {};
  }

  void open(uint64_t gen, const std::string&) override {
    if (link_)
      link_->open(gen, target_);
  }

  void close() override {
    if (link_)
      link_->close();
  }

  send_result send(uint64_t gen, outgoing_call call) override {
    if (!link_)
      return send_result::fail(call_failure::network,
                               "grpc transport: no client loop");
    request r;
    r.method = call.method.empty() ? std::string{"GET"}
                                   : std::move(call.method);
    r.path = std::move(call.path);
    r.body = std::move(call.body);
    r.token = std::move(call.token);
    auto deadline = std::chrono::steady_clock::now()
                    + std::chrono::duration_cast<
                      std::chrono::steady_clock::duration>(call.time_left);
    link_->send(gen, call.key, std::move(r), deadline);
    return send_result::queued(call.key);
  }

  void cancel(uint64_t handle) override {
    if (link_ && handle != 0)
      link_->cancel(handle);
  }

  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t since) override {
    if (link_)
      link_->subscribe(gen, token, since, sub);
  }

  void unsubscribe(uint64_t) override {
    if (link_)
      link_->unsubscribe();
  }

  std::string describe(timing_cause c, duration silence,
                       duration limit) const override {
    if (c == timing_cause::dead_peer)
      return "grpc peer silent for " + std::to_string(to_ms(silence)) + " ms";
    return "grpc connect to " + target_ + " timed out after "
           + std::to_string(to_ms(limit)) + " ms";
  }

  void stop() override {
    if (link_) {
      link_->stop();
      link_.reset();
    }
  }

private:
  grpc_transport_config cfg_;
  std::string target_;
  bool tls_ = false;
  std::string error_;
  /// Last member: destroyed first (no handler runs afterwards).
  std::unique_ptr<grpc_link> link_;
};

} // namespace

bool parse_grpc_endpoint(const std::string& endpoint, std::string& target,
                         bool& tls, std::string& error) {
  std::string rest = endpoint;
  tls = false;
  if (rest.rfind("grpcs://", 0) == 0) {
    tls = true;
    rest = rest.substr(8);
  } else if (rest.rfind("grpc://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    error = "expected HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT, "
            "got '" + endpoint + "'";
    return false;
  }
  if (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto colon = rest.rfind(':');
  bool ok = colon != std::string::npos && colon > 0
            && colon + 1 < rest.size()
            && rest.find('/') == std::string::npos;
  if (ok) {
    auto port = rest.substr(colon + 1);
    ok = port.size() <= 5
         && std::all_of(port.begin(), port.end(),
                        [](char ch) { return ch >= '0' && ch <= '9'; })
         && std::stoi(port) > 0 && std::stoi(port) <= 65535;
    auto host = rest.substr(0, colon);
    // an IPv6 literal needs its brackets ("[::1]:50051")
    if (ok && host.find(':') != std::string::npos)
      ok = host.front() == '[' && host.back() == ']';
  }
  if (!ok) {
    error = "expected HOST:PORT (with a port 1-65535), got '" + endpoint
            + "'";
    return false;
  }
  target = rest;
  return true;
}

std::unique_ptr<driver> make_grpc_driver(const grpc_transport_config& cfg,
                                         driver_events events) {
  return std::make_unique<grpc_driver>(cfg, std::move(events));
}

} // namespace aico::grpc_link
