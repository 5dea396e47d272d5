// Integration tests: the gRPC transport (the generic transport actor with
// the gRPC driver, src/transport/grpc/grpc_driver) against the real
// aico-gateway's gRPC door on 127.0.0.1:0. Faults are switched through the
// gateway's REST door. Every wait is bounded.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "caf/all.hpp"

#include "actors/transport_registry.hpp"
#include "messages/errors.hpp"
#include "messages/transport.hpp"
#include "src/transport/grpc/grpc_driver.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"
#include "support/report_log.hpp"
#include "support/test_pki.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::jstr;
using aico::test::parse_json;
using aico::test::make_call;
using aico::test::message_body;
using aico::test::recorder;
using aico::test::report_log;
using steady = std::chrono::steady_clock;

namespace {

bool is_event_for_message(const server_event& ev, const std::string& id) {
  return ev.topic == "message" && jstr(parse_json(ev.data), "/id") == id;
}

class grpc_transport_test : public ::testing::Test {
protected:
  static caf::actor_system_config& init(caf::actor_system_config& c) {
    c.set("scheduler.policy", caf::atom("sharing"));
    c.set("scheduler.max-threads", 2);
    return c;
  }

  /// More gateway arguments (TLS).
  virtual std::vector<std::string> extra_args() { return {}; }

  void SetUp() override {
    gateway_options o;
    o.extra_args = {"--grpc", "127.0.0.1:0"};
    auto more = extra_args();
    o.extra_args.insert(o.extra_args.end(), more.begin(), more.end());
    gw = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw->start()) << gw->last_error();
    target = gw->reported_grpc();
    ASSERT_FALSE(target.empty()) << gw->ready_line();
    http = std::make_unique<aico::test::http_client>(gw->host(), gw->port(),
                                                     5000ms);
  }

  void TearDown() override {
    for (auto& t : transports)
      self->send_exit(t, caf::exit_reason::user_shutdown);
    for (auto& t : transports)
      self->wait_for(t);
    for (auto& l : listeners)
      self->send_exit(l, caf::exit_reason::user_shutdown);
    transports.clear();
    listeners.clear();
  }

  grpc_transport_config config() {
    grpc_transport_config c;
    c.endpoint = target;
    c.connect_timeout = 3s;
    c.ping_interval = 1s;
    c.dead_peer_timeout = 3s;
    return c;
  }

  transport_actor spawn(grpc_transport_config c) {
    auto l = sys.spawn(recorder, log);
    listeners.push_back(l);
    // as the supervisor spawns it: from the registry entry
    supervisor_config sc;
    sc.grpc = std::move(c);
    auto t = find_transport("grpc")->spawn(sys, sc, l);
    transports.push_back(t);
    return t;
  }

