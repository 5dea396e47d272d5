// The resilient client with a fake supervisor under CAF's deterministic test
// coordinator (virtual time, no threads, no sleeping): breaker transitions
// (including concurrent and lost probes), retries, Retry-After, the shared
// budget, idempotent ids and the health check on opening.
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "support/caf_fixture.hpp"
#include "messages/resilience.hpp"

using namespace aico;
using namespace std::chrono_literals;

static_assert(std::is_convertible<resilient_client_actor,
                                  api_gateway_actor>::value,
              "repositories must be able to use the resilient client as a "
              "gateway");
static_assert(std::is_convertible<supervisor_actor, api_gateway_actor>::value,
              "... and the supervisor");

namespace {

/// What the fake supervisor answers to one request.
struct outcome {
  enum kind_t { ok, status, network, hold } kind = ok;
  int32_t code = 200;
  std::string retry_after; ///< Retry-After header value
};

outcome ok() {
  return {};
}
outcome status(int32_t code, std::string retry_after = {}) {
  return {outcome::status, code, std::move(retry_after)};
}
outcome net_error() {
  return {outcome::network, 0, {}};
}
outcome hold() {
  return {outcome::hold, 0, {}};
}

struct fake_gateway {
  std::deque<outcome> script; ///< consumed one per request
  outcome fallback;           ///< when the script is empty
  std::vector<api_call> received;
  std::vector<caf::typed_response_promise<api_reply>> held;
  int health_checks = 0;
};

/// Delivers the held requests (true: 200, false: network error). Held
/// promises must be delivered from inside the fake, not from the test.
using release_atom = caf::atom_constant<caf::atom("release")>;

/// A supervisor_actor (dynamically typed so the test can add release_atom).
caf::behavior fake_supervisor(caf::event_based_actor* self,
                              std::shared_ptr<fake_gateway> gw) {
  return {
    [=](request_atom, const api_call& call, caf::timespan,
        bool) -> caf::result<api_reply> {
      gw->received.push_back(call);
      outcome o = gw->fallback;
      if (!gw->script.empty()) {
        o = gw->script.front();
        gw->script.pop_front();
      }
      switch (o.kind) {
        case outcome::ok:
          return api_reply{call.id, 200, R"({"success":true,"data":{}})", {},
                           transport_mode::ipc};
        case outcome::status:
          return make_status_error(
            o.code, R"({"success":false,"message":"scripted","code":"x"})",
            o.retry_after);
        case outcome::network:
          return make_engine_error(error_class::network, "connection lost");
        case outcome::hold: {
          auto rp = self->make_response_promise<api_reply>();
          gw->held.push_back(rp);
          return rp;
        }
      }
      return make_engine_error(error_class::unknown, "bad script");
    },
    [=](state_atom) { return connection_state{}; },
    [=](watch_atom, engine_listener_actor) {},
    [=](auth_atom, token_manager_actor) {},
    [=](connect_atom) {},
    [=](disconnect_atom) {},
    [=](disconnect_atom, bool) {},
    [=](health_atom) { ++gw->health_checks; },
    [=](release_atom, bool ok) {
      auto held = std::move(gw->held);
      gw->held.clear();
      for (auto& rp : held)
        if (ok)
          rp.deliver(api_reply{"held", 200, R"({"success":true,"data":{}})", {},
                               transport_mode::ipc});
        else
          rp.deliver(make_engine_error(error_class::network, "released"));
    },
  };
}

/// The outcome of one call, filled in by a short-lived caller actor.
struct result_box {
  bool done = false;
  caf::expected<api_reply> res{caf::error{}};
};
using box_ptr = std::shared_ptr<result_box>;

struct resilience_test : aico::test::caf_fixture {
  caf::scoped_actor self{sys};
  std::shared_ptr<fake_gateway> gw = std::make_shared<fake_gateway>();
  std::shared_ptr<std::vector<breaker_snapshot>> seen
    = std::make_shared<std::vector<breaker_snapshot>>();
  supervisor_actor sup;
  resilient_client_actor client;
  std::vector<caf::actor> callers;

