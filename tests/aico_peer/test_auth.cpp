// Wire document sections 2.2 and 5: UUID + PIN login, refresh, logout, the
// Bearer check of protected routes and the JWT claims.
#include "peer_fixture.hpp"

namespace aico::test {
namespace {

const std::string auth_path = "/api/v1/users/authenticate";
const std::string refresh_path = "/api/v1/users/refresh";
const std::string status_path = "/api/v1/conversation/status";

TEST_F(PeerTest, LoginReturnsTheUserAndTwoTokens) {
  auto c = connected();
  auto r = c.login(pu::alice_uuid, pu::alice_pin);
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_TRUE(r.encrypted);
  EXPECT_TRUE(r.success());
  EXPECT_EQ(r.str("/user/uuid"), pu::alice_uuid);
  EXPECT_EQ(r.str("/user/full_name"), pu::alice_name);
  EXPECT_EQ(r.str("/user/nickname"), "at");
  EXPECT_EQ(r.str("/user/user_type"), "person");
  EXPECT_TRUE(jtrue(r.json, "/user/is_active"));
  EXPECT_EQ(r.str("/user/created_at").size(), 19u); // 2026-11-24T11:15:09
  EXPECT_TRUE(jptr(r.json, "/error")->is_null());
  EXPECT_TRUE(jptr(r.json, "/last_login")->is_null()); // first login
  // Key order of AuthenticationResponse.
  EXPECT_EQ(r.plain.rfind(R"({"success":true,"user":{"uuid":)", 0), 0u);

  // The access token's claims (section 5) in PyJWT's order.
  auto access = r.str("/jwt_token");
  auto text = jwt_payload_text(access);
  EXPECT_EQ(
    text.rfind(
      R"({"sub":")" + pu::alice_uuid + R"(","user_uuid":")" + pu::alice_uuid
        + R"(","username":"Alice Test","roles":["user"],"permissions":[)",
      0),
    0u)
    << text;
  auto claims = jwt_payload(access);
  EXPECT_EQ(jstr(claims, "/iss"), "aico-api-gateway");
  EXPECT_EQ(jstr(claims, "/type"), "access");
  EXPECT_EQ(jint(claims, "/exp") - jint(claims, "/iat"), 900);
  EXPECT_EQ(jptr(claims, "/aud"), nullptr);
  EXPECT_EQ(jptr(claims, "/jti"), nullptr);
  EXPECT_EQ(unb64url(split(access, '.')[0]), R"({"alg":"HS256","typ":"JWT"})");
  auto rclaims = jwt_payload(r.str("/refresh_token"));
  EXPECT_EQ(jstr(rclaims, "/type"), "refresh");
  EXPECT_EQ(jint(rclaims, "/exp") - jint(rclaims, "/iat"), 7 * 24 * 3600);

  // A second login reports the previous one (sqlite CURRENT_TIMESTAMP form).
  auto again = c.login(pu::alice_uuid, pu::alice_pin);
  EXPECT_EQ(again.str("/last_login").size(), 19u) << again.plain;
  EXPECT_EQ(again.str("/last_login")[10], ' ');
  // An admin's token carries the admin role and its permissions.
  auto root = c.login(pu::root_uuid, pu::root_pin);
  auto rc = jwt_payload(root.str("/jwt_token"));
  EXPECT_EQ(jstr(rc, "/roles/0"), "admin");
  EXPECT_NE(to_text(*jptr(rc, "/permissions")).find("subscribe.*"),
            std::string::npos);
}

TEST_F(PeerTest, FailedLoginsAreHttp200WithSuccessFalse) {
  auto c = connected();
  auto check = [&](const std::string& uuid, const std::string& pin,
                   const std::string& error) {
    auto r = c.login(uuid, pin);
    EXPECT_EQ(r.status, 200) << uuid;
    EXPECT_TRUE(r.encrypted);
    EXPECT_EQ(
      r.plain,
      R"({"success":false,"user":null,"jwt_token":null,"refresh_token":null,"error":")"
        + error + R"(","last_login":null})");
  };
  check(pu::alice_uuid, "9999", "Invalid PIN");
  check("12345678-1234-4234-8234-123456789012", "1234", "User not found");
  check(pu::nopin_uuid, "1234", "No authentication configured");
  // Extra fields are ignored.
  auto r = c.call("POST", auth_path,
                  json::object{{"user_uuid", pu::alice_uuid},
                               {"pin", pu::alice_pin},
                               {"device", "x"}});
  EXPECT_TRUE(r.success());
}

class LockoutTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--lockout-seconds", "0.5"};
    return o;
  }
};

TEST_F(LockoutTest, FiveFailuresLockTheAccountForAWhile) {
  auto c = connected();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(c.login(pu::bob_uuid, "0000").str("/error"), "Invalid PIN");
  auto locked = c.login(pu::bob_uuid, pu::bob_pin);
  EXPECT_FALSE(locked.success());
  EXPECT_EQ(locked.str("/error"), "Account locked");
  EXPECT_TRUE(
    eventually([&] { return c.login(pu::bob_uuid, pu::bob_pin).success(); },
               3000ms, 50ms));
}

TEST_F(PeerTest, ABadPinFormatOrUuidIsAClearTextPlain500) {
  auto c = connected();
  for (auto [uuid, pin] : {std::pair{pu::alice_uuid, std::string("12")},
                           std::pair{pu::alice_uuid, std::string("123456789")},
                           std::pair{pu::alice_uuid, std::string("12ab")},
                           std::pair{std::string("nope"), pu::alice_pin}}) {
    auto r = c.login(uuid, pin);
    EXPECT_EQ(r.status, 500) << uuid << " " << pin;
    EXPECT_FALSE(r.encrypted);
    EXPECT_EQ(r.raw, "Internal Server Error");
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8");
  }
}

TEST_F(PeerTest, AMissingLoginFieldIsAnEncrypted422List) {
  auto c = connected();
  auto r
    = c.call("POST", auth_path, json::object{{"user_uuid", pu::alice_uuid}});
  EXPECT_EQ(r.status, 422);
  ASSERT_TRUE(r.encrypted);
  EXPECT_EQ(r.str("/detail/0/type"), "missing");
  EXPECT_EQ(r.str("/detail/0/loc/0"), "body");
  EXPECT_EQ(r.str("/detail/0/loc/1"), "pin");
  EXPECT_EQ(r.str("/detail/0/msg"), "Field required");
  EXPECT_NE(jptr(r.json, "/detail/0/input"), nullptr);
  EXPECT_EQ(jptr(r.json, "/detail/0/url"), nullptr);
  auto wrong_type
    = c.call("POST", auth_path,
             json::object{{"user_uuid", pu::alice_uuid}, {"pin", 1234}});
  EXPECT_EQ(wrong_type.status, 422);
  EXPECT_EQ(wrong_type.str("/detail/0/type"), "string_type");
}

TEST_F(PeerTest, RefreshNeedsNoBearerAndDoesNotRotateTheRefreshToken) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto r
    = c.call("POST", refresh_path, json::object{{"refresh_token", refresh}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.plain.rfind(R"({"success":true,"user":null,"jwt_token":")", 0),
            0u);
  EXPECT_EQ(r.str("/refresh_token"), refresh);
  EXPECT_TRUE(jptr(r.json, "/last_login")->is_null());
  auto fresh = r.str("/jwt_token");
  EXPECT_EQ(jstr(jwt_payload(fresh), "/type"), "access");
  EXPECT_EQ(c.call("GET", status_path, json::object{}, fresh).status, 200);
  // Tokens are deterministic: same claims in the same second, same bytes.
  if (jint(jwt_payload(fresh), "/iat") == jint(jwt_payload(access), "/iat"))
    EXPECT_EQ(fresh, access);
  else
    EXPECT_NE(fresh, access);
  // The Bearer header is the fallback when the body has no token.
  auto via_header = c.call("POST", refresh_path, json::object{}, refresh);
  EXPECT_TRUE(via_header.success()) << via_header.plain;
}

