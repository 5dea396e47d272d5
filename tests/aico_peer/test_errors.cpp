// Wire document sections 2.4 (health), 2.6 (trailing slashes) and 2.8
// (every error shape), plus the test-only fault switches that make the rare
// shapes reproducible.
#include "peer_fixture.hpp"

namespace aico::test {
namespace {

TEST_F(PeerTest, HealthIsClearAndTheOtherStatusRoutesNeedOnlyEncryption) {
  auto h = plain().request("GET", "/api/v1/health");
  ASSERT_EQ(h.status, 200);
  EXPECT_EQ(jstr(h.body, "/status"), "healthy");
  EXPECT_EQ(jstr(h.body, "/service"), "aico-backend");
  EXPECT_EQ(jstr(h.body, "/version"), "1.0.0");
  EXPECT_NE(jstr(h.body, "/timestamp").find("+00:00"), std::string::npos);
  EXPECT_NE(jptr(h.body, "/uptime_seconds"), nullptr);
  auto slash = plain().request("GET", "/api/v1/health/");
  EXPECT_EQ(slash.status, 307);
  EXPECT_EQ(slash.header("location"), peer->http_url() + "/api/v1/health");

  auto c = connected();
  auto d = c.call("GET", "/api/v1/health/detailed");
  EXPECT_EQ(d.status, 200);
  EXPECT_TRUE(d.encrypted);
  EXPECT_EQ(d.str("/container"), "healthy");
  EXPECT_TRUE(jptr(d.json, "/process/pid")->is_int64());
  auto g = c.call("GET", "/api/v1/gateway/status");
  EXPECT_EQ(g.str("/service"), "aico-api-gateway");
  auto [access, refresh] = login(c);
  auto ch
    = c.call("POST", "/api/v1/conversation/health", json::object{}, access);
  EXPECT_EQ(ch.str("/status"), "healthy");
  EXPECT_EQ(ch.str("/version"), "1.0.0");
}

TEST_F(PeerTest, TheOtherSpellingOfARouteIsAClear307) {
  auto c = connected();
  auto check = [&](const std::string& method, const std::string& path,
                   const std::string& target) {
    auto r = c.call(method, path);
    EXPECT_EQ(r.status, 307) << path;
    EXPECT_FALSE(r.encrypted) << path;
    EXPECT_EQ(r.raw, "") << path;
    EXPECT_EQ(r.header("location"), peer->http_url() + target) << path;
  };
  check("POST", "/api/v1/users/authenticate/", "/api/v1/users/authenticate");
  check("POST", "/api/v1/users/refresh/", "/api/v1/users/refresh");
  check("POST", "/api/v1/conversation/messages/?stream=true",
        "/api/v1/conversation/messages?stream=true");
  check("GET", "/api/v1/conversation/messages/",
        "/api/v1/conversation/messages");
  check("GET", "/api/v1/conversation/status/", "/api/v1/conversation/status");
  check("GET", "/api/v1/users", "/api/v1/users/");
  check("GET", "/api/v1/gateway/status/", "/api/v1/gateway/status");
}

TEST_F(PeerTest, EveryErrorShapeOfTheTable) {
  auto c = connected();
  auto [access, refresh] = login(c);
  const std::string status = "/api/v1/conversation/status";

  // Encryption middleware, other exception: clear {"error":...} 500.
  add_fault({{"fault", "internal_error"}});
  auto internal = c.call("GET", status, json::object{}, access);
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.raw, R"({"error":"Internal server error"})");
  // The fault was used up.
  EXPECT_EQ(c.call("GET", status, json::object{}, access).status, 200);

