// Integration tests: the HTTP transport (and its curl loop) against the real
// aico-gateway on 127.0.0.1. Every wait is bounded.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "messages/transport.hpp"
#include "src/transport/curl/http_loop.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::gateway_process;
using aico::test::jint;
using aico::test::jstr;
using aico::test::parse_json;
using steady = std::chrono::steady_clock;

namespace {

// -- helpers ---------------------------------------------------------------------

/// Forwards everything a transport reports to a (scoped) actor.
/// (A typed actor may not send() to a dynamically typed one: anon_send.)
transport_listener_actor::behavior_type
forwarder(transport_listener_actor::pointer, caf::actor sink) {
  return {
    [=](tstate_atom a, transport_mode m, transport_status s,
        std::string& reason) {
      caf::anon_send(sink, a, m, s, std::move(reason));
    },
    [=](event_atom a, server_event& ev) {
      caf::anon_send(sink, a, std::move(ev));
    },
  };
}

/// A free TCP port on loopback that nobody listens on (bound, then closed).
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    socklen_t len = sizeof(a);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

/// Logs in through the test client (not through the transport).
std::string login_token(const gateway_process& gw, const std::string& user,
                        const std::string& pw) {
  aico::test::http_client c{gw.host(), gw.port()};
  auto r = c.post("/api/v1/users/authenticate",
                  {{"username", user}, {"password", pw}});
  return jstr(r.body, "/data/access_token");
}

/// Sets gateway faults as root (through the test client). /admin/faults is
/// never delayed, but a login is: keep the root token from before the fault.
bool set_faults(const gateway_process& gw, const std::string& json_body,
                const std::string& root) {
  aico::test::http_client c{gw.host(), gw.port()};
  auto r = c.request("POST", "/api/v1/admin/faults", json_body, root);
  return r.status == 200;
}

/// What the transport told its listener.
struct inbox {
  explicit inbox(caf::actor_system& sys) : self(sys) {}

  caf::scoped_actor self;
  std::vector<std::pair<transport_status, std::string>> states;
  std::vector<server_event> events;
  std::size_t states_seen = 0;

  /// Receives one message (false on timeout).
  bool pump(caf::timespan timeout) {
    bool got = false;
    self->receive(
      [&](tstate_atom, transport_mode m, transport_status s,
          std::string& reason) {
        EXPECT_EQ(m, transport_mode::http);
        states.emplace_back(s, std::move(reason));
        got = true;
      },
      [&](event_atom, server_event& ev) {
        events.emplace_back(std::move(ev));
        got = true;
      },
      caf::after(timeout) >> [] {});
    return got;
  }

  /// Waits for the next reported state equal to `s`; earlier other states
  /// are skipped. Returns its reason.
  std::optional<std::string> wait_state(transport_status s,
                                        std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    for (;;) {
      while (states_seen < states.size()) {
        auto& x = states[states_seen++];
        if (x.first == s)
          return x.second;
      }
      auto now = steady::now();
      if (now >= deadline)
        return std::nullopt;
      pump(deadline - now);
    }
  }

  /// Waits for an event that satisfies `pred` (events seen so far count).
  template <class Pred>
  std::optional<server_event> wait_event(Pred pred,
                                         std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    std::size_t i = 0;
    for (;;) {
      for (; i < events.size(); ++i)
        if (pred(events[i]))
          return events[i];
      auto now = steady::now();
      if (now >= deadline)
        return std::nullopt;
      pump(deadline - now);
    }
  }

  /// Collects whatever arrives for `d`.
  void drain(std::chrono::milliseconds d) {
    auto deadline = steady::now() + d;
    while (steady::now() < deadline)
      pump(deadline - steady::now());
  }
};

class http_transport_test : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(gw.start()) << gw.last_error();
    cfg.set("scheduler.policy", caf::atom("sharing"));
    cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(cfg);
    in = std::make_unique<inbox>(*sys);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  void TearDown() override {
    if (sys) {
      for (auto& t : transports)
        (*self)->send_exit(t, caf::exit_reason::user_shutdown);
      for (auto& t : transports)
        (*self)->wait_for(t);
      transports.clear();
      for (auto& f : forwarders)
        caf::anon_send_exit(f, caf::exit_reason::user_shutdown);
      forwarders.clear();
      self.reset();
      in.reset();
      sys.reset();
    }
  }

