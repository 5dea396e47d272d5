// Integration tests: the shared libwebsockets service behind ws_loop (one
// lws_context and one service thread for every loop of the process) against
// the real aico-gateway on 127.0.0.1. Threads and fds are counted from
// /proc/self. Every wait is bounded.
#include <gtest/gtest.h>

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/transport/lws/ws_codec.hpp"
#include "src/transport/lws/ws_loop.hpp"
#include "support/gateway_process.hpp"

using namespace std::chrono_literals;
using aico::test::gateway_process;
using aico::ws_link::loop_handlers;
using aico::ws_link::loop_options;
using aico::ws_link::ws_loop;
using aico::ws_link::ws_url;
using steady = std::chrono::steady_clock;

namespace {

int thread_count() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Threads:", 0) == 0)
      return std::stoi(line.substr(8));
  return -1;
}

/// The thread count once no thread is still on its way out (a joined thread
/// may be counted for a moment after join() returned). A thread is started
/// and joined first: a sanitizer runtime (TSan) starts a helper thread of its
/// own with the process's first thread, which is not the loop's.
int settled_thread_count() {
  std::thread{[] {}}.join();
  int n = thread_count();
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    int m = thread_count();
    if (m == n)
      return n;
    n = m;
  }
  return n;
}

/// Waits (briefly) until the thread count is `expected`; returns the last
/// count seen.
int threads_become(int expected) {
  int n = thread_count();
  for (int i = 0; i < 100 && n != expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = thread_count();
  }
  return n;
}

int open_fds() {
  int n = 0;
  if (auto d = ::opendir("/proc/self/fd")) {
    while (auto e = ::readdir(d))
      if (e->d_name[0] != '.')
        ++n;
    ::closedir(d);
  }
  return n - 1; // the directory stream itself
}

/// The event loop the service should use: libev (epoll) unless the test
/// runs with AICO_WS_EVENT_LOOP=poll (ctest runs these tests both ways).
std::string expected_backend() {
  const char* v = std::getenv("AICO_WS_EVENT_LOOP");
  return v && std::string{v} == "poll" ? "poll" : "libev";
}

/// Waits until `pred` holds, at most `timeout`.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  while (!pred()) {
    if (steady::now() > deadline)
      return pred();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// What one loop's handlers saw. Shared with the handlers, so it outlives
/// the loop.
struct probe {
  std::mutex mtx;
  std::condition_variable cv;
  std::set<uint64_t> opened;
  std::vector<std::string> messages;
  std::vector<std::string> closed; ///< reasons
  std::atomic<bool> stop_returned{false};
  std::atomic<int> after_stop{0}; ///< handler calls after stop() returned

  void note_call() {
    if (stop_returned.load())
      ++after_stop;
  }

  bool is_open(uint64_t gen) {
    std::lock_guard<std::mutex> g{mtx};
    return opened.count(gen) > 0;
  }

  std::size_t closed_count() {
    std::lock_guard<std::mutex> g{mtx};
    return closed.size();
  }

  /// A pong with `id` arrived.
  bool got_pong(const std::string& id) {
    std::lock_guard<std::mutex> g{mtx};
    for (auto& m : messages) {
      auto f = aico::ws_link::decode_frame(m);
      if (f.kind == aico::ws_link::frame_kind::pong && f.id == id)
        return true;
    }
    return false;
  }
};

loop_handlers handlers_for(const std::shared_ptr<probe>& p) {
  loop_handlers h;
  h.on_open = [p](uint64_t gen) {
    p->note_call();
    std::lock_guard<std::mutex> g{p->mtx};
    p->opened.insert(gen);
  };
  h.on_message = [p](uint64_t, std::string&& text) {
    p->note_call();
    std::lock_guard<std::mutex> g{p->mtx};
    p->messages.push_back(std::move(text));
  };
  h.on_closed = [p](uint64_t, const std::string& reason) {
    p->note_call();
    std::lock_guard<std::mutex> g{p->mtx};
    p->closed.push_back(reason);
  };
  return h;
}

struct session {
  std::shared_ptr<probe> seen = std::make_shared<probe>();
  std::unique_ptr<ws_loop> loop;

