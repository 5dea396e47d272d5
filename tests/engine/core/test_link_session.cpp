// link_session step by step with a manual clock (no sockets, no actors).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "src/core/link_session.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

using session = link_session<std::string>;
using step = link_session_base::connect_step;

struct link_session_test : ::testing::Test {
  session::time_point t{std::chrono::seconds(1000)};
  session::time_point now() const {
    return t;
  }

  static link_timing timing() {
    link_timing lt;
    lt.connect_timeout = 2s;
    lt.ping_interval = 3s;
    lt.dead_peer_timeout = 10s;
    lt.reconnect_grace = 500ms;
    return lt;
  }

  session s{timing()};

  /// Connects and establishes at the current time.
  void bring_up() {
    ASSERT_EQ(s.connect(t), step::start);
    ASSERT_TRUE(s.established(t));
  }
};

} // namespace

TEST_F(link_session_test, starts_idle_without_timer) {
  EXPECT_EQ(s.status(), transport_status::idle);
  EXPECT_FALSE(s.live());
  EXPECT_EQ(s.generation(), 0u);
  EXPECT_FALSE(s.next_wakeup());
  EXPECT_FALSE(s.arm(t));
  EXPECT_FALSE(s.go_down()); // nothing live: nothing to report
}

TEST_F(link_session_test, connect_starts_once_and_arms_the_connect_deadline) {
  EXPECT_EQ(s.connect(t), step::start);
  EXPECT_EQ(s.status(), transport_status::connecting);
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_EQ(s.connect(t), step::in_progress);
  EXPECT_EQ(s.generation(), 1u);
  ASSERT_TRUE(s.next_wakeup());
  EXPECT_EQ(*s.next_wakeup(), t + 2s);
  auto d = s.arm(t);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 2s);
  EXPECT_FALSE(s.arm(t)); // the pending timer fires early enough
}

TEST_F(link_session_test, connect_timeout_is_down_at_the_deadline_not_before) {
  s.connect(t);
  t += 1999ms;
  auto r = s.on_timer(t);
  EXPECT_EQ(r.down, link_down_cause::none);
  t += 1ms;
  r = s.on_timer(t);
  EXPECT_EQ(r.down, link_down_cause::connect_timeout);
  auto failed = s.go_down();
  ASSERT_TRUE(failed);
  EXPECT_TRUE(failed->empty());
  EXPECT_EQ(s.status(), transport_status::down);
  EXPECT_EQ(s.generation(), 2u);
  EXPECT_FALSE(s.next_wakeup());
  EXPECT_FALSE(s.go_down()); // reported once only
}

TEST_F(link_session_test, established_only_while_connecting) {
  EXPECT_FALSE(s.established(t));
  EXPECT_EQ(s.status(), transport_status::idle);
  bring_up();
  EXPECT_EQ(s.status(), transport_status::up);
  EXPECT_FALSE(s.established(t)); // a second pong changes nothing
  EXPECT_EQ(s.connect(t), step::already_up);
  EXPECT_EQ(s.generation(), 1u);
}

TEST_F(link_session_test, pings_on_schedule_while_up) {
  bring_up();
  ASSERT_TRUE(s.next_wakeup());
  EXPECT_EQ(*s.next_wakeup(), t + 3s); // first ping before the dead peer
  t += 3s;
  s.received(t); // keeps the peer alive
  auto r = s.on_timer(t);
  EXPECT_TRUE(r.send_ping);
  EXPECT_EQ(r.down, link_down_cause::none);
  EXPECT_EQ(*s.next_wakeup(), t + 3s);
  // an early (stale) timer sends nothing
  t += 1s;
  EXPECT_FALSE(s.on_timer(t).send_ping);
  t += 2s;
  EXPECT_TRUE(s.on_timer(t).send_ping);
}

TEST_F(link_session_test, ping_interval_is_at_most_half_the_dead_peer_timeout) {
  link_timing lt = timing();
  lt.ping_interval = 30s;
  lt.dead_peer_timeout = 8s;
  session x{lt};
  EXPECT_EQ(x.ping_interval(), 4s);
  lt.ping_interval = 1ms;
  EXPECT_EQ(session{lt}.ping_interval(), 10ms);
  lt.ping_interval = 0s;
  EXPECT_EQ(session{lt}.ping_interval(), 0s);
}

TEST_F(link_session_test, silence_for_the_dead_peer_timeout_is_down) {
  bring_up();
  for (int i = 0; i < 3; ++i) {
    t += 3s;
    EXPECT_EQ(s.on_timer(t).down, link_down_cause::none);
  }
  // 9 s of silence: still alive; the dead-peer deadline is the next wake-up
  // after the ping at 12 s
  EXPECT_EQ(*s.next_wakeup(), t + 1s);
  t += 1s;
  auto r = s.on_timer(t);
  EXPECT_EQ(r.down, link_down_cause::dead_peer);
  EXPECT_EQ(r.silence, 10s);
}