  http_transport_config make_config(const std::string& url = {}) {
    http_transport_config c;
    c.base_url = url.empty() ? gw.http_url() : url;
    c.connect_timeout = 2s;
    return c;
  }

  transport_actor spawn(http_transport_config c) {
    auto fwd = sys->spawn(forwarder, caf::actor{in->self});
    forwarders.push_back(caf::actor_cast<caf::actor>(fwd));
    auto t = spawn_http_transport(*sys, std::move(c), fwd);
    transports.push_back(t);
    return t;
  }

  /// Spawns a transport and waits until it is up.
  transport_actor spawn_up() {
    auto t = spawn(make_config());
    (*self)->send(t, connect_atom_v);
    auto up = in->wait_state(transport_status::up, 5s);
    EXPECT_TRUE(up.has_value()) << "transport did not come up";
    return t;
  }

  caf::expected<api_reply> call(transport_actor t, const std::string& method,
                                const std::string& path,
                                const std::string& body = "",
                                const std::string& token = "",
                                caf::timespan timeout = 5s,
                                const std::string& id = "c-1") {
    caf::expected<api_reply> res{
      make_engine_error(error_class::unknown, "no answer")};
    api_call c{id, method, path, body, token};
    (*self)
      ->request(t, timeout + 3s, request_atom_v, c, timeout)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// Logs in through the transport; the access token.
  std::string login(transport_actor t, const std::string& user = "alice",
                    const std::string& pw = "alice-pw") {
    auto r = call(t, "POST", "/users/authenticate",
                  R"({"username":")" + user + R"(","password":")" + pw
                    + R"("})");
    if (!r)
      return {};
    return jstr(parse_json(r->body), "/data/access_token");
  }

  /// Waits until the gateway counts at least `n` event subscriptions.
  bool wait_subscriptions(transport_actor t, int64_t n,
                          std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    while (steady::now() < deadline) {
      auto r = call(t, "GET", "/health/detailed");
      if (r && jint(parse_json(r->body), "/data/counts/subscriptions", 0) >= n)
        return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  gateway_process gw;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<inbox> in;
  std::unique_ptr<caf::scoped_actor> self;
  std::vector<transport_actor> transports;
  std::vector<caf::actor> forwarders;
};

using request_handle = decltype(std::declval<caf::scoped_actor&>()->request(
  std::declval<transport_actor&>(), caf::timespan{}, request_atom_v,
  std::declval<api_call>(), caf::timespan{}));

bool is_class(const caf::error& e, error_class c) {
  return classify(e).cls == c;
}

// -- connecting --------------------------------------------------------------------

TEST_F(http_transport_test, connect_reports_connecting_then_up) {
  auto t = spawn(make_config());
  (*self)->send(t, connect_atom_v);
  ASSERT_TRUE(in->wait_state(transport_status::connecting, 5s));
  ASSERT_TRUE(in->wait_state(transport_status::up, 5s));
  // a second connect while up only reports up again (no reconnect)
  (*self)->send(t, connect_atom_v);
  in->drain(200ms);
  ASSERT_EQ(in->states.size(), 3u);
  EXPECT_EQ(in->states[2].first, transport_status::up);
}

TEST_F(http_transport_test, connect_to_nothing_reports_down_with_reason) {
  auto port = closed_port();
  ASSERT_NE(port, 0);
  auto t = spawn(make_config("http://127.0.0.1:" + std::to_string(port)));
  auto start = steady::now();
  (*self)->send(t, connect_atom_v);
  auto reason = in->wait_state(transport_status::down, 5s);
  ASSERT_TRUE(reason.has_value());
  EXPECT_LT(steady::now() - start, 3s);
  EXPECT_NE(reason->find("health check"), std::string::npos) << *reason;
}

TEST_F(http_transport_test, base_url_with_a_bad_host_is_down_with_a_sentence) {
  // issue 12: the host is checked before anything reaches libcurl
  auto t = spawn(make_config("http://127.0.0.1\r\nX-Injected: 1/"));
  (*self)->send(t, connect_atom_v);
  auto reason = in->wait_state(transport_status::down, 5s);
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find("bad base URL"), std::string::npos) << *reason;
  EXPECT_NE(reason->find("line break"), std::string::npos) << *reason;
  auto t2 = spawn(make_config("http://exa mple.org:8771"));
  (*self)->send(t2, connect_atom_v);
  reason = in->wait_state(transport_status::down, 5s);
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find("space"), std::string::npos) << *reason;
}

