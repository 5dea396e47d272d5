// Wire document section 3.1 (and 10): the WebSocket adapter on its own
// port: welcome, auth frames, heartbeats, subscriptions, errors, the
// session revoked on disconnect and the session expiry.
#include "peer_fixture.hpp"

namespace aico::test {
namespace {

class WsTest : public PeerTest {
protected:
  std::unique_ptr<peer_ws>
  open_ws(const std::string& path = "/",
          const std::map<std::string, std::string>& headers = {}) {
    auto ws = std::make_unique<peer_ws>(peer->host(), peer->ws_port());
    EXPECT_TRUE(ws->connect(path, headers)) << ws->error();
    auto welcome = ws->receive();
    EXPECT_TRUE(welcome && jstr(*welcome, "/type") == "welcome");
    return ws;
  }

  json::value roundtrip(peer_ws& ws, const json::value& frame) {
    EXPECT_TRUE(ws.send(frame)) << ws.error();
    auto r = ws.receive();
    EXPECT_TRUE(r.has_value());
    return r ? *r : json::value{};
  }

  std::string token(const std::string& uuid = pu::alice_uuid,
                    const std::string& pin = pu::alice_pin) {
    auto c = connected();
    return login(c, uuid, pin).first;
  }
};

TEST_F(WsTest, TheServerGreetsWithAWelcomeInPythonJson) {
  peer_ws ws(peer->host(), peer->ws_port());
  ASSERT_TRUE(ws.connect("/any/path/at/all")) << ws.error();
  auto raw = ws.receive_text();
  ASSERT_TRUE(raw);
  // json.dumps defaults: ", " and ": ".
  EXPECT_EQ(raw->rfind(R"({"type": "welcome", "client_id": "127.0.0.1:)", 0),
            0u)
    << *raw;
  EXPECT_NE(raw->find(R"(, "server": "aico-api-gateway", "version": "1.0.0"})"),
            std::string::npos)
    << *raw;
}

TEST_F(WsTest, AuthIsAMessageAndHeadersAreIgnored) {
  auto t = token();
  // A token in the upgrade header does not authenticate.
  auto ws = open_ws("/", {{"Authorization", "Bearer " + t}});
  auto sub
    = roundtrip(*ws, json::object{{"type", "subscribe"}, {"topic", "x"}});
  EXPECT_EQ(jstr(sub, "/error"), "Authentication required for subscriptions");
  auto none = roundtrip(*ws, json::object{{"type", "auth"}});
  EXPECT_EQ(
    to_text(none),
    R"({"type":"error","error":"Authentication failed","detail":"No authentication provided"})");
  auto bad = roundtrip(*ws, json::object{{"type", "auth"}, {"token", "x.y.z"}});
  EXPECT_EQ(
    to_text(bad),
    R"({"type":"error","error":"Authentication failed","detail":"Authentication failed"})");
  auto ok = roundtrip(
    *ws,
    json::object{{"type", "auth"}, {"token", t}, {"device_uuid", "dev-1"}});
  EXPECT_EQ(jstr(ok, "/type"), "auth_success");
  EXPECT_EQ(jstr(ok, "/user_uuid"), pu::alice_uuid);
  EXPECT_EQ(to_text(*jptr(ok, "/roles")), R"(["user"])");
  EXPECT_EQ(jstr(ok, "/session_id").size(), 36u);
}

TEST_F(WsTest, HeartbeatsAndUnknownMessages) {
  auto ws = open_ws();
  auto ack = roundtrip(*ws, json::object{{"type", "heartbeat"}});
  EXPECT_EQ(jstr(ack, "/type"), "heartbeat_ack");
  EXPECT_TRUE(jptr(ack, "/timestamp")->is_double());
  EXPECT_EQ(to_text(roundtrip(*ws, json::object{{"type", "ping"}})),
            R"({"type":"error","error":"Unknown message type: ping"})");
  EXPECT_EQ(to_text(roundtrip(*ws, json::object{{"data", 1}})),
            R"({"type":"error","error":"Missing message type"})");
  ASSERT_TRUE(ws->send_text("not json"));
  auto inv = ws->receive();
  ASSERT_TRUE(inv);
  EXPECT_EQ(jstr(*inv, "/error"), "Invalid JSON");
  // `request` needs auth, and is broken once authenticated.
  auto req = roundtrip(
    *ws, json::object{{"type", "request"}, {"id", "1"}, {"message_type", "x"}});
  EXPECT_EQ(jstr(req, "/error"), "Authentication required for requests");
  roundtrip(*ws, json::object{{"type", "auth"}, {"token", token()}});
  req = roundtrip(
    *ws, json::object{{"type", "request"}, {"id", "1"}, {"message_type", "x"}});
  EXPECT_EQ(jstr(req, "/error"), "Request error");
  EXPECT_TRUE(ws->send(json::object{{"type", "heartbeat"}}));
  EXPECT_TRUE(ws->receive_type("heartbeat_ack"));
}

TEST_F(WsTest, OnlyAdminsMaySubscribe) {
  auto ws = open_ws();
  roundtrip(*ws, json::object{{"type", "auth"}, {"token", token()}});
  auto denied
    = roundtrip(*ws, json::object{{"type", "subscribe"}, {"topic", "t1"}});
  EXPECT_EQ(jstr(denied, "/error"), "Subscription not authorized");
  auto admin = open_ws();
  auto ok = roundtrip(
    *admin, json::object{{"type", "auth"},
                         {"token", token(pu::root_uuid, pu::root_pin)}});
  EXPECT_EQ(to_text(*jptr(ok, "/roles")), R"(["admin"])");
  EXPECT_EQ(to_text(roundtrip(
              *admin, json::object{{"type", "subscribe"}, {"topic", "t1"}})),
            R"({"type":"subscribed","topic":"t1"})");
  EXPECT_EQ(to_text(roundtrip(
              *admin, json::object{{"type", "unsubscribe"}, {"topic", "t1"}})),
            R"({"type":"unsubscribed","topic":"t1"})");
  EXPECT_EQ(
    jstr(roundtrip(*admin, json::object{{"type", "subscribe"}}), "/error"),
    "Missing topic for subscription");
}

TEST_F(WsTest, ADisconnectRevokesTheTokensSessionForWsButNotForRest) {
  auto c = connected();
  auto [access, refresh] = login(c);
  {
    auto ws = open_ws();
    auto ok = roundtrip(*ws, json::object{{"type", "auth"}, {"token", access}});
    ASSERT_EQ(jstr(ok, "/type"), "auth_success");
    ws->close();
  }
  // The revocation happens when the server sees the close; a new socket
  // with the same token then fails, with the generic reason.
  json::value again;
  ASSERT_TRUE(eventually([&] {
    auto ws = open_ws();
    again = roundtrip(*ws, json::object{{"type", "auth"}, {"token", access}});
    return jstr(again, "/type") == "error";
  }));
  EXPECT_EQ(
    to_text(again),
    R"({"type":"error","error":"Authentication failed","detail":"Authentication failed"})");
  // REST does not look at sessions.
  EXPECT_EQ(
    c.call("GET", "/api/v1/conversation/status", json::object{}, access).status,
    200);
  // A refreshed token gets a session row of its own and works.
  auto fresh = c.call("POST", "/api/v1/users/refresh",
                      json::object{{"refresh_token", refresh}})
                 .str("/jwt_token");
  auto ws = open_ws();
  EXPECT_EQ(
    jstr(roundtrip(*ws, json::object{{"type", "auth"}, {"token", fresh}}),
         "/type"),
    "auth_success");
}

class WsHeartbeatTest : public WsTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--ws-heartbeat-interval", "0.1"};
    return o;
  }
};

