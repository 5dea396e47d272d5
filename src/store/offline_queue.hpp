// aico engine: the durable offline queue (pure storage + scheduling logic,
// no actors, no timers, no sleeps). Commands that change server state (send
// message, mark read, update preferences) are stored in a SQLite file (WAL,
// synchronous=FULL, exclusive lock) in the engine's state directory and
// replayed with the same idempotency key until the gateway accepts or
// refuses them. Semantics and schema: docs/resilience.md, "Offline queue and
// cache storage".
//
//   enqueue ──▶ pending ──mark_in_flight──▶ in_flight ──complete──▶ (deleted)
//                 ▲  ▲                         │  │
//                 │  └──── fail_retryable ─────┘  │ fail_permanent
//                 │   (backoff; lane waits)        ▼
//                 └────────── retry ─────────── parked ──drop──▶ (deleted)
//
// - Lanes: FIFO is per lane (a conversation id, "user" for preferences).
//   The head of a lane is its oldest item that is not parked. Only a
//   pending head whose next_attempt_at has come is ready, and only while
//   the lane has nothing in flight: never the second item of a lane while
//   the first is unresolved. A retryable failure pushes the head's
//   next_attempt_at into the future, which pauses that lane only.
// - A permanent failure parks the item (with its reason); parked items are
//   skipped, so the lane goes on. The user can retry() or drop() them.
// - Every mutation is one transaction, committed and fsynced before the call
//   returns: after kill -9 at any point the file holds either the state
//   before or after the call. Items found in flight on open are pending
//   again (the send may or may not have reached the gateway; the
//   idempotency key makes the resend safe).
// - Time is passed in (`now`): a wall clock (store_time), because
//   next_attempt_at must mean the same after a restart.
// - Bounded: enqueue is refused with error_class::validation, code
//   "queue_full" once size() >= limit. Nothing is ever dropped implicitly.
//
// Not thread-safe; meant to be owned by one actor, which calls it
// synchronously (each call is a few indexed SQLite statements).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "src/core/backoff.hpp"
#include "src/store/sqlite_db.hpp"

namespace aico::store {

enum class queue_kind : uint8_t {
  send_message,
  mark_read,
  update_preferences,
  generic,
};

const char* to_string(queue_kind x);
std::optional<queue_kind> parse_queue_kind(std::string_view str);

enum class queue_state : uint8_t {
  pending,   ///< waiting for its turn (and for next_attempt_at)
  in_flight, ///< handed to a transport, outcome unknown
  parked,    ///< failed permanently; waits for retry() or drop()
};

const char* to_string(queue_state x);
std::optional<queue_state> parse_queue_state(std::string_view str);

/// The lane used for preference updates (and the default for generic
/// requests without a lane).
inline constexpr const char* user_lane = "user";

/// An error as remembered by the queue: class and human-readable message.
struct stored_error {
  error_class cls = error_class::unknown;
  std::string message;
};

/// Builds a stored_error from an engine error (via classify / describe).
stored_error to_stored_error(const caf::error& err);

/// What the caller asks to be sent. `lane` is required for send_message
/// and mark_read (the conversation id); update_preferences always uses
/// the lane "user"; generic defaults to "user" when empty. An empty
/// `idempotency_key` gets a fresh random one (128 bit, hex).
struct queue_request {
  queue_kind kind = queue_kind::generic;
  std::string idempotency_key;
  std::string lane;
  std::string method; ///< e.g. "POST"
  std::string path;   ///< e.g. "/conversations/c1/messages"
  std::string body;   ///< the exact request body to replay
};

struct queue_item {
  int64_t seq = 0; ///< local, monotonic, never reused: global order
  queue_kind kind = queue_kind::generic;
  std::string idempotency_key;
  std::string lane;
  std::string method;
  std::string path;
  std::string body;
  store_time created_at;
  /// Sends started (mark_in_flight) since enqueue or the last reset
  /// (retry(), resume_lanes()). Drives the backoff.
  int32_t attempts = 0;
  /// Not before this time (epoch = at once).
  store_time next_attempt_at;
  /// Not before this time, as demanded by the gateway (Retry-After);
  /// resume_lanes() keeps it. Epoch = none.
  store_time retry_after_until;
  queue_state state = queue_state::pending;
  std::optional<stored_error> last_error;
  std::string parked_reason; ///< set while parked
};

struct enqueue_result {
  queue_item item;
  /// True if the idempotency key was already queued: `item` is the
  /// existing item, nothing was added.
  bool duplicate = false;
};

struct queue_counts {
  size_t pending = 0;
  size_t in_flight = 0;
  size_t parked = 0;
  size_t total() const { return pending + in_flight + parked; }
};

struct queue_options {
  /// Items in the queue (all states) at which enqueue is refused.
  size_t limit = 1000;
  /// Delay after a retryable failure: attempt n (1-based) waits
  /// min(initial * multiplier^(n-1), max), jittered after the cap
  /// (src/core/backoff.hpp). Longer than retry_policy's in-call delays:
  /// the queue waits out outages, not blips.
  backoff_options backoff{std::chrono::milliseconds{1000}, 2.0, 0.2,
                          std::chrono::milliseconds{60000}};
  /// Seeds the jitter (tests); 0 = random.
  uint64_t seed = 0;
  /// How long open() waits for another process holding the lock.
  std::chrono::milliseconds lock_timeout{250};
};

class offline_queue {
public:
  static constexpr const char* file_name = "offline_queue.db";
  static constexpr int64_t schema_version = 1;

