// aico engine: the offline queue actor (see messages/offline_queue.hpp).
//
// Owns a store::offline_queue (SQLite, WAL, synchronous=FULL; opened at
// spawn if the file exists, else at the first enqueue) and drives it: every
// decision about order, ownership and backoff is the store's (claim_ready /
// next_wakeup); this actor sends what it claimed, turns outcomes into store
// transitions and queue_updates, and keeps its timers.
//
// Drain triggers: enqueue, retry, a reply or error of a send (frees a slot),
// the backoff timer, the poll timer (another process changed the file), the
// connection coming back (connected/degraded after anything else:
// resume_lanes first), a login (logged_in after another auth state:
// resume_lanes first) and an explicit drain_atom. Draining is off while the
// last connection state was neither connected nor degraded; before any
// state arrived it is on ("try anyway").
//
// Other processes of the state directory share the file and do not tell
// this one about their changes: while they hold items the queue polls
// (PRAGMA data_version, cheap) every poll_interval, else every
// idle_poll_interval. A file that is busy (another process is committing)
// is simply tried again at the next poll. Storage failures (disk full,
// read-only, I/O error) stop draining: one log line, then tries again with
// backoff, and one line when it works again.
#include "messages/offline_queue.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <map>
#include <optional>
#include <set>

#include "src/core/log_line.hpp"
#include "src/model/codec.hpp"
#include "src/store/offline_queue.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;

using poll_atom = caf::atom_constant<caf::atom("qpoll")>;
using storage_atom = caf::atom_constant<caf::atom("qstorage")>;

using queue_impl = offline_queue_actor::extend_with<caf::typed_actor<
  /// the backoff timer (generation)
  caf::reacts_to<tick_atom, uint64_t>,
  /// the poll timer (generation)
  caf::reacts_to<poll_atom, uint64_t>,
  /// the storage retry timer (generation)
  caf::reacts_to<storage_atom, uint64_t>>>;

/// Shortest timer delay: keeps a lane head that cannot be claimed from
/// spinning the actor.
constexpr auto min_timer_delay = std::chrono::milliseconds{20};

/// How often, at least, claims of other processes are re-checked while
/// they hold items (a dead owner or an expired lease changes nothing in
/// the file, so data_version does not tell).
constexpr auto full_check_interval = std::chrono::seconds{1};

/// An outcome the file did not take (storage failure); recorded later.
struct unrecorded {
  int64_t seq = 0;
  bool done = false; ///< complete; else fail_retryable with `err`
  caf::error err;
};

struct queue_state {
  static inline const char* name = "aico.offline_queue";

  offline_queue_config cfg;
  api_gateway_actor downstream;
  std::optional<store::offline_queue> db;
  /// Why db is empty (when it is and the queue is not deferred).
  caf::error open_error;
  /// Disabled or misconfigured: never try to open.
  bool never_open = false;
  /// No queue file existed at spawn: it is created at the first enqueue,
  /// retry or drop, so an engine that never queues anything creates no file.
  bool deferred = false;
  std::vector<queue_listener_actor> watchers;
  std::set<int64_t> in_flight; ///< seqs sent and not yet answered
  /// -1 = no connection state received yet, 0 = not connected, 1 = yes
  int connected = -1;
  std::optional<auth_state> auth;
  // the backoff timer
  bool timer_armed = false;
  store::store_time timer_due;
  uint64_t timer_gen = 0;
  // the poll timer
  uint64_t poll_gen = 0;
  bool poll_armed = false;
  int64_t data_version = -1;
  size_t foreign = 0;
  bool busy = false; ///< the last claim found the file busy: look again soon
  std::chrono::steady_clock::time_point last_claim;
  // storage failures
  bool storage_failing = false;
  bool storage_attempt = false;
  std::optional<backoff> storage_bo;
  uint64_t storage_gen = 0;
  std::vector<unrecorded> pending_records;
};

using self_ptr = queue_impl::stateful_pointer<queue_state>;

store::store_time now(self_ptr self) {
  auto& c = self->state.cfg.clock;
  return c ? c() : std::chrono::system_clock::now();
}

command_kind to_kind(store::queue_kind k) {
  switch (k) {
    case store::queue_kind::send_message:
      return command_kind::send_message;
    case store::queue_kind::mark_read:
      return command_kind::mark_read;
    case store::queue_kind::update_preferences:
      return command_kind::update_preferences;
    default:
      return command_kind::generic;
  }
}

