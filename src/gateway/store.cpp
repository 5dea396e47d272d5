#include "gateway/store.hpp"

#include <algorithm>
#include <stdexcept>

#include <sys/stat.h>

#include <sqlite3.h>

#include "gateway/json_util.hpp"
#include "gateway/jwt.hpp"

namespace aico::gateway {

namespace {

// Resets a cached statement when leaving scope.
struct stmt_use {
  sqlite3_stmt* st;
  ~stmt_use() {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
};

void bind_value(sqlite3_stmt* st, int i, const std::string& v) {
  sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}

void bind_value(sqlite3_stmt* st, int i, int64_t v) {
  sqlite3_bind_int64(st, i, v);
}

void bind_opt(sqlite3_stmt* st, int i, const std::optional<std::string>& v) {
  if (v)
    bind_value(st, i, *v);
  else
    sqlite3_bind_null(st, i);
}

std::string col_text(sqlite3_stmt* st, int i) {
  auto p = sqlite3_column_text(st, i);
  if (!p)
    return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<std::size_t>(sqlite3_column_bytes(st, i)));
}

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(
  id TEXT PRIMARY KEY NOT NULL,
  username TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL,
  display_name TEXT NOT NULL,
  preferences TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations(
  id TEXT PRIMARY KEY NOT NULL,
  owner_id TEXT NOT NULL REFERENCES users(id),
  created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  conversation_id TEXT NOT NULL REFERENCES conversations(id),
  sender_id TEXT NOT NULL REFERENCES users(id),
  content TEXT NOT NULL,
  type TEXT NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'sent',
  read_at INTEGER,
  metadata TEXT NOT NULL DEFAULT '{}',
  reply_to TEXT);
CREATE INDEX IF NOT EXISTS messages_conversation_seq
  ON messages(conversation_id, seq);
CREATE INDEX IF NOT EXISTS messages_sender_seq ON messages(sender_id, seq);
CREATE TABLE IF NOT EXISTS refresh_tokens(
  hash TEXT PRIMARY KEY NOT NULL,
  user_id TEXT NOT NULL,
  family_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  revoked INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens(user_id);
CREATE TABLE IF NOT EXISTS revoked_jti(
  jti TEXT PRIMARY KEY NOT NULL,
  exp INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1');
)sql";

constexpr const char* message_columns =
  "SELECT m.seq, m.id, m.conversation_id, m.sender_id,"
  " COALESCE(u.username, ''), m.content, m.type, m.timestamp_ms, m.status,"
  " m.read_at, m.metadata, m.reply_to"
  " FROM messages m LEFT JOIN users u ON u.id = m.sender_id ";

constexpr const char* user_columns =
  "SELECT id, username, password_hash, role, display_name, preferences,"
  " created_at FROM users ";

} // namespace

// Runs BEGIN IMMEDIATE ... COMMIT, rolling back if not committed.
class transaction {
public:
  explicit transaction(sqlite3* db) : db_(db) {
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr)
        != SQLITE_OK)
      throw std::runtime_error(std::string("sqlite BEGIN: ")
                               + sqlite3_errmsg(db_));
  }
  ~transaction() {
    if (!done_)
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("sqlite COMMIT: ")
                               + sqlite3_errmsg(db_));
    done_ = true;
  }

private:
  sqlite3* db_;
  bool done_ = false;
};

store::store(const std::string& path) {
  int rc = sqlite3_open_v2(path.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                             | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("cannot open database " + path + ": " + msg);
  }
  ::chmod(path.c_str(), 0600); // holds password hashes; best effort
  try {
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec("PRAGMA foreign_keys=ON");
    exec(schema_sql);
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

store::~store() {
  for (auto& [sql, st] : stmts_)
    sqlite3_finalize(st);
  sqlite3_close(db_);
}

void store::fail(const char* what) {
  throw std::runtime_error(std::string("sqlite ") + what + ": "
                           + sqlite3_errmsg(db_));
}

void store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error("sqlite: " + msg);
  }
}

