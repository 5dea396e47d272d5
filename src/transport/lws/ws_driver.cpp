// aico engine: the WebSocket driver (see ws_driver.hpp).
#include "src/transport/lws/ws_driver.hpp"

#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <utility>

#include "src/core/log_line.hpp"
#include "src/transport/lws/ws_codec.hpp"
#include "src/transport/lws/ws_loop.hpp"

namespace aico::ws_link {

namespace {

using namespace aico::transport;

/// Frames over this size make the gateway close the connection (1009).
constexpr std::size_t max_frame_bytes = 1024u * 1024u;

constexpr const char* auth_prefix = "auth-";
constexpr const char* subscribe_prefix = "auth-s";

int64_t to_ms(duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

/// The subscription number of an auth frame id, 0 if it is none.
uint64_t subscription_of(const std::string& id) {
  if (!starts_with(id, subscribe_prefix))
    return 0;
  try {
    return std::stoull(id.substr(std::char_traits<char>::length(
      subscribe_prefix)));
  } catch (...) {
    return 0;
  }
}

void on_text(const driver_events& ev, uint64_t gen, const std::string& text) {
  auto f = decode_frame(text);
  switch (f.kind) {
    case frame_kind::response: {
      reply r;
      r.gen = gen;
      r.wire_id = std::move(f.id);
      r.status = f.status;
      r.body = std::move(f.body);
      r.headers = std::move(f.headers);
      ev.on_reply(std::move(r));
      return;
    }
    case frame_kind::event: {
      event_frame e;
      e.gen = gen;
      e.topic = std::move(f.topic);
      e.data = std::move(f.data);
      e.seq = f.seq;
      ev.on_event(std::move(e));
      return;
    }
    case frame_kind::auth_ok:
      if (auto sub = subscription_of(f.id)) {
        ev.on_subscribed(
          subscribed{gen, sub, true, f.has_replay && f.replay_complete});
        return;
      }
      break; // the auth of a call's token: noted by the gateway
    case frame_kind::error: {
      if (auto sub = subscription_of(f.id)) {
        // A rejected auth leaves the connection as it was.
        ev.on_subscribed(subscribed{gen, sub, false, false});
        return;
      }
      if (f.id.empty() || starts_with(f.id, auth_prefix))
        break;
      // the gateway did not understand the request frame: its answer
      reply r;
      r.gen = gen;
      r.wire_id = std::move(f.id);
      r.status = f.status != 0 ? f.status : 400;
      r.body = error_envelope(f.code.empty() ? std::string{"bad_frame"}
                                             : f.code,
                              f.message);
      ev.on_reply(std::move(r));
      return;
    }
    default:
      break;
  }
  ev.on_pong(pong{gen}); // pong, unknown or invalid: only a sign of life
}

loop_handlers make_handlers(std::shared_ptr<const driver_events> ev) {
  loop_handlers h;
  h.on_open = [ev](uint64_t gen) { ev->on_link_up(link_up{gen}); };
  h.on_message = [ev](uint64_t gen, std::string&& text) {
    on_text(*ev, gen, text);
  };
  h.on_closed = [ev](uint64_t gen, const std::string& reason) {
    ev->on_link_lost(link_lost{gen, reason});
  };
  h.on_warning = [](uint64_t, const std::string& w) {
    log_line("aico: ws: " + w);
  };
  return h;
}

class ws_driver final : public driver {
public:
  ws_driver(const ws_transport_config& cfg, driver_events events)
    : cfg_(cfg) {
    url_ok_ = parse_url(cfg_.url, url_, url_error_);
    try {
      loop_options lo;
      lo.tls = url_ok_ && url_.tls;
      if (lo.tls)
        lo.tls_config = cfg_.tls;
      loop_ = std::make_unique<ws_loop>(
        lo, make_handlers(
              std::make_shared<const driver_events>(std::move(events))));
    } catch (const std::exception& e) {
      loop_.reset();
      loop_error_ = std::string{"ws transport: "} + e.what();
    } catch (...) {
      loop_.reset();
      loop_error_ = "ws transport: cannot start the service thread";
    }
  }

  ~ws_driver() override {
    try {
      stop();
    } catch (...) {
      // never throw from a destructor
    }
  }

  const char* name() const override { return "ws"; }

  driver_caps capabilities() const override {
    driver_caps c;
    c.heartbeat = true;
    c.subscribes_on_open = true;
    c.uses_wire_ids = true;
    c.concurrent_send = true; // the connection's token is locked (tok_mtx_)
    return c;
  }

  std::string unusable() const override {
    if (!url_ok_)
      return url_error_;
    if (!loop_)
      return loop_error_.empty() ? "ws transport: no service thread"
                                 : loop_error_;
    return {};
  }

  void open(uint64_t gen, const std::string& token) override {
    if (!loop_)
      return;
    std::lock_guard<std::mutex> guard{tok_mtx_};
    conn_token_ = token;
    loop_->open(gen, url_, token);
  }

  void close() override {
    std::lock_guard<std::mutex> guard{tok_mtx_};
    conn_token_.clear();
    if (loop_)
      loop_->close();
  }

  send_result send(uint64_t gen, outgoing_call call) override {
    if (!loop_)
      return send_result::fail(call_failure::network,
                               "ws transport: no service thread");
    std::string frame;
    auto method = call.method.empty() ? std::string{"GET"} : call.method;
    if (!encode_request(call.wire_id, method, call.path, call.body, frame))
      return send_result::answer(
        400, error_envelope("bad_json",
                            "the request body is not valid JSON (or holds a "
                            "number out of range)"));
    if (frame.size() > max_frame_bytes)
      return send_result::answer(
        413, error_envelope("payload_too_large",
                            "the request is too large for a WebSocket "
                            "frame"));
    // the auth frame and the call go to the service thread in this order,
    // with no other thread's token between them
    std::lock_guard<std::mutex> guard{tok_mtx_};
    if (!call.token.empty() && call.token != conn_token_) {
      // the gateway authenticates the connection, not the frame
      loop_->send(gen, encode_auth("auth-c" + std::to_string(next_auth_++),
                                   call.token, 0));
      conn_token_ = call.token;
    }
    loop_->send(gen, std::move(frame));
    return send_result::queued();
  }

  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t since) override {
    if (!loop_ || token.empty())
      return;
    std::lock_guard<std::mutex> guard{tok_mtx_};
    loop_->send(gen, encode_auth(subscribe_prefix + std::to_string(sub), token,
                                 since));
    conn_token_ = token;
  }

  void unsubscribe(uint64_t) override {
    // An empty token cannot un-authenticate the connection; the owner no
    // longer forwards its events.
  }

  void ping(uint64_t gen) override {
    if (loop_)
      loop_->send(gen, encode_ping("hb-" + std::to_string(next_ping_++)));
  }

  bool reserved_id(const std::string& id) const override {
    return starts_with(id, auth_prefix);
  }

  std::string describe(timing_cause c, duration silence,
                       duration limit) const override {
    if (c == timing_cause::dead_peer)
      return "websocket peer silent for " + std::to_string(to_ms(silence))
             + " ms";
    return "websocket connect timed out after "
           + std::to_string(to_ms(limit)) + " ms";
  }

  void stop() override {
    if (loop_) {
      loop_->stop();
      loop_.reset();
    }
  }

private:
  ws_transport_config cfg_;
  bool url_ok_ = false;
  std::string url_error_;
  std::string loop_error_;
  ws_url url_;
  /// Guards conn_token_ and next_auth_ (send() runs on callers' threads
  /// too: concurrent_send) and keeps a token change and the frames after
  /// it in order on the way to the service thread.
  std::mutex tok_mtx_;
  /// The token the gateway uses for the next frame we send, as far as we
  /// know (the upgrade's, then the last auth frame's).
  std::string conn_token_;
  uint64_t next_ping_ = 1;
  uint64_t next_auth_ = 1;
  /// Last member: destroyed first (no handler runs afterwards).
  std::unique_ptr<ws_loop> loop_;
};

} // namespace

std::unique_ptr<driver> make_ws_driver(const ws_transport_config& cfg,
                                       driver_events events) {
  return std::make_unique<ws_driver>(cfg, std::move(events));
}

} // namespace aico::ws_link