store::queue_kind to_store_kind(command_kind k) {
  switch (k) {
    case command_kind::send_message:
      return store::queue_kind::send_message;
    case command_kind::mark_read:
      return store::queue_kind::mark_read;
    case command_kind::update_preferences:
      return store::queue_kind::update_preferences;
    default:
      return store::queue_kind::generic;
  }
}

queue_status status_of(const store::queue_item& x) {
  switch (x.state) {
    case store::queue_state::in_flight:
      return queue_status::sending;
    case store::queue_state::parked:
      return queue_status::failed;
    default:
      return x.last_error ? queue_status::retrying : queue_status::queued;
  }
}

queue_entry to_entry(const store::queue_item& x) {
  queue_entry e;
  e.seq = x.seq;
  e.idempotency_key = x.idempotency_key;
  e.kind = to_kind(x.kind);
  e.lane = x.lane;
  e.method = x.method;
  e.path = x.path;
  e.body = x.body;
  e.created_at_ms = store::to_unix_ms(x.created_at);
  e.attempts = x.attempts;
  e.next_attempt_at_ms = store::to_unix_ms(x.next_attempt_at);
  e.state = store::to_string(x.state);
  e.status = to_string(status_of(x));
  if (x.last_error) {
    e.last_error_class = x.last_error->cls;
    e.last_error = x.last_error->message;
  }
  e.parked_reason = x.parked_reason;
  return e;
}

std::string queue_path(const offline_queue_config& cfg) {
  return cfg.state_dir + "/" + cfg.file_name;
}

std::chrono::milliseconds to_ms(caf::timespan t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t);
}

/// Opens the queue file; false (and open_error) if that fails. Waits at
/// most `wait` for other processes.
bool open_queue(self_ptr self, std::chrono::milliseconds wait) {
  auto& st = self->state;
  store::queue_options opts;
  opts.limit = st.cfg.limit;
  opts.backoff = st.cfg.backoff;
  opts.seed = st.cfg.seed;
  opts.lock_timeout = wait;
  opts.max_bad_answers = st.cfg.max_bad_answers;
  // longer than any send of this engine can take (its request timeout
  // plus the actor's grace), so only a stuck or dead owner loses a claim
  opts.lease = std::max<std::chrono::milliseconds>(
    to_ms(st.cfg.request_timeout) * 2 + 10s, 30s);
  auto db = store::offline_queue::open(queue_path(st.cfg), opts, now(self));
  if (!db) {
    st.open_error = std::move(db.error());
    return false;
  }
  st.db.emplace(std::move(*db));
  st.db->set_lock_timeout(st.cfg.lock_timeout);
  st.open_error = caf::error{};
  st.deferred = false;
  return true;
}

/// The store, opening it if needed (deferred, or an earlier open failed);
/// false with open_error set if there is none.
bool ensure_open(self_ptr self, std::chrono::milliseconds wait) {
  auto& st = self->state;
  if (st.db)
    return true;
  if (st.never_open)
    return false;
  return open_queue(self, wait);
}

std::string code_of(const caf::error& err) {
  return classify(err).code;
}

void publish(self_ptr self, queue_update up) {
  up.entry.status = to_string(up.status);
  for (auto& w : self->state.watchers)
    self->send(w, queue_atom_v, up);
}

void drain(self_ptr self);
void arm_poll(self_ptr self);

/// A write to the file failed for a reason other than contention: stop
/// draining, say so once (unless `quiet`: the caller reports it), and try
/// again with backoff.
void storage_failed(self_ptr self, const caf::error& err, bool quiet = false) {
  auto& st = self->state;
  if (!st.storage_bo)
    st.storage_bo.emplace(st.cfg.storage_backoff,
                          st.cfg.seed != 0 ? st.cfg.seed : 0x5eed);
  if (!st.storage_failing) {
    st.storage_failing = true;
    if (!quiet)
      log_line("aico: offline queue: " + describe(err)
               + "; nothing is sent from the queue until it can be written "
                 "again (retrying with backoff)");
  }
  auto gen = ++st.storage_gen;
  self->delayed_send(self, st.storage_bo->next(), storage_atom::value, gen);
}

