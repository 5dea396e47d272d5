// pending_requests and single_timer with a manual clock.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "src/core/pending_requests.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

struct manual_clock {
  using time_point = std::chrono::steady_clock::time_point;
  time_point t{std::chrono::seconds(1000)};
  time_point now() const {
    return t;
  }
  void advance(std::chrono::nanoseconds d) {
    t += d;
  }
};

/// A move-only payload, like a callback or a promise wrapper.
using payload = std::unique_ptr<std::string>;

payload p(const char* s) {
  return std::make_unique<std::string>(s);
}

struct pending_requests_test : ::testing::Test {
  manual_clock clock;
  pending_requests<payload> table;
};

} // namespace

TEST_F(pending_requests_test, starts_empty) {
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(table.size(), 0u);
  EXPECT_FALSE(table.earliest_deadline());
  EXPECT_TRUE(table.expire(clock.now()).empty());
  EXPECT_TRUE(table.take_all().empty());
}

TEST_F(pending_requests_test, lookup_by_key_and_wire_id) {
  ASSERT_TRUE(table.insert(1, clock.now() + 5s, p("a"), "w-a", 7));
  ASSERT_TRUE(table.insert(2, clock.now() + 3s, p("b"), "w-b"));
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.contains(1));
  EXPECT_TRUE(table.contains_wire_id("w-b"));
  EXPECT_FALSE(table.contains_wire_id("w-c"));
  auto* e = table.find(1);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(*e->payload, "a");
  EXPECT_EQ(e->generation, 7u);
  EXPECT_EQ(e->deadline, clock.now() + 5s);
  auto* w = table.find_by_wire_id("w-b");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->key, 2u);
  EXPECT_EQ(table.find(3), nullptr);
  EXPECT_EQ(table.find_by_wire_id("nope"), nullptr);
  // the payload may be changed in place
  *e->payload = "a2";
  EXPECT_EQ(*table.find(1)->payload, "a2");
}

TEST_F(pending_requests_test, duplicate_key_or_wire_id_is_refused) {
  ASSERT_TRUE(table.insert(1, clock.now() + 1s, p("a"), "w"));
  EXPECT_FALSE(table.insert(1, clock.now() + 1s, p("b"), "other"));
  EXPECT_FALSE(table.insert(2, clock.now() + 1s, p("c"), "w"));
  // entries without a wire id are not indexed by it
  EXPECT_TRUE(table.insert(3, clock.now() + 1s, p("d")));
  EXPECT_TRUE(table.insert(4, clock.now() + 1s, p("e")));
  EXPECT_FALSE(table.contains_wire_id(""));
  EXPECT_EQ(table.size(), 3u);
}

TEST_F(pending_requests_test, take_and_erase_remove_every_index) {
  ASSERT_TRUE(table.insert(1, clock.now() + 1s, p("a"), "w-a"));
  ASSERT_TRUE(table.insert(2, clock.now() + 2s, p("b"), "w-b"));
  auto a = table.take_by_wire_id("w-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->key, 1u);
  EXPECT_EQ(*a->payload, "a");
  EXPECT_FALSE(table.contains(1));
  EXPECT_FALSE(table.contains_wire_id("w-a"));
  EXPECT_EQ(table.earliest_deadline(), clock.now() + 2s);
  EXPECT_FALSE(table.take(1));
  EXPECT_FALSE(table.take_by_wire_id("w-a"));
  // the wire id is free again
  EXPECT_TRUE(table.insert(3, clock.now() + 3s, p("c"), "w-a"));
  EXPECT_TRUE(table.erase(2));
  EXPECT_FALSE(table.erase(2));
  EXPECT_FALSE(table.contains_wire_id("w-b"));
  EXPECT_EQ(table.earliest_deadline(), clock.now() + 3s);
  auto c = table.take(3);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->wire_id, "w-a");
  EXPECT_TRUE(table.empty());
  EXPECT_FALSE(table.earliest_deadline());
}

TEST_F(pending_requests_test, expire_takes_what_is_due_earliest_first) {
  auto t0 = clock.now();
  ASSERT_TRUE(table.insert(1, t0 + 3s, p("a"), "w-a"));
  ASSERT_TRUE(table.insert(2, t0 + 1s, p("b"), "w-b"));
  ASSERT_TRUE(table.insert(3, t0 + 2s, p("c")));
  ASSERT_TRUE(table.insert(4, t0 + 1s, p("d"))); // same deadline as 2
  EXPECT_EQ(table.earliest_deadline(), t0 + 1s);
  clock.advance(999ms);
  EXPECT_TRUE(table.expire(clock.now()).empty());
  clock.advance(1ms); // exactly at the deadline: due
  auto due = table.expire(clock.now());
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].key, 2u);
  EXPECT_EQ(*due[0].payload, "b");
  EXPECT_EQ(due[1].key, 4u);
  EXPECT_FALSE(table.contains_wire_id("w-b"));
  EXPECT_EQ(table.earliest_deadline(), t0 + 2s);
  clock.advance(5s);
  due = table.expire(clock.now());
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].key, 3u);
  EXPECT_EQ(due[1].key, 1u);
  EXPECT_EQ(due[1].wire_id, "w-a");
  EXPECT_TRUE(table.empty());
  EXPECT_FALSE(table.contains_wire_id("w-a"));
}

