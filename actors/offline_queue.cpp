// aico engine: the offline queue actor (see messages/offline_queue.hpp).
//
// Owns a store::offline_queue (SQLite, WAL, synchronous=FULL, exclusive
// lock; opened at spawn if the file exists, else at the first enqueue) and
// drives it: every decision about order and backoff is the
// store's (next_ready / next_wakeup); this actor sends what is ready, turns
// outcomes into store transitions and queue_updates, and keeps one timer.
//
// Drain triggers: enqueue, retry, a reply or error of a send (frees a slot),
// the backoff timer, the connection coming back (connected/degraded after
// anything else: resume_lanes first), a login (logged_in after another
// auth state: resume_lanes first) and an explicit drain_atom. Draining is
// off while the last connection state was neither connected nor degraded;
// before any state arrived it is on ("try anyway").
#include "messages/offline_queue.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <iostream>
#include <optional>
#include <set>

#include "src/store/offline_queue.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;

using queue_impl = offline_queue_actor::extend_with<caf::typed_actor<
  /// the backoff timer (generation)
  caf::reacts_to<tick_atom, uint64_t>>>;

/// Shortest timer delay: keeps a lane head that cannot be marked in flight
/// (storage trouble) from spinning the actor.
constexpr auto min_timer_delay = std::chrono::milliseconds{20};

struct queue_state {
  static inline const char* name = "aico.offline_queue";

  offline_queue_config cfg;
  api_gateway_actor downstream;
  std::optional<store::offline_queue> db;
  caf::error open_error; ///< why db is empty (unless deferred)
  /// No queue file existed at spawn: it is created (and locked) at the
  /// first enqueue, retry or drop, so an engine that never queues anything
  /// costs no fds and takes no lock.
  bool deferred = false;
  std::vector<queue_listener_actor> watchers;
  std::set<int64_t> in_flight; ///< seqs sent and not yet answered
  /// -1 = no connection state received yet, 0 = not connected, 1 = yes
  int connected = -1;
  std::optional<auth_state> auth;
  bool timer_armed = false;
  store::store_time timer_due;
  uint64_t timer_gen = 0;
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

caf::error no_store(self_ptr self) {
  return self->state.open_error;
}

std::string queue_path(const offline_queue_config& cfg) {
  return cfg.state_dir + "/" + cfg.file_name;
}

void open_queue(self_ptr self) {
  auto& st = self->state;
  store::queue_options opts;
  opts.limit = st.cfg.limit;
  opts.backoff = st.cfg.backoff;
  opts.seed = st.cfg.seed;
  opts.lock_timeout = st.cfg.lock_timeout;
  auto db = store::offline_queue::open(queue_path(st.cfg), opts);
  if (db)
    st.db.emplace(std::move(*db));
  else
    st.open_error = std::move(db.error());
}

/// Opens a deferred queue (creating its file); false if there is no store.
bool ensure_open(self_ptr self) {
  auto& st = self->state;
  if (st.deferred) {
    st.deferred = false;
    open_queue(self);
  }
  return st.db.has_value();
}

void log_storage_error(const caf::error& err) {
  std::cerr << "aico: offline queue: " << describe(err) << std::endl;
}

void publish(self_ptr self, queue_update up) {
  up.entry.status = to_string(up.status);
  for (auto& w : self->state.watchers)
    self->send(w, queue_atom_v, up);
}

void arm_timer(self_ptr self) {
  auto& st = self->state;
  if (!st.db || st.connected == 0
      || st.in_flight.size() >= std::max<size_t>(st.cfg.max_in_flight, 1))
    return; // a reply frees a slot / a reconnect drains
  auto w = st.db->next_wakeup();
  if (!w) {
    log_storage_error(w.error());
    return;
  }
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

void send_item(self_ptr self, const store::queue_item& item);

void drain(self_ptr self) {
  auto& st = self->state;
  if (!st.db || st.connected == 0)
    return;
  auto max = std::max<size_t>(st.cfg.max_in_flight, 1);
  if (st.in_flight.size() < max) {
    auto ready = st.db->next_ready(now(self), max - st.in_flight.size());
    if (!ready) {
      log_storage_error(ready.error());
    } else {
      for (auto& item : *ready) {
        if (st.in_flight.count(item.seq) > 0)
          continue;
        if (auto err = st.db->mark_in_flight(item.seq)) {
          log_storage_error(err);
          continue;
        }
        st.in_flight.insert(item.seq);
        auto x = item;
        x.state = store::queue_state::in_flight;
        ++x.attempts;
        queue_update up;
        up.entry = to_entry(x);
        up.status = queue_status::sending;
        publish(self, std::move(up));
        send_item(self, x);
      }
    }
  }
  arm_timer(self);
}

std::string header(const api_reply& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k.size() == name.size()
        && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a))
                    == std::tolower(static_cast<unsigned char>(b));
           }))
      return v;
  return {};
}

