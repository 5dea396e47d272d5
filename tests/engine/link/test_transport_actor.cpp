// The generic transport actor (actors/transport_actor) on CAF's test
// coordinator with a fake driver: the test plays the driver's I/O thread
// (it calls the driver_events handlers the actor gave the driver) and moves
// the virtual clock; no sockets, no threads, no sleeps. What the actor does
// for every protocol is checked here once: link up / lost, replies, the
// deadline sweep, fail-all on down, stale connections, the subscription
// and its replay marker, heartbeat, reconnect grace, a separate stream's
// reopen, capabilities instead of protocol names.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "actors/transport_actor.hpp"
#include "messages/errors.hpp"
#include "support/caf_fixture.hpp"
#include "support/recorder.hpp"

using namespace aico;
using namespace std::chrono_literals;
namespace tp = aico::transport;

namespace {

/// What the actor asked of the fake driver, and the handlers to answer by.
struct driver_log {
  tp::driver_caps caps;
  tp::driver_events ev;
  std::vector<std::string> calls; ///< "open 1 tok", "send 1 k1 id c1", ...
  std::vector<uint64_t> opened;   ///< gens of open()
  std::vector<uint64_t> cancelled;
  std::optional<tp::send_result> next_send; ///< else queued(key * 10)
  uint64_t last_sub = 0;
  uint64_t last_since = 0;
  bool stopped = false;

  std::size_t count(const std::string& prefix) const {
    std::size_t n = 0;
    for (auto& c : calls)
      if (c.rfind(prefix, 0) == 0)
        ++n;
    return n;
  }
};

class fake_driver : public tp::driver {
public:
  fake_driver(std::shared_ptr<driver_log> log, tp::driver_events ev)
    : log_(std::move(log)) {
    log_->ev = std::move(ev);
  }
  const char* name() const override { return "fake"; }
  tp::driver_caps capabilities() const override { return log_->caps; }
  std::string unusable() const override { return {}; }
  void open(uint64_t gen, const std::string& token) override {
    log_->opened.push_back(gen);
    log_->calls.push_back("open " + std::to_string(gen) + " " + token);
  }
  void close() override { log_->calls.push_back("close"); }
  tp::send_result send(uint64_t gen, tp::outgoing_call c) override {
    log_->calls.push_back("send " + std::to_string(gen) + " k"
                          + std::to_string(c.key) + " id " + c.wire_id);
    if (log_->next_send) {
      auto r = *log_->next_send;
      log_->next_send.reset();
      return r;
    }
    return tp::send_result::queued(c.key * 10);
  }
  void cancel(uint64_t handle) override { log_->cancelled.push_back(handle); }
  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t since) override {
    log_->last_sub = sub;
    log_->last_since = since;
    log_->calls.push_back("subscribe " + std::to_string(gen) + " " + token
                          + " since " + std::to_string(since));
  }
  void unsubscribe(uint64_t gen) override {
    log_->calls.push_back("unsubscribe " + std::to_string(gen));
  }
  void ping(uint64_t gen) override {
    log_->calls.push_back("ping " + std::to_string(gen));
  }
  bool reserved_id(const std::string& id) const override {
    return id.rfind("ctl-", 0) == 0;
  }
  std::string describe(tp::timing_cause c, tp::duration,
                       tp::duration) const override {
    switch (c) {
      case tp::timing_cause::connect_timeout:
        return "fake connect timed out";
      case tp::timing_cause::dead_peer:
        return "fake peer silent";
      case tp::timing_cause::reconnect_grace:
        break;
    }
    return "fake not back in time";
  }
  void stop() override { log_->stopped = true; }

private:
  std::shared_ptr<driver_log> log_;
};

using reply_box = std::shared_ptr<aico::test::call_box<api_reply>>;

struct transport_actor_test : aico::test::caf_fixture {
  std::shared_ptr<driver_log> drv = std::make_shared<driver_log>();
  std::shared_ptr<aico::test::transport_log> log
    = std::make_shared<aico::test::transport_log>();
  transport_listener_actor listener
    = aico::test::spawn_transport_recorder(sys, log);
  transport_actor t;