/// A write to the file worked.
void storage_ok(self_ptr self) {
  auto& st = self->state;
  if (!st.storage_failing)
    return;
  st.storage_failing = false;
  ++st.storage_gen;
  if (st.storage_bo)
    st.storage_bo->reset();
  log_line("aico: offline queue: " + queue_path(st.cfg)
           + " can be written again; sending resumes");
}

/// Records outcomes the file did not take earlier; false if it still
/// fails.
bool record_pending(self_ptr self) {
  auto& st = self->state;
  while (!st.pending_records.empty()) {
    auto& r = st.pending_records.front();
    caf::error err = r.done ? st.db->complete(r.seq)
                            : st.db->fail_retryable(r.seq, now(self), r.err);
    if (err && classify(err).cls == error_class::unknown) {
      storage_failed(self, err);
      return false;
    }
    // recorded, or refused because it no longer applies (another process
    // took the claim over): either way it is settled
    st.pending_records.erase(st.pending_records.begin());
    if (!err)
      storage_ok(self);
  }
  return true;
}

void arm_timer(self_ptr self) {
  auto& st = self->state;
  if (!st.db || st.connected == 0 || st.storage_failing
      || st.in_flight.size() >= std::max<size_t>(st.cfg.max_in_flight, 1))
    return; // a reply frees a slot / a reconnect drains
  auto w = st.db->next_wakeup();
  if (!w)
    return; // the poll tries again
  if (!*w)
    return; // nothing waits
  auto due = **w;
  if (st.timer_armed && st.timer_due <= due)
    return; // the armed timer comes first anyway
  st.timer_armed = true;
  st.timer_due = due;
  auto gen = ++st.timer_gen;
  auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
    due - now(self));
  delay = std::max(delay, min_timer_delay);
  self->delayed_send(self, delay, tick_atom_v, gen);
}

void arm_poll(self_ptr self) {
  auto& st = self->state;
  if (!st.db || st.connected == 0 || st.poll_armed)
    return;
  if (auto n = st.db->foreign_items())
    st.foreign = *n;
  auto interval = st.foreign > 0 || st.busy ? st.cfg.poll_interval
                                            : st.cfg.idle_poll_interval;
  if (interval.count() <= 0)
    return;
  st.poll_armed = true;
  self->delayed_send(self, interval, poll_atom::value, ++st.poll_gen);
}

void send_item(self_ptr self, const store::queue_item& item);

void drain(self_ptr self) {
  auto& st = self->state;
  if (!st.db && !st.deferred && !st.never_open) {
    // the file exists but could not be opened (e.g. busy at spawn): try
    // again now, and soon once more if another process kept it busy
    if (!ensure_open(self, st.cfg.lock_timeout)) {
      if (code_of(st.open_error) == "busy" && st.cfg.poll_interval.count() > 0)
        self->delayed_send(self, st.cfg.poll_interval, drain_atom_v);
      return;
    }
  }
  if (!st.db || st.connected == 0)
    return;
  if (st.storage_failing && !st.storage_attempt)
    return; // the storage timer tries again
  if (!record_pending(self))
    return;
  auto max = std::max<size_t>(st.cfg.max_in_flight, 1);
  if (st.in_flight.size() < max) {
    st.last_claim = std::chrono::steady_clock::now();
    // a short wait: the actor answers nothing else meanwhile, and a busy
    // file is simply looked at again at the next poll
    auto claimed = st.db->claim_ready(
      now(self), max - st.in_flight.size(),
      std::min<std::chrono::milliseconds>(st.cfg.lock_timeout, 250ms));
    st.busy = false;
    if (!claimed) {
      if (code_of(claimed.error()) == "busy")
        st.busy = true; // another process is committing
      else
        storage_failed(self, claimed.error());
    } else {
      if (!claimed->empty())
        storage_ok(self);
      for (auto& item : *claimed) {
        if (st.in_flight.count(item.seq) > 0)
          continue;
        st.in_flight.insert(item.seq);
        queue_update up;
        up.entry = to_entry(item);
        up.status = queue_status::sending;
        publish(self, std::move(up));
        send_item(self, item);
      }
    }
  }
  if (auto v = st.db->data_version())
    st.data_version = *v;
  arm_timer(self);
  arm_poll(self);
}