  /// Short, jitter-free settings: min 4 calls at 50 %, open 1 s (x2 per
  /// re-open), 2 probes of 2 s, 2 successes close, 1 failure re-opens;
  /// 3 attempts, 100 ms doubling.
  resilience_config make_config() {
    resilience_config rc;
    rc.breaker.failure_rate_threshold = 0.5;
    rc.breaker.window = 10s;
    rc.breaker.window_buckets = 10;
    rc.breaker.minimum_calls = 4;
    rc.breaker.open_wait = {1000ms, 2.0, 0.0, 8000ms};
    rc.breaker.half_open_max_probes = 2;
    rc.breaker.probe_timeout = 2s;
    rc.breaker.successes_to_close = 2;
    rc.breaker.failures_to_reopen = 1;
    rc.retry.max_attempts = 3;
    rc.retry.backoff_opts = {100ms, 2.0, 0.0, 1000ms};
    rc.retry.max_retry_after = 5s;
    rc.seed = 42;
    return rc;
  }

  /// Config whose calls are never retried (pure breaker tests).
  resilience_config no_retry_config() {
    auto rc = make_config();
    rc.max_attempts = [](const api_call&) { return 1; };
    return rc;
  }

  void start(resilience_config rc) {
    sup = caf::actor_cast<supervisor_actor>(sys.spawn(fake_supervisor, gw));
    client = spawn_resilient_client(sys, std::move(rc), sup);
    auto log = seen;
    auto listener = sys.spawn(
      [log]() -> breaker_listener_actor::behavior_type {
        return {[log](breaker_atom, const breaker_snapshot& s) {
          log->push_back(s);
        }};
      });
    self->send(client, watch_atom::value, listener);
    sched.run();
  }

  ~resilience_test() override {
    if (sup)
      self->send(caf::actor_cast<caf::actor>(sup), release_atom::value, false);
    sched.run();
    for (auto& c : callers)
      self->send_exit(c, caf::exit_reason::user_shutdown);
    if (client)
      self->send_exit(client, caf::exit_reason::user_shutdown);
    if (sup)
      self->send_exit(sup, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Starts a call (runs the scheduler once); the box fills in later.
  box_ptr start_call(api_call c, caf::timespan timeout = 10s) {
    auto box = std::make_shared<result_box>();
    auto cl = client;
    callers.push_back(sys.spawn([=](caf::event_based_actor* a) {
      a->request(cl, caf::infinite, request_atom::value, c, timeout, false)
        .then(
          [=](api_reply& r) {
            box->done = true;
            box->res = std::move(r);
          },
          [=](caf::error& e) {
            box->done = true;
            box->res = std::move(e);
          });
    }));
    sched.run();
    return box;
  }

  box_ptr start_call(const std::string& id,
                     const std::string& path = "/users/me",
                     caf::timespan timeout = 10s) {
    return start_call(api_call{id, "GET", path, "", ""}, timeout);
  }

  /// A call that completes without advancing time.
  caf::expected<api_reply> call(const std::string& id,
                                const std::string& path = "/users/me") {
    auto box = start_call(id, path);
    EXPECT_TRUE(box->done) << "call " << id << " did not complete";
    return box->res;
  }

  void release(bool ok) {
    self->send(caf::actor_cast<caf::actor>(sup), release_atom::value, ok);
    sched.run();
  }

  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }

  std::vector<breaker_snapshot> breakers() {
    auto rh = self->request(client, caf::infinite, breaker_atom::value);
    sched.run();
    std::vector<breaker_snapshot> res;
    rh.receive([&](std::vector<breaker_snapshot>& xs) { res = std::move(xs); },
               [&](caf::error& e) { ADD_FAILURE() << to_string(e); });
    return res;
  }

  breaker_state state_of(const std::string& key) {
    for (auto& s : breakers())
      if (s.endpoint == key)
        return s.state;
    ADD_FAILURE() << "no breaker " << key;
    return breaker_state::closed;
  }

  /// Opens the breaker of GET /users/me with 4 failed calls (no retries).
  void open_breaker() {
    gw->fallback = status(503);
    for (int i = 0; i < 4; ++i)
      EXPECT_FALSE(call("f" + std::to_string(i)));
    ASSERT_EQ(state_of("GET /users/me"), breaker_state::open);
    gw->fallback = ok();
  }

  std::vector<breaker_state> seen_states() const {
    std::vector<breaker_state> res;
    for (auto& s : *seen)
      res.push_back(s.state);
    return res;
  }
};

const std::string me = "GET /users/me";

} // namespace

// -- endpoint keys ----------------------------------------------------------------

TEST(endpoint_key, method_and_path_with_ids_normalised_and_query_stripped) {
  auto k = [](std::string m, std::string p) {
    return default_endpoint_key(api_call{"", std::move(m), std::move(p), "", ""});
  };
  EXPECT_EQ(k("POST", "/conversations/messages"),
            "POST /conversations/messages");
  EXPECT_EQ(k("GET", "/conversations/c-17/messages?limit=50&since=3"),
            "GET /conversations/*/messages");
  EXPECT_EQ(k("GET", "/conversations/0b7c2f1e-aaaa/messages"),
            "GET /conversations/*/messages");
  EXPECT_EQ(k("GET", "/conversations/current/messages?limit=5"),
            "GET /conversations/current/messages");
  EXPECT_EQ(k("POST", "/conversations/messages/m-42/read"),
            "POST /conversations/messages/*/read");
  EXPECT_EQ(k("get", "/users/me"), "GET /users/me");
  EXPECT_EQ(k("PUT", "/users/me/preferences"), "PUT /users/me/preferences");
  EXPECT_EQ(k("GET", "/"), "GET /");
  EXPECT_EQ(k("GET", "/health?x=1"), "GET /health");
}

// -- pass-through and retries ---------------------------------------------------

TEST_F(resilience_test, success_passes_through_in_one_attempt) {
  start(make_config());
  auto r = call("c1");
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->id, "c1");
  ASSERT_EQ(gw->received.size(), 1u);
  EXPECT_EQ(state_of(me), breaker_state::closed);
}