TEST_F(link_session_test, traffic_moves_the_dead_peer_deadline) {
  link_timing lt = timing();
  lt.ping_interval = 0s; // no pings: only the dead-peer deadline
  session x{lt};
  x.connect(t);
  x.established(t);
  EXPECT_EQ(*x.next_wakeup(), t + 10s);
  t += 6s;
  x.received(t);
  EXPECT_EQ(*x.next_wakeup(), t + 10s);
  t += 4s; // the first deadline: fires early now, nothing due
  EXPECT_EQ(x.on_timer(t).down, link_down_cause::none);
  t += 6s;
  EXPECT_EQ(x.on_timer(t).down, link_down_cause::dead_peer);
}

TEST_F(link_session_test, no_checks_when_switched_off) {
  link_timing lt;
  lt.connect_timeout = 1s;
  session x{lt}; // no pings, no dead-peer check (HTTP)
  x.connect(t);
  x.established(t);
  EXPECT_FALSE(x.next_wakeup());
  t += 1h;
  auto r = x.on_timer(t);
  EXPECT_FALSE(r.send_ping);
  EXPECT_EQ(r.down, link_down_cause::none);
}

TEST_F(link_session_test, lost_peer_not_back_within_the_grace_is_down) {
  EXPECT_FALSE(s.lose_peer(t)); // only an up link can lose its peer
  bring_up();
  t += 1s;
  EXPECT_TRUE(s.lose_peer(t));
  EXPECT_TRUE(s.peer_lost());
  EXPECT_EQ(*s.next_wakeup(), t + 500ms);
  t += 100ms;
  EXPECT_TRUE(s.lose_peer(t)); // a second loss keeps the first deadline
  EXPECT_EQ(*s.next_wakeup(), t + 400ms);
  t += 400ms;
  EXPECT_EQ(s.on_timer(t).down, link_down_cause::reconnect_grace);
}

TEST_F(link_session_test, lost_peer_back_in_time_stays_up) {
  bring_up();
  s.lose_peer(t);
  t += 200ms;
  s.peer_back();
  EXPECT_FALSE(s.peer_lost());
  t += 400ms;
  EXPECT_EQ(s.on_timer(t).down, link_down_cause::none);
  EXPECT_EQ(s.status(), transport_status::up);
}

TEST_F(link_session_test, calls_only_while_up) {
  EXPECT_FALSE(s.add_call(1, t + 1s, "a"));
  s.connect(t);
  EXPECT_FALSE(s.add_call(1, t + 1s, "a"));
  s.established(t);
  EXPECT_TRUE(s.add_call(1, t + 1s, "a", "w-1"));
  EXPECT_FALSE(s.add_call(2, t + 1s, "b", "w-1")); // wire id in use
  EXPECT_TRUE(s.has_wire_id("w-1"));
  auto e = s.answer_wire_id("w-1");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload, "a");
  EXPECT_FALSE(s.answer(1)); // answered once only
}

TEST_F(link_session_test, call_deadlines_join_the_one_timer) {
  bring_up();
  ASSERT_TRUE(s.arm(t)); // the first ping
  ASSERT_TRUE(s.add_call(1, t + 1s, "a"));
  ASSERT_TRUE(s.add_call(2, t + 500ms, "b"));
  ASSERT_TRUE(s.add_call(3, t + 5s, "c"));
  EXPECT_EQ(*s.next_wakeup(), t + 500ms);
  auto d = s.arm(t);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 500ms);
  t += 1s;
  auto r = s.on_timer(t);
  ASSERT_EQ(r.expired.size(), 2u); // earliest first
  EXPECT_EQ(r.expired[0].payload, "b");
  EXPECT_EQ(r.expired[1].payload, "a");
  EXPECT_FALSE(r.send_ping);
  EXPECT_EQ(s.calls().size(), 1u);
  // the next wake-up is the ping at 3 s, before the call at 5 s
  EXPECT_EQ(*s.next_wakeup(), t + 2s);
  EXPECT_EQ(*s.arm(t), 2s);
}

TEST_F(link_session_test, down_hands_back_every_call_in_flight) {
  bring_up();
  s.add_call(2, t + 1s, "b", "w-b", 7);
  s.add_call(1, t + 2s, "a", "w-a", 7);
  auto gen = s.generation();
  auto failed = s.go_down();
  ASSERT_TRUE(failed);
  ASSERT_EQ(failed->size(), 2u);
  EXPECT_EQ((*failed)[0].payload, "a"); // key order
  EXPECT_EQ((*failed)[0].wire_id, "w-a");
  EXPECT_EQ((*failed)[0].generation, 7u);
  EXPECT_EQ((*failed)[1].payload, "b");
  EXPECT_GT(s.generation(), gen);
  EXPECT_TRUE(s.calls().empty());
  EXPECT_FALSE(s.next_wakeup());
  // a late answer finds nothing
  EXPECT_FALSE(s.answer_wire_id("w-a"));
}

