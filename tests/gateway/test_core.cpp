// Unit tests of the gateway API core (aico::gateway::api), called directly:
// no sockets. Each test gets a fresh data dir from mkdtemp.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "gateway/api.hpp"
#include "gateway/bot.hpp"
#include "gateway/json_util.hpp"
#include "gateway/jwt.hpp"

using namespace aico::gateway;
using namespace std::chrono_literals;

namespace {

// Collects events; shared_ptr-owned so a late sink call is always safe.
struct collector {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<event> events;

  event_sink sink(std::shared_ptr<collector> self) {
    return [self](const event& e) {
      {
        std::lock_guard<std::mutex> lock(self->mtx);
        self->events.push_back(e);
      }
      self->cv.notify_all();
    };
  }

  // Waits (bounded) until `pred(events)` holds.
  bool wait_for(const std::function<bool(const std::vector<event>&)>& pred,
                std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(mtx);
    return cv.wait_for(lock, timeout, [&] { return pred(events); });
  }

  std::vector<event> snapshot() {
    std::lock_guard<std::mutex> lock(mtx);
    return events;
  }
};

std::size_t count_topic(const std::vector<event>& evs, const std::string& t) {
  std::size_t n = 0;
  for (auto& e : evs)
    if (e.topic == t)
      ++n;
  return n;
}

json::value parse(const std::string& text) {
  auto v = parse_json(text);
  if (!v)
    ADD_FAILURE() << "not JSON: " << text;
  return v ? *v : json::value{};
}

std::string str(const json::value& v) {
  return std::string(v.as_string());
}

class core_test : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/aico-core-test-XXXXXX";
    char* d = ::mkdtemp(tmpl);
    ASSERT_NE(d, nullptr);
    dir_ = d;
    cfg_.data_dir = dir_;
    cfg_.users = {{"alice", "alice-pw", "user"},
                  {"bob", "bob-pw", "user"},
                  {"root", "root-pw", "admin"}};
    cfg_.bot_chunk_delay_ms = 5;
  }

  void TearDown() override {
    core_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void start() {
    core_ = std::make_unique<api>(cfg_);
  }

  api_response call(const std::string& method, const std::string& target,
                    const std::string& body = {},
                    const std::string& token = {}) {
    api_request r;
    r.method = method;
    r.target = target;
    r.body = body;
    r.token = token;
    auto resp = core_->handle(r);
    // Every response is one envelope.
    auto env = parse(resp.body);
    EXPECT_TRUE(env.is_object()) << resp.body;
    if (env.is_object()) {
      auto& o = env.as_object();
      EXPECT_TRUE(o.contains("success")) << resp.body;
      if (resp.status >= 400) {
        EXPECT_FALSE(o.at("success").as_bool());
        EXPECT_TRUE(o.contains("code") && o.at("code").is_string());
        EXPECT_TRUE(o.contains("details") && o.at("details").is_object());
      }
    }
    return resp;
  }

  static json::value data(const api_response& r) {
    return parse(r.body).as_object().at("data");
  }

  static std::string code(const api_response& r) {
    return str(parse(r.body).as_object().at("code"));
  }

  static std::string field(const api_response& r) {
    auto d = parse(r.body).as_object().at("details").as_object();
    auto f = d.if_contains("field");
    return f && f->is_string() ? str(*f) : std::string{};
  }

  static std::string header(const api_response& r, const std::string& name) {
    for (auto& [k, v] : r.headers)
      if (k == name)
        return v;
    return {};
  }

  json::object login(const std::string& user, const std::string& pw) {
    auto r = call("POST", "/users/authenticate",
                  R"({"username":")" + user + R"(","password":")" + pw
                    + R"("})");
    EXPECT_EQ(r.status, 200) << r.body;
    return data(r).as_object();
  }

  std::string token(const std::string& user, const std::string& pw) {
    return str(login(user, pw).at("access_token"));
  }

  std::string user_id(const std::string& tok) {
    auto r = call("GET", "/users/me", {}, tok);
    EXPECT_EQ(r.status, 200);
    return str(data(r).at("id"));
  }

  api_response send(const std::string& tok, const std::string& id,
                    const std::string& content,
                    const std::string& conversation = {}) {
    json::object b;
    b["id"] = id;
    b["content"] = content;
    if (!conversation.empty())
      b["conversation_id"] = conversation;
    return call("POST", "/conversations/messages", json::serialize(b), tok);
  }

  std::string secret() {
    std::ifstream in(dir_ + "/jwt.secret", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string dir_;
  gateway_config cfg_;
  std::unique_ptr<api> core_;
};

// -- authentication ------------------------------------------------------------

TEST_F(core_test, login_ok_and_me) {
  start();
  auto d = login("alice", "alice-pw");
  EXPECT_EQ(str(d.at("token_type")), "Bearer");
  EXPECT_EQ(d.at("expires_in").as_int64(), cfg_.access_ttl_s);
  EXPECT_EQ(d.at("refresh_expires_in").as_int64(), cfg_.refresh_ttl_s);
  EXPECT_FALSE(str(d.at("refresh_token")).empty());
  auto& u = d.at("user").as_object();
  EXPECT_EQ(str(u.at("username")), "alice");
  EXPECT_EQ(str(u.at("role")), "user");
  EXPECT_TRUE(u.at("preferences").is_object());
  auto tok = str(d.at("access_token"));
  // With and without the /api/v1 prefix.
  for (auto target : {"/users/me", "/api/v1/users/me"}) {
    auto r = call("GET", target, {}, tok);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(str(data(r).at("username")), "alice");
  }
  auto p = core_->authenticate(tok);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->username, "alice");
  EXPECT_EQ(p->role, "user");
  EXPECT_GT(p->exp, now_s());
  // The secret file is private.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/jwt.secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(core_test, login_rejects_bad_credentials_and_bad_bodies) {
  start();
  auto r = call("POST", "/users/authenticate",
                R"({"username":"alice","password":"wrong"})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "invalid_credentials");
  r = call("POST", "/users/authenticate",
           R"({"username":"nobody","password":"x"})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "invalid_credentials");
  // The bot cannot log in.
  r = call("POST", "/users/authenticate",
           R"({"username":"companion","password":""})");
  EXPECT_EQ(r.status, 401);
  r = call("POST", "/users/authenticate", R"({"username":"alice"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(code(r), "validation_error");
  EXPECT_EQ(field(r), "password");
  r = call("POST", "/users/authenticate", R"({"username":5,"password":"x"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "username");
  r = call("POST", "/users/authenticate", R"({"username":"alice",)");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(code(r), "bad_json");
}

TEST_F(core_test, refresh_rotates_and_reuse_revokes_family) {
  start();
  auto first = login("alice", "alice-pw");
  auto other = login("alice", "alice-pw"); // a second, unrelated family
  auto r1 = str(first.at("refresh_token"));
  auto r = call("POST", "/users/refresh",
                R"({"refresh_token":")" + r1 + R"("})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto r2 = str(data(r).at("refresh_token"));
  auto a2 = str(data(r).at("access_token"));
  EXPECT_NE(r1, r2);
  EXPECT_EQ(call("GET", "/users/me", {}, a2).status, 200);
  // Reusing r1 is theft: 401 and the whole family (r2) is revoked.
  r = call("POST", "/users/refresh", R"({"refresh_token":")" + r1 + R"("})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "invalid_refresh_token");
  r = call("POST", "/users/refresh", R"({"refresh_token":")" + r2 + R"("})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "invalid_refresh_token");
  // The other family is untouched.
  r = call("POST", "/users/refresh",
           R"({"refresh_token":")" + str(other.at("refresh_token")) + R"("})");
  EXPECT_EQ(r.status, 200) << r.body;
  // Unknown token, missing field.
  r = call("POST", "/users/refresh", R"({"refresh_token":"nope"})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "invalid_refresh_token");
  r = call("POST", "/users/refresh", "{}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "refresh_token");
}

TEST_F(core_test, concurrent_refresh_of_one_token_succeeds_once) {
  start();
  auto rt = str(login("alice", "alice-pw").at("refresh_token"));
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      api_request req;
      req.method = "POST";
      req.target = "/users/refresh";
      req.body = R"({"refresh_token":")" + rt + R"("})";
      if (core_->handle(req).status == 200)
        ++ok;
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(ok.load(), 1);
}

TEST_F(core_test, logout_revokes_access_token_and_refresh_family) {
  start();
  auto s1 = login("alice", "alice-pw");
  auto s2 = login("alice", "alice-pw");
  auto tok = str(s1.at("access_token"));
  auto r = call("POST", "/users/logout",
                R"({"refresh_token":")" + str(s1.at("refresh_token")) + R"("})",
                tok);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(data(r).at("logged_out").as_bool());
  r = call("GET", "/users/me", {}, tok);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "invalid_token");
  EXPECT_FALSE(core_->authenticate(tok));
  r = call("POST", "/users/refresh",
           R"({"refresh_token":")" + str(s1.at("refresh_token")) + R"("})");
  EXPECT_EQ(r.status, 401);
  // Session 2 still works; logging out without a refresh token revokes all.
  auto tok2 = str(s2.at("access_token"));
  EXPECT_EQ(call("GET", "/users/me", {}, tok2).status, 200);
  EXPECT_EQ(call("POST", "/users/logout", {}, tok2).status, 200);
  EXPECT_EQ(call("GET", "/users/me", {}, tok2).status, 401);
  r = call("POST", "/users/refresh",
           R"({"refresh_token":")" + str(s2.at("refresh_token")) + R"("})");
  EXPECT_EQ(r.status, 401);
  // Logout needs a token.
  r = call("POST", "/users/logout");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "unauthenticated");
}

TEST_F(core_test, expired_token_is_rejected) {
  start();
  auto tok = token("alice", "alice-pw");
  auto id = user_id(tok);
  jwt_claims c{id, "alice", "user", "jti-expired", now_s() - 100,
               now_s() - 10};
  auto expired = jwt_sign(c, secret());
  auto r = call("GET", "/users/me", {}, expired);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "token_expired");
  api_response err;
  EXPECT_FALSE(core_->authenticate(expired, &err));
  EXPECT_EQ(err.status, 401);
  // The same claims with a future exp are accepted (the check is real).
  c.exp = now_s() + 60;
  EXPECT_EQ(call("GET", "/users/me", {}, jwt_sign(c, secret())).status, 200);
}

TEST_F(core_test, short_access_ttl_expires) {
  cfg_.access_ttl_s = 1;
  start();
  auto tok = token("alice", "alice-pw");
  EXPECT_EQ(call("GET", "/users/me", {}, tok).status, 200);
  std::this_thread::sleep_for(2100ms);
  auto r = call("GET", "/users/me", {}, tok);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "token_expired");
}

TEST_F(core_test, forged_none_and_malformed_tokens_are_rejected) {
  start();
  auto tok = token("alice", "alice-pw");
  auto id = user_id(tok);
  auto expect_invalid = [&](const std::string& t) {
    auto r = call("GET", "/users/me", {}, t);
    EXPECT_EQ(r.status, 401) << t;
    EXPECT_EQ(code(r), "invalid_token") << t;
  };
  // Tampered signature.
  auto forged = tok;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  expect_invalid(forged);
  // Signed with another key.
  jwt_claims c{id, "alice", "admin", "jti-x", now_s(), now_s() + 600};
  expect_invalid(jwt_sign(c, "not the secret"));
  // Tampered payload (role escalation) with the original signature.
  auto dot1 = tok.find('.');
  auto dot2 = tok.find('.', dot1 + 1);
  json::object payload;
  payload["sub"] = id;
  payload["name"] = "alice";
  payload["role"] = "admin";
  payload["iat"] = now_s();
  payload["exp"] = now_s() + 600;
  payload["jti"] = "x";
  expect_invalid(tok.substr(0, dot1 + 1)
                 + base64url_encode(json::serialize(payload))
                 + tok.substr(dot2));
  // alg none (with and without a signature part), and other algorithms.
  auto p64 = base64url_encode(json::serialize(payload));
  expect_invalid(base64url_encode(R"({"alg":"none","typ":"JWT"})") + "."
                 + p64 + ".");
  expect_invalid(base64url_encode(R"({"alg":"none"})") + "." + p64);
  expect_invalid(jwt_sign_raw(R"({"alg":"HS512","typ":"JWT"})",
                              json::serialize(payload), secret()));
  expect_invalid(jwt_sign_raw(R"({"typ":"JWT"})", json::serialize(payload),
                              secret()));
  // Validly signed but missing claims / wrong types.
  expect_invalid(jwt_sign_raw(R"({"alg":"HS256","typ":"JWT"})",
                              R"({"sub":"x","exp":"soon"})", secret()));
  // A correctly signed token for a user that does not exist.
  jwt_claims ghost{"u_ghost", "ghost", "admin", "j", now_s(), now_s() + 60};
  expect_invalid(jwt_sign(ghost, secret()));
  // Malformed.
  for (auto t : {"abc", "a.b", "a.b.c.d", "!!!.???.***", "..", "Bearer x"})
    expect_invalid(t);
  expect_invalid(std::string(10000, 'a'));
  // Missing.
  auto r = call("GET", "/users/me");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(code(r), "unauthenticated");
  // The genuine token still works.
  EXPECT_EQ(call("GET", "/users/me", {}, tok).status, 200);
}

// -- messages ------------------------------------------------------------------

TEST_F(core_test, idempotent_send_creates_one_message_and_one_event) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  auto col = std::make_shared<collector>();
  core_->subscribe(user_id(tok), col->sink(col));
  auto r1 = send(tok, "m-1", "hello there");
  ASSERT_EQ(r1.status, 201) << r1.body;
  auto m1 = data(r1).as_object();
  EXPECT_EQ(str(m1.at("status")), "sent");
  EXPECT_EQ(str(m1.at("sender")), "alice");
  EXPECT_TRUE(m1.at("reply_to").is_null());
  EXPECT_TRUE(m1.at("read_at").is_null());
  EXPECT_EQ(str(m1.at("timestamp")),
            iso8601_ms(m1.at("timestamp_ms").as_int64()));
  auto r2 = send(tok, "m-1", "hello there");
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(data(r2).at("seq"), m1.at("seq"));
  EXPECT_EQ(data(r2).at("timestamp_ms"), m1.at("timestamp_ms"));
  auto h = call("GET", "/conversations/current/messages", {}, tok);
  ASSERT_EQ(h.status, 200);
  EXPECT_EQ(data(h).at("messages").as_array().size(), 1u);
  ASSERT_TRUE(col->wait_for(
    [](auto& evs) { return count_topic(evs, "message") >= 1; }));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(count_topic(col->snapshot(), "message"), 1u);
}

TEST_F(core_test, concurrent_sends_of_one_id_create_one_message) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  std::atomic<int> created{0}, replayed{0}, other{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([&] {
      api_request req;
      req.method = "POST";
      req.target = "/conversations/messages";
      req.token = tok;
      req.body = R"({"id":"same","content":"hi"})";
      auto s = core_->handle(req).status;
      (s == 201 ? created : s == 200 ? replayed : other)++;
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(replayed.load(), 7);
  EXPECT_EQ(other.load(), 0);
}

TEST_F(core_test, same_id_from_other_user_is_conflict) {
  start();
  auto alice = token("alice", "alice-pw");
  auto bob = token("bob", "bob-pw");
  ASSERT_EQ(send(alice, "shared-id", "mine").status, 201);
  auto r = send(bob, "shared-id", "mine too");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(code(r), "conflict");
}

TEST_F(core_test, other_users_conversation_is_forbidden) {
  start();
  auto alice = token("alice", "alice-pw");
  auto bob = token("bob", "bob-pw");
  auto r = send(alice, "a-1", "private", "alice-chat");
  ASSERT_EQ(r.status, 201);
  r = send(bob, "b-1", "intrusion", "alice-chat");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(code(r), "forbidden");
  r = call("GET", "/conversations/alice-chat/messages", {}, bob);
  EXPECT_EQ(r.status, 403);
  r = call("POST", "/conversations/messages/a-1/read", {}, bob);
  EXPECT_EQ(r.status, 403);
  // Alice's default conversation cannot be claimed by bob.
  auto alice_default = "default-" + user_id(alice);
  EXPECT_EQ(send(bob, "b-2", "x", alice_default).status, 403);
  EXPECT_EQ(call("GET", "/conversations/" + alice_default + "/messages", {},
                 bob)
              .status,
            403);
  // Alice still can.
  EXPECT_EQ(call("GET", "/conversations/alice-chat/messages", {}, alice).status,
            200);
}

TEST_F(core_test, current_conversation_follows_last_write) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  auto id = user_id(tok);
  auto r = call("GET", "/conversations/current/messages", {}, tok);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(str(data(r).at("conversation_id")), "default-" + id);
  EXPECT_TRUE(data(r).at("messages").as_array().empty());
  EXPECT_FALSE(data(r).at("has_more").as_bool());
  EXPECT_EQ(data(r).at("next_since").as_int64(), 0);
  ASSERT_EQ(send(tok, "c-1", "first").status, 201);
  r = call("GET", "/conversations/current/messages", {}, tok);
  EXPECT_EQ(str(data(r).at("conversation_id")), "default-" + id);
  ASSERT_EQ(send(tok, "c-2", "trip plans", "trip").status, 201);
  r = send(tok, "c-3", "no conversation given");
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(str(data(r).at("conversation_id")), "trip");
  r = call("GET", "/conversations/current/messages", {}, tok);
  EXPECT_EQ(str(data(r).at("conversation_id")), "trip");
  EXPECT_EQ(data(r).at("messages").as_array().size(), 2u);
}

TEST_F(core_test, history_paging_with_since_and_limit) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  std::vector<int64_t> seqs;
  for (int i = 0; i < 5; ++i) {
    auto r = send(tok, "p-" + std::to_string(i), "msg " + std::to_string(i),
                  "paging");
    ASSERT_EQ(r.status, 201);
    seqs.push_back(data(r).at("seq").as_int64());
  }
  ASSERT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  auto page = [&](const std::string& q) {
    auto r = call("GET", "/conversations/paging/messages" + q, {}, tok);
    EXPECT_EQ(r.status, 200) << r.body;
    return data(r).as_object();
  };
  auto ids = [](const json::object& d) {
    std::vector<std::string> out;
    for (auto& m : d.at("messages").as_array())
      out.push_back(str(m.at("id")));
    return out;
  };
  // Latest 2, ascending.
  auto d = page("?limit=2");
  EXPECT_EQ(ids(d), (std::vector<std::string>{"p-3", "p-4"}));
  EXPECT_FALSE(d.at("has_more").as_bool());
  EXPECT_EQ(d.at("next_since").as_int64(), seqs[4]);
  // Forward paging from the start.
  d = page("?since=0&limit=2");
  EXPECT_EQ(ids(d), (std::vector<std::string>{"p-0", "p-1"}));
  EXPECT_TRUE(d.at("has_more").as_bool());
  EXPECT_EQ(d.at("next_since").as_int64(), seqs[1]);
  d = page("?since=" + std::to_string(seqs[1]) + "&limit=2");
  EXPECT_EQ(ids(d), (std::vector<std::string>{"p-2", "p-3"}));
  EXPECT_TRUE(d.at("has_more").as_bool());
  d = page("?since=" + std::to_string(seqs[3]) + "&limit=2");
  EXPECT_EQ(ids(d), (std::vector<std::string>{"p-4"}));
  EXPECT_FALSE(d.at("has_more").as_bool());
  d = page("?since=" + std::to_string(seqs[4]));
  EXPECT_TRUE(d.at("messages").as_array().empty());
  EXPECT_EQ(d.at("next_since").as_int64(), seqs[4]);
  // Default limit returns all 5; percent-encoded query works.
  EXPECT_EQ(ids(page("")).size(), 5u);
  EXPECT_EQ(ids(page("?lim%69t=1")).size(), 1u);
  // Bad parameters.
  for (auto q : {"?limit=0", "?limit=501", "?limit=abc", "?limit=-1"}) {
    auto r = call("GET", std::string("/conversations/paging/messages") + q,
                  {}, tok);
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_EQ(field(r), "limit") << q;
  }
  auto r = call("GET", "/conversations/paging/messages?since=-1", {}, tok);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "since");
}

TEST_F(core_test, read_marks_message_and_emits_event) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  auto col = std::make_shared<collector>();
  core_->subscribe(user_id(tok), col->sink(col));
  ASSERT_EQ(send(tok, "r-1", "read me").status, 201);
  auto r = call("POST", "/conversations/messages/r-1/read", {}, tok);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(str(data(r).at("status")), "read");
  EXPECT_TRUE(data(r).at("read_at").is_string());
  EXPECT_TRUE(col->wait_for(
    [](auto& evs) { return count_topic(evs, "message.read") == 1; }));
  r = call("POST", "/conversations/messages/nope/read", {}, tok);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(code(r), "not_found");
}

TEST_F(core_test, events_include_bot_stream_and_final_reply) {
  start();
  auto alice = token("alice", "alice-pw");
  auto bob = token("bob", "bob-pw");
  auto col = std::make_shared<collector>();
  auto bob_col = std::make_shared<collector>();
  core_->subscribe(user_id(alice), col->sink(col));
  auto bob_sub = core_->subscribe(user_id(bob), bob_col->sink(bob_col));
  auto text = "I love gardening with tomatoes";
  ASSERT_EQ(send(alice, "g-1", text).status, 201);
  auto has_final = [](const std::vector<event>& evs) {
    for (auto& e : evs)
      if (e.topic == "message"
          && parse(e.data).as_object().at("id") == "bot-g-1")
        return true;
    return false;
  };
  ASSERT_TRUE(col->wait_for(has_final));
  auto evs = col->snapshot();
  // Order: own message, 3-4 stream chunks, final message; seq increasing.
  std::string streamed;
  std::vector<int64_t> seq_nos;
  bool done = false;
  json::object final_msg;
  for (std::size_t i = 0; i < evs.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(evs[i].seq, evs[i - 1].seq);
    }
    auto d = parse(evs[i].data).as_object();
    if (evs[i].topic == "message.stream") {
      EXPECT_FALSE(done) << "chunk after done";
      EXPECT_EQ(str(d.at("reply_to")), "g-1");
      EXPECT_EQ(str(d.at("message_id")), "bot-g-1");
      EXPECT_EQ(str(d.at("conversation_id")), "default-" + user_id(alice));
      seq_nos.push_back(d.at("seq_no").as_int64());
      streamed += str(d.at("chunk"));
      done = d.at("done").as_bool();
    } else if (evs[i].topic == "message" && str(d.at("id")) == "bot-g-1") {
      EXPECT_TRUE(done) << "final before the last chunk";
      final_msg = d;
    }
  }
  ASSERT_EQ(str(parse(evs.front().data).at("id")), "g-1");
  ASSERT_GE(seq_nos.size(), 3u);
  ASSERT_LE(seq_nos.size(), 4u);
  for (std::size_t i = 0; i < seq_nos.size(); ++i)
    EXPECT_EQ(seq_nos[i], static_cast<int64_t>(i));
  EXPECT_EQ(str(final_msg.at("sender_id")), "companion");
  EXPECT_EQ(str(final_msg.at("sender")), "companion");
  EXPECT_EQ(str(final_msg.at("reply_to")), "g-1");
  auto content = str(final_msg.at("content"));
  EXPECT_EQ(content, streamed);
  EXPECT_EQ(content, bot_reply_text(text));
  EXPECT_NE(content.find("\"gardening\""), std::string::npos) << content;
  EXPECT_NE(content.find("\"tomatoes\""), std::string::npos) << content;
  // History holds both, and a re-send triggers no second reply.
  ASSERT_EQ(send(alice, "g-1", text).status, 200);
  std::this_thread::sleep_for(200ms);
  auto h = call("GET", "/conversations/current/messages", {}, alice);
  auto msgs = data(h).at("messages").as_array();
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(str(msgs[0].at("id")), "g-1");
  EXPECT_EQ(str(msgs[1].at("id")), "bot-g-1");
  EXPECT_EQ(count_topic(col->snapshot(), "message"), 2u);
  // Bob saw nothing of it; after unsubscribing he gets no broadcast either.
  EXPECT_TRUE(bob_col->snapshot().empty());
  core_->unsubscribe(bob_sub);
  auto root = token("root", "root-pw");
  ASSERT_EQ(call("POST", "/system/update", {}, root).status, 202);
  ASSERT_TRUE(col->wait_for(
    [](auto& evs) { return count_topic(evs, "system.update") == 1; }));
  EXPECT_TRUE(bob_col->snapshot().empty());
}

TEST_F(core_test, non_text_messages_and_disabled_bot_get_no_reply) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  ASSERT_EQ(send(tok, "nb-1", "hello bot").status, 201);
  std::this_thread::sleep_for(100ms);
  auto h = call("GET", "/conversations/current/messages", {}, tok);
  EXPECT_EQ(data(h).at("messages").as_array().size(), 1u);
}

