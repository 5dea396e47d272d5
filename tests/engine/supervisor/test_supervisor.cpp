// The supervisor with fake transports under CAF's deterministic test
// coordinator (virtual time, no threads, no sleeping).
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "support/caf_fixture.hpp"
#include "messages/supervisor.hpp"
#include "src/core/event_cursor.hpp"
#include "src/model/codec.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

using kill_atom = caf::atom_constant<caf::atom("kill")>;
using hold_atom = caf::atom_constant<caf::atom("hold")>;
using lose_atom = caf::atom_constant<caf::atom("lose")>;
/// The fake transport forwards this event to the supervisor.
using emit_atom = caf::atom_constant<caf::atom("emit")>;

/// What the fake network looks like; shared by the test and the fakes.
struct fake_net {
  std::map<transport_mode, bool> reachable{{transport_mode::ipc, true},
                                           {transport_mode::ws, true},
                                           {transport_mode::http, true}};
  std::map<transport_mode, int> connects;
  std::map<transport_mode, int> disconnects;
  std::map<transport_mode, int> drains; ///< disconnects with drain
  std::map<transport_mode, int> spawned;
  /// call ids received per transport, in order
  std::map<transport_mode, std::vector<std::string>> received;
  /// calls that came on the one-hop path (routed), per transport
  std::map<transport_mode, int> routed;
  /// and the deadlines those calls carried (api_call::deadline)
  std::map<transport_mode, std::vector<caf::actor_clock::time_point>>
    deadlines;
  std::map<transport_mode, caf::actor> actors;
  /// tokens the fake gateway accepts
  std::string valid_token = "t-good";
  /// what a refresh hands out; empty = the valid token
  std::string refresh_gives;
  /// token and resume messages each transport got
  std::map<transport_mode, std::vector<std::string>> tokens;
  std::map<transport_mode, std::vector<std::pair<uint64_t, bool>>> resumes;
  /// history pages the fake gateway serves (path -> body)
  std::map<std::string, std::string> history;
};

/// How a routed call (the supervisor's one-hop path) is answered; a null
/// `back` = a plain request.
struct fake_route {
  caf::actor back;
  uint64_t slot = 0;
  bool auth = false;
};

struct fake_transport_state {
  bool up = false;
  bool hold = false; ///< keep requests unanswered
  std::vector<caf::response_promise> held;
  std::vector<api_call> held_calls; ///< their calls (same order)
  std::vector<fake_route> held_routes; ///< and their routes
  std::vector<uint64_t> held_keys;     ///< and their numbers
  uint64_t next_key = 1;

  fake_transport_state() = default;
  fake_transport_state(const fake_transport_state&) = delete;
  fake_transport_state& operator=(const fake_transport_state&) = delete;
  /// Like the real transport actor's state: killed outright (no exit
  /// handler), it still hands its routed calls back (plain requests are the
  /// supervisor's orphans).
  ~fake_transport_state();
};

/// The routed-call contract of the real transport actor
/// (messages/transport.hpp): a network error goes back to the return
/// address, so does a 401 of an authenticated call; anything else is
/// answered, checked, to the caller.
void answer_network(caf::response_promise& rp, const api_call& call,
                    const fake_route& rt, const std::string& why) {
  auto err = make_engine_error(error_class::network, why);
  if (rt.back)
    rp.delegate(rt.back, request_atom::value, call, rt.slot, rt.auth,
                std::move(err));
  else
    rp.deliver(std::move(err));
}

fake_transport_state::~fake_transport_state() {
  for (std::size_t i = 0; i < held.size(); ++i)
    if (held_routes[i].back)
      answer_network(held[i], held_calls[i], held_routes[i],
                     "transport stopped");
}

void answer_reply(caf::response_promise& rp, const api_call& call,
                  const fake_route& rt, api_reply r) {
  if (!rt.back) {
    rp.deliver(std::move(r));
  } else if (rt.auth && r.status == 401) {
    rp.delegate(rt.back, request_atom::value, call, rt.slot, rt.auth,
                std::move(r));
  } else if (auto checked = check_reply(std::move(r))) {
    rp.deliver(std::move(*checked));
  } else {
    rp.deliver(std::move(checked.error()));
  }
}

