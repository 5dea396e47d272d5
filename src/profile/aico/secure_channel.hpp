// aico wire profile: the app-level transport encryption of the real AICO
// backend (../shared/design/aico-backend-wire.md, section 2.1; docs/profiles.md
// "The aico profile").
//
// * identity: an Ed25519 key kept in the state directory (file 0600 in a 0700
//   directory; a file that group or others can read is refused), so the
//   client_id (first 16 hex characters of the public key) stays stable;
// * handshake: a fresh X25519 ephemeral key per handshake, a random 32-byte
//   challenge signed with the identity key; the server's answer is checked
//   (its signature over its own challenge, its identity key pinned on first
//   use in the state directory: a changed key is refused);
// * envelope: every protected body (`{}` for GET) becomes
//   {"encrypted":true,"payload":b64(nonce24 || crypto_box),"client_id":...};
//   answers and each NDJSON line are opened on their own;
// * lifetime: the server forgets a channel after 3600 s, on a restart, and
//   replaces it on a new handshake. needs_handshake() says when to do one:
//   no channel yet, older than lifetime - margin (injected clock), or
//   invalidated (clear 401 "Encryption required", a reconnect).
//
// Pure code: bytes in, bytes out, no I/O except the two small key files.
// secure_channel.cpp is the only place of the engine that includes sodium.h.
// Nothing here throws except std::bad_alloc.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace aico::aico_profile {

// -- primitives (libsodium) ----------------------------------------

/// Standard base64 with padding, and its strict inverse.
std::string b64_encode(std::string_view bytes);
std::optional<std::string> b64_decode(std::string_view text);
/// base64url without padding (JWT segments); nullopt on error.
std::optional<std::string> b64url_decode(std::string_view text);
/// Lower-case hex.
std::string hex(std::string_view bytes);

// -- identity --------------------------------------------------------------------

/// The client's long-lived Ed25519 identity.
struct identity {
  std::string public_key; ///< 32 bytes
  std::string secret_key; ///< 64 bytes (libsodium's seed || pk)
  std::string client_id;  ///< first 16 hex characters of public_key
};

/// An identity from a 32-byte seed (tests); nullopt if the size is wrong.
std::optional<identity> identity_from_seed(std::string_view seed);
/// A fresh random identity (not stored anywhere).
identity random_identity();

/// Loads `dir`/identity.key (the base64 Ed25519 seed), or creates it on first
/// use (directory 0700, file 0600). Refuses a file that is not a regular
/// file, belongs to another user, or that group/others can read or write.
/// On failure returns nullopt and sets `err` to a sentence.
std::optional<identity> load_or_create_identity(const std::string& dir,
                                                std::string& err);

/// The server identity keys pinned on first use, one line per server
/// ("authority base64key") in one file of the state directory (0600).
class pin_store {
public:
  explicit pin_store(std::string file) : file_(std::move(file)) {}
  const std::string& file() const { return file_; }
  /// The key pinned for `authority` ("" if none, or unreadable: see err).
  std::string pinned(const std::string& authority, std::string& err) const;
  /// Pins `key_b64` for `authority` (replacing nothing: the caller checked
  /// that none is pinned). False with `err` if the file cannot be written.
  bool pin(const std::string& authority, const std::string& key_b64,
           std::string& err) const;

private:
  std::string file_;
};

// -- the channel ----------------------------------------------------------------

/// How a body looked when it was unwrapped.
enum class body_kind {
  clear,        ///< not an encrypted envelope (clear JSON, text/plain, empty)
  decrypted,    ///< an envelope, opened
  undecryptable ///< an envelope that does not open with this channel
};

struct unwrapped {
  body_kind kind = body_kind::clear;
  std::string text; ///< the plaintext (or the body itself when clear)
};

struct channel_options {
  /// The server's channel lifetime (hard-coded 3600 s in the backend).
  std::chrono::milliseconds lifetime{std::chrono::seconds(3600)};
  /// Re-handshake this long before the lifetime ends.
  std::chrono::milliseconds margin{std::chrono::seconds(60)};
};

class secure_channel {
public:
  using clock_type = std::chrono::steady_clock;
  using clock_fn = std::function<clock_type::time_point()>;
  /// Seconds since the Unix epoch (the handshake's timestamp).
  using wall_fn = std::function<double()>;

  using options = channel_options;

  /// `clock` and `wall` default to steady_clock::now and system_clock.
  secure_channel(identity id, options opts = {}, clock_fn clock = {},
                 wall_fn wall = {});

  const identity& id() const { return id_; }
  const std::string& client_id() const { return id_.client_id; }

  /// A new handshake request body (JSON text,
  /// {"handshake_request":{component, identity_key, public_key, timestamp,
  /// challenge, signature}}) with a fresh ephemeral key kept for accept().
  std::string begin_handshake();

  struct accept_result {
    bool ok = false;
    /// The server's identity key (base64) when the answer was well formed
    /// and its signature verified.
    std::string server_identity;
    /// The server's identity differs from `pinned` (error says so).
    bool identity_changed = false;
    std::string error; ///< a sentence when !ok
  };
  /// Checks the handshake answer (status and clear JSON body) of the last
  /// begin_handshake(): 200, "session_established", well-formed keys, the
  /// server's signature over its own challenge, and its identity equal to
  /// `pinned` (base64) unless `pinned` is empty. On success the channel is
  /// open from now on (clock).
  accept_result accept(int status, std::string_view body,
                       const std::string& pinned = {});

  /// Whether a channel is open (and not invalidated).
  bool is_open() const { return open_; }
  /// No channel, invalidated, or within `margin` of the server's lifetime.
  bool needs_handshake() const;
  /// When the channel was opened (clock), epoch if none.
  clock_type::time_point opened_at() const { return opened_at_; }
  /// Forgets the channel (clear 401 "Encryption required", a reconnect).
  void invalidate() { open_ = false; }

  /// base64(nonce || crypto_box(plain)). Requires is_open() or a channel
  /// that was opened before (the key is kept until the next handshake).
  std::string seal(std::string_view plain) const;
  /// The plaintext of a payload, nullopt if it does not open.
  std::optional<std::string> open(std::string_view payload_b64) const;
  /// The request envelope of a JSON text:
  /// {"encrypted":true,"payload":…,"client_id":…}.
  std::string envelope(std::string_view plain_json) const;
  /// A response body (or one NDJSON line): an object with a truthy
  /// "encrypted" and a string "payload" is opened, anything else is clear.
  unwrapped unwrap(std::string_view body) const;

private:
  identity id_;
  options opts_;
  clock_fn clock_;
  wall_fn wall_;
  std::string eph_pk_, eph_sk_;
  std::string shared_; ///< crypto_box_beforenm key of the last accept
  bool open_ = false;
  clock_type::time_point opened_at_{};
};

} // namespace aico::aico_profile