TEST_F(core_test, unsubscribe_from_inside_a_sink_does_not_deadlock) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  auto col = std::make_shared<collector>();
  auto handle = std::make_shared<std::atomic<uint64_t>>(0);
  api* core = core_.get();
  auto inner = col->sink(col);
  handle->store(core_->subscribe(user_id(tok), [=](const event& e) {
    inner(e);
    core->unsubscribe(handle->load());
  }));
  ASSERT_EQ(send(tok, "u-1", "one").status, 201);
  ASSERT_TRUE(col->wait_for([](auto& evs) { return evs.size() == 1; }));
  ASSERT_EQ(send(tok, "u-2", "two").status, 201);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(col->snapshot().size(), 1u);
}

TEST_F(core_test, bot_reply_is_deterministic) {
  EXPECT_EQ(bot_reply_text("the quick brown fox"),
            bot_reply_text("the quick brown fox"));
  EXPECT_EQ(bot_key_words("a bb ccc dddd ccc BB", 3),
            (std::vector<std::string>{"dddd", "ccc", "bb"}));
  for (auto text : {"", "hi", "one two three four five six seven"}) {
    auto reply = bot_reply_text(text);
    auto chunks = bot_chunks(reply);
    EXPECT_GE(chunks.size(), 3u);
    EXPECT_LE(chunks.size(), 4u);
    std::string joined;
    for (auto& c : chunks)
      joined += c;
    EXPECT_EQ(joined, reply);
  }
}

