// Integration tests: the WebSocket transport actor (libwebsockets service
// thread + JSON frames) against the real aico-gateway on 127.0.0.1. Faults
// are switched through the gateway's REST door (or through the transport
// itself). Every wait is bounded.
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "messages/transport.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"
#include "support/report_log.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::gateway_process;
using aico::test::jstr;
using aico::test::parse_json;
using aico::test::make_call;
using aico::test::message_body;
using aico::test::recorder;
using aico::test::report_log;
using steady = std::chrono::steady_clock;

namespace {

/// SIGCONTs a stopped gateway whatever happens to the test.
struct cont_guard {
  pid_t pid = -1;
  ~cont_guard() {
    if (pid > 0)
      ::kill(pid, SIGCONT);
  }
};

/// SIGSTOP, then waits (bounded) until every thread of `pid` is stopped:
/// kill() only queues the signal, and a thread still running on the other
/// core could answer one more request.
bool stop_process(pid_t pid, std::chrono::milliseconds within = 2000ms) {
  if (::kill(pid, SIGSTOP) != 0)
    return false;
  auto task_dir = "/proc/" + std::to_string(pid) + "/task";
  auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    std::error_code ec;
    for (auto& t : std::filesystem::directory_iterator{task_dir, ec}) {
      std::ifstream in{t.path() / "stat"};
      std::string stat{std::istreambuf_iterator<char>{in}, {}};
      // "TID (comm) STATE ...": the state follows the last ')'
      auto close = stat.rfind(')');
      if (close == std::string::npos || close + 2 >= stat.size()
          || stat[close + 2] != 'T') {
        all = false;
        break;
      }
    }
    if (all && !ec)
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

bool is_event_for_message(const server_event& ev, const std::string& id) {
  return ev.topic == "message" && jstr(parse_json(ev.data), "/id") == id;
}

// -- fixture -------------------------------------------------------------------

class ws_transport_test : public ::testing::Test {
protected:
  static caf::actor_system_config& init(caf::actor_system_config& c) {
    c.set("scheduler.policy", caf::atom("sharing"));
    c.set("scheduler.max-threads", 2);
    return c;
  }

  void SetUp() override {
    ASSERT_TRUE(gw.start()) << gw.last_error();
    http = std::make_unique<aico::test::http_client>(gw.host(), gw.port(),
                                                     5000ms);
  }

  void TearDown() override {
    stop_all();
  }

  /// Stops every transport and listener (bounded); returns how long the
  /// transports took to terminate.
  std::chrono::milliseconds stop_all() {
    auto t0 = steady::now();
    for (auto& t : transports)
      self->send_exit(t, caf::exit_reason::user_shutdown);
    for (auto& t : transports)
      self->wait_for(t);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      steady::now() - t0);
    for (auto& l : listeners)
      self->send_exit(l, caf::exit_reason::user_shutdown);
    transports.clear();
    listeners.clear();
    return took;
  }

  ws_transport_config config() {
    ws_transport_config c;
    c.url = gw.ws_url();
    c.connect_timeout = 3s;
    c.ping_interval = 300ms;
    c.dead_peer_timeout = 1s;
    return c;
  }

  transport_actor spawn(ws_transport_config c) {
    auto l = sys.spawn(recorder, log);
    listeners.push_back(l);
    auto t = spawn_ws_transport(sys, std::move(c), l);
    transports.push_back(t);
    return t;
  }

  /// Connects and waits for up.
  bool connect(const transport_actor& t,
               std::chrono::milliseconds within = 4000ms) {
    auto from = log->state_count();
    self->send(t, connect_atom_v);
    return log->wait_status(transport_status::up, from, within).has_value();
  }

  caf::expected<api_reply> call(const transport_actor& t, api_call c,
                                caf::timespan left = 5s) {
    caf::expected<api_reply> res{caf::error{}};
    self->request(t, left + 3s, request_atom_v, std::move(c), left)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  std::string login(const std::string& user, const std::string& pw) {
    auto r = http->post("/api/v1/users/authenticate",
                        {{"username", user}, {"password", pw}});
    EXPECT_EQ(r.status, 200) << r.raw << r.error;
    return jstr(r.body, "/data/access_token");
  }

  /// POST /admin/faults through REST as root.
  void set_fault(const std::string& body) {
    if (root_token.empty())
      root_token = login("root", "root-pw");
    auto r = http->request("POST", "/api/v1/admin/faults", body, root_token);
    EXPECT_EQ(r.status, 200) << r.raw << r.error;
  }

  gateway_process gw;
  std::unique_ptr<aico::test::http_client> http;
  std::string root_token;
  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  std::shared_ptr<report_log> log = std::make_shared<report_log>(transport_mode::ws);
  std::vector<transport_actor> transports;
  std::vector<transport_listener_actor> listeners;
  // Declared last: destroyed first (before the system).
  caf::scoped_actor self{sys};
};

// -- tests -----------------------------------------------------------------------

TEST_F(ws_transport_test, connects_with_token_and_answers_requests) {
  auto tok = login("alice", "alice-pw");
  ASSERT_FALSE(tok.empty());
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  auto st = log->statuses();
  ASSERT_GE(st.size(), 2u);
  EXPECT_EQ(st[0], transport_status::connecting);
  EXPECT_EQ(st[1], transport_status::up);
  // the connection is authenticated by the upgrade header
  auto r = call(t, make_call("me-1", "GET", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->id, "me-1");
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->via, transport_mode::ws);
  EXPECT_EQ(jstr(parse_json(r->body), "/data/username"), "alice");
  // 4xx comes back as a reply with the gateway's envelope and headers
  r = call(t, make_call("bad-1", "DELETE", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(jstr(parse_json(r->body), "/code"), "method_not_allowed");
  // a body that is not JSON is answered like the gateway would (400)
  r = call(t, make_call("bad-2", "POST", "/conversations/messages", "{nope"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(jstr(parse_json(r->body), "/code"), "bad_json");
  EXPECT_FALSE(log->wrong_mode());
}

TEST_F(ws_transport_test, request_when_not_up_is_a_network_error) {
  auto t = spawn(config());
  auto r = call(t, make_call("x", "GET", "/health"));
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::network);
}

TEST_F(ws_transport_test, fifty_concurrent_requests_are_correlated) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  constexpr int n = 50;
  using handle_t = decltype(self->request(
    t, caf::timespan{}, request_atom_v, api_call{}, caf::timespan{}));
  std::vector<handle_t> handles;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    auto id = "c50-" + std::to_string(i);
    ids.push_back(id);
    api_call c = (i % 2 == 0)
                   ? make_call(id, "POST", "/conversations/messages",
                               message_body(id, "concurrent " + id))
                   : make_call(id, "GET", "/health");
    handles.push_back(
      self->request(t, caf::timespan{10s}, request_atom_v, c,
                    caf::timespan{8s}));
  }
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    handles[i].receive(
      [&](api_reply& r) {
        EXPECT_EQ(r.id, ids[i]);
        auto body = parse_json(r.body);
        if (i % 2 == 0) {
          EXPECT_EQ(r.status, 201) << r.body;
          EXPECT_EQ(jstr(body, "/data/id"), ids[i]);
          EXPECT_EQ(jstr(body, "/data/content"), "concurrent " + ids[i]);
        } else {
          EXPECT_EQ(r.status, 200) << r.body;
          EXPECT_TRUE(aico::test::jptr(body, "/data/is_healthy") != nullptr);
        }
        ++ok;
      },
      [&](caf::error& e) { ADD_FAILURE() << ids[i] << ": " << to_string(e); });
  }
  EXPECT_EQ(ok, n);
}

TEST_F(ws_transport_test, events_arrive_after_a_message_is_posted) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  // posted through the WebSocket itself
  auto r = call(t, make_call("ev-ws-1", "POST", "/conversations/messages",
                             message_body("ev-ws-1", "hello websocket events")));
  ASSERT_TRUE(r) << to_string(r.error());
  ASSERT_EQ(r->status, 201) << r->body;
  auto ev = log->wait_event(
    [](const server_event& e) { return is_event_for_message(e, "ev-ws-1"); },
    5000ms);
  ASSERT_TRUE(ev);
  EXPECT_GT(ev->seq, 0u);
  EXPECT_EQ(ev->via, transport_mode::ws);
  // ... and through REST: the bot's reply shows up too
  auto rest = http->request("POST", "/api/v1/conversations/messages",
                            message_body("ev-rest-1", "hello from rest"), tok);
  ASSERT_EQ(rest.status, 201) << rest.raw;
  EXPECT_TRUE(log->wait_event(
    [](const server_event& e) { return is_event_for_message(e, "ev-rest-1"); },
    5000ms));
  EXPECT_TRUE(log->wait_event(
    [](const server_event& e) {
      return is_event_for_message(e, "bot-ev-rest-1");
    },
    5000ms));
  EXPECT_FALSE(log->wrong_mode());
}

TEST_F(ws_transport_test, token_after_connect_is_sent_as_auth_frame) {
  auto t = spawn(config());
  ASSERT_TRUE(connect(t)); // no token: unauthenticated upgrade
  auto r = call(t, make_call("me-anon", "GET", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 401);
  auto tok = login("alice", "alice-pw");
  self->send(t, token_atom_v, tok);
  // frames are handled in order: this request runs authenticated
  r = call(t, make_call("me-auth", "GET", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200) << r->body;
  auto rest = http->request("POST", "/api/v1/conversations/messages",
                            message_body("auth-ev-1", "events after auth"),
                            tok);
  ASSERT_EQ(rest.status, 201) << rest.raw;
  EXPECT_TRUE(log->wait_event(
    [](const server_event& e) { return is_event_for_message(e, "auth-ev-1"); },
    5000ms));
}

TEST_F(ws_transport_test, call_token_is_sent_as_auth_frame_first) {
  auto t = spawn(config());
  ASSERT_TRUE(connect(t));
  auto tok = login("bob", "bob-pw");
  auto r = call(t, make_call("me-bob", "GET", "/users/me", "", tok));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(jstr(parse_json(r->body), "/data/username"), "bob");
  // no token_atom: events are not forwarded ("empty = no events")
  auto before = log->event_count();
  auto rest = http->request("POST", "/api/v1/conversations/messages",
                            message_body("bob-1", "no events please"), tok);
  ASSERT_EQ(rest.status, 201) << rest.raw;
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(log->event_count(), before);
}

TEST_F(ws_transport_test, bad_token_on_upgrade_is_down_with_401) {
  auto t = spawn(config());
  self->send(t, token_atom_v, std::string{"not.a.valid-token"});
  auto from = log->state_count();
  self->send(t, connect_atom_v);
  auto down = log->wait_status(transport_status::down, from, 4000ms);
  ASSERT_TRUE(down);
  EXPECT_NE(down->reason.find("401"), std::string::npos) << down->reason;
  EXPECT_EQ(down->reason.find("not.a.valid-token"), std::string::npos);
  EXPECT_FALSE(log->wait_status(transport_status::up, from, 200ms));
}

TEST_F(ws_transport_test, connection_refused_is_down) {
  auto c = config();
  c.url = "ws://127.0.0.1:1/api/v1/ws"; // nothing listens there
  auto t = spawn(c);
  auto from = log->state_count();
  self->send(t, connect_atom_v);
  auto down = log->wait_status(transport_status::down, from, 4000ms);
  ASSERT_TRUE(down);
  EXPECT_FALSE(down->reason.empty());
}

TEST_F(ws_transport_test, bad_url_is_down) {
  auto c = config();
  c.url = "http://127.0.0.1/api/v1/ws";
  auto t = spawn(c);
  auto from = log->state_count();
  self->send(t, connect_atom_v);
  auto down = log->wait_status(transport_status::down, from, 2000ms);
  ASSERT_TRUE(down);
  EXPECT_NE(down->reason.find("ws://"), std::string::npos) << down->reason;
}

TEST_F(ws_transport_test, drop_ws_fault_is_detected_promptly) {
  auto tok = login("alice", "alice-pw");
  auto root = login("root", "root-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  auto from = log->state_count();
  // switched through this very connection (call token -> auth frame first);
  // the gateway lets the response go out before it closes the socket
  auto t0 = steady::now();
  auto r = call(t, make_call("fault-1", "POST", "/admin/faults",
                             R"({"drop_ws":true})", root));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200) << r->body;
  auto down = log->wait_status(transport_status::down, from, 3000ms);
  ASSERT_TRUE(down);
  EXPECT_LT(down->at - t0, 2000ms);
  EXPECT_NE(down->reason.find("1001"), std::string::npos) << down->reason;
  // requests now fail at once; a reconnect works (drop_ws is one-shot)
  auto r2 = call(t, make_call("after-drop", "GET", "/health"));
  ASSERT_FALSE(r2);
  EXPECT_EQ(classify(r2.error()).cls, error_class::network);
  ASSERT_TRUE(connect(t));
  r2 = call(t, make_call("after-reconnect", "GET", "/health"));
  ASSERT_TRUE(r2) << to_string(r2.error());
  EXPECT_EQ(r2->status, 200);
}

TEST_F(ws_transport_test, ws_down_fault_refuses_reconnects_with_503) {
  auto t = spawn(config());
  ASSERT_TRUE(connect(t));
  auto from = log->state_count();
  set_fault(R"({"ws":"down"})");
  auto down = log->wait_status(transport_status::down, from, 3000ms);
  ASSERT_TRUE(down);
  for (int i = 0; i < 2; ++i) {
    from = log->state_count();
    self->send(t, connect_atom_v);
    auto again = log->wait_status(transport_status::down, from, 4000ms);
    ASSERT_TRUE(again);
    EXPECT_NE(again->reason.find("503"), std::string::npos) << again->reason;
  }
  set_fault(R"({"ws":"up"})");
  ASSERT_TRUE(connect(t));
}

TEST_F(ws_transport_test, dead_peer_is_detected_when_the_gateway_stops) {
  auto t = spawn(config()); // ping 300 ms, dead peer 1 s
  ASSERT_TRUE(connect(t));
  auto from = log->state_count();
  cont_guard cont;
  cont.pid = gw.pid();
  ASSERT_TRUE(stop_process(gw.pid()));
  auto t0 = steady::now();
  // a request that will never be answered (sent once the gateway is
  // stopped: it answers /health at once, so sent before it could still win)
  auto hdl = self->request(t, caf::timespan{10s},
                           request_atom_v,
                           make_call("stuck", "GET", "/health"),
                           caf::timespan{8s});
  auto down = log->wait_status(transport_status::down, from, 3000ms);
  ASSERT_TRUE(down);
  EXPECT_LT(down->at - t0, 2000ms);
  EXPECT_NE(down->reason.find("silent"), std::string::npos) << down->reason;
  // the pending request failed with network at once
  bool failed = false;
  hdl.receive([&](api_reply&) { ADD_FAILURE() << "unexpected reply"; },
              [&](caf::error& e) {
                failed = classify(e).cls == error_class::network;
              });
  EXPECT_TRUE(failed);
  // stopping is prompt even with the peer frozen
  auto took = stop_all();
  EXPECT_LT(took, 2000ms);
}

TEST_F(ws_transport_test, request_timeout_does_not_take_the_link_down) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  set_fault(R"({"latency_ms":1500})");
  auto from = log->state_count();
  auto r = call(t, make_call("slow", "GET", "/users/me"), 300ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::timeout);
  set_fault(R"({"reset":true})");
  // pings keep the link up while the slow response is still on its way
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(log->state_count(), from);
  r = call(t, make_call("fast", "GET", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200);
}

TEST_F(ws_transport_test, disconnect_fails_pending_and_reports_idle) {
  auto t = spawn(config());
  ASSERT_TRUE(connect(t));
  set_fault(R"({"latency_ms":2000})");
  auto from = log->state_count();
  // a route the latency fault delays (/health is never delayed)
  auto hdl2 = self->request(t, 10s, request_atom_v,
                            make_call("slow2", "POST", "/users/authenticate",
                                      R"({"username":"alice",)"
                                      R"("password":"alice-pw"})"),
                            caf::timespan{8s});
  std::this_thread::sleep_for(200ms);
  self->send(t, disconnect_atom_v);
  EXPECT_TRUE(log->wait_status(transport_status::idle, from, 2000ms));
  bool network = false;
  hdl2.receive([&](api_reply&) { ADD_FAILURE() << "unexpected reply"; },
               [&](caf::error& e) {
                 network = classify(e).cls == error_class::network;
               });
  EXPECT_TRUE(network);
  set_fault(R"({"reset":true})");
}

TEST_F(ws_transport_test, large_messages_in_both_directions) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  // outgoing: a ~100 KB frame goes out in fragments; the gateway answers
  // 413 (over --max-body) and the link stays up
  std::string big(100000, 'x');
  auto r = call(t, make_call("big-out", "POST", "/conversations/messages",
                             message_body("big-out", big)));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 413) << r->body.substr(0, 200);
  // incoming: a history of ~40 x 3900 characters (~160 KB) arrives in
  // many pieces and is assembled into one message
  std::string chunk(3900, 'y');
  for (int i = 0; i < 40; ++i) {
    auto id = "big-in-" + std::to_string(i);
    r = call(t, make_call(id, "POST", "/conversations/messages",
                          R"({"id":")" + id + R"(","content":")" + chunk
                            + R"(","type":"system"})"));
    ASSERT_TRUE(r) << to_string(r.error());
    ASSERT_EQ(r->status, 201) << r->body.substr(0, 200);
  }
  r = call(t, make_call("hist", "GET",
                        "/conversations/current/messages?limit=40"));
  ASSERT_TRUE(r) << to_string(r.error());
  ASSERT_EQ(r->status, 200);
  EXPECT_GT(r->body.size(), 150000u);
  auto body = parse_json(r->body);
  auto msgs = aico::test::jptr(body, "/data/messages");
  ASSERT_TRUE(msgs && msgs->is_array());
  EXPECT_EQ(msgs->as_array().size(), 40u);
  EXPECT_EQ(log->statuses().back(), transport_status::up);
}