  bool connect(const transport_actor& t,
               std::chrono::milliseconds within = 5000ms) {
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

  void set_fault(const std::string& body) {
    if (root_token.empty())
      root_token = login("root", "root-pw");
    auto r = http->request("POST", "/api/v1/admin/faults", body, root_token);
    EXPECT_EQ(r.status, 200) << r.raw << r.error;
  }

  /// Posts a message over REST; its event's seq is what the test waits for.
  void post_rest(const std::string& tok, const std::string& id) {
    auto r = http->request("POST", "/api/v1/conversations/messages",
                           message_body(id, "grpc " + id), tok);
    ASSERT_EQ(r.status, 201) << r.raw;
  }

  std::unique_ptr<gateway_process> gw;
  std::string target;
  std::unique_ptr<aico::test::http_client> http;
  std::string root_token;
  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  std::shared_ptr<report_log> log = std::make_shared<report_log>(transport_mode::grpc);
  std::vector<transport_actor> transports;
  std::vector<transport_listener_actor> listeners;
  caf::scoped_actor self{sys};
};

// -- endpoint parsing (pure) -------------------------------------------------------

TEST(grpc_endpoint, parses_host_port_and_schemes) {
  std::string target, err;
  bool tls = true;
  ASSERT_TRUE(grpc_link::parse_grpc_endpoint("127.0.0.1:5005", target, tls,
                                             err));
  EXPECT_EQ(target, "127.0.0.1:5005");
  EXPECT_FALSE(tls);
  ASSERT_TRUE(grpc_link::parse_grpc_endpoint("grpcs://gw.example:443", target,
                                             tls, err));
  EXPECT_EQ(target, "gw.example:443");
  EXPECT_TRUE(tls);
  ASSERT_TRUE(grpc_link::parse_grpc_endpoint("grpc://[::1]:7000", target, tls,
                                             err));
  EXPECT_EQ(target, "[::1]:7000");
  EXPECT_FALSE(tls);
  for (auto bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "h:70000",
                   "http://127.0.0.1:80", "::1:80", "h:80/x", ":80"}) {
    err.clear();
    EXPECT_FALSE(grpc_link::parse_grpc_endpoint(bad, target, tls, err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

// -- calls -----------------------------------------------------------------------------

TEST_F(grpc_transport_test, answers_calls_with_status_and_auth) {
  auto t = spawn(config());
  ASSERT_TRUE(connect(t));
  auto r = call(t, make_call("h-1", "GET", "/health"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->id, "h-1");
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->via, transport_mode::grpc);
  EXPECT_EQ(jstr(parse_json(r->body), "/data/services/grpc"), "up");
  // no token, a forged token: 401 replies (the API's answer, not an error)
  r = call(t, make_call("me-0", "GET", "/users/me"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 401) << r->body;
  r = call(t, make_call("me-x", "GET", "/users/me", "", "forged.token.x"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 401) << r->body;
  // a login over the transport, then calls with its token
  r = call(t, make_call("login", "POST", "/users/authenticate",
                        R"({"username":"alice","password":"alice-pw"})"));
  ASSERT_TRUE(r) << to_string(r.error());
  ASSERT_EQ(r->status, 200) << r->body;
  auto tok = jstr(parse_json(r->body), "/data/access_token");
  ASSERT_FALSE(tok.empty());
  r = call(t, make_call("me-1", "GET", "/users/me", "", tok));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(jstr(parse_json(r->body), "/data/username"), "alice");
  r = call(t, make_call("del", "DELETE", "/users/me", "", tok));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(jstr(parse_json(r->body), "/code"), "method_not_allowed");
  EXPECT_NE(r->headers["Allow"].find("GET"), std::string::npos);
  // the same call id twice in a row (no wire ids: matched by key)
  r = call(t, make_call("me-1", "GET", "/users/me", "", tok));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->id, "me-1");
  EXPECT_FALSE(log->wrong_mode());
}

TEST_F(grpc_transport_test, fifty_concurrent_calls_are_matched) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  ASSERT_TRUE(connect(t));
  constexpr int n = 50;
  using handle_t = decltype(self->request(
    t, caf::timespan{}, request_atom_v, api_call{}, caf::timespan{}));
  std::vector<handle_t> handles;
  for (int i = 0; i < n; ++i) {
    auto id = "c50-" + std::to_string(i);
    handles.push_back(self->request(
      t, caf::timespan{10s}, request_atom_v,
      make_call(id, "POST", "/conversations/messages",
                message_body(id, "concurrent " + id), tok),
      caf::timespan{8s}));
  }
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    auto id = "c50-" + std::to_string(i);
    handles[i].receive(
      [&](api_reply& r) {
        EXPECT_EQ(r.id, id);
        EXPECT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(jstr(parse_json(r.body), "/data/content"), "concurrent " + id);
        ++ok;
      },
      [&](caf::error& e) { ADD_FAILURE() << id << ": " << to_string(e); });
  }
  EXPECT_EQ(ok, n);
}

TEST_F(grpc_transport_test, deadline_exceeded_is_a_timeout) {
  set_fault(R"({"misbehave":{"door":"grpc","path":"/users/me","mode":"hang"}})");
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  ASSERT_TRUE(connect(t));
  auto t0 = steady::now();
  auto r = call(t, make_call("hang-1", "GET", "/users/me", "", tok), 300ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::timeout)
    << to_string(r.error());
  EXPECT_GE(steady::now() - t0, 250ms);
  // the link is fine afterwards
  r = call(t, make_call("h-2", "GET", "/health"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200);
}

TEST_F(grpc_transport_test, request_when_not_up_is_a_network_error) {
  auto t = spawn(config());
  auto r = call(t, make_call("x", "GET", "/health"));
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::network);
}

// -- events ------------------------------------------------------------------------------

TEST_F(grpc_transport_test, events_resume_after_reconnect_without_loss) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  // the Events stream is open once an event posted now arrives (it opens
  // after link up: a message posted before is not live for it)
  std::optional<server_event> first;
  std::string first_id;
  for (int i = 0; i < 5 && !first; ++i) {
    first_id = "ev-1-" + std::to_string(i);
    post_rest(tok, first_id);
    first = log->wait_event(
      [&](const server_event& e) { return is_event_for_message(e, first_id); },
      1000ms);
  }
  ASSERT_TRUE(first);
  EXPECT_EQ(first->via, transport_mode::grpc);
  // reconnect: events posted while disconnected are replayed after the
  // seq the transport delivered last, after the replay marker
  // (the disconnect is a message: the events posted next must not find the
  // old stream still open, seen under TSan's slowdown)
  auto idle_from = log->state_count();
  self->send(t, disconnect_atom_v);
  ASSERT_TRUE(log->wait_status(transport_status::idle, idle_from, 5000ms));
  auto mark = log->event_count();
  post_rest(tok, "ev-2");
  post_rest(tok, "ev-3");
  ASSERT_TRUE(connect(t));
  auto marker = log->wait_event(
    [](const server_event& e) { return e.topic == "events.replay"; }, 5000ms,
    mark);
  ASSERT_TRUE(marker);
  EXPECT_EQ(aico::test::jtrue(parse_json(marker->data), "/complete"), true)
    << marker->data;
  for (auto id : {"ev-2", "ev-3"})
    ASSERT_TRUE(log->wait_event(
      [&](const server_event& e) { return is_event_for_message(e, id); },
      5000ms, mark))
      << id;
  // live again
  post_rest(tok, "ev-4");
  ASSERT_TRUE(log->wait_event(
    [](const server_event& e) { return is_event_for_message(e, "ev-4"); },
    5000ms, mark));
  std::this_thread::sleep_for(300ms); // anything doubled would be here now
  // nothing lost, nothing twice, seqs increasing after the marker
  std::map<std::string, int> seen;
  uint64_t last = 0;
  bool after_marker = false;
  for (auto& e : log->events(mark)) {
    if (e.topic == "events.replay") {
      after_marker = true;
      continue;
    }
    EXPECT_TRUE(after_marker) << "event before the replay marker";
    EXPECT_GT(e.seq, first->seq);
    EXPECT_GT(e.seq, last) << "seqs out of order";
    last = e.seq;
    if (e.topic == "message")
      ++seen[jstr(parse_json(e.data), "/id")];
  }
  for (auto id : {"ev-2", "ev-3", "ev-4"})
    EXPECT_EQ(seen[id], 1) << id;
  EXPECT_EQ(seen.count(first_id), 0u) << first_id << " replayed again";
  EXPECT_FALSE(log->wrong_mode());
}

TEST_F(grpc_transport_test, no_events_without_token_and_refused_token) {
  auto t = spawn(config());
  self->send(t, token_atom_v, std::string{"forged.token.x"});
  ASSERT_TRUE(connect(t));
  // the stream was refused (401): the link stays up, no events
  auto tok = login("alice", "alice-pw");
  post_rest(tok, "nope-1");
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(log->event_count(), 0u);
  auto r = call(t, make_call("h", "GET", "/health"));
  ASSERT_TRUE(r) << to_string(r.error());
  // a good token subscribes
  self->send(t, token_atom_v, tok);
  std::this_thread::sleep_for(300ms);
  post_rest(tok, "yes-1");
  EXPECT_TRUE(log->wait_event(
    [](const server_event& e) { return is_event_for_message(e, "yes-1"); },
    5000ms));
}

// -- the link --------------------------------------------------------------------------

TEST_F(grpc_transport_test, door_down_is_link_lost_and_up_is_back) {
  auto tok = login("alice", "alice-pw");
  auto t = spawn(config());
  self->send(t, token_atom_v, tok);
  ASSERT_TRUE(connect(t));
  auto from = log->state_count();
  auto t0 = steady::now();
  set_fault(R"({"grpc":"down"})");
  auto down = log->wait_status(transport_status::down, from, 3000ms);
  ASSERT_TRUE(down);
  EXPECT_LT(down->at - t0, 2000ms);
  EXPECT_FALSE(down->reason.empty());
  // a connect while the door is down fails before the connect timeout
  from = log->state_count();
  t0 = steady::now();
  self->send(t, connect_atom_v);
  auto again = log->wait_status(transport_status::down, from, 4000ms);
  ASSERT_TRUE(again);
  EXPECT_LT(again->at - t0, 2500ms) << again->reason;
  auto r = call(t, make_call("while-down", "GET", "/health"));
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::network);
  // door up: connects, calls and events work again
  set_fault(R"({"grpc":"up"})");
  ASSERT_TRUE(connect(t));
  r = call(t, make_call("after-up", "GET", "/health"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200);
  auto mark = log->event_count();
  post_rest(tok, "after-up-1");
  EXPECT_TRUE(log->wait_event(
    [](const server_event& e) { return is_event_for_message(e, "after-up-1"); },
    5000ms, mark));
}

TEST_F(grpc_transport_test, refused_and_bad_endpoints_are_down) {
  auto c = config();
  c.endpoint = "127.0.0.1:1"; // nothing listens there
  auto t = spawn(c);
  auto from = log->state_count();
  auto t0 = steady::now();
  self->send(t, connect_atom_v);
  auto down = log->wait_status(transport_status::down, from, 4000ms);
  ASSERT_TRUE(down);
  EXPECT_LT(down->at - t0, 2500ms) << down->reason; // not the 3 s timeout
  EXPECT_NE(down->reason.find("127.0.0.1:1"), std::string::npos)
    << down->reason;
  c.endpoint = "http://127.0.0.1:80";
  auto bad = spawn(c);
  from = log->state_count();
  self->send(bad, connect_atom_v);
  down = log->wait_status(transport_status::down, from, 2000ms);
  ASSERT_TRUE(down);
  EXPECT_NE(down->reason.find("HOST:PORT"), std::string::npos)
    << down->reason;
}

// -- TLS (grpcs://) ------------------------------------------------------------------

class grpc_transport_tls_test : public grpc_transport_test {
protected:
  void SetUp() override {
    pki_dir = std::make_unique<aico::test::temp_dir>("aico-pki");
    pki = aico::test::make_test_pki(pki_dir->path());
    grpc_transport_test::SetUp();
  }
  std::vector<std::string> extra_args() override {
    return aico::test::gateway_tls_args(pki, true); // mutual TLS
  }
  grpc_transport_config tls_config() {
    auto c = config();
    c.endpoint = "grpcs://" + target;
    c.tls.ca_file = pki.ca_cert;
    c.tls.client_cert = pki.device_cert;
    c.tls.client_key = pki.device_key;
    return c;
  }
  std::unique_ptr<aico::test::temp_dir> pki_dir;
  aico::test::test_pki pki;
};

TEST_F(grpc_transport_tls_test, mutual_tls_works_and_failures_are_down) {
  auto t = spawn(tls_config());
  ASSERT_TRUE(connect(t));
  auto r = call(t, make_call("tls-h", "GET", "/health"));
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 200);
  // without the client certificate the door refuses the handshake: down
  // before the connect timeout
  auto c = tls_config();
  c.tls.client_cert.clear();
  c.tls.client_key.clear();
  auto bare = spawn(c);
  auto from = log->state_count();
  auto t0 = steady::now();
  self->send(bare, connect_atom_v);
  auto down = log->wait_status(transport_status::down, from, 4000ms);
  ASSERT_TRUE(down);
  EXPECT_LT(down->at - t0, 2500ms) << down->reason;
  // plaintext to the TLS door: down too
  c = config();
  auto plain = spawn(c);
  from = log->state_count();
  self->send(plain, connect_atom_v);
  ASSERT_TRUE(log->wait_status(transport_status::down, from, 4000ms));
  // a pin cannot be checked by grpc++: refused with a sentence, not ignored
  c = tls_config();
  c.tls.pinned_public_key = pki.server_pin;
  auto pinned = spawn(c);
  from = log->state_count();
  self->send(pinned, connect_atom_v);
  down = log->wait_status(transport_status::down, from, 4000ms);
  ASSERT_TRUE(down);
  EXPECT_NE(down->reason.find("pinning"), std::string::npos) << down->reason;
}

} // namespace
