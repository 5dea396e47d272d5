#include "src/store/offline_queue.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>
#include <utility>

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

namespace aico::store {

// -- enums --------------------------------------------------------------------

const char* to_string(queue_kind x) {
  switch (x) {
    case queue_kind::send_message:
      return "send_message";
    case queue_kind::mark_read:
      return "mark_read";
    case queue_kind::update_preferences:
      return "update_preferences";
    case queue_kind::generic:
      return "generic";
  }
  return "generic";
}

std::optional<queue_kind> parse_queue_kind(std::string_view str) {
  for (auto k : {queue_kind::send_message, queue_kind::mark_read,
                 queue_kind::update_preferences, queue_kind::generic})
    if (str == to_string(k))
      return k;
  return std::nullopt;
}

const char* to_string(queue_state x) {
  switch (x) {
    case queue_state::pending:
      return "pending";
    case queue_state::in_flight:
      return "in_flight";
    case queue_state::parked:
      return "parked";
  }
  return "pending";
}

std::optional<queue_state> parse_queue_state(std::string_view str) {
  for (auto s :
       {queue_state::pending, queue_state::in_flight, queue_state::parked})
    if (str == to_string(s))
      return s;
  return std::nullopt;
}

stored_error to_stored_error(const caf::error& err) {
  auto c = classify(err);
  return stored_error{c.cls, describe(err)};
}

// -- SQL ----------------------------------------------------------------------

namespace {

/// PRAGMA application_id of queue files: 'aicq'.
constexpr int32_t queue_application_id = 0x61696371;

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS queue(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  idempotency_key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK(kind IN ('send_message', 'mark_read',
                                    'update_preferences', 'generic')),
  lane TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  retry_after_until INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'pending'
    CHECK(state IN ('pending', 'in_flight', 'parked')),
  error_class INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  parked_reason TEXT NOT NULL DEFAULT '',
  owner TEXT NOT NULL DEFAULT '',
  owner_pid INTEGER NOT NULL DEFAULT 0,
  lease_until INTEGER NOT NULL DEFAULT 0,
  bad_answers INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS queue_lane_seq ON queue(lane, seq, state);
CREATE INDEX IF NOT EXISTS queue_state_lane ON queue(state, lane);
CREATE INDEX IF NOT EXISTS queue_owner ON queue(owner, state);
)sql";

/// Schema 1 -> 2: owners and leases (items of schema 1 belong to nobody).
constexpr const char* migrate_1_to_2_sql = R"sql(
ALTER TABLE queue ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE queue ADD COLUMN owner_pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN bad_answers INTEGER NOT NULL DEFAULT 0;
UPDATE queue SET state = 'pending' WHERE state = 'in_flight';
)sql";

#define AICO_QUEUE_COLUMNS                                                     \
  " q.seq, q.kind, q.idempotency_key, q.lane, q.method, q.path, q.body,"       \
  " q.created_at, q.attempts, q.next_attempt_at, q.retry_after_until,"         \
  " q.state, q.error_class, q.last_error, q.parked_reason, q.owner,"          \
  " q.owner_pid, q.lease_until, q.bad_answers "

/// q is the head of its lane (no earlier item that is not parked) and the
/// lane has nothing in flight.
#define AICO_QUEUE_HEAD_IDLE                                                   \
  " NOT EXISTS (SELECT 1 FROM queue e WHERE e.lane = q.lane"                   \
  "   AND e.seq < q.seq AND e.state <> 'parked')"                              \
  " AND NOT EXISTS (SELECT 1 FROM queue f WHERE f.lane = q.lane"               \
  "   AND f.state = 'in_flight') "

constexpr const char* sql_select_seq = "SELECT" AICO_QUEUE_COLUMNS
  "FROM queue q WHERE q.seq = ?1";

constexpr const char* sql_select_key = "SELECT" AICO_QUEUE_COLUMNS
  "FROM queue q WHERE q.idempotency_key = ?1";

constexpr const char* sql_select_all = "SELECT" AICO_QUEUE_COLUMNS
  "FROM queue q ORDER BY q.seq";

constexpr const char* sql_ready = "SELECT" AICO_QUEUE_COLUMNS
  "FROM queue q WHERE q.state = 'pending' AND q.next_attempt_at <= ?1"
  " AND" AICO_QUEUE_HEAD_IDLE "ORDER BY q.seq";

constexpr const char* sql_is_head_idle = "SELECT" AICO_QUEUE_HEAD_IDLE
  "FROM queue q WHERE q.seq = ?1";

constexpr const char* sql_wakeup = "SELECT" AICO_QUEUE_COLUMNS
  "FROM queue q WHERE q.state = 'pending' AND" AICO_QUEUE_HEAD_IDLE
  "ORDER BY q.next_attempt_at";

constexpr const char* sql_insert
  = "INSERT INTO queue(idempotency_key, kind, lane, method, path, body,"
    " created_at, owner, owner_pid) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

constexpr const char* sql_count = "SELECT COUNT(*) FROM queue";

constexpr const char* sql_counts
  = "SELECT state, COUNT(*) FROM queue GROUP BY state";

constexpr const char* sql_mark
  = "UPDATE queue SET state = 'in_flight', attempts = attempts + 1,"
    " owner = ?2, owner_pid = ?3, lease_until = ?4 WHERE seq = ?1";

constexpr const char* sql_delete = "DELETE FROM queue WHERE seq = ?1";

constexpr const char* sql_fail_retryable
  = "UPDATE queue SET state = 'pending', next_attempt_at = ?2,"
    " retry_after_until = ?3, error_class = ?4, last_error = ?5,"
    " lease_until = 0 WHERE seq = ?1";

constexpr const char* sql_bad_answer
  = "UPDATE queue SET bad_answers = bad_answers + 1 WHERE seq = ?1";

constexpr const char* sql_fail_permanent
  = "UPDATE queue SET state = 'parked', error_class = ?2, last_error = ?3,"
    " parked_reason = ?3, lease_until = 0 WHERE seq = ?1";

constexpr const char* sql_retry
  = "UPDATE queue SET state = 'pending', attempts = 0, next_attempt_at = 0,"
    " retry_after_until = 0, parked_reason = '', owner = ?2, owner_pid = ?3,"
    " lease_until = 0, bad_answers = 0 WHERE seq = ?1";

constexpr const char* sql_count_resumable
  = "SELECT COUNT(*) FROM queue WHERE state = 'pending'"
    " AND next_attempt_at > MAX(retry_after_until, ?1)";

constexpr const char* sql_resume
  = "UPDATE queue SET attempts = 0,"
    " next_attempt_at = MIN(next_attempt_at, MAX(retry_after_until, ?1))"
    " WHERE state = 'pending'";

constexpr const char* sql_reset_in_flight
  = "UPDATE queue SET state = 'pending', lease_until = 0"
    " WHERE state = 'in_flight' AND owner = ?1";

constexpr const char* sql_release
  = "UPDATE queue SET state = CASE state WHEN 'in_flight' THEN 'pending'"
    " ELSE state END, owner = '', owner_pid = 0, lease_until = 0"
    " WHERE owner = ?1";

/// Owners with items in flight, other than ?1.
constexpr const char* sql_claim_owners
  = "SELECT DISTINCT owner, owner_pid FROM queue"
    " WHERE state = 'in_flight' AND owner <> ?1";

constexpr const char* sql_release_owner
  = "UPDATE queue SET state = 'pending', owner = '', owner_pid = 0,"
    " lease_until = 0 WHERE state = 'in_flight' AND owner = ?1";

constexpr const char* sql_release_expired
  = "UPDATE queue SET state = 'pending', owner = '', owner_pid = 0,"
    " lease_until = 0 WHERE state = 'in_flight' AND owner <> ?1"
    " AND lease_until <= ?2";

/// Other owners of items that are not parked, with their item counts.
constexpr const char* sql_foreign
  = "SELECT owner, owner_pid, COUNT(*) FROM queue WHERE state <> 'parked'"
    " AND owner <> '' AND owner <> ?1 GROUP BY owner, owner_pid";

#undef AICO_QUEUE_COLUMNS
#undef AICO_QUEUE_HEAD_IDLE

caf::error refused(const char* code, std::string message) {
  return make_engine_error(error_class::validation,
                           "offline queue: " + std::move(message), 0, code);
}

caf::error not_found(int64_t seq) {
  return refused("not_found", "no item " + std::to_string(seq));
}

caf::error wrong_state(const char* code, const queue_item& x,
                       const char* wanted) {
  return refused(code, "item " + std::to_string(x.seq) + " is "
                         + to_string(x.state) + ", not " + wanted);
}

caf::error internal(const std::string& what) {
  return make_engine_error(error_class::unknown, "offline queue: " + what);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0')
    return "localhost";
  std::string res{buf};
  std::replace(res.begin(), res.end(), ':', '_');
  return res;
}

std::string host_of(const std::string& owner) {
  return owner.substr(0, owner.find(':'));
}

/// Storage error codes after which a failed commit certainly left nothing
/// in the file (the transaction never got its commit record written).
bool certainly_rolled_back(const std::string& code) {
  return code == "busy" || code == "disk_full" || code == "read_only"
         || code == "cannot_open" || code == "out_of_memory";
}

/// 128 random bits as hex; independent of the jitter seed, so two queues
/// opened with the same test seed still get distinct keys.
std::string random_key() {
  std::random_device rd;
  static constexpr char hex[] = "0123456789abcdef";
  std::string res;
  res.reserve(32);
  for (int i = 0; i < 4; ++i) {
    auto w = rd();
    for (int j = 0; j < 8; ++j) {
      res += hex[w & 0xF];
      w >>= 4;
    }
  }
  return res;
}

/// Runs `f` (returning caf::error / caf::expected<T>) and turns any
/// exception (std::bad_alloc from a string) into an error.
template <class F>
auto guarded(const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    return internal(std::string{what} + ": out of memory");
  }
}