TEST_F(WsHeartbeatTest, ASilentConnectionIsClosedAfterThreeIntervals) {
  auto t = token();
  auto quiet = open_ws();
  roundtrip(*quiet, json::object{{"type", "auth"}, {"token", t}});
  auto busy = open_ws();
  auto t0 = std::chrono::steady_clock::now();
  // The busy one sends heartbeats (protocol pings would not count).
  while (!quiet->closed() && std::chrono::steady_clock::now() - t0 < 3000ms) {
    roundtrip(*busy, json::object{{"type", "heartbeat"}});
    quiet->wait_closed(50ms);
  }
  ASSERT_TRUE(quiet->closed());
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 200ms);
  EXPECT_EQ(quiet->close_code(), 1000);
  EXPECT_EQ(quiet->close_reason(), "Heartbeat timeout");
  EXPECT_FALSE(busy->closed());
  // Its session was revoked with it.
  auto ws = open_ws();
  roundtrip(*ws, json::object{{"type", "heartbeat"}});
  EXPECT_EQ(jstr(roundtrip(*ws, json::object{{"type", "auth"}, {"token", t}}),
                 "/error"),
            "Authentication failed");
}

class WsSessionExpiryTest : public WsTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--access-ttl", "1"};
    return o;
  }
};

TEST_F(WsSessionExpiryTest,
       AnExpiredSessionClosesTheSocketUnlessReauthenticated) {
  auto c = connected();
  auto first = login(c).first;
  auto fresh_auth = open_ws();
  auto stale = open_ws();
  for (auto* ws : {fresh_auth.get(), stale.get()})
    ASSERT_EQ(
      jstr(roundtrip(*ws, json::object{{"type", "auth"}, {"token", first}}),
           "/type"),
      "auth_success");
  // The access token expires first (its exp is a whole second), the
  // session row (now + lifetime) up to a second later. Until then the
  // sockets keep working; then the next message on a socket whose token
  // expired is refused and the socket is closed.
  ASSERT_TRUE(eventually(
    [&] {
      return c.call("GET", "/api/v1/conversation/status", json::object{}, first)
               .status
             == 401;
    },
    3000ms, 50ms));
  json::value last;
  ASSERT_TRUE(eventually(
    [&] {
      last = roundtrip(*stale, json::object{{"type", "heartbeat"}});
      return jstr(last, "/type") != "heartbeat_ack";
    },
    3000ms, 50ms));
  EXPECT_EQ(
    to_text(last),
    R"({"type":"error","error":"Session expired or revoked. Please re-authenticate."})");
  ASSERT_TRUE(stale->wait_closed(2000ms));
  EXPECT_EQ(stale->close_code(), 1000);
  EXPECT_EQ(stale->close_reason(), "Session invalid");
  // A fresh auth on the other open socket before its next message avoids
  // the close.
  auto second = login(c).first;
  ASSERT_EQ(jstr(roundtrip(*fresh_auth,
                           json::object{{"type", "auth"}, {"token", second}}),
                 "/type"),
            "auth_success");
  EXPECT_EQ(
    jstr(roundtrip(*fresh_auth, json::object{{"type", "heartbeat"}}), "/type"),
    "heartbeat_ack");
  EXPECT_FALSE(fresh_auth->closed());
}

