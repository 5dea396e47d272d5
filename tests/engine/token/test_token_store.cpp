// tokens.json persistence: atomic write, modes 0700/0600, corrupt files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/stat.h>

#include "src/core/token_store.hpp"

using namespace aico;
namespace fs = std::filesystem;

namespace {

struct token_store_test : ::testing::Test {
  std::string root;

  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "aico-ts-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root = tmpl;
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root, ec);
  }

  static unsigned mode_of(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return 0xFFFF;
    return st.st_mode & 07777;
  }

  static void write_file(const std::string& path, const std::string& text) {
    std::ofstream out{path, std::ios::binary | std::ios::trunc};
    out << text;
  }

  static stored_tokens sample() {
    stored_tokens x;
    x.access_token = "a.b.c";
    x.refresh_token = "r-1";
    x.user_id = "u-1";
    x.username = "alice";
    x.role = "user";
    return x;
  }
};

} // namespace

TEST_F(token_store_test, save_and_load_round_trip) {
  token_store store{root};
  ASSERT_FALSE(store.save(sample()));
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  ASSERT_TRUE(*loaded);
  EXPECT_EQ(**loaded, sample());
  // a second store on the same directory sees the same file
  auto again = token_store{root + "/"}.load();
  ASSERT_TRUE(again && *again);
  EXPECT_EQ(**again, sample());
}

TEST_F(token_store_test, file_is_0600_and_missing_dirs_are_0700) {
  auto dir = root + "/state/aico";
  token_store store{dir};
  EXPECT_EQ(store.file_path(), dir + "/tokens.json");
  ASSERT_FALSE(store.save(sample()));
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(root + "/state"), 0700u);
  EXPECT_EQ(mode_of(store.file_path()), 0600u);
  // still 0600 when the file is rewritten under a permissive umask
  auto old = ::umask(0);
  auto err = store.save(sample());
  ::umask(old);
  ASSERT_FALSE(err);
  EXPECT_EQ(mode_of(store.file_path()), 0600u);
}

TEST_F(token_store_test, overwrite_is_atomic_and_leaves_no_temp_files) {
  token_store store{root};
  auto x = sample();
  for (int i = 0; i < 5; ++i) {
    x.refresh_token = "r-" + std::to_string(i);
    ASSERT_FALSE(store.save(x));
  }
  auto loaded = store.load();
  ASSERT_TRUE(loaded && *loaded);
  EXPECT_EQ((*loaded)->refresh_token, "r-4");
  int files = 0;
  for (auto& e : fs::directory_iterator(root)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "tokens.json");
  }
  EXPECT_EQ(files, 1);
}

TEST_F(token_store_test, missing_file_is_not_an_error) {
  token_store store{root + "/does/not/exist"};
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(*loaded);
  EXPECT_FALSE(store.clear());
}

TEST_F(token_store_test, corrupt_files_are_errors) {
  token_store store{root};
  for (std::string text :
       {"", "{not json", "[1,2]", "42", "{}", R"({"access_token":7})",
        R"({"access_token":"","refresh_token":""})",
        R"({"refresh_token":"r","role":["x"]})"}) {
    write_file(store.file_path(), text);
    auto loaded = store.load();
    EXPECT_FALSE(loaded) << text;
    if (!loaded) {
      auto msg = classify(loaded.error()).message;
      EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;
    }
  }
  // only a refresh token is enough; unknown fields are ignored
  write_file(store.file_path(), R"({"refresh_token":"r","extra":1})");
  auto loaded = store.load();
  ASSERT_TRUE(loaded && *loaded);
  EXPECT_EQ((*loaded)->refresh_token, "r");
  EXPECT_EQ((*loaded)->access_token, "");
}

TEST_F(token_store_test, corrupt_file_error_does_not_leak_its_content) {
  token_store store{root};
  write_file(store.file_path(), R"({"access_token":"SECRET","role":1})");
  auto loaded = store.load();
  ASSERT_FALSE(loaded);
  EXPECT_EQ(to_string(loaded.error()).find("SECRET"), std::string::npos);
}

TEST_F(token_store_test, oversized_file_is_rejected) {
  token_store store{root};
  write_file(store.file_path(), std::string(100 * 1024, ' '));
  EXPECT_FALSE(store.load());
}

TEST_F(token_store_test, clear_deletes_the_file) {
  token_store store{root};
  ASSERT_FALSE(store.save(sample()));
  ASSERT_TRUE(fs::exists(store.file_path()));
  EXPECT_FALSE(store.clear());
  EXPECT_FALSE(fs::exists(store.file_path()));
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(*loaded);
  EXPECT_FALSE(store.clear()); // idempotent
}

TEST_F(token_store_test, memory_only_store_does_nothing) {
  token_store store;
  EXPECT_FALSE(store.persistent());
  EXPECT_EQ(store.file_path(), "");
  EXPECT_FALSE(store.save(sample()));
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(*loaded);
  EXPECT_FALSE(store.clear());
}

