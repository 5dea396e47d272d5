// aico engine: the response cache actor (see messages/cache.hpp).
//
// Owns a store::response_cache (SQLite, WAL, synchronous=NORMAL) and puts
// freshness, force_refresh, stale-if-error and coalescing on top of it:
//
//   read ─▶ fresh entry (age <= max_age, no force_refresh)? ─yes─▶ from cache
//             │ no
//             ▼
//           same (user, key) in flight? ─yes─▶ wait for that fetch
//             │ no
//             ▼
//           fetch ─2xx and a valid body─▶ store, answer everyone waiting
//             │                            (from_cache = false)
//             └─error (a malformed 2xx body is one: server_error,
//                      malformed_reply, never stored)─▶ retryable and an
//                      entry of any age? ─yes─▶ answer it, stale = true, to
//                      the waiters that allow stale data; the error to the
//                      others
//
// Every body is checked against what the read expects (cache_read::expect,
// decoded with src/model/codec.hpp) before it is stored, and again before
// a stored one is served (an invalid entry, e.g. from an older engine, is
// deleted and treated as absent).
// A fetch that started before an invalidate of its user answers its
// waiters but is not stored (it may predate the change that invalidated).
#include "messages/cache.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "src/model/codec.hpp"
#include "src/store/response_cache.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;

using flight_key = std::pair<std::string, std::string>; // (user, key)

struct waiter {
  caf::typed_response_promise<cached_reply> rp;
  bool allow_stale = true;
};

struct flight {
  std::vector<waiter> waiters;
  uint64_t invalidations_at_start = 0;
  std::string call_id; ///< id of the call that started the fetch
  cached_body expect = cached_body::envelope;
  std::string what; ///< "GET /path" (for error messages)
};

struct cache_state {
  static inline const char* name = "aico.response_cache";

  response_cache_config cfg;
  api_gateway_actor downstream;
  std::optional<store::response_cache> db;
  /// The file is opened at the first read (or an invalidate of a file that
  /// exists), not at spawn: an engine that never reads costs no fds.
  bool open_tried = false;
  std::map<flight_key, flight> flights;
  /// invalidate calls per user (a fetch started before one is not stored)
  std::map<std::string, uint64_t> invalidations;
};

using self_ptr = response_cache_actor::stateful_pointer<cache_state>;

store::store_time now(self_ptr self) {
  auto& c = self->state.cfg.clock;
  return c ? c() : std::chrono::system_clock::now();
}

void log_error(const std::string& what, const caf::error& err) {
  std::cerr << "aico: response cache: " << what << ": " << describe(err)
            << std::endl;
}