TEST_F(pending_requests_test, take_all_empties_the_table_in_key_order) {
  for (uint64_t k : {5u, 1u, 3u})
    ASSERT_TRUE(table.insert(k, clock.now() + std::chrono::seconds(10 - k),
                             p("x"), "w" + std::to_string(k)));
  auto all = table.take_all();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].key, 1u);
  EXPECT_EQ(all[1].key, 3u);
  EXPECT_EQ(all[2].key, 5u);
  EXPECT_TRUE(table.empty());
  EXPECT_FALSE(table.earliest_deadline());
  EXPECT_FALSE(table.contains_wire_id("w1"));
  EXPECT_TRUE(table.expire(clock.now() + 1h).empty());
  // usable again
  EXPECT_TRUE(table.insert(1, clock.now() + 1s, p("y"), "w1"));
}

TEST_F(pending_requests_test, for_each_sees_every_entry) {
  ASSERT_TRUE(table.insert(1, clock.now() + 1s, p("a"), "", 1));
  ASSERT_TRUE(table.insert(2, clock.now() + 1s, p("b"), "", 2));
  uint64_t sum = 0;
  table.for_each([&](auto& e) { sum += e.generation; });
  EXPECT_EQ(sum, 3u);
}

// -- single_timer ------------------------------------------------------------------

TEST(single_timer, arms_only_when_the_earliest_deadline_moves_earlier) {
  manual_clock clock;
  single_timer<> timer;
  auto t0 = clock.now();
  EXPECT_FALSE(timer.scheduled_for());
  auto d = timer.arm(t0 + 5s, clock.now());
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 5s);
  EXPECT_EQ(timer.scheduled_for(), t0 + 5s);
  // later or equal deadlines: the pending timer covers them
  EXPECT_FALSE(timer.arm(t0 + 5s, clock.now()));
  EXPECT_FALSE(timer.arm(t0 + 9s, clock.now()));
  // an earlier one re-arms
  clock.advance(1s);
  d = timer.arm(t0 + 3s, clock.now());
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 2s);
  EXPECT_EQ(timer.scheduled_for(), t0 + 3s);
  // nothing to do without a deadline
  EXPECT_FALSE(timer.arm(std::optional<manual_clock::time_point>{},
                         clock.now()));
}

TEST(single_timer, fired_forgets_the_timer_only_when_its_time_has_come) {
  manual_clock clock;
  single_timer<> timer;
  auto t0 = clock.now();
  ASSERT_TRUE(timer.arm(t0 + 5s, clock.now()));
  ASSERT_TRUE(timer.arm(t0 + 2s, clock.now())); // overtakes the 5 s timer
  clock.advance(2s);
  timer.fired(clock.now()); // the 2 s timer
  EXPECT_FALSE(timer.scheduled_for());
  // re-armed for the next deadline (7 s): the old 5 s timer, still on its
  // way, is not known any more and simply fires early
  ASSERT_TRUE(timer.arm(t0 + 7s, clock.now()));
  EXPECT_EQ(timer.scheduled_for(), t0 + 7s);
  clock.advance(3s);
  timer.fired(clock.now()); // the old 5 s timer: the 7 s one stays
  EXPECT_EQ(timer.scheduled_for(), t0 + 7s);
  EXPECT_FALSE(timer.arm(t0 + 7s, clock.now()));
  clock.advance(2s);
  timer.fired(clock.now());
  EXPECT_FALSE(timer.scheduled_for());
}

TEST(single_timer, delays_are_clamped_and_the_real_fire_time_is_kept) {
  manual_clock clock;
  single_timer<> timer{1ms, 1h};
  auto t0 = clock.now();
  // overdue or due now: still a (short) timer
  auto d = timer.arm(t0 - 1s, clock.now());
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 1ms);
  EXPECT_EQ(timer.scheduled_for(), t0 + 1ms);
  clock.advance(1ms);
  timer.fired(clock.now());
  // too far away: the timer fires after max_delay and is re-armed then
  d = timer.arm(t0 + 5h, clock.now());
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 1h);
  EXPECT_EQ(timer.scheduled_for(), clock.now() + 1h);
  clock.advance(1h);
  timer.fired(clock.now());
  EXPECT_FALSE(timer.scheduled_for());
  d = timer.arm(t0 + 5h, clock.now());
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 1h);
}
