// aico wire profile: the HTTP driver (see http_driver.hpp).
#include "src/profile/aico/http_driver.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <boost/json.hpp>

#include "src/core/log_line.hpp"
#include "src/core/url_host.hpp"
#include "src/profile/aico/http_session.hpp"
#include "src/transport/curl/http_loop.hpp"

namespace aico::aico_profile {

namespace {

using namespace std::chrono_literals;
using namespace aico::transport;
namespace json = boost::json;

/// The owner's deadlines trail the driver's own timeouts by this.
constexpr duration safety_grace = 250ms;
/// The model's inner monologue is a message of its own: the reply's id with
/// this suffix (its chunks and its final message).
constexpr const char* thinking_suffix = ":thinking";

/// The driver answers this much before the owner's deadline.
constexpr duration own_margin = 100ms;

std::chrono::milliseconds ceil_ms(duration d) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(d);
  return std::max(ms, std::chrono::milliseconds{1});
}

std::string base_of(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  return url;
}

std::string chunk_json(const stream_chunk& c) {
  json::object o;
  o["conversation_id"] = c.conversation_id;
  o["reply_to"] = c.reply_to;
  o["message_id"] = c.message_id;
  o["seq_no"] = c.seq_no;
  o["chunk"] = c.chunk;
  o["done"] = c.done;
  return json::serialize(o);
}

bool class_has_status(error_class c, int32_t s) {
  switch (c) {
    case error_class::authentication:
      return s == 401;
    case error_class::authorization:
      return s == 403;
    case error_class::validation:
      return s == 400 || s == 404 || s == 405 || s == 409 || s == 410
             || s == 413 || s == 414 || s == 415 || s == 422;
    case error_class::server_error:
      return s == 429 || (s >= 500 && s <= 599);
    default:
      return false;
  }
}

int32_t status_for(const wire_error& e) {
  if (class_has_status(e.cls, e.status))
    return e.status;
  switch (e.cls) {
    case error_class::authentication:
      return 401;
    case error_class::authorization:
      return 403;
    case error_class::validation:
      return 400;
    case error_class::server_error:
      return 500;
    case error_class::timeout:
      return 408;
    default:
      return 0;
  }
}

std::string error_envelope(const std::string& message, const std::string& code,
                           const wire_error& e) {
  json::object details;
  details["aico_code"] = e.code;
  if (e.status != 0)
    details["aico_status"] = e.status;
  if (e.outcome_unknown)
    details["outcome_unknown"] = true;
  json::object o;
  o["success"] = false;
  o["message"] = message;
  o["code"] = code;
  o["details"] = std::move(details);
  return json::serialize(o);
}

/// What send() hands to the session's done callback.
struct call_slot {
  std::mutex mtx;
  bool in_call = true; ///< send() is still inside session::call
  std::thread::id caller = std::this_thread::get_id();
  std::optional<call_result> sync; ///< a result given inside call()
};

class aico_http_driver final : public driver {
public:
  aico_http_driver(const http_transport_config& cfg, driver_events events)
    : cfg_(cfg),
      events_(std::make_shared<const driver_events>(std::move(events))) {
    base_ = base_of(cfg_.base_url);
    try {
      http::loop_options lo;
      lo.max_host_connections = std::max(1, cfg_.max_connections);
      lo.connect_timeout = ceil_ms(cfg_.connect_timeout);
      lo.tls = cfg_.tls;
      lo.on_warning = [](const std::string& w) {
        log_line("aico: http (aico profile): " + w);
      };
      loop_ = std::make_unique<http::loop>(lo);
    } catch (...) {
      loop_.reset(); // unusable() says so
    }
    if (loop_) {
      std::string why;
      if (!valid_url_authority(base_, why))
        why_ = "http transport: bad base URL: " + why;
      else
        session_ = new_session(why_);
    } else {
      why_ = "http transport: no I/O thread";
    }
  }

  ~aico_http_driver() override {
    try {
      stop();
    } catch (...) {
      // never throw from a destructor
    }
  }

  const char* name() const override { return "http"; }

  driver_caps capabilities() const override {
    driver_caps c;
    c.refresh_keeps_subscription = true;
    c.uses_wire_ids = false;
    c.own_timeout_grace = safety_grace;
    return c;
  }

