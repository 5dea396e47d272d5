// aico engine: the IPC driver (see ipc_driver.hpp).
#include "src/transport/zmq/ipc_driver.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include <boost/json.hpp>

#include "src/transport/zmq/dealer_loop.hpp"
#include "src/transport/zmq/ipc_codec.hpp"

namespace aico::ipc_link {

namespace {

using namespace std::chrono_literals;
using namespace aico::transport;

constexpr const char* control_prefix = "ipc-ctl-";
constexpr const char* subscribe_prefix = "ipc-ctl-s";

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

int64_t to_ms(duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

/// What the gateway replayed for a Subscribe with `since` (its 200
/// response's data.replay; absent = a gateway without replay).
bool replay_complete(const std::string& body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_object())
    return false;
  auto d = v.get_object().if_contains("data");
  if (!d || !d->is_object())
    return false;
  auto rep = d->get_object().if_contains("replay");
  if (!rep || !rep->is_object())
    return false;
  auto c = rep->get_object().if_contains("complete");
  return c && c->is_bool() && c->get_bool();
}

/// The subscription number of a Subscribe id, 0 if it is none.
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

/// What the socket thread keeps (touched on that thread only).
struct io_side {
  explicit io_side(driver_events ev, std::string endpoint)
    : events(std::move(ev)), endpoint(std::move(endpoint)) {
  }
  driver_events events;
  std::string endpoint;
  uint64_t announced = 0; ///< the socket link_up was reported for
  uint64_t connected = 0; ///< the socket that connected at least once
  uint64_t lost = 0;      ///< the socket whose connection was lost
  /// CONNECT_RETRIED events since the loss: libzmq reports one when it arms
  /// its reconnect timer, so the second means a reconnect attempt failed.
  int retries_since_loss = 0;
};

loop_handlers make_handlers(std::shared_ptr<io_side> io) {
  loop_handlers h;
  h.on_frame = [io](uint64_t gen, decoded_frame&& f) {
    auto& ev = io->events;
    if (io->announced != gen) {
      io->announced = gen; // the first frame on a socket: the link is there
      ev.on_link_up(link_up{gen});
    }
    switch (f.kind) {
      case frame_kind::response: {
        if (starts_with(f.response.id, control_prefix)) {
          if (auto sub = subscription_of(f.response.id))
            ev.on_subscribed(subscribed{gen, sub, f.response.status == 200,
                                        f.response.status == 200
                                          && replay_complete(
                                            f.response.body)});
          else
            ev.on_pong(pong{gen}); // an Unsubscribe's answer
          return;
        }
        reply r;
        r.gen = gen;
        r.wire_id = std::move(f.response.id);
        r.status = f.response.status;
        r.body = std::move(f.response.body);
        r.headers = std::move(f.response.headers);
        ev.on_reply(std::move(r));
        return;
      }
      case frame_kind::event: {
        event_frame e;
        e.gen = gen;
        e.topic = std::move(f.event.topic);
        e.data = std::move(f.event.data);
        e.seq = f.event.seq;
        ev.on_event(std::move(e));
        return;
      }
      default:
        ev.on_pong(pong{gen}); // a Pong, or anything else: alive
        return;
    }
  };
  h.on_send_failed = [io](uint64_t gen, uint64_t tag, const std::string& why) {
    if (tag == 0)
      return; // a ping or a control frame: the heartbeat notices
    send_failed f;
    f.gen = gen;
    f.key = tag;
    f.kind = call_failure::network;
    f.reason = why;
    io->events.on_send_failed(std::move(f));
  };
  h.on_socket_error = [io](uint64_t gen, const std::string& why) {
    io->events.on_link_lost(link_lost{gen, why});
  };
  // A failed CURVE handshake (refused client key, wrong server key pinned).
  h.on_security_failure = [io](uint64_t gen, const std::string& why) {
    io->events.on_security_failure(security_failure{gen, why});
  };
  h.on_link = [io](uint64_t gen, bool connected) {
    if (connected) {
      io->connected = gen;
      io->events.on_peer_back(peer_back{gen});
      return;
    }
    io->lost = gen;
    io->retries_since_loss = 0;
    io->events.on_peer_lost(peer_lost{gen});
  };
  h.on_connect_failed = [io](uint64_t gen) {
    // A socket that never connected: nothing is bound to the endpoint (no
    // socket file, refused), so waiting for the connect timeout would only
    // delay trying the next transport.
    if (io->connected != gen) {
      io->events.on_link_lost(link_lost{
        gen, "cannot connect to " + io->endpoint
               + ": nothing is listening there"});
      return;
    }
    // A lost connection: the first CONNECT_RETRIED only arms libzmq's
    // reconnect timer; the second says the reconnect was refused, so the
    // endpoint is gone (ipc down, gateway stopped). A reconnect that neither
    // succeeds nor fails is the reconnect grace's business (the owner's).
    if (io->lost == gen && ++io->retries_since_loss == 2)
      io->events.on_link_lost(link_lost{
        gen, "ipc connection lost: cannot reconnect to " + io->endpoint
               + ", nothing is listening there"});
  };
  return h;
}

class ipc_driver final : public driver {
public:
  ipc_driver(const ipc_transport_config& cfg, driver_events events)
    : cfg_(cfg) {
    try {
      socket_options so;
      // Reconnect quickly: the owner never waits longer than connect_timeout
      // for the first Pong, and a lost link is declared down at the first
      // refused reconnect, which libzmq makes after this interval plus a
      // random 0-100 % of it (so 30-60 ms; it doubles up to the max while
      // refused).
      so.reconnect_ivl = 30ms;
      so.reconnect_ivl_max = 1000ms;
      so.sndhwm = 1000;
      so.rcvhwm = 10000;
      // CurveZMQ: pin the gateway's key; this client's pair from its key
      // file (made on first use) unless given directly.
      so.curve_server_key = cfg_.curve_server_key;
      so.curve_public_key = cfg_.curve_public_key;
      so.curve_secret_key = cfg_.curve_secret_key;
      if (!so.curve_server_key.empty() && so.curve_public_key.empty()
          && !cfg_.curve_key_file.empty()) {
        curve_keys keys;
        std::string err;
        if (load_or_create_client_keys(cfg_.curve_key_file, keys, err)) {
          so.curve_public_key = keys.public_key;
          so.curve_secret_key = keys.secret_key;
        } else {
          setup_error_ = "ipc CURVE: " + err;
        }
      }
      auto io = std::make_shared<io_side>(std::move(events), cfg_.endpoint);
      loop_ = std::make_unique<dealer_loop>(so, make_handlers(std::move(io)));
    } catch (...) {
      loop_.reset(); // unusable() says so
    }
  }