TEST_F(http_transport_test, request_while_not_connected_is_a_network_error) {
  auto t = spawn(make_config());
  auto r = call(t, "GET", "/health");
  ASSERT_FALSE(r);
  EXPECT_TRUE(is_class(r.error(), error_class::network)) << describe(r.error());
  EXPECT_NE(describe(r.error()).find("http transport not connected"),
            std::string::npos);
}

// -- requests ----------------------------------------------------------------------

TEST_F(http_transport_test, login_returns_200_with_tokens) {
  auto t = spawn_up();
  auto r = call(t, "POST", "/users/authenticate",
                R"({"username":"alice","password":"alice-pw"})", "", 5s,
                "login-1");
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->id, "login-1");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->via, transport_mode::http);
  auto body = parse_json(r->body);
  EXPECT_FALSE(jstr(body, "/data/access_token").empty());
  EXPECT_FALSE(jstr(body, "/data/refresh_token").empty());
  EXPECT_EQ(jstr(body, "/data/user/username"), "alice");
  ASSERT_TRUE(r->headers.count("Content-Type"));
  EXPECT_NE(r->headers.at("Content-Type").find("application/json"),
            std::string::npos);
  // the token works for an authenticated call
  auto me = call(t, "GET", "/users/me", "", jstr(body, "/data/access_token"));
  ASSERT_TRUE(me);
  EXPECT_EQ(me->status, 200);
  EXPECT_EQ(jstr(parse_json(me->body), "/data/username"), "alice");
}

TEST_F(http_transport_test, fifty_concurrent_requests_all_answered) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  constexpr int n = 50;
  std::vector<request_handle> hs;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    ids.push_back("par-" + std::to_string(i));
    api_call c{ids.back(), "GET", "/users/me", "", tok};
    hs.push_back((*self)->request(t, 10s, request_atom_v, c,
                                  caf::timespan{8s}));
  }
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    hs[i].receive(
      [&](api_reply& r) {
        EXPECT_EQ(r.id, ids[i]);
        EXPECT_EQ(r.status, 200);
        if (r.id == ids[i] && r.status == 200)
          ++ok;
      },
      [&](caf::error& e) { ADD_FAILURE() << ids[i] << ": " << describe(e); });
  }
  EXPECT_EQ(ok, n);
}

TEST_F(http_transport_test, bad_token_is_a_401_reply_not_an_error) {
  auto t = spawn_up();
  auto r = call(t, "GET", "/users/me", "", "not-a-token");
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(jstr(parse_json(r->body), "/code"), "invalid_token");
  // 404 with a body and a 405 with Allow are replies as well
  auto nf = call(t, "GET", "/no/such/route");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  // the transport stays up
  in->drain(100ms);
  EXPECT_EQ(in->states.back().first, transport_status::up);
}

TEST_F(http_transport_test, methods_and_bodies) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  auto put = call(t, "PUT", "/users/me/preferences", R"({"theme":"dark"})",
                  tok);
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200);
  EXPECT_EQ(jstr(parse_json(put->body), "/data/preferences/theme"), "dark");
  auto post = call(t, "POST", "/conversations/messages",
                   R"({"id":"mb-1","content":"hello there"})", tok);
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 201);
  auto again = call(t, "POST", "/conversations/messages",
                    R"({"id":"mb-1","content":"hello there"})", tok);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  auto hist = call(t, "GET", "/conversations/current/messages?limit=5", "",
                   tok);
  ASSERT_TRUE(hist);
  EXPECT_EQ(hist->status, 200);
  // a body that is not JSON is the gateway's 400, still a reply
  auto bad = call(t, "POST", "/conversations/messages", "{nope", tok);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