int64_t saturating_add_ms(int64_t t, int64_t delta) {
  if (delta > 0 && t > std::numeric_limits<int64_t>::max() - delta)
    return std::numeric_limits<int64_t>::max();
  return t + delta;
}

} // namespace

struct offline_queue::statements {
  statement select_seq;
  statement select_key;
  statement select_all;
  statement ready;
  statement is_head_idle;
  statement wakeup;
  statement insert;
  statement count;
  statement counts;
  statement mark;
  statement del;
  statement fail_retryable;
  statement fail_permanent;
  statement bad_answer;
  statement retry;
  statement count_resumable;
  statement resume;
  statement reset_in_flight;
  statement release;
  statement claim_owners;
  statement release_owner;
  statement release_expired;
  statement foreign;
};

/// Sets the connection's lock wait for one call and restores it.
class lock_wait_scope {
public:
  lock_wait_scope(sqlite_db& db, std::chrono::milliseconds wait)
    : db_(db), old_(db.busy_wait()) {
    if (wait.count() >= 0)
      db_.set_busy_wait(wait);
  }
  ~lock_wait_scope() { db_.set_busy_wait(old_); }
  lock_wait_scope(const lock_wait_scope&) = delete;
  lock_wait_scope& operator=(const lock_wait_scope&) = delete;

private:
  sqlite_db& db_;
  std::chrono::milliseconds old_;
};