  ~transport_actor_test() override {
    if (t)
      caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
    run();
  }

  void spawn(transport_host_config hc = {}) {
    hc.mode = transport_mode::ws;
    if (hc.timing.connect_timeout == std::chrono::seconds(5))
      hc.timing.connect_timeout = 1s;
    auto d = drv;
    t = spawn_transport_actor(
      sys, hc,
      [d](tp::driver_events ev) {
        return std::make_unique<fake_driver>(d, std::move(ev));
      },
      listener);
    run();
  }

  uint64_t gen() const { return drv->opened.empty() ? 0 : drv->opened.back(); }

  /// connect + link_up: up on connection gen().
  void bring_up() {
    caf::anon_send(t, connect_atom_v);
    run();
    drv->ev.on_link_up(tp::link_up{gen()});
    run();
    ASSERT_EQ(log->last(), transport_status::up);
  }

  reply_box call(std::string id, caf::timespan left = 10s) {
    api_call c;
    c.id = std::move(id);
    c.path = "/health";
    auto box = aico::test::call_into<api_reply>(sys, t, request_atom_v,
                                                std::move(c), left);
    run();
    return box;
  }

  static error_class class_of_box(const reply_box& b) {
    return classify(b->res.error()).cls;
  }

  void send_reply(uint64_t g, std::string wire_id, int32_t status = 200) {
    tp::reply r;
    r.gen = g;
    r.wire_id = std::move(wire_id);
    r.status = status;
    r.body = R"({"success":true})";
    drv->ev.on_reply(std::move(r));
    run();
  }

  void send_event(uint64_t g, uint64_t seq, uint64_t sub = 0) {
    tp::event_frame e;
    e.gen = g;
    e.sub = sub;
    e.topic = "message";
    e.data = "{}";
    e.seq = seq;
    drv->ev.on_event(std::move(e));
    run();
  }
};

} // namespace

TEST_F(transport_actor_test, link_up_reports_up_and_a_reply_answers_its_call) {
  spawn();
  caf::anon_send(t, connect_atom_v);
  run();
  EXPECT_EQ(log->last(), transport_status::connecting);
  ASSERT_EQ(drv->opened.size(), 1u);
  drv->ev.on_link_up(tp::link_up{gen()});
  run();
  EXPECT_EQ(log->last(), transport_status::up);
  auto box = call("c1");
  EXPECT_FALSE(box->done);
  ASSERT_EQ(drv->count("send"), 1u);
  EXPECT_EQ(drv->calls.back(), "send " + std::to_string(gen()) + " k1 id c1");
  send_reply(gen(), "c1", 201);
  ASSERT_TRUE(box->done);
  ASSERT_TRUE(box->res) << to_string(box->res.error());
  EXPECT_EQ(box->res->id, "c1");
  EXPECT_EQ(box->res->status, 201);
  EXPECT_EQ(box->res->via, transport_mode::ws);
}

TEST_F(transport_actor_test, calls_while_not_up_fail_at_once_with_network) {
  spawn();
  auto box = call("c1");
  ASSERT_TRUE(box->done);
  ASSERT_FALSE(box->res);
  EXPECT_EQ(class_of_box(box), error_class::network);
  EXPECT_EQ(drv->count("send"), 0u);
}

TEST_F(transport_actor_test, stale_generation_is_ignored) {
  spawn();
  caf::anon_send(t, connect_atom_v);
  run();
  auto first = gen();
  drv->ev.on_link_lost(tp::link_lost{first, "refused"});
  run();
  ASSERT_EQ(log->last(), transport_status::down);
  EXPECT_EQ(log->last_reason(), "refused");
  caf::anon_send(t, connect_atom_v);
  run();
  auto second = gen();
  ASSERT_NE(first, second);
  // the old connection's late news change nothing
  drv->ev.on_link_up(tp::link_up{first});
  drv->ev.on_link_lost(tp::link_lost{first, "late"});
  run();
  EXPECT_EQ(log->last(), transport_status::connecting);
  drv->ev.on_link_up(tp::link_up{second});
  run();
  EXPECT_EQ(log->last(), transport_status::up);
  // a reply from the old connection does not answer a call of the new one
  auto box = call("c1");
  send_reply(first, "c1");
  EXPECT_FALSE(box->done);
  send_reply(second, "c1");
  EXPECT_TRUE(box->done);
}