// -- events ------------------------------------------------------------------------

TEST_F(http_transport_test, token_opens_the_event_stream) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  (*self)->send(t, token_atom_v, tok);
  ASSERT_TRUE(wait_subscriptions(t, 1, 5s));
  auto r = call(t, "POST", "/conversations/messages",
                R"({"id":"sse-1","content":"events over http please"})", tok);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201);
  auto ev = in->wait_event(
    [](const server_event& e) {
      return e.topic == "message"
             && jstr(parse_json(e.data), "/id") == "sse-1";
    },
    5s);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->via, transport_mode::http);
  EXPECT_GT(ev->seq, 0u);
  // the companion bot answers: stream chunks, then its message
  auto bot = in->wait_event(
    [](const server_event& e) {
      return e.topic == "message"
             && jstr(parse_json(e.data), "/id") == "bot-sse-1";
    },
    5s);
  ASSERT_TRUE(bot.has_value());
  EXPECT_GT(bot->seq, ev->seq);
  bool chunks = false;
  for (auto& e : in->events)
    if (e.topic == "message.stream")
      chunks = true;
  EXPECT_TRUE(chunks);
  // the same token again does not reopen the stream: still one subscription
  (*self)->send(t, token_atom_v, tok);
  in->drain(300ms);
  auto d = call(t, "GET", "/health/detailed");
  ASSERT_TRUE(d);
  EXPECT_EQ(jint(parse_json(d->body), "/data/counts/subscriptions", -1), 1);
  // an empty token closes it
  (*self)->send(t, token_atom_v, std::string{});
  auto deadline = steady::now() + 5s;
  int64_t subs = -1;
  while (steady::now() < deadline) {
    auto x = call(t, "GET", "/health/detailed");
    ASSERT_TRUE(x);
    subs = jint(parse_json(x->body), "/data/counts/subscriptions", -1);
    if (subs == 0)
      break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(subs, 0);
}

TEST_F(http_transport_test, token_before_connect_opens_stream_once_up) {
  auto t = spawn(make_config());
  auto tok = login_token(gw, "bob", "bob-pw");
  ASSERT_FALSE(tok.empty());
  (*self)->send(t, token_atom_v, tok);
  (*self)->send(t, connect_atom_v);
  ASSERT_TRUE(in->wait_state(transport_status::up, 5s));
  ASSERT_TRUE(wait_subscriptions(t, 1, 5s));
  auto r = call(t, "POST", "/conversations/messages",
                R"({"id":"early-1","content":"hi","type":"system"})", tok);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_TRUE(in->wait_event(
    [](const server_event& e) {
      return jstr(parse_json(e.data), "/id") == "early-1";
    },
    5s));
}

TEST_F(http_transport_test, stream_ends_with_gateway_stop_then_down_and_back) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  (*self)->send(t, token_atom_v, tok);
  ASSERT_TRUE(wait_subscriptions(t, 1, 5s));
  // no request in flight: the dropped stream alone notices the gateway left
  gw.stop();
  auto reason = in->wait_state(transport_status::down, 8s);
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find("event stream"), std::string::npos) << *reason;
  // the gateway comes back (same port); the supervisor's connect brings the
  // transport up again and the stream reopens with the stored token
  ASSERT_TRUE(gw.start()) << gw.last_error();
  (*self)->send(t, connect_atom_v);
  ASSERT_TRUE(in->wait_state(transport_status::up, 5s));
  ASSERT_TRUE(wait_subscriptions(t, 1, 5s));
  auto r = call(t, "POST", "/conversations/messages",
                R"({"id":"back-1","content":"x","type":"system"})", tok);
  ASSERT_TRUE(r);
  EXPECT_TRUE(in->wait_event(
    [](const server_event& e) {
      return jstr(parse_json(e.data), "/id") == "back-1";
    },
    5s));
}

