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
