// Test helpers for the store tests: a temporary directory per test and a
// manual wall clock.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/stat.h>

#include "src/store/sqlite_db.hpp"

namespace aico::store::test {

struct temp_dir_test : ::testing::Test {
  std::string root;

  /// A manual clock: tests advance it explicitly, nothing sleeps.
  store_time now = from_unix_ms(1'700'000'000'000);

  void advance(std::chrono::milliseconds d) { now += d; }

  void SetUp() override {
    namespace fs = std::filesystem;
    std::string tmpl = (fs::temp_directory_path() / "aico-store-XXXXXX")
                         .string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root = tmpl;
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }

  std::string file(const std::string& name) const { return root + "/" + name; }

  static unsigned mode_of(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return 0xFFFF;
    return st.st_mode & 07777;
  }

  static bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  static void write_file(const std::string& path, const std::string& text) {
    std::ofstream out{path, std::ios::binary | std::ios::trunc};
    out << text;
  }
};

/// The gateway-style error code stored in an engine error ("queue_full").
inline std::string code_of(const caf::error& err) {
  return classify(err).code;
}

} // namespace aico::store::test
