// aico::client (the plain C++ facade) against the real gateway on loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "aico/client.hpp"
#include "support/gateway_process.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

client_config config_for(const std::string& url, const std::string& ipc,
                         const std::string& state_dir) {
  client_config cfg;
  cfg.url = url;
  cfg.ipc = ipc;
  cfg.state_dir = state_dir;
  cfg.request_timeout = 3s;
  cfg.shutdown_timeout = 2s;
  return cfg;
}

template <class Pred>
bool wait_until(std::mutex& m, std::condition_variable& cv, Pred p,
                std::chrono::seconds max = 20s) {
  std::unique_lock<std::mutex> guard{m};
  return cv.wait_for(guard, max, p);
}

} // namespace

TEST(Facade, LoginErrorIsClassified) {
  test::gateway_process gw;
  ASSERT_TRUE(gw.start()) << gw.last_error();
  test::temp_dir dir;
  client c{config_for(gw.http_url(), gw.ipc_endpoint(), dir.path())};
  auto f = c.login("alice", "wrong-password");
  ASSERT_EQ(f.wait_for(15s), std::future_status::ready);
  try {
    f.get();
    FAIL() << "login with a wrong password succeeded";
  } catch (const client_error& e) {
    EXPECT_EQ(e.cls(), error_class::authentication) << e.what();
    EXPECT_FALSE(e.retryable());
    EXPECT_EQ(e.status(), 401);
  }
}

TEST(Facade, SendReceiveAndCancel) {
  test::gateway_process gw;
  ASSERT_TRUE(gw.start()) << gw.last_error();
  test::temp_dir dir;
  client c{config_for(gw.http_url(), gw.ipc_endpoint(), dir.path())};
  std::mutex m;
  std::condition_variable cv;
  std::vector<chat_message> seen;
  std::atomic<int> chunks{0};
  std::atomic<bool> connected{false};
  auto msgs = c.on_message([&](const chat_message& x) {
    std::lock_guard<std::mutex> guard{m};
    seen.push_back(x);
    cv.notify_all();
  });
  auto str = c.on_stream_chunk([&](const stream_chunk&) { ++chunks; });
  auto st = c.on_connection_state([&](const connection_state& s) {
    if (s.state == link_state::connected) {
      connected = true;
      cv.notify_all();
    }
  });
  EXPECT_TRUE(msgs.active());
  auto s = c.login("alice", "alice-pw").get();
  EXPECT_EQ(s.username, "alice");
  EXPECT_EQ(c.me().get().value.username, "alice");
  EXPECT_TRUE(c.health().get().value.is_healthy);
  auto sent = c.send_message("hello facade").get();
  EXPECT_FALSE(sent.id.empty());
  auto bot_id = "bot-" + sent.id;
  ASSERT_TRUE(wait_until(m, cv, [&] {
    for (auto& x : seen)
      if (x.id == bot_id && !x.content.empty())
        return true;
    return false;
  })) << "no bot reply";
  EXPECT_GT(chunks.load(), 0);
  EXPECT_TRUE(connected.load());
  EXPECT_EQ(c.connection_state().get().state, link_state::connected);
  auto hist = c.history().get();
  EXPECT_FALSE(hist.page.messages.empty());
  // after cancel: nothing more is delivered
  msgs.cancel();
  EXPECT_FALSE(msgs.active());
  size_t before;
  {
    std::lock_guard<std::mutex> guard{m};
    before = seen.size();
  }
  c.send_message("second").get();
  std::this_thread::sleep_for(1500ms);
  {
    std::lock_guard<std::mutex> guard{m};
    EXPECT_EQ(seen.size(), before);
  }
  EXPECT_TRUE(c.logout().get());
}

TEST(Facade, ShutdownIsBoundedAndKeepsUnsentMessages) {
  test::temp_dir dir;
  // nothing listens here: the engine keeps reconnecting
  auto cfg = config_for("http://127.0.0.1:9", "", dir.path());
  std::future<session_info> pending;
  {
    client c{cfg};
    auto m = c.send_message("kept for later").get();
    EXPECT_EQ(m.status, message_status::queued);
    pending = c.login("alice", "alice-pw"); // never answered in time
  }
  // the pending future is failed, not left hanging
  ASSERT_EQ(pending.wait_for(1s), std::future_status::ready);
  EXPECT_THROW(pending.get(), client_error);
  // a new client on the same state dir still has the message queued
  client c2{cfg};
  auto q = c2.queue_list().get();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_NE(q.front().body.find("kept for later"), std::string::npos);
}

TEST(Facade, DestructorTimeIsBounded) {
  test::temp_dir dir;
  auto cfg = config_for("http://127.0.0.1:9", "", dir.path());
  auto t0 = std::chrono::steady_clock::now();
  {
    client c{cfg};
    auto sub = c.on_connection_state([](const connection_state&) {});
    auto f = c.system_status();
  }
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, cfg.shutdown_timeout + 3s);
  EXPECT_EQ(cfg.shutdown_timeout, 2s);
}
