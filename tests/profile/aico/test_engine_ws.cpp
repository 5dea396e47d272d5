// The whole engine in the aico profile with --transports ws,http against
// aico-backend-peer (started per test on 127.0.0.1, temp data dir,
// kernel-picked ports): the WebSocket is the active transport (HTTP calls +
// the backend's WebSocket for liveness, its auth with the engine's token),
// a reconnect gets a fresh token, and the failover WS -> HTTP (the peer's
// WebSocket switched off) and the fail-back lose and double no call: the
// peer's store (/_peer/messages) is the ground truth.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "aico_peer/peer_fixture.hpp"
#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "support/engine_harness.hpp"

namespace aico::test {
namespace {

class AicoEngineWs : public PeerTest {
protected:
  engine_config config() {
    engine_config cfg;
    cfg.profile = wire_profile::aico;
    cfg.state_dir = state.path();
    auto& c = cfg.connection;
    c.order = {transport_mode::ws, transport_mode::http};
    c.http.base_url = peer->http_url();
    c.ws.url = peer->ws_url();
    c.http.connect_timeout = c.ws.connect_timeout = 2s;
    c.ws.ping_interval = 300ms;
    c.ws.dead_peer_timeout = 2s;
    c.health_interval = 500ms;
    c.health_timeout = 2s;
    c.failback_probes = 2;
    c.backoff = {std::chrono::milliseconds{100}, 1.6, 0.2,
                 std::chrono::milliseconds{500}};
    cfg.tokens.state_dir = state.path();
    cfg.tokens.request_timeout = 5s;
    cfg.request_timeout = 10s;
    cfg.shutdown_timeout = 5s;
    return cfg;
  }

  void start_engine() {
    eng = std::make_unique<engine>(sys, config());
    caf::anon_send(eng->connection(), watch_atom::value,
                   spawn_watcher(sys, log));
  }

  void TearDown() override { eng.reset(); }