TEST_F(resilience_test, retries_a_503_with_backoff_and_the_same_id) {
  start(make_config());
  gw->script = {status(503), status(503), ok()};
  auto box = start_call("same-id");
  EXPECT_FALSE(box->done);
  EXPECT_EQ(gw->received.size(), 1u);
  advance(99ms);
  EXPECT_EQ(gw->received.size(), 1u) << "retried before the backoff";
  advance(1ms); // first backoff: 100 ms
  EXPECT_EQ(gw->received.size(), 2u);
  advance(199ms);
  EXPECT_EQ(gw->received.size(), 2u);
  advance(1ms); // second backoff: 200 ms
  ASSERT_EQ(gw->received.size(), 3u);
  ASSERT_TRUE(box->done);
  ASSERT_TRUE(box->res) << to_string(box->res.error());
  for (auto& c : gw->received)
    EXPECT_EQ(c.id, "same-id");
}

TEST_F(resilience_test, a_call_without_id_gets_one_kept_on_every_attempt) {
  start(make_config());
  gw->script = {net_error(), ok()};
  auto box = start_call(api_call{"", "POST", "/conversations/messages", "{}",
                                 ""});
  advance(100ms);
  ASSERT_TRUE(box->done);
  ASSERT_TRUE(box->res);
  ASSERT_EQ(gw->received.size(), 2u);
  EXPECT_FALSE(gw->received[0].id.empty());
  EXPECT_EQ(gw->received[0].id, gw->received[1].id);
}

TEST_F(resilience_test, retries_network_timeout_and_429) {
  start(make_config());
  gw->script = {net_error(), status(429), status(504), ok()};
  auto r = start_call("c1");
  advance(100ms);
  advance(200ms);
  EXPECT_EQ(gw->received.size(), 3u) << "3 attempts at most";
  ASSERT_TRUE(r->done);
  ASSERT_FALSE(r->res);
  EXPECT_EQ(classify(r->res.error()).status, 504) << "the last error";
}

TEST_F(resilience_test, does_not_retry_validation_auth_or_501) {
  start(make_config());
  for (int32_t code : {400, 401, 403, 404, 422, 501}) {
    gw->received.clear();
    gw->script = {status(code), ok()};
    auto r = call("c" + std::to_string(code));
    ASSERT_FALSE(r) << code;
    EXPECT_EQ(classify(r.error()).status, code);
    EXPECT_EQ(gw->received.size(), 1u) << code << " was retried";
  }
  // 4xx answers mean the endpoint is alive: the breaker stays closed
  // (501 counts as a failure, 1 of 6 is below 50 %)
  EXPECT_EQ(state_of(me), breaker_state::closed);
}

TEST_F(resilience_test, returns_the_original_error_after_max_attempts) {
  start(make_config());
  gw->fallback = status(502);
  auto r = start_call("c1");
  advance(100ms);
  advance(200ms);
  advance(400ms);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(gw->received.size(), 3u);
  ASSERT_FALSE(r->res);
  auto c = classify(r->res.error());
  EXPECT_EQ(c.status, 502);
  EXPECT_EQ(c.code, "x");
}

