// REST front door against docs/protocol.md: authentication, users,
// conversations, health, system, admin, token validation, bad input.
#include "integration.hpp"

namespace aico::test {
namespace {

using Rest = GatewayTest;

json::value jwt_part(const std::string& token, std::size_t i) {
  auto parts = split(token, '.');
  if (parts.size() != 3 || i >= 3)
    return nullptr;
  return parse_json(base64url_decode(parts[i]));
}

// -- authentication -------------------------------------------------------------

TEST_F(Rest, LoginReturnsTokensAndUser) {
  auto r = http().post("/api/v1/users/authenticate",
                       {{"username", "alice"}, {"password", "alice-pw"}});
  EXPECT_OK(r, 200);
  auto access = jstr(r.body, "/data/access_token");
  auto refresh = jstr(r.body, "/data/refresh_token");
  ASSERT_FALSE(access.empty()) << r.raw;
  EXPECT_FALSE(refresh.empty()) << r.raw;
  EXPECT_NE(access, refresh);
  EXPECT_EQ(split(access, '.').size(), 3u) << access;
  EXPECT_EQ(jstr(r.body, "/data/token_type"), "Bearer");
  EXPECT_GT(jint(r.body, "/data/expires_in"), 0) << r.raw;
  EXPECT_GT(jint(r.body, "/data/refresh_expires_in"), 0) << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/user/username"), "alice");
  EXPECT_FALSE(jstr(r.body, "/data/user/id").empty());
  EXPECT_EQ(jstr(r.body, "/data/user/role"), "user");
  EXPECT_NE(jptr(r.body, "/data/user/display_name"), nullptr);
  EXPECT_NE(jptr(r.body, "/data/user/created_at"), nullptr);
  auto prefs = jptr(r.body, "/data/user/preferences");
  ASSERT_NE(prefs, nullptr);
  EXPECT_TRUE(prefs->is_object());

  // The JWT: HS256 header, the documented claims.
  auto header = jwt_part(access, 0);
  EXPECT_EQ(jstr(header, "/alg"), "HS256") << header;
  EXPECT_EQ(jstr(header, "/typ"), "JWT") << header;
  auto claims = jwt_part(access, 1);
  EXPECT_EQ(jstr(claims, "/sub"), jstr(r.body, "/data/user/id")) << claims;
  EXPECT_EQ(jstr(claims, "/name"), "alice") << claims;
  EXPECT_EQ(jstr(claims, "/role"), "user") << claims;
  EXPECT_GT(jint(claims, "/iat"), 0) << claims;
  EXPECT_GT(jint(claims, "/exp"), jint(claims, "/iat")) << claims;
  EXPECT_FALSE(jstr(claims, "/jti").empty()) << claims;

  auto admin = root();
  EXPECT_EQ(jstr(admin.user, "/role"), "admin");
  EXPECT_EQ(jstr(jwt_part(admin.access, 1), "/role"), "admin");
}

TEST_F(Rest, LoginBadPasswordIs401) {
  auto r = http().post("/api/v1/users/authenticate",
                       {{"username", "alice"}, {"password", "wrong"}});
  EXPECT_ERROR(r, 401, "invalid_credentials");
  EXPECT_EQ(jptr(r.body, "/data/access_token"), nullptr);
}

TEST_F(Rest, LoginUnknownUserIs401) {
  auto r = http().post("/api/v1/users/authenticate",
                       {{"username", "mallory"}, {"password", "alice-pw"}});
  EXPECT_ERROR(r, 401, "invalid_credentials");
}

TEST_F(Rest, BotCannotLogIn) {
  auto r = http().post("/api/v1/users/authenticate",
                       {{"username", "companion"}, {"password", ""}});
  EXPECT_EQ(r.status == 401 || r.status == 400, true) << r.raw;
  EXPECT_EQ(jptr(r.body, "/data/access_token"), nullptr) << r.raw;
}

TEST_F(Rest, LoginMissingFieldIsValidationError) {
  auto r = http().post("/api/v1/users/authenticate", {{"username", "alice"}});
  EXPECT_ERROR(r, 400, "validation_error");
  EXPECT_EQ(jstr(r.body, "/details/field"), "password") << r.raw;
}

TEST_F(Rest, RefreshRotatesAndReuseRevokesFamily) {
  auto other = alice(); // a second, independent family
  auto s = alice();
  auto r1 = http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}});
  EXPECT_OK(r1, 200);
  auto access2 = jstr(r1.body, "/data/access_token");
  auto refresh2 = jstr(r1.body, "/data/refresh_token");
  ASSERT_FALSE(access2.empty());
  ASSERT_FALSE(refresh2.empty());
  EXPECT_NE(refresh2, s.refresh);
  EXPECT_EQ(jstr(r1.body, "/data/token_type"), "Bearer");
  EXPECT_EQ(jstr(r1.body, "/data/user/username"), "alice");
  EXPECT_EQ(split(access2, '.').size(), 3u);

  // The new pair works.
  EXPECT_OK(http().get("/api/v1/users/me", access2), 200);

  // Reusing the old refresh token is theft: 401, and the family is revoked.
  auto reuse =
    http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}});
  EXPECT_ERROR(reuse, 401, "invalid_refresh_token");
  auto r2 = http().post("/api/v1/users/refresh", {{"refresh_token", refresh2}});
  EXPECT_ERROR(r2, 401, "invalid_refresh_token");

  // Another login's family is untouched.
  auto r3 =
    http().post("/api/v1/users/refresh", {{"refresh_token", other.refresh}});
  EXPECT_OK(r3, 200);
}

