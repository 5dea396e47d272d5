// aico engine: an incremental parser for `text/event-stream` (Server-Sent
// Events, WHATWG HTML "event stream interpretation"). Pure logic: no I/O, no
// libcurl, no CAF. Feed it the body bytes in whatever chunks they arrive.
//
// Handles: `id:`, `event:`, `data:` (several data lines are joined with
// "\n"), `retry:`, comment lines (starting with ':'), LF / CRLF / CR line
// endings (also a CRLF split across two chunks), a leading UTF-8 BOM, an
// optional single space after the colon, and events split across chunks.
//
// Memory is bounded whatever the peer sends: a line longer than max_line
// fails the parser (the stream must be closed), and an event whose data
// grows past max_event (many `data:` lines without the blank line that
// dispatches it) is dropped: the rest of its lines are skipped up to the
// blank line, dropped_events() counts it, and parsing goes on with the next
// event (the sticky id still advances, so a gap in the gateway's seq is
// visible to the consumer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace aico::http {

/// One dispatched event.
struct sse_event {
  std::string id;    ///< the last event id seen so far (sticky, as in SSE)
  std::string event; ///< the `event:` field, "message" if none was given
  std::string data;  ///< the data lines joined with '\n'
};

class sse_parser {
public:
  /// Longest line accepted (bytes). A longer line puts the parser into the
  /// failed state (protection against a runaway stream).
  static constexpr std::size_t default_max_line = 4 * 1024 * 1024;
  /// Largest event data accepted (bytes, the data lines joined). A larger
  /// event is dropped and counted.
  static constexpr std::size_t default_max_event = 4 * 1024 * 1024;

  explicit sse_parser(std::size_t max_line = default_max_line,
                      std::size_t max_event = default_max_event)
    : max_line_(max_line), max_event_(max_event) {}

  /// Consumes a chunk and returns the events it completed (possibly none).
  /// Once failed(), returns nothing.
  std::vector<sse_event> feed(std::string_view chunk);

  /// Comment lines seen so far (": keep-alive" and friends).
  uint64_t comments() const { return comments_; }

  /// The `retry:` value in milliseconds, -1 if none was seen.
  int64_t retry_ms() const { return retry_ms_; }

  /// The last event id (sticky across events; empty if none).
  const std::string& last_event_id() const { return last_id_; }

  /// True after a line exceeded the maximum length.
  bool failed() const { return failed_; }

  /// Why the parser failed (a sentence), empty while it has not.
  std::string error() const;

  /// Bytes held for the incomplete line and event (bounded by max_line +
  /// max_event).
  std::size_t buffered_bytes() const {
    return line_.size() + data_.size() + event_.size();
  }

  /// Events dropped because their data exceeded max_event.
  uint64_t dropped_events() const { return dropped_; }

  /// Forgets everything (for a new stream).
  void reset();

private:
  void process_line(std::string_view line, std::vector<sse_event>& out);

  std::size_t max_line_;
  std::size_t max_event_;
  bool dropping_ = false; ///< the current event exceeded max_event
  uint64_t dropped_ = 0;
  std::string line_;     ///< the incomplete line so far
  bool skip_lf_ = false; ///< the previous chunk ended with CR
  bool bom_checked_ = false;
  bool failed_ = false;
  // the event being assembled
  std::string event_;
  std::string data_;
  bool has_data_ = false;
  std::string last_id_;
  uint64_t comments_ = 0;
  int64_t retry_ms_ = -1;
};

/// The event's id as a number (the gateway's seq), 0 if it is not one.
uint64_t parse_seq(std::string_view id);

} // namespace aico::http