  explicit session(loop_options opts = {})
    : loop(std::make_unique<ws_loop>(opts, handlers_for(seen))) {}

  /// Destroys the loop and notes that its stop has returned.
  void destroy() {
    loop.reset();
    seen->stop_returned = true;
  }
};

class ws_loop_shared_test : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(ws_loop::stats().services, 0u) << "a service left running";
    ASSERT_TRUE(gw.start()) << gw.last_error();
    std::string why;
    ASSERT_TRUE(aico::ws_link::parse_url(gw.ws_url(), url, why)) << why;
  }

  void TearDown() override {
    EXPECT_TRUE(eventually([] { return ws_loop::stats().services == 0; },
                           1000ms));
  }

  gateway_process gw;
  ws_url url;
};

TEST_F(ws_loop_shared_test, many_loops_share_one_thread_and_cost_one_fd_each) {
  constexpr int n = 200;
  auto threads0 = settled_thread_count();
  auto fds0 = open_fds();
  std::vector<std::unique_ptr<session>> s;
  for (int i = 0; i < n; ++i) {
    s.push_back(std::make_unique<session>());
    s.back()->loop->open(1, url, "");
  }
  ASSERT_TRUE(eventually(
    [&] {
      for (auto& x : s)
        if (!x->seen->is_open(1))
          return false;
      return true;
    },
    10000ms));
  auto threads1 = thread_count();
  auto fds1 = open_fds();
  auto st = ws_loop::stats();
  EXPECT_EQ(st.services, 1u);
  EXPECT_EQ(st.loops, static_cast<std::size_t>(n));
  EXPECT_EQ(st.connections, static_cast<std::size_t>(n));
  EXPECT_EQ(st.backend, expected_backend());
  // one service thread for all of them
  EXPECT_EQ(threads1 - threads0, 1);
  // one socket each, plus the one context's own few fds (wake-up pipe,
  // epoll)
  EXPECT_GE(fds1 - fds0, n);
  EXPECT_LE(fds1 - fds0, n + 4);
  std::printf("[ measured ] %s, %d sessions: +%d threads (%.3f per "
              "session), +%d fds (%.3f per session)\n",
              st.backend.c_str(), n, threads1 - threads0,
              double(threads1 - threads0) / n, fds1 - fds0,
              double(fds1 - fds0) / n);
  RecordProperty("threads_per_session",
                 std::to_string(double(threads1 - threads0) / n));
  RecordProperty("fds_per_session",
                 std::to_string(double(fds1 - fds0) / n));
  // every one of them exchanges messages
  for (int i = 0; i < n; ++i)
    s[i]->loop->send(1, aico::ws_link::encode_ping("p-" + std::to_string(i)));
  EXPECT_TRUE(eventually(
    [&] {
      for (int i = 0; i < n; ++i)
        if (!s[i]->seen->got_pong("p-" + std::to_string(i)))
          return false;
      return true;
    },
    10000ms));
  for (auto& x : s)
    EXPECT_EQ(x->seen->closed_count(), 0u);
  s.clear();
  // the last loop took the thread with it
  EXPECT_EQ(threads_become(threads0), threads0);
  EXPECT_EQ(ws_loop::stats().services, 0u);
  EXPECT_TRUE(eventually([&] { return open_fds() <= fds0; }, 3000ms))
    << open_fds() << " fds, " << fds0 << " before";
}