  caf::expected<session_info> login() {
    caf::scoped_actor self{sys};
    caf::expected<session_info> res{caf::error{}};
    self->request(eng->tokens(), 12s, login_atom::value, pu::alice_uuid,
                  pu::alice_pin)
      .receive([&](session_info& s) { res = std::move(s); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<api_reply> send_message(const std::string& id) {
    json::object body{{"id", id},
                      {"conversation_id", "alice_failover"},
                      {"content", "message " + id}};
    caf::scoped_actor self{sys};
    caf::expected<api_reply> res{caf::error{}};
    api_call c{id, "POST", "/conversations/messages", json::serialize(body),
               ""};
    self->request(eng->api(), 14s, request_atom::value, c, caf::timespan{12s},
                  true)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// The user messages the peer stored, in insertion order (their ids).
  std::vector<std::string> stored_ids() {
    std::vector<std::string> ids;
    auto v = debug("GET", "/_peer/messages");
    auto* msgs = jptr(v, "/messages");
    if (!msgs || !msgs->is_array())
      return ids;
    for (auto& m : msgs->get_array())
      if (jstr(m, "/role") == "user") {
        auto c = jstr(m, "/content");
        if (c.rfind("message ", 0) == 0)
          ids.push_back(c.substr(8));
      }
    return ids;
  }

  caf::actor_system_config sys_cfg;
  caf::actor_system sys{sys_cfg};
  temp_dir state{"aico-engine-ws"};
  std::shared_ptr<engine_log> log = std::make_shared<engine_log>();
  std::unique_ptr<engine> eng;
};

TEST_F(AicoEngineWs, WsIsActiveCallsWorkAndTheSocketIsAuthenticated) {
  start_engine();
  ASSERT_TRUE(log->wait_state(is_connected(transport_mode::ws), 10s))
    << log->history();
  auto s = login();
  ASSERT_TRUE(s) << to_string(s.error());
  auto r = send_message("m-1");
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(r->via, transport_mode::ws);
  // the socket authenticated with the engine's access token
  EXPECT_TRUE(eventually([&] { return stat("ws_auth_ok") >= 1; }, 5000ms));
  EXPECT_EQ(stored_ids(), std::vector<std::string>{"m-1"});
}

TEST_F(AicoEngineWs, AReconnectAuthenticatesWithAFreshToken) {
  start_engine();
  ASSERT_TRUE(log->wait_state(is_connected(transport_mode::ws), 10s));
  ASSERT_TRUE(login());
  ASSERT_TRUE(eventually([&] { return stat("ws_auth_ok") >= 1; }, 5000ms));
  // tokens issued in the same second are byte-identical: let the refresh
  // give a new one
  std::this_thread::sleep_for(1100ms);
  auto from = log->state_count();
  debug("POST", "/_peer/ws/drop"); // revokes the socket's session
  ASSERT_TRUE(log->wait_state(is_connected(transport_mode::ws), 10s, from + 1))
    << log->history();
  // the spent token is refused once, the engine refreshes, the new token
  // authenticates the new socket
  EXPECT_TRUE(eventually([&] { return stat("ws_auth_ok") >= 2; }, 8000ms))
    << "auth ok " << stat("ws_auth_ok") << ", failed "
    << stat("ws_auth_failed") << ", refreshes " << stat("refreshes");
  EXPECT_GE(stat("refreshes"), 1);
  auto r = send_message("after-reconnect");
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, 201);
}

TEST_F(AicoEngineWs, FailoverToHttpAndBackLosesAndDoublesNothing) {
  start_engine();
  ASSERT_TRUE(log->wait_state(is_connected(transport_mode::ws), 10s));
  ASSERT_TRUE(login());
  std::vector<std::string> ok, unknown;
  std::map<std::string, int> via;
  std::string trace;
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    for (int i = 0; !stop && i < 400; ++i) {
      auto id = "f-" + std::to_string(i);
      auto r = send_message(id);
      if (r && r->status == 201) {
        ok.push_back(id);
        ++via[to_string(r->via)];
        trace += std::string{to_string(r->via)} + " ";
      } else if (!r && classify(r.error()).code == "outcome_unknown") {
        unknown.push_back(id);
        trace += "? ";
      } else {
        ADD_FAILURE() << id << ": "
                      << (r ? std::to_string(r->status) + " " + r->body
                            : to_string(r.error()));
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  std::this_thread::sleep_for(500ms);
  auto from = log->state_count();
  debug("POST", "/_peer/ws/down");
  auto degraded = log->wait_state(
    [](const connection_state& cs) {
      return cs.state == link_state::degraded
             && cs.mode == transport_mode::http;
    },
    10s, from);
  EXPECT_TRUE(degraded) << log->history();
  if (degraded) {
    EXPECT_NE(describe(*degraded).find("connected over http, degraded"),
              std::string::npos)
      << describe(*degraded);
  }
  std::this_thread::sleep_for(1000ms); // calls over http
  from = log->state_count();
  debug("POST", "/_peer/ws/up");
  EXPECT_TRUE(log->wait_state(is_connected(transport_mode::ws), 15s, from))
    << log->history();
  std::this_thread::sleep_for(500ms); // calls over ws again
  stop = true;
  sender.join();
  EXPECT_GT(via["http"], 0) << "no call went over http";
  EXPECT_GT(via["ws"], 0);
  // the ground truth: every answered send stored once, in order; a send
  // whose outcome was unknown at most once
  auto ids = stored_ids();
  std::map<std::string, int> count;
  for (auto& id : ids)
    ++count[id];
  for (auto& id : ok)
    EXPECT_EQ(count[id], 1) << id;
  for (auto& id : unknown)
    EXPECT_LE(count[id], 1) << id;
  std::vector<std::string> stored_ok;
  for (auto& id : ids)
    if (std::find(ok.begin(), ok.end(), id) != ok.end())
      stored_ok.push_back(id);
  EXPECT_EQ(stored_ok, ok) << "stored order differs from send order";
  EXPECT_EQ(ids.size(), ok.size() + static_cast<std::size_t>(std::count_if(
                                      unknown.begin(), unknown.end(),
                                      [&](auto& id) { return count[id] > 0; })));
  std::cerr << "sent " << ok.size() << " (ws " << via["ws"] << ", http "
            << via["http"] << "), outcome unknown " << unknown.size()
            << ": " << trace << std::endl;
}

} // namespace
} // namespace aico::test