// -- roles, input validation -----------------------------------------------------

TEST_F(core_test, rbac_admin_routes) {
  start();
  auto alice = token("alice", "alice-pw");
  auto root = token("root", "root-pw");
  auto r = call("GET", "/admin/users", {}, alice);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(code(r), "forbidden");
  EXPECT_EQ(call("POST", "/system/update", {}, alice).status, 403);
  r = call("GET", "/admin/users", {}, root);
  ASSERT_EQ(r.status, 200);
  EXPECT_GE(data(r).at("users").as_array().size(), 3u);
  r = call("POST", "/system/update", R"({"version":"9"})", root);
  ASSERT_EQ(r.status, 202);
  EXPECT_EQ(str(data(r).at("status")), "scheduled");
  EXPECT_FALSE(str(data(r).at("update_id")).empty());
  r = call("GET", "/system/status", {}, alice);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(data(r).as_object().contains("uptime_s"));
  EXPECT_EQ(call("GET", "/system/status").status, 401);
  // Family: the other human users.
  r = call("GET", "/users/me/family", {}, alice);
  ASSERT_EQ(r.status, 200);
  std::vector<std::string> names;
  auto members = data(r).at("members").as_array();
  for (auto& u : members)
    names.push_back(str(u.at("username")));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"bob", "root"}));
}

