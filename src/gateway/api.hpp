// aico reference gateway: the transport-independent API core.
//
// One logical API, three front doors (HTTP/REST, WebSocket, ZeroMQ IPC). Each
// front door turns its wire format into an `api_request`, calls
// `api::handle`, and turns the `api_response` back into its wire format. Server
// push goes through `api::subscribe`. The contract is docs/protocol.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gateway/login_throttle.hpp"

namespace aico::gateway {

/// Which front door a request came through (for health, faults and logs).
enum class front_door { http, ws, ipc, grpc };

/// "http", "ws", "ipc" or "grpc".
const char* to_string(front_door door);

/// A request as every front door hands it to the core.
struct api_request {
  /// HTTP verb in upper case: GET, POST, PUT, DELETE.
  std::string method;
  /// Path relative to `/api/v1`, including the query string, e.g.
  /// `/conversations/current/messages?limit=20`. A leading `/api/v1` is
  /// accepted and stripped by `handle`.
  std::string target;
  /// Bearer access token, empty if none was presented.
  std::string token;
  /// Raw request body (JSON text), may be empty.
  std::string body;
  front_door door = front_door::http;
  /// Who is calling, as far as the front door knows: the client's IP address
  /// (HTTP, WebSocket), "ipc:" + its CURVE public key, or "ipc". Used to
  /// throttle failed logins per peer; empty = unknown (not throttled by
  /// peer).
  std::string peer;
};

/// Test-only misbehaviour of one answer (--enable-faults, `misbehave` in
/// POST /admin/faults; docs/protocol.md, "admin"). The core prepares the
/// body (and sleeps for `slow`); the front door carries out what only it
/// can do: cut the answer off (`truncated`), send nothing (`hang`), and over
/// WebSocket put a malformed body into the frame as it is.
enum class misbehave_mode {
  none,
  malformed_json, ///< 200 whose body is not valid JSON
  not_envelope,   ///< 200 whose body is valid JSON but not an envelope
  truncated,      ///< the answer is cut off (HTTP: short body, then close)
  slow,           ///< a correct answer after delay_ms
  hang,           ///< no answer at all
};

/// "malformed_json", "not_envelope", ...
const char* to_string(misbehave_mode m);

/// Which calls misbehave and how.
struct misbehave_rule {
  std::string door = "any"; ///< "http", "ws", "ipc", "grpc" or "any"
  std::string method;       ///< upper case; empty = any
  std::string path;         ///< "/conversations/messages" (no /api/v1, no query)
  misbehave_mode mode = misbehave_mode::none;
  int delay_ms = 0;   ///< slow: the delay
  bool after = false; ///< false: answer without processing; true: process, then misbehave
  int count = 1;      ///< as asked
  int remaining = 1;  ///< calls still to misbehave
};

/// A response in the one envelope format (docs/protocol.md, "Envelope").
struct api_response {
  int status = 200;
  /// JSON text: `{"success":true,"data":...}` or
  /// `{"success":false,"message":...,"code":...,"details":{...}}`.
  std::string body;
  /// Extra headers, e.g. `Retry-After`. Front doors without headers (WS, IPC)
  /// carry them in their response frame.
  std::vector<std::pair<std::string, std::string>> headers;
  /// What the front door must do with this answer (test-only faults).
  misbehave_mode misbehave = misbehave_mode::none;
};

/// A server-pushed event for one user.
struct event {
  std::string topic; ///< e.g. "message", "message.stream", "message.read"
  std::string data;  ///< JSON text
  uint64_t seq = 0;  ///< gateway-wide monotonic event number
};

/// The authenticated caller, from a verified access token.
struct principal {
  std::string user_id;
  std::string username;
  std::string role; ///< "user" or "admin"
  int64_t exp = 0;  ///< seconds since epoch
};

/// Called for every event of the subscribed user. Called from arbitrary
/// threads; must not block (queue and wake your own loop).
using event_sink = std::function<void(const event&)>;

/// What a subscription that resumes from a `since` seq got from the replay
/// buffer.
struct replay_info {
  uint64_t since = 0;    ///< the seq asked for (0 = no replay asked)
  bool complete = true;  ///< every event of the user after `since` replayed
  uint64_t replayed = 0; ///< events delivered from the buffer
};

/// Fault injection state (only changeable with --enable-faults).
struct fault_state {
  bool ipc_up = true;
  bool ws_up = true;
  bool grpc_up = true;
  int latency_ms = 0;     ///< added to every API request
  double fail_ratio = 0;  ///< fraction of API requests failed with fail_status
  int fail_status = 503;
  std::optional<misbehave_rule> misbehave; ///< none when empty
};

/// A user given on the command line: NAME:PASSWORD[:ROLE].
struct user_spec {
  std::string username;
  std::string password;
  std::string role = "user";
};

struct gateway_config {
  std::string data_dir;
  std::vector<user_spec> users;
  int64_t access_ttl_s = 900;
  int64_t refresh_ttl_s = 30 * 24 * 3600;
  bool enable_faults = false;
  std::size_t max_body_bytes = 64 * 1024;
  int bot_chunk_delay_ms = 20; ///< delay between streamed bot chunks
  bool bot_enabled = true;
  double rate_limit_per_s = 0; ///< per user, 0 = off
  int rate_limit_burst = 0;    ///< 0 = same as rate
  /// Replay buffer (docs/protocol.md "Events"): the most recent events,
  /// at most this many and at most this old, are kept for subscribers that
  /// resume from a `since` seq.
  std::size_t replay_events = 10000;
  int replay_seconds = 300;
  login_limits login;          ///< failed-login throttling
  std::string version = "0.1.0";
};

/// The API core. Thread-safe: `handle`, `authenticate`, `subscribe` and
/// `unsubscribe` may be called concurrently from any front-door thread.
class api {
public:
  /// Opens (creates) the store in cfg.data_dir and upserts cfg.users.
  /// Throws std::runtime_error with a clear message if that fails (startup).
  explicit api(gateway_config cfg);
  ~api();

