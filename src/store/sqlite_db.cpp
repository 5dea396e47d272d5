#include "src/store/sqlite_db.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

namespace aico::store {

int64_t to_unix_ms(store_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           t.time_since_epoch())
    .count();
}

store_time from_unix_ms(int64_t ms) {
  return store_time{std::chrono::duration_cast<store_clock::duration>(
    std::chrono::milliseconds{ms})};
}

namespace {

const char* storage_code(int rc) {
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "busy";
    case SQLITE_FULL:
      return "disk_full";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return "read_only";
    case SQLITE_CANTOPEN:
      return "cannot_open";
    case SQLITE_IOERR:
      return "io_error";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return "damaged";
    case SQLITE_NOMEM:
      return "out_of_memory";
    default:
      return "";
  }
}

} // namespace

namespace detail {

struct db_state {
  using steady = std::chrono::steady_clock;

  sqlite3* db = nullptr;
  std::string path;
  sqlite_db::options opts;
  /// How long one statement waits for a lock another connection holds
  /// (the busy handler below), and a hard end no wait passes (open()).
  std::chrono::milliseconds busy_wait{0};
  steady::time_point busy_deadline = steady::time_point::max();
  steady::time_point busy_started;

  ~db_state() {
    if (db != nullptr)
      sqlite3_close_v2(db);
  }

  caf::error make_error(const std::string& context, int rc) const {
    std::string msg = context + " " + opts.what + " " + path + ": ";
    // sqlite3_errmsg describes the most recent failure on this connection,
    // which is `rc` as long as callers report errors right away.
    if (db != nullptr && sqlite3_errcode(db) == rc)
      msg += sqlite3_errmsg(db);
    else
      msg += sqlite3_errstr(rc);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
      msg += " (is another process using it?)";
    return make_engine_error(error_class::unknown, std::move(msg), 0,
                             storage_code(rc));
  }
};

/// The busy handler of every connection: waits in short naps (a writer
/// holds the lock for one commit, about a millisecond plus an fsync) until
/// busy_wait has passed since the wait began, or the hard deadline.
/// SQLite's own handler sleeps up to 100 ms per round, which makes N
/// processes taking turns on one file much slower than they need to be.
int busy_handler(void* arg, int count) {
  auto* st = static_cast<db_state*>(arg);
  auto now = db_state::steady::now();
  if (count == 0)
    st->busy_started = now;
  auto limit = std::min(st->busy_deadline, st->busy_started + st->busy_wait);
  if (now >= limit)
    return 0;
  auto nap = std::chrono::milliseconds(count < 20 ? 1 : (count < 100 ? 2 : 5));
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(limit
                                                                    - now);
  std::this_thread::sleep_for(std::min<std::chrono::microseconds>(nap, left));
  return 1;
}

} // namespace detail

namespace {

caf::error os_error(const std::string& what, const std::string& path,
                    int err) {
  const char* code = "";
  if (err == ENOSPC || err == EDQUOT)
    code = "disk_full";
  else if (err == EROFS || err == EACCES || err == EPERM)
    code = "read_only";
  return make_engine_error(error_class::unknown,
                           what + " " + path + ": " + std::strerror(err), 0,
                           code);
}

caf::error out_of_memory(const std::string& what) {
  return make_engine_error(error_class::unknown, what + ": out of memory");
}

/// mkdir -p with mode 0700 for every directory it creates.
caf::error make_dirs(const std::string& dir) {
  std::string prefix;
  size_t pos = 0;
  while (pos <= dir.size()) {
    auto next = dir.find('/', pos);
    if (next == std::string::npos)
      next = dir.size();
    prefix = dir.substr(0, next);
    pos = next + 1;
    if (prefix.empty() || prefix == "." || prefix == "..")
      continue;
    if (::mkdir(prefix.c_str(), 0700) == 0)
      continue;
    if (errno != EEXIST)
      return os_error("cannot create directory", prefix, errno);
    struct stat st;
    if (::stat(prefix.c_str(), &st) != 0)
      return os_error("cannot access", prefix, errno);
    if (!S_ISDIR(st.st_mode))
      return os_error("cannot use", prefix, ENOTDIR);
  }
  return caf::none;
}

/// Creates the file with mode 0600 if missing and tightens an existing one
/// to 0600, so SQLite (which copies the database file's mode to -wal and
/// -shm) never creates anything readable by others.
caf::error prepare_file(const std::string& path, const std::string& what) {
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0)
    if (auto err = make_dirs(path.substr(0, slash)))
      return err;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                  S_IRUSR | S_IWUSR);
  if (fd < 0)
    return os_error("cannot open " + what, path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    auto err = errno;
    ::close(fd);
    return os_error("cannot access " + what, path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_engine_error(error_class::unknown, "cannot open " + what + " "
                                                     + path
                                                     + ": not a regular file");
  }
  if ((st.st_mode & 07777) != (S_IRUSR | S_IWUSR)
      && ::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    auto err = errno;
    ::close(fd);
    return os_error("cannot set the mode of " + what, path, err);
  }
  ::close(fd);
  return caf::none;
}

} // namespace

