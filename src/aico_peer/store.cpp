#include "aico_peer/store.hpp"

#include <cctype>
#include <stdexcept>

#include <sqlite3.h>

#include "aico_peer/crypto.hpp"

namespace aico::peer {

namespace {

/// One prepared statement, finalized on scope exit.
class stmt {
public:
  stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("sqlite prepare failed: ")
                               + sqlite3_errmsg(db));
  }
  ~stmt() { sqlite3_finalize(s_); }
  stmt(const stmt&) = delete;
  stmt& operator=(const stmt&) = delete;

  stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  stmt& bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  stmt& bind_null(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  /// True while there is a row.
  bool step() {
    auto rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc == SQLITE_DONE)
      return false;
    throw std::runtime_error(std::string("sqlite step failed: ")
                             + sqlite3_errmsg(db_));
  }
  std::string text(int col) {
    auto p = sqlite3_column_text(s_, col);
    return p ? std::string(
             reinterpret_cast<const char*>(p),
             static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string{};
  }
  bool is_null(int col) { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  double real(int col) { return sqlite3_column_double(s_, col); }
  int64_t integer(int col) { return sqlite3_column_int64(s_, col); }

private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

constexpr const char* message_cols
  = "id, send_message_id, conversation_id, user_id, role, message_type, "
    "content, timestamp, ts";

message_row read_message(stmt& s) {
  message_row m;
  m.id = s.text(0);
  m.send_message_id = s.text(1);
  m.conversation_id = s.text(2);
  m.user_id = s.text(3);
  m.role = s.text(4);
  m.message_type = s.text(5);
  m.content = s.text(6);
  m.timestamp = s.text(7);
  m.ts = s.real(8);
  return m;
}

} // namespace

store::store(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                        | SQLITE_OPEN_NOMUTEX,
                      nullptr)
      != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("cannot open database '" + path + "': " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");
  exec("CREATE TABLE IF NOT EXISTS users("
       " uuid TEXT PRIMARY KEY, full_name TEXT NOT NULL, nickname TEXT,"
       " user_type TEXT NOT NULL, role TEXT NOT NULL, pin_hash TEXT,"
       " failed_attempts INTEGER NOT NULL DEFAULT 0, locked_until REAL,"
       " last_login TEXT, is_active INTEGER NOT NULL DEFAULT 1,"
       " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)");
  exec("CREATE TABLE IF NOT EXISTS sessions("
       " seq INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
       " user_uuid TEXT NOT NULL, device_uuid TEXT NOT NULL,"
       " jwt_token_hash TEXT NOT NULL, expires_at REAL NOT NULL,"
       " created_at REAL NOT NULL, is_active INTEGER NOT NULL)");
  exec("CREATE INDEX IF NOT EXISTS sessions_hash ON sessions(jwt_token_hash)");
  exec("CREATE TABLE IF NOT EXISTS messages("
       " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
       " send_message_id TEXT NOT NULL, conversation_id TEXT NOT NULL,"
       " user_id TEXT NOT NULL, role TEXT NOT NULL,"
       " message_type TEXT NOT NULL, content TEXT NOT NULL,"
       " timestamp TEXT NOT NULL, ts REAL NOT NULL)");
  exec("CREATE INDEX IF NOT EXISTS messages_user ON messages(user_id, ts)");
}

store::~store() {
  sqlite3_close(db_);
}

void store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error("sqlite: " + msg);
  }
}