  ~ipc_driver() override {
    try {
      stop();
    } catch (...) {
      // never throw from a destructor
    }
  }

  const char* name() const override { return "ipc"; }

  driver_caps capabilities() const override {
    driver_caps c;
    c.heartbeat = true;
    c.reconnects_itself = true;
    c.reset_on_timeout = true;
    c.uses_wire_ids = true;
    c.concurrent_send = true; // send() only encodes and queues (locked)
    return c;
  }

  std::string unusable() const override {
    if (!loop_)
      return "ipc transport: no socket thread";
    if (cfg_.endpoint.empty())
      return "no ipc endpoint configured";
    return setup_error_;
  }

  void open(uint64_t gen, const std::string&) override {
    if (!loop_)
      return;
    loop_->open(gen, cfg_.endpoint);
    ping(gen); // its Pong (or anything else) makes the link up
  }

  void close() override {
    if (loop_)
      loop_->close();
  }

  send_result send(uint64_t gen, outgoing_call call) override {
    if (!loop_)
      return send_result::fail(call_failure::network,
                               "ipc transport: no socket thread");
    wire_request wr;
    wr.id = std::move(call.wire_id);
    wr.method = call.method.empty() ? std::string{"GET"} : call.method;
    wr.path = std::move(call.path);
    wr.token = std::move(call.token);
    wr.body = std::move(call.body);
    auto bytes = encode_request(wr);
    if (bytes.empty())
      return send_result::fail(call_failure::unknown,
                               "ipc transport: cannot encode request");
    loop_->send(gen, call.key, std::move(bytes));
    return send_result::queued(call.key);
  }

  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t since) override {
    if (!loop_ || token.empty())
      return;
    auto bytes = encode_subscribe(subscribe_prefix + std::to_string(sub),
                                  token, since);
    if (!bytes.empty())
      loop_->send(gen, 0, std::move(bytes));
  }

  void unsubscribe(uint64_t gen) override {
    if (!loop_)
      return;
    auto bytes = encode_unsubscribe(std::string{control_prefix} + "u"
                                    + std::to_string(next_control_++));
    if (!bytes.empty())
      loop_->send(gen, 0, std::move(bytes));
  }

  void ping(uint64_t gen) override {
    if (!loop_)
      return;
    auto bytes = encode_ping(next_nonce_++, now_ms());
    if (!bytes.empty())
      loop_->send(gen, 0, std::move(bytes));
  }

  bool reserved_id(const std::string& id) const override {
    return starts_with(id, control_prefix);
  }

  std::string describe(timing_cause c, duration silence,
                       duration limit) const override {
    switch (c) {
      case timing_cause::connect_timeout:
        return "no answer from ipc endpoint";
      case timing_cause::dead_peer:
        return "ipc peer silent for " + std::to_string(to_ms(silence))
               + " ms";
      case timing_cause::reconnect_grace:
        break;
    }
    return "ipc connection lost and not back within "
           + std::to_string(to_ms(limit)) + " ms";
  }

  void stop() override {
    if (loop_) {
      loop_->stop();
      loop_.reset();
    }
  }

private:
  ipc_transport_config cfg_;
  std::string setup_error_; ///< the CURVE key file could not be used
  uint64_t next_nonce_ = 1;
  uint64_t next_control_ = 1;
  /// Last member: destroyed first (stops and joins the socket thread).
  std::unique_ptr<dealer_loop> loop_;
};

} // namespace

std::unique_ptr<driver> make_ipc_driver(const ipc_transport_config& cfg,
                                        driver_events events) {
  return std::make_unique<ipc_driver>(cfg, std::move(events));
}

} // namespace aico::ipc_link