  std::string unusable() const override { return why_; }

  void open(uint64_t gen, const std::string&) override {
    if (!loop_ || !why_.empty())
      return;
    close();
    // A new session: the channel is handshaken again after every
    // reconnect (the server may have restarted and lost it), and no
    // handshake of the old one is left waiting for an aborted transfer.
    std::string err;
    auto fresh = new_session(err);
    if (!fresh) {
      events_->on_link_lost(link_lost{gen, err});
      return;
    }
    if (session_)
      fresh->set_conversation(session_->conversation());
    session_ = std::move(fresh);
    http::request rq;
    rq.method = "GET";
    rq.url = base_ + "/api/v1/health";
    rq.headers.emplace_back("Accept: application/json");
    rq.timeout = ceil_ms(cfg_.connect_timeout);
    auto ev = events_;
    auto base = base_;
    loop_->submit(std::move(rq), [ev, gen, base](http::response r) {
      if (r.fail == http::failure::none && r.status >= 200 && r.status < 300) {
        ev->on_link_up(link_up{gen});
        return;
      }
      if (r.fail == http::failure::none) {
        ev->on_link_lost(link_lost{
          gen, "the server at " + base + " answered its health check with "
                 "status " + std::to_string(r.status)
                 + " (is it an AICO backend?)"});
        return;
      }
      ev->on_link_lost(link_lost{
        gen, (r.fail == http::failure::timeout ? "health check timed out: "
                                               : "health check failed: ")
               + r.error});
    });
  }

  void close() override {
    if (loop_)
      loop_->reset(); // every transfer, no callbacks
  }

  send_result send(uint64_t gen, outgoing_call call) override {
    if (!loop_ || !session_)
      return send_result::fail(call_failure::network,
                               why_.empty() ? "http transport: not open" : why_);
    logical_call lc;
    lc.method = call.method.empty() ? std::string{"GET"} : call.method;
    lc.path = std::move(call.path);
    lc.body = std::move(call.body);
    lc.token = std::move(call.token);
    auto left = call.time_left > own_margin * 2 ? call.time_left - own_margin
                                                : call.time_left;
    lc.timeout = ceil_ms(left);
    auto ev = events_;
    auto key = call.key;
    auto sub = sub_;
    // per call: reply chunks and thinking chunks are numbered separately
    auto counters = std::make_shared<std::pair<uint64_t, uint64_t>>(0, 0);
    auto on_chunk = [ev, gen, sub, counters](const stream_piece& p) {
      auto c = p.chunk;
      c.seq_no = p.thinking ? counters->second++ : counters->first++;
      if (p.thinking)
        c.message_id += thinking_suffix; // a message of its own
      event_frame f;
      f.gen = gen;
      f.sub = sub;
      f.topic = "message.stream";
      f.data = chunk_json(c);
      ev->on_event(std::move(f));
    };
    auto slot = std::make_shared<call_slot>();
    auto done = [ev, gen, key, sub, slot](call_result r) {
      {
        std::lock_guard<std::mutex> g{slot->mtx};
        if (slot->in_call && std::this_thread::get_id() == slot->caller) {
          slot->sync = std::move(r);
          return;
        }
      }
      deliver(*ev, gen, key, sub, std::move(r));
    };
    session_->call(lc, std::move(on_chunk), std::move(done));
    std::optional<call_result> sync;
    {
      std::lock_guard<std::mutex> g{slot->mtx};
      slot->in_call = false;
      sync = std::move(slot->sync);
    }
    if (!sync)
      return send_result::queued();
    if (sync->ok)
      return send_result::answer(sync->answer.status,
                                 std::move(sync->answer.body));
    auto d = error_answer(sync->error);
    if (d.driver_failure)
      return send_result::fail(d.failure, sync->error.message);
    return send_result::answer(d.status, std::move(d.body));
  }

  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t) override {
    sub_ = sub;
    if (token.empty())
      return;
    // no pushed events: only the chunks of the user's own sends
    events_->on_subscribed(subscribed{gen, sub, true, false});
  }

  void unsubscribe(uint64_t) override { sub_ = 0; }