TEST_F(resilience_test, per_call_max_attempts) {
  auto rc = make_config();
  rc.max_attempts = [](const api_call& c) {
    return c.method == "POST" ? 1 : 0; // 0 = the policy's 3
  };
  start(std::move(rc));
  gw->fallback = status(503);
  auto p = start_call(api_call{"p", "POST", "/conversations/messages", "{}", ""});
  ASSERT_TRUE(p->done);
  EXPECT_EQ(gw->received.size(), 1u);
  auto g = start_call("g");
  advance(100ms);
  advance(200ms);
  EXPECT_TRUE(g->done);
  EXPECT_EQ(gw->received.size(), 4u);
}

TEST_F(resilience_test, honours_retry_after_when_longer_than_the_backoff) {
  start(make_config());
  gw->script = {status(503, "2"), ok()};
  auto r = start_call("c1");
  advance(1999ms);
  EXPECT_EQ(gw->received.size(), 1u) << "retried before Retry-After";
  EXPECT_FALSE(r->done);
  advance(1ms);
  EXPECT_EQ(gw->received.size(), 2u);
  ASSERT_TRUE(r->done);
  EXPECT_TRUE(r->res);
}

TEST_F(resilience_test, gives_up_at_once_if_retry_after_exceeds_the_max) {
  start(make_config()); // max_retry_after 5 s
  gw->script = {status(429, "60"), ok()};
  auto r = call("c1");
  ASSERT_FALSE(r);
  auto c = classify(r.error());
  EXPECT_EQ(c.status, 429);
  EXPECT_EQ(c.retry_after_ms, 60000) << "the hint is passed on";
  EXPECT_EQ(gw->received.size(), 1u);
}

TEST_F(resilience_test, gives_up_when_the_wait_would_pass_the_deadline) {
  start(make_config());
  gw->script = {status(503, "3"), ok()};
  auto r = start_call("c1", "/users/me", 2s);
  ASSERT_TRUE(r->done) << "waited although the deadline is before Retry-After";
  ASSERT_FALSE(r->res);
  EXPECT_EQ(classify(r->res.error()).status, 503);
  EXPECT_EQ(gw->received.size(), 1u);
}

TEST_F(resilience_test, exhausted_budget_returns_the_original_error) {
  auto rc = make_config();
  rc.budget = std::make_shared<retry_budget>(retry_budget::options{10, 0.2});
  auto budget = rc.budget;
  start(std::move(rc));
  // other repositories sharing the budget saw an outage: 5 of 10 left
  for (int i = 0; i < 5; ++i)
    budget->on_failure();
  ASSERT_FALSE(budget->can_retry());
  gw->script = {status(503), ok()};
  auto r = call("c1");
  ASSERT_FALSE(r) << "retried although the budget is exhausted";
  EXPECT_EQ(classify(r.error()).status, 503);
  EXPECT_FALSE(is_circuit_open(r.error()));
  EXPECT_EQ(gw->received.size(), 1u);
  // successes refill it: 4 + 12 x 0.2 = 6.4; a failure leaves 5.4 > 5
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(call("ok" + std::to_string(i)));
  gw->script = {status(503), ok()};
  auto r2 = start_call("c2");
  advance(100ms);
  ASSERT_TRUE(r2->done);
  EXPECT_TRUE(r2->res) << "budget refilled: should have retried";
}

TEST_F(resilience_test, the_budget_is_shared_by_all_calls_of_the_client) {
  auto rc = make_config();
  rc.retry.max_attempts = 2;
  start(std::move(rc));
  // endpoint A fails (one retry each): 2 tokens per call
  gw->fallback = status(503);
  for (int i = 0; i < 2; ++i) {
    auto r = start_call("a" + std::to_string(i), "/system/status");
    advance(100ms);
    ASSERT_TRUE(r->done);
  }
  // 10 - 4 = 6 tokens; a failure on another endpoint leaves 5: no retry
  gw->received.clear();
  gw->script = {status(503), ok()};
  auto r = call("b", "/users/me/family");
  ASSERT_FALSE(r);
  EXPECT_EQ(gw->received.size(), 1u);
}

// -- breaker transitions -------------------------------------------------------