// -- failures ----------------------------------------------------------------------

TEST_F(http_transport_test, killed_gateway_gives_network_error_and_down) {
  auto t = spawn_up();
  ASSERT_TRUE(call(t, "GET", "/health")); // a kept-alive connection exists
  gw.kill9();
  auto start = steady::now();
  auto r = call(t, "GET", "/health", "", "", 5s);
  ASSERT_FALSE(r);
  EXPECT_TRUE(is_class(r.error(), error_class::network)) << describe(r.error());
  EXPECT_LT(steady::now() - start, 3s);
  ASSERT_TRUE(in->wait_state(transport_status::down, 3s));
  // dead until reconnected
  auto r2 = call(t, "GET", "/health");
  ASSERT_FALSE(r2);
  EXPECT_TRUE(is_class(r2.error(), error_class::network));
  // a connect now fails as well
  (*self)->send(t, connect_atom_v);
  ASSERT_TRUE(in->wait_state(transport_status::connecting, 3s));
  ASSERT_TRUE(in->wait_state(transport_status::down, 5s));
}

TEST_F(http_transport_test, latency_fault_gives_timeout_and_stays_up) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  auto root = login_token(gw, "root", "root-pw");
  ASSERT_TRUE(set_faults(gw, R"({"latency_ms":1000})", root));
  auto start = steady::now();
  auto r = call(t, "GET", "/users/me", "", tok, 200ms);
  auto took = steady::now() - start;
  ASSERT_FALSE(r);
  EXPECT_TRUE(is_class(r.error(), error_class::timeout)) << describe(r.error());
  EXPECT_LT(took, 900ms);
  // one timeout does not take the transport down
  in->drain(200ms);
  for (auto& s : in->states)
    EXPECT_NE(s.first, transport_status::down) << s.second;
  auto h = call(t, "GET", "/health", "", "", 3s); // never delayed
  ASSERT_TRUE(h) << describe(h.error());
  EXPECT_EQ(h->status, 200);
  auto slow = call(t, "GET", "/users/me", "", tok, 3s);
  ASSERT_TRUE(slow) << describe(slow.error());
  EXPECT_EQ(slow->status, 200);
  ASSERT_TRUE(set_faults(gw, R"({"reset":true})", root));
}

TEST_F(http_transport_test, disconnect_reports_idle_and_fails_pending) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  (*self)->send(t, token_atom_v, tok);
  ASSERT_TRUE(wait_subscriptions(t, 1, 5s));
  auto root = login_token(gw, "root", "root-pw");
  ASSERT_TRUE(set_faults(gw, R"({"latency_ms":3000})", root));
  api_call c{"held-1", "GET", "/users/me", "", tok};
  auto h = (*self)->request(t, 8s, request_atom_v, c, caf::timespan{5s});
  std::this_thread::sleep_for(200ms); // let it reach the gateway
  auto start = steady::now();
  (*self)->send(t, disconnect_atom_v);
  bool failed = false;
  h.receive([&](api_reply&) { ADD_FAILURE() << "got a reply"; },
            [&](caf::error& e) {
              failed = is_class(e, error_class::network);
              EXPECT_TRUE(failed) << describe(e);
            });
  EXPECT_TRUE(failed);
  EXPECT_LT(steady::now() - start, 1s);
  ASSERT_TRUE(in->wait_state(transport_status::idle, 2s));
  auto r = call(t, "GET", "/health");
  ASSERT_FALSE(r);
  EXPECT_TRUE(is_class(r.error(), error_class::network));
  ASSERT_TRUE(set_faults(gw, R"({"reset":true})", root));
  // the event stream is gone too
  auto deadline = steady::now() + 5s;
  aico::test::http_client hc{gw.host(), gw.port()};
  int64_t subs = -1;
  while (steady::now() < deadline) {
    subs = jint(hc.get("/api/v1/health/detailed").body,
                "/data/counts/subscriptions", -1);
    if (subs == 0)
      break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(subs, 0);
  // connect again works
  (*self)->send(t, connect_atom_v);
  ASSERT_TRUE(in->wait_state(transport_status::up, 5s));
  EXPECT_TRUE(call(t, "GET", "/health"));
}