TEST_F(Rest, RefreshUnknownTokenIs401) {
  auto r = http().post("/api/v1/users/refresh",
                       {{"refresh_token", "not-a-real-refresh-token"}});
  EXPECT_ERROR(r, 401, "invalid_refresh_token");
}

TEST_F(Rest, LogoutRevokesAccessAndRefreshToken) {
  auto s = alice();
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);
  auto r =
    http().post("/api/v1/users/logout", {{"refresh_token", s.refresh}}, s.access);
  EXPECT_OK(r, 200);
  EXPECT_TRUE(jtrue(r.body, "/data/logged_out")) << r.raw;
  EXPECT_ERROR(http().get("/api/v1/users/me", s.access), 401, "invalid_token");
  EXPECT_ERROR(
    http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}}), 401,
    "invalid_refresh_token");
  // Logging in again works.
  auto again = alice();
  EXPECT_OK(http().get("/api/v1/users/me", again.access), 200);
}

TEST_F(Rest, LogoutWithoutRefreshTokenRevokesAllFamilies) {
  auto s1 = alice();
  auto s2 = alice();
  auto r = http().request("POST", "/api/v1/users/logout", "", s1.access);
  EXPECT_OK(r, 200);
  EXPECT_TRUE(jtrue(r.body, "/data/logged_out")) << r.raw;
  EXPECT_ERROR(http().get("/api/v1/users/me", s1.access), 401, "invalid_token");
  EXPECT_ERROR(
    http().post("/api/v1/users/refresh", {{"refresh_token", s1.refresh}}), 401,
    "invalid_refresh_token");
  EXPECT_ERROR(
    http().post("/api/v1/users/refresh", {{"refresh_token", s2.refresh}}), 401,
    "invalid_refresh_token");
  // Only the presented access token's jti is revoked.
  EXPECT_OK(http().get("/api/v1/users/me", s2.access), 200);
}

TEST_F(Rest, LogoutNeedsToken) {
  EXPECT_ERROR(http().post("/api/v1/users/logout", json::object{}), 401,
               "unauthenticated");
}

// -- users ----------------------------------------------------------------------

TEST_F(Rest, UsersMe) {
  auto s = alice();
  auto r = http().get("/api/v1/users/me", s.access);
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/username"), "alice");
  EXPECT_EQ(jstr(r.body, "/data/id"), s.user_id);
  EXPECT_EQ(jstr(r.body, "/data/role"), "user");
  EXPECT_NE(jptr(r.body, "/data/display_name"), nullptr);
  EXPECT_NE(jptr(r.body, "/data/created_at"), nullptr);
  auto p = jptr(r.body, "/data/preferences");
  ASSERT_NE(p, nullptr) << r.raw;
  EXPECT_TRUE(p->is_object());
  EXPECT_ERROR(http().get("/api/v1/users/me"), 401, "unauthenticated");
}

TEST_F(Rest, PreferencesMergeAndNullDeletes) {
  auto s = alice();
  auto r1 = http().put("/api/v1/users/me/preferences",
                       {{"theme", "dark"}, {"volume", 5}, {"tts", true}},
                       s.access);
  EXPECT_OK(r1, 200);
  EXPECT_EQ(jstr(r1.body, "/data/username"), "alice");
  json::value want1 = {{"theme", "dark"}, {"volume", 5}, {"tts", true}};
  auto p1 = jptr(r1.body, "/data/preferences");
  ASSERT_NE(p1, nullptr) << r1.raw;
  EXPECT_EQ(*p1, want1) << r1.raw;

  auto r2 = http().put("/api/v1/users/me/preferences",
                       {{"volume", nullptr}, {"lang", "de"}}, s.access);
  EXPECT_OK(r2, 200);
  json::value want2 = {{"theme", "dark"}, {"tts", true}, {"lang", "de"}};
  auto p2 = jptr(r2.body, "/data/preferences");
  ASSERT_NE(p2, nullptr) << r2.raw;
  EXPECT_EQ(*p2, want2) << r2.raw;

  auto me = http().get("/api/v1/users/me", s.access);
  auto p3 = jptr(me.body, "/data/preferences");
  ASSERT_NE(p3, nullptr) << me.raw;
  EXPECT_EQ(*p3, want2) << me.raw;

  // A nested value is invalid; nothing changes.
  auto bad = http().put("/api/v1/users/me/preferences",
                        {{"ok", "x"}, {"nested", {{"a", 1}}}}, s.access);
  EXPECT_ERROR(bad, 400, "validation_error");
  EXPECT_EQ(jstr(bad.body, "/details/field"), "preferences.nested") << bad.raw;
  me = http().get("/api/v1/users/me", s.access);
  p3 = jptr(me.body, "/data/preferences");
  ASSERT_NE(p3, nullptr);
  EXPECT_EQ(*p3, want2) << me.raw;

  // A body that is not an object.
  auto arr = http().request("PUT", "/api/v1/users/me/preferences", "[1,2]",
                            s.access);
  EXPECT_ERROR(arr, 400, "validation_error");
  EXPECT_EQ(jstr(arr.body, "/details/field"), "body") << arr.raw;

  // Other users do not see alice's preferences.
  auto b = bob();
  auto bm = http().get("/api/v1/users/me", b.access);
  auto bp = jptr(bm.body, "/data/preferences");
  ASSERT_NE(bp, nullptr);
  EXPECT_TRUE(bp->is_object() && bp->as_object().empty()) << bm.raw;
}

TEST_F(Rest, TooManyPreferencesIsValidationError) {
  auto s = alice();
  json::object many;
  for (int i = 0; i < 65; ++i)
    many["k" + std::to_string(i)] = i;
  auto r = http().put("/api/v1/users/me/preferences", many, s.access);
  EXPECT_ERROR(r, 400, "validation_error");
  EXPECT_EQ(jstr(r.body, "/details/field"), "preferences") << r.raw;
}

