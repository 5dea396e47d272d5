// The token manager under CAF's deterministic test coordinator (virtual
// time, no threads, no sleeping) against a fake gateway that counts calls.
// The wall clock (cfg.now_s) is injected and advanced together with the
// virtual clock.
#include <limits>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include <boost/json.hpp>

#include "support/caf_fixture.hpp"
#include "messages/token_manager.hpp"
#include "src/core/jwt_claims.hpp"
#include "src/core/token_store.hpp"

using namespace aico;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// Answers the held calls normally.
using release_atom = caf::atom_constant<caf::atom("release")>;
/// Fails the held calls with a network error (a late failure).
using drop_atom = caf::atom_constant<caf::atom("drop")>;

std::string make_jwt(const boost::json::object& claims) {
  return base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "."
         + base64url_encode(boost::json::serialize(claims)) + ".fakesig";
}

/// The fake gateway's world; shared by the test and the fake actor.
struct fake_gateway_state {
  int64_t now = 1700000000; ///< wall clock (seconds), also the manager's
  int64_t access_ttl = 900;
  std::string password = "pw";
  std::set<std::string> valid_refresh; ///< refresh tokens it accepts
  int issued = 0;
  std::string last_access;
  std::string last_refresh;
  std::vector<api_call> calls; ///< every call, in arrival order
  std::vector<bool> auth_flags;
  /// Injected failure of /users/refresh (network, server error, ...).
  caf::error refresh_error;
  /// Injected failure of /users/logout (network, ...).
  caf::error logout_error;
  /// Logout rejects an expired access token (401 token_expired).
  bool logout_checks_expiry = false;
  /// What /users/logout revoked: its access token and refresh token.
  std::vector<std::pair<std::string, std::string>> logged_out;
  /// Calls to this path are kept unanswered until `release`.
  std::string hold_path;
  std::vector<std::pair<caf::response_promise, api_call>> held;

  int count(const std::string& path) const {
    int n = 0;
    for (auto& c : calls)
      if (c.path == path)
        ++n;
    return n;
  }

  api_reply issue(const std::string& id) {
    ++issued;
    boost::json::object claims{{"sub", "u-1"},
                               {"name", "alice"},
                               {"role", "user"},
                               {"iat", now},
                               {"exp", now + access_ttl},
                               {"jti", "j-" + std::to_string(issued)}};
    last_access = make_jwt(claims);
    last_refresh = "r-" + std::to_string(issued);
    valid_refresh.insert(last_refresh);
    boost::json::object data{
      {"access_token", last_access},
      {"refresh_token", last_refresh},
      {"token_type", "Bearer"},
      {"expires_in", access_ttl},
      {"refresh_expires_in", 2592000},
      {"user", {{"id", "u-1"}, {"username", "alice"}, {"role", "user"}}}};
    api_reply r;
    r.id = id;
    r.status = 200;
    r.body = boost::json::serialize(
      boost::json::object{{"success", true}, {"data", data}});
    return r;
  }

  static std::string field(const std::string& body, const char* key) {
    boost::system::error_code ec;
    auto jv = boost::json::parse(body, ec);
    if (ec || !jv.is_object())
      return {};
    auto v = jv.get_object().if_contains(key);
    if (!v || !v->is_string())
      return {};
    return std::string{v->get_string()};
  }

  /// The answer as the supervisor would deliver it (non-2xx = error).
  caf::expected<api_reply> answer(const api_call& c) {
    if (c.path == "/users/authenticate") {
      if (field(c.body, "username") == "alice"
          && field(c.body, "password") == password)
        return issue(c.id);
      return make_status_error(
        401, R"({"success":false,"code":"invalid_credentials",)"
             R"("message":"wrong username or password"})");
    }
    if (c.path == "/users/refresh") {
      if (refresh_error)
        return refresh_error;
      auto rt = field(c.body, "refresh_token");
      if (valid_refresh.erase(rt) == 0)
        return make_status_error(
          401, R"({"success":false,"code":"invalid_refresh_token",)"
               R"("message":"refresh token is invalid"})");
      return issue(c.id); // rotation: the old one is gone
    }
    if (c.path == "/users/logout") {
      if (logout_error)
        return logout_error;
      if (logout_checks_expiry) {
        auto claims = decode_jwt_claims(c.token);
        if (!claims || claims->exp <= now)
          return make_status_error(
            401, R"({"success":false,"code":"token_expired",)"
                 R"("message":"the access token has expired"})");
      }
      logged_out.emplace_back(c.token, field(c.body, "refresh_token"));
      valid_refresh.erase(field(c.body, "refresh_token"));
      api_reply r;
      r.id = c.id;
      r.status = 200;
      r.body = R"({"success":true,"data":{"logged_out":true}})";
      return r;
    }
    return make_status_error(404, R"({"success":false,"code":"not_found"})");
  }
};

using world_ptr = std::shared_ptr<fake_gateway_state>;

