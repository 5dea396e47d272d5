// The SQLite wrapper: statements, transactions, schema ownership, modes.
#include <gtest/gtest.h>

#include <string>

#include "src/store/sqlite_db.hpp"
#include "temp_dir.hpp"

using namespace aico;
using namespace aico::store;
using namespace aico::store::test;

namespace {

struct sqlite_db_test : temp_dir_test {
  sqlite_db open_db(const std::string& name = "a/b/test.db") {
    sqlite_db::options opts;
    opts.what = "test db";
    auto db = sqlite_db::open(file(name), opts);
    if (!db) {
      ADD_FAILURE() << describe(db.error());
      std::abort();
    }
    return std::move(*db);
  }

  static int64_t count(sqlite_db& db) {
    auto st = db.prepare("SELECT COUNT(*) FROM t");
    EXPECT_TRUE(st);
    auto row = st->step();
    EXPECT_TRUE(row && *row);
    auto n = st->column_int(0);
    st->reset();
    return n;
  }
};

} // namespace

TEST_F(sqlite_db_test, creates_private_directories_and_file_in_wal_mode) {
  auto db = open_db();
  EXPECT_EQ(mode_of(root + "/a"), 0700u);
  EXPECT_EQ(mode_of(root + "/a/b"), 0700u);
  EXPECT_EQ(mode_of(file("a/b/test.db")), 0600u);
  auto st = db.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(st);
  auto row = st->step();
  ASSERT_TRUE(row && *row);
  EXPECT_EQ(st->column_text(0), "wal");
  st->reset();
}

TEST_F(sqlite_db_test, statements_bind_step_and_read_columns) {
  auto db = open_db();
  ASSERT_FALSE(db.exec("CREATE TABLE t(i INTEGER, s TEXT)"));
  auto ins = db.prepare("INSERT INTO t(i, s) VALUES(?1, ?2)");
  ASSERT_TRUE(ins);
  for (int64_t i = 0; i < 3; ++i)
    ASSERT_FALSE(ins->reset().bind(1, i).bind(2, "v" + std::to_string(i)).run());
  ASSERT_FALSE(ins->reset().bind(1, int64_t{9}).bind_null(2).run());
  EXPECT_EQ(db.changes(), 1);
  EXPECT_EQ(db.last_insert_rowid(), 4);
  // the sqlite_db may move; statements keep working
  sqlite_db moved = std::move(db);
  auto sel = moved.prepare("SELECT i, s FROM t ORDER BY i");
  ASSERT_TRUE(sel);
  std::string seen;
  for (;;) {
    auto row = sel->step();
    ASSERT_TRUE(row);
    if (!*row)
      break;
    seen += std::to_string(sel->column_int(0)) + "=";
    seen += sel->column_is_null(1) ? "null" : sel->column_text(1);
    seen += ";";
  }
  EXPECT_EQ(seen, "0=v0;1=v1;2=v2;9=null;");
  ASSERT_FALSE(ins->reset().bind(1, int64_t{10}).bind(2, "").run());
  // bad SQL and bad binds are errors, not crashes
  auto bad = moved.prepare("SELECT nope FROM nowhere");
  ASSERT_FALSE(bad);
  EXPECT_NE(describe(bad.error()).find("no such table"), std::string::npos);
  auto err = ins->reset().bind(7, int64_t{1}).run();
  ASSERT_TRUE(err);
  EXPECT_NE(describe(err).find("test db"), std::string::npos);
}

TEST_F(sqlite_db_test, transaction_rolls_back_unless_committed) {
  auto db = open_db();
  ASSERT_FALSE(db.exec("CREATE TABLE t(i INTEGER)"));
  {
    auto txn = transaction::begin(db);
    ASSERT_TRUE(txn);
    ASSERT_FALSE(db.exec("INSERT INTO t VALUES(1)"));
  }
  EXPECT_EQ(count(db), 0);
  {
    auto txn = transaction::begin(db);
    ASSERT_TRUE(txn);
    ASSERT_FALSE(db.exec("INSERT INTO t VALUES(1)"));
    ASSERT_FALSE(txn->commit());
    EXPECT_TRUE(txn->commit()); // twice is an error
  }
  EXPECT_EQ(count(db), 1);
}

TEST_F(sqlite_db_test, schema_belongs_to_one_store_and_version) {
  {
    auto db = open_db();
    ASSERT_FALSE(db.ensure_schema(1234, 1, "CREATE TABLE IF NOT EXISTS t(i)"));
    ASSERT_FALSE(db.ensure_schema(1234, 1, "CREATE TABLE IF NOT EXISTS t(i)"));
    EXPECT_EQ(*db.user_version(), 1);
    auto other = db.ensure_schema(99, 1, "CREATE TABLE IF NOT EXISTS u(i)");
    ASSERT_TRUE(other);
    EXPECT_NE(describe(other).find("belongs to something else"),
              std::string::npos);
    ASSERT_FALSE(db.exec("PRAGMA user_version=7"));
  }
  auto db = open_db();
  auto newer = db.ensure_schema(1234, 1, "CREATE TABLE IF NOT EXISTS t(i)");
  ASSERT_TRUE(newer);
  EXPECT_NE(describe(newer).find("newer version"), std::string::npos);
}

TEST_F(sqlite_db_test, unusable_paths_are_errors) {
  write_file(file("plain"), "x");
  auto db = sqlite_db::open(file("plain/sub.db"), sqlite_db::options{});
  ASSERT_FALSE(db);
  EXPECT_NE(describe(db.error()).find("plain"), std::string::npos);
  ::mkdir(file("dir.db").c_str(), 0700);
  db = sqlite_db::open(file("dir.db"), sqlite_db::options{});
  ASSERT_FALSE(db);
  db = sqlite_db::open("", sqlite_db::options{});
  ASSERT_FALSE(db);
}
