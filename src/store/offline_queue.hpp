// aico engine: the durable offline queue (pure storage + scheduling logic,
// no actors, no timers, no sleeps). Commands that change server state (send
// message, mark read, update preferences) are stored in a SQLite file (WAL,
// synchronous=FULL) in the engine's state directory and replayed with the
// same idempotency key until the gateway accepts or refuses them. Several
// processes (engines) of one state directory share the file. Semantics and
// schema: docs/resilience.md, "Offline queue and cache storage".
//
//   enqueue ──▶ pending ──claim──▶ in_flight ──complete──▶ (deleted)
//                 ▲  ▲               │  │
//                 │  └─ fail_retryable┘  │ fail_permanent
//                 │   (backoff; lane waits)
//                 └────────── retry ─── parked ──drop──▶ (deleted)
//
// - Lanes: FIFO is per lane (a conversation id, "user" for preferences).
//   The head of a lane is its oldest item that is not parked. Only a
//   pending head whose next_attempt_at has come is ready, and only while
//   the lane has nothing in flight (in any process): never the second item
//   of a lane while the first is unresolved. A retryable failure pushes the
//   head's next_attempt_at into the future, which pauses that lane only.
// - Owners: every open queue is an owner ("host:pid:random"). An item
//   belongs to the owner that enqueued it (or retried it, or claimed it
//   after its owner went away): only that owner sends it while it runs, so
//   the process that queued a message is the one that learns its outcome.
//   An owner that closes cleanly gives its items up (anyone may send them);
//   one that died (its pid is gone) loses them at once. Claiming an item
//   (pending -> in_flight) happens inside one BEGIN IMMEDIATE transaction
//   with a lease (`lease`, longer than any send); a claim whose owner died
//   or whose lease ran out is given back. So two processes never send one
//   item at the same time, and per-lane FIFO holds across processes.
// - A permanent failure parks the item (with its reason); parked items are
//   skipped, so the lane goes on. The user can retry() or drop() them.
// - Every mutation is one BEGIN IMMEDIATE transaction, committed and
//   fsynced before the call returns: after kill -9 at any point the file
//   holds either the state before or after the call. Nothing ever holds a
//   shared lock while waiting for the write lock (the write lock is taken
//   first), so processes take turns instead of waiting for each other.
// - Time is passed in (`now`): a wall clock (store_time), because
//   next_attempt_at and leases must mean the same after a restart and in
//   another process.
// - Bounded: enqueue is refused with error_class::validation, code
//   "queue_full" once size() >= limit. Nothing is ever dropped implicitly.
//
// Not thread-safe; meant to be owned by one actor, which calls it
// synchronously (each call is a few indexed SQLite statements).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "src/core/small_rng.hpp"
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
  /// The owner (queue instance) the item belongs to; empty = given up,
  /// anyone may send it. While in flight: the owner that sends it.
  std::string owner;
  int64_t owner_pid = 0; ///< the owner's process id (0 = none)
  /// Answers in a row that were not what the route promises (fail_unknown).
  int32_t bad_answers = 0;
  /// While in flight: the claim is valid until then.
  store_time lease_until;
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
  /// How long opening and each change wait for another process that holds
  /// the write lock (a commit: about a millisecond plus an fsync), unless a
  /// call gives its own wait.
  std::chrono::milliseconds lock_timeout{250};
  /// This queue's owner id; empty = "<host>:<pid>:<random>".
  std::string owner;
  /// How long a claim (in flight) is valid: longer than any send can take
  /// (the owner's deadline per send), so a lease only runs out when its
  /// owner is stuck or gone.
  std::chrono::milliseconds lease{std::chrono::minutes(2)};
  /// Whether the owner `id` (process `pid`) still runs. Default: an owner
  /// of another host is assumed alive; on this host, kill(pid, 0).
  std::function<bool(const std::string& id, int64_t pid)> owner_alive;
  /// Unknown outcomes (fail_unknown) after which an item is parked.
  int max_bad_answers = 3;
};