// -- offline_queue ------------------------------------------------------------

offline_queue::offline_queue(offline_queue&&) noexcept = default;
offline_queue& offline_queue::operator=(offline_queue&&) noexcept = default;

offline_queue::~offline_queue() {
  if (st_ && db_.is_open())
    static_cast<void>(release());
}

caf::expected<offline_queue> offline_queue::open(const std::string& path,
                                                 queue_options opts,
                                                 store_time now) {
  return guarded("cannot open", [&]() -> caf::expected<offline_queue> {
    sqlite_db::options db_opts;
    db_opts.what = "offline queue";
    // FULL: an enqueue that returned must survive a power loss too (the
    // user saw "queued"); one fsync per change is cheap at chat rates.
    db_opts.full_sync = true;
    // Shared by the engines of one state directory: the lock is only held
    // for one commit at a time, so waits are short.
    db_opts.busy_timeout = opts.lock_timeout;
    db_opts.quick_check = true;
    auto db = sqlite_db::open(path, db_opts);
    if (!db)
      return std::move(db.error());
    offline_queue res;
    res.pid_ = static_cast<int64_t>(::getpid());
    res.host_ = host_name();
    if (opts.owner.empty())
      opts.owner = res.host_ + ":" + std::to_string(res.pid_) + ":"
                   + random_key().substr(0, 16);
    res.opts_ = opts;
    res.rng_.seed(opts.seed != 0 ? opts.seed : random_seed());
    res.db_ = std::move(*db);
    if (auto err = res.init())
      return err;
    auto txn = transaction::begin(res.db_);
    if (!txn)
      return std::move(txn.error());
    auto n = res.release_stale(now);
    if (!n)
      return std::move(n.error());
    if (auto err = txn->commit())
      return err;
    res.recovered_ = *n;
    return res;
  });
}