TEST_F(ws_loop_shared_test, stopping_or_failing_one_loop_leaves_the_others) {
  constexpr int n = 12;
  std::vector<std::unique_ptr<session>> s;
  for (int i = 0; i < n; ++i) {
    s.push_back(std::make_unique<session>());
    s.back()->loop->open(1, url, "");
  }
  // one that fails to connect and one whose peer sends too much
  session refused;
  ws_url bad = url;
  bad.port = 1; // nothing listens there
  refused.loop->open(7, bad, "");
  loop_options tiny;
  tiny.max_message = 8; // every pong is longer
  session small{tiny};
  small.loop->open(3, url, "");
  ASSERT_TRUE(eventually(
    [&] {
      for (auto& x : s)
        if (!x->seen->is_open(1))
          return false;
      return small.seen->is_open(3);
    },
    5000ms));
  small.loop->send(3, aico::ws_link::encode_ping("too-big"));
  ASSERT_TRUE(eventually([&] { return refused.seen->closed_count() == 1; },
                         5000ms));
  ASSERT_TRUE(eventually([&] { return small.seen->closed_count() == 1; },
                         5000ms));
  {
    std::lock_guard<std::mutex> g{small.seen->mtx};
    EXPECT_NE(small.seen->closed[0].find("exceeds"), std::string::npos)
      << small.seen->closed[0];
  }
  // one destroyed, one stopped (object kept), one closed
  s[3]->destroy();
  s[5]->loop->stop();
  s[5]->seen->stop_returned = true;
  s[5]->loop->stop(); // idempotent
  s[5]->loop->send(1, aico::ws_link::encode_ping("after-stop")); // ignored
  s[5]->loop->open(2, url, "");                                  // ignored
  s[7]->loop->close();
  // the others still exchange messages, each on its own connection
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < n; ++i)
      if (i != 3 && i != 5 && i != 7)
        s[i]->loop->send(1, aico::ws_link::encode_ping(
                              "r" + std::to_string(round) + "-"
                              + std::to_string(i)));
    EXPECT_TRUE(eventually(
      [&] {
        for (int i = 0; i < n; ++i)
          if (i != 3 && i != 5 && i != 7
              && !s[i]->seen->got_pong("r" + std::to_string(round) + "-"
                                       + std::to_string(i)))
            return false;
        return true;
      },
      5000ms))
      << "round " << round;
  }
  // a closed loop opens again
  s[7]->loop->open(2, url, "");
  ASSERT_TRUE(eventually([&] { return s[7]->seen->is_open(2); }, 5000ms));
  s[7]->loop->send(1, aico::ws_link::encode_ping("stale")); // old gen: dropped
  s[7]->loop->send(2, aico::ws_link::encode_ping("again"));
  EXPECT_TRUE(eventually([&] { return s[7]->seen->got_pong("again"); },
                         5000ms));
  EXPECT_FALSE(s[7]->seen->got_pong("stale"));
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(s[5]->seen->got_pong("after-stop"));
  EXPECT_FALSE(s[5]->seen->is_open(2));
  EXPECT_EQ(s[3]->seen->after_stop.load(), 0);
  EXPECT_EQ(s[5]->seen->after_stop.load(), 0);
  for (int i = 0; i < n; ++i) {
    if (i != 3 && i != 5 && i != 7) {
      EXPECT_EQ(s[i]->seen->closed_count(), 0u) << i;
    }
  }
  EXPECT_EQ(s[7]->seen->closed_count(), 0u); // own close: not reported
  // the stopped loop's connection is closed; the rest are still there
  auto st = ws_loop::stats();
  EXPECT_EQ(st.services, 1u);
  // (n - 2: s[7] holds its new one; refused and small hold none)
  EXPECT_TRUE(eventually(
    [&] {
      return ws_loop::stats().connections == static_cast<std::size_t>(n - 2);
    },
    5000ms))
    << ws_loop::stats().connections;
}