TEST_F(core_test, bad_input_gets_the_right_codes) {
  cfg_.max_body_bytes = 1024;
  start();
  auto tok = token("alice", "alice-pw");
  auto post = [&](const std::string& body) {
    return call("POST", "/conversations/messages", body, tok);
  };
  auto r = post("{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(code(r), "bad_json");
  r = post("[1,2]");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(code(r), "validation_error");
  EXPECT_EQ(field(r), "body");
  r = post("");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "body");
  struct bad_case {
    const char* body;
    const char* field;
  };
  for (auto c : std::vector<bad_case>{
         {R"({"content":"x"})", "id"},
         {R"({"id":5,"content":"x"})", "id"},
         {R"({"id":"has space","content":"x"})", "id"},
         {R"({"id":"","content":"x"})", "id"},
         {R"({"id":"bot-x","content":"x"})", "id"},
         {R"({"id":"a"})", "content"},
         {R"({"id":"a","content":""})", "content"},
         {R"({"id":"a","content":["x"]})", "content"},
         {R"({"id":"a","content":"x","type":"video"})", "type"},
         {R"({"id":"a","content":"x","type":1})", "type"},
         {R"({"id":"a","content":"x","metadata":"m"})", "metadata"},
         {R"({"id":"a","content":"x","conversation_id":"a/b"})",
          "conversation_id"},
         {R"({"id":"a","content":"x","conversation_id":7})",
          "conversation_id"}}) {
    r = post(c.body);
    EXPECT_EQ(r.status, 400) << c.body;
    EXPECT_EQ(code(r), "validation_error") << c.body;
    EXPECT_EQ(field(r), c.field) << c.body;
  }
  EXPECT_EQ(post(R"({"id":")" + std::string(129, 'x')
                 + R"(","content":"x"})")
              .status,
            400);
  // 4000 characters (multi-byte) are fine, 4001 are not; the body limit
  // is separate, so raise it for this part.
  cfg_.max_body_bytes = 64 * 1024;
  core_.reset();
  start();
  tok = token("alice", "alice-pw");
  std::string big;
  for (int i = 0; i < 4000; ++i)
    big += "\xc3\xa9"; // é
  EXPECT_EQ(post(R"({"id":"long-1","content":")" + big + R"("})").status,
            201);
  r = post(R"({"id":"long-2","content":")" + big + R"(e"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "content");
  // Oversized body.
  cfg_.max_body_bytes = 1024;
  core_.reset();
  start();
  tok = token("alice", "alice-pw");
  r = post(R"({"id":"big","content":")" + std::string(2000, 'x') + R"("})");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(code(r), "payload_too_large");
  // Unknown route, wrong method.
  r = call("GET", "/nope", {}, tok);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(code(r), "not_found");
  EXPECT_EQ(call("GET", "/api/v2/users/me", {}, tok).status, 404);
  r = call("GET", "/users/authenticate");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(code(r), "method_not_allowed");
  EXPECT_EQ(header(r, "Allow"), "POST");
  EXPECT_EQ(call("DELETE", "/conversations/messages", {}, tok).status, 405);
  // Invalid UTF-8 is not JSON.
  r = post("{\"id\":\"u\",\"content\":\"\xff\xfe\"}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(code(r), "bad_json");
  // Deeply nested JSON does not crash.
  r = post(std::string(500, '[') + std::string(500, ']'));
  EXPECT_EQ(r.status, 400);
}

TEST_F(core_test, preferences_merge_and_validate) {
  start();
  auto tok = token("alice", "alice-pw");
  auto r = call("PUT", "/users/me/preferences",
                R"({"theme":"dark","volume":3,"tts":true})", tok);
  ASSERT_EQ(r.status, 200) << r.body;
  auto prefs = data(r).at("preferences").as_object();
  EXPECT_EQ(str(prefs.at("theme")), "dark");
  EXPECT_EQ(prefs.at("volume").as_int64(), 3);
  r = call("PUT", "/users/me/preferences", R"({"theme":null,"lang":"de"})",
           tok);
  ASSERT_EQ(r.status, 200);
  prefs = data(r).at("preferences").as_object();
  EXPECT_FALSE(prefs.contains("theme"));
  EXPECT_EQ(str(prefs.at("lang")), "de");
  EXPECT_TRUE(prefs.contains("volume"));
  r = call("PUT", "/users/me/preferences", R"({"nested":{"a":1}})", tok);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "preferences.nested");
  json::object many;
  for (int i = 0; i < 70; ++i)
    many["k" + std::to_string(i)] = i;
  r = call("PUT", "/users/me/preferences", json::serialize(many), tok);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(field(r), "preferences");
  // Unchanged after the failures.
  r = call("GET", "/users/me", {}, tok);
  EXPECT_EQ(data(r).at("preferences").as_object().size(), 3u);
}

