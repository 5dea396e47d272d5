// The supervisor with fake transports under CAF's deterministic test
// coordinator (virtual time, no threads, no sleeping).
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "messages/supervisor.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

using kill_atom = caf::atom_constant<caf::atom("kill")>;
using hold_atom = caf::atom_constant<caf::atom("hold")>;
using lose_atom = caf::atom_constant<caf::atom("lose")>;

/// What the fake network looks like; shared by the test and the fakes.
struct fake_net {
  std::map<transport_mode, bool> reachable{{transport_mode::ipc, true},
                                           {transport_mode::ws, true},
                                           {transport_mode::http, true}};
  std::map<transport_mode, int> connects;
  std::map<transport_mode, int> disconnects;
  std::map<transport_mode, int> spawned;
  /// call ids received per transport, in order
  std::map<transport_mode, std::vector<std::string>> received;
  std::map<transport_mode, caf::actor> actors;
  /// tokens the fake gateway accepts
  std::string valid_token = "t-good";
  /// what a refresh hands out; empty = the valid token
  std::string refresh_gives;
};

struct fake_transport_state {
  bool up = false;
  bool hold = false; ///< keep requests unanswered
  std::vector<caf::response_promise> held;
};

caf::behavior fake_transport(caf::stateful_actor<fake_transport_state>* self,
                             std::shared_ptr<fake_net> net, transport_mode m,
                             transport_listener_actor listener) {
  auto go_down = [=](const std::string& why) {
    self->state.up = false;
    for (auto& rp : self->state.held)
      rp.deliver(make_engine_error(error_class::network, why));
    self->state.held.clear();
    self->send(listener, tstate_atom::value, m, transport_status::down, why);
  };
  return {
    [=](connect_atom) {
      ++net->connects[m];
      if (net->reachable[m]) {
        self->state.up = true;
        self->send(listener, tstate_atom::value, m, transport_status::up,
                   std::string{});
      } else {
        go_down("unreachable");
      }
    },
    [=](disconnect_atom) {
      ++net->disconnects[m];
      self->state.up = false;
      self->send(listener, tstate_atom::value, m, transport_status::idle,
                 std::string{});
    },
    [=](token_atom, const std::string&) {},
    [=](request_atom, const api_call& call,
        caf::timespan) -> caf::response_promise {
      auto rp = self->make_response_promise();
      if (!self->state.up) {
        rp.deliver(make_engine_error(error_class::network, "not connected"));
        return rp;
      }
      net->received[m].push_back(call.id);
      if (self->state.hold) {
        self->state.held.push_back(rp);
        return rp;
      }
      api_reply r;
      r.id = call.id;
      r.via = m;
      if (call.path == "/users/me" && call.token != net->valid_token) {
        r.status = 401;
        r.body = R"({"success":false,"message":"expired","code":"token_expired"})";
      } else {
        r.status = 200;
        r.body = R"({"success":true,"data":{}})";
      }
      rp.deliver(std::move(r));
      return rp;
    },
    [=](kill_atom) { // the link dies (detected by the transport)
      net->reachable[m] = false;
      go_down("connection lost");
    },
    [=](hold_atom, bool on) { self->state.hold = on; },
    [=](lose_atom) { // held requests fail with network, the link stays up
      for (auto& rp : self->state.held)
        rp.deliver(make_engine_error(error_class::network, "reply lost"));
      self->state.held.clear();
    },
  };
}

/// A token manager that hands out "t-old" until refreshed.
struct fake_tokens_state {
  std::string token = "t-old";
  int refreshes = 0;
  int token_asks = 0; ///< token_atom requests answered
};

caf::behavior fake_tokens(caf::stateful_actor<fake_tokens_state>* self,
                          std::shared_ptr<fake_net> net) {
  return {
    [=](token_atom) {
      ++self->state.token_asks;
      return self->state.token;
    },
    [=](refresh_atom, const std::string&) {
      ++self->state.refreshes;
      self->state.token = net->refresh_gives.empty() ? net->valid_token
                                                     : net->refresh_gives;
      return self->state.token;
    },
    [=](watch_atom, const auth_listener_actor& l) {
      self->send(l, auth_atom::value, auth_state::logged_in);
    },
    [=](caf::get_atom) { return self->state.refreshes; },
    [=](caf::get_atom, token_atom) { return self->state.token_asks; },
  };
}

