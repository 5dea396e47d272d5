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

class resilience_integration : public ::testing::Test {
protected:
  void SetUp() override {
    gateway_options opts;
    opts.bot = false;
    gw_ = std::make_unique<gateway_process>(std::move(opts));
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
    admin_ = std::make_unique<http_client>(gw_->host(), gw_->port());
    auto r = admin_->post("/api/v1/users/authenticate",
                          json::object{{"username", "root"},
                                       {"password", "root-pw"}});
    root_token_ = jstr(r.body, "/data/access_token");
    ASSERT_FALSE(root_token_.empty());
  }

  /// Engine with short timings, as in test_engine_integration.cpp.
  engine_config make_engine_config() {
    engine_config cfg;
    auto& c = cfg.connection;
    c.http.base_url = gw_->http_url();
    c.ws.url = gw_->ws_url();
    c.ipc.endpoint = gw_->ipc_endpoint();
    c.http.connect_timeout = c.ws.connect_timeout = c.ipc.connect_timeout
      = 2s;
    c.ws.ping_interval = c.ipc.ping_interval = 500ms;
    c.ws.dead_peer_timeout = c.ipc.dead_peer_timeout = 2s;
    c.health_interval = 1s;
    c.health_timeout = 1s;
    c.failback_probes = 2;
    c.backoff = {std::chrono::milliseconds{100}, 1.6, 0.2,
                 std::chrono::milliseconds{1000}};
    cfg.tokens.state_dir = state_dir_.path();
    cfg.tokens.request_timeout = 5s;
    cfg.request_timeout = 10s;
    cfg.shutdown_timeout = 5s;
    return cfg;
  }

  /// Breakers with short timings: 4 calls at 50 % in a 5 s window, open
  /// 700 ms, 2 probes of 2 s, 2 successes close.
  resilience_config make_config() {
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

  void start(resilience_config rc) {
    eng_ = std::make_unique<engine>(sys_, make_engine_config());
    client_ = spawn_resilient_client(sys_, std::move(rc), eng_->connection());
    auto log = log_;
    listener_ = sys_.spawn(
      [log]() -> breaker_listener_actor::behavior_type {
        return {[log](breaker_atom, const breaker_snapshot& s) {
          log->add(s);
        }};
      });
    caf::anon_send(client_, watch_atom::value, listener_);
    // log in (before any fault) so calls carry a token
    caf::scoped_actor self{sys_};
    bool ok = false;
    std::string why;
    self
      ->request(eng_->tokens(), 15s, login_atom::value, std::string{"alice"},
                std::string{"alice-pw"})
      .receive([&](session_info&) { ok = true; },
               [&](caf::error& e) { why = describe(e); });
    ASSERT_TRUE(ok) << why;
  }

  void TearDown() override {
    if (client_)
      caf::anon_send_exit(client_, caf::exit_reason::user_shutdown);
    if (listener_)
      caf::anon_send_exit(listener_, caf::exit_reason::user_shutdown);
    eng_.reset();
    if (gw_)
      gw_->stop();
  }

  bool fault(const json::object& body) {
    auto r = admin_->post("/api/v1/admin/faults", body, root_token_);
    return r.status == 200;
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

  caf::actor_system_config sys_cfg_;
  caf::actor_system sys_{sys_cfg_};
  aico::test::temp_dir state_dir_{"aico-resil-it"};
  std::unique_ptr<gateway_process> gw_;
  std::unique_ptr<http_client> admin_;
  std::string root_token_;
  std::unique_ptr<engine> eng_;
  resilient_client_actor client_;
  breaker_listener_actor listener_;
  std::shared_ptr<breaker_log> log_ = std::make_shared<breaker_log>();
};

const std::string me = "GET /users/me";

} // namespace

TEST_F(resilience_integration, a_503_burst_opens_the_breaker_and_it_recovers) {
  auto rc = make_config();
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
  ASSERT_TRUE(log_->wait_for(me, breaker_state::open, 2s)) << log_->history();
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
  ASSERT_TRUE(log_->wait_for(me, breaker_state::half_open, 3s))
    << log_->history();
  auto p1 = call("probe-1");
  ASSERT_TRUE(p1) << describe(p1.error());
  auto p2 = call("probe-2");
  ASSERT_TRUE(p2) << describe(p2.error());
  ASSERT_TRUE(log_->wait_for(me, breaker_state::closed, 2s))
    << log_->history();
  EXPECT_EQ(breaker(me)->state, breaker_state::closed);
  for (int i = 0; i < 5; ++i) {
    auto ok = call("after-" + std::to_string(i));
    EXPECT_TRUE(ok) << describe(ok.error());
  }
}

TEST_F(resilience_integration, a_half_failing_gateway_is_absorbed_by_retries) {
  auto rc = make_config();
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
  EXPECT_EQ(s->state, breaker_state::closed) << log_->history();
  ASSERT_TRUE(fault({{"reset", true}}));
}