void store::upsert_user(const std::string& uuid, const std::string& full_name,
                        const std::string& pin_hash, const std::string& role,
                        const std::string& now_iso) {
  // Nickname: the lower-case initials ("Test User" -> "tu").
  std::string nick;
  bool start = true;
  for (char c : full_name) {
    if (c == ' ') {
      start = true;
      continue;
    }
    if (start)
      nick += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  stmt s(db_, "INSERT INTO users(uuid, full_name, nickname, user_type, role,"
              " pin_hash, created_at, updated_at)"
              " VALUES(?1, ?2, ?3, 'person', ?4, ?5, ?6, ?6)"
              " ON CONFLICT(uuid) DO UPDATE SET full_name=?2, nickname=?3,"
              " role=?4, pin_hash=?5, updated_at=?6");
  s.bind(1, uuid).bind(2, full_name).bind(3, nick).bind(4, role);
  if (pin_hash.empty())
    s.bind_null(5);
  else
    s.bind(5, pin_hash);
  s.bind(6, now_iso);
  s.step();
}

std::optional<user_row> store::find_user(const std::string& uuid) {
  stmt s(db_, "SELECT uuid, full_name, nickname, user_type, role, pin_hash,"
              " failed_attempts, locked_until, last_login, is_active,"
              " created_at, updated_at FROM users WHERE uuid=?1");
  s.bind(1, uuid);
  if (!s.step())
    return std::nullopt;
  user_row u;
  u.uuid = s.text(0);
  u.full_name = s.text(1);
  u.nickname = s.text(2);
  u.user_type = s.text(3);
  u.role = s.text(4);
  u.pin_hash = s.text(5);
  u.failed_attempts = static_cast<int>(s.integer(6));
  u.locked_until = s.is_null(7) ? 0 : s.real(7);
  if (!s.is_null(8))
    u.last_login = s.text(8);
  u.is_active = s.integer(9) != 0;
  u.created_at = s.text(10);
  u.updated_at = s.text(11);
  return u;
}

void store::record_failure(const std::string& uuid, int max_attempts,
                           double lock_until) {
  stmt s(db_, "UPDATE users SET failed_attempts = failed_attempts + 1,"
              " locked_until = CASE WHEN failed_attempts + 1 >= ?2 THEN ?3"
              " ELSE locked_until END WHERE uuid=?1");
  s.bind(1, uuid)
    .bind(2, static_cast<int64_t>(max_attempts))
    .bind(3, lock_until);
  s.step();
}

void store::record_login(const std::string& uuid,
                         const std::string& last_login) {
  stmt s(db_, "UPDATE users SET failed_attempts=0, locked_until=NULL,"
              " last_login=?2 WHERE uuid=?1");
  s.bind(1, uuid).bind(2, last_login);
  s.step();
}

std::string store::create_session(const std::string& user_uuid,
                                  const std::string& device_uuid,
                                  const std::string& token_hash,
                                  double expires_at, double now) {
  auto id = uuid4();
  stmt s(db_, "INSERT INTO sessions(uuid, user_uuid, device_uuid,"
              " jwt_token_hash, expires_at, created_at, is_active)"
              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, 1)");
  s.bind(1, id).bind(2, user_uuid).bind(3, device_uuid).bind(4, token_hash);
  s.bind(5, expires_at).bind(6, now);
  s.step();
  return id;
}

std::optional<session_row> store::active_session(const std::string& token_hash,
                                                 double now) {
  {
    stmt del(db_, "DELETE FROM sessions WHERE expires_at <= ?1");
    del.bind(1, now);
    del.step();
  }
  stmt s(db_, "SELECT uuid, user_uuid, device_uuid, expires_at FROM sessions"
              " WHERE jwt_token_hash=?1 AND is_active=1 ORDER BY seq LIMIT 1");
  s.bind(1, token_hash);
  if (!s.step())
    return std::nullopt;
  session_row r;
  r.uuid = s.text(0);
  r.user_uuid = s.text(1);
  r.device_uuid = s.text(2);
  r.expires_at = s.real(3);
  return r;
}

void store::revoke_session(const std::string& uuid) {
  stmt s(db_, "UPDATE sessions SET is_active=0 WHERE uuid=?1");
  s.bind(1, uuid);
  s.step();
}

void store::add_message(const message_row& m) {
  stmt s(db_, "INSERT INTO messages(id, send_message_id, conversation_id,"
              " user_id, role, message_type, content, timestamp, ts)"
              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  s.bind(1, m.id).bind(2, m.send_message_id).bind(3, m.conversation_id);
  s.bind(4, m.user_id).bind(5, m.role).bind(6, m.message_type);
  s.bind(7, m.content).bind(8, m.timestamp).bind(9, m.ts);
  s.step();
}

std::vector<message_row>
store::recent_messages(const std::string& user_id,
                       const std::string* conversation_id,
                       const double* since_ts, double min_ts, int64_t limit) {
  std::string sql = std::string("SELECT ") + message_cols
                    + " FROM messages WHERE user_id=?1 AND ts >= ?2";
  if (conversation_id)
    sql += " AND conversation_id=?3";
  if (since_ts)
    sql += " AND ts > ?4";
  sql += " ORDER BY ts DESC, seq DESC LIMIT ?5";
  stmt s(db_, sql.c_str());
  s.bind(1, user_id).bind(2, min_ts);
  if (conversation_id)
    s.bind(3, *conversation_id);
  if (since_ts)
    s.bind(4, *since_ts);
  s.bind(5, limit);
  std::vector<message_row> out;
  while (s.step())
    out.push_back(read_message(s));
  return out;
}

std::vector<message_row> store::all_messages() {
  stmt s(db_,
         (std::string("SELECT ") + message_cols + " FROM messages ORDER BY seq")
           .c_str());
  std::vector<message_row> out;
  while (s.step())
    out.push_back(read_message(s));
  return out;
}

} // namespace aico::peer
