#include "src/store/response_cache.hpp"

#include <algorithm>
#include <limits>
#include <utility>

namespace aico::store {

namespace {

/// PRAGMA application_id of cache files: 'aicc'.
constexpr int32_t cache_application_id = 0x61696363;

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS cache(
  user_id TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  stored_at INTEGER NOT NULL,
  PRIMARY KEY(user_id, key));
CREATE INDEX IF NOT EXISTS cache_stored_at ON cache(stored_at);
)sql";

constexpr const char* sql_get
  = "SELECT value, stored_at FROM cache WHERE user_id = ?1 AND key = ?2";

constexpr const char* sql_put
  = "INSERT INTO cache(user_id, key, value, stored_at) VALUES(?1, ?2, ?3, ?4)"
    " ON CONFLICT(user_id, key) DO UPDATE"
    " SET value = excluded.value, stored_at = excluded.stored_at";

// The entry just written is never evicted by its own put (it could be the
// "oldest" if the wall clock went back).
constexpr const char* sql_evict
  = "DELETE FROM cache WHERE rowid IN (SELECT rowid FROM cache"
    " WHERE NOT (user_id = ?2 AND key = ?3)"
    " ORDER BY stored_at, rowid"
    " LIMIT MAX(0, (SELECT COUNT(*) FROM cache) - ?1))";

constexpr const char* sql_invalidate
  = "DELETE FROM cache WHERE user_id = ?1 AND key = ?2";

// byte-wise prefix match (BLOB substr/length count bytes, not characters)
constexpr const char* sql_invalidate_prefix
  = "DELETE FROM cache WHERE user_id = ?1 AND substr(CAST(key AS BLOB), 1,"
    " length(CAST(?2 AS BLOB))) = CAST(?2 AS BLOB)";

constexpr const char* sql_clear_user = "DELETE FROM cache WHERE user_id = ?1";

constexpr const char* sql_clear = "DELETE FROM cache";

constexpr const char* sql_count = "SELECT COUNT(*) FROM cache";

caf::error internal(const std::string& what) {
  return make_engine_error(error_class::unknown, "response cache: " + what);
}

template <class F>
auto guarded(const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    return internal(std::string{what} + ": out of memory");
  }
}

} // namespace

struct response_cache::statements {
  statement get;
  statement put;
  statement evict;
  statement invalidate;
  statement invalidate_prefix;
  statement clear_user;
  statement clear;
  statement count;
};

response_cache::response_cache(response_cache&&) noexcept = default;
response_cache& response_cache::operator=(response_cache&&) noexcept = default;
response_cache::~response_cache() = default;

caf::expected<response_cache> response_cache::open(const std::string& path,
                                                   cache_options opts) {
  return guarded("cannot open", [&]() -> caf::expected<response_cache> {
    sqlite_db::options db_opts;
    db_opts.what = "response cache";
    // NORMAL: WAL commits survive a process crash; losing the last puts to
    // a power loss only costs a refetch.
    db_opts.full_sync = false;
    auto db = sqlite_db::open(path, db_opts);
    if (!db)
      return std::move(db.error());
    response_cache res;
    res.opts_ = opts;
    res.opts_.max_entries = std::max<size_t>(res.opts_.max_entries, 1);
    res.db_ = std::move(*db);
    if (auto err = res.init())
      return err;
    return res;
  });
}

caf::error response_cache::init() {
  if (auto err = db_.ensure_schema(cache_application_id, schema_version,
                                   schema_sql))
    return err;
  st_ = std::make_unique<statements>();
  struct entry {
    statement* st;
    const char* sql;
  };
  entry all[] = {
    {&st_->get, sql_get},
    {&st_->put, sql_put},
    {&st_->evict, sql_evict},
    {&st_->invalidate, sql_invalidate},
    {&st_->invalidate_prefix, sql_invalidate_prefix},
    {&st_->clear_user, sql_clear_user},
    {&st_->clear, sql_clear},
    {&st_->count, sql_count},
  };
  for (auto& e : all) {
    auto st = db_.prepare(e.sql);
    if (!st)
      return std::move(st.error());
    *e.st = std::move(*st);
  }
  return caf::none;
}

caf::expected<std::optional<cache_entry>>
response_cache::get(const std::string& user, const std::string& key,
                    store_time now, std::chrono::milliseconds max_age) {
  using result = std::optional<cache_entry>;
  return guarded("cannot read", [&]() -> caf::expected<result> {
    auto& st = st_->get;
    st.reset().bind(1, user).bind(2, key);
    auto row = st.step();
    if (!row)
      return std::move(row.error());
    if (!*row)
      return result{};
    cache_entry res;
    res.value = st.column_text(0);
    auto stored_ms = st.column_int(1);
    st.reset();
    res.stored_at = from_unix_ms(stored_ms);
    auto now_ms = to_unix_ms(now);
    if (stored_ms > now_ms) {
      res.age = std::chrono::milliseconds{0};
      res.stale = true;
    } else {
      res.age = std::chrono::milliseconds{now_ms - stored_ms};
      res.stale = res.age > max_age;
    }
    return result{std::move(res)};
  });
}

caf::error response_cache::put(const std::string& user, const std::string& key,
                               const std::string& value, store_time now) {
  return guarded("cannot write", [&]() -> caf::error {
    if (value.size() > opts_.max_value_bytes)
      return make_engine_error(error_class::validation,
                               "response cache: value of "
                                 + std::to_string(value.size())
                                 + " bytes is larger than the limit of "
                                 + std::to_string(opts_.max_value_bytes),
                               0, "too_large");
    auto txn = transaction::begin(db_);
    if (!txn)
      return std::move(txn.error());
    st_->put.reset().bind(1, user).bind(2, key).bind(3, value).bind(
      4, to_unix_ms(now));
    if (auto err = st_->put.run())
      return err;
    auto max = static_cast<int64_t>(std::min<size_t>(
      opts_.max_entries, std::numeric_limits<int64_t>::max()));
    st_->evict.reset().bind(1, max).bind(2, user).bind(3, key);
    if (auto err = st_->evict.run())
      return err;
    return txn->commit();
  });
}

caf::expected<size_t> response_cache::remove(statement& st) {
  if (auto err = st.run())
    return err;
  return static_cast<size_t>(db_.changes());
}

caf::expected<size_t> response_cache::invalidate(const std::string& user,
                                                 const std::string& key) {
  return guarded("cannot write", [&]() -> caf::expected<size_t> {
    return remove(st_->invalidate.reset().bind(1, user).bind(2, key));
  });
}

caf::expected<size_t>
response_cache::invalidate_prefix(const std::string& user,
                                  const std::string& prefix) {
  return guarded("cannot write", [&]() -> caf::expected<size_t> {
    return remove(st_->invalidate_prefix.reset().bind(1, user).bind(2, prefix));
  });
}

caf::expected<size_t> response_cache::clear_user(const std::string& user) {
  return guarded("cannot write", [&]() -> caf::expected<size_t> {
    return remove(st_->clear_user.reset().bind(1, user));
  });
}

caf::expected<size_t> response_cache::clear() {
  return guarded("cannot write", [&]() -> caf::expected<size_t> {
    return remove(st_->clear.reset());
  });
}

caf::expected<size_t> response_cache::size() {
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

} // namespace aico::store