caf::behavior fake_gateway(caf::event_based_actor* self, world_ptr w) {
  return {
    [=](request_atom, const api_call& c, caf::timespan,
        bool auth) -> caf::response_promise {
      auto rp = self->make_response_promise();
      w->calls.push_back(c);
      w->auth_flags.push_back(auth);
      if (!w->hold_path.empty() && c.path == w->hold_path) {
        w->held.emplace_back(rp, c);
        return rp;
      }
      auto res = w->answer(c);
      if (res)
        rp.deliver(std::move(*res));
      else
        rp.deliver(std::move(res.error()));
      return rp;
    },
    [=](release_atom) {
      auto held = std::move(w->held);
      w->held.clear();
      w->hold_path.clear();
      for (auto& [rp, c] : held) {
        auto res = w->answer(c);
        if (res)
          rp.deliver(std::move(*res));
        else
          rp.deliver(std::move(res.error()));
      }
    },
    [=](drop_atom) {
      auto held = std::move(w->held);
      w->held.clear();
      w->hold_path.clear();
      for (auto& h : held)
        h.first.deliver(make_engine_error(error_class::network, "late"));
    },
  };
}

auth_listener_actor::behavior_type
auth_watcher(auth_listener_actor::pointer,
             std::shared_ptr<std::vector<auth_state>> out) {
  return {[=](auth_atom, auth_state s) { out->push_back(s); }};
}

/// The result of one request made by a helper actor.
template <class T>
struct outcome {
  bool done = false;
  T value{};
  caf::error err;

  bool ok() const { return done && !err; }
};

struct token_manager_test : aico::test::caf_fixture {
  world_ptr world = std::make_shared<fake_gateway_state>();
  caf::actor gw;
  std::vector<caf::actor> to_stop;
  std::string dir;

  token_manager_test() {
    gw = sys.spawn(fake_gateway, world);
    to_stop.push_back(gw);
    std::string tmpl = (fs::temp_directory_path() / "aico-tm-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr)
      dir = tmpl + "/state"; // does not exist yet: created 0700
    sched.run();
  }

  ~token_manager_test() override {
    for (auto& a : to_stop)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
    // lets helper actors whose requests were never answered time out
    sched.advance_time(std::chrono::hours(2));
    sched.run();
    if (!dir.empty()) {
      std::error_code ec;
      fs::remove_all(fs::path{dir}.parent_path(), ec);
    }
  }

  token_manager_config make_config() {
    token_manager_config tc;
    tc.state_dir = dir;
    tc.refresh_at_fraction = 0.2;
    tc.refresh_margin_min = 1s;
    tc.request_timeout = 10s;
    auto w = world;
    tc.now_s = [w] { return w->now; };
    return tc;
  }

  token_manager_actor spawn_manager(token_manager_config tc) {
    auto tm = spawn_token_manager(sys, std::move(tc),
                                  caf::actor_cast<api_gateway_actor>(gw));
    to_stop.push_back(caf::actor_cast<caf::actor>(tm));
    sched.run();
    return tm;
  }

  token_manager_actor spawn_manager() { return spawn_manager(make_config()); }

  std::shared_ptr<std::vector<auth_state>>
  watch(const token_manager_actor& tm) {
    auto states = std::make_shared<std::vector<auth_state>>();
    auto w = sys.spawn(auth_watcher, states);
    to_stop.push_back(caf::actor_cast<caf::actor>(w));
    caf::anon_send(tm, watch_atom::value, w);
    sched.run();
    return states;
  }

  void stop(const token_manager_actor& tm) {
    caf::anon_send_exit(tm, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Sends one request from a fresh helper actor (does not run anything).
  template <class T, class... Ts>
  std::shared_ptr<outcome<T>> ask(const token_manager_actor& tm, Ts... xs) {
    auto res = std::make_shared<outcome<T>>();
    sys.spawn([=](caf::event_based_actor* c) {
      c->request(tm, std::chrono::seconds(3600), xs...)
        .then(
          [=](T& v) {
            res->done = true;
            res->value = std::move(v);
          },
          [=](caf::error& e) {
            res->done = true;
            res->err = std::move(e);
          });
    });
    return res;
  }

  template <class T, class... Ts>
  std::shared_ptr<outcome<T>> call(const token_manager_actor& tm, Ts... xs) {
    auto res = ask<T>(tm, xs...);
    sched.run();
    return res;
  }

  std::shared_ptr<outcome<session_info>>
  login(const token_manager_actor& tm, std::string pw = "pw") {
    return call<session_info>(tm, login_atom::value, std::string{"alice"},
                              std::move(pw));
  }

  std::shared_ptr<outcome<std::string>> token(const token_manager_actor& tm) {
    return call<std::string>(tm, token_atom::value);
  }

  /// Moves the wall clock and the virtual clock forward together.
  void advance(std::chrono::seconds d) {
    world->now += d.count();
    sched.advance_time(d);
    sched.run();
  }

  /// Advances in steps so timers scheduled by timers fire too.
  void advance_by_steps(std::chrono::seconds total, std::chrono::seconds step) {
    for (auto t = 0s; t < total; t += step)
      advance(step);
  }

  std::string token_file() const { return dir + "/tokens.json"; }

  static unsigned mode_of(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return 0xFFFF;
    return st.st_mode & 07777;
  }

  static std::string read_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    return std::string{std::istreambuf_iterator<char>{in}, {}};
  }

  static error_class class_of(const caf::error& err) {
    return classify(err).cls;
  }

  static long count(const std::vector<auth_state>& xs, auth_state s) {
    return std::count(xs.begin(), xs.end(), s);
  }
};

} // namespace

// -- login ---------------------------------------------------------------------

TEST_F(token_manager_test, login_success) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_EQ(*states, std::vector<auth_state>{auth_state::logged_out});
  auto res = login(tm);
  ASSERT_TRUE(res->ok()) << describe(res->err);
  EXPECT_EQ(res->value.user_id, "u-1");
  EXPECT_EQ(res->value.username, "alice");
  EXPECT_EQ(res->value.role, "user");
  EXPECT_EQ(res->value.access_expires_at, world->now + 900);
  EXPECT_EQ(states->back(), auth_state::logged_in);
  // one unauthenticated POST /users/authenticate with a unique id
  ASSERT_EQ(world->calls.size(), 1u);
  auto& c = world->calls[0];
  EXPECT_EQ(c.method, "POST");
  EXPECT_EQ(c.path, "/users/authenticate");
  EXPECT_FALSE(c.id.empty());
  EXPECT_TRUE(c.token.empty());
  EXPECT_FALSE(world->auth_flags[0]);
  EXPECT_EQ(fake_gateway_state::field(c.body, "username"), "alice");
  // session
  auto s = call<session_info>(tm, session_atom::value);
  ASSERT_TRUE(s->ok());
  EXPECT_EQ(s->value.username, "alice");
  // ids are unique
  login(tm);
  ASSERT_EQ(world->calls.size(), 2u);
  EXPECT_NE(world->calls[0].id, world->calls[1].id);
}