TEST_F(transport_actor_test, wire_ids_avoid_ids_in_use_and_reserved_ones) {
  spawn();
  bring_up();
  auto a = call("same");
  auto b = call("same");
  auto c = call("ctl-1");
  ASSERT_EQ(drv->count("send"), 3u);
  EXPECT_EQ(drv->calls[drv->calls.size() - 3],
            "send " + std::to_string(gen()) + " k1 id same");
  EXPECT_EQ(drv->calls[drv->calls.size() - 2],
            "send " + std::to_string(gen()) + " k2 id same#fake2");
  // a reserved prefix stays reserved with a suffix: the tag goes first
  EXPECT_EQ(drv->calls.back(),
            "send " + std::to_string(gen()) + " k3 id #fake3#ctl-1");
  send_reply(gen(), "same#fake2");
  ASSERT_TRUE(b->done);
  EXPECT_EQ(b->res->id, "same"); // the call's own id again
  EXPECT_FALSE(a->done);
  EXPECT_FALSE(c->done);
}

TEST_F(transport_actor_test, deadline_sweep_answers_with_timeout_on_time) {
  spawn();
  bring_up();
  auto box = call("c1", 2s);
  advance(1999ms);
  EXPECT_FALSE(box->done);
  advance(1ms);
  ASSERT_TRUE(box->done);
  ASSERT_FALSE(box->res);
  EXPECT_EQ(class_of_box(box), error_class::timeout);
  // the driver is told to forget it (its handle), the link stays up
  ASSERT_EQ(drv->cancelled.size(), 1u);
  EXPECT_EQ(drv->cancelled[0], 10u);
  EXPECT_EQ(log->last(), transport_status::up);
  // a late reply finds nothing
  send_reply(gen(), "c1");
}

TEST_F(transport_actor_test, own_timeout_grace_delays_the_sweep) {
  drv->caps.own_timeout_grace = 250ms;
  spawn();
  bring_up();
  auto box = call("c1", 1s);
  advance(1s);
  EXPECT_FALSE(box->done); // the driver's own timeout answers first
  advance(250ms);
  ASSERT_TRUE(box->done);
  EXPECT_EQ(class_of_box(box), error_class::timeout);
}

TEST_F(transport_actor_test, reset_on_timeout_replaces_the_connection) {
  drv->caps.reset_on_timeout = true;
  spawn();
  bring_up();
  auto old = gen();
  auto late = call("c1", 1s);
  auto other = call("c2", 5s);
  advance(1s);
  ASSERT_TRUE(late->done);
  EXPECT_EQ(class_of_box(late), error_class::timeout);
  // Lazy Pirate: a new connection while the link stays up; the other call
  // on the old one fails with network (to be re-sent)
  ASSERT_TRUE(other->done);
  EXPECT_EQ(class_of_box(other), error_class::network);
  EXPECT_NE(gen(), old);
  EXPECT_EQ(log->last(), transport_status::up);
}

TEST_F(transport_actor_test, down_fails_every_call_in_flight_with_network) {
  spawn();
  bring_up();
  auto a = call("a");
  auto b = call("b");
  drv->ev.on_link_lost(tp::link_lost{gen(), "closed by peer (1001)"});
  run();
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(b->done);
  EXPECT_EQ(class_of_box(a), error_class::network);
  EXPECT_EQ(class_of_box(b), error_class::network);
  EXPECT_EQ(log->last(), transport_status::down);
  EXPECT_EQ(log->last_reason(), "closed by peer (1001)");
  EXPECT_EQ(drv->calls.back(), "close");
  // down is reported once
  drv->ev.on_security_failure(tp::security_failure{gen(), "again"});
  run();
  EXPECT_EQ(log->states.size(), 3u); // connecting, up, down
}