caf::error offline_queue::init() {
  auto migrate = [this](int64_t from) -> caf::error {
    if (from == 1)
      return db_.exec(migrate_1_to_2_sql);
    return internal("cannot upgrade schema " + std::to_string(from));
  };
  if (auto err = db_.ensure_schema(queue_application_id, schema_version,
                                   schema_sql, migrate))
    return err;
  st_ = std::make_unique<statements>();
  struct entry {
    statement* st;
    const char* sql;
  };
  entry all[] = {
    {&st_->select_seq, sql_select_seq},
    {&st_->select_key, sql_select_key},
    {&st_->select_all, sql_select_all},
    {&st_->ready, sql_ready},
    {&st_->is_head_idle, sql_is_head_idle},
    {&st_->wakeup, sql_wakeup},
    {&st_->insert, sql_insert},
    {&st_->count, sql_count},
    {&st_->counts, sql_counts},
    {&st_->mark, sql_mark},
    {&st_->del, sql_delete},
    {&st_->fail_retryable, sql_fail_retryable},
    {&st_->fail_permanent, sql_fail_permanent},
    {&st_->bad_answer, sql_bad_answer},
    {&st_->retry, sql_retry},
    {&st_->count_resumable, sql_count_resumable},
    {&st_->resume, sql_resume},
    {&st_->reset_in_flight, sql_reset_in_flight},
    {&st_->release, sql_release},
    {&st_->claim_owners, sql_claim_owners},
    {&st_->release_owner, sql_release_owner},
    {&st_->release_expired, sql_release_expired},
    {&st_->foreign, sql_foreign},
  };
  for (auto& e : all) {
    auto st = db_.prepare(e.sql);
    if (!st)
      return std::move(st.error());
    *e.st = std::move(*st);
  }
  return caf::none;
}

caf::expected<std::vector<queue_item>>
offline_queue::read_items(statement& st) {
  std::vector<queue_item> res;
  for (;;) {
    auto row = st.step();
    if (!row)
      return std::move(row.error());
    if (!*row)
      return res;
    queue_item x;
    x.seq = st.column_int(0);
    auto kind = parse_queue_kind(st.column_text(1));
    x.idempotency_key = st.column_text(2);
    x.lane = st.column_text(3);
    x.method = st.column_text(4);
    x.path = st.column_text(5);
    x.body = st.column_text(6);
    x.created_at = from_unix_ms(st.column_int(7));
    x.attempts = static_cast<int32_t>(
      std::clamp<int64_t>(st.column_int(8), 0, 1'000'000));
    x.next_attempt_at = from_unix_ms(st.column_int(9));
    x.retry_after_until = from_unix_ms(st.column_int(10));
    auto state = parse_queue_state(st.column_text(11));
    auto cls = st.column_int(12);
    auto msg = st.column_text(13);
    x.parked_reason = st.column_text(14);
    x.owner = st.column_text(15);
    x.owner_pid = st.column_int(16);
    x.lease_until = from_unix_ms(st.column_int(17));
    x.bad_answers = static_cast<int32_t>(
      std::clamp<int64_t>(st.column_int(18), 0, 1'000'000));
    if (!kind || !state) {
      st.reset();
      return internal("item " + std::to_string(x.seq)
                      + " has an unknown kind or state in " + path());
    }
    x.kind = *kind;
    x.state = *state;
    if (cls != 0 || !msg.empty()) {
      auto c = static_cast<error_class>(cls);
      if (cls < static_cast<int64_t>(error_class::network)
          || cls > static_cast<int64_t>(error_class::unknown))
        c = error_class::unknown;
      x.last_error = stored_error{c, std::move(msg)};
    }
    res.push_back(std::move(x));
  }
}

caf::expected<std::optional<queue_item>> offline_queue::find(int64_t seq) {
  st_->select_seq.reset().bind(1, seq);
  auto items = read_items(st_->select_seq);
  if (!items)
    return std::move(items.error());
  if (items->empty())
    return std::optional<queue_item>{};
  return std::optional<queue_item>{std::move(items->front())};
}

caf::expected<std::optional<queue_item>>
offline_queue::find_key(const std::string& key) {
  st_->select_key.reset().bind(1, key);
  auto items = read_items(st_->select_key);
  if (!items)
    return std::move(items.error());
  if (items->empty())
    return std::optional<queue_item>{};
  return std::optional<queue_item>{std::move(items->front())};
}

