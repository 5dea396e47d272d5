// aico wire profile: aico_http_session drives the profile's wire layer
// (secure_channel, calls, ndjson, wire_errors) over real HTTP through the
// curl wrapper's public interface (src/transport/curl/http_loop.hpp; no curl
// type here). CAF-free: the engine's HTTP driver calls it with the logical
// call it got and hands the engine_answer (or the wire_error, as an engine
// error) back.
//
// Per logical call:
//  1. map_call: a local answer (logout, /users/me), a refusal, or a wire
//     request. "current" (or no) conversation = the one the last send got.
//  2. Encrypted calls first make sure there is a channel: a handshake when
//     there is none, when it is within the margin of its lifetime, or after
//     a network failure (the server may have restarted). Concurrent calls
//     share one handshake. The server's identity key is pinned on first use
//     (state_dir/known_servers); a changed key is refused and nothing is sent.
//  3. The body is sealed (`{}` for GET), sent with Content-Type
//     application/json and, for routes that need it, the Bearer token.
//  4. A clear 401 "Encryption required" invalidates the channel: handshake
//     again and resend once (the middleware refused the call, so a resend
//     cannot apply it twice).
//  5. The answer is unwrapped and decoded (decode_error / map_reply); a send
//     is read as an NDJSON stream: each line opened on its own, thinking and
//     response chunks passed to on_chunk as they arrive, the final chunk's
//     message_id and X-Conversation-ID kept.
// Callbacks run on the http loop's thread (or, for local answers and
// refusals, on the caller's). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "src/profile/aico/calls.hpp"
#include "src/profile/aico/secure_channel.hpp"

namespace aico::http {
class loop;
}

namespace aico::aico_profile {

struct session_options {
  /// The backend's REST base URL, "http://HOST:PORT" (no path).
  std::string base_url;
  /// Where identity.key and known_servers live (created 0700).
  std::string state_dir;
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds stream_open_timeout{std::chrono::seconds(10)};
  /// Silence allowed inside a reply stream (the backend itself gives up
  /// 30 s after the start with a "Streaming timeout" line).
  std::chrono::milliseconds stream_idle_timeout{std::chrono::seconds(35)};
  channel_options channel;
  std::size_t max_line = 1u << 20;
  /// A send whose outcome is unknown (it may have been stored) is looked up
  /// in the history before it is reported (docs/profiles.md, "A send whose
  /// outcome is unknown"); false reports the error as it came.
  bool verify_unknown_sends = true;
  /// Where the current conversation is kept between runs (one line; 0600),
  /// so that `aico send` continues it the next time; "" = memory only. Only
  /// used for the user it belongs to (its id starts with "<user uuid>_").
  std::string conversation_file;
  /// Injected clocks of the channel (defaults: steady and system clock).
  secure_channel::clock_fn clock;
  secure_channel::wall_fn wall;
};

/// One streamed piece of a reply, in the engine's model.
struct stream_piece {
  bool thinking = false; ///< the model's inner monologue (not the reply)
  stream_chunk chunk;
};

struct call_result {
  call_kind kind = call_kind::health;
  bool ok = false;
  engine_answer answer; ///< when ok: the engine's status and envelope
  wire_error error;     ///< when !ok
  std::optional<send_outcome> send; ///< a send's outcome (reply included)
  bool local = false;               ///< answered without a wire call
};

struct session_counters {
  uint64_t handshakes = 0;       ///< completed handshakes
  uint64_t rehandshakes_401 = 0; ///< after a clear 401 "Encryption required"
  uint64_t proactive = 0;        ///< before the channel's lifetime ended
  uint64_t wire_calls = 0;       ///< HTTP requests other than handshakes
};

class aico_http_session {
public:
  using chunk_fn = std::function<void(const stream_piece&)>;
  using done_fn = std::function<void(call_result)>;

  /// Loads (or creates) the identity in opts.state_dir. nullptr and `err` (a
  /// sentence) if that fails or the base URL is not http(s)://host:port.
  static std::shared_ptr<aico_http_session>
  create(http::loop& loop, session_options opts, std::string& err);

  /// Starts a logical call; `done` runs exactly once.
  void call(const logical_call& c, chunk_fn on_chunk, done_fn done);

  /// call() and wait (bounded by `wait`; a timeout result if it passes).
  call_result call_blocking(const logical_call& c, chunk_fn on_chunk = {},
                            std::chrono::milliseconds wait
                            = std::chrono::seconds(60));

  /// A reconnect happened: the next encrypted call handshakes first.
  void reconnected();

  std::string client_id() const;
  /// The conversation the last send got (used for "current").
  std::string conversation() const;
  /// Sets it (a new session that replaces an older one keeps it); ignored
  /// unless the backend would reuse it (non-empty, contains '_').
  void set_conversation(const std::string& cid);
  session_counters counters() const;
  /// The server key file (pins).
  std::string pin_file() const;

  ~aico_http_session();

  struct impl;

private:
  explicit aico_http_session(std::shared_ptr<impl> p) : impl_(std::move(p)) {}
  std::shared_ptr<impl> impl_;
};

} // namespace aico::aico_profile