/// The gateway has the command: delete it and publish `sent`.
void on_done(self_ptr self, int64_t seq, int32_t status, std::string body) {
  auto& st = self->state;
  st.in_flight.erase(seq);
  auto x = st.db->get(seq);
  if (auto err = st.db->complete(seq)) {
    if (classify(err).cls == error_class::unknown) {
      // the gateway has it, the file does not know yet: record it later
      // (a resend meanwhile would be answered "already stored")
      st.pending_records.push_back(unrecorded{seq, true, {}});
      storage_failed(self, err);
    }
    // else: another process took the claim over (its lease ran out); it
    // sends it again with the same key and learns the same
  } else {
    storage_ok(self);
  }
  if (x) {
    queue_update up;
    up.entry = to_entry(*x);
    up.status = queue_status::sent;
    up.reply_body = std::move(body);
    up.http_status = status;
    publish(self, std::move(up));
  }
  drain(self);
}

void on_error(self_ptr self, int64_t seq, const caf::error& err) {
  auto& st = self->state;
  auto c = classify(err);
  if (c.status == 409) {
    // conflict on the idempotency key: the gateway already has it
    on_done(self, seq, c.status, {});
    return;
  }
  st.in_flight.erase(seq);
  queue_update up;
  up.http_status = c.status;
  up.error_cls = c.cls;
  up.error_message = describe(err);
  up.error_code = c.code;
  auto t = now(self);
  auto recorded = [&](caf::error e) {
    if (!e) {
      storage_ok(self);
      return true;
    }
    if (classify(e).cls == error_class::unknown) {
      if (c.retryable || c.cls == error_class::authentication)
        st.pending_records.push_back(unrecorded{seq, false, err});
      storage_failed(self, e);
    }
    return false;
  };
  if (is_bad_reply(err)) {
    // the gateway answered something that is not the route's result: the
    // outcome is unknown; resend with the same key, a bounded number of
    // times, then park with a reason that says so
    auto parked = st.db->fail_unknown(seq, t, store::to_stored_error(err));
    if (!parked) {
      recorded(parked.error());
    } else if (auto x = st.db->get(seq)) {
      storage_ok(self);
      up.entry = to_entry(*x);
      if (*parked) {
        up.status = queue_status::failed;
        up.error_message = x->parked_reason;
      } else {
        up.status = queue_status::retrying;
        up.next_attempt_in_ms = std::max<int64_t>(
          0, store::to_unix_ms(x->next_attempt_at) - store::to_unix_ms(t));
      }
      publish(self, std::move(up));
    }
  } else if (c.retryable || c.cls == error_class::authentication) {
    // authentication: not the item's fault (expired login); it waits for
    // the backoff, a login or a reconnect
    if (recorded(st.db->fail_retryable(seq, t, err))) {
      if (auto x = st.db->get(seq)) {
        up.entry = to_entry(*x);
        up.status = queue_status::retrying;
        up.next_attempt_in_ms = std::max<int64_t>(
          0, store::to_unix_ms(x->next_attempt_at) - store::to_unix_ms(t));
        publish(self, std::move(up));
      }
    }
  } else {
    if (recorded(st.db->fail_permanent(seq, err))) {
      if (auto x = st.db->get(seq)) {
        up.entry = to_entry(*x);
        up.status = queue_status::failed;
        publish(self, std::move(up));
      }
    }
  }
  drain(self);
}

/// The id in ".../messages/{id}/read".
std::string read_target(const std::string& path) {
  constexpr std::string_view suffix = "/read";
  if (path.size() <= suffix.size()
      || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0)
    return {};
  auto rest = path.substr(0, path.size() - suffix.size());
  return rest.substr(rest.rfind('/') + 1);
}

