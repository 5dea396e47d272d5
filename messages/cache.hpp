// aico engine: the response cache actor's interface.
//
//   repository ──read(cache_read)──▶ response cache ──request(auth)──▶ downstream
//                                     │  SQLite (state_dir/response_cache.db)
//                                     └─ coalesces identical in-flight reads
//
// Reads (history, user, family, health) are answered from the cache while
// fresh (age <= max_age of that call), otherwise fetched; identical reads
// (same user and key) in flight share one downstream request. Only bodies
// that decode as what the route promises (cache_read::expect) are stored
// or served; a malformed 200 is a retryable error (code malformed_reply).
// A retryable failure (network, timeout, 5xx, 429, circuit open, malformed
// reply) is answered with the cached value of any age, flagged stale
// (stale-if-error: history offline after a restart), unless the read does
// not allow stale data. Storage: src/store/response_cache.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "caf/all.hpp"

#include "messages/token_manager.hpp"
#include "messages/type_ids.hpp"

namespace aico {

/// What a 2xx body must decode to (src/model/codec.hpp) before the cache
/// stores or serves it: a malformed 200 is never cached.
enum class cached_body : uint8_t {
  envelope = 0, ///< any valid success envelope
  history_page, ///< GET /conversations/{id}/messages
  user,         ///< GET /users/me
  family,       ///< GET /users/me/family
  system_health, ///< GET /health, /health/detailed
  system_status, ///< GET /system/status
};

const char* to_string(cached_body x);

struct cache_read {
  /// Cache scope: the user id (empty for user-independent reads such as
  /// health). Entries of one user are never served to another.
  std::string user;
  /// Cache key; empty = call.method + " " + call.path.
  std::string key;
  /// The read to send on a miss (sent with auth = true unless `auth` is
  /// false).
  api_call call;
  /// Answer from the cache without a request while the entry is at most
  /// this old.
  caf::timespan max_age{0};
  /// Always fetch; never answer from the cache unless allow_stale.
  bool force_refresh = false;
  /// Attach the access token (false for /health).
  bool auth = true;
  /// When the fetch fails retryably (network, timeout, 5xx, 429, circuit
  /// open, a malformed reply), answer with the cached value of any age,
  /// flagged stale. False: the failure is the answer (`history --refresh`).
  bool allow_stale = true;
  /// What the body must be; anything else is an error, never cached.
  cached_body expect = cached_body::envelope;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_read& x) {
  return f(caf::meta::type_name("aico.cache_read"), x.user, x.key, x.call,
           x.max_age, x.force_refresh, x.auth, x.allow_stale, x.expect);
}

struct cached_reply {
  /// From the cache: status 200, the stored body, id = the call's id, no
  /// headers. Otherwise the downstream's 2xx reply.
  api_reply reply;
  bool from_cache = false;
  /// Served from the cache although older than max_age (or stored "in the
  /// future"), because the fetch failed retryably.
  bool stale = false;
  /// Age of the cached value (0 when fetched now).
  caf::timespan age{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cached_reply& x) {
  return f(caf::meta::type_name("aico.cached_reply"), x.reply, x.from_cache,
           x.stale, x.age);
}

using response_cache_actor = caf::typed_actor<
  /// A read through the cache. Errors: the downstream's error when there is
  /// no cached value to fall back on, or when the error is not retryable
  /// (authentication, authorization, validation: never masked).
  caf::replies_to<read_atom, cache_read>::with<cached_reply>,
  /// Removes the entries of `user` whose key starts with `prefix` (empty
  /// prefix = all of the user's). Replies the number removed.
  caf::replies_to<invalidate_atom, std::string, std::string>::with<size_t>>;

struct response_cache_config {
  /// Directory of the cache file (created 0700 if missing).
  std::string state_dir;
  std::string file_name = "response_cache.db";
  /// Entries over all users (oldest evicted).
  size_t max_entries = 2000;
  /// A cache file that cannot be opened as a cache (damaged, not a
  /// database) is deleted and created anew (its content is disposable). If
  /// that fails too, the actor works as a pass-through.
  bool reset_damaged = true;
  /// Deadline of a downstream fetch when the read gives none: the actor's
  /// request timeout (the downstream gets this as its deadline).
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Deadline of a fetch when a cached value (of any age) exists to fall
  /// back on: an offline app gets its stale copy after this long, not
  /// after request_timeout.
  caf::timespan fallback_timeout = std::chrono::seconds(2);
  /// Wall clock (injectable for tests); null = system_clock::now.
  std::function<std::chrono::system_clock::time_point()> clock;
};

/// Spawns the cache actor. Never fails: without a usable file (see
/// reset_damaged) every read goes downstream (no caching, no stale
/// fallback) and the reason is printed once to stderr.
response_cache_actor spawn_response_cache(caf::actor_system& sys,
                                          response_cache_config cfg,
                                          api_gateway_actor downstream);

} // namespace aico