TEST_F(token_manager_test, login_failure_passes_the_classified_error) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  auto res = login(tm, "wrong");
  ASSERT_TRUE(res->done);
  ASSERT_TRUE(res->err);
  auto c = classify(res->err);
  EXPECT_EQ(c.cls, error_class::authentication);
  EXPECT_EQ(c.status, 401);
  EXPECT_EQ(c.code, "invalid_credentials");
  EXPECT_EQ(*states, std::vector<auth_state>{auth_state::logged_out});
  auto s = call<session_info>(tm, session_atom::value);
  ASSERT_TRUE(s->done);
  EXPECT_EQ(class_of(s->err), error_class::authentication);
  EXPECT_FALSE(fs::exists(token_file()));
}

TEST_F(token_manager_test, login_with_malformed_reply_is_an_error) {
  // a 2xx reply that is not an authentication envelope
  auto bad = sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](request_atom, const api_call& c, caf::timespan, bool) {
      api_reply r;
      r.id = c.id;
      r.status = 200;
      r.body = R"({"success":true,"data":{"access_token":""}})";
      return r;
    }};
  });
  to_stop.push_back(bad);
  auto tm2 = spawn_token_manager(sys, make_config(),
                                 caf::actor_cast<api_gateway_actor>(bad));
  to_stop.push_back(caf::actor_cast<caf::actor>(tm2));
  sched.run();
  auto res = login(tm2);
  ASSERT_TRUE(res->done);
  EXPECT_EQ(class_of(res->err), error_class::unknown);
  auto t = token(tm2);
  EXPECT_EQ(class_of(t->err), error_class::authentication);
}

// -- token ---------------------------------------------------------------------

TEST_F(token_manager_test, token_when_logged_out_is_an_authentication_error) {
  auto tm = spawn_manager();
  auto t = token(tm);
  ASSERT_TRUE(t->done);
  EXPECT_EQ(class_of(t->err), error_class::authentication);
  EXPECT_EQ(classify(t->err).message, "not logged in");
  auto r = call<std::string>(tm, refresh_atom::value, std::string{"x"});
  EXPECT_EQ(class_of(r->err), error_class::authentication);
  EXPECT_TRUE(world->calls.empty());
}

TEST_F(token_manager_test, token_returns_current_token_without_gateway_call) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto calls = world->calls.size();
  for (int i = 0; i < 5; ++i) {
    auto t = token(tm);
    ASSERT_TRUE(t->ok());
    EXPECT_EQ(t->value, world->last_access);
  }
  EXPECT_EQ(world->calls.size(), calls);
}

TEST_F(token_manager_test, token_near_expiry_refreshes_first_single_flight) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto old = world->last_access;
  // only the wall clock moves: the proactive timer has not fired
  world->now += 900 - 1; // 1 s left = the margin
  std::vector<std::shared_ptr<outcome<std::string>>> rs;
  for (int i = 0; i < 10; ++i)
    rs.push_back(ask<std::string>(tm, token_atom::value));
  sched.run();
  EXPECT_EQ(world->count("/users/refresh"), 1);
  for (auto& r : rs) {
    ASSERT_TRUE(r->ok()) << describe(r->err);
    EXPECT_EQ(r->value, world->last_access);
    EXPECT_NE(r->value, old);
  }
}

// -- refresh (single-flight) ---------------------------------------------------