TEST_F(Rest, FamilyListsTheOtherUsers) {
  auto s = alice();
  auto r = http().get("/api/v1/users/me/family", s.access);
  EXPECT_OK(r, 200);
  std::set<std::string> names;
  auto members = jptr(r.body, "/data/members");
  ASSERT_NE(members, nullptr) << r.raw;
  ASSERT_TRUE(members->is_array());
  for (auto& m : members->as_array()) {
    names.insert(jstr(m, "/username"));
    EXPECT_FALSE(jstr(m, "/id").empty());
    EXPECT_NE(jptr(m, "/role"), nullptr);
  }
  EXPECT_EQ(names, (std::set<std::string>{"bob", "root"})) << r.raw;
  EXPECT_ERROR(http().get("/api/v1/users/me/family"), 401, "unauthenticated");
}

// -- conversations -------------------------------------------------------------

TEST_F(Rest, SendMessageIsIdempotent) {
  auto s = alice();
  auto id = uid("idem");
  auto r1 = send_message(s.access, id, "hello there", "conv-idem");
  EXPECT_OK(r1, 201);
  EXPECT_EQ(jstr(r1.body, "/data/id"), id);
  EXPECT_EQ(jstr(r1.body, "/data/conversation_id"), "conv-idem");
  EXPECT_EQ(jstr(r1.body, "/data/content"), "hello there");
  EXPECT_EQ(jstr(r1.body, "/data/type"), "text");
  EXPECT_EQ(jstr(r1.body, "/data/sender_id"), s.user_id);
  EXPECT_EQ(jstr(r1.body, "/data/sender"), "alice");
  EXPECT_EQ(jstr(r1.body, "/data/status"), "sent");
  auto ts = jstr(r1.body, "/data/timestamp");
  EXPECT_TRUE(!ts.empty() && ts.back() == 'Z') << ts;
  EXPECT_NE(ts.find('.'), std::string::npos) << "no milliseconds: " << ts;
  EXPECT_GT(jint(r1.body, "/data/timestamp_ms"), 0);
  auto seq = jint(r1.body, "/data/seq");
  EXPECT_GT(seq, 0);
  auto meta = jptr(r1.body, "/data/metadata");
  ASSERT_NE(meta, nullptr) << r1.raw;
  EXPECT_TRUE(meta->is_object() && meta->as_object().empty()) << r1.raw;
  auto reply_to = jptr(r1.body, "/data/reply_to");
  ASSERT_NE(reply_to, nullptr) << r1.raw;
  EXPECT_TRUE(reply_to->is_null());
  auto read_at = jptr(r1.body, "/data/read_at");
  ASSERT_NE(read_at, nullptr) << r1.raw;
  EXPECT_TRUE(read_at->is_null());

  auto r2 = send_message(s.access, id, "hello there", "conv-idem");
  EXPECT_OK(r2, 200);
  EXPECT_EQ(jstr(r2.body, "/data/id"), id);
  EXPECT_EQ(jint(r2.body, "/data/seq"), seq);
  // A retry with different content returns the stored message unchanged.
  auto r3 = send_message(s.access, id, "something else", "conv-idem");
  EXPECT_OK(r3, 200);
  EXPECT_EQ(jstr(r3.body, "/data/content"), "hello there");

  // Exactly one stored message with that id, and exactly one bot reply.
  ASSERT_TRUE(wait_for_message(s.access, "conv-idem", "bot-" + id));
  std::this_thread::sleep_for(ms(200)); // a second reply would show up now
  auto h = history(s.access, "conv-idem");
  EXPECT_OK(h, 200);
  auto ids = ids_of(h);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), id), 1) << h.raw;
  EXPECT_EQ(std::count(ids.begin(), ids.end(), "bot-" + id), 1) << h.raw;
  EXPECT_EQ(ids.size(), 2u) << h.raw;
}

TEST_F(Rest, SameIdFromAnotherUserIsConflict) {
  auto a = alice();
  auto b = bob();
  auto id = uid("dup");
  EXPECT_OK(send_message(a.access, id, "mine", "conv-a-dup"), 201);
  auto r = send_message(b.access, id, "mine too", "conv-b-dup");
  EXPECT_ERROR(r, 409, "conflict");
  // Bob's history does not contain it.
  auto h = history(b.access, "conv-b-dup");
  EXPECT_OK(h, 200);
  EXPECT_TRUE(ids_of(h).empty()) << h.raw;
}

TEST_F(Rest, AnotherUsersConversationIsForbidden) {
  auto a = alice();
  auto b = bob();
  EXPECT_OK(send_message(a.access, uid(), "private", "alice-private"), 201);
  EXPECT_ERROR(send_message(b.access, uid(), "intrude", "alice-private"), 403,
               "forbidden");
  EXPECT_ERROR(history(b.access, "alice-private"), 403, "forbidden");
  EXPECT_ERROR(history(b.access, "default-" + a.user_id), 403, "forbidden");
  EXPECT_ERROR(history(a.access, "alice-private", "limit=x"), 400,
               "validation_error");
}