sqlite3_stmt* store::prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end())
    return it->second;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr)
      != SQLITE_OK)
    fail("prepare");
  stmts_.emplace(sql, st);
  return st;
}

namespace {

// Steps a statement expecting no row.
void step_done(sqlite3* db, sqlite3_stmt* st) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw std::runtime_error(std::string("sqlite step: ")
                             + sqlite3_errmsg(db));
}

// Steps a statement; true if a row is there.
bool step_row(sqlite3* db, sqlite3_stmt* st) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    return true;
  if (rc == SQLITE_DONE)
    return false;
  throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errmsg(db));
}

} // namespace

bool store::ping() {
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    auto st = prepare("SELECT 1");
    stmt_use use{st};
    return step_row(db_, st);
  } catch (...) {
    return false;
  }
}

user_record store::read_user(sqlite3_stmt* st) {
  user_record u;
  u.id = col_text(st, 0);
  u.username = col_text(st, 1);
  u.password_hash = col_text(st, 2);
  u.role = col_text(st, 3);
  u.display_name = col_text(st, 4);
  u.preferences = col_text(st, 5);
  u.created_at_ms = sqlite3_column_int64(st, 6);
  return u;
}

std::optional<user_record>
store::user_by_name_locked(const std::string& username) {
  static const std::string sql = std::string(user_columns)
                                 + "WHERE username = ?1";
  auto st = prepare(sql.c_str());
  stmt_use use{st};
  bind_value(st, 1, username);
  if (!step_row(db_, st))
    return std::nullopt;
  return read_user(st);
}

user_record store::upsert_user(const std::string& username,
                               const std::string& password_hash,
                               const std::string& role) {
  std::lock_guard<std::mutex> lock(mutex_);
  transaction tx(db_);
  if (auto existing = user_by_name_locked(username)) {
    auto st = prepare(
      "UPDATE users SET password_hash = ?1, role = ?2 WHERE id = ?3");
    stmt_use use{st};
    bind_value(st, 1, password_hash);
    bind_value(st, 2, role);
    bind_value(st, 3, existing->id);
    step_done(db_, st);
  } else {
    auto st = prepare(
      "INSERT INTO users(id, username, password_hash, role, display_name,"
      " preferences, created_at) VALUES(?1, ?2, ?3, ?4, ?5, '{}', ?6)");
    stmt_use use{st};
    bind_value(st, 1, "u_" + random_hex(8));
    bind_value(st, 2, username);
    bind_value(st, 3, password_hash);
    bind_value(st, 4, role);
    bind_value(st, 5, username);
    bind_value(st, 6, now_ms());
    step_done(db_, st);
  }
  auto u = user_by_name_locked(username);
  if (!u)
    throw std::runtime_error("upsert_user: user vanished");
  tx.commit();
  return *u;
}

void store::ensure_user(const std::string& id, const std::string& username,
                        const std::string& role,
                        const std::string& display_name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare(
    "INSERT OR IGNORE INTO users(id, username, password_hash, role,"
    " display_name, preferences, created_at)"
    " VALUES(?1, ?2, '', ?3, ?4, '{}', ?5)");
  stmt_use use{st};
  bind_value(st, 1, id);
  bind_value(st, 2, username);
  bind_value(st, 3, role);
  bind_value(st, 4, display_name);
  bind_value(st, 5, now_ms());
  step_done(db_, st);
}

std::optional<user_record> store::user_by_name(const std::string& username) {
  std::lock_guard<std::mutex> lock(mutex_);
  return user_by_name_locked(username);
}

std::optional<user_record> store::user_by_id(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  static const std::string sql = std::string(user_columns) + "WHERE id = ?1";
  auto st = prepare(sql.c_str());
  stmt_use use{st};
  bind_value(st, 1, id);
  if (!step_row(db_, st))
    return std::nullopt;
  return read_user(st);
}

