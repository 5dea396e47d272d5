// aico wire profile: the streamed chat reply (wire document 2.3, `?stream=true`).
//
// ndjson_reader splits the body bytes into lines as they arrive (any chunking,
// CR LF or LF, a per-line cap); each line is one envelope that the caller
// opens on its own (secure_channel::unwrap). reply_stream then routes each
// decrypted line:
//   {"type":"metadata","message_id","conversation_id","timestamp"}
//   {"type":"chunk","content","accumulated","done":false,"content_type":
//    "thinking"|"response"}
//   {"type":"chunk","content":"","accumulated":…,"done":true,…,
//    "conversation_id","message_id"}                      (the final chunk)
//   {"type":"error","error":…}
// Pure code, never throws (except bad_alloc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "src/profile/aico/wire_errors.hpp"

namespace aico::aico_profile {

class ndjson_reader {
public:
  using line_fn = std::function<void(std::string_view)>;

  explicit ndjson_reader(std::size_t max_line = 1u << 20)
    : max_line_(max_line) {}

  /// Feeds body bytes; `on_line` gets every complete, non-empty line
  /// (without its "\n" or "\r\n"). False once a line exceeded the cap (the
  /// reader is then failed and ignores further input).
  bool feed(std::string_view bytes, const line_fn& on_line);
  /// End of the body: a last line without "\n" is delivered.
  bool finish(const line_fn& on_line);

  bool failed() const { return failed_; }
  std::size_t buffered() const { return pending_.size(); }
  std::size_t max_line() const { return max_line_; }

private:
  std::size_t max_line_;
  std::string pending_;
  bool failed_ = false;
};

/// What one decrypted line of a reply stream is.
enum class line_kind {
  metadata, ///< message_id / conversation_id / timestamp of the send
  thinking, ///< a chunk of the model's inner monologue
  response, ///< a chunk of the reply
  final,    ///< the terminating chunk (done: true)
  error,    ///< {"type":"error"}
  other     ///< anything else (ignored; "raw" chunks, unknown types)
};

struct stream_line {
  line_kind kind = line_kind::other;
  std::string content;     ///< the chunk's text
  std::string accumulated; ///< the text so far, per content type
  std::string message_id;
  std::string conversation_id;
  std::string timestamp;
  std::optional<wire_error> error;
};

/// Classifies one decrypted line (not JSON → other).
stream_line parse_stream_line(std::string_view plain);

/// The state of one streamed reply, fed line by line.
class reply_stream {
public:
  /// Routes one decrypted line; returns what it was.
  const stream_line& add(std::string_view plain);

  bool done() const { return done_; }
  const std::optional<wire_error>& error() const { return error_; }
  /// From the metadata line, then the final chunk (which wins).
  const std::string& message_id() const { return message_id_; }
  const std::string& conversation_id() const { return conversation_id_; }
  const std::string& timestamp() const { return timestamp_; }
  /// The reply: the final chunk's `accumulated` when it came, else the
  /// response chunks joined (a lost first chunk is still in `accumulated`).
  const std::string& response() const { return response_; }
  const std::string& thinking() const { return thinking_; }
  /// Content chunks seen (thinking + response).
  uint64_t chunks() const { return chunks_; }
  uint64_t response_chunks() const { return response_chunks_; }

private:
  stream_line last_;
  bool done_ = false;
  std::optional<wire_error> error_;
  std::string message_id_, conversation_id_, timestamp_;
  std::string response_, thinking_;
  uint64_t chunks_ = 0, response_chunks_ = 0;
};

} // namespace aico::aico_profile