struct supervisor_test : ::testing::Test {
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    return cfg;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  caf::scheduler::test_coordinator& sched{
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())};
  caf::scoped_actor self{sys};
  std::shared_ptr<fake_net> net = std::make_shared<fake_net>();
  supervisor_actor sup;
  std::vector<connection_state> states;
  std::vector<server_event> events;

  supervisor_config make_config() {
    supervisor_config sc;
    sc.backoff = {100ms, 2.0, 0.0, 1000ms};
    sc.health_interval = 30s;
    sc.health_timeout = 2s;
    sc.failback_probes = 2;
    auto n = net;
    sc.factory = [n](caf::actor_system& sys, transport_mode m,
                     transport_listener_actor l) {
      ++n->spawned[m];
      auto a = sys.spawn(fake_transport, n, m, l);
      n->actors[m] = a;
      return caf::actor_cast<transport_actor>(a);
    };
    return sc;
  }

  void start(supervisor_config sc) {
    sup = spawn_supervisor(sys, std::move(sc));
    self->send(sup, watch_atom::value,
               caf::actor_cast<engine_listener_actor>(self));
    sched.run();
    self->send(sup, connect_atom::value);
    sched.run();
  }

  void start() { start(make_config()); }

  ~supervisor_test() override {
    if (sup)
      self->send_exit(sup, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Drains self's mailbox into `states`/`events`; returns the last state.
  connection_state last_state() {
    bool more = true;
    while (more)
      self->receive(
        [&](state_atom, const connection_state& cs) { states.push_back(cs); },
        [&](event_atom, const server_event& ev) { events.push_back(ev); },
        caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    return states.empty() ? connection_state{} : states.back();
  }

  /// Sends a request and runs the scheduler; returns the reply or error.
  caf::expected<api_reply> call(const std::string& id,
                                const std::string& path = "/health",
                                bool auth = false) {
    api_call c{id, "GET", path, "", ""};
    auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                            caf::timespan{5s}, auth);
    sched.run();
    caf::expected<api_reply> res{caf::error{}};
    rh.receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }
};

} // namespace

TEST_F(supervisor_test, starts_offline_and_connects_ipc_first) {
  sup = spawn_supervisor(sys, make_config());
  self->send(sup, watch_atom::value,
             caf::actor_cast<engine_listener_actor>(self));
  sched.run();
  EXPECT_EQ(last_state().state, link_state::offline);
  self->send(sup, connect_atom::value);
  sched.run();
  auto cs = last_state();
  EXPECT_EQ(cs.state, link_state::connected);
  EXPECT_EQ(cs.mode, transport_mode::ipc);
  EXPECT_EQ(net->connects[transport_mode::ws], 0);
  auto r = call("c1");
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->via, transport_mode::ipc);
}

TEST_F(supervisor_test, fails_over_ipc_to_ws_to_http_and_reports_degraded) {
  start();
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  auto cs = last_state();
  EXPECT_EQ(cs.state, link_state::connected);
  EXPECT_EQ(cs.mode, transport_mode::ws);
  EXPECT_EQ(call("c2")->via, transport_mode::ws);
  self->send(net->actors[transport_mode::ws], kill_atom::value);
  sched.run();
  cs = last_state();
  EXPECT_EQ(cs.state, link_state::degraded);
  EXPECT_EQ(cs.mode, transport_mode::http);
  EXPECT_EQ(call("c3")->via, transport_mode::http);
}

TEST_F(supervisor_test, fails_back_to_ipc_after_probes_pass) {
  start();
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  ASSERT_EQ(last_state().mode, transport_mode::ws);
  // ipc still unreachable: the first probe (100 ms) fails, backoff grows
  advance(100ms);
  EXPECT_EQ(net->connects[transport_mode::ipc], 2);
  EXPECT_EQ(last_state().mode, transport_mode::ws);
  net->reachable[transport_mode::ipc] = true;
  advance(200ms); // second probe: connects, health probes pass, fail back
  auto cs = last_state();
  EXPECT_EQ(cs.state, link_state::connected);
  EXPECT_EQ(cs.mode, transport_mode::ipc);
  EXPECT_EQ(net->connects[transport_mode::ipc], 3);
  // two health probes went through ipc before the switch
  EXPECT_GE(net->received[transport_mode::ipc].size(), 2u);
  EXPECT_EQ(call("c4")->via, transport_mode::ipc);
}

TEST_F(supervisor_test, resends_in_flight_calls_with_the_same_id) {
  start();
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  sched.run();
  api_call c{"keep-my-id", "POST", "/conversations/messages", "{}", ""};
  auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                          caf::timespan{5s}, false);
  sched.run();
  ASSERT_EQ(net->received[transport_mode::ipc].size(), 1u);
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  caf::expected<api_reply> res{caf::error{}};
  rh.receive([&](api_reply& r) { res = std::move(r); },
             [&](caf::error& e) { res = std::move(e); });
  ASSERT_TRUE(res) << to_string(res.error());
  EXPECT_EQ(res->via, transport_mode::ws);
  EXPECT_EQ(res->id, "keep-my-id");
  ASSERT_EQ(net->received[transport_mode::ws].size(), 1u);
  EXPECT_EQ(net->received[transport_mode::ws][0], "keep-my-id");
}