std::chrono::milliseconds offline_queue::backoff_delay(int32_t attempts) {
  // attempt n (1-based) waits the backoff's n-th delay: a fresh backoff for
  // this item, advanced to attempt n. After ~64 steps every delay is at the
  // cap anyway.
  backoff bo{opts_.backoff, rng_() | 1};
  auto n = std::clamp<int32_t>(attempts, 1, 64);
  for (int32_t i = 1; i < n; ++i)
    bo.next();
  return bo.next();
}

bool offline_queue::alive(const std::string& owner, int64_t pid) {
  if (owner == opts_.owner)
    return true;
  for (auto& [o, a] : alive_cache_)
    if (o == owner)
      return a;
  bool res;
  if (opts_.owner_alive) {
    res = opts_.owner_alive(owner, pid);
  } else if (host_of(owner) != host_ || pid <= 0) {
    res = true; // cannot tell: only its lease can end its claims
  } else if (pid == pid_) {
    res = true; // another queue of this process
  } else {
    res = ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
  }
  alive_cache_.emplace_back(owner, res);
  return res;
}

bool offline_queue::may_send(const queue_item& x) {
  return x.owner.empty() || x.owner == opts_.owner
         || !alive(x.owner, x.owner_pid);
}

caf::expected<size_t> offline_queue::release_stale(store_time now) {
  // inside the caller's transaction
  alive_cache_.clear();
  std::vector<std::string> dead;
  auto& st = st_->claim_owners;
  st.reset().bind(1, opts_.owner);
  for (;;) {
    auto row = st.step();
    if (!row)
      return std::move(row.error());
    if (!*row)
      break;
    auto owner = st.column_text(0);
    if (!alive(owner, st.column_int(1)))
      dead.push_back(std::move(owner));
  }
  size_t n = 0;
  for (auto& owner : dead) {
    if (auto err = st_->release_owner.reset().bind(1, owner).run())
      return err;
    n += static_cast<size_t>(db_.changes());
  }
  if (auto err = st_->release_expired.reset()
                   .bind(1, opts_.owner)
                   .bind(2, to_unix_ms(now))
                   .run())
    return err;
  n += static_cast<size_t>(db_.changes());
  return n;
}

caf::expected<enqueue_result> offline_queue::enqueue(const queue_request& req,
                                                     store_time now,
                                                     std::chrono::milliseconds
                                                       lock_wait) {
  return guarded("cannot enqueue", [&]() -> caf::expected<enqueue_result> {
    queue_request x = req;
    switch (x.kind) {
      case queue_kind::send_message:
      case queue_kind::mark_read:
        if (x.lane.empty())
          return refused("invalid_request",
                         std::string{to_string(x.kind)}
                           + " needs a lane (the conversation id)");
        break;
      case queue_kind::update_preferences:
        x.lane = user_lane;
        break;
      case queue_kind::generic:
        if (x.lane.empty())
          x.lane = user_lane;
        break;
    }
    if (x.method.empty() || x.path.empty())
      return refused("invalid_request", "a request needs a method and a path");
    if (x.idempotency_key.empty())
      x.idempotency_key = random_key();
    lock_wait_scope wait{db_, lock_wait};
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto existing = find_key(x.idempotency_key);
    if (!existing)
      return std::move(existing.error());
    if (*existing)
      return enqueue_result{std::move(**existing), true};
    auto n = size();
    if (!n)
      return std::move(n.error());
    if (*n >= opts_.limit)
      return refused("queue_full",
                     "full (" + std::to_string(*n) + " items, limit "
                       + std::to_string(opts_.limit)
                       + "): the request was not queued; wait for the queue "
                         "to drain or drop parked items");
    auto& ins = st_->insert;
    ins.reset()
      .bind(1, x.idempotency_key)
      .bind(2, to_string(x.kind))
      .bind(3, x.lane)
      .bind(4, x.method)
      .bind(5, x.path)
      .bind(6, x.body)
      .bind(7, to_unix_ms(now))
      .bind(8, opts_.owner)
      .bind(9, pid_);
    if (auto err = ins.run())
      return err;
    auto seq = db_.last_insert_rowid();
    if (auto err = txn->commit()) {
      // Usually nothing was written (disk full, read-only, ...). An I/O
      // error while syncing may still leave the commit in the file: say
      // so instead of "not queued", unless the item is visibly there.
      auto again = find_key(x.idempotency_key);
      if (again && *again)
        return enqueue_result{std::move(**again), false};
      auto code = classify(err).code;
      if (certainly_rolled_back(code))
        return err;
      return make_engine_error(
        error_class::unknown,
        "offline queue: the outcome of queueing " + x.idempotency_key
          + " is unknown (" + describe(err)
          + "); the queue's list shows whether it was queued",
        0, "outcome_unknown");
    }
    queue_item item;
    item.seq = seq;
    item.kind = x.kind;
    item.idempotency_key = std::move(x.idempotency_key);
    item.lane = std::move(x.lane);
    item.method = std::move(x.method);
    item.path = std::move(x.path);
    item.body = std::move(x.body);
    item.created_at = from_unix_ms(to_unix_ms(now));
    item.next_attempt_at = from_unix_ms(0);
    item.retry_after_until = from_unix_ms(0);
    item.owner = opts_.owner;
    item.owner_pid = pid_;
    item.lease_until = from_unix_ms(0);
    return enqueue_result{std::move(item), false};
  });
}