  bool resend_safe(const outgoing_call& call) const override {
    // the backend has no idempotency keys: a send in flight when the link
    // goes away (a fail-back disconnects this transport) may have been
    // stored, so the owner fails it as outcome_unknown, not network
    return !(call.method == "POST"
             && call.path.rfind("/conversations/messages", 0) == 0);
  }

  std::string describe(timing_cause, duration, duration) const override {
    return "the AICO server's health check timed out";
  }

  void stop() override {
    if (loop_) {
      loop_->stop();
      session_.reset();
      loop_.reset();
    }
  }

private:
  std::shared_ptr<aico_http_session> new_session(std::string& err) {
    session_options so;
    so.base_url = base_;
    so.state_dir = cfg_.profile_state_dir;
    if (so.state_dir.empty()) {
      err = "the aico profile needs a state directory for its identity key";
      return nullptr;
    }
    so.conversation_file = so.state_dir + "/conversation";
    so.request_timeout = std::max(ceil_ms(cfg_.connect_timeout),
                                  std::chrono::milliseconds{10000});
    so.stream_open_timeout = so.request_timeout;
    return aico_http_session::create(*loop_, std::move(so), err);
  }

  static void deliver(const driver_events& ev, uint64_t gen, uint64_t key,
                      uint64_t sub, call_result r) {
    if (r.ok && r.send) {
      // the stored messages, as the gateway pushes them: the user's own
      // (delivered), the model's thinking (if any) and the reply, before
      // the send's answer; they replace the streamed chunks in the chat
      auto push = [&](const chat_message& m) {
        event_frame f;
        f.gen = gen;
        f.sub = sub;
        f.topic = "message";
        f.data = message_json(m);
        ev.on_event(std::move(f));
      };
      auto& o = *r.send;
      push(o.sent);
      if (!o.reply.content.empty() || !o.aico_message_id.empty()) {
        if (!o.thinking.empty()) {
          auto t = o.reply;
          t.id += thinking_suffix;
          t.content = o.thinking;
          t.metadata = R"({"aico_thinking":true})";
          push(t);
        }
        push(o.reply);
      }
    }
    if (r.ok) {
      reply rep;
      rep.gen = gen;
      rep.key = key;
      rep.status = r.answer.status;
      rep.body = std::move(r.answer.body);
      rep.headers = std::move(r.answer.headers);
      ev.on_reply(std::move(rep));
      return;
    }
    auto d = error_answer(r.error);
    if (d.driver_failure) {
      send_failed f;
      f.gen = gen;
      f.key = key;
      f.kind = d.failure;
      f.reason = r.error.message;
      f.link_down = d.link_down;
      ev.on_send_failed(std::move(f));
      return;
    }
    reply rep;
    rep.gen = gen;
    rep.key = key;
    rep.status = d.status;
    rep.body = std::move(d.body);
    ev.on_reply(std::move(rep));
  }

  http_transport_config cfg_;
  std::shared_ptr<const driver_events> events_;
  std::string base_;
  std::string why_; ///< why the driver cannot connect ("" = it can)
  uint64_t sub_ = 0; ///< the owner's subscription (owner thread only)
  std::shared_ptr<aico_http_session> session_;
  /// Last member: destroyed first (stops and joins the loop thread).
  std::unique_ptr<http::loop> loop_;
};

} // namespace

error_delivery error_answer(const wire_error& e) {
  error_delivery d;
  if (!e.outcome_unknown
      && (e.cls == error_class::network || e.cls == error_class::timeout)) {
    d.driver_failure = true;
    d.failure = e.cls == error_class::network ? call_failure::network
                                              : call_failure::timeout;
    d.link_down = e.cls == error_class::network;
    return d;
  }
  if (e.outcome_unknown) {
    d.status = 0;
    d.body = error_envelope(e.message, "outcome_unknown", e);
    return d;
  }
  d.status = status_for(e);
  auto code = e.code;
  if (e.missing_token)
    code = "unauthenticated";
  d.body = error_envelope(e.message, code, e);
  return d;
}

std::unique_ptr<driver> make_aico_http_driver(const http_transport_config& cfg,
                                              driver_events events) {
  return std::make_unique<aico_http_driver>(cfg, std::move(events));
}

} // namespace aico::aico_profile