caf::behavior fake_transport(caf::stateful_actor<fake_transport_state>* self,
                             std::shared_ptr<fake_net> net, transport_mode m,
                             transport_listener_actor listener) {
  auto go_down = [=](const std::string& why) {
    self->state.up = false;
    auto& st = self->state;
    for (std::size_t i = 0; i < st.held.size(); ++i)
      answer_network(st.held[i], st.held_calls[i], st.held_routes[i], why);
    st.held.clear();
    st.held_calls.clear();
    st.held_routes.clear();
    st.held_keys.clear();
    self->send(listener, tstate_atom::value, m, transport_status::down, why);
  };
  auto on_call = [=](caf::response_promise& rp, const api_call& call,
                     const fake_route& rt) {
    if (!self->state.up) {
      answer_network(rp, call, rt, "not connected");
      return;
    }
    net->received[m].push_back(call.id);
    net->deadlines[m].push_back(call.deadline);
    if (self->state.hold) {
      auto key = self->state.next_key++;
      self->state.held.push_back(rp);
      self->state.held_calls.push_back(call);
      self->state.held_routes.push_back(rt);
      self->state.held_keys.push_back(key);
      if (rt.back) {
        // the real transport's deadline sweep answers a routed call at
        // its deadline (the supervisor has no entry for it)
        auto now = self->clock().now();
        auto left = call.deadline > now ? call.deadline - now
                                        : caf::actor_clock::duration_type{0};
        self->delayed_send(self,
                           std::chrono::duration_cast<caf::timespan>(left),
                           timeout_atom::value, key);
      }
      return;
    }
    api_reply r;
    r.id = call.id;
    r.via = m;
    if (auto h = net->history.find(call.path); h != net->history.end()) {
      r.status = 200;
      r.body = h->second;
    } else if (call.path == "/users/me" && call.token != net->valid_token) {
      r.status = 401;
      r.body = R"({"success":false,"message":"expired","code":"token_expired"})";
    } else {
      r.status = 200;
      r.body = R"({"success":true,"data":{}})";
    }
    answer_reply(rp, call, rt, std::move(r));
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
    [=](disconnect_atom, bool drain) {
      ++net->disconnects[m];
      if (drain)
        ++net->drains[m];
      self->state.up = false;
      self->send(listener, tstate_atom::value, m, transport_status::idle,
                 std::string{});
    },
    [=](token_atom, const std::string& tok) { net->tokens[m].push_back(tok); },
    [=](resume_atom, uint64_t seq, bool now) {
      net->resumes[m].emplace_back(seq, now);
    },
    [=](request_atom, const api_call& call,
        caf::timespan) -> caf::response_promise {
      auto rp = self->make_response_promise();
      on_call(rp, call, fake_route{});
      return rp;
    },
    [=](request_atom, const api_call& call, const caf::actor& back,
        uint64_t slot, bool auth) -> caf::response_promise {
      auto rp = self->make_response_promise();
      ++net->routed[m];
      on_call(rp, call, fake_route{back, slot, auth});
      return rp;
    },
    [=](kill_atom) { // the link dies (detected by the transport)
      net->reachable[m] = false;
      go_down("connection lost");
    },
    [=](hold_atom, bool on) { self->state.hold = on; },
    [=](timeout_atom, uint64_t key) {
      auto& st = self->state;
      for (std::size_t i = 0; i < st.held_keys.size(); ++i) {
        if (st.held_keys[i] != key)
          continue;
        st.held[i].deliver(make_engine_error(error_class::timeout,
                                             "no answer before the deadline"));
        st.held.erase(st.held.begin() + i);
        st.held_calls.erase(st.held_calls.begin() + i);
        st.held_routes.erase(st.held_routes.begin() + i);
        st.held_keys.erase(st.held_keys.begin() + i);
        return;
      }
    },
    [=](caf::ok_atom) { // answers the held requests (history pages)
      auto held = std::move(self->state.held);
      auto calls = std::move(self->state.held_calls);
      auto routes = std::move(self->state.held_routes);
      self->state.held.clear();
      self->state.held_calls.clear();
      self->state.held_routes.clear();
      self->state.held_keys.clear();
      self->state.hold = false;
      for (std::size_t i = 0; i < held.size(); ++i) {
        api_reply r;
        r.id = calls[i].id;
        r.via = m;
        r.status = 200;
        auto h = net->history.find(calls[i].path);
        r.body = h != net->history.end() ? h->second
                                         : R"({"success":true,"data":{}})";
        answer_reply(held[i], calls[i], routes[i], std::move(r));
      }
    },
    [=](emit_atom, server_event ev) {
      ev.via = m;
      self->send(listener, event_atom::value, std::move(ev));
    },
    [=](lose_atom) { // held requests fail with network, the link stays up
      auto& st = self->state;
      for (std::size_t i = 0; i < st.held.size(); ++i)
        answer_network(st.held[i], st.held_calls[i], st.held_routes[i],
                       "reply lost");
      st.held.clear();
      st.held_calls.clear();
      st.held_routes.clear();
      st.held_keys.clear();
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
    [=](caf::put_atom, const std::string& tok) { self->state.token = tok; },
  };
}

/// Every test runs twice: with the one-hop path (param true: fresh calls are
/// delegated to the fake transport, which implements the routed-call
/// contract) and without it (every call through the call router).
struct supervisor_test : aico::test::caf_fixture,
                         ::testing::WithParamInterface<bool> {
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
    sc.one_hop = GetParam();
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

  /// How many token_atom requests the fake token manager `tm` answered.
  int token_asks(const caf::actor& tm) {
    int n = -1;
    auto rh = self->request(tm, caf::infinite, caf::get_atom::value,
                            token_atom::value);
    sched.run();
    rh.receive([&](int x) { n = x; }, [](caf::error&) { FAIL(); });
    return n;
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

TEST_P(supervisor_test, starts_offline_and_connects_ipc_first) {
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

TEST_P(supervisor_test, fails_over_ipc_to_ws_to_http_and_reports_degraded) {
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

TEST_P(supervisor_test, fails_back_to_ipc_after_probes_pass) {
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
  // ws, replaced, is told to drain (finish its calls in flight, then close)
  EXPECT_EQ(net->drains[transport_mode::ws], 1);
}

TEST_P(supervisor_test, resends_in_flight_calls_with_the_same_id) {
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

TEST_P(supervisor_test, a_resent_call_carries_the_one_deadline_it_got) {
  start();
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  sched.run();
  auto t0 = sched.clock().now();
  api_call c{"one-deadline", "POST", "/conversations/messages", "{}", ""};
  auto rh = self->request(sup, caf::infinite, request_atom::value, c,
                          caf::timespan{5s}, false);
  sched.run();
  ASSERT_EQ(net->deadlines[transport_mode::ipc].size(), 1u);
  EXPECT_EQ(net->deadlines[transport_mode::ipc][0], t0 + 5s);
  sched.advance_time(2s); // time passes on the first transport
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  caf::expected<api_reply> res{caf::error{}};
  rh.receive([&](api_reply& r) { res = std::move(r); },
             [&](caf::error& e) { res = std::move(e); });
  ASSERT_TRUE(res) << to_string(res.error());
  EXPECT_EQ(res->via, transport_mode::ws);
  // the re-send has the same deadline, not a fresh 5 s
  ASSERT_EQ(net->deadlines[transport_mode::ws].size(), 1u);
  EXPECT_EQ(net->deadlines[transport_mode::ws][0], t0 + 5s);
}

TEST_P(supervisor_test, reconnecting_when_everything_is_down_then_recovers) {
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

TEST_P(supervisor_test, a_call_without_any_transport_fails_at_its_deadline) {
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

TEST_P(supervisor_test, restarts_a_crashed_transport) {
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

TEST_P(supervisor_test, refreshes_once_on_401_and_retries) {
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

TEST_P(supervisor_test, non_2xx_replies_become_classified_errors) {
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

TEST_P(supervisor_test, disconnect_goes_offline) {
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

TEST_P(supervisor_test, a_network_error_on_a_live_link_resets_that_transport) {
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

TEST_P(supervisor_test, calls_in_flight_on_a_killed_transport_are_resent) {
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

TEST_P(supervisor_test, calls_time_out_at_their_own_deadlines) {
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

TEST_P(supervisor_test, authenticated_calls_use_the_published_token) {
  start();
  auto tm = sys.spawn(fake_tokens, net);
  net->valid_token = "t-old";
  self->send(sup, auth_atom::value,
             caf::actor_cast<token_manager_actor>(tm));
  sched.run();
  auto asks = [&] { return token_asks(tm); };
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

TEST_P(supervisor_test, periodic_health_checks_ask_for_a_token_only_near_expiry) {
  start();
  auto tm = sys.spawn(fake_tokens, net);
  auto asks = [&] { return token_asks(tm); };
  auto set_token = [&](const std::string& tok) {
    caf::anon_send(caf::actor_cast<caf::actor>(tm), caf::put_atom::value, tok);
    sched.run();
  };
  // a JWT valid until 2100: the checks need not ask the token manager
  set_token("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
            "eyJzdWIiOiIxIiwiZXhwIjo0MTAyNDQ0ODAwfQ.sig");
  self->send(sup, auth_atom::value,
             caf::actor_cast<token_manager_actor>(tm));
  sched.run();
  auto before = asks();
  for (int i = 0; i < 3; ++i)
    advance(31s + 1024ms); // a periodic check (on the grid) each time
  EXPECT_EQ(asks(), before);
  // a token long expired (exp 1970): every check asks
  set_token("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
            "eyJzdWIiOiIxIiwiZXhwIjoxMDAwfQ.sig");
  // the token manager publishes logged_in after a refresh: the supervisor
  // takes the new token
  caf::anon_send(caf::actor_cast<auth_listener_actor>(sup), auth_atom::value,
                 auth_state::logged_in);
  sched.run();
  before = asks();
  for (int i = 0; i < 3; ++i)
    advance(31s + 1024ms);
  EXPECT_GE(asks(), before + 3);
  self->send_exit(tm, caf::exit_reason::user_shutdown);
}

TEST_P(supervisor_test, health_on_demand_checks_the_active_transport_now) {
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

// -- the event stream (issue 15, defects 5 and 9) ------------------------------------

namespace {

server_event make_event(uint64_t seq, std::string topic = "message",
                        std::string data = {}) {
  server_event ev;
  ev.topic = std::move(topic);
  ev.seq = seq;
  ev.data = data.empty() ? R"({"id":"e-)" + std::to_string(seq)
                             + R"(","conversation_id":"c1","seq":)"
                             + std::to_string(seq % 1000) + "}"
                         : std::move(data);
  return ev;
}

std::vector<uint64_t> seqs_of(const std::vector<server_event>& evs) {
  std::vector<uint64_t> res;
  for (auto& e : evs)
    res.push_back(e.seq);
  return res;
}

} // namespace

struct supervisor_events_test : supervisor_test {
  void emit(transport_mode m, server_event ev) {
    self->send(net->actors[m], emit_atom::value, std::move(ev));
    sched.run();
  }

  event_stats stats() {
    auto rh = self->request(sup, caf::infinite, stats_atom::value);
    sched.run();
    event_stats res;
    rh.receive([&](event_stats& x) { res = x; },
               [&](caf::error& e) { ADD_FAILURE() << describe(e); });
    return res;
  }

  caf::actor tokens;

  void login() {
    tokens = sys.spawn(fake_tokens, net);
    self->send(sup, auth_atom::value,
               caf::actor_cast<token_manager_actor>(tokens));
    sched.run();
  }

  ~supervisor_events_test() override {
    if (tokens)
      self->send_exit(tokens, caf::exit_reason::user_shutdown);
  }
};

TEST_P(supervisor_events_test, repeats_are_dropped_by_seq) {
  start();
  for (uint64_t seq : {1001, 1002, 1002, 1001, 1003})
    emit(transport_mode::ipc, make_event(seq));
  last_state();
  EXPECT_EQ(seqs_of(events), (std::vector<uint64_t>{1001, 1002, 1003}));
  auto st = stats();
  EXPECT_EQ(st.delivered, 3u);
  EXPECT_EQ(st.duplicates, 2u);
  EXPECT_EQ(st.last_seq, 1003u);
}

TEST_P(supervisor_events_test, a_message_whose_data_is_not_an_object_is_dropped) {
  start();
  emit(transport_mode::ipc, make_event(1001, "message", R"("not-an-object")"));
  emit(transport_mode::ipc, make_event(1002, "message", "[1,2]"));
  emit(transport_mode::ipc, make_event(1003, "message.stream", "garbage"));
  emit(transport_mode::ipc, make_event(1004));
  // a topic the protocol does not define is passed on as it is
  emit(transport_mode::ipc, make_event(1005, "future.topic", "42"));
  last_state();
  EXPECT_EQ(seqs_of(events), (std::vector<uint64_t>{1004, 1005}));
  EXPECT_EQ(stats().malformed, 3u);
}

TEST_P(supervisor_events_test, a_transport_resumes_from_the_last_delivered_seq) {
  start();
  emit(transport_mode::ipc, make_event(1001));
  emit(transport_mode::ipc, make_event(1002));
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  ASSERT_EQ(last_state().mode, transport_mode::ws);
  // the websocket was told where to resume before it connected
  auto& ws = net->resumes[transport_mode::ws];
  ASSERT_FALSE(ws.empty());
  EXPECT_EQ(ws.front(), std::make_pair(uint64_t{1002}, false));
  // its replay repeats 1002; only 1003 is new
  emit(transport_mode::ws, replay_outcome_event(1002, true,
                                                transport_mode::ws));
  emit(transport_mode::ws, make_event(1002));
  emit(transport_mode::ws, make_event(1003));
  last_state();
  EXPECT_EQ(seqs_of(events), (std::vector<uint64_t>{1001, 1002, 1003}));
  EXPECT_EQ(stats().resumes, 1u);
}

TEST_P(supervisor_events_test, a_failback_candidate_resubscribes_if_it_got_ahead) {
  start();
  emit(transport_mode::ipc, make_event(1001));
  self->send(net->actors[transport_mode::ipc], kill_atom::value);
  sched.run();
  ASSERT_EQ(last_state().mode, transport_mode::ws);
  net->reachable[transport_mode::ipc] = true;
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  advance(100ms); // ipc connects again and is probed (not active yet)
  ASSERT_EQ(last_state().mode, transport_mode::ws);
  // both deliver the same events; only the active one's are passed on
  emit(transport_mode::ipc, make_event(1002));
  emit(transport_mode::ws, make_event(1002));
  emit(transport_mode::ipc, make_event(1003)); // ws has not got it yet
  net->resumes[transport_mode::ipc].clear();
  self->send(net->actors[transport_mode::ipc], caf::ok_atom::value);
  sched.run(); // the probes pass: fail back to ipc
  ASSERT_EQ(last_state().mode, transport_mode::ipc);
  // 1003 came only through ipc while it was not active: it must replay
  // from 1002 at once
  auto& r = net->resumes[transport_mode::ipc];
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.back(), std::make_pair(uint64_t{1002}, true));
  // an event of the replaced subscription, on its way before the resume:
  // delivered, it would move the cursor past 1003, which the replay then
  // brings as a "repeat" (lost). It waits for the replay instead.
  emit(transport_mode::ipc, make_event(1004));
  emit(transport_mode::ipc, replay_outcome_event(1002, true,
                                                 transport_mode::ipc));
  emit(transport_mode::ipc, make_event(1003));
  emit(transport_mode::ipc, make_event(1004));
  last_state();
  EXPECT_EQ(seqs_of(events),
            (std::vector<uint64_t>{1001, 1002, 1003, 1004}));
}

TEST_P(supervisor_events_test, a_gap_the_gateway_cannot_fill_is_read_from_history) {
  start();
  login();
  // seen: message seq 5 of conversation c1
  emit(transport_mode::ipc,
       make_event(1001, "message",
                  R"({"id":"m5","conversation_id":"c1","seq":5})"));
  // the history holds what the gap swallowed (6, 7) and one that also
  // comes live (8)
  net->history["/conversations/c1/messages?since=5&limit=500"]
    = R"({"success":true,"data":{"conversation_id":"c1","messages":[)"
      R"({"id":"m6","conversation_id":"c1","seq":6},)"
      R"({"id":"m7","conversation_id":"c1","seq":7},)"
      R"({"id":"m8","conversation_id":"c1","seq":8}],)"
      R"("has_more":false,"next_since":8}})";
  net->history["/conversations/current/messages?since=5&limit=500"]
    = R"({"success":true,"data":{"conversation_id":"c1","messages":[)"
      R"({"id":"m7","conversation_id":"c1","seq":7}],)"
      R"("has_more":false,"next_since":7}})";
  // hold the history reads so a live event comes in meanwhile
  self->send(net->actors[transport_mode::ipc], hold_atom::value, true);
  sched.run();
  emit(transport_mode::ipc,
       replay_outcome_event(1001, false, transport_mode::ipc));
  emit(transport_mode::ipc,
       make_event(2001, "message",
                  R"({"id":"m8","conversation_id":"c1","seq":8})"));
  last_state();
  ASSERT_EQ(events.size(), 1u) << "the live event must wait";
  self->send(net->actors[transport_mode::ipc], caf::ok_atom::value);
  sched.run();
  last_state();
  std::vector<std::string> ids;
  for (auto& e : events) {
    auto p = e.data.find("\"id\":\"");
    ids.push_back(e.data.substr(p + 6, e.data.find('"', p + 6) - p - 6));
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"m5", "m6", "m7", "m8"}));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].seq, 0u); // recovered from the history
  EXPECT_EQ(events[3].seq, 2001u);
  auto st = stats();
  EXPECT_EQ(st.gaps, 1u);
  EXPECT_EQ(st.recovered, 2u);
}

TEST_P(supervisor_events_test, a_transport_without_replay_counts_as_a_gap) {
  start();
  login();
  emit(transport_mode::ipc,
       make_event(1001, "message",
                  R"({"id":"m1","conversation_id":"c9","seq":1})"));
  net->history["/conversations/c9/messages?since=1&limit=500"]
    = R"({"success":true,"data":{"conversation_id":"c9","messages":[)"
      R"({"id":"m2","conversation_id":"c9","seq":2}],)"
      R"("has_more":false,"next_since":2}})";
  net->history["/conversations/current/messages?since=1&limit=500"]
    = R"({"success":true,"data":{"messages":[],"has_more":false}})";
  emit(transport_mode::ipc,
       replay_outcome_event(1001, false, transport_mode::ipc));
  last_state();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_NE(events[1].data.find("\"m2\""), std::string::npos);
}

TEST_P(supervisor_events_test, a_spent_token_is_refreshed_and_handed_out) {
  start();
  net->valid_token = "t-old";
  net->refresh_gives = "t-fresh";
  login();
  last_state();
  server_event ev;
  ev.topic = "link.token_refused";
  ev.data = "{}";
  ev.via = transport_mode::ws; // not the active transport: asked all the same
  emit(transport_mode::ws, ev);
  int refreshes = -1;
  auto rh = self->request(tokens, caf::infinite, caf::get_atom::value);
  sched.run();
  rh.receive([&](int x) { refreshes = x; }, [](caf::error&) { FAIL(); });
  EXPECT_EQ(refreshes, 1);
  // the transports got the fresh token (the one whose server spent the
  // old one authenticates again with it)
  for (auto& [m, toks] : net->tokens) {
    ASSERT_FALSE(toks.empty());
    EXPECT_EQ(toks.back(), "t-fresh") << to_string(m);
  }
  EXPECT_FALSE(net->tokens.empty());
  // the note is not an event for the watchers
  last_state();
  for (auto& e : events)
    EXPECT_NE(e.topic, "link.token_refused");
}

INSTANTIATE_TEST_SUITE_P(one_hop, supervisor_test, ::testing::Bool());
INSTANTIATE_TEST_SUITE_P(one_hop, supervisor_events_test, ::testing::Bool());