caf::expected<std::vector<queue_item>> offline_queue::next_ready(store_time now,
                                                                 size_t max_n) {
  return guarded("cannot read", [&]() -> caf::expected<std::vector<queue_item>> {
    if (max_n == 0)
      return std::vector<queue_item>{};
    alive_cache_.clear();
    st_->ready.reset().bind(1, to_unix_ms(now));
    auto items = read_items(st_->ready);
    if (!items)
      return items;
    std::vector<queue_item> res;
    for (auto& x : *items) {
      if (res.size() >= max_n)
        break;
      if (may_send(x))
        res.push_back(std::move(x));
    }
    return res;
  });
}

caf::expected<std::vector<queue_item>>
offline_queue::claim_ready(store_time now, size_t max_n,
                           std::chrono::milliseconds lock_wait) {
  return guarded("cannot update", [&]() -> caf::expected<std::vector<queue_item>> {
    std::vector<queue_item> res;
    if (max_n == 0)
      return res;
    lock_wait_scope wait{db_, lock_wait};
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto released = release_stale(now);
    if (!released)
      return std::move(released.error());
    st_->ready.reset().bind(1, to_unix_ms(now));
    auto items = read_items(st_->ready);
    if (!items)
      return std::move(items.error());
    auto lease_until = saturating_add_ms(to_unix_ms(now), opts_.lease.count());
    for (auto& x : *items) {
      if (res.size() >= max_n)
        break;
      if (!may_send(x))
        continue;
      if (auto err = st_->mark.reset()
                       .bind(1, x.seq)
                       .bind(2, opts_.owner)
                       .bind(3, pid_)
                       .bind(4, lease_until)
                       .run())
        return err;
      x.state = queue_state::in_flight;
      ++x.attempts;
      x.owner = opts_.owner;
      x.owner_pid = pid_;
      x.lease_until = from_unix_ms(lease_until);
      res.push_back(std::move(x));
    }
    if (res.empty() && *released == 0)
      return res; // nothing written: the rollback is free
    if (auto err = txn->commit())
      return err;
    return res;
  });
}

caf::error offline_queue::mark_in_flight(int64_t seq, store_time now) {
  return guarded("cannot update", [&]() -> caf::error {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if ((*x)->state != queue_state::pending)
      return wrong_state("not_ready", **x, "pending");
    alive_cache_.clear();
    if (!may_send(**x))
      return refused("not_ready", "item " + std::to_string(seq)
                                    + " belongs to another process ("
                                    + (*x)->owner + ")");
    auto& chk = st_->is_head_idle;
    chk.reset().bind(1, seq);
    auto row = chk.step();
    if (!row)
      return std::move(row.error());
    bool idle = *row && chk.column_int(0) != 0;
    chk.reset();
    if (!idle)
      return refused("not_ready",
                     "item " + std::to_string(seq) + " must wait for the"
                       + " earlier items of lane '" + (*x)->lane + "'");
    auto lease_until = saturating_add_ms(to_unix_ms(now), opts_.lease.count());
    if (auto err = st_->mark.reset()
                     .bind(1, seq)
                     .bind(2, opts_.owner)
                     .bind(3, pid_)
                     .bind(4, lease_until)
                     .run())
      return err;
    return txn->commit();
  });
}

caf::error offline_queue::check_mine(const queue_item& x) const {
  if (x.state != queue_state::in_flight)
    return wrong_state("not_in_flight", x, "in_flight");
  if (x.owner != opts_.owner)
    return refused("lease_lost",
                   "item " + std::to_string(x.seq)
                     + " is in flight for another process since this one's "
                       "claim was given back");
  return caf::none;
}

