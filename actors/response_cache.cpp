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
//           fetch ─2xx─▶ store, answer everyone waiting (from_cache = false)
//             └─error─▶ retryable and an entry of any age? ─yes─▶ answer it,
//                        stale = true   │ no ─▶ the error to everyone waiting
//
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

struct flight {
  std::vector<caf::typed_response_promise<cached_reply>> waiters;
  uint64_t invalidations_at_start = 0;
  std::string call_id; ///< id of the call that started the fetch
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

void finish(self_ptr self, const flight_key& k,
            const std::function<void(
              caf::typed_response_promise<cached_reply>&)>& f) {
  auto& st = self->state;
  auto i = st.flights.find(k);
  if (i == st.flights.end())
    return;
  auto waiters = std::move(i->second.waiters);
  st.flights.erase(i);
  for (auto& rp : waiters)
    f(rp);
}

void on_fetched(self_ptr self, const flight_key& k, api_reply r) {
  auto& st = self->state;
  auto i = st.flights.find(k);
  if (i == st.flights.end())
    return;
  if (st.db && i->second.invalidations_at_start == st.invalidations[k.first]) {
    if (auto err = st.db->put(k.first, k.second, r.body, now(self));
        err && classify(err).code != "too_large")
      log_error("cannot store " + k.second, err);
  }
  cached_reply res;
  res.reply = std::move(r);
  finish(self, k, [&](auto& rp) { rp.deliver(res); });
}

void on_fetch_error(self_ptr self, const flight_key& k,
                    const caf::error& err) {
  auto& st = self->state;
  if (st.db && is_retryable(err)) {
    auto e = st.db->get(k.first, k.second, now(self), 0ms);
    if (!e) {
      log_error("cannot read " + k.second, e.error());
    } else if (*e) {
      // stale-if-error: whatever we have, flagged stale
      cached_reply res;
      auto i = st.flights.find(k);
      auto id = i != st.flights.end() ? i->second.call_id : std::string{};
      res.from_cache = true;
      res.stale = true;
      res.age = to_timespan((*e)->age);
      res.reply = reply_from_cache(id, std::move((*e)->value));
      finish(self, k, [&](auto& rp) { rp.deliver(res); });
      return;
    }
  }
  finish(self, k, [&](auto& rp) { rp.deliver(err); });
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
      bool have_fallback = false;
      if (st.db) {
        auto max_age = std::chrono::duration_cast<std::chrono::milliseconds>(
          r.max_age);
        auto e = st.db->get(r.user, key, now(self), max_age);
        if (!e) {
          log_error("cannot read " + key, e.error());
        } else if (*e && (r.force_refresh || (*e)->stale)) {
          have_fallback = true;
        } else if (*e) {
          cached_reply res;
          res.from_cache = true;
          res.age = to_timespan((*e)->age);
          res.reply = reply_from_cache(r.call.id, std::move((*e)->value));
          return res;
        }
      }
      auto rp = self->make_response_promise<cached_reply>();
      flight_key k{r.user, key};
      auto [i, added] = st.flights.try_emplace(k);
      i->second.waiters.push_back(rp);
      if (added) {
        i->second.invalidations_at_start = st.invalidations[r.user];
        i->second.call_id = r.call.id;
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

response_cache_actor spawn_response_cache(caf::actor_system& sys,
                                          response_cache_config cfg,
                                          api_gateway_actor downstream) {
  return sys.spawn(cache_fun, std::move(cfg), std::move(downstream));
}

} // namespace aico