TEST_F(transport_actor_test, send_failed_with_link_down_takes_the_link_down) {
  spawn();
  bring_up();
  auto a = call("a");
  auto b = call("b");
  tp::send_failed f;
  f.gen = gen();
  f.key = 1;
  f.kind = tp::call_failure::network;
  f.reason = "request failed: refused";
  f.link_down = true;
  drv->ev.on_send_failed(std::move(f));
  run();
  ASSERT_TRUE(a->done);
  EXPECT_EQ(class_of_box(a), error_class::network);
  ASSERT_TRUE(b->done);
  EXPECT_EQ(log->last(), transport_status::down);
}

TEST_F(transport_actor_test, local_answers_of_the_driver_need_no_gateway) {
  spawn();
  bring_up();
  drv->next_send = tp::send_result::answer(400, R"({"success":false})");
  auto a = call("a");
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(a->res);
  EXPECT_EQ(a->res->status, 400);
  EXPECT_EQ(a->res->id, "a");
  drv->next_send = tp::send_result::fail(tp::call_failure::unknown, "too big");
  auto b = call("b");
  ASSERT_TRUE(b->done);
  EXPECT_EQ(class_of_box(b), error_class::unknown);
}

TEST_F(transport_actor_test, connect_deadline_is_on_the_actor_clock) {
  spawn();
  caf::anon_send(t, connect_atom_v);
  run();
  advance(999ms);
  EXPECT_EQ(log->last(), transport_status::connecting);
  advance(1ms);
  EXPECT_EQ(log->last(), transport_status::down);
  EXPECT_EQ(log->last_reason(), "fake connect timed out");
}

TEST_F(transport_actor_test, heartbeat_pings_and_a_silent_peer_is_down) {
  drv->caps.heartbeat = true;
  transport_host_config hc;
  hc.timing.ping_interval = 1s;
  hc.timing.dead_peer_timeout = 3s;
  spawn(hc);
  bring_up();
  advance(1s);
  EXPECT_EQ(drv->count("ping"), 1u);
  drv->ev.on_pong(tp::pong{gen()}); // alive: the silence starts again
  run();
  advance(2s);
  EXPECT_EQ(log->last(), transport_status::up);
  advance(1s);
  EXPECT_EQ(log->last(), transport_status::down);
  EXPECT_EQ(log->last_reason(), "fake peer silent");
}

TEST_F(transport_actor_test, max_ping_interval_of_the_driver_caps_the_config) {
  drv->caps.heartbeat = true;
  drv->caps.max_ping_interval = 1s; // the server closes without a ping
  transport_host_config hc;
  hc.timing.ping_interval = 10s;
  hc.timing.dead_peer_timeout = 30s;
  spawn(hc);
  bring_up();
  for (int i = 0; i < 3; ++i) {
    advance(1s);
    drv->ev.on_pong(tp::pong{gen()});
    run();
  }
  EXPECT_EQ(drv->count("ping"), 3u);
  EXPECT_EQ(log->last(), transport_status::up);
}

TEST_F(transport_actor_test, token_per_connection_asks_for_a_fresh_token_once) {
  drv->caps.token_per_connection = true;
  spawn();
  caf::anon_send(t, token_atom_v, std::string{"spent"});
  bring_up();
  ASSERT_EQ(drv->count("subscribe"), 1u);
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, false, false});
  run();
  ASSERT_EQ(log->events.size(), 1u);
  EXPECT_EQ(log->events[0].topic, "link.token_refused");
  EXPECT_EQ(log->events[0].seq, 0u);
  // the fresh token subscribes again; refused again on the same
  // connection: no second ask (no refresh loop)
  caf::anon_send(t, token_atom_v, std::string{"fresh"});
  run();
  EXPECT_EQ(drv->count("subscribe"), 2u);
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, false, false});
  run();
  EXPECT_EQ(log->events.size(), 1u);
  // a new connection may ask again
  drv->ev.on_link_lost(tp::link_lost{gen(), "gone"});
  run();
  bring_up();
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, false, false});
  run();
  EXPECT_EQ(log->events.size(), 2u);
}

