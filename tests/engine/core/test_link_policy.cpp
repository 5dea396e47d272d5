// Failover / fail-back decisions, step by step (no actors, no clock).
#include <gtest/gtest.h>

#include <algorithm>

#include "src/core/link_policy.hpp"

using namespace aico;
using namespace std::chrono_literals;
using kind = link_policy::action_kind;
using st = link_policy::slot_status;

namespace {

constexpr std::size_t ipc = 0, ws = 1, http = 2;

link_policy make(int probes = 2) {
  return link_policy{{transport_mode::ipc, transport_mode::ws,
                      transport_mode::http},
                     {100ms, 2.0, 0.0, 1000ms},
                     probes,
                     1};
}

bool has(const link_policy::actions& xs, kind k, std::size_t slot) {
  return std::any_of(xs.begin(), xs.end(), [&](auto& a) {
    return a.kind == k && a.slot == slot;
  });
}

uint64_t probe_gen(const link_policy::actions& xs, std::size_t slot) {
  for (auto& a : xs)
    if (a.kind == kind::schedule_probe && a.slot == slot)
      return a.gen;
  ADD_FAILURE() << "no probe scheduled for slot " << slot;
  return 0;
}

} // namespace

TEST(link_policy, connects_the_best_transport_first) {
  auto p = make();
  auto xs = p.start();
  ASSERT_EQ(xs.size(), 1u);
  EXPECT_TRUE(has(xs, kind::connect, ipc));
  xs = p.on_up(ipc);
  EXPECT_TRUE(has(xs, kind::activate, ipc));
  EXPECT_EQ(p.active(), ipc);
  EXPECT_EQ(p.status(ws), st::idle); // only one link is held
}

TEST(link_policy, falls_through_the_order_on_failures) {
  auto p = make();
  p.start();
  auto xs = p.on_down(ipc);
  EXPECT_TRUE(has(xs, kind::schedule_probe, ipc));
  EXPECT_TRUE(has(xs, kind::connect, ws)); // at once, no backoff
  xs = p.on_down(ws);
  EXPECT_TRUE(has(xs, kind::connect, http));
  xs = p.on_up(http);
  EXPECT_TRUE(has(xs, kind::activate, http));
  EXPECT_EQ(p.active(), http);
  EXPECT_FALSE(p.all_waiting());
}

TEST(link_policy, reports_reconnecting_when_everything_failed) {
  auto p = make();
  p.start();
  p.on_down(ipc);
  p.on_down(ws);
  EXPECT_FALSE(p.all_waiting()); // http is still being tried
  auto xs = p.on_down(http);
  EXPECT_TRUE(p.all_waiting());
  EXPECT_FALSE(p.active());
  EXPECT_TRUE(has(xs, kind::schedule_probe, http));
  EXPECT_FALSE(has(xs, kind::connect, ipc)); // no hot loop: wait for timers
}

TEST(link_policy, backoff_grows_with_repeated_failures_and_resets_on_activation) {
  auto p = make();
  p.start();
  auto xs = p.on_down(ipc);
  auto g = probe_gen(xs, ipc);
  EXPECT_EQ(p.last_delay(ipc), 100ms);
  p.on_down(ws);
  p.on_down(http);
  xs = p.on_probe_timer(ipc, g);
  EXPECT_TRUE(has(xs, kind::connect, ipc));
  xs = p.on_down(ipc);
  EXPECT_EQ(p.last_delay(ipc), 200ms);
  g = probe_gen(xs, ipc);
  p.on_probe_timer(ipc, g);
  xs = p.on_down(ipc);
  EXPECT_EQ(p.last_delay(ipc), 400ms);
  g = probe_gen(xs, ipc);
  p.on_probe_timer(ipc, g);
  xs = p.on_up(ipc);
  EXPECT_TRUE(has(xs, kind::activate, ipc));
  xs = p.on_down(ipc);
  EXPECT_EQ(p.last_delay(ipc), 100ms); // reset by the activation
}

TEST(link_policy, stale_probe_timers_are_ignored) {
  auto p = make();
  p.start();
  auto g = probe_gen(p.on_down(ipc), ipc);
  p.on_up(ws);
  EXPECT_TRUE(p.on_probe_timer(ipc, g + 7).empty());
  auto xs = p.on_probe_timer(ipc, g);
  EXPECT_TRUE(has(xs, kind::connect, ipc));
  // after stop, every timer is stale
  auto q = make();
  q.start();
  auto g2 = probe_gen(q.on_down(ipc), ipc);
  q.stop();
  EXPECT_TRUE(q.on_probe_timer(ipc, g2).empty());
}