TEST_F(token_store_test, unusable_directory_is_an_error_not_a_crash) {
  write_file(root + "/file", "x");
  token_store store{root + "/file/sub"};
  auto err = store.save(sample());
  EXPECT_TRUE(err);
  auto loaded = store.load(); // ENOTDIR: treated as "no file"
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(*loaded);
}

// -- processes sharing a state directory -----------------------------------------

TEST_F(token_store_test, lock_is_exclusive_between_two_stores_of_one_dir) {
  // two token_store objects stand for two processes (flock is per open
  // file description, so they conflict within one process as well)
  token_store a{root + "/state"};
  token_store b{root + "/state"};
  token_lock la, lb;
  ASSERT_FALSE(a.try_lock(la));
  ASSERT_TRUE(la.held());
  EXPECT_EQ(mode_of(a.lock_path()), 0600u);
  ASSERT_FALSE(b.try_lock(lb)); // busy is not an error ...
  EXPECT_FALSE(lb.held());      // ... but not granted
  la.release();
  ASSERT_FALSE(b.try_lock(lb));
  EXPECT_TRUE(lb.held());
  // moving keeps the one lock
  token_lock moved = std::move(lb);
  EXPECT_TRUE(moved.held());
  EXPECT_FALSE(lb.held());
  ASSERT_FALSE(a.try_lock(la));
  EXPECT_FALSE(la.held());
  moved = token_lock{}; // dropping it releases
  ASSERT_FALSE(a.try_lock(la));
  EXPECT_TRUE(la.held());
}

TEST_F(token_store_test, second_refresher_adopts_the_pair_the_first_stored) {
  // the protocol of a refresh, step by step, as two processes run it
  token_store first{root + "/state"};
  token_store second{root + "/state"};
  auto p1 = sample();
  ASSERT_FALSE(first.save(p1));
  stored_tokens mine_first = p1, mine_second = p1; // both loaded p1
  // the first takes the lock, finds p1 unchanged: it refreshes ...
  token_lock l1;
  ASSERT_FALSE(first.try_lock(l1));
  ASSERT_TRUE(l1.held());
  auto seen = first.load();
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ(plan_refresh(mine_first, *seen), refresh_plan::refresh);
  // ... the second wants to refresh meanwhile and must wait
  token_lock l2;
  ASSERT_FALSE(second.try_lock(l2));
  EXPECT_FALSE(l2.held());
  // the gateway rotated: p1's refresh token is used up
  auto p2 = p1;
  p2.access_token = "a.b.d";
  p2.refresh_token = "r-2";
  ASSERT_FALSE(first.save(p2));
  mine_first = p2;
  l1.release();
  // the second gets the lock, reads again and adopts p2 instead of
  // presenting r-1 (which would make the gateway revoke the session)
  ASSERT_FALSE(second.try_lock(l2));
  ASSERT_TRUE(l2.held());
  seen = second.load();
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ(plan_refresh(mine_second, *seen), refresh_plan::adopt);
  EXPECT_EQ(**seen, p2);
}

TEST(plan_refresh, decides_from_the_stored_pair) {
  stored_tokens mine;
  mine.access_token = "a1";
  mine.refresh_token = "r1";
  mine.user_id = "u-1";
  auto same = mine;
  EXPECT_EQ(plan_refresh(mine, same), refresh_plan::refresh);
  auto newer = mine;
  newer.access_token = "a2";
  newer.refresh_token = "r2";
  EXPECT_EQ(plan_refresh(mine, newer), refresh_plan::adopt);
  // no file: logged out by another process
  EXPECT_EQ(plan_refresh(mine, caf::none), refresh_plan::ended);
  // another user logged in here
  auto other = newer;
  other.user_id = "u-2";
  EXPECT_EQ(plan_refresh(mine, other), refresh_plan::ended);
  // a file without a refresh token cannot be refreshed from
  auto access_only = newer;
  access_only.refresh_token.clear();
  EXPECT_EQ(plan_refresh(mine, access_only), refresh_plan::ended);
  // a process that holds nothing follows the file
  EXPECT_EQ(plan_refresh(stored_tokens{}, newer), refresh_plan::adopt);
}

TEST_F(token_store_test, memory_only_store_always_grants_the_lock) {
  token_store mem;
  token_lock l;
  ASSERT_FALSE(mem.try_lock(l));
  EXPECT_TRUE(l.held());
  EXPECT_TRUE(mem.lock_path().empty());
}

TEST_F(token_store_test, unusable_lock_directory_is_an_error) {
  write_file(root + "/file", "x");
  token_store bad{root + "/file/state"};
  token_lock l;
  EXPECT_TRUE(bad.try_lock(l));
  EXPECT_FALSE(l.held());
}