TEST_F(PeerTest, RefreshFailuresAreHttp200WithSuccessFalse) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto with_access
    = c.call("POST", refresh_path, json::object{{"refresh_token", access}});
  EXPECT_EQ(with_access.status, 200);
  EXPECT_FALSE(with_access.success());
  EXPECT_EQ(with_access.str("/error"),
            "Invalid token type - refresh token required");
  auto garbage
    = c.call("POST", refresh_path, json::object{{"refresh_token", "a.b.c"}});
  EXPECT_FALSE(garbage.success());
  EXPECT_EQ(garbage.str("/error"), "Invalid refresh token");
}

class ShortTokensTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--access-ttl", "1", "--refresh-ttl", "1"};
    return o;
  }
};

TEST_F(ShortTokensTest, ExpiredTokensAre401OnRestAndSuccessFalseOnRefresh) {
  auto c = connected();
  auto [access, refresh] = login(c);
  EXPECT_EQ(
    jint(jwt_payload(access), "/exp") - jint(jwt_payload(access), "/iat"), 1);
  ASSERT_TRUE(eventually(
    [&] {
      return c.call("GET", status_path, json::object{}, access).status == 401;
    },
    3000ms, 50ms));
  auto r = c.call("GET", status_path, json::object{}, access);
  EXPECT_TRUE(r.encrypted);
  EXPECT_EQ(r.plain, R"({"detail":"Token has expired"})");
  EXPECT_EQ(r.header("www-authenticate"), "Bearer");
  auto rr
    = c.call("POST", refresh_path, json::object{{"refresh_token", refresh}});
  EXPECT_EQ(rr.status, 200);
  EXPECT_EQ(rr.str("/error"), "Refresh token expired - please login again");
}

TEST_F(PeerTest, ProtectedRoutesCheckTheBearerToken) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto none = c.call("GET", status_path);
  EXPECT_EQ(none.status, 403);
  ASSERT_TRUE(none.encrypted);
  EXPECT_EQ(none.plain, R"({"detail":"Not authenticated"})");
  auto basic = c.call("GET", status_path, json::object{}, "",
                      {{"Authorization", "Basic YTpi"}});
  EXPECT_EQ(basic.status, 403);
  EXPECT_EQ(basic.str("/detail"), "Invalid authentication credentials");
  auto bad = c.call("GET", status_path, json::object{}, "not-a-jwt");
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(bad.plain, R"({"detail":"Invalid token"})");
  // A token signed with another secret.
  auto parts = split(access, '.');
  auto forged
    = parts[0] + "." + parts[1] + "." + base64url_encode(std::string(32, 'x'));
  EXPECT_EQ(c.call("GET", status_path, json::object{}, forged).str("/detail"),
            "Invalid token");
  // REST accepts a refresh token as a Bearer token.
  EXPECT_EQ(c.call("GET", status_path, json::object{}, refresh).status, 200);
  auto ok = c.call("GET", status_path, json::object{}, access);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(
    ok.plain,
    R"({"success":true,"user_id":")" + pu::alice_uuid
      + R"(","active_conversations":0,"total_messages":0,"last_activity":null,"status":"ready"})");
}

TEST_F(PeerTest, LogoutIsAlways500WithATokenAnd401Without) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto with = c.call("POST", "/api/v1/users/logout", json::object{}, access);
  EXPECT_EQ(with.status, 500);
  EXPECT_FALSE(with.encrypted);
  EXPECT_EQ(with.raw, "Internal Server Error");
  auto without = c.call("POST", "/api/v1/users/logout");
  EXPECT_EQ(without.status, 401);
  EXPECT_TRUE(without.encrypted);
  EXPECT_EQ(without.plain, R"({"detail":"No valid token provided"})");
  // The token still works: logout never revoked it.
  EXPECT_EQ(c.call("GET", status_path, json::object{}, access).status, 200);
}

} // namespace
} // namespace aico::test