TEST_F(transport_actor_test, token_per_connection_refusal_after_acceptance) {
  // the aico WS driver accepts at once (its events come from the call path)
  // and reports the backend's refusal of the auth frame later
  drv->caps.token_per_connection = true;
  spawn();
  caf::anon_send(t, token_atom_v, std::string{"spent"});
  bring_up();
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, false});
  run();
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, false, false});
  run();
  ASSERT_EQ(log->events.size(), 1u);
  EXPECT_EQ(log->events[0].topic, "link.token_refused");
  // the subscription stays open: events still flow
  send_event(gen(), 0);
  EXPECT_EQ(log->events.size(), 2u);
}

TEST_F(transport_actor_test, without_token_per_connection_a_refusal_asks_nothing) {
  spawn();
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  bring_up();
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, false, false});
  run();
  EXPECT_TRUE(log->events.empty());
}

TEST_F(transport_actor_test, without_heartbeat_capability_no_ping) {
  transport_host_config hc;
  hc.timing.ping_interval = 1s;
  hc.timing.dead_peer_timeout = 3s;
  spawn(hc);
  bring_up();
  advance(10s);
  EXPECT_EQ(drv->count("ping"), 0u);
  EXPECT_EQ(log->last(), transport_status::up);
}

TEST_F(transport_actor_test, peer_lost_fails_calls_and_waits_the_grace) {
  drv->caps.reconnects_itself = true;
  transport_host_config hc;
  hc.reconnect_grace = 500ms;
  spawn(hc);
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  bring_up();
  ASSERT_EQ(drv->count("subscribe"), 1u);
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, false});
  run();
  auto a = call("a");
  drv->ev.on_peer_lost(tp::peer_lost{gen()});
  run();
  ASSERT_TRUE(a->done);
  EXPECT_EQ(class_of_box(a), error_class::network);
  EXPECT_EQ(log->last(), transport_status::up);
  // back within the grace: subscribed again, still up
  advance(400ms);
  drv->ev.on_peer_back(tp::peer_back{gen()});
  run();
  EXPECT_EQ(drv->count("subscribe"), 2u);
  advance(1s);
  EXPECT_EQ(log->last(), transport_status::up);
  // lost again and not back in time: down
  drv->ev.on_peer_lost(tp::peer_lost{gen()});
  run();
  advance(500ms);
  EXPECT_EQ(log->last(), transport_status::down);
  EXPECT_EQ(log->last_reason(), "fake not back in time");
}

TEST_F(transport_actor_test, resume_point_and_replay_marker) {
  spawn();
  caf::anon_send(t, resume_atom_v, uint64_t{5}, false);
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  bring_up();
  ASSERT_EQ(drv->count("subscribe"), 1u);
  EXPECT_EQ(drv->last_since, 5u);
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, true});
  run();
  // the marker goes first, then the replayed events
  ASSERT_EQ(log->events.size(), 1u);
  EXPECT_EQ(log->events[0].topic, "events.replay");
  EXPECT_NE(log->events[0].data.find("\"since\":5"), std::string::npos)
    << log->events[0].data;
  EXPECT_NE(log->events[0].data.find("\"complete\":true"), std::string::npos)
    << log->events[0].data;
  send_event(gen(), 6);
  send_event(gen(), 7);
  ASSERT_EQ(log->events.size(), 3u);
  EXPECT_EQ(log->events[2].seq, 7u);
  EXPECT_EQ(log->events[2].via, transport_mode::ws);
  // a new connection resumes after what this transport forwarded
  drv->ev.on_link_lost(tp::link_lost{gen(), "gone"});
  run();
  bring_up();
  EXPECT_EQ(drv->last_since, 7u);
  // resume now: resubscribes from exactly that seq
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, false});
  run();
  caf::anon_send(t, resume_atom_v, uint64_t{6}, true);
  run();
  EXPECT_EQ(drv->last_since, 6u);
  EXPECT_EQ(drv->count("subscribe"), 3u);
}