class offline_queue {
public:
  static constexpr const char* file_name = "offline_queue.db";
  /// 2: owner, owner_pid, lease_until (a schema-1 file is upgraded).
  static constexpr int64_t schema_version = 2;

  /// Opens (creating if needed) the queue file and checks it (quick_check),
  /// waiting at most opts.lock_timeout for other processes' commits, and
  /// gives back the claims of owners that died or whose lease ran out (see
  /// recovered_on_open(); leases end by `now`). A file that is not a queue
  /// database is an error, never a crash and never silently replaced. Other
  /// processes may have the same file open at the same time.
  static caf::expected<offline_queue> open(const std::string& path,
                                           queue_options opts = {},
                                           store_time now = store_clock::now());

  offline_queue(offline_queue&&) noexcept;
  offline_queue& operator=(offline_queue&&) noexcept;
  offline_queue(const offline_queue&) = delete;
  offline_queue& operator=(const offline_queue&) = delete;
  /// Gives this owner's items up (release()), best effort.
  ~offline_queue();

  /// Items whose claim was given back when the file was opened (another
  /// process crashed or was killed during a send) and are pending again.
  size_t recovered_on_open() const { return recovered_; }

  /// This queue's owner id.
  const std::string& owner() const { return opts_.owner; }

  /// Adds a request at the tail of its lane, owned by this queue. An
  /// idempotency key that is already queued returns the existing item
  /// (duplicate = true), even when the queue is full. Refused with
  /// validation / "queue_full" when size() >= limit, with validation /
  /// "invalid_request" when the request is incomplete. Waits at most
  /// `lock_wait` for other processes (< 0: opts.lock_timeout).
  ///
  /// An error means the request is certainly not queued, except code
  /// "outcome_unknown": the commit failed in a way that may still leave it
  /// in the file (an I/O error while syncing); list() tells later.
  caf::expected<enqueue_result> enqueue(const queue_request& req,
                                        store_time now,
                                        std::chrono::milliseconds lock_wait
                                        = std::chrono::milliseconds{-1});

  /// The items this queue may send now, oldest first, at most `max_n`: the
  /// head of each lane, if pending, next_attempt_at <= now, no item of the
  /// lane in flight (in any process) and owned by nobody, by this queue or
  /// by an owner that is gone. Does not change anything.
  caf::expected<std::vector<queue_item>> next_ready(store_time now,
                                                    size_t max_n);

  /// pending → in_flight for this owner (lease until now + opts.lease),
  /// attempts + 1. Refused (validation, "not_ready") unless the item is
  /// pending, the head of its lane with nothing in flight in that lane, and
  /// may be sent by this queue (see next_ready); "not_found" if there is
  /// no such item.
  caf::error mark_in_flight(int64_t seq, store_time now = store_clock::now());

  /// next_ready + mark_in_flight in one transaction: gives back dead or
  /// expired claims of other owners, then claims up to `max_n` ready items
  /// and returns them (in flight). Two processes calling it at once never
  /// get the same item. Waits at most `lock_wait` for the write lock (< 0:
  /// opts.lock_timeout); a busy file is an error with code "busy".
  caf::expected<std::vector<queue_item>>
  claim_ready(store_time now, size_t max_n,
              std::chrono::milliseconds lock_wait
              = std::chrono::milliseconds{-1});

  /// Sent and accepted: the item is deleted. Must be in flight for this
  /// owner (else validation, "not_in_flight", or "lease_lost" when another
  /// owner has claimed it since).
  caf::error complete(int64_t seq);

  /// Failed with a retryable error: in_flight → pending with
  /// next_attempt_at = now + max(backoff(attempts), retry_after); the lane
  /// waits until then. `retry_after` < 0 = none. Must be in flight for
  /// this owner.
  caf::error fail_retryable(int64_t seq, store_time now,
                            const stored_error& err,
                            std::chrono::milliseconds retry_after
                            = std::chrono::milliseconds{-1});

  /// Shorthand: classifies `err` (class, message and Retry-After).
  caf::error fail_retryable(int64_t seq, store_time now,
                            const caf::error& err);

