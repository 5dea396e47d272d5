// aico engine: the aico profile's WebSocket driver (see aico_ws_driver.hpp).
#include "src/transport/lws/aico_ws_driver.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <boost/json.hpp>

#include "src/core/log_line.hpp"
#include "src/transport/lws/ws_codec.hpp"
#include "src/transport/lws/ws_loop.hpp"

namespace aico::ws_link {

namespace aico_ws {

std::string auth_frame(const std::string& token) {
  return boost::json::serialize(
    boost::json::object{{"type", "auth"}, {"token", token}});
}

std::string heartbeat_frame() {
  return R"({"type":"heartbeat"})";
}

} // namespace aico_ws

namespace {

using namespace aico::transport;
namespace json = boost::json;

/// The backend closes a socket whose last heartbeat is older than 90 s,
/// checking every 30 s (wire document 3.1, 10): one heartbeat per 30 s.
constexpr auto backend_heartbeat = std::chrono::seconds(30);

int64_t to_ms(duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// What the I/O threads and the owner share: the auth frames in flight on
/// the current connection (subscription numbers, in send order), the calls
/// in flight on the call path, and a socket loss that waits for them.
struct shared_state {
  std::mutex m;
  uint64_t gen = 0;
  std::deque<uint64_t> pending_auth;
  /// Calls sent on `gen`, not answered yet: key -> the call driver's handle.
  std::map<uint64_t, uint64_t> calls;
  bool lost = false;        ///< the socket of `gen` is gone
  bool lost_reported = false;
  std::string lost_reason;

  void reset(uint64_t g) {
    std::lock_guard<std::mutex> g_(m);
    gen = g;
    pending_auth.clear();
    calls.clear();
    lost = lost_reported = false;
    lost_reason.clear();
  }

  /// The socket of `g` closed: report it now if no call is in flight, else
  /// when the last one is answered (see aico_ws_driver::send). The reason
  /// to report, or nullopt.
  std::optional<std::string> socket_lost(uint64_t g, std::string reason) {
    std::lock_guard<std::mutex> g_(m);
    if (g != gen)
      return reason; // stale: the owner ignores it
    lost = true;
    lost_reason = std::move(reason);
    return take_loss();
  }

  /// Call `key` of `g` was answered (or given up): the deferred loss, if it
  /// is due now.
  std::optional<std::string> call_done(uint64_t g, uint64_t key) {
    std::lock_guard<std::mutex> g_(m);
    if (g != gen)
      return std::nullopt;
    calls.erase(key);
    return take_loss();
  }

  uint64_t gen_now() {
    std::lock_guard<std::mutex> g_(m);
    return gen;
  }

  /// False if the socket is gone (a new call is refused).
  bool add_call(uint64_t g, uint64_t key) {
    std::lock_guard<std::mutex> g_(m);
    if (g != gen || lost)
      return false;
    calls.emplace(key, 0);
    return true;
  }

  void set_handle(uint64_t g, uint64_t key, uint64_t handle) {
    std::lock_guard<std::mutex> g_(m);
    if (g != gen)
      return;
    if (auto i = calls.find(key); i != calls.end())
      i->second = handle;
  }

  /// The call driver's handle of call `key` if it is still in flight.
  std::optional<uint64_t> handle_of(uint64_t key) {
    std::lock_guard<std::mutex> g_(m);
    auto i = calls.find(key);
    if (i == calls.end())
      return std::nullopt;
    return i->second;
  }

private:
  std::optional<std::string> take_loss() {
    if (!lost || lost_reported || !calls.empty())
      return std::nullopt;
    lost_reported = true;
    return lost_reason;
  }

public:
  void push(uint64_t g, uint64_t sub) {
    std::lock_guard<std::mutex> g_(m);
    if (g == gen)
      pending_auth.push_back(sub);
  }
  /// The subscription the next auth answer of connection `g` is for (0:
  /// none expected).
  uint64_t pop(uint64_t g) {
    std::lock_guard<std::mutex> g_(m);
    if (g != gen || pending_auth.empty())
      return 0;
    auto s = pending_auth.front();
    pending_auth.pop_front();
    return s;
  }
};

std::string str_of(const json::object& o, const char* key) {
  if (auto v = o.if_contains(key); v && v->is_string())
    return std::string(v->get_string());
  return {};
}

void on_text(const driver_events& ev, shared_state& sh, uint64_t gen,
             const std::string& text) {
  json::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    ev.on_pong(pong{gen}); // not understood: a sign of life only
    return;
  }
  auto& o = v.as_object();
  auto type = str_of(o, "type");
  if (type == "welcome") {
    ev.on_link_up(link_up{gen});
    return;
  }
  if (type == "auth_success") {
    sh.pop(gen); // accepted when it was sent (see subscribe)
  } else if (type == "error") {
    auto err = str_of(o, "error");
    // "Authentication failed" (refused, no token) or "Authentication
    // error" (the backend's own failure): the answer to an auth frame
    if (err.rfind("Authentication", 0) == 0) {
      if (auto sub = sh.pop(gen)) {
        auto detail = str_of(o, "detail");
        log_line("aico: ws: the backend refused the token on this connection"
                 + (detail.empty() ? std::string{} : " (" + detail + ")")
                 + "; it revokes a token when its socket ends, so the engine "
                   "asks for a fresh one");
        ev.on_subscribed(subscribed{gen, sub, false, false});
        return;
      }
    }
    // e.g. "Session expired or revoked. Please re-authenticate." (the
    // close follows) or an unknown type: only a sign of life
    log_line("aico: ws: the backend says: " + err);
  } else if (type == "broadcast") {
    event_frame e;
    e.gen = gen;
    e.topic = str_of(o, "topic");
    if (auto d = o.if_contains("data"))
      e.data = json::serialize(*d);
    else
      e.data = "null";
    ev.on_event(std::move(e));
    return;
  }
  ev.on_pong(pong{gen}); // heartbeat_ack, subscribed, ...
}

class aico_ws_driver final : public driver {
public:
  aico_ws_driver(const ws_transport_config& cfg, driver_events events,
                 call_driver_factory calls)
    : cfg_(cfg),
      events_(std::make_shared<const driver_events>(std::move(events))),
      shared_(std::make_shared<shared_state>()) {
    url_ok_ = parse_url(cfg_.url, url_, url_error_);
    try {
      if (calls)
        calls_ = calls(call_events());
      if (!calls_)
        error_ = "aico ws transport: no call path";
    } catch (const std::exception& e) {
      error_ = std::string{"aico ws transport: "} + e.what();
    } catch (...) {
      error_ = "aico ws transport: the call path could not be built";
    }
    try {
      loop_options lo;
      lo.tls = url_ok_ && url_.tls;
      if (lo.tls)
        lo.tls_config = cfg_.tls;
      lo.max_message = 10u * 1024u * 1024u; // the backend's limit
      loop_ = std::make_unique<ws_loop>(lo, handlers());
    } catch (const std::exception& e) {
      loop_.reset();
      if (error_.empty())
        error_ = std::string{"ws transport: "} + e.what();
    } catch (...) {
      loop_.reset();
      if (error_.empty())
        error_ = "ws transport: cannot start the service thread";
    }
  }