TEST_F(resilience_test, opens_at_the_threshold_only_after_minimum_calls) {
  start(no_retry_config());
  gw->fallback = status(503);
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(call("f" + std::to_string(i)));
  EXPECT_EQ(state_of(me), breaker_state::closed) << "opened below min calls";
  EXPECT_EQ(gw->health_checks, 0);
  EXPECT_FALSE(call("f3"));
  EXPECT_EQ(state_of(me), breaker_state::open);
  ASSERT_EQ(seen->size(), 1u);
  auto& s = seen->back();
  EXPECT_EQ(s.endpoint, me);
  EXPECT_EQ(s.state, breaker_state::open);
  EXPECT_EQ(s.calls, 4u);
  EXPECT_DOUBLE_EQ(s.failure_rate, 1.0);
  EXPECT_EQ(s.open_count, 1u);
  EXPECT_EQ(s.next_probe_in, caf::timespan{1s});
  EXPECT_EQ(s.reason, "failure_rate");
  EXPECT_EQ(gw->health_checks, 1) << "the supervisor was not told";
  // other endpoints are not affected
  gw->fallback = ok();
  EXPECT_TRUE(call("other", "/system/status"));
}

TEST_F(resilience_test, a_failure_rate_below_the_threshold_keeps_it_closed) {
  start(no_retry_config());
  gw->script = {status(503), ok(), ok(), ok(), status(503), ok(), ok()};
  for (int i = 0; i < 7; ++i)
    (void) call("c" + std::to_string(i));
  EXPECT_EQ(state_of(me), breaker_state::closed);
  EXPECT_TRUE(seen->empty());
}

TEST_F(resilience_test, fails_fast_while_open_with_the_circuit_error) {
  start(no_retry_config());
  open_breaker();
  auto before = gw->received.size();
  advance(400ms);
  auto r = call("ff");
  ASSERT_FALSE(r);
  EXPECT_TRUE(is_circuit_open(r.error()));
  auto c = classify(r.error());
  EXPECT_EQ(c.cls, error_class::server_error);
  EXPECT_EQ(c.status, 503);
  EXPECT_EQ(c.code, "circuit_open");
  EXPECT_EQ(c.retry_after_ms, 600) << "time until the next probe";
  EXPECT_NE(c.message.find("GET /users/me"), std::string::npos) << c.message;
  EXPECT_NE(c.message.find("600 ms"), std::string::npos) << c.message;
  EXPECT_EQ(gw->received.size(), before) << "an open breaker sent a call";
}

TEST_F(resilience_test, half_open_after_the_wait_without_traffic_then_closes) {
  start(no_retry_config());
  open_breaker();
  advance(999ms);
  EXPECT_EQ(seen_states().back(), breaker_state::open);
  advance(1ms); // the client's timer moves it on without any call
  ASSERT_EQ(seen_states().back(), breaker_state::half_open);
  EXPECT_EQ(seen->back().reason, "open_wait_elapsed");
  EXPECT_TRUE(call("p1"));
  EXPECT_EQ(state_of(me), breaker_state::half_open);
  EXPECT_TRUE(call("p2")); // successes_to_close = 2
  EXPECT_EQ(state_of(me), breaker_state::closed);
  EXPECT_EQ(seen_states(),
            (std::vector<breaker_state>{breaker_state::open,
                                        breaker_state::half_open,
                                        breaker_state::closed}));
  EXPECT_EQ(seen->back().reason, "probes_succeeded");
}

TEST_F(resilience_test, a_failed_probe_reopens_with_a_longer_wait) {
  start(no_retry_config());
  open_breaker();
  advance(1s);
  gw->fallback = status(503);
  EXPECT_FALSE(call("p1"));
  ASSERT_EQ(seen_states().back(), breaker_state::open);
  EXPECT_EQ(seen->back().reason, "probes_failed");
  EXPECT_EQ(seen->back().open_count, 2u);
  EXPECT_EQ(seen->back().next_probe_in, caf::timespan{2s});
  EXPECT_EQ(gw->health_checks, 2);
  advance(1s);
  EXPECT_EQ(state_of(me), breaker_state::open);
  advance(1s);
  EXPECT_EQ(state_of(me), breaker_state::half_open);
}

