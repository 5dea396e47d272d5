// aico engine: the offline queue actor's interface.
//
//   caller ──enqueue(queued_command)──▶ offline queue ──request(id = key, auth)──▶ downstream
//                                        │  (SQLite, WAL,                          (supervisor or
//   watchers ◀── queue(queue_update) ────┘   state_dir/offline_queue.db)            resilient client)
//   supervisor ── state(connection_state) ─▶ drain on connected/degraded
//   token manager ── auth(auth_state) ─────▶ drain on logged_in
//
// Commands that change server state (send message, mark read, update
// preferences) are persisted before enqueue returns and sent with the same
// idempotency key (api_call.id) on every attempt and transport, in FIFO
// order per lane (a conversation id, or "user"). Storage and scheduling
// rules: src/store/offline_queue.hpp and docs/resilience.md ("Offline queue
// and cache storage"); the actor: docs/architecture.md ("Offline queue and
// cache actors").
//
// Several processes of one state directory share the queue file: each
// sends the items it queued (an item left by a process that exited or died
// is sent by whichever process comes next), claims are made in one
// transaction with a lease, and per-lane FIFO holds across processes
// (src/store/offline_queue.hpp).
//
// Outcomes per attempt:
// - a valid envelope whose data is what the route promises (a send: the
//   stored message with the same id), 2xx (201 created, 200 "already
//   stored"), or 409 conflict: done (the server has it) -> `sent`, the item
//   is deleted.
// - any other 2xx (not JSON, not an envelope, success false, a wrong id),
//   or a reply cut off: the outcome is unknown -> resent with the same id
//   after a backoff, at most max_bad_answers times, then parked with a
//   reason that says the outcome is unknown -> `retrying` / `failed`
//   (error_code "bad_reply").
// - retryable (network, timeout, 5xx, 429): the lane pauses with backoff
//   (Retry-After honoured) -> `retrying`; one timer wakes the queue.
// - authentication (401, "not logged in"): not the item's fault: it stays
//   pending with backoff -> `retrying`; a login (auth_state::logged_in)
//   or a reconnect resumes at once.
// - anything else (validation, authorization, unknown): parked with its
//   reason -> `failed`; the rest of the lane goes on; retry/drop by the user.
//
// The actor also implements engine_listener_actor (it ignores server
// events) and auth_listener_actor, so its handle can be passed directly to
// the supervisor's and the token manager's `watch_atom`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "messages/supervisor.hpp"
#include "messages/token_manager.hpp"
#include "messages/type_ids.hpp"
#include "src/core/backoff.hpp"