  // HTTPException from any domain: encrypted {"detail": string}.
  for (int code : {400, 404, 409, 423, 500}) {
    add_fault({{"fault", "http_error"}, {"status", code}, {"detail", "nope"}});
    auto r = c.call("GET", status, json::object{}, access);
    EXPECT_EQ(r.status, code);
    EXPECT_TRUE(r.encrypted);
    EXPECT_EQ(r.plain, R"({"detail":"nope"})");
  }
  // Unknown route: encrypted 404 Not Found; wrong method: 405.
  auto unknown = c.call("GET", "/api/v1/no/such/thing");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_TRUE(unknown.encrypted);
  EXPECT_EQ(unknown.plain, R"({"detail":"Not Found"})");
  auto wrong
    = c.call("DELETE", "/api/v1/conversation/status", json::object{}, access);
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.plain, R"({"detail":"Method Not Allowed"})");
  // log_requests: a 404 under /users/, /admin/, /logs/, /echo becomes 401.
  for (auto path : {"/api/v1/users/a/b", "/api/v1/admin/anything",
                    "/api/v1/logs/x", "/api/v1/echo/more"}) {
    auto r = c.call("GET", path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_TRUE(r.encrypted) << path;
    EXPECT_EQ(r.str("/detail").rfind("This endpoint requires encrypted "
                                     "communication",
                                     0),
              0u)
      << r.plain;
    EXPECT_EQ(r.str("/endpoint"), path);
    EXPECT_NE(r.str("/hint"), "");
  }
  // The broken user routes (section 2.7).
  auto list = c.call("GET", "/api/v1/users/");
  EXPECT_EQ(list.status, 500);
  EXPECT_TRUE(list.encrypted);
  EXPECT_NE(list.str("/detail").find("unexpected keyword argument 'is_active'"),
            std::string::npos);
  EXPECT_EQ(
    c.call("GET", "/api/v1/users/" + pu::alice_uuid, json::object{}, access)
      .str("/detail"),
    "Invalid admin credentials");

  // Unhandled exception: clear text/plain 500.
  add_fault({{"fault", "plain_500"}});
  auto crash = c.call("GET", status, json::object{}, access);
  EXPECT_EQ(crash.status, 500);
  EXPECT_EQ(crash.raw, "Internal Server Error");
  EXPECT_EQ(crash.header("content-type"), "text/plain; charset=utf-8");

  // An encrypt failure sends the original response in clear.
  add_fault({{"fault", "encrypt_fail"}});
  auto clear = c.call("GET", status, json::object{}, access);
  EXPECT_EQ(clear.status, 200);
  EXPECT_FALSE(clear.encrypted);
  EXPECT_EQ(jstr(parse_json(clear.raw), "/status"), "ready");
}

TEST_F(PeerTest, FaultRulesMatchPathMethodAndCount) {
  auto c = connected();
  auto [access, refresh] = login(c);
  const std::string status = "/api/v1/conversation/status";
  auto bad = plain().request("POST", "/_peer/faults", R"({"fault":"nope"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(jstr(bad.body, "/error").find("unknown fault"), std::string::npos);
  add_fault({{"fault", "http_error"},
             {"status", 409},
             {"path", "/api/v1/gateway"},
             {"count", 2}});
  EXPECT_EQ(c.call("GET", status, json::object{}, access).status, 200);
  EXPECT_EQ(c.call("GET", "/api/v1/gateway/status").status, 409);
  EXPECT_EQ(c.call("GET", "/api/v1/gateway/status").status, 409);
  EXPECT_EQ(c.call("GET", "/api/v1/gateway/status").status, 200);
  // drop: the connection closes without a response.
  add_fault({{"fault", "drop"}, {"method", "GET"}});
  auto dropped = c.call("GET", status, json::object{}, access);
  EXPECT_EQ(dropped.status, 0);
  EXPECT_NE(dropped.error, "");
  // delay: answered late but normally; -1 keeps it until cleared.
  add_fault({{"fault", "delay"}, {"delay_ms", 200}, {"count", -1}});
  auto slow = c.call("GET", status, json::object{}, access);
  EXPECT_EQ(slow.status, 200);
  EXPECT_GE(slow.elapsed.count(), 180);
  EXPECT_EQ(jptr(debug("GET", "/_peer/faults"), "/faults")->as_array().size(),
            1u);
  debug("DELETE", "/_peer/faults");
  EXPECT_LT(c.call("GET", status, json::object{}, access).elapsed.count(), 150);
  // Channels can be dropped without a restart (for re-handshake tests).
  EXPECT_EQ(jint(debug("POST", "/_peer/channels/clear"), "/cleared"), 1);
  EXPECT_EQ(c.call("GET", status, json::object{}, access).str("/error"),
            "Encryption required");
}

TEST_F(PeerTest, AFaultIsUsedOnlyByARequestThatReachesItsStage) {
  auto c = connected();
  auto [access, refresh] = login(c);
  const std::string status = "/api/v1/conversation/status";
  // An app-level fault survives a handshake, a health check, a request
  // refused by the encryption middleware and a hanging plaintext request.
  add_fault({{"fault", "http_error"}, {"status", 409}});
  aico_client other(peer->host(), peer->http_port(), 400ms);
  ASSERT_TRUE(other.handshake());
  EXPECT_EQ(plain().request("GET", "/api/v1/health").status, 200);
  aico_client stranger(peer->host(), peer->http_port());
  EXPECT_EQ(stranger.call("GET", status).status, 401);
  other.send_raw("POST", "/api/v1/users/authenticate",
                 to_text(json::object{{"client_id", other.client_id()}}));
  EXPECT_EQ(c.call("GET", status, json::object{}, access).status, 409);
  // A model fault waits for a send.
  add_fault({{"fault", "model_stall"}});
  EXPECT_EQ(c.call("GET", status, json::object{}, access).status, 200);
  EXPECT_EQ(jptr(debug("GET", "/_peer/faults"), "/faults")->as_array().size(),
            1u);
}

class NoFaultsTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.enable_faults = false;
    return o;
  }
};

TEST_F(NoFaultsTest, TheTestRoutesExistOnlyWithEnableFaults) {
  for (auto path : {"/_peer/stats", "/_peer/messages", "/_peer/faults"}) {
    auto r = plain().request("GET", path);
    EXPECT_EQ(r.status, 404) << path;
  }
}

} // namespace
} // namespace aico::test
