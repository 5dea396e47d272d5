// The resilient client in front of the real engine (supervisor, transports,
// token manager) against the real aico-gateway: a 503 burst opens the
// breaker of the endpoint, calls fail fast, and once the fault is gone the
// breaker closes again; a 50 % failure rate is absorbed by retries. Faults
// are switched through the gateway's /admin/faults. Every wait is bounded.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "messages/resilience.hpp"
#include "support/clients.hpp"
#include "support/engine_harness.hpp"
#include "support/gateway_process.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::http_client;
using aico::test::jstr;
namespace json = boost::json;
using steady = std::chrono::steady_clock;

namespace {

/// Thread-safe record of the breaker snapshots the client publishes.
class breaker_log {
public:
  void add(breaker_snapshot s) {
    std::lock_guard<std::mutex> g{mtx_};
    xs_.push_back(std::move(s));
    cv_.notify_all();
  }

  /// Waits for a snapshot of `endpoint` in `state` (at index >= from).
  bool wait_for(const std::string& endpoint, breaker_state state,
                std::chrono::milliseconds timeout, std::size_t from = 0) {
    std::unique_lock<std::mutex> g{mtx_};
    return cv_.wait_for(g, timeout, [&] {
      for (auto i = from; i < xs_.size(); ++i)
        if (xs_[i].endpoint == endpoint && xs_[i].state == state)
          return true;
      return false;
    });
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> g{mtx_};
    return xs_.size();
  }

  std::string history() const {
    std::lock_guard<std::mutex> g{mtx_};
    std::string res;
    for (auto& s : xs_)
      res += "\n  " + to_string(s);
    return res;
  }

private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<breaker_snapshot> xs_;
};

class resilience_integration : public aico::test::engine_harness {
protected:
  void SetUp() override { start_gateway(); }

  void tune(engine_config& cfg) override { cfg.resilience = rc_; }

  /// Breakers with short timings: 4 calls at 50 % in a 5 s window, open
  /// 700 ms, 2 probes of 2 s, 2 successes close.
  resilience_config make_rc() {
    resilience_config rc;
    rc.breaker.failure_rate_threshold = 0.5;
    rc.breaker.window = 5s;
    rc.breaker.window_buckets = 5;
    rc.breaker.minimum_calls = 4;
    rc.breaker.open_wait = {700ms, 2.0, 0.0, 5000ms};
    rc.breaker.half_open_max_probes = 2;
    rc.breaker.probe_timeout = 2s;
    rc.breaker.successes_to_close = 2;
    rc.breaker.failures_to_reopen = 1;
    rc.retry.backoff_opts = {100ms, 2.0, 0.2, 1000ms};
    return rc;
  }

  /// Starts the engine (its resilient client gets `rc`) and logs in.
  void start(resilience_config rc) {
    rc_ = std::move(rc);
    start_engine();
    client_ = eng_->api();
    auto log = blog_;
    listener_ = sys_.spawn(
      [log]() -> breaker_listener_actor::behavior_type {
        return {[log](breaker_atom, const breaker_snapshot& s) {
          log->add(s);
        }};
      });
    caf::anon_send(client_, watch_atom::value, listener_);
    // log in (before any fault) so calls carry a token
    auto s = login("alice", "alice-pw");
    ASSERT_TRUE(s) << describe(s.error());
  }

  void TearDown() override {
    if (listener_)
      caf::anon_send_exit(listener_, caf::exit_reason::user_shutdown);
    engine_harness::TearDown();
  }