namespace aico {

/// What the caller asks the queue to send.
struct queued_command {
  /// Sent as api_call.id on every attempt; for messages use the message's
  /// "id" (the gateway's idempotency key). Empty = a random 128-bit key is
  /// generated. A key that is already queued returns the existing entry.
  std::string idempotency_key;
  command_kind kind = command_kind::generic;
  /// FIFO lane: the conversation id (required for send_message and
  /// mark_read); update_preferences always uses "user"; generic defaults
  /// to "user".
  std::string lane;
  std::string method; ///< e.g. "POST"
  std::string path;   ///< relative to /api/v1, e.g. "/conversations/messages"
  std::string body;   ///< the exact JSON body replayed on every attempt
  /// How long enqueueing may take at most, waiting for other processes of
  /// the state directory that are writing the queue file (the caller's
  /// deadline, carried down); 0 = the queue's lock_timeout. The queue
  /// answers within it, so the caller should wait a little longer.
  caf::timespan timeout{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queued_command& x) {
  return f(caf::meta::type_name("aico.queued_command"), x.idempotency_key,
           x.kind, x.lane, x.method, x.path, x.body, x.timeout);
}

/// What happened to a queued command (published in queue_update and kept
/// as queue_entry::status).
enum class queue_status : uint8_t {
  queued = 0, ///< persisted, waiting for its turn
  sending,    ///< handed to the downstream, outcome unknown
  sent,       ///< accepted by the gateway (2xx, or 409: already there)
  retrying,   ///< failed retryably (or not logged in); waits for backoff
  failed,     ///< failed permanently: parked until retry or drop
  dropped,    ///< removed by the user
};

inline const char* to_string(queue_status x) {
  switch (x) {
    case queue_status::queued:
      return "queued";
    case queue_status::sending:
      return "sending";
    case queue_status::sent:
      return "sent";
    case queue_status::retrying:
      return "retrying";
    case queue_status::failed:
      return "failed";
    default:
      return "dropped";
  }
}

/// Published to every watcher on each change of an entry.
struct queue_update {
  queue_entry entry;
  queue_status status = queue_status::queued;
  /// The gateway's JSON envelope (on `sent`; empty for a 409).
  std::string reply_body;
  /// HTTP status of the last answer (on sent / failed / retrying; 0 if
  /// there was none, e.g. a network error).
  int32_t http_status = 0;
  /// On failed / retrying: what went wrong (error_code: the gateway's or
  /// the engine's code, e.g. "validation_error", or "bad_reply" when the
  /// gateway's answer was not what the route promises: the outcome is
  /// unknown).
  error_class error_cls = error_class::unknown;
  std::string error_message;
  std::string error_code;
  /// On retrying: the next attempt in ms from now (lower bound: a reconnect
  /// or login resumes earlier).
  int64_t next_attempt_in_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_update& x) {
  return f(caf::meta::type_name("aico.queue_update"), x.entry, x.status,
           x.reply_body, x.http_status, x.error_cls, x.error_message,
           x.error_code, x.next_attempt_in_ms);
}

/// Receives queue updates.
using queue_listener_actor
  = caf::typed_actor<caf::reacts_to<queue_atom, queue_update>>;

using offline_queue_actor = caf::typed_actor<
  /// Persists the command (fsynced before the reply) and starts draining.
  /// Errors (all non-retryable): validation "queue_full" when the queue
  /// holds `limit` items, validation "invalid_request", or class unknown
  /// naming the file when the storage is unusable.
  caf::replies_to<enqueue_atom, queued_command>::with<queue_entry>,
  /// Every item (pending, in flight, parked), by seq.
  caf::replies_to<list_atom>::with<std::vector<queue_entry>>,
  /// Puts a parked (failed) item back in its lane; replies the entry.
  caf::replies_to<retry_atom, int64_t>::with<queue_entry>,
  /// Removes a parked or pending item (not one in flight); true if removed.
  caf::replies_to<drop_atom, int64_t>::with<bool>,
  /// Sends whatever is ready now (normally not needed: enqueue, reconnect,
  /// login and the backoff timer all drain).
  caf::reacts_to<drain_atom>,
  /// Adds a watcher of queue updates (removed when it terminates).
  caf::reacts_to<watch_atom, queue_listener_actor>,
  /// Connection state (engine_listener_actor): connected/degraded resumes
  /// paused lanes and drains; anything else stops draining.
  caf::reacts_to<state_atom, connection_state>,
  /// Server events (engine_listener_actor): ignored.
  caf::reacts_to<event_atom, server_event>,
  /// Auth state (auth_listener_actor): logged_in resumes and drains.
  caf::reacts_to<auth_atom, auth_state>>;

struct offline_queue_config {
  /// Directory of the queue file (created 0700 if missing).
  std::string state_dir;
  std::string file_name = "offline_queue.db";
  /// Items (all states) at which enqueue is refused.
  size_t limit = 1000;
  /// Delay after a retryable failure (see store::queue_options).
  backoff_options backoff{std::chrono::milliseconds{1000}, 2.0, 0.2,
                          std::chrono::milliseconds{60000}};
  /// Seeds the backoff jitter (tests); 0 = random.
  uint64_t seed = 0;
  /// Deadline of each send (passed downstream; the actor's own request
  /// timeout is this plus 1 s, so the downstream's classified error wins).
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Sends in flight at once, over all lanes (each lane has at most one).
  size_t max_in_flight = 8;
  /// Wall clock (injectable for tests); null = system_clock::now.
  std::function<std::chrono::system_clock::time_point()> clock;
  /// false: the queue file is not opened at all (an engine that only reads
  /// or watches, e.g. `aico watch`, so that another process of the same
  /// state directory can queue and send); enqueue/list/retry/drop then
  /// answer a clear error and nothing is drained.
  bool enabled = true;
  /// How long opening the queue and each change wait for another engine
  /// process of the state directory that is writing the file (one commit
  /// at a time; processes take turns), unless a command brings its own
  /// deadline (queued_command::timeout).
  std::chrono::milliseconds lock_timeout{250};
  /// Other processes do not tell this one when they change the file: while
  /// they hold items (in flight, or queued by a process that still runs)
  /// the queue checks the file this often (PRAGMA data_version, cheap), and
  /// drains when something changed.
  std::chrono::milliseconds poll_interval{50};
  /// The same check while nothing of another process is in the file (an
  /// item left by a process that has exited is then sent); 0 = never.
  std::chrono::milliseconds idle_poll_interval{1000};
  /// Answers that are not what the route promises (the outcome is unknown)
  /// after which an item is parked; each one is retried with the same key.
  int max_bad_answers = 3;
  /// Storage failures (disk full, read-only, I/O error) stop draining; the
  /// queue tries again after this backoff (one log line when it starts
  /// failing, one when it works again).
  backoff_options storage_backoff{std::chrono::milliseconds{200}, 2.0, 0.2,
                                  std::chrono::milliseconds{10000}};
};

/// Spawns the queue actor. Never fails: if the file cannot be opened
/// (locked by another engine, damaged, not a queue file) or the queue is
/// disabled (`enabled` = false), the actor stays up
/// and answers enqueue/list/retry/drop with that storage error (class
/// `unknown`, naming the file), so the caller can show it.
offline_queue_actor spawn_offline_queue(caf::actor_system& sys,
                                        offline_queue_config cfg,
                                        api_gateway_actor downstream);

} // namespace aico