// -- statement ----------------------------------------------------------------

statement::statement(statement&& other) noexcept
  : db_(std::move(other.db_)),
    stmt_(std::exchange(other.stmt_, nullptr)),
    bind_rc_(other.bind_rc_) {
}

statement& statement::operator=(statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr)
      sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    db_ = std::move(other.db_);
    bind_rc_ = other.bind_rc_;
  }
  return *this;
}

statement::~statement() {
  if (stmt_ != nullptr)
    sqlite3_finalize(stmt_);
}

statement& statement::reset() {
  if (stmt_ != nullptr) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  bind_rc_ = SQLITE_OK;
  return *this;
}

statement& statement::bind(int idx, int64_t value) {
  auto rc = sqlite3_bind_int64(stmt_, idx, value);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK)
    bind_rc_ = rc;
  return *this;
}

statement& statement::bind(int idx, std::string_view value) {
  // SQLITE_TRANSIENT: SQLite copies the bytes, the caller's string may go.
  // Empty strings bind as '' (not NULL): data() may be null for them.
  static const char empty[] = "";
  auto rc = sqlite3_bind_text64(stmt_, idx,
                                value.empty() ? empty : value.data(),
                                static_cast<sqlite3_uint64>(value.size()),
                                SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK)
    bind_rc_ = rc;
  return *this;
}

statement& statement::bind_null(int idx) {
  auto rc = sqlite3_bind_null(stmt_, idx);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK)
    bind_rc_ = rc;
  return *this;
}

caf::expected<bool> statement::step() {
  if (stmt_ == nullptr)
    return make_engine_error(error_class::unknown,
                             "sqlite: step on an empty statement");
  if (bind_rc_ != SQLITE_OK) {
    auto rc = bind_rc_;
    reset();
    return db_->make_error("cannot bind a value in", rc);
  }
  auto rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW)
    return true;
  if (rc == SQLITE_DONE) {
    sqlite3_reset(stmt_);
    return false;
  }
  // make the message before the reset (which keeps the error, but be safe)
  auto err = db_->make_error("cannot access", rc);
  sqlite3_reset(stmt_);
  return err;
}

caf::error statement::run() {
  for (;;) {
    auto r = step();
    if (!r)
      return std::move(r.error());
    if (!*r)
      return caf::none;
  }
}

int64_t statement::column_int(int idx) const {
  return sqlite3_column_int64(stmt_, idx);
}

std::string statement::column_text(int idx) const {
  auto p = sqlite3_column_text(stmt_, idx);
  if (p == nullptr)
    return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, idx)));
}

bool statement::column_is_null(int idx) const {
  return sqlite3_column_type(stmt_, idx) == SQLITE_NULL;
}

// -- sqlite_db ----------------------------------------------------------------

