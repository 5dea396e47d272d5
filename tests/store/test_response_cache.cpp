// The persistent response cache: age and staleness, eviction, per-user
// scoping, invalidation, persistence, damaged files.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "src/store/response_cache.hpp"
#include "temp_dir.hpp"

using namespace aico;
using namespace aico::store;
using namespace aico::store::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* history = "GET /conversations/c1/messages?limit=50";
constexpr const char* profile = "GET /users/me";

struct response_cache_test : temp_dir_test {
  std::string path;

  void SetUp() override {
    temp_dir_test::SetUp();
    path = file("state/response_cache.db");
  }

  response_cache open_cache(cache_options opts = {}) {
    auto c = response_cache::open(path, opts);
    if (!c) {
      ADD_FAILURE() << "open failed: " << describe(c.error());
      std::abort();
    }
    return std::move(*c);
  }

  static bool has(response_cache& c, const std::string& user,
                  const std::string& key) {
    auto e = c.get(user, key, store_time{}, 0ms);
    EXPECT_TRUE(e);
    return e && e->has_value();
  }
};

} // namespace

TEST_F(response_cache_test, miss_is_none) {
  auto c = open_cache();
  auto e = c.get("u1", history, now, 60s);
  ASSERT_TRUE(e) << describe(e.error());
  EXPECT_FALSE(*e);
  EXPECT_EQ(*c.size(), 0u);
}

TEST_F(response_cache_test, fresh_then_stale_by_max_age_of_the_call) {
  auto c = open_cache();
  ASSERT_FALSE(c.put("u1", history, R"({"messages":[]})", now));
  auto stored = now;
  advance(10s);
  auto e = c.get("u1", history, now, 30s);
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->value, R"({"messages":[]})");
  EXPECT_EQ((*e)->age, 10s);
  EXPECT_EQ((*e)->stored_at, stored);
  EXPECT_FALSE((*e)->stale);
  // the same entry is stale for a caller that wants it younger
  e = c.get("u1", history, now, 5s);
  ASSERT_TRUE(e && *e);
  EXPECT_TRUE((*e)->stale);
  // exactly max_age is still fresh, one ms more is stale
  advance(20s);
  e = c.get("u1", history, now, 30s);
  EXPECT_FALSE((*e)->stale);
  advance(1ms);
  e = c.get("u1", history, now, 30s);
  ASSERT_TRUE(e && *e);
  EXPECT_TRUE((*e)->stale); // still returned: stale-if-error is the owner's
  EXPECT_EQ((*e)->value, R"({"messages":[]})");
  // a new put refreshes it
  ASSERT_FALSE(c.put("u1", history, R"({"messages":[1]})", now));
  e = c.get("u1", history, now, 30s);
  EXPECT_FALSE((*e)->stale);
  EXPECT_EQ((*e)->age, 0ms);
  EXPECT_EQ((*e)->value, R"({"messages":[1]})");
  EXPECT_EQ(*c.size(), 1u);
}

TEST_F(response_cache_test, entry_from_the_future_is_stale) {
  auto c = open_cache();
  ASSERT_FALSE(c.put("u1", profile, "{}", now));
  auto e = c.get("u1", profile, now - 1h, 24h); // the wall clock went back
  ASSERT_TRUE(e && *e);
  EXPECT_TRUE((*e)->stale);
  EXPECT_EQ((*e)->age, 0ms);
}

TEST_F(response_cache_test, evicts_the_oldest_beyond_max_entries) {
  cache_options opts;
  opts.max_entries = 3;
  auto c = open_cache(opts);
  ASSERT_FALSE(c.put("u1", "k1", "1", now));
  advance(1s);
  ASSERT_FALSE(c.put("u2", "k2", "2", now));
  advance(1s);
  ASSERT_FALSE(c.put("u1", "k3", "3", now));
  advance(1s);
  ASSERT_FALSE(c.put("u1", "k1", "1b", now)); // k1 is now the newest
  EXPECT_EQ(*c.size(), 3u);
  advance(1s);
  ASSERT_FALSE(c.put("u1", "k4", "4", now));
  EXPECT_EQ(*c.size(), 3u);
  EXPECT_FALSE(has(c, "u2", "k2")); // oldest stored_at
  EXPECT_TRUE(has(c, "u1", "k1"));
  EXPECT_TRUE(has(c, "u1", "k3"));
  EXPECT_TRUE(has(c, "u1", "k4"));
  // a put with an older clock is not evicted by its own eviction
  ASSERT_FALSE(c.put("u1", "k5", "5", now - 1h));
  EXPECT_TRUE(has(c, "u1", "k5"));
  EXPECT_FALSE(has(c, "u1", "k1") && has(c, "u1", "k3") && has(c, "u1", "k4"));
  EXPECT_EQ(*c.size(), 3u);
}