TEST_F(core_test, rate_limit_returns_429_with_retry_after) {
  cfg_.rate_limit_per_s = 1;
  cfg_.rate_limit_burst = 2;
  start();
  auto tok = token("alice", "alice-pw");
  EXPECT_EQ(call("GET", "/users/me", {}, tok).status, 200);
  EXPECT_EQ(call("GET", "/users/me", {}, tok).status, 200);
  auto r = call("GET", "/users/me", {}, tok);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(code(r), "rate_limited");
  EXPECT_GE(std::stoi(header(r, "Retry-After")), 1);
  // Per user: bob is not affected; health is never limited.
  EXPECT_EQ(call("GET", "/users/me", {}, token("bob", "bob-pw")).status, 200);
  EXPECT_EQ(call("GET", "/health").status, 200);
}

TEST_F(core_test, never_throws_on_garbage) {
  start();
  auto tok = token("alice", "alice-pw");
  std::vector<std::string> targets = {
    "",     "/",   "?",    "%",       "/api/v1", "/api/v1?x", "//users//me",
    "/users/me/", "/conversations/%ZZ/messages", "/conversations/a%2Fb/messages",
    "/conversations/current/messages?since=&limit=", std::string(5000, '/'),
    std::string("/users/\0me", 10)};
  std::vector<std::string> bodies = {"", "null", "0", "\"s\"", "{}", "{\"a\":",
                                     std::string(100, '{'), "\x00\x01"};
  for (auto& m : {"GET", "POST", "PUT", "DELETE", "", "get"})
    for (auto& t : targets)
      for (auto& b : bodies) {
        api_request req;
        req.method = m;
        req.target = t;
        req.body = b;
        req.token = tok;
        auto r = core_->handle(req);
        EXPECT_GE(r.status, 200);
        EXPECT_LT(r.status, 500) << m << " " << t << " " << b;
        EXPECT_TRUE(parse_json(r.body).has_value());
      }
}

