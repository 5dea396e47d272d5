// aico-backend-peer: the behaviour of the real AICO backend's client-facing
// wire (../../docs/profiles.md, and the wire reference it cites), without
// sockets. The server (server.hpp) feeds it requests and WebSocket messages
// and carries out what it answers: a response, a timed NDJSON stream, a
// request that hangs, or a dropped connection.
//
// Single-threaded: every call must come from the same thread (the server's
// io thread), so nothing here locks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "aico_peer/crypto.hpp"
#include "aico_peer/store.hpp"

namespace aico::peer {

namespace json = boost::json;

struct user_spec {
  std::string uuid;
  std::string
    pin; ///< empty: the user has no PIN ("No authentication configured")
  std::string name;
  std::string role = "user";
};

struct peer_config {
  std::string data_dir;
  std::vector<user_spec> users;
  int64_t access_ttl_s = 900;            ///< access JWT (and its session row)
  int64_t refresh_ttl_s = 7 * 24 * 3600; ///< refresh JWT
  double channel_ttl_s = 3600;           ///< encryption channel lifetime
  double handshake_window_s = 30;        ///< |now - timestamp| allowed
  int lockout_attempts = 5;              ///< failed PINs before the lock
  double lockout_s = 300;                ///< lock duration
  double reply_timeout_s = 15;           ///< non-streaming send
  double stream_timeout_s = 30;          ///< streaming send, from stream start
  int model_delay_ms = 40;               ///< between the fake model's chunks
  int thinking_chunks = 3;               ///< thinking chunks before the reply
  double hang_timeout_s = 120;           ///< bound of the plaintext hang
  double history_ttl_s = 86400;          ///< working-memory window of history
  double ws_heartbeat_interval_s = 30;   ///< WS check period; timeout is 3x
  int ws_max_connections = 1000;
  bool enable_faults = false; ///< the /_peer/* test routes
};

struct http_request {
  std::string method;
  std::string target;                         ///< path and query as sent
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string body;
};

struct timed_line {
  double at_s = 0;  ///< offset from the start of the stream
  std::string data; ///< one NDJSON line including its '\n'
};

struct http_reply {
  enum class kind {
    respond, ///< status + headers + body (after delay_s)
    stream,  ///< status + headers, then `lines` as chunks at their times
    hang,    ///< read nothing more, answer nothing (bounded by hang_timeout)
    drop     ///< close the connection without a response (after delay_s)
  };
  kind what = kind::respond;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  double delay_s = 0;
  std::vector<timed_line> lines;
  int cut_after_lines = -1; ///< stream: drop the connection after N lines
  /// Runs once when the exchange is over: true if everything was written,
  /// false if the client went away first.
  std::function<void(bool)> on_finish;
};

/// The WebSocket adapter's per-connection state.
struct ws_state {
  uint64_t id = 0;
  std::string client_id; ///< "ip:port"
  bool authenticated = false;
  std::string token;
  std::string user_uuid;
  std::string session_id;
  json::array roles;
  std::vector<std::string> permissions;
  std::set<std::string> subscriptions;
  double last_heartbeat = 0; ///< monotonic seconds
};

struct ws_action {
  std::vector<std::string> frames; ///< text frames to send, in order
  bool close = false;              ///< then close with code/reason
  int close_code = 1000;
  std::string close_reason;
};

/// Test-only hooks the server provides (used by /_peer/* routes).
struct server_hooks {
  std::function<int()> drop_ws;        ///< closes every WS, returns count
  std::function<void(bool)> set_ws_up; ///< accept (true) or refuse new WS
};

class backend {
public:
  /// Opens DATA_DIR/peer.db, loads or creates the server identity and the
  /// JWT secret (mode 0600 files in DATA_DIR) and creates the users.
  /// Throws std::runtime_error on failure.
  explicit backend(peer_config cfg);
  ~backend();

  const peer_config& config() const { return cfg_; }
  void set_hooks(server_hooks h) { hooks_ = std::move(h); }

  /// Base64 of the server's Ed25519 identity key (stable per data dir).
  std::string identity_key_b64() const;

  http_reply handle(const http_request& req);

  // -- WebSocket adapter ------------------------------------------------------
  /// The welcome frame, or a close 1013 when `open_connections` (the
  /// others, without this one) already reach the maximum.
  ws_action ws_open(ws_state& s, std::size_t open_connections);
  ws_action ws_message(ws_state& s, std::string_view text);
  /// The connection ended (any reason): revokes its session row.
  void ws_closed(ws_state& s);
  /// Heartbeat check: whether this connection is stale at `now` (monotonic).
  bool ws_stale(const ws_state& s, double now) const;

  static double mono_now();
  static double unix_now();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  peer_config cfg_;
  server_hooks hooks_;
};

} // namespace aico::peer