/// The gateway has the command: delete it and publish `sent`.
void on_done(self_ptr self, int64_t seq, int32_t status, std::string body) {
  auto& st = self->state;
  st.in_flight.erase(seq);
  auto x = st.db->get(seq);
  if (auto err = st.db->complete(seq)) {
    log_storage_error(err);
  } else if (x) {
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
  if (c.retryable || c.cls == error_class::authentication) {
    // authentication: not the item's fault (expired login); it waits for
    // the backoff, a login or a reconnect
    auto t = now(self);
    if (auto e = st.db->fail_retryable(seq, t, err)) {
      log_storage_error(e);
    } else if (auto x = st.db->get(seq)) {
      up.entry = to_entry(*x);
      up.status = queue_status::retrying;
      up.next_attempt_in_ms = std::max<int64_t>(
        0, store::to_unix_ms(x->next_attempt_at) - store::to_unix_ms(t));
      publish(self, std::move(up));
    }
  } else {
    if (auto e = st.db->fail_permanent(seq, err)) {
      log_storage_error(e);
    } else if (auto x = st.db->get(seq)) {
      up.entry = to_entry(*x);
      up.status = queue_status::failed;
      publish(self, std::move(up));
    }
  }
  drain(self);
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
        if (r.status >= 200 && r.status < 300) {
          on_done(self, seq, r.status, std::move(r.body));
          return;
        }
        // a downstream that hands back non-2xx replies (a bare transport)
        on_error(self, seq,
                 make_status_error(r.status, r.body,
                                   header(r, "Retry-After")));
      },
      [=](caf::error& err) { on_error(self, seq, err); });
}

/// Connection or login is back: cut the backoff waits (except Retry-After)
/// and send.
void resume(self_ptr self) {
  auto& st = self->state;
  if (!st.db)
    return;
  if (auto n = st.db->resume_lanes(now(self)); !n)
    log_storage_error(n.error());
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
    st.open_error = make_engine_error(
      error_class::unknown,
      "offline queue: not opened by this engine (disabled in its "
      "configuration): nothing can be queued here");
  } else if (st.cfg.state_dir.empty()) {
    st.open_error = make_engine_error(
      error_class::unknown,
      "offline queue: no state directory configured: nothing can be queued");
  } else if (struct stat sb; ::stat(queue_path(st.cfg).c_str(), &sb) != 0
                             && errno == ENOENT) {
    st.deferred = true; // nothing to recover: opened when first needed
  } else {
    open_queue(self); // items of an earlier run are sent (crash recovery)
  }
  // No store: every enqueue/list/retry/drop answers open_error (the
  // caller shows it); nothing is written to stderr from here.
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ws = self->state.watchers;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const queue_listener_actor& w) {
                              return w.address() == dm.source;
                            }),
             ws.end());
  });
  // crash recovery: the store put in-flight items back to pending; send
  // them (and anything else ready) as soon as possible
  self->send(self, drain_atom_v);
  return {
    [=](enqueue_atom, const queued_command& cmd) -> caf::result<queue_entry> {
      auto& st = self->state;
      if (!ensure_open(self))
        return no_store(self);
      store::queue_request req;
      req.kind = to_store_kind(cmd.kind);
      req.idempotency_key = cmd.idempotency_key;
      req.lane = cmd.lane;
      req.method = cmd.method;
      req.path = cmd.path;
      req.body = cmd.body;
      auto r = st.db->enqueue(req, now(self));
      if (!r)
        return std::move(r.error());
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
      if (st.deferred)
        return std::vector<queue_entry>{}; // no file: nothing queued
      if (!st.db)
        return no_store(self);
      auto xs = st.db->list();
      if (!xs)
        return std::move(xs.error());
      std::vector<queue_entry> res;
      res.reserve(xs->size());
      for (auto& x : *xs)
        res.push_back(to_entry(x));
      return res;
    },
    [=](retry_atom, int64_t seq) -> caf::result<queue_entry> {
      auto& st = self->state;
      if (!ensure_open(self))
        return no_store(self);
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
      if (!ensure_open(self))
        return no_store(self);
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
  };
}

} // namespace

offline_queue_actor spawn_offline_queue(caf::actor_system& sys,
                                        offline_queue_config cfg,
                                        api_gateway_actor downstream) {
  return sys.spawn(queue_fun, std::move(cfg), std::move(downstream));
}

} // namespace aico