std::vector<user_record> store::users() {
  std::lock_guard<std::mutex> lock(mutex_);
  static const std::string sql = std::string(user_columns)
                                 + "ORDER BY created_at, username";
  auto st = prepare(sql.c_str());
  stmt_use use{st};
  std::vector<user_record> out;
  while (step_row(db_, st))
    out.push_back(read_user(st));
  return out;
}

void store::set_preferences(const std::string& user_id,
                            const std::string& json) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("UPDATE users SET preferences = ?1 WHERE id = ?2");
  stmt_use use{st};
  bind_value(st, 1, json);
  bind_value(st, 2, user_id);
  step_done(db_, st);
}

int64_t store::count_users() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("SELECT COUNT(*) FROM users WHERE role != 'bot'");
  stmt_use use{st};
  return step_row(db_, st) ? sqlite3_column_int64(st, 0) : 0;
}

int64_t store::count_messages() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("SELECT COUNT(*) FROM messages");
  stmt_use use{st};
  return step_row(db_, st) ? sqlite3_column_int64(st, 0) : 0;
}

std::optional<std::string> store::conversation_owner(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("SELECT owner_id FROM conversations WHERE id = ?1");
  stmt_use use{st};
  bind_value(st, 1, id);
  if (!step_row(db_, st))
    return std::nullopt;
  return col_text(st, 0);
}

std::optional<std::string>
store::last_conversation_of(const std::string& user_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("SELECT conversation_id FROM messages WHERE sender_id = ?1"
                    " ORDER BY seq DESC LIMIT 1");
  stmt_use use{st};
  bind_value(st, 1, user_id);
  if (!step_row(db_, st))
    return std::nullopt;
  return col_text(st, 0);
}

message_record store::read_message(sqlite3_stmt* st) {
  message_record m;
  m.seq = sqlite3_column_int64(st, 0);
  m.id = col_text(st, 1);
  m.conversation_id = col_text(st, 2);
  m.sender_id = col_text(st, 3);
  m.sender = col_text(st, 4);
  m.content = col_text(st, 5);
  m.type = col_text(st, 6);
  m.timestamp_ms = sqlite3_column_int64(st, 7);
  m.status = col_text(st, 8);
  if (sqlite3_column_type(st, 9) != SQLITE_NULL)
    m.read_at_ms = sqlite3_column_int64(st, 9);
  m.metadata = col_text(st, 10);
  if (sqlite3_column_type(st, 11) != SQLITE_NULL)
    m.reply_to = col_text(st, 11);
  return m;
}

std::optional<message_record>
store::message_by_id_locked(const std::string& id) {
  static const std::string sql = std::string(message_columns)
                                 + "WHERE m.id = ?1";
  auto st = prepare(sql.c_str());
  stmt_use use{st};
  bind_value(st, 1, id);
  if (!step_row(db_, st))
    return std::nullopt;
  return read_message(st);
}

std::optional<message_record> store::message_by_id(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return message_by_id_locked(id);
}