TEST_F(token_manager_test, hundred_concurrent_refreshes_make_one_call) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  auto old_refresh = world->last_refresh;
  world->hold_path = "/users/refresh";
  std::vector<std::shared_ptr<outcome<std::string>>> rs;
  for (int i = 0; i < 100; ++i)
    rs.push_back(ask<std::string>(tm, refresh_atom::value, stale));
  sched.run();
  // all 100 are waiting on the one refresh in flight
  EXPECT_EQ(world->count("/users/refresh"), 1);
  for (auto& r : rs)
    EXPECT_FALSE(r->done);
  // the call carries the refresh token in the body, without access token
  auto& c = world->calls.back();
  EXPECT_EQ(fake_gateway_state::field(c.body, "refresh_token"), old_refresh);
  EXPECT_FALSE(world->auth_flags.back());
  caf::anon_send(gw, release_atom::value);
  sched.run();
  EXPECT_EQ(world->count("/users/refresh"), 1);
  auto fresh = world->last_access;
  EXPECT_NE(fresh, stale);
  for (auto& r : rs) {
    ASSERT_TRUE(r->ok()) << describe(r->err);
    EXPECT_EQ(r->value, fresh);
  }
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, fresh);
  // rotation: the new refresh token is persisted, the old one is gone
  auto text = read_file(token_file());
  EXPECT_NE(text.find(world->last_refresh), std::string::npos);
  EXPECT_EQ(text.find("\"" + old_refresh + "\""), std::string::npos);
  // watchers learn about the new token
  EXPECT_EQ(states->back(), auth_state::logged_in);
  EXPECT_EQ(count(*states, auth_state::auth_expired), 0);
}

TEST_F(token_manager_test, refresh_with_old_token_after_refresh_makes_no_call) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  auto r1 = call<std::string>(tm, refresh_atom::value, stale);
  ASSERT_TRUE(r1->ok());
  EXPECT_EQ(world->count("/users/refresh"), 1);
  auto r2 = call<std::string>(tm, refresh_atom::value, stale);
  ASSERT_TRUE(r2->ok());
  EXPECT_EQ(r2->value, r1->value);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  // refreshing the current token again does call the gateway
  auto r3 = call<std::string>(tm, refresh_atom::value, r1->value);
  ASSERT_TRUE(r3->ok());
  EXPECT_NE(r3->value, r1->value);
  EXPECT_EQ(world->count("/users/refresh"), 2);
}

// -- proactive refresh ---------------------------------------------------------

TEST_F(token_manager_test, proactive_refresh_fires_before_expiry) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto first = world->last_access;
  // lifetime 900 s, refresh when 20 % (180 s) is left: at +720 s
  advance(719s);
  EXPECT_EQ(world->count("/users/refresh"), 0);
  advance(1s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_NE(t->value, first);
  EXPECT_EQ(t->value, world->last_access);
  auto s = call<session_info>(tm, session_atom::value);
  ASSERT_TRUE(s->ok());
  EXPECT_EQ(s->value.access_expires_at, world->now + 900);
  // and again 720 s after the new token was issued
  advance(719s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  advance(1s);
  EXPECT_EQ(world->count("/users/refresh"), 2);
  // a whole day: one refresh per 720 s, never a storm
  advance_by_steps(std::chrono::hours(24), 60s);
  EXPECT_EQ(world->count("/users/refresh"), 2 + 24 * 3600 / 720);
}

TEST_F(token_manager_test, proactive_refresh_respects_the_minimum_margin) {
  world->access_ttl = 100;
  auto tc = make_config();
  tc.refresh_margin_min = 60s; // 20 % of 100 s = 20 s < 60 s
  auto tm = spawn_manager(tc);
  ASSERT_TRUE(login(tm)->ok());
  advance(39s);
  EXPECT_EQ(world->count("/users/refresh"), 0);
  advance(1s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
}

TEST_F(token_manager_test, far_future_exp_neither_overflows_nor_storms) {
  // issue 12: an exp near INT64_MAX overflowed the timer arithmetic (UB,
  // then a refresh every second)
  world->access_ttl = std::numeric_limits<int64_t>::max() - world->now - 1000;
  auto tm = spawn_manager();
  auto s = login(tm);
  ASSERT_TRUE(s->ok()) << describe(s->err);
  EXPECT_GT(s->value.access_expires_at, world->now);
  // three days in one-minute steps: the (capped) timer fires once a day
  // and is set again; nothing is refreshed
  advance_by_steps(std::chrono::hours(72), 60s);
  EXPECT_EQ(world->count("/users/refresh"), 0);
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(world->count("/users/refresh"), 0);
}

TEST_F(token_manager_test, huge_expires_in_does_not_overflow) {
  // an opaque access token with expires_in = INT64_MAX
  auto opaque = sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](request_atom, const api_call& c, caf::timespan, bool) {
      api_reply r;
      r.id = c.id;
      r.status = 200;
      r.body = R"({"success":true,"data":{"access_token":"opaque",)"
               R"("refresh_token":"r","expires_in":9223372036854775807,)"
               R"("user":{"id":"u-9","username":"bob","role":"admin"}}})";
      return r;
    }};
  });
  to_stop.push_back(opaque);
  auto tm = spawn_token_manager(sys, make_config(),
                                caf::actor_cast<api_gateway_actor>(opaque));
  to_stop.push_back(caf::actor_cast<caf::actor>(tm));
  sched.run();
  auto res = login(tm);
  ASSERT_TRUE(res->ok()) << describe(res->err);
  // capped (2^40 s, some 35000 years), not wrapped around to the past
  EXPECT_GT(res->value.access_expires_at, world->now);
  EXPECT_EQ(res->value.access_expires_at, world->now + (int64_t{1} << 40));
}