  ~aico_ws_driver() override {
    try {
      stop();
    } catch (...) {
      // never throw from a destructor
    }
  }

  const char* name() const override { return "ws"; }

  driver_caps capabilities() const override {
    driver_caps c;
    if (calls_)
      c = calls_->capabilities(); // how calls are matched, their timeouts
    c.heartbeat = true;
    c.reconnects_itself = false;
    c.reset_on_timeout = false;
    c.subscribes_on_open = false;
    c.separate_event_stream = false;
    c.refresh_keeps_subscription = false;
    c.token_per_connection = true;
    c.max_ping_interval = backend_heartbeat;
    return c;
  }

  std::string unusable() const override {
    if (!url_ok_)
      return url_error_;
    if (!error_.empty())
      return error_;
    if (!loop_)
      return "ws transport: no service thread";
    return calls_->unusable();
  }

  void open(uint64_t gen, const std::string& token) override {
    if (!loop_ || !calls_)
      return;
    shared_->reset(gen);
    calls_->open(gen, token);
    loop_->open(gen, url_, std::string{}); // the backend reads no header
  }

  void close() override {
    shared_->reset(0);
    if (calls_)
      calls_->close();
    if (loop_)
      loop_->close();
  }

  send_result send(uint64_t gen, outgoing_call call) override {
    if (!calls_)
      return send_result::fail(call_failure::network,
                               "aico ws transport: no call path");
    auto key = call.key;
    if (!shared_->add_call(gen, key))
      return send_result::fail(call_failure::network,
                               "the backend's websocket is closed");
    auto res = calls_->send(gen, std::move(call));
    if (res.what != send_result::kind::queued) {
      if (auto why = shared_->call_done(gen, key))
        events_->on_link_lost(link_lost{gen, *why});
      return res;
    }
    // the owner's handle is the key (the call driver's may be 0 for all)
    shared_->set_handle(gen, key, res.handle);
    return send_result::queued(key);
  }

  void cancel(uint64_t key) override {
    if (!calls_)
      return;
    auto handle = shared_->handle_of(key);
    if (!handle)
      return; // answered already
    calls_->cancel(*handle);
    auto gen = shared_->gen_now();
    if (auto why = shared_->call_done(gen, key))
      events_->on_link_lost(link_lost{gen, *why});
  }