caf::expected<sqlite_db> sqlite_db::open(const std::string& path,
                                         options opts) {
  try {
    if (path.empty())
      return make_engine_error(error_class::unknown,
                               "cannot open " + opts.what + ": empty path");
    if (auto err = prepare_file(path, opts.what))
      return err;
    sqlite_db res;
    res.st_ = std::make_shared<detail::db_state>();
    auto& st = *res.st_;
    st.path = path;
    st.opts = opts;
    // Opening waits for locks (the busy handler, the retry below) until
    // this one deadline, not busy_timeout per attempt.
    const auto deadline = std::chrono::steady_clock::now() + opts.busy_timeout;
    st.busy_wait = opts.busy_timeout;
    st.busy_deadline = deadline;
    auto connect = [&]() -> int {
      if (st.db != nullptr) {
        sqlite3_close_v2(st.db);
        st.db = nullptr;
      }
      auto rc = sqlite3_open_v2(path.c_str(), &st.db,
                                SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
                                  | SQLITE_OPEN_NOFOLLOW,
                                nullptr);
      if (rc != SQLITE_OK)
        return rc;
      sqlite3_extended_result_codes(st.db, 0);
      sqlite3_busy_handler(st.db, detail::busy_handler, &st);
      return SQLITE_OK;
    };
    if (auto rc = connect(); rc != SQLITE_OK)
      return st.make_error("cannot open", rc);
    // The first statement reads the header: a file that is not a database
    // fails here ("file is not a database").
    std::string pragmas;
    if (opts.exclusive)
      pragmas += "PRAGMA locking_mode=EXCLUSIVE;";
    pragmas += "PRAGMA journal_mode=WAL;";
    pragmas += opts.full_sync ? "PRAGMA synchronous=FULL;"
                              : "PRAGMA synchronous=NORMAL;";
    pragmas += "PRAGMA foreign_keys=ON;";
    // journal_mode returns a row; exec() ignores it but we check the mode.
    // Two processes switching a new file to WAL at once (two `aico send` on
    // a fresh state directory) both hold a shared lock and want the
    // exclusive one: SQLite answers SQLITE_BUSY at once instead of calling
    // the busy handler, and in exclusive locking mode the shared lock is
    // kept, so retrying on the same connection deadlocks. The loser closes
    // (releasing its lock), waits a random 5-25 ms and tries again, bounded
    // by busy_timeout; the next attempt then waits in the busy handler for
    // the winner to finish.
    {
      std::minstd_rand rng{static_cast<unsigned>(::getpid())
                           ^ static_cast<unsigned>(reinterpret_cast<uintptr_t>(
                             &st))};
      for (;;) {
        auto rc = sqlite3_exec(st.db, pragmas.c_str(), nullptr, nullptr,
                               nullptr);
        if (rc == SQLITE_OK)
          break;
        if (rc != SQLITE_BUSY
            || std::chrono::steady_clock::now() >= deadline)
          return st.make_error("cannot access", rc);
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 21));
        if (auto orc = connect(); orc != SQLITE_OK)
          return st.make_error("cannot open", orc);
      }
    }
    {
      auto mode = res.prepare("PRAGMA journal_mode");
      if (!mode)
        return std::move(mode.error());
      auto row = mode->step();
      if (!row)
        return std::move(row.error());
      auto value = *row ? mode->column_text(0) : std::string{};
      mode->reset();
      if (value != "wal")
        return make_engine_error(error_class::unknown,
                                 "cannot open " + opts.what + " " + path
                                   + ": WAL mode not available (journal mode "
                                   + value + ")");
    }
    if (opts.quick_check) {
      auto check = res.prepare("PRAGMA quick_check");
      if (!check)
        return std::move(check.error());
      std::string first;
      for (;;) {
        auto row = check->step();
        if (!row)
          return std::move(row.error());
        if (!*row)
          break;
        if (first.empty())
          first = check->column_text(0);
      }
      if (first != "ok")
        return make_engine_error(error_class::unknown,
                                 "cannot open " + opts.what + " " + path
                                   + ": the file is damaged (" + first + ")",
                                 0, "damaged");
    }
    // later statements each wait up to busy_timeout again
    st.busy_deadline = std::chrono::steady_clock::time_point::max();
    return res;
  } catch (...) {
    return out_of_memory("cannot open " + opts.what + " " + path);
  }
}

caf::error sqlite_db::remove_files(const std::string& path) {
  try {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      auto p = path + suffix;
      if (::unlink(p.c_str()) != 0 && errno != ENOENT)
        return os_error("cannot delete", p, errno);
    }
    return caf::none;
  } catch (...) {
    return out_of_memory("cannot delete " + path);
  }
}

sqlite_db::sqlite_db(sqlite_db&& other) noexcept = default;
sqlite_db& sqlite_db::operator=(sqlite_db&& other) noexcept = default;
sqlite_db::~sqlite_db() = default;

const std::string& sqlite_db::path() const {
  static const std::string none;
  return st_ ? st_->path : none;
}

caf::error sqlite_db::make_error(const std::string& context, int rc) const {
  if (!st_)
    return make_engine_error(error_class::unknown,
                             context + " database: not open");
  return st_->make_error(context, rc);
}

caf::error sqlite_db::exec(const char* sql) {
  if (!st_)
    return make_error("cannot use", SQLITE_MISUSE);
  char* msg = nullptr;
  auto rc = sqlite3_exec(st_->db, sql, nullptr, nullptr, &msg);
  if (msg != nullptr)
    sqlite3_free(msg);
  if (rc != SQLITE_OK)
    return st_->make_error("cannot access", rc);
  return caf::none;
}

caf::expected<statement> sqlite_db::prepare(const char* sql) {
  if (!st_)
    return make_error("cannot use", SQLITE_MISUSE);
  sqlite3_stmt* stmt = nullptr;
  auto rc = sqlite3_prepare_v3(st_->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                               &stmt, nullptr);
  if (rc != SQLITE_OK) {
    auto err = st_->make_error("cannot prepare a statement for", rc);
    sqlite3_finalize(stmt);
    return err;
  }
  return statement{st_, stmt};
}

int64_t sqlite_db::last_insert_rowid() const {
  return st_ ? sqlite3_last_insert_rowid(st_->db) : 0;
}

int64_t sqlite_db::changes() const {
  return st_ ? sqlite3_changes64(st_->db) : 0;
}