TEST_F(Rest, CurrentConversation) {
  auto s = alice();
  auto r = send_message(s.access, uid(), "no conversation given");
  EXPECT_OK(r, 201);
  EXPECT_EQ(jstr(r.body, "/data/conversation_id"), "default-" + s.user_id);
  auto cur = http().get("/api/v1/conversations/current/messages", s.access);
  EXPECT_OK(cur, 200);
  EXPECT_EQ(jstr(cur.body, "/data/conversation_id"), "default-" + s.user_id);

  auto id2 = uid();
  EXPECT_OK(send_message(s.access, id2, "elsewhere", "conv-other"), 201);
  cur = http().get("/api/v1/conversations/current/messages", s.access);
  EXPECT_OK(cur, 200);
  EXPECT_EQ(jstr(cur.body, "/data/conversation_id"), "conv-other") << cur.raw;
  auto ids = ids_of(cur);
  EXPECT_NE(std::find(ids.begin(), ids.end(), id2), ids.end()) << cur.raw;

  // "current" as conversation_id means the current conversation.
  auto r3 = send_message(s.access, uid(), "again", "current");
  EXPECT_OK(r3, 201);
  EXPECT_EQ(jstr(r3.body, "/data/conversation_id"), "conv-other") << r3.raw;
}

class RestNoBot : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.bot = false;
    return o;
  }
};

TEST_F(RestNoBot, HistoryPaging) {
  auto s = alice();
  std::vector<std::string> ids;
  std::vector<int64_t> seqs;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(uid("page"));
    auto r = send_message(s.access, ids.back(), "message " + std::to_string(i),
                          "paging");
    EXPECT_OK(r, 201);
    seqs.push_back(jint(r.body, "/data/seq"));
  }
  for (int i = 1; i < 5; ++i)
    EXPECT_GT(seqs[i], seqs[i - 1]);

  // Everything (default limit 50), ascending.
  auto all = history(s.access, "paging");
  EXPECT_OK(all, 200);
  EXPECT_EQ(jstr(all.body, "/data/conversation_id"), "paging");
  EXPECT_EQ(ids_of(all), ids) << all.raw;
  EXPECT_FALSE(jtrue(all.body, "/data/has_more"));
  EXPECT_EQ(jint(all.body, "/data/next_since"), seqs[4]);

  // Without since: the latest `limit`, ascending.
  auto latest = history(s.access, "paging", "limit=2");
  EXPECT_OK(latest, 200);
  EXPECT_EQ(ids_of(latest), (std::vector<std::string>{ids[3], ids[4]}))
    << latest.raw;
  EXPECT_FALSE(jtrue(latest.body, "/data/has_more")) << latest.raw;
  EXPECT_EQ(jint(latest.body, "/data/next_since"), seqs[4]);

  // Forward paging with since.
  auto p1 = history(s.access, "paging", "since=0&limit=2");
  EXPECT_OK(p1, 200);
  EXPECT_EQ(ids_of(p1), (std::vector<std::string>{ids[0], ids[1]})) << p1.raw;
  EXPECT_TRUE(jtrue(p1.body, "/data/has_more")) << p1.raw;
  EXPECT_EQ(jint(p1.body, "/data/next_since"), seqs[1]);

  auto p2 = history(s.access, "paging",
                    "since=" + std::to_string(seqs[1]) + "&limit=2");
  EXPECT_EQ(ids_of(p2), (std::vector<std::string>{ids[2], ids[3]})) << p2.raw;
  EXPECT_TRUE(jtrue(p2.body, "/data/has_more")) << p2.raw;
  EXPECT_EQ(jint(p2.body, "/data/next_since"), seqs[3]);

  auto p3 = history(s.access, "paging",
                    "since=" + std::to_string(seqs[3]) + "&limit=2");
  EXPECT_EQ(ids_of(p3), (std::vector<std::string>{ids[4]})) << p3.raw;
  EXPECT_FALSE(jtrue(p3.body, "/data/has_more")) << p3.raw;
  EXPECT_EQ(jint(p3.body, "/data/next_since"), seqs[4]);

  auto p4 = history(s.access, "paging",
                    "since=" + std::to_string(seqs[4]) + "&limit=2");
  EXPECT_OK(p4, 200);
  EXPECT_TRUE(ids_of(p4).empty()) << p4.raw;
  EXPECT_FALSE(jtrue(p4.body, "/data/has_more")) << p4.raw;
  EXPECT_EQ(jint(p4.body, "/data/next_since"), seqs[4]);

  // Each message is complete in history.
  auto msgs = jptr(all.body, "/data/messages");
  ASSERT_TRUE(msgs && msgs->is_array() && msgs->as_array().size() == 5);
  auto& m0 = msgs->as_array()[0];
  EXPECT_EQ(jstr(m0, "/content"), "message 0");
  EXPECT_EQ(jstr(m0, "/sender"), "alice");
  EXPECT_EQ(jint(m0, "/seq"), seqs[0]);

  // Bad parameters name the parameter.
  auto bad_limit0 = history(s.access, "paging", "limit=0");
  EXPECT_ERROR(bad_limit0, 400, "validation_error");
  EXPECT_EQ(jstr(bad_limit0.body, "/details/field"), "limit") << bad_limit0.raw;
  auto bad_limit = history(s.access, "paging", "limit=501");
  EXPECT_ERROR(bad_limit, 400, "validation_error");
  EXPECT_EQ(jstr(bad_limit.body, "/details/field"), "limit") << bad_limit.raw;
  auto bad_since = history(s.access, "paging", "since=abc");
  EXPECT_ERROR(bad_since, 400, "validation_error");
  EXPECT_EQ(jstr(bad_since.body, "/details/field"), "since") << bad_since.raw;
  EXPECT_OK(history(s.access, "paging", "limit=500"), 200);

  // A conversation nobody wrote to: empty history.
  auto empty = history(s.access, "nobody-wrote-here");
  EXPECT_OK(empty, 200);
  EXPECT_TRUE(ids_of(empty).empty()) << empty.raw;
  EXPECT_FALSE(jtrue(empty.body, "/data/has_more"));
  // A path id outside the character set: 404.
  EXPECT_ERROR(history(s.access, "bad%20id"), 404, "not_found");
}