caf::error offline_queue::complete(int64_t seq) {
  return guarded("cannot update", [&]() -> caf::error {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if (auto err = check_mine(**x))
      return err;
    if (auto err = st_->del.reset().bind(1, seq).run())
      return err;
    return txn->commit();
  });
}

caf::error offline_queue::fail_retryable(int64_t seq, store_time now,
                                         const stored_error& err,
                                         std::chrono::milliseconds retry_after) {
  return guarded("cannot update", [&]() -> caf::error {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if (auto err = check_mine(**x))
      return err;
    auto delay = backoff_delay((*x)->attempts);
    auto now_ms = to_unix_ms(now);
    int64_t hold_until = 0;
    if (retry_after.count() >= 0) {
      delay = std::max(delay, retry_after);
      hold_until = saturating_add_ms(now_ms, retry_after.count());
    }
    auto& up = st_->fail_retryable;
    up.reset()
      .bind(1, seq)
      .bind(2, saturating_add_ms(now_ms, delay.count()))
      .bind(3, hold_until)
      .bind(4, static_cast<int64_t>(err.cls))
      .bind(5, err.message);
    if (auto e = up.run())
      return e;
    return txn->commit();
  });
}

caf::error offline_queue::fail_retryable(int64_t seq, store_time now,
                                         const caf::error& err) {
  return guarded("cannot update", [&]() -> caf::error {
    auto c = classify(err);
    auto retry_after = std::chrono::milliseconds{
      c.retry_after_ms >= 0 ? c.retry_after_ms : -1};
    return fail_retryable(seq, now, to_stored_error(err), retry_after);
  });
}

caf::expected<bool> offline_queue::fail_unknown(int64_t seq, store_time now,
                                                const stored_error& err) {
  return guarded("cannot update", [&]() -> caf::expected<bool> {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if (auto e = check_mine(**x))
      return e;
    if (auto e = st_->bad_answer.reset().bind(1, seq).run())
      return e;
    auto n = (*x)->bad_answers + 1;
    bool park = n >= std::max(opts_.max_bad_answers, 1);
    if (park) {
      auto reason = "the outcome is unknown: the gateway answered "
                    + std::to_string(n) + (n == 1 ? " time" : " times")
                    + " with something that is not the result of "
                    + (*x)->method + " " + (*x)->path + " (last: "
                    + err.message
                    + "); it may or may not have been applied. Retrying is "
                      "safe (same idempotency key)";
      if (auto e = st_->fail_permanent.reset()
                     .bind(1, seq)
                     .bind(2, static_cast<int64_t>(err.cls))
                     .bind(3, reason)
                     .run())
        return e;
    } else {
      auto delay = backoff_delay((*x)->attempts);
      if (auto e = st_->fail_retryable.reset()
                     .bind(1, seq)
                     .bind(2, saturating_add_ms(to_unix_ms(now), delay.count()))
                     .bind(3, int64_t{0})
                     .bind(4, static_cast<int64_t>(err.cls))
                     .bind(5, err.message)
                     .run())
        return e;
    }
    if (auto e = txn->commit())
      return e;
    return park;
  });
}

caf::error offline_queue::fail_permanent(int64_t seq,
                                         const stored_error& reason) {
  return guarded("cannot update", [&]() -> caf::error {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if ((*x)->state == queue_state::parked)
      return wrong_state("parked", **x, "pending or in_flight");
    if ((*x)->state == queue_state::in_flight)
      if (auto err = check_mine(**x))
        return err;
    auto& up = st_->fail_permanent;
    up.reset()
      .bind(1, seq)
      .bind(2, static_cast<int64_t>(reason.cls))
      .bind(3, reason.message.empty() ? std::string{"failed"}
                                      : reason.message);
    if (auto e = up.run())
      return e;
    return txn->commit();
  });
}

caf::error offline_queue::fail_permanent(int64_t seq, const caf::error& err) {
  return guarded("cannot update", [&]() -> caf::error {
    return fail_permanent(seq, to_stored_error(err));
  });
}

caf::error offline_queue::retry(int64_t seq) {
  return guarded("cannot update", [&]() -> caf::error {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if ((*x)->state != queue_state::parked)
      return wrong_state("not_parked", **x, "parked");
    if (auto err = st_->retry.reset()
                     .bind(1, seq)
                     .bind(2, opts_.owner)
                     .bind(3, pid_)
                     .run())
      return err;
    return txn->commit();
  });
}

