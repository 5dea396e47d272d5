// call_router in virtual time (no actors, no transports).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "src/core/call_router.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

using router = call_router<std::string>;
using dk = call_routing::dispatch_kind;
using rk = call_routing::reply_kind;
using ek = call_routing::error_kind;

struct call_router_test : ::testing::Test {
  router::time_point t{std::chrono::seconds(1000)};
  router r;

  uint64_t next = 1;

  uint64_t add(std::string id, bool auth = false,
               router::duration timeout = 5s) {
    api_call c;
    c.id = std::move(id);
    c.method = "GET";
    c.path = "/health";
    auto key = next++;
    EXPECT_TRUE(r.admit(key, c, auth, "promise-" + c.id, t, timeout));
    return key;
  }
};

} // namespace

TEST_F(call_router_test, the_deadline_is_set_once_and_carried_in_the_call) {
  auto k = add("a", false, 5s);
  auto* c = r.find(k);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->call.deadline, t + 5s);
  // a call that comes with its own deadline keeps it
  api_call x;
  x.id = "x";
  x.deadline = t + 1s;
  ASSERT_TRUE(r.admit(99, x, false, "px", t, 30s));
  EXPECT_EQ(r.find(99)->call.deadline, t + 1s);
  EXPECT_EQ(*r.arm(t), 1s); // one timer, for the earliest
  EXPECT_FALSE(r.admit(99, x, false, "again", t, 1s)); // key in use
  // ... but never a later one than the timeout allows
  x.deadline = t + 1h;
  ASSERT_TRUE(r.admit(100, x, false, "py", t, 2s));
  EXPECT_EQ(r.find(100)->call.deadline, t + 2s);
}

TEST_F(call_router_test, sends_on_the_active_slot_with_the_time_left) {
  auto k = add("a");
  t += 2s;
  auto s = r.dispatch(k, 1, t);
  EXPECT_EQ(s.kind, dk::send);
  EXPECT_EQ(s.slot, 1u);
  EXPECT_EQ(s.attempt, 1);
  EXPECT_EQ(s.left, 3s); // the same deadline, less the time spent
  EXPECT_EQ(r.find(k)->in_flight, 1u);
}

TEST_F(call_router_test, waits_for_a_link_once_and_in_order) {
  auto a = add("a");
  auto b = add("b");
  EXPECT_EQ(r.dispatch(b, std::nullopt, t).kind, dk::wait);
  EXPECT_EQ(r.dispatch(a, std::nullopt, t).kind, dk::wait);
  EXPECT_EQ(r.dispatch(b, std::nullopt, t).kind, dk::wait); // queued once
  EXPECT_TRUE(r.has_waiting());
  auto w = r.take_waiting();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0], b);
  EXPECT_EQ(w[1], a);
  EXPECT_FALSE(r.has_waiting());
  EXPECT_EQ(r.find(a)->attempts, 0); // waiting is no attempt
}

TEST_F(call_router_test, no_time_left_is_expired_not_sent) {
  auto k = add("a", false, 1s);
  t += 1s;
  EXPECT_EQ(r.dispatch(k, 0, t).kind, dk::expired);
  EXPECT_EQ(r.find(k)->attempts, 0);
  EXPECT_EQ(r.dispatch(12345, 0, t).kind, dk::gone);
}

TEST_F(call_router_test, a_late_answer_to_an_earlier_send_is_ignored) {
  auto k = add("a");
  auto s1 = r.dispatch(k, 0, t);
  auto s2 = r.dispatch(k, 1, t); // re-sent after a failover
  EXPECT_EQ(s2.attempt, 2);
  EXPECT_FALSE(r.answered(k, s1.attempt));
  EXPECT_EQ(r.find(k)->in_flight, 1u);
  EXPECT_TRUE(r.answered(k, s2.attempt));
  EXPECT_FALSE(r.find(k)->in_flight);
}

TEST_F(call_router_test, refreshes_once_on_401_of_an_authenticated_call) {
  auto k = add("a", true);
  auto s = r.dispatch(k, 0, t);
  ASSERT_TRUE(r.answered(k, s.attempt));
  EXPECT_EQ(r.after_reply(k, 401, true), rk::refresh);
  s = r.dispatch(k, 0, t);
  ASSERT_TRUE(r.answered(k, s.attempt));
  EXPECT_EQ(r.after_reply(k, 401, true), rk::deliver); // once only
}

TEST_F(call_router_test, no_refresh_without_auth_or_token_manager) {
  auto k = add("a", false);
  r.dispatch(k, 0, t);
  EXPECT_EQ(r.after_reply(k, 401, true), rk::deliver);
  auto j = add("b", true);
  r.dispatch(j, 0, t);
  EXPECT_EQ(r.after_reply(j, 401, false), rk::deliver);
  EXPECT_EQ(r.after_reply(j, 200, true), rk::deliver);
}

TEST_F(call_router_test, network_errors_retry_while_time_and_attempts_last) {
  call_router<std::string> few{2};
  api_call c;
  c.id = "a";
  ASSERT_TRUE(few.admit(1, c, false, "p", t, 5s));
  auto s = few.dispatch(1, 0, t);
  ASSERT_TRUE(few.answered(1, s.attempt));
  EXPECT_EQ(few.after_error(1, error_class::network, t), ek::retry);
  s = few.dispatch(1, 1, t);
  ASSERT_TRUE(few.answered(1, s.attempt));
  EXPECT_EQ(few.after_error(1, error_class::network, t), ek::fail); // 2 sent
  // other errors fail at once
  auto k = add("b");
  r.dispatch(k, 0, t);
  EXPECT_EQ(r.after_error(k, error_class::timeout, t), ek::fail);
  EXPECT_EQ(r.after_error(k, error_class::server_error, t), ek::fail);
  // no time left: fail
  auto j = add("c", false, 1s);
  r.dispatch(j, 0, t);
  t += 1s;
  EXPECT_EQ(r.after_error(j, error_class::network, t), ek::fail);
  EXPECT_EQ(r.after_error(777, error_class::network, t), ek::gone);
}

TEST_F(call_router_test, sends_left_behind_by_a_stopped_transport) {
  auto a = add("a");
  auto b = add("b");
  auto c = add("c");
  r.dispatch(b, 1, t);
  r.dispatch(a, 1, t);
  r.dispatch(c, 0, t);
  auto o = r.in_flight_on(1);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].first, a); // by key
  EXPECT_EQ(o[0].second, 1);
  EXPECT_EQ(o[1].first, b);
  r.answered(a, 1);
  EXPECT_EQ(r.in_flight_on(1).size(), 1u);
}

TEST_F(call_router_test, deadlines_expire_earliest_first_and_leave_the_queue) {
  auto a = add("a", false, 3s);
  auto b = add("b", false, 1s);
  auto c = add("c", false, 9s);
  r.dispatch(a, std::nullopt, t);
  r.dispatch(b, std::nullopt, t);
  r.dispatch(c, std::nullopt, t);
  auto d = r.arm(t);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 1s);
  t += 5s;
  auto due = r.expire(t);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].payload.payload, "promise-b");
  EXPECT_EQ(due[1].payload.payload, "promise-a");
  auto w = r.take_waiting();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], c);
  EXPECT_EQ(*r.arm(t), 4s);
}

TEST_F(call_router_test, finish_answers_once_and_leaves_the_queue) {
  auto a = add("a");
  r.dispatch(a, std::nullopt, t);
  auto e = r.finish(a);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload.payload, "promise-a");
  EXPECT_FALSE(r.finish(a));
  EXPECT_FALSE(r.has_waiting());
  EXPECT_EQ(r.size(), 0u);
}