TEST_F(ws_loop_shared_test, concurrent_destruction_never_calls_a_handler_late) {
  constexpr int workers = 8;
  constexpr int per_worker = 30;
  auto threads0 = settled_thread_count();
  std::atomic<int> late{0};
  std::atomic<int> opened{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < workers; ++w)
    ts.emplace_back([&, w] {
      std::mt19937 rng(1234u + static_cast<unsigned>(w));
      for (int i = 0; i < per_worker; ++i) {
        session x;
        x.loop->open(1, url, "");
        for (int k = 0; k < 5; ++k)
          x.loop->send(1, aico::ws_link::encode_ping("c" + std::to_string(k)));
        switch (rng() % 4) {
          case 0: // right away (mid-connect)
            break;
          case 1:
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
            break;
          case 2: // established, messages flowing
            eventually([&] { return x.seen->is_open(1); }, 2000ms);
            x.loop->send(1, aico::ws_link::encode_ping("more"));
            break;
          case 3: // reopened while the first is still connecting
            x.loop->open(2, url, "");
            x.loop->send(2, aico::ws_link::encode_ping("two"));
            break;
        }
        if (x.seen->is_open(1) || x.seen->is_open(2))
          ++opened;
        if (rng() % 2)
          x.loop->stop(); // then destroyed
        x.destroy();
        std::this_thread::sleep_for(2ms); // late handlers would land here
        late += x.seen->after_stop.load();
      }
    });
  // meanwhile, loops created and destroyed in bulk from other threads
  {
    std::vector<std::unique_ptr<session>> bulk;
    for (int i = 0; i < 60; ++i) {
      bulk.push_back(std::make_unique<session>());
      bulk.back()->loop->open(1, url, "");
    }
    std::this_thread::sleep_for(20ms);
    std::vector<std::thread> killers;
    for (int k = 0; k < 6; ++k)
      killers.emplace_back([&, k] {
        for (int i = k; i < 60; i += 6) {
          bulk[i]->loop->send(1, aico::ws_link::encode_ping("b"));
          bulk[i]->destroy();
        }
      });
    for (auto& t : killers)
      t.join();
    std::this_thread::sleep_for(20ms);
    for (auto& b : bulk)
      late += b->seen->after_stop.load();
  }
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(late.load(), 0);
  EXPECT_GT(opened.load(), 0); // some really got connected
  EXPECT_EQ(ws_loop::stats().services, 0u);
  EXPECT_EQ(threads_become(threads0), threads0);
}

TEST_F(ws_loop_shared_test, service_ends_with_the_last_loop_and_starts_again) {
  auto threads0 = settled_thread_count();
  for (int round = 0; round < 3; ++round) {
    {
      session a;
      EXPECT_EQ(threads_become(threads0 + 1), threads0 + 1)
        << "round " << round;
      a.loop->open(1, url, "");
      {
        session b; // joins the same service
        EXPECT_EQ(thread_count(), threads0 + 1);
        b.loop->open(1, url, "");
        ASSERT_TRUE(eventually([&] { return b.seen->is_open(1); }, 5000ms));
        EXPECT_EQ(ws_loop::stats().loops, 2u);
      }
      EXPECT_EQ(thread_count(), threads0 + 1); // a is still there
      ASSERT_TRUE(eventually([&] { return a.seen->is_open(1); }, 5000ms));
      a.loop->send(1, aico::ws_link::encode_ping("round"));
      EXPECT_TRUE(eventually([&] { return a.seen->got_pong("round"); },
                             5000ms));
    }
    // joined by the last loop's destructor
    EXPECT_EQ(threads_become(threads0), threads0) << "round " << round;
    EXPECT_EQ(ws_loop::stats().services, 0u);
  }
}

TEST_F(ws_loop_shared_test, tls_loops_get_their_own_service) {
  auto threads0 = settled_thread_count();
  session plain;
  plain.loop->open(1, url, "");
  loop_options tls;
  tls.tls = true;
  session secure{tls};
  // two services (one per TLS setting), one thread each
  auto st = ws_loop::stats();
  EXPECT_EQ(st.services, 2u);
  EXPECT_EQ(st.loops, 2u);
  EXPECT_EQ(thread_count(), threads0 + 2);
  // the gateway speaks no TLS: the wss:// attempt fails, and only that one
  ws_url wss = url;
  wss.tls = true;
  secure.loop->open(1, wss, "secret-token");
  ASSERT_TRUE(eventually([&] { return secure.seen->closed_count() == 1; },
                         5000ms));
  {
    std::lock_guard<std::mutex> g{secure.seen->mtx};
    EXPECT_EQ(secure.seen->closed[0].find("secret-token"), std::string::npos)
      << secure.seen->closed[0];
  }
  ASSERT_TRUE(eventually([&] { return plain.seen->is_open(1); }, 5000ms));
  plain.loop->send(1, aico::ws_link::encode_ping("plain"));
  EXPECT_TRUE(eventually([&] { return plain.seen->got_pong("plain"); },
                         5000ms));
  secure.destroy();
  EXPECT_EQ(threads_become(threads0 + 1), threads0 + 1);
  EXPECT_EQ(ws_loop::stats().services, 1u);
  plain.destroy();
  EXPECT_EQ(threads_become(threads0), threads0);
}

} // namespace
