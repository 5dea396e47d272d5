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
//   clear() do nothing.
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

private:
  std::string dir_;
};

} // namespace aico