TEST_F(supervisor_test, reconnecting_when_everything_is_down_then_recovers) {
  net->reachable[transport_mode::ipc] = false;
  net->reachable[transport_mode::ws] = false;
  net->reachable[transport_mode::http] = false;
  start();
  auto cs = last_state();
  EXPECT_EQ(cs.state, link_state::reconnecting);
  EXPECT_EQ(cs.next_attempt_in, caf::timespan{100ms});
  // a call made now waits for a transport, within its deadline
  api_call c{"waits", "GET", "/health", "", ""};
  auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                          caf::timespan{5s}, false);
  sched.run();
  net->reachable[transport_mode::ws] = true;
  advance(100ms); // all three probes fire; only ws answers
  cs = last_state();
  EXPECT_EQ(cs.state, link_state::connected);
  EXPECT_EQ(cs.mode, transport_mode::ws);
  caf::expected<api_reply> res{caf::error{}};
  rh.receive([&](api_reply& r) { res = std::move(r); },
             [&](caf::error& e) { res = std::move(e); });
  ASSERT_TRUE(res) << to_string(res.error());
  EXPECT_EQ(res->via, transport_mode::ws);
}

TEST_F(supervisor_test, a_call_without_any_transport_fails_at_its_deadline) {
  net->reachable[transport_mode::ipc] = false;
  net->reachable[transport_mode::ws] = false;
  net->reachable[transport_mode::http] = false;
  auto sc = make_config();
  sc.backoff = {10s, 2.0, 0.0, 10s};
  start(std::move(sc));
  api_call c{"doomed", "GET", "/health", "", ""};
  auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                          caf::timespan{1s}, false);
  sched.run();
  advance(1s);
  caf::error err;
  rh.receive([](api_reply&) { FAIL() << "unexpected reply"; },
             [&](caf::error& e) { err = std::move(e); });
  EXPECT_EQ(classify(err).cls, error_class::network);
  EXPECT_TRUE(classify(err).retryable);
}

TEST_F(supervisor_test, restarts_a_crashed_transport) {
  start();
  ASSERT_EQ(net->spawned[transport_mode::ipc], 1);
  self->send_exit(net->actors[transport_mode::ipc],
                  caf::make_error(caf::sec::runtime_error));
  sched.run();
  EXPECT_EQ(net->spawned[transport_mode::ipc], 2);
  EXPECT_EQ(last_state().mode, transport_mode::ws); // failed over meanwhile
  advance(100ms); // probe the restarted ipc transport, fail back
  EXPECT_EQ(last_state().mode, transport_mode::ipc);
}

TEST_F(supervisor_test, refreshes_once_on_401_and_retries) {
  start();
  auto tm = sys.spawn(fake_tokens, net);
  self->send(sup, auth_atom::value,
             caf::actor_cast<token_manager_actor>(tm));
  sched.run();
  auto r = call("me", "/users/me", true);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200);
  // "me" was sent twice: with the old token, then with the refreshed one
  EXPECT_EQ(std::count(net->received[transport_mode::ipc].begin(),
                       net->received[transport_mode::ipc].end(), "me"),
            2);
  auto rh = self->request(tm, caf::infinite, caf::get_atom::value);
  sched.run();
  rh.receive([](int n) { EXPECT_EQ(n, 1); }, [](caf::error&) { FAIL(); });
  self->send_exit(tm, caf::exit_reason::user_shutdown);
}

TEST_F(supervisor_test, non_2xx_replies_become_classified_errors) {
  start();
  auto tm = sys.spawn(fake_tokens, net);
  net->refresh_gives = "t-still-bad"; // refresh does not help either
  self->send(sup, auth_atom::value,
             caf::actor_cast<token_manager_actor>(tm));
  sched.run();
  auto r = call("me2", "/users/me", true);
  ASSERT_FALSE(r);
  auto c = classify(r.error());
  EXPECT_EQ(c.cls, error_class::authentication);
  EXPECT_EQ(c.status, 401);
  EXPECT_EQ(c.code, "token_expired");
  self->send_exit(tm, caf::exit_reason::user_shutdown);
}

TEST_F(supervisor_test, disconnect_goes_offline) {
  start();
  self->send(sup, disconnect_atom::value);
  sched.run();
  auto cs = last_state();
  EXPECT_EQ(cs.state, link_state::offline);
  EXPECT_EQ(cs.reason, "disconnected");
  auto r = call("late");
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::network);
}