TEST_F(RestNoBot, MarkRead) {
  auto s = alice();
  auto id = uid("read");
  EXPECT_OK(send_message(s.access, id, "read me", "conv-read"), 201);
  auto r = http().request("POST",
                          "/api/v1/conversations/messages/" + id + "/read", "",
                          s.access);
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/id"), id);
  EXPECT_EQ(jstr(r.body, "/data/status"), "read");
  auto read_at = jstr(r.body, "/data/read_at");
  EXPECT_FALSE(read_at.empty()) << r.raw;

  // History shows it read; reading again keeps read_at.
  auto h = history(s.access, "conv-read");
  EXPECT_EQ(jstr(h.body, "/data/messages/0/status"), "read") << h.raw;
  std::this_thread::sleep_for(ms(20));
  auto again = http().request(
    "POST", "/api/v1/conversations/messages/" + id + "/read", "", s.access);
  EXPECT_OK(again, 200);
  EXPECT_EQ(jstr(again.body, "/data/read_at"), read_at);

  EXPECT_ERROR(http().request("POST",
                              "/api/v1/conversations/messages/no-such-msg/read",
                              "", s.access),
               404, "not_found");
  auto b = bob();
  EXPECT_ERROR(http().request("POST",
                              "/api/v1/conversations/messages/" + id + "/read",
                              "", b.access),
               403, "forbidden");
}

// -- health, system, admin ----------------------------------------------------

TEST_F(Rest, HealthNeedsNoAuth) {
  auto r = http().get("/api/v1/health");
  EXPECT_OK(r, 200);
  EXPECT_TRUE(jtrue(r.body, "/data/is_healthy")) << r.raw;
  EXPECT_FALSE(jstr(r.body, "/data/version").empty()) << r.raw;
  EXPECT_NE(jptr(r.body, "/data/timestamp"), nullptr) << r.raw;
  for (auto svc : {"database", "http", "websocket", "ipc"})
    EXPECT_EQ(jstr(r.body, std::string("/data/services/") + svc), "up")
      << svc << ": " << r.raw;
}

TEST_F(Rest, HealthDetailed) {
  auto s = alice();
  EXPECT_OK(send_message(s.access, uid(), "count me", "conv-health"), 201);
  auto r = http().get("/api/v1/health/detailed");
  EXPECT_OK(r, 200);
  EXPECT_TRUE(jtrue(r.body, "/data/is_healthy")) << r.raw;
  EXPECT_FALSE(jstr(r.body, "/data/version").empty());
  EXPECT_EQ(jstr(r.body, "/data/services/database"), "up");
  EXPECT_GE(jint(r.body, "/data/uptime_s"), 0) << r.raw;
  for (auto door : {"http", "ws", "ipc"})
    EXPECT_GE(jint(r.body, std::string("/data/connections/") + door), 0)
      << door << ": " << r.raw;
  EXPECT_EQ(jint(r.body, "/data/counts/users"), 3) << r.raw;
  EXPECT_GE(jint(r.body, "/data/counts/messages"), 1) << r.raw;
  EXPECT_GE(jint(r.body, "/data/counts/subscriptions"), 0) << r.raw;
  EXPECT_TRUE(jtrue(r.body, "/data/faults/enabled")) << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/faults/ws"), "up") << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/faults/ipc"), "up") << r.raw;
}

TEST_F(Rest, SystemStatus) {
  EXPECT_ERROR(http().get("/api/v1/system/status"), 401, "unauthenticated");
  auto s = alice();
  auto r = http().get("/api/v1/system/status", s.access);
  EXPECT_OK(r, 200);
  EXPECT_TRUE(jtrue(r.body, "/data/is_healthy")) << r.raw;
  EXPECT_FALSE(jstr(r.body, "/data/version").empty());
  EXPECT_NE(jptr(r.body, "/data/timestamp"), nullptr);
  EXPECT_EQ(jstr(r.body, "/data/services/database"), "up") << r.raw;
  EXPECT_GE(jint(r.body, "/data/uptime_s"), 0) << r.raw;
}

TEST_F(Rest, SystemUpdateNeedsAdmin) {
  auto s = alice();
  EXPECT_ERROR(http().post("/api/v1/system/update", json::object{}, s.access),
               403, "forbidden");
  auto a = root();
  auto r = http().post("/api/v1/system/update", json::object{}, a.access);
  EXPECT_OK(r, 202);
  EXPECT_FALSE(jstr(r.body, "/data/update_id").empty()) << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/status"), "scheduled") << r.raw;
  // Without a body too.
  auto r2 = http().request("POST", "/api/v1/system/update", "", a.access);
  EXPECT_OK(r2, 202);
  EXPECT_NE(jstr(r2.body, "/data/update_id"), jstr(r.body, "/data/update_id"));
}

TEST_F(Rest, AdminUsersNeedsAdmin) {
  auto s = alice();
  EXPECT_ERROR(http().get("/api/v1/admin/users", s.access), 403, "forbidden");
  EXPECT_ERROR(http().get("/api/v1/admin/users"), 401, "unauthenticated");
  auto a = root();
  auto r = http().get("/api/v1/admin/users", a.access);
  EXPECT_OK(r, 200);
  std::set<std::string> names;
  auto users = jptr(r.body, "/data/users");
  ASSERT_TRUE(users && users->is_array()) << r.raw;
  for (auto& u : users->as_array())
    names.insert(jstr(u, "/username"));
  EXPECT_EQ(names, (std::set<std::string>{"alice", "bob", "root", "companion"}))
    << r.raw;
}

// -- token validation ---------------------------------------------------------

