// aico reference gateway: persistent state in SQLite (DATA_DIR/gateway.db).
//
// One connection in WAL mode, guarded by a mutex; every statement is
// prepared once and reused. Every method is atomic (runs under the mutex,
// multi-statement changes in one transaction) and throws std::runtime_error
// on database errors.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace aico::gateway {

struct user_record {
  std::string id;
  std::string username;
  std::string password_hash; ///< empty: cannot log in
  std::string role;          ///< "user", "admin" or "bot"
  std::string display_name;
  std::string preferences = "{}"; ///< JSON object text
  int64_t created_at_ms = 0;
};

struct message_record {
  int64_t seq = 0;
  std::string id;
  std::string conversation_id;
  std::string sender_id;
  std::string sender; ///< sender's username (filled on reads)
  std::string content;
  std::string type = "text";
  int64_t timestamp_ms = 0;
  std::string status = "sent";
  std::optional<int64_t> read_at_ms;
  std::string metadata = "{}"; ///< JSON object text
  std::optional<std::string> reply_to;
};

enum class insert_result {
  created,   ///< stored; the record has its seq now
  exists,    ///< the id was stored by the same sender; record = stored one
  conflict,  ///< the id was stored by another sender
  forbidden, ///< the conversation belongs to someone else
};

enum class refresh_result {
  ok,      ///< rotated; old token marked used, new one stored in its family
  unknown, ///< not found, revoked or expired
  reused,  ///< already used: the whole family is revoked now
};

class store {
public:
  /// Opens (creates) the database and its schema. Throws on failure.
  explicit store(const std::string& path);
  ~store();

  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// True if the database answers.
  bool ping();

  // -- users --
  /// Creates the user, or updates password hash and role of an existing one.
  user_record upsert_user(const std::string& username,
                          const std::string& password_hash,
                          const std::string& role);
  /// Creates a user with a fixed id if missing (the bot).
  void ensure_user(const std::string& id, const std::string& username,
                   const std::string& role, const std::string& display_name);
  std::optional<user_record> user_by_name(const std::string& username);
  std::optional<user_record> user_by_id(const std::string& id);
  std::vector<user_record> users();
  void set_preferences(const std::string& user_id, const std::string& json);
  int64_t count_users();
  int64_t count_messages();

  // -- conversations and messages --
  std::optional<std::string> conversation_owner(const std::string& id);
  /// The conversation the user last wrote to.
  std::optional<std::string> last_conversation_of(const std::string& user_id);
  /// Idempotent insert (see insert_result). A missing conversation is created
  /// with `owner_id` as owner; an existing one must belong to `owner_id`.
  insert_result insert_message(message_record& m, const std::string& owner_id);
  std::optional<message_record> message_by_id(const std::string& id);
  /// Without `since`: the latest `limit`; with it: the first `limit` with
  /// seq > since. Ascending seq. `has_more`: messages after the last one.
  std::vector<message_record> history(const std::string& conversation_id,
                                      std::optional<int64_t> since,
                                      int limit, bool& has_more);
  /// Marks a message read (keeps an earlier read_at). `changed` tells
  /// whether it was unread before.
  std::optional<message_record> mark_read(const std::string& id,
                                          int64_t now_ms, bool& changed);

  // -- refresh tokens (by SHA-256 hash) --
  void add_refresh(const std::string& hash, const std::string& user_id,
                   const std::string& family_id, int64_t expires_at_s);
  /// Rotates old -> new atomically; on ok `user_id` is the owner.
  refresh_result rotate_refresh(const std::string& old_hash,
                                const std::string& new_hash,
                                int64_t new_expires_at_s, int64_t now_s,
                                std::string& user_id);
  /// Owner and family of a stored refresh token.
  std::optional<std::pair<std::string, std::string>>
  refresh_owner(const std::string& hash);
  void revoke_family(const std::string& family_id);
  void revoke_user_refresh(const std::string& user_id);

  // -- revoked access tokens --
  void revoke_jti(const std::string& jti, int64_t exp_s);
  /// Not yet expired revocations. Also purges expired revocations and
  /// expired refresh tokens (called at startup).
  std::vector<std::pair<std::string, int64_t>> revoked_jtis(int64_t now_s);

private:
  sqlite3_stmt* prepare(const char* sql);
  void exec(const char* sql);
  [[noreturn]] void fail(const char* what);
  message_record read_message(sqlite3_stmt* st);
  user_record read_user(sqlite3_stmt* st);
  std::optional<message_record> message_by_id_locked(const std::string& id);
  std::optional<user_record> user_by_name_locked(const std::string& username);

  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*> stmts_;
};

} // namespace aico::gateway