TEST_F(supervisor_test, a_network_error_on_a_live_link_resets_that_transport) {
  // The transport still believes it is up (a lost reply, a reset socket):
  // the supervisor fails over, closes that transport so the next probe
  // really reconnects it, and fails back once it passes its probes.
  start();
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  sched.run();
  api_call c{"lost-once", "POST", "/conversations/messages", "{}", ""};
  auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                          caf::timespan{5s}, false);
  sched.run();
  self->send(net->actors[transport_mode::ipc], hold_atom::value, false);
  self->send(net->actors[transport_mode::ipc], lose_atom::value);
  sched.run();
  caf::expected<api_reply> res{caf::error{}};
  rh.receive([&](api_reply& r) { res = std::move(r); },
             [&](caf::error& e) { res = std::move(e); });
  ASSERT_TRUE(res) << to_string(res.error());
  EXPECT_EQ(res->via, transport_mode::ws);
  EXPECT_EQ(net->disconnects[transport_mode::ipc], 1);
  EXPECT_EQ(last_state().mode, transport_mode::ws);
  advance(100ms); // probe: reconnect, two health probes, fail back
  auto cs = last_state();
  EXPECT_EQ(cs.state, link_state::connected);
  EXPECT_EQ(cs.mode, transport_mode::ipc);
  EXPECT_EQ(net->connects[transport_mode::ipc], 2);
}

TEST_F(supervisor_test, calls_in_flight_on_a_killed_transport_are_resent) {
  // exit_reason::kill skips a transport's exit handler, so its pending
  // requests are never answered (no CAF request timeout on them either):
  // the down message makes the supervisor send them again elsewhere.
  start();
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  sched.run();
  api_call c{"orphan", "POST", "/conversations/messages", "{}", ""};
  auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                          caf::timespan{5s}, false);
  sched.run();
  ASSERT_EQ(net->received[transport_mode::ipc].size(), 1u);
  self->send_exit(net->actors[transport_mode::ipc], caf::exit_reason::kill);
  sched.run();
  caf::expected<api_reply> res{caf::error{}};
  rh.receive([&](api_reply& r) { res = std::move(r); },
             [&](caf::error& e) { res = std::move(e); });
  ASSERT_TRUE(res) << to_string(res.error());
  EXPECT_EQ(res->via, transport_mode::ws);
  EXPECT_EQ(res->id, "orphan");
  ASSERT_EQ(net->received[transport_mode::ws].size(), 1u);
  EXPECT_EQ(net->spawned[transport_mode::ipc], 2);
}

TEST_F(supervisor_test, calls_time_out_at_their_own_deadlines) {
  // one timer serves every call: each still fails at its own deadline
  start();
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  sched.run();
  auto send = [&](const char* id, caf::timespan t) {
    api_call c{id, "GET", "/health", "", ""};
    return self->request(sup, caf::infinite, request_atom::value, c, t,
                         false);
  };
  auto late = send("late", 3s);
  auto early = send("early", 1s);
  sched.run();
  auto outcome = [&](auto& rh) {
    caf::error err;
    rh.receive([&](api_reply&) { ADD_FAILURE() << "unexpected reply"; },
               [&](caf::error& e) { err = std::move(e); });
    return classify(err);
  };
  advance(999ms);
  advance(1ms);
  auto e = outcome(early);
  EXPECT_EQ(e.cls, error_class::timeout);
  EXPECT_EQ(e.message, "no answer before the deadline");
  advance(2s);
  auto l = outcome(late);
  EXPECT_EQ(l.cls, error_class::timeout);
}

TEST_F(supervisor_test, authenticated_calls_use_the_published_token) {
  start();
  auto tm = sys.spawn(fake_tokens, net);
  net->valid_token = "t-old";
  self->send(sup, auth_atom::value,
             caf::actor_cast<token_manager_actor>(tm));
  sched.run();
  auto asks = [&] {
    int n = -1;
    auto rh = self->request(tm, caf::infinite, caf::get_atom::value,
                            token_atom::value);
    sched.run();
    rh.receive([&](int x) { n = x; }, [](caf::error&) { FAIL(); });
    return n;
  };
  auto before = asks();
  for (int i = 0; i < 3; ++i) {
    auto r = call("me-" + std::to_string(i), "/users/me", true);
    ASSERT_TRUE(r) << to_string(r.error());
    EXPECT_EQ(r->status, 200);
  }
  // no token round trip per call: the token of the last logged_in is used
  EXPECT_EQ(asks(), before);
  self->send_exit(tm, caf::exit_reason::user_shutdown);
}

TEST_F(supervisor_test, health_on_demand_checks_the_active_transport_now) {
  start();
  auto before = net->received[transport_mode::ipc].size();
  self->send(sup, health_atom::value);
  sched.run();
  ASSERT_EQ(net->received[transport_mode::ipc].size(), before + 1);
  EXPECT_EQ(net->received[transport_mode::ipc].back().rfind("health-", 0), 0u);
  // a check that fails (the link died under us) fails over
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  self->send(sup, health_atom::value);
  sched.run();
  EXPECT_EQ(last_state().mode, transport_mode::ws);
}