/// The route-specific half of checking an answer (the generic half,
/// "a valid envelope with success true", is check_reply): the data must
/// be what the command's route promises.
caf::error verify(const store::queue_item& item, const api_reply& r) {
  switch (item.kind) {
    case store::queue_kind::send_message: {
      auto m = decode_reply<chat_message>(r.status, r.body);
      if (!m)
        return bad_reply_error(r.status, "the data is not the stored message ("
                                           + classify(m.error()).message
                                           + ")");
      if (m->id != item.idempotency_key)
        return bad_reply_error(r.status, "the stored message has the id '"
                                           + m->id + "', not '"
                                           + item.idempotency_key + "'");
      return caf::none;
    }
    case store::queue_kind::mark_read: {
      auto m = decode_reply<chat_message>(r.status, r.body);
      if (!m)
        return bad_reply_error(r.status, "the data is not the message ("
                                           + classify(m.error()).message
                                           + ")");
      auto id = read_target(item.path);
      if (!id.empty() && m->id != id)
        return bad_reply_error(r.status, "the message read has the id '"
                                           + m->id + "', not '" + id + "'");
      return caf::none;
    }
    case store::queue_kind::update_preferences: {
      auto u = decode_reply<user>(r.status, r.body);
      if (!u)
        return bad_reply_error(r.status, "the data is not the user ("
                                           + classify(u.error()).message
                                           + ")");
      return caf::none;
    }
    default:
      return caf::none; // any success envelope
  }
}

void send_item(self_ptr self, const store::queue_item& item) {
  auto& st = self->state;
  api_call call{item.idempotency_key, item.method, item.path, item.body, ""};
  auto seq = item.seq;
  self
    ->request(st.downstream, st.cfg.request_timeout + 1s, request_atom_v,
              std::move(call), st.cfg.request_timeout, true)
    .then(
      [=](api_reply& r) {
        auto checked = check_reply(std::move(r));
        if (!checked) {
          on_error(self, seq, checked.error());
          return;
        }
        if (auto err = verify(item, *checked)) {
          on_error(self, seq, err);
          return;
        }
        on_done(self, seq, checked->status, std::move(checked->body));
      },
      [=](caf::error& err) { on_error(self, seq, err); });
}

/// Connection or login is back: cut the backoff waits (except Retry-After)
/// and send.
void resume(self_ptr self) {
  auto& st = self->state;
  if (!st.db)
    return;
  static_cast<void>(st.db->resume_lanes(now(self)));
  // an armed timer may now be later than needed; drain re-arms
  st.timer_armed = false;
  ++st.timer_gen;
  drain(self);
}