bool is_regular_file(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

void open_store(self_ptr self) {
  auto& st = self->state;
  if (st.cfg.state_dir.empty()) {
    std::cerr << "aico: response cache: no state directory configured; "
                 "reads are not cached"
              << std::endl;
    return;
  }
  auto path = st.cfg.state_dir + "/" + st.cfg.file_name;
  store::cache_options opts;
  opts.max_entries = st.cfg.max_entries;
  auto db = store::response_cache::open(path, opts);
  if (!db && st.cfg.reset_damaged && is_regular_file(path)) {
    // the content is disposable: start over with an empty file
    log_error("cannot open the cache file, deleting it and starting empty",
              db.error());
    if (auto err = store::sqlite_db::remove_files(path))
      log_error("cannot delete the damaged cache file", err);
    else
      db = store::response_cache::open(path, opts);
  }
  if (!db) {
    log_error("unusable, reads are not cached (pass-through)", db.error());
    return;
  }
  st.db.emplace(std::move(*db));
}

/// Opens the store on first use (once; a failure means pass-through).
void ensure_store(self_ptr self) {
  auto& st = self->state;
  if (st.open_tried)
    return;
  st.open_tried = true;
  open_store(self);
}

api_reply reply_from_cache(const std::string& id, std::string body) {
  api_reply r;
  r.id = id;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

caf::timespan to_timespan(std::chrono::milliseconds ms) {
  return std::chrono::duration_cast<caf::timespan>(ms);
}

template <class T>
caf::error error_of(const caf::expected<T>& x) {
  return x ? caf::error{} : x.error();
}

/// Whether `body` is what a read of `kind` promises.
caf::error check_body(cached_body kind, const std::string& body) {
  switch (kind) {
    case cached_body::history_page:
      return error_of(decode_reply<history_page>(200, body));
    case cached_body::user:
      return error_of(decode_reply<user>(200, body));
    case cached_body::family:
      return error_of(decode_reply<family>(200, body));
    case cached_body::system_health:
      return error_of(decode_reply<system_health>(200, body));
    case cached_body::system_status:
      return error_of(decode_reply<system_status>(200, body));
    case cached_body::envelope:
      break;
  }
  auto env = decode_envelope(200, body);
  if (!env)
    return env.error();
  if (!env->success)
    return make_engine_error(error_class::validation,
                             "the envelope says success: false");
  return caf::none;
}

/// A 2xx reply whose body is not what the route promises: the gateway
/// misbehaved, so it is a (retryable) server error, never cached.
caf::error malformed(const std::string& what, cached_body kind,
                     const caf::error& why) {
  return make_engine_error(error_class::server_error,
                           "the gateway's answer to " + what + " is not a "
                             + "valid " + to_string(kind) + " ("
                             + classify(why).message + ")",
                           0, "malformed_reply");
}

/// Answers every waiter of `k`: `stale` (if set) to those that allow stale
/// data, `err` to the others; or `res` to all.
void finish(self_ptr self, const flight_key& k,
            const std::function<void(waiter&)>& f) {
  auto& st = self->state;
  auto i = st.flights.find(k);
  if (i == st.flights.end())
    return;
  auto waiters = std::move(i->second.waiters);
  st.flights.erase(i);
  for (auto& w : waiters)
    f(w);
}

void on_fetch_error(self_ptr self, const flight_key& k, const caf::error& err);

void on_fetched(self_ptr self, const flight_key& k, api_reply r) {
  auto& st = self->state;
  auto i = st.flights.find(k);
  if (i == st.flights.end())
    return;
  if (auto bad = check_body(i->second.expect, r.body)) {
    on_fetch_error(self, k, malformed(i->second.what, i->second.expect, bad));
    return;
  }
  if (st.db && i->second.invalidations_at_start == st.invalidations[k.first]) {
    if (auto err = st.db->put(k.first, k.second, r.body, now(self));
        err && classify(err).code != "too_large")
      log_error("cannot store " + k.second, err);
  }
  cached_reply res;
  res.reply = std::move(r);
  finish(self, k, [&](waiter& w) { w.rp.deliver(res); });
}

/// The stored entry of (user, key) if it is valid; an invalid one is
/// deleted.
caf::optional<store::cache_entry> valid_entry(self_ptr self,
                                              const flight_key& k,
                                              cached_body expect,
                                              caf::timespan max_age) {
  auto& st = self->state;
  if (!st.db)
    return caf::none;
  auto e = st.db->get(
    k.first, k.second, now(self),
    std::chrono::duration_cast<std::chrono::milliseconds>(max_age));
  if (!e) {
    log_error("cannot read " + k.second, e.error());
    return caf::none;
  }
  if (!*e)
    return caf::none;
  if (check_body(expect, (*e)->value)) {
    // stored by something that did not check (an older engine): gone
    if (auto n = st.db->invalidate(k.first, k.second); !n)
      log_error("cannot delete the invalid entry " + k.second, n.error());
    return caf::none;
  }
  return std::move(**e);
}

void on_fetch_error(self_ptr self, const flight_key& k,
                    const caf::error& err_in) {
  auto& st = self->state;
  auto i = st.flights.find(k);
  if (i == st.flights.end())
    return;
  // A 2xx that is not a valid envelope (check_reply's bad_reply, from the
  // supervisor or from here) means the outcome of a command is unknown; for
  // a read nothing changed on the gateway, so it is the same retryable
  // malformed_reply as a body that does not decode as the read expects.
  const caf::error err = is_bad_reply(err_in)
                           ? malformed(i->second.what, i->second.expect,
                                       err_in)
                           : err_in;
  bool anyone_allows = false;
  for (auto& w : i->second.waiters)
    anyone_allows = anyone_allows || w.allow_stale;
  if (anyone_allows && is_retryable(err)) {
    if (auto e = valid_entry(self, k, i->second.expect, caf::timespan{0})) {
      // stale-if-error: whatever valid value we have, flagged stale
      cached_reply res;
      res.from_cache = true;
      res.stale = true;
      res.age = to_timespan(e->age);
      res.reply = reply_from_cache(i->second.call_id, std::move(e->value));
      finish(self, k, [&](waiter& w) {
        if (w.allow_stale)
          w.rp.deliver(res);
        else
          w.rp.deliver(err);
      });
      return;
    }
  }
  finish(self, k, [&](waiter& w) { w.rp.deliver(err); });
}

void fetch(self_ptr self, const flight_key& k, api_call call, bool auth,
           bool have_fallback) {
  auto& st = self->state;
  auto timeout = st.cfg.request_timeout;
  // with a cached value to fall back on, do not keep the caller waiting
  // for a gateway that is not there
  if (have_fallback)
    timeout = std::min(timeout, st.cfg.fallback_timeout);
  self
    ->request(st.downstream, timeout + 1s, request_atom_v, std::move(call),
              timeout, auth)
    .then(
      [=](api_reply& r) {
        // the one check of every answer (src/model/codec.hpp)
        auto checked = check_reply(std::move(r));
        if (checked)
          on_fetched(self, k, std::move(*checked));
        else
          on_fetch_error(self, k, checked.error());
      },
      [=](caf::error& err) { on_fetch_error(self, k, err); });
}

response_cache_actor::behavior_type
cache_fun(self_ptr self, response_cache_config cfg,
          api_gateway_actor downstream) {
  self->state.cfg = std::move(cfg);
  self->state.downstream = std::move(downstream);
  return {
    [=](read_atom, cache_read& r) -> caf::result<cached_reply> {
      auto& st = self->state;
      ensure_store(self);
      auto key = r.key.empty() ? r.call.method + " " + r.call.path : r.key;
      flight_key k{r.user, key};
      bool have_fallback = false;
      if (auto e = valid_entry(self, k, r.expect, r.max_age)) {
        if (!r.force_refresh && !e->stale) {
          cached_reply res;
          res.from_cache = true;
          res.age = to_timespan(e->age);
          res.reply = reply_from_cache(r.call.id, std::move(e->value));
          return res;
        }
        have_fallback = r.allow_stale;
      }
      auto rp = self->make_response_promise<cached_reply>();
      auto [i, added] = st.flights.try_emplace(k);
      i->second.waiters.push_back(waiter{rp, r.allow_stale});
      if (added) {
        i->second.invalidations_at_start = st.invalidations[r.user];
        i->second.call_id = r.call.id;
        i->second.expect = r.expect;
        i->second.what = r.call.method + " "
                         + r.call.path.substr(0, r.call.path.find('?'));
        fetch(self, k, std::move(r.call), r.auth, have_fallback);
      }
      return rp;
    },
    [=](invalidate_atom, const std::string& user,
        const std::string& prefix) -> caf::result<size_t> {
      auto& st = self->state;
      ++st.invalidations[user];
      // nothing to invalidate in a file that does not exist yet
      if (!st.open_tried && !st.cfg.state_dir.empty()
          && is_regular_file(st.cfg.state_dir + "/" + st.cfg.file_name))
        ensure_store(self);
      if (!st.db)
        return size_t{0};
      auto n = prefix.empty() ? st.db->clear_user(user)
                              : st.db->invalidate_prefix(user, prefix);
      if (!n)
        return std::move(n.error());
      return *n;
    },
  };
}

} // namespace

const char* to_string(cached_body x) {
  switch (x) {
    case cached_body::envelope:
      return "envelope";
    case cached_body::history_page:
      return "history page";
    case cached_body::user:
      return "user";
    case cached_body::family:
      return "family";
    case cached_body::system_health:
      return "health report";
    case cached_body::system_status:
      return "system status";
  }
  return "reply";
}

response_cache_actor spawn_response_cache(caf::actor_system& sys,
                                          response_cache_config cfg,
                                          api_gateway_actor downstream) {
  return sys.spawn(cache_fun, std::move(cfg), std::move(downstream));
}

} // namespace aico