TEST_F(transport_actor_test, same_token_does_not_subscribe_twice_empty_ends) {
  spawn();
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  bring_up();
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  run();
  EXPECT_EQ(drv->count("subscribe"), 1u);
  caf::anon_send(t, token_atom_v, std::string{"other"});
  run();
  EXPECT_EQ(drv->count("subscribe"), 2u);
  caf::anon_send(t, token_atom_v, std::string{});
  run();
  EXPECT_EQ(drv->count("unsubscribe"), 1u);
  // no token: no events
  send_event(gen(), 1);
  EXPECT_TRUE(log->events.empty());
}

TEST_F(transport_actor_test, subscribes_on_open_holds_live_events_until_resumed) {
  drv->caps.subscribes_on_open = true;
  spawn();
  caf::anon_send(t, resume_atom_v, uint64_t{5}, false);
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  caf::anon_send(t, connect_atom_v);
  run();
  EXPECT_EQ(drv->calls.back(), "open " + std::to_string(gen()) + " tok");
  drv->ev.on_link_up(tp::link_up{gen()});
  run();
  ASSERT_EQ(drv->count("subscribe"), 1u); // the resume
  send_event(gen(), 9); // live, before the resume is answered: dropped
  EXPECT_TRUE(log->events.empty());
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, true});
  run();
  send_event(gen(), 6);
  ASSERT_EQ(log->events.size(), 2u);
  EXPECT_EQ(log->events[0].topic, "events.replay");
  EXPECT_EQ(log->events[1].seq, 6u);
}

TEST_F(transport_actor_test, separate_stream_reopens_then_gives_up) {
  drv->caps.separate_event_stream = true;
  spawn();
  caf::anon_send(t, token_atom_v, std::string{"tok"});
  bring_up();
  ASSERT_EQ(drv->count("subscribe"), 1u);
  auto lose = [&] {
    tp::subscription_lost l;
    l.gen = gen();
    l.sub = drv->last_sub;
    l.was_open = true;
    l.kind = 0;
    l.status = 500;
    drv->ev.on_subscription_lost(std::move(l));
    run();
  };
  drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, false});
  run();
  // an event of another (older) stream is not forwarded
  send_event(gen(), 1, drv->last_sub + 100);
  EXPECT_TRUE(log->events.empty());
  for (int i = 1; i <= 4; ++i) {
    lose();
    advance(500ms * i - 1ms);
    EXPECT_EQ(drv->count("subscribe"), static_cast<std::size_t>(i));
    advance(1ms);
    EXPECT_EQ(drv->count("subscribe"), static_cast<std::size_t>(i + 1));
    // the reopened stream is accepted (and ends again at once)
    drv->ev.on_subscribed(tp::subscribed{gen(), drv->last_sub, true, false});
    run();
  }
  lose();
  EXPECT_EQ(log->last(), transport_status::down);
  EXPECT_NE(log->last_reason().find("event stream keeps failing: status 500"),
            std::string::npos)
    << log->last_reason();
}

TEST_F(transport_actor_test, disconnect_and_exit_fail_what_is_in_flight) {
  spawn();
  bring_up();
  auto a = call("a");
  caf::anon_send(t, disconnect_atom_v);
  run();
  ASSERT_TRUE(a->done);
  EXPECT_EQ(class_of_box(a), error_class::network);
  EXPECT_EQ(log->last(), transport_status::idle);
  bring_up();
  auto b = call("b");
  caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
  run();
  ASSERT_TRUE(b->done);
  EXPECT_EQ(class_of_box(b), error_class::network);
  t = nullptr;
  EXPECT_TRUE(drv->stopped); // the state's destructor stopped the driver
}