  bool resend_safe(const outgoing_call& call) const override {
    // the backend has no idempotency keys: a send that may have reached it
    // is never sent again (docs/profiles.md, "A send whose outcome is
    // unknown")
    if (call.method == "POST"
        && call.path.rfind("/conversations/messages", 0) == 0)
      return false;
    return !calls_ || calls_->resend_safe(call);
  }

  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t) override {
    if (!loop_ || token.empty())
      return;
    shared_->push(gen, sub);
    loop_->send(gen, aico_ws::auth_frame(token));
    // The events of this link are the call path's (the chunks of the
    // user's own sends): they do not depend on the socket's auth, so the
    // subscription is live at once. A refusal of the auth frame follows as
    // subscribed{!ok} (token_per_connection: the owner renews the token).
    events_->on_subscribed(subscribed{gen, sub, true, false});
  }

  void unsubscribe(uint64_t) override {
    // the backend has no way to un-authenticate a socket; the owner stops
    // forwarding its events
  }

  void ping(uint64_t gen) override {
    if (loop_)
      loop_->send(gen, aico_ws::heartbeat_frame());
  }

  bool reserved_id(const std::string& id) const override {
    return calls_ && calls_->reserved_id(id);
  }

  std::string describe(timing_cause c, duration silence,
                       duration limit) const override {
    if (c == timing_cause::dead_peer)
      return "the backend's websocket was silent for "
             + std::to_string(to_ms(silence)) + " ms";
    return "no welcome from the backend's websocket within "
           + std::to_string(to_ms(limit)) + " ms";
  }

  void stop() override {
    if (loop_) {
      loop_->stop();
      loop_.reset();
    }
    if (calls_) {
      calls_->stop();
      calls_.reset();
    }
  }

private:
  loop_handlers handlers() {
    loop_handlers h;
    auto ev = events_;
    auto sh = shared_;
    h.on_open = [ev](uint64_t gen) {
      ev->on_pong(pong{gen}); // upgraded; link_up is the welcome
    };
    h.on_message = [ev, sh](uint64_t gen, std::string&& text) {
      on_text(*ev, *sh, gen, text);
    };
    h.on_closed = [ev, sh](uint64_t gen, const std::string& reason) {
      // The calls in flight go over REST, not over this socket: they are
      // answered first (a send failed as "network" would be re-sent on the
      // next transport and could be stored twice), then the link is lost.
      if (auto why = sh->socket_lost(gen, reason))
        ev->on_link_lost(link_lost{gen, *why});
    };
    h.on_warning = [](uint64_t, const std::string& w) {
      log_line("aico: ws: " + w);
    };
    return h;
  }

  /// The call driver's events: its answers are this driver's; its link is
  /// part of this link.
  driver_events call_events() {
    auto ev = events_;
    auto sh = shared_;
    driver_events c;
    c.on_link_up = [](link_up&&) {};
    c.on_link_lost = [ev](link_lost&& x) {
      x.reason = "REST: " + x.reason;
      ev->on_link_lost(std::move(x));
    };
    c.on_peer_lost = [](peer_lost&&) {};
    c.on_peer_back = [](peer_back&&) {};
    c.on_reply = [ev, sh](reply&& x) {
      auto gen = x.gen, key = x.key;
      ev->on_reply(std::move(x));
      if (auto why = sh->call_done(gen, key))
        ev->on_link_lost(link_lost{gen, *why});
    };
    c.on_send_failed = [ev, sh](send_failed&& x) {
      auto gen = x.gen, key = x.key;
      ev->on_send_failed(std::move(x));
      if (auto why = sh->call_done(gen, key))
        ev->on_link_lost(link_lost{gen, *why});
    };
    c.on_event = [ev](event_frame&& x) { ev->on_event(std::move(x)); };
    c.on_subscribed = [](subscribed&&) {};
    c.on_subscription_lost = [](subscription_lost&&) {};
    c.on_pong = [](pong&&) {}; // REST answers say nothing about the socket
    c.on_security_failure = [ev](security_failure&& x) {
      ev->on_security_failure(std::move(x));
    };
    return c;
  }

  ws_transport_config cfg_;
  std::shared_ptr<const driver_events> events_;
  std::shared_ptr<shared_state> shared_;
  bool url_ok_ = false;
  std::string url_error_;
  std::string error_;
  ws_url url_;
  std::unique_ptr<driver> calls_;
  /// Last member: destroyed first (no handler runs afterwards).
  std::unique_ptr<ws_loop> loop_;
};

} // namespace

std::unique_ptr<driver> make_aico_ws_driver(const ws_transport_config& cfg,
                                            driver_events events,
                                            call_driver_factory calls) {
  return std::make_unique<aico_ws_driver>(cfg, std::move(events),
                                          std::move(calls));
}

} // namespace aico::ws_link
