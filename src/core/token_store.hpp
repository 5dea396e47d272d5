// aico engine: persistence of the session tokens in STATE_DIR/tokens.json
// (pure logic + file I/O, no actors).
//
// - The directory is created with mode 0700 (missing parents too).
// - The file is written atomically: a fresh temp file in the same directory
//   (mode 0600, O_EXCL), fsync, rename over tokens.json, fsync of the
//   directory. A crash leaves either the old or the new file, never a mix.
// - A file that cannot be parsed is reported as an error (the caller ignores
//   it and starts logged out); nothing throws out of this class.
// - Error messages name the file and the OS error, never a token.
// - An empty state_dir means "memory only": load() finds nothing, save() and
//   clear() do nothing, the lock is always free.
// - Processes sharing a state directory coordinate through an exclusive
//   flock(2) on STATE_DIR/tokens.lock (see token_lock and plan_refresh): a
//   refresh rotates the refresh token, and a second process presenting the
//   used one would make the gateway revoke the whole session. The kernel
//   drops the lock when its holder dies, so a crash never blocks anyone.
#pragma once

#include <string>

#include "caf/all.hpp"

#include "messages/errors.hpp"

namespace aico {

/// What tokens.json holds.
struct stored_tokens {
  std::string access_token;
  std::string refresh_token;
  std::string user_id;
  std::string username;
  std::string role;
};

bool operator==(const stored_tokens& x, const stored_tokens& y);
inline bool operator!=(const stored_tokens& x, const stored_tokens& y) {
  return !(x == y);
}

/// Serializes to the JSON text stored in tokens.json.
std::string to_json(const stored_tokens& x);

/// Parses the JSON text of tokens.json: an object whose fields are all
/// strings, with at least one of access_token / refresh_token non-empty.
caf::expected<stored_tokens> parse_stored_tokens(const std::string& text);

/// An exclusive lock on STATE_DIR/tokens.lock (flock on an open file
/// description: two token_store objects conflict even in one process).
/// Move-only; released by release() or the destructor, and by the kernel
/// when the process dies. Taking it never blocks (try_lock).
class token_lock {
public:
  token_lock() = default;
  ~token_lock() { release(); }
  token_lock(token_lock&& other) noexcept;
  token_lock& operator=(token_lock&& other) noexcept;
  token_lock(const token_lock&) = delete;
  token_lock& operator=(const token_lock&) = delete;

  /// Whether this object holds the lock.
  bool held() const { return held_; }

  /// Lets go of the lock (no-op if not held).
  void release();

private:
  friend class token_store;
  int fd_ = -1;
  bool held_ = false;
};

/// What a process that wants to refresh does, decided under the lock from
/// the pair it holds and what tokens.json holds now.
enum class refresh_plan : uint8_t {
  /// Nobody rotated our refresh token: refresh it (still under the lock).
  refresh,
  /// Another process of this state directory refreshed already: use the
  /// newer pair it stored instead of presenting our used refresh token.
  adopt,
  /// The file is gone (logged out) or holds another user's session: ours is
  /// over; never present the old refresh token again.
  ended,
};

const char* to_string(refresh_plan p);

/// The decision of a refresh under the lock. `stored` is the content of
/// tokens.json (none = no file).
refresh_plan plan_refresh(const stored_tokens& mine,
                          const caf::optional<stored_tokens>& stored);

class token_store {
public:
  static constexpr const char* file_name = "tokens.json";

  explicit token_store(std::string state_dir = {});

  /// False for a memory-only store (empty state_dir).
  bool persistent() const { return !dir_.empty(); }

  const std::string& dir() const { return dir_; }

  /// STATE_DIR/tokens.json, or empty for a memory-only store.
  std::string file_path() const;

  /// Reads tokens.json. `none` if there is no file (or memory-only); an
  /// error if it cannot be read or is corrupt.
  caf::expected<caf::optional<stored_tokens>> load() const;

  /// Writes tokens.json atomically with mode 0600 (creating the directory
  /// with mode 0700 if needed).
  caf::error save(const stored_tokens& x) const;

  /// Deletes tokens.json (no error if it does not exist).
  caf::error clear() const;

  /// STATE_DIR/tokens.lock, or empty for a memory-only store.
  std::string lock_path() const;

  /// Tries to take the exclusive lock without waiting. On return `out`
  /// holds it, or not (another holder: try again later); an error means the
  /// lock cannot be used at all (e.g. the directory is not writable). A
  /// memory-only store always grants it.
  caf::error try_lock(token_lock& out) const;

private:
  std::string dir_;
};

} // namespace aico