  /// The gateway answered, but not with what the route promises (not an
  /// envelope, a wrong id, ...): the outcome is unknown. Like
  /// fail_retryable (backoff, same key on the next attempt) until this
  /// happened opts.max_bad_answers times for the item, then it is parked
  /// with a reason that says so. Returns true if parked. Must be in flight
  /// for this owner.
  caf::expected<bool> fail_unknown(int64_t seq, store_time now,
                                   const stored_error& err);

  /// Failed permanently (validation, authorization, ...): pending or
  /// in_flight (for this owner) → parked with `reason`; the rest of the
  /// lane goes on.
  caf::error fail_permanent(int64_t seq, const stored_error& reason);

  /// Shorthand: classifies `err`; the reason is describe(err).
  caf::error fail_permanent(int64_t seq, const caf::error& err);

  /// parked → pending, attempts and waits reset, owned by this queue; it
  /// keeps its seq, so it is sent before the later items of its lane that
  /// are not yet in flight.
  caf::error retry(int64_t seq);

  /// Deletes a parked or pending item. In-flight items are refused
  /// (validation, "in_flight"): the outcome of the send is not known yet.
  caf::error drop(int64_t seq);

  /// The connection came back: every pending item may go now (attempts and
  /// backoff reset), except where the gateway asked for more time
  /// (Retry-After). Returns how many items had their wait shortened.
  caf::expected<size_t> resume_lanes(store_time now);

  /// in_flight → pending for every item this owner has in flight (for the
  /// owner when a transport dies with sends outstanding). Returns the
  /// number of items.
  caf::expected<size_t> reset_in_flight();

  /// Gives up this owner's items: its claims go back to pending and its
  /// items belong to nobody (any process may send them). Done by the
  /// destructor; returns the number of items given up.
  caf::expected<size_t> release();

  /// The earliest next_attempt_at among the lane heads this queue may send
  /// that wait (pending, nothing in flight in the lane), or none if no such
  /// lane waits. May be <= now when something is ready: arm the timer for
  /// max(0, t - now).
  caf::expected<std::optional<store_time>> next_wakeup();

  /// Items (not parked) that other live owners hold: in flight elsewhere,
  /// or pending for an owner that still runs. While there are any, the
  /// owner of this queue polls (data_version()) to notice their progress,
  /// as no other process tells it.
  caf::expected<size_t> foreign_items();

  /// Changes whenever another process committed to the file (cheap).
  caf::expected<int64_t> data_version() { return db_.data_version(); }

  /// All items, by seq.
  caf::expected<std::vector<queue_item>> list();

  /// One item; validation / "not_found" if absent.
  caf::expected<queue_item> get(int64_t seq);

  caf::expected<size_t> size();
  caf::expected<queue_counts> counts();

  const queue_options& options() const { return opts_; }

  /// The default wait for other processes from now on (opening may use a
  /// different one).
  void set_lock_timeout(std::chrono::milliseconds wait) {
    opts_.lock_timeout = wait;
    db_.set_busy_wait(wait);
  }
  const std::string& path() const { return db_.path(); }

private:
  offline_queue() = default;

  caf::error init();
  caf::expected<size_t> release_stale(store_time now);
  bool may_send(const queue_item& x);
  caf::error check_mine(const queue_item& x) const;
  bool alive(const std::string& owner, int64_t pid);
  caf::expected<std::optional<queue_item>> find(int64_t seq);
  caf::expected<std::optional<queue_item>> find_key(const std::string& key);
  caf::expected<std::vector<queue_item>> read_items(statement& st);
  std::chrono::milliseconds backoff_delay(int32_t attempts);

  queue_options opts_;
  small_rng rng_;
  size_t recovered_ = 0;
  int64_t pid_ = 0;
  std::string host_;
  /// Liveness answers within one call (cleared at its start).
  std::vector<std::pair<std::string, bool>> alive_cache_;
  sqlite_db db_;
  struct statements;
  std::unique_ptr<statements> st_;
};

} // namespace aico::store
