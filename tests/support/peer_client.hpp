// Test support: a client of the real AICO backend's wire
// (../shared/design/aico-backend-wire.md, sections 2.1 and 3.1), independent
// of the peer's own code. Its cryptography is the engine's aico profile
// (src/profile/aico/secure_channel.hpp), so the peer's conformance tests
// also check the engine's channel against the peer's own crypto:
//   - handshake: Ed25519 identity key + ephemeral X25519 key, a signed random
//     challenge, the server's signature over its own challenge verified and
//     its identity key pinned on first use;
//   - client_id = the first 16 hex characters of the identity key;
//   - every protected body as {"encrypted":true,"payload":b64(nonce||box),
//     "client_id":...} (crypto_box_easy, the nonce prepended), responses and
//     every NDJSON line decrypted on their own;
//   - a WebSocket client that keeps raw frames and the close reason.
// Every operation is bounded by a timeout. Loopback only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "support/clients.hpp"

namespace aico::aico_profile {
class secure_channel;
}

namespace aico::test {

namespace json = boost::json;

/// Standard base64 (with padding) and its strict inverse ("" on error).
std::string b64(std::string_view bytes);
std::optional<std::string> unb64(std::string_view text);
/// Lower-case hex.
std::string to_hex(std::string_view bytes);
/// base64url without padding, decoded ("" on error): for JWT segments.
std::string unb64url(std::string_view text);
/// The decoded payload object of a JWT (null if malformed).
json::value jwt_payload(const std::string& token);
/// The raw payload JSON text of a JWT.
std::string jwt_payload_text(const std::string& token);

struct aico_reply {
  int status = 0;    ///< 0 when the transport failed (see error)
  std::string error; ///< transport error ("timeout", ...)
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string raw;                            ///< the body as received
  bool encrypted = false;                     ///< raw was a response envelope
  std::string plain; ///< decrypted plaintext (or raw when clear)
  json::value json;  ///< plain parsed (null if not JSON)
  ms elapsed{0};

  std::string header(const std::string& name) const;
  std::string str(std::string_view pointer) const {
    return jstr(json, pointer);
  }
  bool success() const { return jtrue(json, "/success"); }
};

struct aico_stream {
  int status = 0;
  std::string error;
  std::map<std::string, std::string> headers;
  std::vector<std::string> raw_lines; ///< each NDJSON line as received
  std::vector<json::value> lines;     ///< each line decrypted and parsed
  std::vector<ms> arrival;            ///< when each line arrived (from start)
  bool complete = false;              ///< the terminating chunk arrived
  aico_reply body; ///< a non-streamed answer (e.g. an error), decrypted
  std::string header(const std::string& name) const;
};

class aico_client {
public:
  aico_client(std::string host, uint16_t port, ms timeout = default_timeout);
  /// With a fixed Ed25519 seed (32 bytes), so client_id is stable.
  aico_client(std::string host, uint16_t port, std::string seed,
              ms timeout = default_timeout);
  ~aico_client();
  aico_client(aico_client&&) noexcept;
  aico_client& operator=(aico_client&&) noexcept;
  /// A copy has the same identity and the same (current) session key.
  aico_client(const aico_client& other);
  aico_client& operator=(const aico_client& other);

  const std::string& client_id() const { return client_id_; }
  std::string identity_key_b64() const;
  void set_timeout(ms t) { timeout_ = t; }

  /// A signed handshake request body {"handshake_request":{...}} with a
  /// fresh ephemeral key, its timestamp shifted by `timestamp_offset_s`.
  json::object handshake_request(double timestamp_offset_s = 0);
  /// Performs the handshake. False with `why` if the status is not 200, the
  /// response is malformed, the server's signature does not verify, or its
  /// identity key differs from the one pinned by an earlier handshake.
  bool handshake(std::string* why = nullptr);
  /// The raw answer of the last handshake.
  const aico_reply& last_handshake() const { return last_handshake_; }
  /// The server identity key pinned on first use (base64), "" before.
  const std::string& pinned_identity() const { return pinned_; }
  bool has_channel() const { return has_channel_; }

  /// The request envelope for a JSON value.
  std::string envelope(const json::value& v) const;
  /// base64(nonce || crypto_box) of `plain` with the channel.
  std::string seal(std::string_view plain) const;
  std::optional<std::string> open(std::string_view payload_b64) const;

  /// A protected call: `body` encrypted (`{}` for GET too), the answer
  /// decrypted when it is an envelope.
  aico_reply call(const std::string& method, const std::string& path,
                  const json::value& body = json::object{},
                  const std::string& token = "",
                  const std::map<std::string, std::string>& extra = {});
  /// Sends `raw_body` as it is (plaintext or hand-made envelopes).
  aico_reply send_raw(const std::string& method, const std::string& path,
                      const std::string& raw_body,
                      const std::string& token = "",
                      const std::map<std::string, std::string>& extra = {});
  /// POST /api/v1/users/authenticate.
  aico_reply login(const std::string& uuid, const std::string& pin);

  /// A protected POST whose answer is read as a (chunked) NDJSON stream.
  aico_stream stream(const std::string& path, const json::value& body,
                     const std::string& token, ms timeout);

private:
  aico_reply decode(http_response r) const;
  std::string host_;
  uint16_t port_;
  ms timeout_;
  std::unique_ptr<::aico::aico_profile::secure_channel> channel_;
  /// Added to the handshake's timestamp (shared with the channel's clock,
  /// so a moved client keeps working).
  std::shared_ptr<double> timestamp_offset_ = std::make_shared<double>(0);
  std::string client_id_;
  std::string pinned_;
  bool has_channel_ = false;
  aico_reply last_handshake_;
};

/// A WebSocket client with a reader thread that keeps every text frame as
/// received, and the close code and reason the server sent.
class peer_ws {
public:
  peer_ws(std::string host, uint16_t port, ms timeout = default_timeout);
  ~peer_ws();
  peer_ws(const peer_ws&) = delete;
  peer_ws& operator=(const peer_ws&) = delete;

  /// Opens the connection; `headers` go into the upgrade request.
  bool connect(const std::string& path = "/",
               const std::map<std::string, std::string>& headers = {});
  const std::string& error() const { return error_; }
  bool send_text(const std::string& text);
  bool send(const json::value& v) { return send_text(to_text(v)); }

  /// The next frame's raw text.
  std::optional<std::string> receive_text(ms timeout = default_timeout);
  /// The next frame, parsed (a {"_raw":...} object if not JSON).
  std::optional<json::value> receive(ms timeout = default_timeout);
  /// Skips frames until one with this "type".
  std::optional<json::value> receive_type(const std::string& type,
                                          ms timeout = default_timeout);
  bool wait_closed(ms timeout = default_timeout);
  bool closed() const { return closed_; }
  int close_code() const { return close_code_; }
  std::string close_reason() const;
  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::string host_;
  uint16_t port_;
  ms timeout_;
  std::string error_;
  std::atomic<bool> open_{false};
  std::atomic<bool> closed_{false};
  std::atomic<int> close_code_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> frames_;
  std::string close_reason_;
  std::thread reader_;
};

} // namespace aico::test
