// The response cache actor with a fake downstream under CAF's deterministic
// test coordinator (virtual time, manual wall clock, temporary state dir).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixture.hpp"
#include "messages/cache.hpp"

using namespace aico;
using namespace aico::test;
using namespace std::chrono_literals;

namespace {

const std::string history_v1 = R"({"success":true,"data":{"messages":[1]}})";
const std::string history_v2
  = R"({"success":true,"data":{"messages":[1,2]}})";

struct cache_test : actor_fixture {
  response_cache_actor c;

  response_cache_config make_config() {
    response_cache_config rc;
    rc.state_dir = dir;
    rc.max_entries = 100;
    rc.request_timeout = 1h;
    rc.clock = clock();
    return rc;
  }

  void start(response_cache_config rc) {
    c = spawn_response_cache(sys, std::move(rc), downstream());
    sched.run();
  }

  void start() { start(make_config()); }

  void stop() {
    if (c)
      self->send_exit(c, caf::exit_reason::user_shutdown);
    sched.run();
    c = nullptr;
  }

  ~cache_test() override { stop(); }

  static cache_read history(const std::string& user, caf::timespan max_age,
                            bool force = false) {
    cache_read r;
    r.user = user;
    r.call = api_call{"h-" + user, "GET", "/conversations/c1/messages", "",
                      ""};
    r.max_age = max_age;
    r.force_refresh = force;
    return r;
  }

  /// A read whose fetch the fake answers at once with `status`/`body`.
  caf::expected<cached_reply> read(const cache_read& r, int32_t status = 200,
                                   const std::string& body = history_v1) {
    net->hold = false;
    net->auto_status = status;
    net->auto_body = body;
    return ask<cached_reply>(c, read_atom::value, r);
  }

  /// A read whose fetch fails with `err`.
  caf::expected<cached_reply> read_failing(const cache_read& r,
                                           caf::error err) {
    net->hold = true;
    auto before = net->calls.size();
    auto rh = self->request(c, caf::infinite, read_atom::value, r);
    sched.run();
    if (net->calls.size() > before)
      fail(net->calls.back().id, std::move(err));
    caf::expected<cached_reply> res{caf::error{}};
    rh.receive([&](cached_reply& x) { res = std::move(x); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }
};

} // namespace

TEST_F(cache_test, fresh_entries_are_served_without_a_request) {
  start();
  auto r1 = read(history("alice", 60s));
  ASSERT_TRUE(r1) << describe(r1.error());
  EXPECT_FALSE(r1->from_cache);
  EXPECT_FALSE(r1->stale);
  EXPECT_EQ(r1->reply.body, history_v1);
  EXPECT_EQ(net->calls.size(), 1u);
  EXPECT_EQ(net->calls[0].path, "/conversations/c1/messages");
  EXPECT_TRUE(net->auth[0]);
  advance(30s);
  auto r2 = read(history("alice", 60s), 200, history_v2);
  ASSERT_TRUE(r2);
  EXPECT_TRUE(r2->from_cache);
  EXPECT_FALSE(r2->stale);
  EXPECT_EQ(r2->reply.status, 200);
  EXPECT_EQ(r2->reply.body, history_v1);
  EXPECT_EQ(r2->age, caf::timespan{30s});
  EXPECT_EQ(net->calls.size(), 1u);
  // older than this call's max age: fetched again
  auto r3 = read(history("alice", 10s), 200, history_v2);
  ASSERT_TRUE(r3);
  EXPECT_FALSE(r3->from_cache);
  EXPECT_EQ(r3->reply.body, history_v2);
  EXPECT_EQ(net->calls.size(), 2u);
}

TEST_F(cache_test, force_refresh_always_fetches) {
  start();
  ASSERT_TRUE(read(history("alice", 60s)));
  auto r = read(history("alice", 60s, true), 200, history_v2);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->from_cache);
  EXPECT_EQ(r->reply.body, history_v2);
  EXPECT_EQ(net->calls.size(), 2u);
  // and the refreshed value is what the cache holds now
  auto again = read(history("alice", 60s));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->from_cache);
  EXPECT_EQ(again->reply.body, history_v2);
}