// -- persistence -------------------------------------------------------------------

TEST_F(core_test, state_persists_across_restart) {
  cfg_.bot_enabled = false;
  start();
  auto s = login("alice", "alice-pw");
  auto tok = str(s.at("access_token"));
  auto rt = str(s.at("refresh_token"));
  ASSERT_EQ(send(tok, "keep-1", "remember me", "diary").status, 201);
  ASSERT_EQ(call("PUT", "/users/me/preferences", R"({"theme":"dark"})", tok)
              .status,
            200);
  auto revoked = token("alice", "alice-pw");
  ASSERT_EQ(call("POST", "/users/logout",
                 R"({"refresh_token":"unrelated"})", revoked)
              .status,
            200);
  auto id = user_id(tok);
  core_.reset();
  // Changed password and role on restart are applied.
  cfg_.users[0].password = "new-pw";
  start();
  EXPECT_EQ(call("GET", "/users/me", {}, tok).status, 200);
  EXPECT_EQ(user_id(tok), id);
  EXPECT_EQ(call("GET", "/users/me", {}, revoked).status, 401);
  auto h = call("GET", "/conversations/current/messages", {}, tok);
  ASSERT_EQ(h.status, 200);
  EXPECT_EQ(str(data(h).at("conversation_id")), "diary");
  ASSERT_EQ(data(h).at("messages").as_array().size(), 1u);
  EXPECT_EQ(str(data(h).at("messages").at(0).at("content")), "remember me");
  auto me = call("GET", "/users/me", {}, tok);
  EXPECT_EQ(str(data(me).at("preferences").at("theme")), "dark");
  auto r = call("POST", "/users/refresh",
                R"({"refresh_token":")" + rt + R"("})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(call("POST", "/users/authenticate",
                 R"({"username":"alice","password":"alice-pw"})")
              .status,
            401);
  login("alice", "new-pw");
  // Idempotency survives the restart too.
  EXPECT_EQ(send(tok, "keep-1", "remember me", "diary").status, 200);
}

TEST_F(core_test, reserved_bot_name_is_refused_at_startup) {
  cfg_.users.push_back({"companion", "x", "user"});
  EXPECT_THROW(start(), std::runtime_error);
}

// -- health and faults ------------------------------------------------------------