TEST_F(link_session_test, stop_is_idle_from_any_status) {
  auto failed = s.stop();
  EXPECT_TRUE(failed.empty());
  EXPECT_EQ(s.status(), transport_status::idle);
  bring_up();
  s.add_call(1, t + 1s, "a");
  failed = s.stop();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(s.status(), transport_status::idle);
  EXPECT_FALSE(s.go_down()); // idle is not live
  // and connects again with a new generation
  auto gen = s.generation();
  EXPECT_EQ(s.connect(t), step::start);
  EXPECT_EQ(s.generation(), gen + 1);
}

TEST_F(link_session_test, drop_calls_keeps_the_link_up) {
  bring_up();
  s.add_call(1, t + 1s, "a");
  auto dropped = s.drop_calls();
  EXPECT_EQ(dropped.size(), 1u);
  EXPECT_EQ(s.status(), transport_status::up);
  EXPECT_TRUE(s.add_call(2, t + 1s, "b"));
}

TEST_F(link_session_test, reconnect_after_down_starts_from_a_fresh_deadline) {
  s.connect(t);
  t += 2s;
  ASSERT_EQ(s.on_timer(t).down, link_down_cause::connect_timeout);
  s.go_down();
  t += 10s;
  EXPECT_EQ(s.connect(t), step::start);
  EXPECT_EQ(*s.next_wakeup(), t + 2s);
  // a pending timer from before may be late; arm schedules one for now
  auto d = s.arm(t);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 2s);
}

/// Slack tests: a 30 s heartbeat (60 s dead peer) with timer slack on.
struct link_session_slack : ::testing::Test {
  static link_timing slack_timing() {
    link_timing lt;
    lt.ping_interval = 30s;
    lt.dead_peer_timeout = 60s;
    lt.timer_slack = true;
    return lt;
  }

  /// A session brought up at `t`.
  static void bring_up(session& s, session::time_point t) {
    ASSERT_EQ(s.connect(t), step::start);
    ASSERT_TRUE(s.established(t));
  }
};

TEST_F(link_session_slack, with_timer_slack_the_one_timer_fires_on_the_grid) {
  auto lt = slack_timing();
  session a{lt};
  session b{lt};
  session::time_point t1{std::chrono::seconds(1000) + 200ms};
  session::time_point t2{std::chrono::seconds(1000) + 900ms};
  bring_up(a, t1);
  bring_up(b, t2);
  auto da = a.arm(t1);
  auto db = b.arm(t2);
  ASSERT_TRUE(da && db);
  // both pings land on the same instant, neither early nor a grain late
  EXPECT_EQ(t1 + *da, t2 + *db);
  EXPECT_GE(t1 + *da, *a.next_wakeup());
  EXPECT_GE(t2 + *db, *b.next_wakeup());
  EXPECT_LT(t1 + *da - *a.next_wakeup(), session::duration{1024ms});
  // the ping is sent when that timer fires
  auto r = a.on_timer(t1 + *da);
  EXPECT_TRUE(r.send_ping);
}

TEST_F(link_session_slack, call_deadlines_slip_by_at_most_a_sixty_fourth) {
  auto lt = slack_timing();
  session s{lt};
  session::time_point t{std::chrono::seconds(1000) + 300us};
  bring_up(s, t);
  ASSERT_TRUE(s.add_call(1, t + 5s, "a"));
  auto d = s.arm(t);
  ASSERT_TRUE(d);
  EXPECT_GE(*d, session::duration{5s});
  EXPECT_LE(*d - session::duration{5s}, session::duration{5s} / 64);
  // on the 64 ms grid (5 s / 64 = 78 ms of slack)
  EXPECT_EQ((t + *d).time_since_epoch() % std::chrono::milliseconds(64),
            session::duration{0});
  // while connecting nothing slips: the connect deadline is exact
  session c{lt};
  ASSERT_EQ(c.connect(t), step::start);
  EXPECT_EQ(*c.arm(t), session::duration{5s}); // link_timing's default
}

TEST_F(link_session_slack, an_overdue_heartbeat_armed_again_keeps_its_instant) {
  auto lt = slack_timing();
  session s{lt};
  session::time_point t{std::chrono::seconds(1000) + 200ms};
  bring_up(s, t);
  auto d = s.arm(t);
  ASSERT_TRUE(d);
  auto fire_at = t + *d;
  auto due = *s.next_wakeup();
  ASSERT_LT(due, fire_at); // the ping slipped onto the grid
  // an event between the ping's due time and its timer (a reply, a pong)
  // arms again: the pending timer is still the right one
  EXPECT_FALSE(s.arm(due + 1ms));
  s.received(due + 2ms);
  EXPECT_FALSE(s.arm(due + 2ms));
}