TEST_F(http_transport_test, shutdown_is_prompt_with_work_in_flight) {
  auto t = spawn_up();
  auto tok = login(t);
  ASSERT_FALSE(tok.empty());
  (*self)->send(t, token_atom_v, tok);
  ASSERT_TRUE(wait_subscriptions(t, 1, 5s));
  auto root = login_token(gw, "root", "root-pw");
  ASSERT_TRUE(set_faults(gw, R"({"latency_ms":2500})", root));
  std::vector<request_handle> hs;
  for (int i = 0; i < 5; ++i) {
    api_call c{"slow-" + std::to_string(i), "GET", "/users/me", "", tok};
    hs.push_back(
      (*self)->request(t, 10s, request_atom_v, c, caf::timespan{8s}));
  }
  std::this_thread::sleep_for(200ms);
  auto start = steady::now();
  (*self)->send_exit(t, caf::exit_reason::user_shutdown);
  (*self)->wait_for(t);
  EXPECT_LT(steady::now() - start, 2s);
  // the pending requests were failed, not left hanging
  for (auto& h : hs)
    h.receive([&](api_reply&) { ADD_FAILURE() << "got a reply"; },
              [&](caf::error& e) {
                EXPECT_TRUE(is_class(e, error_class::network)) << describe(e);
              });
  EXPECT_LT(steady::now() - start, 2s);
  transports.clear();
  ASSERT_TRUE(set_faults(gw, R"({"reset":true})", root));
}

// -- the curl loop on its own ------------------------------------------------------

struct loop_result {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<http::response> done;
  int opened = 0;
  int open_status = 0;
  std::string data;

  void add(http::response r) {
    std::lock_guard<std::mutex> g{mtx};
    done.push_back(std::move(r));
    cv.notify_all();
  }

  bool wait(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, timeout, [&] { return done.size() >= n; });
  }
};

TEST(http_loop, refused_connection_is_a_network_failure) {
  auto port = closed_port();
  ASSERT_NE(port, 0);
  http::loop lp;
  loop_result res;
  http::request rq;
  rq.url = "http://127.0.0.1:" + std::to_string(port) + "/api/v1/health";
  rq.timeout = 2s;
  lp.submit(rq, [&](http::response r) { res.add(std::move(r)); });
  ASSERT_TRUE(res.wait(1, 3s));
  EXPECT_EQ(res.done[0].fail, http::failure::network);
  EXPECT_EQ(res.done[0].status, 0);
  EXPECT_FALSE(res.done[0].error.empty());
}

TEST(http_loop, keep_alive_connections_are_reused_and_bounded) {
  gateway_process gw;
  ASSERT_TRUE(gw.start()) << gw.last_error();
  http::loop_options lo;
  lo.max_host_connections = 4;
  http::loop lp{lo};
  http::request rq;
  rq.url = gw.http_url() + "/api/v1/health";
  rq.timeout = 5s;
  // sequential: the second request reuses the first one's connection
  for (int i = 0; i < 2; ++i) {
    loop_result res;
    lp.submit(rq, [&](http::response r) { res.add(std::move(r)); });
    ASSERT_TRUE(res.wait(1, 5s));
    EXPECT_EQ(res.done[0].status, 200);
    EXPECT_EQ(res.done[0].new_connections, i == 0 ? 1 : 0);
  }
  // 40 at once: never more than 4 connections (one of them kept from above)
  loop_result res;
  for (int i = 0; i < 40; ++i)
    lp.submit(rq, [&](http::response r) { res.add(std::move(r)); });
  ASSERT_TRUE(res.wait(40, 10s));
  long opened = 0;
  for (auto& r : res.done) {
    EXPECT_EQ(r.status, 200);
    opened += r.new_connections;
  }
  EXPECT_LE(opened, 3);
}

