// aico engine: a small RAII wrapper around one SQLite connection, for the
// engine's durable stores (offline queue, response cache). This header and
// sqlite_db.cpp are the only places on the engine side that know about
// sqlite3.h; everything here reports failures as caf::error (class
// `unknown`, "<what> <path>: <sqlite message>", with a code saying what kind
// of storage failure it was: busy, disk_full, read_only, cannot_open,
// io_error, damaged or out_of_memory; none for other failures), nothing
// throws.
//
// - open(): creates missing parent directories with mode 0700 and the
//   database file with mode 0600 BEFORE SQLite touches it (SQLite gives the
//   -wal / -shm files the mode of the database file), then sets
//   journal_mode=WAL, synchronous (NORMAL or FULL), busy_timeout, optionally
//   locking_mode=EXCLUSIVE, and runs `PRAGMA quick_check` if asked. A file
//   that is not a database fails here with a clear error.
// - statement: a prepared statement, prepared once and reused. bind() calls
//   chain and remember the first failure; step() reports it. step() resets
//   the statement by itself when it reaches the end or fails, so a caller
//   that reads until step() yields false leaves nothing open; a caller that
//   stops early calls reset() (every use starts with reset() anyway).
// - transaction: BEGIN IMMEDIATE on creation, ROLLBACK on destruction unless
//   commit() succeeded.
//
// Not thread-safe: one owner (an actor) per connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "caf/all.hpp"

#include "messages/errors.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace aico::store {

/// Wall-clock time as stored on disk (milliseconds since the Unix epoch).
/// Durable data needs a clock that means the same after a restart, so the
/// stores use system_clock, not steady_clock. Callers pass `now` in.
using store_clock = std::chrono::system_clock;
using store_time = store_clock::time_point;

int64_t to_unix_ms(store_time t);
store_time from_unix_ms(int64_t ms);

class sqlite_db;

namespace detail {
/// The connection, heap-allocated so that statements and transactions keep
/// a stable pointer to it while the owning sqlite_db (and the store that
/// holds it) is moved around.
struct db_state;
} // namespace detail

class statement {
public:
  statement() = default;
  statement(statement&& other) noexcept;
  statement& operator=(statement&& other) noexcept;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement();

  /// Resets the statement and clears its bindings; returns *this for
  /// chaining binds.
  statement& reset();

  /// 1-based parameter index, as in SQLite.
  statement& bind(int idx, int64_t value);
  statement& bind(int idx, std::string_view value);
  statement& bind(int idx, const std::string& value) {
    return bind(idx, std::string_view{value});
  }
  statement& bind(int idx, const char* value) {
    return bind(idx, std::string_view{value});
  }
  statement& bind_null(int idx);

  /// One step: true = a row is available, false = done (the statement has
  /// been reset). An error also resets it.
  caf::expected<bool> step();

  /// Steps until done (for statements that return no rows).
  caf::error run();

  /// 0-based column index, as in SQLite.
  int64_t column_int(int idx) const;
  std::string column_text(int idx) const;
  bool column_is_null(int idx) const;

  bool valid() const { return stmt_ != nullptr; }

private:
  friend class sqlite_db;
  statement(std::shared_ptr<detail::db_state> db, sqlite3_stmt* stmt)
    : db_(std::move(db)), stmt_(stmt) {
  }

  std::shared_ptr<detail::db_state> db_;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_rc_ = 0; ///< first failed bind (SQLite result code), 0 = none
};

class sqlite_db {
public:
  struct options {
    /// Used in error messages: "cannot open <what> <path>: ...".
    std::string what = "database";
    /// synchronous=FULL (fsync the WAL on every commit: durable against
    /// power loss) instead of NORMAL (durable against a process crash,
    /// the last commits may be lost on power loss).
    bool full_sync = false;
    /// locking_mode=EXCLUSIVE: the first transaction takes a lock that is
    /// held until close, so a second process can't use the same file (it
    /// gets "database is locked" after busy_timeout).
    bool exclusive = false;
    /// How long opening (in total) and then each statement waits for a
    /// lock another connection holds.
    std::chrono::milliseconds busy_timeout{2000};
    /// Run PRAGMA quick_check on open; a damaged file is an error.
    bool quick_check = false;
  };

  /// Opens (creating if needed) the database at `path`.
  static caf::expected<sqlite_db> open(const std::string& path,
                                       options opts);

  /// Deletes the database file and its -wal / -shm / -journal companions
  /// (missing files are fine). For disposable stores (the response cache)
  /// whose file turned out to be damaged. Must not be open.
  static caf::error remove_files(const std::string& path);

  sqlite_db() = default;
  sqlite_db(sqlite_db&& other) noexcept;
  sqlite_db& operator=(sqlite_db&& other) noexcept;
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;
  ~sqlite_db();

  /// Runs one or more SQL statements that return no rows.
  caf::error exec(const char* sql);

  /// Prepares a statement for repeated use. Moving the sqlite_db does not
  /// invalidate it; the connection is closed once the sqlite_db and all
  /// its statements are gone (they share the connection).
  caf::expected<statement> prepare(const char* sql);

  int64_t last_insert_rowid() const;
  /// Rows changed by the last INSERT / UPDATE / DELETE.
  int64_t changes() const;

  /// PRAGMA user_version (schema version of the stores).
  caf::expected<int64_t> user_version();

  /// PRAGMA data_version: changes whenever another connection (another
  /// process) committed to the file since the last call; cheap (no disk
  /// read), for polling a shared file.
  caf::expected<int64_t> data_version();

  /// How long each statement waits for a lock held by another connection
  /// (initially options::busy_timeout). Waiting happens in short naps, never
  /// while this connection holds a lock another one waits for (every write
  /// starts with BEGIN IMMEDIATE).
  std::chrono::milliseconds busy_wait() const;
  void set_busy_wait(std::chrono::milliseconds wait);

  /// Upgrades a file from schema `from` (0 < from < version) inside the
  /// schema transaction of ensure_schema.
  using migration = std::function<caf::error(int64_t from)>;

  /// Makes sure this file belongs to the store identified by
  /// `application_id` (PRAGMA application_id) at schema `version`, in one
  /// transaction: an empty file gets `schema_sql`, the id and the version;
  /// a file of another application (or another store), or from a newer
  /// version, is an error naming the file. `schema_sql` must be idempotent
  /// (CREATE ... IF NOT EXISTS).
  caf::error ensure_schema(int32_t application_id, int64_t version,
                           const char* schema_sql,
                           const migration& migrate = {});

  bool is_open() const { return st_ != nullptr; }
  const std::string& path() const;

  /// "<context> <what> <path>: <sqlite message>" as an engine error of
  /// class `unknown`, built from SQLite result code `rc`.
  caf::error make_error(const std::string& context, int rc) const;

private:
  friend class transaction;

  std::shared_ptr<detail::db_state> st_;
};

/// BEGIN IMMEDIATE ... COMMIT; rolls back on destruction unless committed.
class transaction {
public:
  static caf::expected<transaction> begin(sqlite_db& db);

  transaction(transaction&& other) noexcept;
  transaction& operator=(transaction&&) = delete;
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  ~transaction();

  caf::error commit();

private:
  explicit transaction(detail::db_state* db) : db_(db) {
  }
  detail::db_state* db_;
  bool open_ = true;
};

} // namespace aico::store
