// aico-backend-peer: persistence (SQLite, DATA_DIR/peer.db). Users, the
// server-side session rows the WebSocket adapter checks, and every stored
// conversation message. Encryption channels are NOT stored (they live in
// memory and die with the process, as on the real backend).
//
// Schema (documented in docs/profiles.md for integrity checks):
//   users(uuid PK, full_name, nickname, user_type, role, pin_hash,
//         failed_attempts, locked_until REAL unix, last_login TEXT,
//         is_active, created_at, updated_at)
//   sessions(seq PK, uuid UNIQUE, user_uuid, device_uuid, jwt_token_hash
//         (sha256 hex of the JWT), expires_at REAL unix, created_at REAL,
//         is_active)
//   messages(seq PK AUTOINCREMENT, id UNIQUE (the history id a client sees),
//         send_message_id (the message_id of the send that produced it:
//         X-Request-ID, metadata and final chunk), conversation_id, user_id,
//         role 'user'|'assistant', message_type, content, timestamp TEXT,
//         ts REAL unix)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace aico::peer {

struct user_row {
  std::string uuid;
  std::string full_name;
  std::string nickname;
  std::string user_type;
  std::string role;
  std::string pin_hash; ///< empty: no authentication configured
  int failed_attempts = 0;
  double locked_until = 0; ///< unix seconds, 0 = not locked
  std::optional<std::string> last_login;
  bool is_active = true;
  std::string created_at;
  std::string updated_at;
};

struct session_row {
  std::string uuid;
  std::string user_uuid;
  std::string device_uuid;
  double expires_at = 0;
};

struct message_row {
  std::string id;
  std::string send_message_id;
  std::string conversation_id;
  std::string user_id;
  std::string role;
  std::string message_type;
  std::string content;
  std::string timestamp;
  double ts = 0;
};

class store {
public:
  /// Opens (creates) the database. Throws std::runtime_error on failure.
  explicit store(const std::string& path);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Creates the user or updates name, role and PIN of an existing one
  /// (the real backend's CLI user-create / role-assign / set-pin).
  void upsert_user(const std::string& uuid, const std::string& full_name,
                   const std::string& pin_hash, const std::string& role,
                   const std::string& now_iso);
  std::optional<user_row> find_user(const std::string& uuid);
  /// One failed PIN: increments the counter; at `max_attempts` the account
  /// is locked until `lock_until`.
  void record_failure(const std::string& uuid, int max_attempts,
                      double lock_until);
  /// A successful login: counter reset, lock lifted, last_login set.
  void record_login(const std::string& uuid, const std::string& last_login);

  /// A session row for an issued access token; returns its uuid.
  std::string create_session(const std::string& user_uuid,
                             const std::string& device_uuid,
                             const std::string& token_hash, double expires_at,
                             double now);
  /// SessionService.is_token_valid + get_session_by_token: deletes expired
  /// rows, then the first active row with this hash.
  std::optional<session_row> active_session(const std::string& token_hash,
                                            double now);
  void revoke_session(const std::string& uuid);

  void add_message(const message_row& m);
  /// Newest first: the user's messages with ts >= min_ts (and > since_ts if
  /// given, in this conversation if given), at most `limit`.
  std::vector<message_row> recent_messages(const std::string& user_id,
                                           const std::string* conversation_id,
                                           const double* since_ts,
                                           double min_ts, int64_t limit);
  /// Every stored message in insertion order (test introspection).
  std::vector<message_row> all_messages();

private:
  void exec(const char* sql);
  sqlite3* db_ = nullptr;
};

} // namespace aico::peer