caf::error offline_queue::drop(int64_t seq) {
  return guarded("cannot update", [&]() -> caf::error {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    if ((*x)->state == queue_state::in_flight)
      return refused("in_flight",
                     "item " + std::to_string(seq)
                       + " is in flight and cannot be dropped until its send"
                         " has completed or failed");
    if (auto err = st_->del.reset().bind(1, seq).run())
      return err;
    return txn->commit();
  });
}

caf::expected<size_t> offline_queue::resume_lanes(store_time now) {
  return guarded("cannot update", [&]() -> caf::expected<size_t> {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    auto now_ms = to_unix_ms(now);
    auto& cnt = st_->count_resumable;
    cnt.reset().bind(1, now_ms);
    auto row = cnt.step();
    if (!row)
      return std::move(row.error());
    auto n = *row ? static_cast<size_t>(cnt.column_int(0)) : size_t{0};
    cnt.reset();
    if (auto err = st_->resume.reset().bind(1, now_ms).run())
      return err;
    if (auto err = txn->commit())
      return err;
    return n;
  });
}

caf::expected<size_t> offline_queue::reset_in_flight() {
  return guarded("cannot update", [&]() -> caf::expected<size_t> {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    if (auto err = st_->reset_in_flight.reset().bind(1, opts_.owner).run())
      return err;
    auto n = static_cast<size_t>(db_.changes());
    if (auto err = txn->commit())
      return err;
    return n;
  });
}

caf::expected<size_t> offline_queue::release() {
  return guarded("cannot update", [&]() -> caf::expected<size_t> {
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    if (auto err = st_->release.reset().bind(1, opts_.owner).run())
      return err;
    auto n = static_cast<size_t>(db_.changes());
    if (auto err = txn->commit())
      return err;
    return n;
  });
}

caf::expected<std::optional<store_time>> offline_queue::next_wakeup() {
  using result = std::optional<store_time>;
  return guarded("cannot read", [&]() -> caf::expected<result> {
    alive_cache_.clear();
    st_->wakeup.reset();
    auto items = read_items(st_->wakeup);
    if (!items)
      return std::move(items.error());
    for (auto& x : *items)
      if (may_send(x))
        return result{x.next_attempt_at};
    return result{};
  });
}

caf::expected<size_t> offline_queue::foreign_items() {
  return guarded("cannot read", [&]() -> caf::expected<size_t> {
    alive_cache_.clear();
    auto& st = st_->foreign;
    st.reset().bind(1, opts_.owner);
    size_t n = 0;
    for (;;) {
      auto row = st.step();
      if (!row)
        return std::move(row.error());
      if (!*row)
        return n;
      if (alive(st.column_text(0), st.column_int(1)))
        n += static_cast<size_t>(st.column_int(2));
    }
  });
}

caf::expected<std::vector<queue_item>> offline_queue::list() {
  return guarded("cannot read", [&]() -> caf::expected<std::vector<queue_item>> {
    st_->select_all.reset();
    return read_items(st_->select_all);
  });
}

caf::expected<queue_item> offline_queue::get(int64_t seq) {
  return guarded("cannot read", [&]() -> caf::expected<queue_item> {
    auto x = find(seq);
    if (!x)
      return std::move(x.error());
    if (!*x)
      return not_found(seq);
    return std::move(**x);
  });
}

caf::expected<size_t> offline_queue::size() {
  return guarded("cannot read", [&]() -> caf::expected<size_t> {
    auto& st = st_->count;
    st.reset();
    auto row = st.step();
    if (!row)
      return std::move(row.error());
    auto n = *row ? static_cast<size_t>(st.column_int(0)) : size_t{0};
    st.reset();
    return n;
  });
}

caf::expected<queue_counts> offline_queue::counts() {
  return guarded("cannot read", [&]() -> caf::expected<queue_counts> {
    auto& st = st_->counts;
    st.reset();
    queue_counts res;
    for (;;) {
      auto row = st.step();
      if (!row)
        return std::move(row.error());
      if (!*row)
        return res;
      auto state = parse_queue_state(st.column_text(0));
      auto n = static_cast<size_t>(st.column_int(1));
      if (!state)
        continue;
      switch (*state) {
        case queue_state::pending:
          res.pending = n;
          break;
        case queue_state::in_flight:
          res.in_flight = n;
          break;
        case queue_state::parked:
          res.parked = n;
          break;
      }
    }
  });
}

} // namespace aico::store