TEST_F(Rest, ForgedSignatureIs401) {
  auto s = alice();
  auto parts = split(s.access, '.');
  ASSERT_EQ(parts.size(), 3u);
  auto sig = parts[2];
  ASSERT_FALSE(sig.empty());
  sig[0] = sig[0] == 'A' ? 'B' : 'A';
  auto forged = parts[0] + "." + parts[1] + "." + sig;
  EXPECT_ERROR(http().get("/api/v1/users/me", forged), 401, "invalid_token");
}

TEST_F(Rest, TamperedClaimsAre401) {
  auto s = alice();
  auto parts = split(s.access, '.');
  ASSERT_EQ(parts.size(), 3u);
  auto claims = parse_json(base64url_decode(parts[1]));
  ASSERT_TRUE(claims.is_object());
  claims.as_object()["role"] = "admin";
  auto tampered =
    parts[0] + "." + base64url_encode(to_text(claims)) + "." + parts[2];
  EXPECT_ERROR(http().get("/api/v1/admin/users", tampered), 401,
               "invalid_token");
}

TEST_F(Rest, AlgNoneIs401) {
  auto s = alice();
  auto parts = split(s.access, '.');
  ASSERT_EQ(parts.size(), 3u);
  auto none = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "."
              + parts[1] + ".";
  EXPECT_ERROR(http().get("/api/v1/users/me", none), 401, "invalid_token");
  // alg none keeping the old signature.
  auto none_sig = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "."
                  + parts[1] + "." + parts[2];
  EXPECT_ERROR(http().get("/api/v1/users/me", none_sig), 401, "invalid_token");
  // Another algorithm.
  auto hs512 = base64url_encode(R"({"alg":"HS512","typ":"JWT"})") + "."
               + parts[1] + "." + parts[2];
  EXPECT_ERROR(http().get("/api/v1/users/me", hs512), 401, "invalid_token");
}

TEST_F(Rest, MalformedTokenIs401) {
  EXPECT_ERROR(http().get("/api/v1/users/me", "abc"), 401, "invalid_token");
  EXPECT_ERROR(http().get("/api/v1/users/me", "a.b.c"), 401, "invalid_token");
  EXPECT_ERROR(http().get("/api/v1/users/me", "..."), 401, "invalid_token");
  // A refresh token is not an access token.
  auto s = alice();
  EXPECT_ERROR(http().get("/api/v1/users/me", s.refresh), 401,
               "invalid_token");
  // Not a Bearer scheme.
  auto r = http().request("GET", "/api/v1/users/me", "", "",
                          {{"Authorization", "Basic YWxpY2U6YWxpY2UtcHc="}});
  EXPECT_EQ(r.status, 401) << r.raw;
}

class RestShortTtl : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.access_ttl_s = 1;
    return o;
  }
};

TEST_F(RestShortTtl, ExpiredTokenIs401AndRefreshStillWorks) {
  // iat/exp are whole seconds: log in just after a second boundary, so the
  // 1 s token is still valid for the first check.
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto frac = std::chrono::duration_cast<ms>(now) % 1000;
  std::this_thread::sleep_for(ms(1000) - frac + ms(20));
  auto s = alice();
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);
  std::this_thread::sleep_for(ms(2200));
  EXPECT_ERROR(http().get("/api/v1/users/me", s.access), 401, "token_expired");
  auto r = http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}});
  EXPECT_OK(r, 200);
  EXPECT_OK(http().get("/api/v1/users/me", jstr(r.body, "/data/access_token")),
            200);
}

// -- bad input ------------------------------------------------------------------

TEST_F(Rest, MalformedJsonIsBadJson) {
  auto s = alice();
  auto r = http().request("POST", "/api/v1/conversations/messages",
                          "{\"id\": \"x\", \"content\": ", s.access);
  EXPECT_ERROR(r, 400, "bad_json");
  auto r2 = http().request("POST", "/api/v1/users/authenticate", "{bad json}");
  EXPECT_ERROR(r2, 400, "bad_json");
  // Invalid UTF-8.
  auto r3 = http().request("POST", "/api/v1/conversations/messages",
                           "{\"id\":\"u8\",\"content\":\"\xff\xfe\"}",
                           s.access);
  EXPECT_ERROR(r3, 400, "bad_json");
  // Too deeply nested.
  std::string deep = "{\"id\":\"deep\",\"content\":\"x\",\"metadata\":";
  for (int i = 0; i < 70; ++i)
    deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 70; ++i)
    deep += "}";
  deep += "}";
  auto r4 = http().request("POST", "/api/v1/conversations/messages", deep,
                           s.access);
  EXPECT_ERROR(r4, 400, "bad_json");
  EXPECT_OK(http().get("/api/v1/health"), 200);
}