queue_impl::behavior_type queue_fun(self_ptr self, offline_queue_config cfg,
                                    api_gateway_actor downstream) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.downstream = std::move(downstream);
  if (!st.cfg.enabled) {
    st.never_open = true;
    st.open_error = make_engine_error(
      error_class::unknown,
      "offline queue: not opened by this engine (disabled in its "
      "configuration): nothing can be queued here");
  } else if (st.cfg.state_dir.empty()) {
    st.never_open = true;
    st.open_error = make_engine_error(
      error_class::unknown,
      "offline queue: no state directory configured: nothing can be queued");
  } else if (struct stat sb; ::stat(queue_path(st.cfg).c_str(), &sb) != 0
                             && errno == ENOENT) {
    st.deferred = true; // nothing to recover: opened when first needed
  } else {
    // items of an earlier run (or left by another process) are sent
    open_queue(self, st.cfg.lock_timeout);
  }
  // No store: every enqueue/list/retry/drop tries to open it and answers
  // open_error if that fails (the caller shows it).
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ws = self->state.watchers;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const queue_listener_actor& w) {
                              return w.address() == dm.source;
                            }),
             ws.end());
  });
  // crash recovery: claims of dead processes were given back on open;
  // send them (and anything else ready) as soon as possible
  self->send(self, drain_atom_v);
  return {
    [=](enqueue_atom, const queued_command& cmd) -> caf::result<queue_entry> {
      auto& st = self->state;
      // the caller's deadline bounds every wait for other processes
      auto wait = cmd.timeout > caf::timespan{0}
                    ? std::max(to_ms(cmd.timeout), std::chrono::milliseconds{1})
                    : st.cfg.lock_timeout;
      auto start = std::chrono::steady_clock::now();
      if (!ensure_open(self, wait))
        return st.open_error;
      auto left = wait - std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - start);
      store::queue_request req;
      req.kind = to_store_kind(cmd.kind);
      req.idempotency_key = cmd.idempotency_key;
      req.lane = cmd.lane;
      req.method = cmd.method;
      req.path = cmd.path;
      req.body = cmd.body;
      auto r = st.db->enqueue(req, now(self),
                              std::max(left, std::chrono::milliseconds{0}));
      if (!r) {
        auto code = code_of(r.error());
        if (classify(r.error()).cls == error_class::unknown && code != "busy")
          storage_failed(self, r.error(), true); // the caller reports it
        return std::move(r.error());
      }
      storage_ok(self);
      auto e = to_entry(r->item);
      if (!r->duplicate) {
        queue_update up;
        up.entry = e;
        up.status = queue_status::queued;
        publish(self, std::move(up));
        drain(self);
      }
      return e;
    },
    [=](list_atom) -> caf::result<std::vector<queue_entry>> {
      auto& st = self->state;
      if (st.deferred) {
        // nothing existed at spawn; another process may have created it
        struct stat sb;
        if (::stat(queue_path(st.cfg).c_str(), &sb) != 0 && errno == ENOENT)
          return std::vector<queue_entry>{};
      }
      if (!ensure_open(self, st.cfg.lock_timeout))
        return st.open_error;
      auto xs = st.db->list();
      if (!xs)
        return std::move(xs.error());
      std::vector<queue_entry> res;
      res.reserve(xs->size());
      for (auto& x : *xs)
        res.push_back(to_entry(x));
      // a list is also a good moment to look for work
      drain(self);
      return res;
    },
    [=](retry_atom, int64_t seq) -> caf::result<queue_entry> {
      auto& st = self->state;
      if (!ensure_open(self, st.cfg.lock_timeout))
        return st.open_error;
      if (auto err = st.db->retry(seq))
        return err;
      auto x = st.db->get(seq);
      if (!x)
        return std::move(x.error());
      auto e = to_entry(*x);
      queue_update up;
      up.entry = e;
      up.status = queue_status::queued;
      publish(self, std::move(up));
      drain(self);
      return e;
    },
    [=](drop_atom, int64_t seq) -> caf::result<bool> {
      auto& st = self->state;
      if (!ensure_open(self, st.cfg.lock_timeout))
        return st.open_error;
      auto x = st.db->get(seq);
      if (!x)
        return std::move(x.error());
      if (auto err = st.db->drop(seq))
        return err;
      queue_update up;
      up.entry = to_entry(*x);
      up.status = queue_status::dropped;
      publish(self, std::move(up));
      // dropping a lane's waiting head lets the next item go
      drain(self);
      return true;
    },
    [=](drain_atom) { drain(self); },
    [=](watch_atom, queue_listener_actor w) {
      self->monitor(w);
      self->state.watchers.push_back(std::move(w));
    },
    [=](state_atom, const connection_state& cs) {
      auto& st = self->state;
      bool up = cs.state == link_state::connected
                || cs.state == link_state::degraded;
      bool was = st.connected == 1;
      st.connected = up ? 1 : 0;
      if (up && !was)
        resume(self);
    },
    [=](event_atom, const server_event&) {
      // engine_listener_actor compatibility; events are not the queue's
    },
    [=](auth_atom, auth_state s) {
      auto& st = self->state;
      auto before = st.auth;
      st.auth = s;
      if (s == auth_state::logged_in && before
          && *before != auth_state::logged_in
          && *before != auth_state::refreshing)
        resume(self);
    },
    [=](tick_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.timer_gen)
        return; // superseded
      st.timer_armed = false;
      drain(self);
    },
    [=](poll_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.poll_gen)
        return;
      st.poll_armed = false;
      if (!st.db)
        return;
      auto v = st.db->data_version();
      bool changed = v && *v != st.data_version;
      bool recheck = st.foreign > 0
                     && std::chrono::steady_clock::now() - st.last_claim
                          >= full_check_interval;
      if (changed || recheck)
        drain(self);
      else
        arm_poll(self);
    },
    [=](storage_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.storage_gen || !st.storage_failing)
        return;
      st.storage_attempt = true;
      drain(self);
      st.storage_attempt = false;
      if (st.storage_failing && gen == st.storage_gen)
        // nothing tried to write (nothing ready): look again later
        self->delayed_send(self, st.storage_bo->next(), storage_atom::value,
                           ++st.storage_gen);
    },
  };
}

} // namespace

offline_queue_actor spawn_offline_queue(caf::actor_system& sys,
                                        offline_queue_config cfg,
                                        api_gateway_actor downstream) {
  return sys.spawn(queue_fun, std::move(cfg), std::move(downstream));
}

} // namespace aico