std::size_t open_fds() {
  std::size_t n = 0;
  if (auto d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr)
      ++n;
    ::closedir(d);
  }
  return n;
}

TEST_F(ws_transport_test, rapid_connect_disconnect_cycles_leave_nothing_behind) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t)); // warm up (lws context, first connection)
  self->send(t, disconnect_atom_v);
  std::this_thread::sleep_for(300ms);
  auto fds_before = open_fds();
  for (int i = 0; i < 30; ++i) {
    self->send(t, connect_atom_v);
    if (i % 3 == 1)
      std::this_thread::sleep_for(1ms); // sometimes mid-handshake
    else if (i % 3 == 2)
      std::this_thread::sleep_for(30ms); // sometimes established
    self->send(t, disconnect_atom_v);
  }
  ASSERT_TRUE(connect(t));
  auto r = call(t, make_call("after-cycles", "GET", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200);
  self->send(t, disconnect_atom_v);
  // closed connections are gone once their close handshakes are done
  auto deadline = steady::now() + 3s;
  while (open_fds() > fds_before && steady::now() < deadline)
    std::this_thread::sleep_for(50ms);
  EXPECT_LE(open_fds(), fds_before);
}

TEST_F(ws_transport_test, connect_timeout_when_the_gateway_does_not_answer) {
  auto c = config();
  c.connect_timeout = 500ms;
  auto t = spawn(c);
  cont_guard cont;
  cont.pid = gw.pid();
  ASSERT_TRUE(stop_process(gw.pid()));
  auto from = log->state_count();
  auto t0 = steady::now();
  self->send(t, connect_atom_v);
  auto down = log->wait_status(transport_status::down, from, 3000ms);
  ASSERT_TRUE(down);
  EXPECT_LT(down->at - t0, 1500ms);
  EXPECT_NE(down->reason.find("timed out"), std::string::npos)
    << down->reason;
  ::kill(gw.pid(), SIGCONT);
  cont.pid = -1;
  ASSERT_TRUE(connect(t));
}

TEST_F(ws_transport_test, shutdown_is_prompt) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  set_fault(R"({"latency_ms":3000})");
  auto hdl = self->request(t, caf::timespan{10s},
                           request_atom_v, make_call("slow", "GET", "/users/me"),
                           caf::timespan{8s});
  std::this_thread::sleep_for(100ms);
  auto took = stop_all();
  EXPECT_LT(took, 2000ms);
  bool failed = false;
  hdl.receive([](api_reply&) {}, [&](caf::error&) { failed = true; });
  EXPECT_TRUE(failed);
  set_fault(R"({"reset":true})");
}

} // namespace