TEST(link_policy, fails_back_only_after_the_health_probes_pass) {
  auto p = make(2);
  p.start();
  auto g = probe_gen(p.on_down(ipc), ipc);
  p.on_up(ws);
  ASSERT_EQ(p.active(), ws);
  auto xs = p.on_probe_timer(ipc, g);
  EXPECT_TRUE(has(xs, kind::connect, ipc));
  xs = p.on_up(ipc);
  EXPECT_TRUE(has(xs, kind::health_probe, ipc));
  EXPECT_EQ(p.active(), ws); // not yet
  xs = p.on_health_probe(ipc, true);
  EXPECT_TRUE(has(xs, kind::health_probe, ipc));
  EXPECT_EQ(p.active(), ws);
  xs = p.on_health_probe(ipc, true);
  EXPECT_TRUE(has(xs, kind::activate, ipc));
  EXPECT_TRUE(has(xs, kind::disconnect, ws));
  // the replaced one finishes its calls in flight first (drain)
  for (auto& x : xs) {
    if (x.kind == kind::disconnect) {
      EXPECT_TRUE(x.drain);
    }
  }
  EXPECT_EQ(p.active(), ipc);
  EXPECT_EQ(p.status(ws), st::idle);
}

TEST(link_policy, a_failed_health_probe_sends_the_candidate_back_to_backoff) {
  auto p = make(2);
  p.start();
  auto g = probe_gen(p.on_down(ipc), ipc);
  p.on_up(ws);
  p.on_probe_timer(ipc, g);
  p.on_up(ipc);
  auto xs = p.on_health_probe(ipc, false);
  EXPECT_TRUE(has(xs, kind::disconnect, ipc));
  for (auto& x : xs) {
    if (x.kind == kind::disconnect) {
      EXPECT_FALSE(x.drain); // a failed candidate closes at once
    }
  }
  EXPECT_TRUE(has(xs, kind::schedule_probe, ipc));
  EXPECT_EQ(p.last_delay(ipc), 200ms); // second failure in a row
  EXPECT_EQ(p.active(), ws);
}

TEST(link_policy, losing_the_active_link_activates_an_up_candidate_at_once) {
  auto p = make(3);
  p.start();
  auto g = probe_gen(p.on_down(ipc), ipc);
  p.on_up(ws);
  p.on_probe_timer(ipc, g);
  p.on_up(ipc); // probing
  auto xs = p.on_down(ws);
  EXPECT_TRUE(has(xs, kind::deactivate, ws));
  EXPECT_TRUE(has(xs, kind::activate, ipc));
  EXPECT_EQ(p.active(), ipc);
}

TEST(link_policy, worse_links_are_dropped_while_a_better_one_is_active) {
  auto p = make();
  p.start();
  p.on_up(ipc);
  auto xs = p.on_up(http); // late, unwanted
  EXPECT_TRUE(has(xs, kind::disconnect, http));
  EXPECT_EQ(p.active(), ipc);
}

TEST(link_policy, failover_from_ipc_goes_to_ws_then_http) {
  auto p = make();
  p.start();
  p.on_up(ipc);
  auto xs = p.on_down(ipc);
  EXPECT_TRUE(has(xs, kind::deactivate, ipc));
  EXPECT_TRUE(has(xs, kind::connect, ws));
  p.on_up(ws);
  xs = p.on_down(ws);
  EXPECT_TRUE(has(xs, kind::connect, http));
  p.on_up(http);
  EXPECT_EQ(p.active(), http);
  EXPECT_EQ(p.status(ipc), st::waiting);
  EXPECT_EQ(p.status(ws), st::waiting);
}

TEST(link_policy, stop_disconnects_everything) {
  auto p = make();
  p.start();
  p.on_up(ipc);
  auto xs = p.stop();
  EXPECT_TRUE(has(xs, kind::disconnect, ipc));
  EXPECT_TRUE(has(xs, kind::deactivate, ipc));
  EXPECT_FALSE(p.active());
  EXPECT_TRUE(p.on_up(ws).size() == 1); // late up after stop: disconnect
}

TEST(link_policy, single_transport_configuration) {
  link_policy p{{transport_mode::http}, {100ms, 2.0, 0.0, 1000ms}, 2, 1};
  auto xs = p.start();
  EXPECT_TRUE(has(xs, kind::connect, 0));
  xs = p.on_down(0);
  EXPECT_TRUE(p.all_waiting());
  auto g = probe_gen(xs, 0);
  xs = p.on_probe_timer(0, g);
  EXPECT_TRUE(has(xs, kind::connect, 0));
  p.on_up(0);
  EXPECT_EQ(p.active(), 0u);
}

TEST(link_policy, degraded_is_the_active_transports_capability) {
  auto p = make();
  EXPECT_FALSE(p.degraded()); // nothing active
  EXPECT_TRUE(p.caps(2).degraded); // http, by default
  EXPECT_FALSE(p.caps(0).degraded);
  p.start();
  p.on_down(0);
  p.on_down(1);
  p.on_up(2);
  ASSERT_EQ(p.active(), std::optional<std::size_t>{2});
  EXPECT_TRUE(p.degraded());
  // given capabilities win over the defaults: a transport registry may say
  // that http is not degraded, or that ws is
  backoff_options bo;
  transport_caps ws_caps;
  ws_caps.degraded = true;
  link_policy q{{transport_mode::ws, transport_mode::http}, bo, 1, 0,
                {ws_caps, transport_caps{}}};
  q.start();
  q.on_up(0);
  ASSERT_EQ(q.active(), std::optional<std::size_t>{0});
  EXPECT_TRUE(q.degraded());
  q.on_down(0);
  q.on_up(1);
  ASSERT_EQ(q.active(), std::optional<std::size_t>{1});
  EXPECT_FALSE(q.degraded());
}