TEST_F(response_cache_test, scoped_per_user) {
  auto c = open_cache();
  ASSERT_FALSE(c.put("alice", profile, R"({"name":"alice"})", now));
  ASSERT_FALSE(c.put("bob", profile, R"({"name":"bob"})", now));
  ASSERT_FALSE(c.put("alice", history, "[]", now));
  ASSERT_FALSE(c.put("", "GET /health", "ok", now));
  auto e = c.get("bob", profile, now, 1s);
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->value, R"({"name":"bob"})");
  // logout of alice
  auto n = c.clear_user("alice");
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_FALSE(has(c, "alice", profile));
  EXPECT_FALSE(has(c, "alice", history));
  EXPECT_TRUE(has(c, "bob", profile));
  EXPECT_TRUE(has(c, "", "GET /health"));
  EXPECT_EQ(*c.clear(), 2u);
  EXPECT_EQ(*c.size(), 0u);
}

TEST_F(response_cache_test, invalidate_key_and_prefix) {
  auto c = open_cache();
  ASSERT_FALSE(c.put("u1", "GET /conversations/c1/messages?limit=50", "a",
                     now));
  ASSERT_FALSE(c.put("u1", "GET /conversations/c1/messages?limit=20", "b",
                     now));
  ASSERT_FALSE(c.put("u1", "GET /conversations/c2/messages?limit=50", "c",
                     now));
  ASSERT_FALSE(c.put("u2", "GET /conversations/c1/messages?limit=50", "d",
                     now));
  ASSERT_FALSE(c.put("u1", "GET /users/me", "e", now));
  EXPECT_EQ(*c.invalidate("u1", "GET /users/me"), 1u);
  EXPECT_EQ(*c.invalidate("u1", "GET /users/me"), 0u);
  auto n = c.invalidate_prefix("u1", "GET /conversations/c1/");
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_TRUE(has(c, "u1", "GET /conversations/c2/messages?limit=50"));
  EXPECT_TRUE(has(c, "u2", "GET /conversations/c1/messages?limit=50"));
  // LIKE wildcards in a prefix are plain characters
  ASSERT_FALSE(c.put("u1", "a%b", "x", now));
  ASSERT_FALSE(c.put("u1", "aXb", "y", now));
  EXPECT_EQ(*c.invalidate_prefix("u1", "a%"), 1u);
  EXPECT_TRUE(has(c, "u1", "aXb"));
  EXPECT_EQ(*c.size(), 3u);
}

TEST_F(response_cache_test, survives_a_restart) {
  {
    auto c = open_cache();
    ASSERT_FALSE(c.put("u1", history, R"({"messages":["hi"]})", now));
  }
  advance(1h);
  auto c = open_cache();
  auto e = c.get("u1", history, now, 5min);
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->value, R"({"messages":["hi"]})");
  EXPECT_EQ((*e)->age, 1h);
  EXPECT_TRUE((*e)->stale); // offline: the owner may still show it
}

TEST_F(response_cache_test, too_large_value_is_refused) {
  cache_options opts;
  opts.max_value_bytes = 10;
  auto c = open_cache(opts);
  auto err = c.put("u1", "k", std::string(11, 'x'), now);
  ASSERT_TRUE(err);
  EXPECT_EQ(classify(err).cls, error_class::validation);
  EXPECT_EQ(code_of(err), "too_large");
  EXPECT_FALSE(c.put("u1", "k", std::string(10, 'x'), now));
  // binary-safe text (embedded NUL) round-trips
  std::string odd{"a\0b", 3};
  ASSERT_FALSE(c.put("u1", "nul", odd, now));
  EXPECT_EQ((*c.get("u1", "nul", now, 1s))->value, odd);
}

TEST_F(response_cache_test, file_is_private) {
  auto c = open_cache();
  ASSERT_FALSE(c.put("u1", "k", "v", now));
  EXPECT_EQ(mode_of(path), 0600u);
  if (exists(path + "-wal")) {
    EXPECT_EQ(mode_of(path + "-wal"), 0600u);
  }
  if (exists(path + "-shm")) {
    EXPECT_EQ(mode_of(path + "-shm"), 0600u);
  }
}

TEST_F(response_cache_test, non_sqlite_file_is_a_clear_error_and_can_be_reset) {
  ::mkdir((root + "/state").c_str(), 0700);
  write_file(path, std::string(8192, '\x42'));
  auto c = response_cache::open(path);
  ASSERT_FALSE(c);
  auto msg = describe(c.error());
  EXPECT_NE(msg.find("response cache"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a database"), std::string::npos) << msg;
  // the content is disposable: the owner may start over
  ASSERT_FALSE(sqlite_db::remove_files(path));
  auto fresh = open_cache();
  EXPECT_EQ(*fresh.size(), 0u);
}

TEST_F(response_cache_test, queue_file_is_not_a_cache) {
  ::mkdir((root + "/state").c_str(), 0700);
  {
    auto db = sqlite_db::open(path, sqlite_db::options{});
    ASSERT_TRUE(db);
    ASSERT_FALSE(db->ensure_schema(0x61696371, 1,
                                   "CREATE TABLE IF NOT EXISTS queue(x)"));
  }
  auto c = response_cache::open(path);
  ASSERT_FALSE(c);
  EXPECT_NE(describe(c.error()).find("belongs to something else"),
            std::string::npos);
}