  /// Opens (creating if needed) the queue file, checks it (quick_check),
  /// takes the exclusive lock and puts every in_flight item back to pending
  /// (see recovered_on_open()). A file that is not a queue database is an
  /// error, never a crash and never silently replaced. The lock is held
  /// until the queue is destroyed: a second open (another engine on the
  /// same state directory) fails after opts.lock_timeout (default 250 ms)
  /// with "database is locked".
  static caf::expected<offline_queue> open(const std::string& path,
                                           queue_options opts = {});

  offline_queue(offline_queue&&) noexcept;
  offline_queue& operator=(offline_queue&&) noexcept;
  offline_queue(const offline_queue&) = delete;
  offline_queue& operator=(const offline_queue&) = delete;
  ~offline_queue();

  /// Items that were in flight when the file was opened (a crash or kill
  /// during a send) and are pending again.
  size_t recovered_on_open() const { return recovered_; }

  /// Adds a request at the tail of its lane. An idempotency key that is
  /// already queued returns the existing item (duplicate = true), even when
  /// the queue is full. Refused with validation / "queue_full" when
  /// size() >= limit, with validation / "invalid_request" when the request
  /// is incomplete.
  caf::expected<enqueue_result> enqueue(const queue_request& req,
                                        store_time now);

  /// The items that may be sent now, oldest first, at most `max_n`: the
  /// head of each lane, if pending, next_attempt_at <= now and no item of
  /// the lane is in flight. Does not change anything.
  caf::expected<std::vector<queue_item>> next_ready(store_time now,
                                                    size_t max_n);

  /// pending → in_flight, attempts + 1. Refused (validation, "not_ready")
  /// unless the item is pending and the head of its lane with nothing in
  /// flight in that lane; "not_found" if there is no such item.
  caf::error mark_in_flight(int64_t seq);

  /// Sent and accepted: the item is deleted. Must be in flight.
  caf::error complete(int64_t seq);

  /// Failed with a retryable error: in_flight → pending with
  /// next_attempt_at = now + max(backoff(attempts), retry_after); the lane
  /// waits until then. `retry_after` < 0 = none.
  caf::error fail_retryable(int64_t seq, store_time now,
                            const stored_error& err,
                            std::chrono::milliseconds retry_after
                            = std::chrono::milliseconds{-1});

  /// Shorthand: classifies `err` (class, message and Retry-After).
  caf::error fail_retryable(int64_t seq, store_time now,
                            const caf::error& err);

  /// Failed permanently (validation, authorization, ...): pending or
  /// in_flight → parked with `reason`; the rest of the lane goes on.
  caf::error fail_permanent(int64_t seq, const stored_error& reason);

  /// Shorthand: classifies `err`; the reason is describe(err).
  caf::error fail_permanent(int64_t seq, const caf::error& err);

  /// parked → pending, attempts and waits reset; it keeps its seq, so it
  /// is sent before the later items of its lane that are not yet in
  /// flight.
  caf::error retry(int64_t seq);

  /// Deletes a parked or pending item. In-flight items are refused
  /// (validation, "in_flight"): the outcome of the send is not known yet.
  caf::error drop(int64_t seq);

  /// The connection came back: every pending item may go now (attempts and
  /// backoff reset), except where the gateway asked for more time
  /// (Retry-After). Returns how many items had their wait shortened.
  caf::expected<size_t> resume_lanes(store_time now);

  /// in_flight → pending for every item (done by open(); also for the
  /// owner when a transport dies with sends outstanding). Returns the
  /// number of items.
  caf::expected<size_t> reset_in_flight();

  /// The earliest next_attempt_at among lane heads that wait (pending,
  /// nothing in flight in the lane), or none if no lane waits. May be <= now
  /// when something is ready: arm the timer for max(0, t - now).
  caf::expected<std::optional<store_time>> next_wakeup();

  /// All items, by seq.
  caf::expected<std::vector<queue_item>> list();

  /// One item; validation / "not_found" if absent.
  caf::expected<queue_item> get(int64_t seq);

  caf::expected<size_t> size();
  caf::expected<queue_counts> counts();

  const queue_options& options() const { return opts_; }
  const std::string& path() const { return db_.path(); }

private:
  offline_queue() = default;

  caf::error init();
  caf::expected<std::optional<queue_item>> find(int64_t seq);
  caf::expected<std::optional<queue_item>> find_key(const std::string& key);
  caf::expected<std::vector<queue_item>> read_items(statement& st);
  std::chrono::milliseconds backoff_delay(int32_t attempts);

  queue_options opts_;
  std::mt19937_64 rng_;
  size_t recovered_ = 0;
  sqlite_db db_;
  struct statements;
  std::unique_ptr<statements> st_;
};

} // namespace aico::store
