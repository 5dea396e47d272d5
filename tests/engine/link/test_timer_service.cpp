// The process-wide timer thread (actors/timer_service.hpp) with a real
// actor system: messages arrive, never early, from one thread, and a timer
// does not keep its receiver alive. Bounded waits only (no sleeps).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "caf/all.hpp"

#include "actors/timer_service.hpp"

using namespace std::chrono_literals;

namespace {

using clk = std::chrono::steady_clock;

struct log_t {
  std::mutex mx;
  std::condition_variable cv;
  std::vector<std::pair<int, clk::time_point>> got;

  void add(int n) {
    {
      std::lock_guard<std::mutex> g{mx};
      got.emplace_back(n, clk::now());
    }
    cv.notify_all();
  }

  bool wait_for_count(std::size_t n, std::chrono::milliseconds bound) {
    std::unique_lock<std::mutex> lk{mx};
    return cv.wait_for(lk, bound, [&] { return got.size() >= n; });
  }
};

/// An actor that arms `n` timers at `at` (each a number) when told to and
/// logs them as they arrive.
caf::behavior timer_user(caf::event_based_actor* self, log_t* log) {
  return {
    [=](caf::atom_value, clk::time_point at, int n) {
      for (int i = 0; i < n; ++i)
        aico::schedule_at(self, at, i);
    },
    [=](int i) { log->add(i); },
  };
}

TEST(timer_service, timers_arrive_at_their_time_and_never_early) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  EXPECT_FALSE(aico::on_virtual_clock(sys));
  log_t log;
  auto a = sys.spawn(timer_user, &log);
  auto at = clk::now() + 150ms;
  caf::anon_send(a, caf::atom("arm"), at, 100);
  ASSERT_TRUE(log.wait_for_count(100, 10s));
  std::set<int> seen;
  for (auto& [n, when] : log.got) {
    EXPECT_GE(when, at) << n;
    seen.insert(n);
  }
  EXPECT_EQ(seen.size(), 100u);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST(timer_service, an_earlier_timer_is_not_held_up_by_a_later_one) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  log_t log;
  auto a = sys.spawn(timer_user, &log);
  auto t0 = clk::now();
  caf::anon_send(a, caf::atom("arm"), t0 + 60s, 1); // far away
  caf::anon_send(a, caf::atom("arm"), t0 + 50ms, 1);
  ASSERT_TRUE(log.wait_for_count(1, 10s));
  EXPECT_LT(log.got[0].second - t0, 30s);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST(timer_service, a_timer_does_not_keep_its_receiver_alive) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  log_t log;
  caf::actor_addr addr;
  {
    auto a = sys.spawn(timer_user, &log);
    addr = a.address();
    caf::anon_send(a, caf::atom("arm"), clk::now() + 200ms, 1);
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
  // the actor is gone once nothing holds it (the timer holds it weakly)
  auto deadline = clk::now() + 10s;
  while (caf::actor_cast<caf::strong_actor_ptr>(addr) && clk::now() < deadline)
    std::this_thread::yield();
  EXPECT_FALSE(caf::actor_cast<caf::strong_actor_ptr>(addr));
  EXPECT_FALSE(log.wait_for_count(1, 400ms)); // dropped, nothing arrives
}

} // namespace
