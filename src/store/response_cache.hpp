// aico engine: the persistent response cache (pure storage + age logic, no
// actors). Reads (history, user, family, health) are stored per user and
// key in a SQLite file (WAL, synchronous=NORMAL) in the engine's state
// directory, so the app can show history offline after a restart.
//
// - get() returns the entry with its age and a `stale` flag (age > max_age
//   of that call, or stored "in the future" after the wall clock went
//   back). It returns stale entries too: the owner decides whether to serve
//   them (stale-if-error / offline) or to refetch. force_refresh and the
//   coalescing of identical in-flight reads are the owner's job.
// - Bounded: at most max_entries entries over all users; put() evicts the
//   oldest by stored_at in the same transaction. A value larger than
//   max_value_bytes is refused (validation, "too_large").
// - Scoped per user: every call names the user (may be empty for
//   user-independent reads such as health); clear_user() at logout.
// - Durability: synchronous=NORMAL; a process crash loses nothing, a power
//   loss may lose the last puts, which only costs a refetch.
//
// Not thread-safe; meant to be owned by one actor.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "src/store/sqlite_db.hpp"

namespace aico::store {

struct cache_options {
  /// Entries over all users; the oldest (by stored_at) are evicted.
  size_t max_entries = 2000;
  /// Largest value (response body) stored.
  size_t max_value_bytes = 4 * 1024 * 1024;
};

struct cache_entry {
  std::string value;
  store_time stored_at;
  /// now - stored_at, clamped at 0.
  std::chrono::milliseconds age{0};
  /// age > max_age, or stored_at > now (clock went back: can't trust it).
  bool stale = false;
};

class response_cache {
public:
  static constexpr const char* file_name = "response_cache.db";
  static constexpr int64_t schema_version = 1;

  /// Opens (creating if needed) the cache file. A file that is not a cache
  /// database is an error; since the content is disposable, the owner may
  /// then call sqlite_db::remove_files(path) and open again.
  static caf::expected<response_cache> open(const std::string& path,
                                            cache_options opts = {});

  response_cache(response_cache&&) noexcept;
  response_cache& operator=(response_cache&&) noexcept;
  response_cache(const response_cache&) = delete;
  response_cache& operator=(const response_cache&) = delete;
  ~response_cache();

  /// The entry for (user, key), fresh or stale, or none if absent.
  caf::expected<std::optional<cache_entry>>
  get(const std::string& user, const std::string& key, store_time now,
      std::chrono::milliseconds max_age);

  /// Stores (replaces) the value for (user, key) at `now`, then evicts the
  /// oldest entries beyond max_entries. One transaction.
  caf::error put(const std::string& user, const std::string& key,
                 const std::string& value, store_time now);

  /// Removes (user, key). Returns the number of entries removed (0 or 1).
  caf::expected<size_t> invalidate(const std::string& user,
                                   const std::string& key);

  /// Removes every entry of `user` whose key starts with `prefix`.
  caf::expected<size_t> invalidate_prefix(const std::string& user,
                                          const std::string& prefix);

  /// Removes every entry of `user` (logout).
  caf::expected<size_t> clear_user(const std::string& user);

  /// Removes everything.
  caf::expected<size_t> clear();

  caf::expected<size_t> size();

  const cache_options& options() const { return opts_; }
  const std::string& path() const { return db_.path(); }

private:
  response_cache() = default;

  caf::error init();
  caf::expected<size_t> remove(statement& st);

  cache_options opts_;
  sqlite_db db_;
  struct statements;
  std::unique_ptr<statements> st_;
};

} // namespace aico::store