TEST_F(cache_test, stale_if_error_serves_the_cached_value_flagged_stale) {
  start();
  ASSERT_TRUE(read(history("alice", 60s)));
  advance(2h);
  for (auto err : {make_engine_error(error_class::network, "offline"),
                   make_engine_error(error_class::timeout, "no answer"),
                   make_status_error(503, "{}", "1")}) {
    auto r = read_failing(history("alice", 60s), err);
    ASSERT_TRUE(r) << describe(r.error());
    EXPECT_TRUE(r->from_cache);
    EXPECT_TRUE(r->stale);
    EXPECT_EQ(r->reply.body, history_v1);
    EXPECT_EQ(r->age, caf::timespan{2h});
  }
  // force_refresh too falls back when offline
  auto f = read_failing(history("alice", 60s, true),
                        make_engine_error(error_class::network, "offline"));
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->stale);
  // non-retryable errors are never masked
  auto denied = read_failing(history("alice", 60s),
                             make_status_error(403, "{}"));
  ASSERT_FALSE(denied);
  EXPECT_EQ(classify(denied.error()).cls, error_class::authorization);
  auto expired = read_failing(
    history("alice", 60s),
    make_engine_error(error_class::authentication, "not logged in"));
  ASSERT_FALSE(expired);
}

TEST_F(cache_test, an_error_without_a_cached_value_is_the_error) {
  start();
  auto r = read_failing(history("alice", 60s),
                        make_engine_error(error_class::network, "offline"));
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::network);
}

TEST_F(cache_test, identical_concurrent_reads_share_one_request) {
  start();
  net->hold = true;
  constexpr int n = 5;
  std::vector<caf::expected<cached_reply>> results;
  auto rd = history("alice", 60s);
  std::vector<std::function<void()>> receivers;
  for (int i = 0; i < n; ++i) {
    auto rh = self->request(c, caf::infinite, read_atom::value, rd);
    receivers.emplace_back([rh, &results]() mutable {
      caf::expected<cached_reply> res{caf::error{}};
      rh.receive([&](cached_reply& x) { res = std::move(x); },
                 [&](caf::error& e) { res = std::move(e); });
      results.push_back(std::move(res));
    });
  }
  // another user's identical read is not shared
  auto other = self->request(c, caf::infinite, read_atom::value,
                             history("bob", 60s));
  sched.run();
  ASSERT_EQ(net->calls.size(), 2u);
  answer("h-alice", 200, history_v1);
  answer("h-bob", 200, history_v2);
  for (auto& f : receivers)
    f();
  ASSERT_EQ(results.size(), static_cast<size_t>(n));
  for (auto& r : results) {
    ASSERT_TRUE(r) << describe(r.error());
    EXPECT_FALSE(r->from_cache);
    EXPECT_EQ(r->reply.body, history_v1);
  }
  other.receive(
    [&](cached_reply& x) { EXPECT_EQ(x.reply.body, history_v2); },
    [&](caf::error& e) { ADD_FAILURE() << describe(e); });
  // a failure is shared the same way
  results.clear();
  receivers.clear();
  net->calls.clear();
  auto cold = history("carol", 60s);
  for (int i = 0; i < 3; ++i) {
    auto rh = self->request(c, caf::infinite, read_atom::value, cold);
    receivers.emplace_back([rh, &results]() mutable {
      caf::expected<cached_reply> res{caf::error{}};
      rh.receive([&](cached_reply& x) { res = std::move(x); },
                 [&](caf::error& e) { res = std::move(e); });
      results.push_back(std::move(res));
    });
  }
  sched.run();
  ASSERT_EQ(net->calls.size(), 1u);
  fail("h-carol", make_status_error(404, "{}"));
  for (auto& f : receivers)
    f();
  ASSERT_EQ(results.size(), 3u);
  for (auto& r : results)
    EXPECT_FALSE(r);
}

TEST_F(cache_test, entries_are_scoped_per_user_and_key) {
  start();
  ASSERT_TRUE(read(history("alice", 60s)));
  auto bob = read(history("bob", 60s), 200, history_v2);
  ASSERT_TRUE(bob);
  EXPECT_FALSE(bob->from_cache);
  auto explicit_key = history("alice", 60s);
  explicit_key.key = "history:c1";
  auto k = read(explicit_key, 200, history_v2);
  ASSERT_TRUE(k);
  EXPECT_FALSE(k->from_cache);
  EXPECT_EQ(net->calls.size(), 3u);
}

