// The response cache actor with a fake downstream under CAF's deterministic
// test coordinator (virtual time, manual wall clock, temporary state dir).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixture.hpp"
#include "messages/cache.hpp"
#include "src/store/response_cache.hpp"

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

// -- only valid bodies are cached (issue 15, defect 4) ------------------------------

namespace {

const std::string valid_page
  = R"({"success":true,"data":{"conversation_id":"c1","messages":[],)"
    R"("has_more":false,"next_since":0}})";
const std::string valid_page2
  = R"({"success":true,"data":{"conversation_id":"c1","messages":[],)"
    R"("has_more":false,"next_since":7}})";
const std::string not_envelope = R"({"misbehave":"not_envelope"})";
const std::string malformed_json = R"({"success":true,"data":malformed})";

cache_read page_read(caf::timespan max_age, bool force = false,
                     bool allow_stale = true) {
  auto r = cache_test::history("alice", max_age, force);
  r.expect = cached_body::history_page;
  r.allow_stale = allow_stale;
  return r;
}

} // namespace

TEST_F(cache_test, a_malformed_200_is_an_error_and_never_cached) {
  start();
  for (auto& bad : {not_envelope, malformed_json,
                    std::string{R"({"success":true,"data":{"messages":7}})"}}) {
    auto calls = net->calls.size();
    auto r = read(page_read(60s), 200, bad);
    ASSERT_FALSE(r) << bad;
    auto c = classify(r.error());
    EXPECT_EQ(c.cls, error_class::server_error) << describe(r.error());
    EXPECT_EQ(c.code, "malformed_reply");
    EXPECT_TRUE(c.retryable);
    EXPECT_NE(c.message.find("GET /conversations/c1/messages"),
              std::string::npos)
      << c.message;
    EXPECT_EQ(net->calls.size(), calls + 1);
  }
  // nothing was cached: the next read (max age 60 s) asks again and gets
  // the real page
  auto calls = net->calls.size();
  auto good = read(page_read(60s), 200, valid_page);
  ASSERT_TRUE(good) << describe(good.error());
  EXPECT_FALSE(good->from_cache);
  EXPECT_EQ(net->calls.size(), calls + 1);
  auto cached = read(page_read(60s), 200, valid_page2);
  ASSERT_TRUE(cached);
  EXPECT_TRUE(cached->from_cache);
  EXPECT_EQ(cached->reply.body, valid_page);
}

TEST_F(cache_test, stale_if_error_is_never_poisoned_by_a_malformed_200) {
  start();
  // without a cached value, the real failure is what the caller sees
  // (not the parse error of an earlier malformed answer)
  ASSERT_FALSE(read(page_read(60s), 200, not_envelope));
  auto offline = read_failing(page_read(60s),
                              make_engine_error(error_class::network,
                                                "no transport available"));
  ASSERT_FALSE(offline);
  EXPECT_EQ(classify(offline.error()).cls, error_class::network);
  EXPECT_EQ(describe(offline.error()),
            "gateway unreachable (no transport available)");
  // with a valid cached page, a malformed answer later falls back to it
  ASSERT_TRUE(read(page_read(60s), 200, valid_page));
  advance(2min);
  auto r = read(page_read(60s), 200, malformed_json);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_TRUE(r->from_cache);
  EXPECT_TRUE(r->stale);
  EXPECT_EQ(r->reply.body, valid_page);
  // and the cache still holds the valid page, not the malformed one
  auto again = read_failing(page_read(60s),
                            make_engine_error(error_class::timeout, "slow"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->reply.body, valid_page);
}

TEST_F(cache_test, a_forced_refresh_answers_from_the_cache_only_if_stale_is_allowed) {
  start();
  ASSERT_TRUE(read(page_read(60s), 200, valid_page));
  // strict: the gateway's failure is the answer, even with a fresh entry
  auto strict = read_failing(page_read(60s, true, false),
                             make_engine_error(error_class::network,
                                               "offline"));
  ASSERT_FALSE(strict);
  EXPECT_EQ(classify(strict.error()).cls, error_class::network);
  auto strict_bad = read(page_read(60s, true, false), 200, not_envelope);
  ASSERT_FALSE(strict_bad);
  EXPECT_EQ(classify(strict_bad.error()).code, "malformed_reply");
  // allowed: the cached value, flagged stale
  auto lenient = read_failing(page_read(60s, true, true),
                              make_engine_error(error_class::network,
                                                "offline"));
  ASSERT_TRUE(lenient);
  EXPECT_TRUE(lenient->from_cache);
  EXPECT_TRUE(lenient->stale);
  // a forced refresh that succeeds is never from the cache
  auto fresh = read(page_read(60s, true, false), 200, valid_page2);
  ASSERT_TRUE(fresh);
  EXPECT_FALSE(fresh->from_cache);
  EXPECT_EQ(fresh->reply.body, valid_page2);
}

TEST_F(cache_test, waiters_of_one_fetch_get_stale_data_only_if_they_allow_it) {
  start();
  ASSERT_TRUE(read(page_read(0s), 200, valid_page));
  advance(1s);
  net->hold = true;
  auto lenient = self->request(c, caf::infinite, read_atom::value,
                               page_read(0s, false, true));
  auto strict = self->request(c, caf::infinite, read_atom::value,
                              page_read(0s, true, false));
  sched.run();
  ASSERT_EQ(net->calls.size(), 2u); // the two share one fetch
  fail(net->calls.back().id, make_status_error(503, "{}", "1"));
  lenient.receive([&](cached_reply& x) { EXPECT_TRUE(x.stale); },
                  [&](caf::error& e) { ADD_FAILURE() << describe(e); });
  strict.receive([&](cached_reply&) { ADD_FAILURE() << "served stale"; },
                 [&](caf::error& e) {
                   EXPECT_EQ(classify(e).status, 503);
                 });
}

TEST_F(cache_test, an_invalid_stored_entry_is_dropped_not_served) {
  // an entry stored without checking (an older engine) ...
  {
    auto db = store::response_cache::open(dir + "/response_cache.db", {});
    ASSERT_TRUE(db) << describe(db.error());
    ASSERT_FALSE(db->put("alice", "GET /conversations/c1/messages",
                         not_envelope, clock()()));
  }
  start();
  // ... is neither a cache hit nor a stale fallback
  auto offline = read_failing(page_read(60s),
                              make_engine_error(error_class::network,
                                                "offline"));
  ASSERT_FALSE(offline);
  EXPECT_EQ(classify(offline.error()).cls, error_class::network);
  auto r = read(page_read(60s), 200, valid_page);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->from_cache);
  EXPECT_EQ(r->reply.body, valid_page);
}
