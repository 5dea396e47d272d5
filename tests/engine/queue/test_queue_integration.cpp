// The offline queue inside the real engine (resilient client, supervisor,
// transports, token manager) against the real aico-gateway: commands queued while the
// gateway is down — across an engine restart — are delivered once the
// gateway comes up, each exactly once and in per-conversation order. The
// gateway's stored history is the ground truth. Every wait is bounded.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "messages/offline_queue.hpp"
#include "support/clients.hpp"
#include "support/engine_harness.hpp"
#include "support/gateway_process.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::http_client;
using aico::test::jint;
using aico::test::jstr;
namespace json = boost::json;

namespace {

/// Thread-safe record of the queue updates.
class update_log {
public:
  void add(const queue_update& up) {
    std::lock_guard<std::mutex> g{mtx_};
    auto& key = up.entry.idempotency_key;
    statuses_[key].push_back(up.status);
    if (up.status == queue_status::sent)
      ++sent_;
    if (up.status == queue_status::failed)
      failures_.push_back(key + ": " + up.error_message);
    cv_.notify_all();
  }

  bool wait_sent(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> g{mtx_};
    return cv_.wait_for(g, timeout, [&] { return sent_ >= n; });
  }

  size_t sent() const {
    std::lock_guard<std::mutex> g{mtx_};
    return sent_;
  }

  size_t count(const std::string& key, queue_status s) const {
    std::lock_guard<std::mutex> g{mtx_};
    auto i = statuses_.find(key);
    if (i == statuses_.end())
      return 0;
    size_t n = 0;
    for (auto x : i->second)
      if (x == s)
        ++n;
    return n;
  }

  std::vector<std::string> failures() const {
    std::lock_guard<std::mutex> g{mtx_};
    return failures_;
  }

private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<queue_status>> statuses_;
  size_t sent_ = 0;
  std::vector<std::string> failures_;
};

class queue_integration : public aico::test::engine_harness {
protected:
  void SetUp() override { start_gateway(); }

  void TearDown() override {
    stop_engine();
    engine_harness::TearDown();
  }

  void tune(engine_config& cfg) override {
    cfg.queue.limit = 1000;
    cfg.queue.backoff = {std::chrono::milliseconds{200}, 2.0, 0.2,
                         std::chrono::milliseconds{2000}};
  }

  /// The engine owns the queue (wired to the supervisor's connection state
  /// and the token manager's auth state); the test watches its updates.
  void start_engine() {
    engine_harness::start_engine();
    queue_ = eng_->queue();
    auto log = ulog_;
    auto listener = sys_.spawn(
      [log]() -> queue_listener_actor::behavior_type {
        return {[log](queue_atom, const queue_update& up) { log->add(up); }};
      });
    caf::anon_send(queue_, watch_atom::value, listener);
  }

  /// Stops the engine and its queue (the file lock is released).
  void stop_engine() {
    queue_ = nullptr;
    eng_.reset();
  }

  caf::expected<queue_entry> enqueue(const std::string& conv,
                                     const std::string& id) {
    json::object body{{"id", id},
                      {"conversation_id", conv},
                      {"content", "queued " + id}};
    queued_command cmd{id,
                       command_kind::send_message,
                       conv,
                       "POST",
                       "/conversations/messages",
                       json::serialize(body)};
    caf::scoped_actor self{sys_};
    caf::expected<queue_entry> res{caf::error{}};
    self->request(queue_, 5s, enqueue_atom::value, cmd)
      .receive([&](queue_entry& e) { res = std::move(e); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<std::vector<queue_entry>> list() {
    caf::scoped_actor self{sys_};
    caf::expected<std::vector<queue_entry>> res{caf::error{}};
    self->request(queue_, 5s, list_atom::value)
      .receive([&](std::vector<queue_entry>& xs) { res = std::move(xs); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  std::shared_ptr<update_log> ulog_ = std::make_shared<update_log>();
  offline_queue_actor queue_;
};

} // namespace

TEST_F(queue_integration, queued_while_down_is_delivered_once_in_order) {
  // the gateway is down from the start (its port and data dir are kept)
  ASSERT_GE(gw_->stop(), -1);
  start_engine();
  const std::vector<std::string> convs{"q-one", "q-two", "q-three"};
  std::map<std::string, std::vector<std::string>> sent;
  constexpr int total = 200;
  constexpr int before_restart = 90;
  auto enqueue_range = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      auto& conv = convs[static_cast<size_t>(i) % convs.size()];
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%04d", i);
      auto id = conv + "-" + buf;
      auto e = enqueue(conv, id);
      ASSERT_TRUE(e) << id << ": " << describe(e.error());
      sent[conv].push_back(id);
    }
  };
  enqueue_range(0, before_restart);
  // the engine is restarted (app closed and reopened) while still offline
  std::this_thread::sleep_for(300ms);
  stop_engine();
  start_engine();
  enqueue_range(before_restart, total);
  auto queued = list();
  ASSERT_TRUE(queued) << describe(queued.error());
  EXPECT_EQ(queued->size(), static_cast<size_t>(total));
  EXPECT_EQ(ulog_->sent(), 0u);

  // the gateway comes up; the user logs in; the queue drains by itself
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  auto s = login("alice", "alice-pw");
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_TRUE(ulog_->wait_sent(total, 90s))
    << "sent " << ulog_->sent() << " of " << total;
  EXPECT_TRUE(ulog_->failures().empty())
    << "first failure: " << ulog_->failures().front();
  auto rest = list();
  ASSERT_TRUE(rest);
  EXPECT_TRUE(rest->empty()) << rest->size() << " items left";

  // the gateway's store: each message exactly once, in queue order
  for (auto& conv : convs) {
    auto ids = stored_ids("alice", "alice-pw", conv);
    EXPECT_EQ(ids, sent[conv]) << "conversation " << conv;
    for (auto& id : sent[conv])
      EXPECT_EQ(ulog_->count(id, queue_status::sent), 1u) << id;
  }
}
