// The timer thread's queue (src/core/timer_queue.hpp): when a wake-up is
// needed, what is due, in order.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "src/core/timer_queue.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

using tp = std::chrono::steady_clock::time_point;
using queue = timer_queue<std::string, tp>;

TEST(timer_queue, only_an_earlier_timer_asks_for_a_wake_up) {
  queue q;
  tp t{1000s};
  EXPECT_TRUE(q.add(t + 30s, "ping a")); // nothing planned yet
  EXPECT_FALSE(q.add(t + 30s, "ping b")); // the same instant: planned
  EXPECT_FALSE(q.add(t + 31s, "health")); // later: the thread wakes first
  EXPECT_TRUE(q.add(t + 5s, "deadline")); // earlier: wake it to re-plan
  EXPECT_EQ(*q.planned(), t + 5s);
  EXPECT_EQ(q.size(), 4u);
}

TEST(timer_queue, take_due_returns_what_is_due_in_order_and_replans) {
  queue q;
  tp t{1000s};
  q.add(t + 2s, "b");
  q.add(t + 1s, "a");
  q.add(t + 2s, "c");
  q.add(t + 9s, "d");
  EXPECT_TRUE(q.take_due(t).empty());
  auto due = q.take_due(t + 2s);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0], "a");
  EXPECT_EQ(due[1], "b"); // same instant: in the order added
  EXPECT_EQ(due[2], "c");
  EXPECT_EQ(*q.planned(), t + 9s);
  EXPECT_FALSE(q.add(t + 9s, "e"));
  EXPECT_TRUE(q.add(t + 8s, "f"));
  due = q.take_due(t + 60s);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_FALSE(q.planned()); // empty: sleeps until the next add wakes it
  EXPECT_TRUE(q.add(t + 70s, "g"));
}

TEST(timer_queue, clear_drops_everything) {
  queue q;
  q.add(tp{1s}, "x");
  q.clear();
  EXPECT_EQ(q.size(), 0u);
  EXPECT_FALSE(q.next());
  EXPECT_TRUE(q.add(tp{2s}, "y"));
}

} // namespace