TEST_F(Rest, WrongTypesAndMissingFieldsAreValidationErrors) {
  auto s = alice();
  struct bad_case {
    json::value body;
    std::string field;
  };
  std::vector<bad_case> cases = {
    {{{"id", "t1"}, {"content", 5}}, "content"},
    {{{"id", 7}, {"content", "x"}}, "id"},
    {{{"content", "no id"}}, "id"},
    {{{"id", "t2"}}, "content"},
    {{{"id", "t3"}, {"content", ""}}, "content"},
    {{{"id", "t4"}, {"content", std::string(4001, 'x')}}, "content"},
    {{{"id", "bad id!"}, {"content", "x"}}, "id"},
    {{{"id", std::string(129, 'a')}, {"content", "x"}}, "id"},
    {{{"id", "bot-mine"}, {"content", "x"}}, "id"},
    {{{"id", "t5"}, {"content", "x"}, {"type", "video"}}, "type"},
    {{{"id", "t6"}, {"content", "x"}, {"metadata", "str"}}, "metadata"},
    {{{"id", "t7"}, {"content", "x"}, {"conversation_id", "a b"}},
     "conversation_id"},
  };
  for (auto& c : cases) {
    auto r = http().post("/api/v1/conversations/messages", c.body, s.access);
    EXPECT_ERROR(r, 400, "validation_error");
    EXPECT_EQ(jstr(r.body, "/details/field"), c.field)
      << "body " << c.body << " -> " << r.raw;
  }
  // Missing body where an object is required; a body that is not an object.
  auto empty = http().request("POST", "/api/v1/conversations/messages", "",
                              s.access);
  EXPECT_ERROR(empty, 400, "validation_error");
  EXPECT_EQ(jstr(empty.body, "/details/field"), "body") << empty.raw;
  auto arr = http().request("POST", "/api/v1/users/authenticate", "[1]");
  EXPECT_ERROR(arr, 400, "validation_error");
  EXPECT_EQ(jstr(arr.body, "/details/field"), "body") << arr.raw;
  auto wrong = http().post("/api/v1/users/authenticate",
                           {{"username", 1}, {"password", "x"}});
  EXPECT_ERROR(wrong, 400, "validation_error");
  EXPECT_EQ(jstr(wrong.body, "/details/field"), "username") << wrong.raw;
  // Exactly 4000 characters and 128-character ids are fine.
  EXPECT_OK(send_message(s.access, std::string(128, 'a'),
                         std::string(4000, 'y'), "conv-limits"),
            201);
  // Nothing invalid was stored.
  auto h = history(s.access, "conv-limits");
  auto ids = ids_of(h);
  ASSERT_FALSE(ids.empty()) << h.raw;
  EXPECT_EQ(ids.front(), std::string(128, 'a')) << h.raw;
}

TEST_F(Rest, OversizedBodyIs413) {
  auto s = alice();
  std::string big = "{\"id\":\"big\",\"content\":\"" + std::string(70000, 'x')
                    + "\"}";
  auto r = http().request("POST", "/api/v1/conversations/messages", big,
                          s.access);
  EXPECT_ERROR(r, 413, "payload_too_large");
  EXPECT_EQ(jint(r.body, "/details/max_bytes"), 65536) << r.raw;
  // Still answering.
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);
  EXPECT_OK(http().get("/api/v1/health"), 200);
}

TEST_F(Rest, UnknownRouteIs404) {
  auto s = alice();
  EXPECT_ERROR(http().get("/api/v1/nope", s.access), 404, "not_found");
  EXPECT_ERROR(http().get("/api/v1/users/nobody/else", s.access), 404,
               "not_found");
  EXPECT_ERROR(http().get("/api/v2/health"), 404, "not_found");
  EXPECT_OK(http().get("/api/v1/health"), 200);
}

TEST_F(Rest, WrongMethodIs405WithAllow) {
  auto s = alice();
  auto r = http().request("DELETE", "/api/v1/users/me", "", s.access);
  EXPECT_ERROR(r, 405, "method_not_allowed");
  EXPECT_NE(r.header("Allow").find("GET"), std::string::npos)
    << "Allow: " << r.header("Allow");
  auto r2 = http().get("/api/v1/users/authenticate");
  EXPECT_ERROR(r2, 405, "method_not_allowed");
  EXPECT_NE(r2.header("Allow").find("POST"), std::string::npos)
    << "Allow: " << r2.header("Allow");
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);
}

TEST_F(Rest, ResponsesAreJson) {
  auto r = http().get("/api/v1/health");
  EXPECT_NE(r.header("Content-Type").find("application/json"),
            std::string::npos)
    << r.header("Content-Type");
  auto e = http().get("/api/v1/nope");
  EXPECT_NE(e.header("Content-Type").find("application/json"),
            std::string::npos)
    << e.header("Content-Type");
}

class RestRateLimit : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.extra_args.push_back("--rate-limit");
    o.extra_args.push_back("2");
    return o;
  }
};

TEST_F(RestRateLimit, OverLimitIs429WithRetryAfter) {
  auto s = alice();
  int limited = 0;
  http_response last;
  for (int i = 0; i < 6; ++i) {
    auto r = http().get("/api/v1/users/me", s.access);
    if (r.status == 429) {
      ++limited;
      last = r;
    } else {
      EXPECT_EQ(r.status, 200) << r.raw;
    }
  }
  EXPECT_GE(limited, 1);
  if (limited > 0) {
    EXPECT_ERROR(last, 429, "rate_limited");
    auto ra = last.header("Retry-After");
    EXPECT_FALSE(ra.empty());
    EXPECT_GE(std::atoi(ra.c_str()), 1) << ra;
  }
  // Health and /admin/faults are never rate limited.
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(http().get("/api/v1/health").status, 200);
  auto adm = root();
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(http().get("/api/v1/admin/faults", adm.access).status, 200);
}


// -- more contract details ------------------------------------------------------

TEST(GatewayStartup, CompanionCannotBeAConfiguredUser) {
  gateway_options o = fast_options();
  o.users.push_back("companion:pw");
  gateway_process gw(o);
  EXPECT_FALSE(gw.start(ms(5000))) << "started with --user companion:pw";
}

TEST_F(Rest, ReadyLineFormat) {
  auto port = std::to_string(gw_->port());
  EXPECT_EQ(gw_->ready_line(), "ready http=http://127.0.0.1:" + port
                                 + " ws=ws://127.0.0.1:" + port
                                 + "/api/v1/ws ipc=" + gw_->ipc_endpoint());
}