TEST_F(token_manager_test, expiry_falls_back_to_expires_in) {
  // an access token that is not a JWT: exp comes from expires_in
  auto opaque = sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](request_atom, const api_call& c, caf::timespan, bool) {
      api_reply r;
      r.id = c.id;
      r.status = 200;
      r.body = R"({"success":true,"data":{"access_token":"opaque",)"
               R"("refresh_token":"r","expires_in":100,)"
               R"("user":{"id":"u-9","username":"bob","role":"admin"}}})";
      return r;
    }};
  });
  to_stop.push_back(opaque);
  auto tm = spawn_token_manager(sys, make_config(),
                                caf::actor_cast<api_gateway_actor>(opaque));
  to_stop.push_back(caf::actor_cast<caf::actor>(tm));
  sched.run();
  auto res = login(tm);
  ASSERT_TRUE(res->ok()) << describe(res->err);
  EXPECT_EQ(res->value.access_expires_at, world->now + 100);
  EXPECT_EQ(res->value.user_id, "u-9");
  EXPECT_EQ(res->value.role, "admin");
}

// -- refresh failures ------------------------------------------------------------

TEST_F(token_manager_test, rejected_refresh_expires_the_session_once) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  world->valid_refresh.clear(); // e.g. revoked by a logout elsewhere
  std::vector<std::shared_ptr<outcome<std::string>>> rs;
  for (int i = 0; i < 3; ++i)
    rs.push_back(ask<std::string>(tm, refresh_atom::value, stale));
  sched.run();
  EXPECT_EQ(world->count("/users/refresh"), 1);
  for (auto& r : rs) {
    ASSERT_TRUE(r->done);
    auto c = classify(r->err);
    EXPECT_EQ(c.cls, error_class::authentication);
    EXPECT_EQ(c.code, "invalid_refresh_token");
    EXPECT_EQ(c.message, "session expired, log in again");
    EXPECT_EQ(to_string(r->err).find(stale), std::string::npos);
  }
  EXPECT_EQ(count(*states, auth_state::auth_expired), 1);
  EXPECT_EQ(states->back(), auth_state::auth_expired);
  EXPECT_FALSE(fs::exists(token_file()));
  // no retry storm: nothing more happens however long we wait
  advance_by_steps(std::chrono::hours(48), 60s);
  for (int i = 0; i < 5; ++i) {
    auto t = token(tm);
    EXPECT_EQ(classify(t->err).message, "session expired, log in again");
    auto r = call<std::string>(tm, refresh_atom::value, stale);
    EXPECT_EQ(class_of(r->err), error_class::authentication);
  }
  EXPECT_EQ(world->count("/users/refresh"), 1);
  EXPECT_EQ(count(*states, auth_state::auth_expired), 1);
  auto s = call<session_info>(tm, session_atom::value);
  EXPECT_EQ(class_of(s->err), error_class::authentication);
  // a new login recovers
  ASSERT_TRUE(login(tm)->ok());
  EXPECT_EQ(states->back(), auth_state::logged_in);
  ASSERT_TRUE(token(tm)->ok());
}

TEST_F(token_manager_test, rejected_proactive_refresh_expires_the_session) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  world->valid_refresh.clear();
  advance(720s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  EXPECT_EQ(states->back(), auth_state::auth_expired);
  advance_by_steps(std::chrono::hours(24), 60s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  EXPECT_EQ(count(*states, auth_state::auth_expired), 1);
}

TEST_F(token_manager_test, network_error_on_refresh_retries_later) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  auto current = world->last_access;
  world->refresh_error = make_engine_error(error_class::network,
                                           "connection refused");
  auto r = call<std::string>(tm, refresh_atom::value, current);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(class_of(r->err), error_class::network);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  // the tokens are kept, the state stays logged_in
  EXPECT_EQ(states->back(), auth_state::logged_in);
  EXPECT_EQ(count(*states, auth_state::auth_expired), 0);
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, current);
  EXPECT_TRUE(fs::exists(token_file()));
  // while the gateway keeps failing: retries with a growing backoff
  // (1 s, 2 s, 4 s, ... capped at 60 s), not a storm
  advance_by_steps(600s, 1s);
  auto n = world->count("/users/refresh");
  EXPECT_GE(n, 5);
  EXPECT_LE(n, 20);
  EXPECT_EQ(states->back(), auth_state::logged_in);
  // the gateway recovers: the next retry succeeds
  world->refresh_error = caf::error{};
  advance_by_steps(75s, 1s);
  EXPECT_EQ(world->count("/users/refresh"), n + 1);
  t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, world->last_access);
  EXPECT_NE(t->value, current);
}