  /// One authenticated call through the resilient client.
  caf::expected<api_reply> call(const std::string& id,
                                const std::string& path = "/users/me",
                                caf::timespan t = 10s) {
    caf::scoped_actor self{sys_};
    caf::expected<api_reply> res{caf::error{}};
    self
      ->request(client_, t + 3s, request_atom::value,
                api_call{id, "GET", path, "", ""}, t, true)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  std::vector<breaker_snapshot> breakers() {
    caf::scoped_actor self{sys_};
    std::vector<breaker_snapshot> res;
    self->request(client_, 5s, breaker_atom::value)
      .receive([&](std::vector<breaker_snapshot>& xs) { res = std::move(xs); },
               [&](caf::error& e) { ADD_FAILURE() << describe(e); });
    return res;
  }

  std::optional<breaker_snapshot> breaker(const std::string& key) {
    for (auto& s : breakers())
      if (s.endpoint == key)
        return s;
    return std::nullopt;
  }

  resilience_config rc_;
  resilient_client_actor client_;
  breaker_listener_actor listener_;
  std::shared_ptr<breaker_log> blog_ = std::make_shared<breaker_log>();
};

const std::string me = "GET /users/me";

} // namespace

TEST_F(resilience_integration, a_503_burst_opens_the_breaker_and_it_recovers) {
  auto rc = make_rc();
  rc.max_attempts = [](const api_call&) { return 1; }; // the breaker alone
  start(std::move(rc));
  ASSERT_TRUE(call("warm-up")) << "the engine does not work at all";

  ASSERT_TRUE(fault({{"fail_ratio", 1}, {"fail_status", 503}}));
  // window: the warm-up success + 503s; minimum 4 calls at 50 % => the
  // third 503 opens it (3 of 4)
  for (int i = 0; i < 3; ++i) {
    auto r = call("burst-" + std::to_string(i));
    ASSERT_FALSE(r) << "call " << i << " succeeded during the fault";
    auto c = classify(r.error());
    EXPECT_EQ(c.status, 503) << describe(r.error());
    EXPECT_FALSE(is_circuit_open(r.error())) << "opened too early: " << i;
  }
  ASSERT_TRUE(blog_->wait_for(me, breaker_state::open, 2s)) << blog_->history();
  auto s = breaker(me);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, breaker_state::open);
  EXPECT_EQ(s->reason, "failure_rate");
  // other endpoints are unaffected
  EXPECT_FALSE(breaker("GET /system/status"));

  // while open: fail fast with the circuit error, nothing reaches the
  // gateway
  auto t0 = steady::now();
  auto r = call("fast");
  auto took = steady::now() - t0;
  ASSERT_FALSE(r);
  EXPECT_TRUE(is_circuit_open(r.error())) << describe(r.error());
  EXPECT_NE(classify(r.error()).message.find(me), std::string::npos);
  EXPECT_GT(classify(r.error()).retry_after_ms, 0);
  EXPECT_LT(took, 200ms) << "did not fail fast";

  // the fault is removed; after the open wait the breaker lets probes
  // through and closes on their success
  ASSERT_TRUE(fault({{"reset", true}}));
  ASSERT_TRUE(blog_->wait_for(me, breaker_state::half_open, 3s))
    << blog_->history();
  auto p1 = call("probe-1");
  ASSERT_TRUE(p1) << describe(p1.error());
  auto p2 = call("probe-2");
  ASSERT_TRUE(p2) << describe(p2.error());
  ASSERT_TRUE(blog_->wait_for(me, breaker_state::closed, 2s))
    << blog_->history();
  EXPECT_EQ(breaker(me)->state, breaker_state::closed);
  for (int i = 0; i < 5; ++i) {
    auto ok = call("after-" + std::to_string(i));
    EXPECT_TRUE(ok) << describe(ok.error());
  }
}

TEST_F(resilience_integration, a_half_failing_gateway_is_absorbed_by_retries) {
  auto rc = make_rc();
  // 50 % failures would open a 50 % breaker: this test is about retries
  rc.breaker.failure_rate_threshold = 0.9;
  rc.retry.max_attempts = 4;
  // every call after the first fails once (-1 +0.2): a budget of 20 keeps
  // retries allowed for ~11 calls
  rc.budget_options = {20.0, 0.2};
  start(std::move(rc));
  ASSERT_TRUE(call("warm-up"));
  ASSERT_TRUE(fault({{"fail_ratio", 0.5}, {"fail_status", 503}}));
  int ok = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = call("flaky-" + std::to_string(i), "/users/me", 15s);
    if (r)
      ++ok;
    else
      ADD_FAILURE() << "call " << i << ": " << describe(r.error());
  }
  EXPECT_EQ(ok, 8);
  auto s = breaker(me);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, breaker_state::closed) << blog_->history();
  ASSERT_TRUE(fault({{"reset", true}}));
}