caf::expected<int64_t> sqlite_db::data_version() {
  auto st = prepare("PRAGMA data_version");
  if (!st)
    return std::move(st.error());
  auto row = st->step();
  if (!row)
    return std::move(row.error());
  int64_t res = *row ? st->column_int(0) : 0;
  st->reset();
  return res;
}

std::chrono::milliseconds sqlite_db::busy_wait() const {
  return st_ ? st_->busy_wait : std::chrono::milliseconds{0};
}

void sqlite_db::set_busy_wait(std::chrono::milliseconds wait) {
  if (st_)
    st_->busy_wait = std::max(wait, std::chrono::milliseconds{0});
}

caf::expected<int64_t> sqlite_db::user_version() {
  auto st = prepare("PRAGMA user_version");
  if (!st)
    return std::move(st.error());
  auto row = st->step();
  if (!row)
    return std::move(row.error());
  int64_t res = *row ? st->column_int(0) : 0;
  st->reset();
  return res;
}

caf::error sqlite_db::ensure_schema(int32_t application_id, int64_t version,
                                   const char* schema_sql,
                                   const migration& migrate) {
  try {
    auto txn = transaction::begin(*this);
    if (!txn)
      return std::move(txn.error());
    auto read_int = [this](const char* sql) -> caf::expected<int64_t> {
      auto st = prepare(sql);
      if (!st)
        return std::move(st.error());
      auto row = st->step();
      if (!row)
        return std::move(row.error());
      int64_t res = *row ? st->column_int(0) : 0;
      st->reset();
      return res;
    };
    auto app = read_int("PRAGMA application_id");
    if (!app)
      return std::move(app.error());
    auto ver = read_int("PRAGMA user_version");
    if (!ver)
      return std::move(ver.error());
    auto objects = read_int("SELECT COUNT(*) FROM sqlite_master");
    if (!objects)
      return std::move(objects.error());
    auto prefix = "cannot open " + st_->opts.what + " " + st_->path + ": ";
    if (*app != application_id && !(*app == 0 && *objects == 0))
      return make_engine_error(error_class::unknown,
                               prefix + "the file belongs to something else"
                                 + " (application_id "
                                 + std::to_string(*app) + ")");
    if (*ver > version)
      return make_engine_error(error_class::unknown,
                               prefix + "written by a newer version (schema "
                                 + std::to_string(*ver) + ", this one knows "
                                 + std::to_string(version) + ")");
    if (*objects > 0 && *ver > 0 && *ver < version) {
      if (!migrate)
        return make_engine_error(error_class::unknown,
                                 prefix + "written by an older version (schema "
                                   + std::to_string(*ver) + ") that this one "
                                   + "cannot upgrade");
      if (auto err = migrate(*ver))
        return err;
    }
    if (auto err = exec(schema_sql))
      return err;
    if (*app != application_id || *ver != version) {
      auto pragmas = "PRAGMA application_id=" + std::to_string(application_id)
                     + ";PRAGMA user_version=" + std::to_string(version) + ";";
      if (auto err = exec(pragmas.c_str()))
        return err;
    }
    return txn->commit();
  } catch (...) {
    return out_of_memory("cannot initialize " + path());
  }
}

// -- transaction --------------------------------------------------------------

caf::expected<transaction> transaction::begin(sqlite_db& db) {
  if (!db.st_)
    return db.make_error("cannot use", SQLITE_MISUSE);
  auto rc = sqlite3_exec(db.st_->db, "BEGIN IMMEDIATE", nullptr, nullptr,
                         nullptr);
  if (rc != SQLITE_OK)
    return db.st_->make_error("cannot start a transaction on", rc);
  return transaction{db.st_.get()};
}

transaction::transaction(transaction&& other) noexcept
  : db_(other.db_), open_(std::exchange(other.open_, false)) {
}

transaction::~transaction() {
  if (open_ && db_ != nullptr && !sqlite3_get_autocommit(db_->db))
    sqlite3_exec(db_->db, "ROLLBACK", nullptr, nullptr, nullptr);
}

caf::error transaction::commit() {
  if (!open_)
    return make_engine_error(error_class::unknown,
                             "sqlite: commit of a finished transaction");
  auto rc = sqlite3_exec(db_->db, "COMMIT", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    // COMMIT failed (e.g. disk full, I/O error): roll back so the
    // connection is usable again and nothing half-done stays.
    auto err = db_->make_error("cannot commit to", rc);
    if (!sqlite3_get_autocommit(db_->db))
      sqlite3_exec(db_->db, "ROLLBACK", nullptr, nullptr, nullptr);
    open_ = false;
    return err;
  }
  open_ = false;
  return caf::none;
}

} // namespace aico::store