insert_result store::insert_message(message_record& m,
                                    const std::string& owner_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  transaction tx(db_);
  if (auto existing = message_by_id_locked(m.id)) {
    if (existing->sender_id != m.sender_id)
      return insert_result::conflict;
    m = std::move(*existing);
    return insert_result::exists;
  }
  {
    auto st = prepare("SELECT owner_id FROM conversations WHERE id = ?1");
    stmt_use use{st};
    bind_value(st, 1, m.conversation_id);
    if (step_row(db_, st)) {
      if (col_text(st, 0) != owner_id)
        return insert_result::forbidden;
    } else {
      auto ins = prepare("INSERT INTO conversations(id, owner_id, created_at)"
                         " VALUES(?1, ?2, ?3)");
      stmt_use use_ins{ins};
      bind_value(ins, 1, m.conversation_id);
      bind_value(ins, 2, owner_id);
      bind_value(ins, 3, m.timestamp_ms);
      step_done(db_, ins);
    }
  }
  {
    auto st = prepare(
      "INSERT INTO messages(id, conversation_id, sender_id, content, type,"
      " timestamp_ms, status, read_at, metadata, reply_to)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, 'sent', NULL, ?7, ?8)");
    stmt_use use{st};
    bind_value(st, 1, m.id);
    bind_value(st, 2, m.conversation_id);
    bind_value(st, 3, m.sender_id);
    bind_value(st, 4, m.content);
    bind_value(st, 5, m.type);
    bind_value(st, 6, m.timestamp_ms);
    bind_value(st, 7, m.metadata);
    bind_opt(st, 8, m.reply_to);
    step_done(db_, st);
  }
  auto stored = message_by_id_locked(m.id);
  if (!stored)
    throw std::runtime_error("insert_message: message vanished");
  tx.commit();
  m = std::move(*stored);
  return insert_result::created;
}

std::vector<message_record>
store::history(const std::string& conversation_id,
               std::optional<int64_t> since, int limit, bool& has_more) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<message_record> out;
  if (since) {
    static const std::string sql =
      std::string(message_columns)
      + "WHERE m.conversation_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3";
    auto st = prepare(sql.c_str());
    stmt_use use{st};
    bind_value(st, 1, conversation_id);
    bind_value(st, 2, *since);
    bind_value(st, 3, static_cast<int64_t>(limit));
    while (step_row(db_, st))
      out.push_back(read_message(st));
  } else {
    static const std::string sql =
      std::string(message_columns)
      + "WHERE m.conversation_id = ?1 ORDER BY m.seq DESC LIMIT ?2";
    auto st = prepare(sql.c_str());
    stmt_use use{st};
    bind_value(st, 1, conversation_id);
    bind_value(st, 2, static_cast<int64_t>(limit));
    while (step_row(db_, st))
      out.push_back(read_message(st));
    std::reverse(out.begin(), out.end());
  }
  int64_t last = out.empty() ? since.value_or(0) : out.back().seq;
  auto st = prepare("SELECT EXISTS(SELECT 1 FROM messages"
                    " WHERE conversation_id = ?1 AND seq > ?2)");
  stmt_use use{st};
  bind_value(st, 1, conversation_id);
  bind_value(st, 2, last);
  has_more = step_row(db_, st) && sqlite3_column_int64(st, 0) != 0;
  return out;
}

std::optional<message_record> store::mark_read(const std::string& id,
                                               int64_t now_ms, bool& changed) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("UPDATE messages SET status = 'read', read_at = ?1"
                    " WHERE id = ?2 AND status != 'read'");
  stmt_use use{st};
  bind_value(st, 1, now_ms);
  bind_value(st, 2, id);
  step_done(db_, st);
  changed = sqlite3_changes(db_) > 0;
  return message_by_id_locked(id);
}

void store::add_refresh(const std::string& hash, const std::string& user_id,
                        const std::string& family_id, int64_t expires_at_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare(
    "INSERT INTO refresh_tokens(hash, user_id, family_id, expires_at, used,"
    " revoked, created_at) VALUES(?1, ?2, ?3, ?4, 0, 0, ?5)");
  stmt_use use{st};
  bind_value(st, 1, hash);
  bind_value(st, 2, user_id);
  bind_value(st, 3, family_id);
  bind_value(st, 4, expires_at_s);
  bind_value(st, 5, now_s());
  step_done(db_, st);
}