TEST_F(token_manager_test, server_error_on_proactive_refresh_retries_later) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto first = world->last_access;
  world->refresh_error = make_status_error(
    503, R"({"success":false,"code":"unavailable"})", "1");
  advance(720s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  // still valid for 180 s: handed out as is
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, first);
  world->refresh_error = caf::error{};
  advance_by_steps(2s, 1s); // first retry after 1 s +- 20 %
  EXPECT_EQ(world->count("/users/refresh"), 2);
  t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_NE(t->value, first);
}

TEST_F(token_manager_test, refresh_timeout_is_reported_and_retried) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  world->hold_path = "/users/refresh"; // never answers in time
  auto r = ask<std::string>(tm, refresh_atom::value, stale);
  sched.run();
  EXPECT_FALSE(r->done);
  advance(10s); // cfg.request_timeout: the gateway's deadline ...
  EXPECT_FALSE(r->done); // ... which a real supervisor answers by then
  advance(1s); // the manager's own timeout is 1 s later
  ASSERT_TRUE(r->done);
  EXPECT_EQ(class_of(r->err), error_class::timeout);
  // the late answer is ignored; the retry works
  caf::anon_send(gw, drop_atom::value);
  sched.run();
  advance_by_steps(2s, 1s);
  EXPECT_EQ(world->count("/users/refresh"), 2);
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, world->last_access);
}

TEST_F(token_manager_test, login_during_refresh_answers_its_waiters) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  world->hold_path = "/users/refresh";
  auto r = ask<std::string>(tm, refresh_atom::value, stale);
  sched.run();
  EXPECT_FALSE(r->done);
  ASSERT_TRUE(login(tm)->ok());
  auto login_token = world->last_access;
  ASSERT_TRUE(r->ok());
  EXPECT_EQ(r->value, login_token);
  // the overtaken refresh's reply is ignored
  caf::anon_send(gw, release_atom::value);
  sched.run();
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, login_token);
}

// -- logout --------------------------------------------------------------------

TEST_F(token_manager_test, logout_clears_tokens_and_file) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  ASSERT_TRUE(fs::exists(token_file()));
  auto access = world->last_access;
  auto refresh = world->last_refresh;
  auto res = call<bool>(tm, logout_atom::value);
  ASSERT_TRUE(res->ok());
  EXPECT_TRUE(res->value);
  EXPECT_FALSE(fs::exists(token_file()));
  EXPECT_EQ(states->back(), auth_state::logged_out);
  ASSERT_EQ(world->count("/users/logout"), 1);
  auto& c = world->calls.back();
  EXPECT_EQ(c.method, "POST");
  EXPECT_EQ(c.token, access);
  EXPECT_FALSE(world->auth_flags.back());
  EXPECT_EQ(fake_gateway_state::field(c.body, "refresh_token"), refresh);
  auto t = token(tm);
  EXPECT_EQ(classify(t->err).message, "not logged in");
  auto s = call<session_info>(tm, session_atom::value);
  EXPECT_EQ(class_of(s->err), error_class::authentication);
  // no proactive refresh for the forgotten tokens
  advance_by_steps(std::chrono::hours(1), 60s);
  EXPECT_EQ(world->count("/users/refresh"), 0);
  // logging out twice is fine and makes no call
  auto again = call<bool>(tm, logout_atom::value);
  ASSERT_TRUE(again->ok());
  EXPECT_EQ(world->count("/users/logout"), 1);
}

TEST_F(token_manager_test, logout_forgets_at_once_and_waits_for_the_gateway) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  world->hold_path = "/users/refresh";
  auto waiting = ask<std::string>(tm, refresh_atom::value, stale);
  sched.run();
  world->hold_path = "/users/logout";
  auto res = call<bool>(tm, logout_atom::value);
  // the tokens are gone at once, locally ...
  EXPECT_EQ(states->back(), auth_state::logged_out);
  EXPECT_FALSE(fs::exists(token_file()));
  EXPECT_FALSE(token(tm)->ok());
  ASSERT_TRUE(waiting->done); // a refresh waiter of the old session
  EXPECT_EQ(class_of(waiting->err), error_class::authentication);
  // ... but the logout is answered only once the gateway answered
  EXPECT_EQ(world->held.size(), 2u);
  EXPECT_FALSE(res->done);
  caf::anon_send(gw, release_atom::value);
  sched.run();
  ASSERT_TRUE(res->ok()) << describe(res->err);
  EXPECT_TRUE(res->value);
  ASSERT_EQ(world->logged_out.size(), 1u);
  EXPECT_EQ(world->logged_out[0].first, stale);
  EXPECT_EQ(states->back(), auth_state::logged_out);
  EXPECT_FALSE(token(tm)->ok());
}