TEST_F(Rest, KeepAliveConnectionServesManyRequests) {
  auto s = alice();
  http_connection conn("127.0.0.1", gw_->port());
  ASSERT_TRUE(conn.connect());
  for (int i = 0; i < 5; ++i) {
    auto r = conn.request("GET", "/api/v1/users/me", "", s.access);
    EXPECT_OK(r, 200);
    EXPECT_EQ(jstr(r.body, "/data/username"), "alice");
    ASSERT_FALSE(conn.server_closed()) << "server closed a keep-alive "
                                          "connection after request "
                                       << i;
  }
  // Errors do not end the connection either.
  auto e = conn.request("GET", "/api/v1/nope", "", s.access);
  EXPECT_ERROR(e, 404, "not_found");
  auto bad = conn.request("POST", "/api/v1/conversations/messages", "{x",
                          s.access);
  EXPECT_ERROR(bad, 400, "bad_json");
  auto after = conn.request("GET", "/api/v1/health");
  EXPECT_OK(after, 200);
}

TEST_F(Rest, BotAnswersOnlyTextMessages) {
  auto s = alice();
  auto img = uid("img");
  EXPECT_OK(send_message(s.access, img, "a picture of a mountain", "conv-types",
                         "image"),
            201);
  auto txt = uid("txt");
  EXPECT_OK(send_message(s.access, txt, "tell me about mountains",
                         "conv-types"),
            201);
  ASSERT_TRUE(wait_for_message(s.access, "conv-types", "bot-" + txt));
  std::this_thread::sleep_for(ms(200));
  auto ids = ids_of(history(s.access, "conv-types"));
  EXPECT_EQ(ids, (std::vector<std::string>{img, txt, "bot-" + txt}));
  auto h = history(s.access, "conv-types");
  EXPECT_EQ(jstr(h.body, "/data/messages/2/reply_to"), txt) << h.raw;
  EXPECT_EQ(jstr(h.body, "/data/messages/2/sender"), "companion") << h.raw;
  EXPECT_EQ(jstr(h.body, "/data/messages/2/type"), "text") << h.raw;
  EXPECT_EQ(jstr(h.body, "/data/messages/0/type"), "image") << h.raw;
}

TEST_F(Rest, UnknownFieldsAreIgnoredAndMetadataKept) {
  auto s = alice();
  auto id = uid("extra");
  auto r = http().post("/api/v1/conversations/messages",
                       {{"id", id},
                        {"content", "x"},
                        {"type", "system"},
                        {"unknown_field", 1},
                        {"metadata", {{"source", "test"}, {"n", 2}}}},
                       s.access);
  EXPECT_OK(r, 201);
  EXPECT_EQ(jstr(r.body, "/data/metadata/source"), "test") << r.raw;
  EXPECT_EQ(jint(r.body, "/data/metadata/n"), 2) << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/type"), "system");
  EXPECT_EQ(jptr(r.body, "/data/unknown_field"), nullptr) << r.raw;
}

TEST_F(Rest, RefreshAndLogoutInputValidation) {
  auto s = alice();
  auto r = http().post("/api/v1/users/refresh", {{"refresh_token", 5}});
  EXPECT_ERROR(r, 400, "validation_error");
  EXPECT_EQ(jstr(r.body, "/details/field"), "refresh_token") << r.raw;
  auto m = http().post("/api/v1/users/refresh", json::object{});
  EXPECT_ERROR(m, 400, "validation_error");
  EXPECT_EQ(jstr(m.body, "/details/field"), "refresh_token") << m.raw;
  // An unknown refresh token on logout is ignored; the access token is
  // still revoked, the real refresh token is not touched.
  auto out = http().post("/api/v1/users/logout",
                         {{"refresh_token", "unknown-token"}}, s.access);
  EXPECT_OK(out, 200);
  EXPECT_TRUE(jtrue(out.body, "/data/logged_out")) << out.raw;
  EXPECT_ERROR(http().get("/api/v1/users/me", s.access), 401, "invalid_token");
  // Another user's refresh token is ignored too.
  auto b = bob();
  auto a2 = alice();
  EXPECT_OK(http().post("/api/v1/users/logout", {{"refresh_token", b.refresh}},
                        a2.access),
            200);
  EXPECT_OK(http().post("/api/v1/users/refresh", {{"refresh_token", b.refresh}}),
            200);
}

TEST_F(Rest, SystemUpdateWithBadJsonIs400) {
  auto a = root();
  auto r = http().request("POST", "/api/v1/system/update", "{nope", a.access);
  EXPECT_ERROR(r, 400, "bad_json");
}

TEST_F(Rest, RoleComesFromTheDatabase) {
  auto adm = root();
  EXPECT_OK(http().get("/api/v1/admin/users", adm.access), 200);
  EXPECT_EQ(gw_->stop(), 0);
  // The same data directory, root demoted to a plain user.
  gateway_options o = fast_options();
  o.data_dir = gw_->data_dir();
  o.users = {"alice:alice-pw", "bob:bob-pw", "root:root-pw:user"};
  gateway_process demoted(o);
  ASSERT_TRUE(demoted.start()) << demoted.last_error();
  http_client c("127.0.0.1", demoted.port());
  // The old token still says role admin, but the database says user.
  EXPECT_ERROR(c.get("/api/v1/admin/users", adm.access), 403, "forbidden");
  auto me = c.get("/api/v1/users/me", adm.access);
  EXPECT_OK(me, 200);
  EXPECT_EQ(jstr(me.body, "/data/role"), "user") << me.raw;
  EXPECT_EQ(demoted.stop(), 0);
}

class RestShortRefreshTtl : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.extra_args.push_back("--refresh-ttl");
    o.extra_args.push_back("1");
    return o;
  }
};

TEST_F(RestShortRefreshTtl, ExpiredRefreshTokenIs401) {
  auto s = alice();
  std::this_thread::sleep_for(ms(2100));
  EXPECT_ERROR(
    http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}}), 401,
    "invalid_refresh_token");
}

} // namespace
} // namespace aico::test