TEST_F(resilience_test, half_open_admits_at_most_n_concurrent_probes) {
  start(no_retry_config());
  open_breaker();
  advance(1s);
  gw->fallback = hold();
  auto before = gw->received.size();
  auto p1 = start_call("p1");
  auto p2 = start_call("p2");
  auto p3 = start_call("p3");
  EXPECT_EQ(gw->received.size(), before + 2) << "more than 2 probes sent";
  EXPECT_FALSE(p1->done);
  EXPECT_FALSE(p2->done);
  ASSERT_TRUE(p3->done);
  ASSERT_FALSE(p3->res);
  EXPECT_TRUE(is_circuit_open(p3->res.error()));
  EXPECT_NE(classify(p3->res.error()).message.find("probe"), std::string::npos);
  // the probes answer: both succeed, the breaker closes
  release(true);
  EXPECT_TRUE(p1->done && p1->res);
  EXPECT_TRUE(p2->done && p2->res);
  EXPECT_EQ(state_of(me), breaker_state::closed);
}

TEST_F(resilience_test, a_probe_that_never_answers_times_out_and_reopens) {
  start(no_retry_config());
  open_breaker();
  advance(1s);
  gw->fallback = hold();
  auto p1 = start_call("p1", "/users/me", 10s);
  EXPECT_EQ(state_of(me), breaker_state::half_open);
  advance(1999ms);
  EXPECT_EQ(state_of(me), breaker_state::half_open);
  advance(1ms); // probe_timeout: counted as a failed probe, slot freed
  ASSERT_EQ(seen_states().back(), breaker_state::open);
  EXPECT_EQ(seen->back().reason, "probe_timed_out");
  // the late answer is delivered to its caller but not counted
  release(true);
  EXPECT_TRUE(p1->done && p1->res);
  EXPECT_EQ(state_of(me), breaker_state::open);
  // not stuck: after the (longer) wait, probes are admitted again
  gw->fallback = ok();
  advance(2s);
  EXPECT_EQ(state_of(me), breaker_state::half_open);
  EXPECT_TRUE(call("p2"));
  EXPECT_TRUE(call("p3"));
  EXPECT_EQ(state_of(me), breaker_state::closed);
}

TEST_F(resilience_test, a_retry_loop_stops_when_the_breaker_opens) {
  start(make_config()); // 3 attempts
  gw->fallback = status(503);
  // 3 calls x 1 attempt would not open; the retries of the first call do
  auto r = start_call("c1");
  advance(100ms);
  advance(200ms);
  ASSERT_TRUE(r->done);
  auto r2 = start_call("c2");
  ASSERT_TRUE(r2->done);
  EXPECT_EQ(gw->received.size(), 4u) << "4th failure opens the breaker";
  ASSERT_FALSE(r2->res);
  EXPECT_EQ(classify(r2->res.error()).status, 503)
    << "a call that reached the gateway keeps its own error";
  EXPECT_EQ(state_of(me), breaker_state::open);
  auto r3 = call("c3");
  ASSERT_FALSE(r3);
  EXPECT_TRUE(is_circuit_open(r3.error()));
  EXPECT_EQ(gw->received.size(), 4u);
}

TEST_F(resilience_test, validation_errors_do_not_count_as_failures) {
  start(no_retry_config());
  gw->fallback = status(422);
  for (int i = 0; i < 8; ++i)
    EXPECT_FALSE(call("v" + std::to_string(i)));
  EXPECT_EQ(state_of(me), breaker_state::closed);
  EXPECT_EQ(gw->health_checks, 0);
}

TEST_F(resilience_test, a_new_watcher_gets_the_breakers_that_are_not_closed) {
  start(no_retry_config());
  open_breaker();
  EXPECT_TRUE(call("ok", "/system/status"));
  auto log = std::make_shared<std::vector<breaker_snapshot>>();
  auto l2 = sys.spawn([log]() -> breaker_listener_actor::behavior_type {
    return {[log](breaker_atom, const breaker_snapshot& s) {
      log->push_back(s);
    }};
  });
  self->send(client, watch_atom::value, l2);
  sched.run();
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ(log->front().endpoint, me);
  EXPECT_EQ(log->front().state, breaker_state::open);
  auto all = breakers();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].endpoint, "GET /system/status");
  EXPECT_EQ(all[1].endpoint, me);
  EXPECT_NE(to_string(all[1]).find("open"), std::string::npos);
  self->send_exit(l2, caf::exit_reason::user_shutdown);
  sched.run();
}