refresh_result store::rotate_refresh(const std::string& old_hash,
                                     const std::string& new_hash,
                                     int64_t new_expires_at_s, int64_t now,
                                     std::string& user_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  transaction tx(db_);
  std::string family;
  int64_t expires_at = 0;
  bool used = false;
  bool revoked = false;
  {
    auto st = prepare("SELECT user_id, family_id, expires_at, used, revoked"
                      " FROM refresh_tokens WHERE hash = ?1");
    stmt_use use{st};
    bind_value(st, 1, old_hash);
    if (!step_row(db_, st))
      return refresh_result::unknown;
    user_id = col_text(st, 0);
    family = col_text(st, 1);
    expires_at = sqlite3_column_int64(st, 2);
    used = sqlite3_column_int64(st, 3) != 0;
    revoked = sqlite3_column_int64(st, 4) != 0;
  }
  auto revoke = [&] {
    auto st = prepare("UPDATE refresh_tokens SET revoked = 1"
                      " WHERE family_id = ?1");
    stmt_use use{st};
    bind_value(st, 1, family);
    step_done(db_, st);
  };
  if (used) {
    // Reuse: treat as theft, the whole family is revoked.
    revoke();
    tx.commit();
    return refresh_result::reused;
  }
  if (revoked || expires_at <= now)
    return refresh_result::unknown;
  {
    auto st = prepare("UPDATE refresh_tokens SET used = 1 WHERE hash = ?1");
    stmt_use use{st};
    bind_value(st, 1, old_hash);
    step_done(db_, st);
  }
  {
    auto st = prepare(
      "INSERT INTO refresh_tokens(hash, user_id, family_id, expires_at, used,"
      " revoked, created_at) VALUES(?1, ?2, ?3, ?4, 0, 0, ?5)");
    stmt_use use{st};
    bind_value(st, 1, new_hash);
    bind_value(st, 2, user_id);
    bind_value(st, 3, family);
    bind_value(st, 4, new_expires_at_s);
    bind_value(st, 5, now);
    step_done(db_, st);
  }
  tx.commit();
  return refresh_result::ok;
}

std::optional<std::pair<std::string, std::string>>
store::refresh_owner(const std::string& hash) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare(
    "SELECT user_id, family_id FROM refresh_tokens WHERE hash = ?1");
  stmt_use use{st};
  bind_value(st, 1, hash);
  if (!step_row(db_, st))
    return std::nullopt;
  return std::make_pair(col_text(st, 0), col_text(st, 1));
}

void store::revoke_family(const std::string& family_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("UPDATE refresh_tokens SET revoked = 1"
                    " WHERE family_id = ?1");
  stmt_use use{st};
  bind_value(st, 1, family_id);
  step_done(db_, st);
}

void store::revoke_user_refresh(const std::string& user_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("UPDATE refresh_tokens SET revoked = 1"
                    " WHERE user_id = ?1");
  stmt_use use{st};
  bind_value(st, 1, user_id);
  step_done(db_, st);
}

void store::revoke_jti(const std::string& jti, int64_t exp_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto st = prepare("INSERT OR REPLACE INTO revoked_jti(jti, exp)"
                    " VALUES(?1, ?2)");
  stmt_use use{st};
  bind_value(st, 1, jti);
  bind_value(st, 2, exp_s);
  step_done(db_, st);
}

std::vector<std::pair<std::string, int64_t>>
store::revoked_jtis(int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  {
    auto st = prepare("DELETE FROM revoked_jti WHERE exp <= ?1");
    stmt_use use{st};
    bind_value(st, 1, now);
    step_done(db_, st);
  }
  {
    // Expired refresh tokens can no longer be used or reused.
    auto st = prepare("DELETE FROM refresh_tokens WHERE expires_at <= ?1");
    stmt_use use{st};
    bind_value(st, 1, now);
    step_done(db_, st);
  }
  std::vector<std::pair<std::string, int64_t>> out;
  auto st = prepare("SELECT jti, exp FROM revoked_jti");
  stmt_use use{st};
  while (step_row(db_, st))
    out.emplace_back(col_text(st, 0), sqlite3_column_int64(st, 1));
  return out;
}

} // namespace aico::gateway