TEST_F(token_manager_test, logout_says_when_the_gateway_could_not_be_told) {
  auto tm = spawn_manager();
  auto states = watch(tm);
  ASSERT_TRUE(login(tm)->ok());
  world->logout_error = make_engine_error(error_class::network,
                                          "no transport available");
  auto res = call<bool>(tm, logout_atom::value);
  ASSERT_TRUE(res->done);
  EXPECT_EQ(class_of(res->err), error_class::network);
  EXPECT_EQ(describe(res->err), "gateway unreachable (no transport available)");
  // forgotten locally all the same
  EXPECT_EQ(states->back(), auth_state::logged_out);
  EXPECT_FALSE(fs::exists(token_file()));
  EXPECT_FALSE(token(tm)->ok());
  // a deadline of 0 does not even try
  ASSERT_TRUE(login(tm)->ok());
  world->logout_error = caf::error{};
  auto calls = world->count("/users/logout");
  auto quick = call<bool>(tm, logout_atom::value, caf::timespan{0});
  ASSERT_TRUE(quick->done);
  EXPECT_EQ(class_of(quick->err), error_class::network);
  EXPECT_EQ(world->count("/users/logout"), calls);
  EXPECT_FALSE(fs::exists(token_file()));
}

TEST_F(token_manager_test, logout_gets_a_fresh_access_token_when_it_expired) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto first_refresh = world->last_refresh;
  world->logout_checks_expiry = true;
  world->now += 3600; // the access token expired; the refresh token is fine
  auto res = call<bool>(tm, logout_atom::value);
  ASSERT_TRUE(res->ok()) << describe(res->err);
  EXPECT_EQ(world->count("/users/logout"), 2);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  ASSERT_EQ(world->logged_out.size(), 1u);
  EXPECT_EQ(world->logged_out[0].first, world->last_access);
  // the refresh token family is revoked: neither the first nor the rotated
  // refresh token refreshes any more
  EXPECT_EQ(world->valid_refresh.count(first_refresh), 0u);
  EXPECT_EQ(world->valid_refresh.count(world->last_refresh), 0u);
}

// -- processes sharing a state directory ----------------------------------------

TEST_F(token_manager_test, two_processes_share_one_session_without_revoking_it) {
  // two managers on one state directory stand for `aico watch` and
  // `aico send` in two terminals
  auto tm1 = spawn_manager();
  ASSERT_TRUE(login(tm1)->ok());
  auto tm2 = spawn_manager(); // loads the same pair from tokens.json
  auto states2 = watch(tm2);
  ASSERT_EQ(states2->back(), auth_state::logged_in);
  // the first one refreshes (proactively, at 80 % of the lifetime)
  advance(720s);
  ASSERT_EQ(world->count("/users/refresh"), 1);
  auto newest = world->last_access;
  // the second needs a token after its own access token ran out: it must
  // take the pair the first stored, not present the used refresh token
  advance(200s);
  auto t = token(tm2);
  ASSERT_TRUE(t->ok()) << describe(t->err);
  EXPECT_EQ(world->count("/users/refresh"), 1) << "refreshed twice";
  EXPECT_EQ(t->value, newest);
  EXPECT_EQ(count(*states2, auth_state::auth_expired), 0);
  // and the first's proactive refresh goes on with the shared pair
  auto t1 = token(tm1);
  ASSERT_TRUE(t1->ok());
  EXPECT_EQ(t1->value, newest);
}

TEST_F(token_manager_test, a_refresh_waits_for_the_process_holding_the_lock) {
  auto tm1 = spawn_manager();
  ASSERT_TRUE(login(tm1)->ok());
  auto tm2 = spawn_manager();
  auto stale = world->last_access;
  // the first one's refresh is on its way to the gateway (lock held) ...
  world->hold_path = "/users/refresh";
  auto r1 = ask<std::string>(tm1, refresh_atom::value, stale);
  sched.run();
  ASSERT_EQ(world->held.size(), 1u);
  // ... when the second gets a 401 too: it waits for the lock
  auto r2 = ask<std::string>(tm2, refresh_atom::value, stale);
  sched.run();
  sched.advance_time(50ms);
  sched.run();
  EXPECT_FALSE(r2->done);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  caf::anon_send(gw, release_atom::value);
  sched.run();
  ASSERT_TRUE(r1->ok());
  // the lock is free: the second reads the new pair and uses it
  sched.advance_time(20ms);
  sched.run();
  ASSERT_TRUE(r2->ok()) << describe(r2->err);
  EXPECT_EQ(r2->value, r1->value);
  EXPECT_EQ(world->count("/users/refresh"), 1);
}

TEST_F(token_manager_test, a_lock_never_released_makes_the_refresh_fail_retryably) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto stale = world->last_access;
  token_store other{dir};
  token_lock held;
  ASSERT_FALSE(other.try_lock(held)); // a stuck process holds it
  ASSERT_TRUE(held.held());
  auto r = ask<std::string>(tm, refresh_atom::value, stale);
  sched.run();
  for (int i = 0; i < 130 && !r->done; ++i) {
    sched.advance_time(100ms);
    sched.run();
  }
  ASSERT_TRUE(r->done);
  EXPECT_EQ(class_of(r->err), error_class::timeout);
  EXPECT_TRUE(is_retryable(r->err));
  EXPECT_EQ(world->count("/users/refresh"), 0);
  held.release();
  // the retry (backoff) goes through once the lock is free
  advance_by_steps(3s, 1s);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  auto t = token(tm);
  ASSERT_TRUE(t->ok());
}