  api(const api&) = delete;
  api& operator=(const api&) = delete;

  /// Handles one request. Never throws; every failure is an envelope.
  api_response handle(const api_request& req);

  /// Verifies an access token. On failure returns nullopt and, if `err` is
  /// not null, stores the 401 envelope there.
  std::optional<principal> authenticate(const std::string& token,
                                        api_response* err = nullptr);

  /// Subscribes to the events of one user; returns a handle for unsubscribe.
  /// Sinks are called from one dispatcher thread, in `seq` order, with no
  /// lock of the core held (a sink may call unsubscribe).
  /// With `since` > 0 (the last event seq the client saw), the buffered
  /// events of this user with a greater seq are delivered first, from this
  /// call (before it returns) and before any live event, each once and in
  /// order; `info` (if given) says how many and whether the buffer still
  /// reached back to `since` (complete) — set before the first replayed
  /// event is delivered.
  uint64_t subscribe(const std::string& user_id, event_sink sink,
                     uint64_t since = 0, replay_info* info = nullptr);
  /// Does not wait for a delivery in progress: a sink may still run once
  /// while or right after this returns, so keep what it captures alive with
  /// shared ownership (e.g. a shared_ptr/weak_ptr to the connection).
  void unsubscribe(uint64_t handle);

  /// Current fault switches.
  fault_state faults() const;

  /// Told about every change of the fault switches. `drop_ws` is true when
  /// the change asks to drop every open WebSocket once.
  using fault_listener = std::function<void(const fault_state&, bool drop_ws)>;
  void add_fault_listener(fault_listener f);

  /// Front doors report whether they are listening (for /health).
  void set_door_status(front_door door, bool up);
  /// An optional door (ipc, grpc) says it exists: /health reports a door
  /// that was never configured as "off", not "down".
  void set_door_configured(front_door door);

  /// Counts open connections/subscriptions per door (for /health/detailed).
  void add_connection(front_door door, int delta);

  /// Stops background work (bot). Idempotent; also done by the destructor.
  void stop();

  /// Builds an error envelope response.
  static api_response error_response(int status, const std::string& code,
                                     const std::string& message);

  const gateway_config& config() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::gateway