TEST_F(cache_test, invalidate_removes_by_prefix) {
  start();
  ASSERT_TRUE(read(history("alice", 60s)));
  auto me = history("alice", 60s);
  me.call.path = "/users/me";
  ASSERT_TRUE(read(me));
  auto n = ask<size_t>(c, invalidate_atom::value, std::string{"alice"},
                       std::string{"GET /conversations/"});
  ASSERT_TRUE(n) << describe(n.error());
  EXPECT_EQ(*n, 1u);
  auto r = read(history("alice", 60s), 200, history_v2);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->from_cache);
  auto m = read(me);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->from_cache);
  auto all = ask<size_t>(c, invalidate_atom::value, std::string{"alice"},
                         std::string{});
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, 2u);
}

TEST_F(cache_test, a_fetch_overtaken_by_an_invalidate_is_not_stored) {
  start();
  net->hold = true;
  auto rh = self->request(c, caf::infinite, read_atom::value,
                          history("alice", 60s));
  sched.run();
  auto n = ask<size_t>(c, invalidate_atom::value, std::string{"alice"},
                       std::string{});
  ASSERT_TRUE(n);
  answer("h-alice", 200, history_v1);
  rh.receive([&](cached_reply& x) { EXPECT_EQ(x.reply.body, history_v1); },
             [&](caf::error& e) { ADD_FAILURE() << describe(e); });
  auto r = read(history("alice", 60s), 200, history_v2);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->from_cache);
  EXPECT_EQ(r->reply.body, history_v2);
}

TEST_F(cache_test, history_survives_a_restart_for_offline_use) {
  start();
  ASSERT_TRUE(read(history("alice", 60s)));
  stop();
  start();
  advance(1h);
  auto r = read_failing(history("alice", 60s),
                        make_engine_error(error_class::network, "offline"));
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_TRUE(r->stale);
  EXPECT_EQ(r->reply.body, history_v1);
}

TEST_F(cache_test, unusable_storage_means_pass_through) {
  auto file = dir + "/not-a-dir";
  std::ofstream{file} << "x";
  auto rc = make_config();
  rc.state_dir = file;
  start(rc);
  auto r1 = read(history("alice", 60s));
  ASSERT_TRUE(r1) << describe(r1.error());
  EXPECT_FALSE(r1->from_cache);
  auto r2 = read(history("alice", 60s));
  ASSERT_TRUE(r2);
  EXPECT_FALSE(r2->from_cache);
  EXPECT_EQ(net->calls.size(), 2u);
  auto off = read_failing(history("alice", 60s),
                          make_engine_error(error_class::network, "offline"));
  EXPECT_FALSE(off);
  auto n = ask<size_t>(c, invalidate_atom::value, std::string{"alice"},
                       std::string{});
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
}

TEST_F(cache_test, a_damaged_cache_file_is_replaced) {
  {
    std::ofstream f{dir + "/response_cache.db"};
    f << std::string(8192, 'g');
  }
  start();
  ASSERT_TRUE(read(history("alice", 60s)));
  auto r = read(history("alice", 60s));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->from_cache);
  EXPECT_EQ(net->calls.size(), 1u);
}

TEST_F(cache_test, health_reads_can_go_without_auth) {
  start();
  cache_read r;
  r.call = api_call{"hc", "GET", "/health", "", ""};
  r.max_age = 5s;
  r.auth = false;
  ASSERT_TRUE(read(r));
  ASSERT_EQ(net->auth.size(), 1u);
  EXPECT_FALSE(net->auth[0]);
}

TEST_F(cache_test, the_file_is_opened_at_the_first_read_not_at_spawn) {
  auto path = dir + "/response_cache.db";
  start();
  EXPECT_FALSE(std::filesystem::exists(path)) << "created at spawn";
  // invalidating a cache that has no file yet opens nothing
  auto n = ask<size_t>(c, invalidate_atom::value, std::string{"alice"},
                       std::string{});
  ASSERT_TRUE(n) << describe(n.error());
  EXPECT_EQ(*n, 0u);
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(read(history("alice", 60s)));
  EXPECT_TRUE(std::filesystem::exists(path));
  auto r = read(history("alice", 60s), 200, history_v2);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->from_cache); // stored by the first read
  // a later engine invalidates what the file holds
  stop();
  start();
  n = ask<size_t>(c, invalidate_atom::value, std::string{"alice"},
                  std::string{});
  ASSERT_TRUE(n) << describe(n.error());
  EXPECT_EQ(*n, 1u);
}