TEST_F(core_test, health_reports_doors_and_counts) {
  start();
  core_->set_door_status(front_door::http, true);
  core_->set_door_status(front_door::ws, true);
  core_->add_connection(front_door::ws, 2);
  auto r = call("GET", "/health");
  ASSERT_EQ(r.status, 200);
  auto d = data(r).as_object();
  EXPECT_TRUE(d.at("is_healthy").as_bool());
  EXPECT_EQ(str(d.at("services").at("database")), "up");
  EXPECT_EQ(str(d.at("services").at("http")), "up");
  EXPECT_EQ(str(d.at("services").at("websocket")), "up");
  // no IPC server was made for this core: the door is off, not down
  EXPECT_EQ(str(d.at("services").at("ipc")), "off");
  EXPECT_EQ(str(d.at("services").at("grpc")), "off");
  core_->set_door_configured(front_door::ipc);
  EXPECT_EQ(str(data(call("GET", "/health")).at("services").at("ipc")), "down");
  r = call("GET", "/health/detailed");
  ASSERT_EQ(r.status, 200);
  d = data(r).as_object();
  EXPECT_EQ(d.at("connections").at("ws").as_int64(), 2);
  EXPECT_EQ(d.at("counts").at("users").as_int64(), 3);
  EXPECT_TRUE(d.contains("uptime_s"));
  EXPECT_TRUE(d.at("faults").is_object());
}

TEST_F(core_test, faults_endpoint_is_404_without_enable_faults) {
  start();
  auto root = token("root", "root-pw");
  EXPECT_EQ(call("GET", "/admin/faults", {}, root).status, 404);
  auto r = call("POST", "/admin/faults", R"({"ipc":"down"})", root);
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(core_->faults().ipc_up);
}

TEST_F(core_test, faults_change_state_and_notify_listeners) {
  cfg_.enable_faults = true;
  start();
  core_->set_door_status(front_door::ipc, true);
  core_->set_door_status(front_door::ws, true);
  std::mutex mtx;
  std::vector<std::pair<fault_state, bool>> seen;
  core_->add_fault_listener([&](const fault_state& f, bool drop) {
    std::lock_guard<std::mutex> lock(mtx);
    seen.emplace_back(f, drop);
  });
  auto root = token("root", "root-pw");
  auto alice = token("alice", "alice-pw");
  EXPECT_EQ(call("POST", "/admin/faults", R"({"ipc":"down"})", alice).status,
            403);
  auto r = call("POST", "/admin/faults",
                R"({"ipc":"down","ws":"down","drop_ws":true,"latency_ms":1})",
                root);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(str(data(r).at("ipc")), "down");
  EXPECT_EQ(str(data(r).at("ws")), "down");
  EXPECT_EQ(data(r).at("latency_ms").as_int64(), 1);
  {
    std::lock_guard<std::mutex> lock(mtx);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_FALSE(seen[0].first.ipc_up);
    EXPECT_FALSE(seen[0].first.ws_up);
    EXPECT_TRUE(seen[0].second);
  }
  EXPECT_FALSE(core_->faults().ipc_up);
  core_->set_door_configured(front_door::ipc);
  auto h = data(call("GET", "/health"));
  EXPECT_EQ(str(h.at("services").at("ipc")), "down");
  EXPECT_EQ(str(h.at("services").at("websocket")), "down");
  // A request through a switched-off door is refused.
  api_request via_ws{"GET", "/users/me", alice, {}, front_door::ws};
  auto wr = core_->handle(via_ws);
  EXPECT_EQ(wr.status, 503);
  EXPECT_EQ(header(wr, "Retry-After"), "1");
  // fail_ratio 1: every API request fails, but health and faults do not.
  r = call("POST", "/admin/faults",
           R"({"ipc":"up","fail_ratio":1,"fail_status":502})", root);
  ASSERT_EQ(r.status, 200);
  {
    std::lock_guard<std::mutex> lock(mtx);
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_FALSE(seen[1].second); // drop_ws is one-shot
    EXPECT_TRUE(seen[1].first.ipc_up);
  }
  r = call("GET", "/users/me", {}, alice);
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(header(r, "Retry-After"), "1");
  EXPECT_EQ(call("GET", "/health").status, 200);
  EXPECT_EQ(call("GET", "/admin/faults", {}, root).status, 200);
  // fail_ratio 0.5 fails every second request.
  call("POST", "/admin/faults", R"({"fail_ratio":0.5,"fail_status":503})",
       root);
  int failed = 0;
  for (int i = 0; i < 10; ++i)
    if (call("GET", "/users/me", {}, alice).status == 503)
      ++failed;
  EXPECT_EQ(failed, 5);
  // Bad values are refused and change nothing.
  for (auto body : {R"({"fail_ratio":2})", R"({"fail_ratio":"x"})",
                    R"({"fail_status":404})", R"({"latency_ms":-1})",
                    R"({"latency_ms":60001})", R"({"ipc":"sideways"})",
                    R"({"drop_ws":"yes"})", R"({"reset":1})"}) {
    r = call("POST", "/admin/faults", body, root);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(code(r), "validation_error") << body;
  }
  EXPECT_DOUBLE_EQ(core_->faults().fail_ratio, 0.5);
  // Reset.
  r = call("POST", "/admin/faults", R"({"reset":true})", root);
  ASSERT_EQ(r.status, 200);
  auto f = core_->faults();
  EXPECT_TRUE(f.ipc_up && f.ws_up);
  EXPECT_EQ(f.latency_ms, 0);
  EXPECT_EQ(f.fail_ratio, 0);
  EXPECT_EQ(f.fail_status, 503);
  EXPECT_EQ(call("GET", "/users/me", {}, alice).status, 200);
}

TEST_F(core_test, latency_fault_delays_requests) {
  cfg_.enable_faults = true;
  start();
  auto root = token("root", "root-pw");
  ASSERT_EQ(call("POST", "/admin/faults", R"({"latency_ms":200})", root).status,
            200);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call("GET", "/users/me", {}, root).status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 190ms);
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call("GET", "/health").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 150ms);
}

// -- helpers ----------------------------------------------------------------------