TEST(http_loop, silent_event_stream_is_detected_by_the_watchdog) {
  gateway_process gw;
  ASSERT_TRUE(gw.start()) << gw.last_error();
  auto tok = login_token(gw, "alice", "alice-pw");
  ASSERT_FALSE(tok.empty());
  http::loop lp;
  loop_result res;
  http::request rq;
  rq.url = gw.http_url() + "/api/v1/events";
  rq.headers.push_back("Authorization: Bearer " + tok);
  http::stream_options so;
  so.open_timeout = 2s;
  so.idle_timeout = 400ms; // the gateway is silent for 15 s between pings
  http::stream_handlers h;
  h.on_open = [&](int status, const std::map<std::string, std::string>& hs) {
    std::lock_guard<std::mutex> g{res.mtx};
    ++res.opened;
    res.open_status = status;
    auto i = hs.find("Content-Type");
    if (i != hs.end())
      res.data = i->second;
  };
  h.on_data = [](std::string_view) { return true; };
  h.on_close = [&](http::response r) { res.add(std::move(r)); };
  auto start = steady::now();
  lp.open_stream(rq, so, h);
  ASSERT_TRUE(res.wait(1, 5s));
  auto took = steady::now() - start;
  EXPECT_EQ(res.opened, 1);
  EXPECT_EQ(res.open_status, 200);
  EXPECT_EQ(res.data, "text/event-stream");
  EXPECT_EQ(res.done[0].fail, http::failure::timeout);
  EXPECT_GE(took, 350ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(lp.active(), 0u);
}

TEST(http_loop, stream_with_bad_token_closes_with_401_and_body) {
  gateway_process gw;
  ASSERT_TRUE(gw.start()) << gw.last_error();
  http::loop lp;
  loop_result res;
  http::request rq;
  rq.url = gw.http_url() + "/api/v1/events";
  rq.headers.push_back("Authorization: Bearer nope");
  http::stream_handlers h;
  h.on_data = [](std::string_view) {
    ADD_FAILURE() << "no stream data for a 401";
    return true;
  };
  h.on_close = [&](http::response r) { res.add(std::move(r)); };
  lp.open_stream(rq, {}, h);
  ASSERT_TRUE(res.wait(1, 5s));
  EXPECT_EQ(res.done[0].fail, http::failure::none);
  EXPECT_EQ(res.done[0].status, 401);
  EXPECT_EQ(jstr(parse_json(res.done[0].body), "/code"), "invalid_token");
}

TEST(http_loop, cancel_and_stop_are_prompt_and_silent) {
  gateway_process gw;
  ASSERT_TRUE(gw.start()) << gw.last_error();
  auto root = login_token(gw, "root", "root-pw");
  ASSERT_TRUE(set_faults(gw, R"({"latency_ms":2500})", root));
  auto tok = login_token(gw, "alice", "alice-pw");
  auto lp = std::make_unique<http::loop>();
  std::atomic<int> calls{0};
  http::request rq;
  rq.url = gw.http_url() + "/api/v1/users/me";
  rq.headers.push_back("Authorization: Bearer " + tok);
  rq.timeout = 8s;
  auto id = lp->submit(rq, [&](http::response) { ++calls; });
  for (int i = 0; i < 4; ++i)
    lp->submit(rq, [&](http::response) { ++calls; });
  auto deadline = steady::now() + 2s;
  while (lp->active() < 5 && steady::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(lp->active(), 5u);
  lp->cancel(id);
  deadline = steady::now() + 2s;
  while (lp->active() != 4 && steady::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(lp->active(), 4u);
  auto start = steady::now();
  lp.reset(); // stop + join
  EXPECT_LT(steady::now() - start, 500ms);
  EXPECT_EQ(calls.load(), 0);
  ASSERT_TRUE(set_faults(gw, R"({"reset":true})", root));
}

} // namespace