class WsLimitTest : public WsTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--ws-max-connections", "1"};
    return o;
  }
};

TEST_F(WsLimitTest, ConnectionsBeyondTheMaximumAreClosedAsOverloaded) {
  auto first = open_ws();
  peer_ws second(peer->host(), peer->ws_port());
  ASSERT_TRUE(second.connect("/"));
  ASSERT_TRUE(second.wait_closed(2000ms));
  EXPECT_EQ(second.close_code(), 1013);
  EXPECT_EQ(second.close_reason(), "Server overloaded");
}

TEST_F(WsTest, TestRoutesDropTheSocketsAndTakeTheAdapterDownAndUp) {
  auto ws = open_ws();
  EXPECT_EQ(jint(debug("POST", "/_peer/ws/drop"), "/closed"), 1);
  EXPECT_TRUE(ws->wait_closed(2000ms));
  EXPECT_EQ(ws->close_code(), 0); // no close frame: an abrupt loss
  debug("POST", "/_peer/ws/down");
  peer_ws refused(peer->host(), peer->ws_port());
  EXPECT_FALSE(refused.connect("/"));
  debug("POST", "/_peer/ws/up");
  auto back = open_ws();
  EXPECT_EQ(
    jstr(roundtrip(*back, json::object{{"type", "heartbeat"}}), "/type"),
    "heartbeat_ack");
}

} // namespace
} // namespace aico::test