TEST_F(token_manager_test, logout_in_another_process_ends_the_session_here) {
  auto tm1 = spawn_manager();
  ASSERT_TRUE(login(tm1)->ok());
  auto tm2 = spawn_manager();
  auto states2 = watch(tm2);
  ASSERT_TRUE(call<bool>(tm1, logout_atom::value)->ok());
  // the second finds the file gone when it needs to refresh: over, and
  // it never presents the revoked refresh token
  advance(1000s);
  auto t = token(tm2);
  ASSERT_TRUE(t->done);
  EXPECT_EQ(class_of(t->err), error_class::authentication);
  EXPECT_EQ(world->count("/users/refresh"), 0);
  EXPECT_EQ(states2->back(), auth_state::auth_expired);
}

// -- watchers ------------------------------------------------------------------

TEST_F(token_manager_test, watchers_get_current_state_and_are_pruned) {
  auto tm = spawn_manager();
  ASSERT_TRUE(login(tm)->ok());
  auto states = watch(tm);
  EXPECT_EQ(*states, std::vector<auth_state>{auth_state::logged_in});
  // a dead watcher is pruned (no crash, nothing sent to it)
  auto gone = std::make_shared<std::vector<auth_state>>();
  auto w = sys.spawn(auth_watcher, gone);
  caf::anon_send(tm, watch_atom::value, w);
  sched.run();
  EXPECT_EQ(gone->size(), 1u);
  caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  sched.run();
  call<bool>(tm, logout_atom::value);
  EXPECT_EQ(gone->size(), 1u);
  EXPECT_EQ(states->back(), auth_state::logged_out);
}

// -- persistence ---------------------------------------------------------------

TEST_F(token_manager_test, tokens_are_persisted_0600_and_reloaded) {
  {
    auto tm = spawn_manager();
    ASSERT_TRUE(login(tm)->ok());
    stop(tm);
  }
  ASSERT_TRUE(fs::exists(token_file()));
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(token_file()), 0600u);
  auto text = read_file(token_file());
  EXPECT_NE(text.find(world->last_refresh), std::string::npos);
  // a new manager (e.g. the next CLI run) starts logged in from the file
  auto calls = world->calls.size();
  auto tm2 = spawn_manager();
  auto states = watch(tm2);
  EXPECT_EQ(*states, std::vector<auth_state>{auth_state::logged_in});
  auto s = call<session_info>(tm2, session_atom::value);
  ASSERT_TRUE(s->ok());
  EXPECT_EQ(s->value.user_id, "u-1");
  EXPECT_EQ(s->value.username, "alice");
  EXPECT_EQ(s->value.role, "user");
  EXPECT_EQ(s->value.access_expires_at, world->now + 900);
  auto t = token(tm2);
  ASSERT_TRUE(t->ok());
  EXPECT_EQ(t->value, world->last_access);
  EXPECT_EQ(world->calls.size(), calls);
  // and it refreshes proactively as well
  advance(720s);
  EXPECT_GE(world->count("/users/refresh"), 1);
}

TEST_F(token_manager_test, expired_access_token_on_start_refreshes_on_demand) {
  {
    auto tm = spawn_manager();
    ASSERT_TRUE(login(tm)->ok());
    stop(tm);
  }
  auto old = world->last_access;
  world->now += 3600; // the access token expired while we were away
  auto tm2 = spawn_manager();
  auto states = watch(tm2);
  EXPECT_EQ(states->back(), auth_state::logged_in);
  EXPECT_EQ(world->count("/users/refresh"), 0);
  auto t = token(tm2);
  ASSERT_TRUE(t->ok()) << describe(t->err);
  EXPECT_NE(t->value, old);
  EXPECT_EQ(world->count("/users/refresh"), 1);
  // the rotated refresh token is on disk
  EXPECT_NE(read_file(token_file()).find(world->last_refresh),
            std::string::npos);
}

TEST_F(token_manager_test, corrupt_tokens_file_starts_logged_out) {
  fs::create_directories(dir);
  {
    std::ofstream out{token_file()};
    out << "{\"access_token\": tru";
  }
  auto tm = spawn_manager();
  auto states = watch(tm);
  EXPECT_EQ(*states, std::vector<auth_state>{auth_state::logged_out});
  auto s = call<session_info>(tm, session_atom::value);
  EXPECT_EQ(class_of(s->err), error_class::authentication);
  auto t = token(tm);
  EXPECT_EQ(classify(t->err).message, "not logged in");
  // logging in replaces the corrupt file
  ASSERT_TRUE(login(tm)->ok());
  EXPECT_NE(read_file(token_file()).find(world->last_refresh),
            std::string::npos);
  EXPECT_EQ(mode_of(token_file()), 0600u);
}

TEST_F(token_manager_test, memory_only_manager_keeps_no_file) {
  auto tc = make_config();
  tc.state_dir.clear();
  auto tm = spawn_manager(tc);
  ASSERT_TRUE(login(tm)->ok());
  EXPECT_FALSE(fs::exists(dir));
  ASSERT_TRUE(token(tm)->ok());
  ASSERT_TRUE(call<bool>(tm, logout_atom::value)->ok());
}