TEST(core_helpers, crypto_and_encoding) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto enc = base64url_encode(s);
    EXPECT_EQ(enc.find('='), std::string::npos);
    EXPECT_EQ(base64url_decode(enc), s);
  }
  EXPECT_FALSE(base64url_decode("a"));
  EXPECT_FALSE(base64url_decode("ab=="));
  EXPECT_FALSE(base64url_decode("a+b/"));
  EXPECT_EQ(sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto h = hash_password("secret", 1000);
  EXPECT_TRUE(verify_password("secret", h));
  EXPECT_FALSE(verify_password("Secret", h));
  EXPECT_FALSE(verify_password("", ""));
  EXPECT_NE(hash_password("secret", 1000), h); // salted
  EXPECT_EQ(iso8601_ms(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(percent_decode("a%20b+c%zz", true), "a b c%zz");
  auto q = parse_query("since=5&limit=%31%30&flag");
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[1].second, "10");
}

} // namespace

// -- the replay buffer (docs/protocol.md "Events") ------------------------------------

TEST_F(core_test, subscribe_since_replays_the_buffered_events_first_and_once) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  auto bob = token("bob", "bob-pw");
  auto ref = std::make_shared<collector>();
  core_->subscribe(user_id(tok), ref->sink(ref));
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(send(tok, "rp-" + std::to_string(i), "x").status, 201);
  ASSERT_EQ(send(bob, "rp-bob", "x").status, 201); // not alice's
  ASSERT_TRUE(ref->wait_for([](auto& evs) { return evs.size() == 5; }));
  auto seen = ref->snapshot();
  // a client that saw the first two resumes from the second
  auto col = std::make_shared<collector>();
  replay_info info;
  core_->subscribe(user_id(tok), col->sink(col), seen[1].seq, &info);
  EXPECT_EQ(info.since, seen[1].seq);
  EXPECT_TRUE(info.complete);
  EXPECT_EQ(info.replayed, 3u);
  // the replay is delivered before subscribe returns, in order
  auto got = col->snapshot();
  ASSERT_EQ(got.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].seq, seen[i + 2].seq);
    EXPECT_EQ(got[i].data, seen[i + 2].data);
  }
  // live events follow, each once
  ASSERT_EQ(send(tok, "rp-live", "x").status, 201);
  ASSERT_TRUE(col->wait_for([](auto& evs) { return evs.size() == 4; }));
  std::this_thread::sleep_for(50ms);
  got = col->snapshot();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_GT(got[3].seq, got[2].seq);
  // without since: live events only (as before)
  auto live = std::make_shared<collector>();
  replay_info none;
  core_->subscribe(user_id(tok), live->sink(live), 0, &none);
  EXPECT_EQ(none.since, 0u);
  EXPECT_EQ(none.replayed, 0u);
  EXPECT_TRUE(live->snapshot().empty());
}

TEST_F(core_test, subscribe_since_says_when_the_buffer_no_longer_reaches_back) {
  cfg_.bot_enabled = false;
  cfg_.replay_events = 3;
  start();
  auto tok = token("alice", "alice-pw");
  auto ref = std::make_shared<collector>();
  core_->subscribe(user_id(tok), ref->sink(ref));
  for (int i = 0; i < 6; ++i)
    ASSERT_EQ(send(tok, "ov-" + std::to_string(i), "x").status, 201);
  ASSERT_TRUE(ref->wait_for([](auto& evs) { return evs.size() == 6; }));
  auto seen = ref->snapshot();
  // from the first: two were dropped from the buffer
  auto col = std::make_shared<collector>();
  replay_info info;
  core_->subscribe(user_id(tok), col->sink(col), seen[0].seq, &info);
  EXPECT_FALSE(info.complete);
  EXPECT_EQ(info.replayed, 3u);
  ASSERT_EQ(col->snapshot().size(), 3u);
  EXPECT_EQ(col->snapshot().front().seq, seen[3].seq);
  // from the last but three: exactly what the buffer holds
  replay_info edge;
  auto col2 = std::make_shared<collector>();
  core_->subscribe(user_id(tok), col2->sink(col2), seen[2].seq, &edge);
  EXPECT_TRUE(edge.complete);
  EXPECT_EQ(edge.replayed, 3u);
  // a seq from before this gateway started, or from the future
  replay_info old_seq, future;
  core_->subscribe(user_id(tok), [](const event&) {}, 1, &old_seq);
  EXPECT_FALSE(old_seq.complete);
  core_->subscribe(user_id(tok), [](const event&) {}, seen.back().seq + 1000,
                   &future);
  EXPECT_FALSE(future.complete);
  EXPECT_EQ(future.replayed, 0u);
}

TEST_F(core_test, resubscribing_while_events_flow_loses_and_repeats_nothing) {
  cfg_.bot_enabled = false;
  start();
  auto tok = token("alice", "alice-pw");
  auto ref = std::make_shared<collector>();
  core_->subscribe(user_id(tok), ref->sink(ref));
  constexpr int n = 400;
  std::thread writer([&] {
    for (int i = 0; i < n; ++i)
      send(tok, "fl-" + std::to_string(i), "x");
  });
  // a client that resubscribes from what it saw, again and again
  auto col = std::make_shared<collector>();
  uint64_t sub = core_->subscribe(user_id(tok), col->sink(col));
  for (int k = 0; k < 50; ++k) {
    std::this_thread::sleep_for(2ms);
    auto got = col->snapshot();
    uint64_t since = got.empty() ? ref->snapshot().empty()
                                     ? 0
                                     : ref->snapshot().front().seq - 1
                                 : got.back().seq;
    if (since == 0)
      continue;
    core_->unsubscribe(sub);
    sub = core_->subscribe(user_id(tok), col->sink(col), since);
  }
  writer.join();
  ASSERT_TRUE(ref->wait_for([](auto& evs) { return evs.size() == n; }));
  ASSERT_TRUE(col->wait_for([&](auto& evs) {
    return !evs.empty() && evs.back().seq == ref->snapshot().back().seq;
  }));
  // every event after the first one the client saw, once, in order
  auto got = col->snapshot();
  auto all = ref->snapshot();
  auto first = std::find_if(all.begin(), all.end(), [&](const event& e) {
    return e.seq == got.front().seq;
  });
  ASSERT_NE(first, all.end());
  std::vector<uint64_t> want, have;
  for (auto i = first; i != all.end(); ++i)
    want.push_back(i->seq);
  // a delivery of the old subscription may still be on its way when it is
  // replaced; the client drops such a repeat by seq, as the engine does
  for (auto& e : got)
    if (have.empty() || e.seq > have.back())
      have.push_back(e.seq);
  EXPECT_EQ(have, want);
}
