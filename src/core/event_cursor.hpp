// aico engine: the engine's position in the gateway's event stream (pure
// logic, no actors; used by the supervisor).
//
// Events carry a gateway-wide, increasing `seq`. After every reconnect,
// failover or token refresh the transports resubscribe from the last seq
// the engine delivered and the gateway replays what came after it, so the
// same event can arrive twice around a switch-over: the cursor lets each
// seq through once. When the gateway reports that it could not replay
// everything (or has no replay), the supervisor reads the history of every
// conversation the cursor knows since the last message seq seen there.
// Events whose data must be a JSON object but is not are dropped and
// counted.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "messages/types.hpp"

namespace aico {

/// Topic of the replay outcome a transport forwards after a resubscribe
/// with a seq (seq 0; never passed on to the watchers).
inline constexpr const char* replay_topic = "events.replay";

/// Topic of the note a transport whose driver has token_per_connection
/// forwards when its subscription was refused (seq 0, data {}; once per
/// connection; never passed on to the watchers): the supervisor asks the
/// token manager for a fresh token and hands it to the transports.
inline constexpr const char* token_refused_topic = "link.token_refused";

/// Data of a replay outcome: {"since":S,"complete":true|false}.
std::string encode_replay_outcome(uint64_t since, bool complete);

/// Parses a replay outcome; false if `data` is not one.
bool decode_replay_outcome(const std::string& data, uint64_t& since,
                           bool& complete);

/// The outcome event a transport forwards.
server_event replay_outcome_event(uint64_t since, bool complete,
                                  transport_mode via);

class event_cursor {
public:
  enum class verdict : uint8_t {
    deliver,   ///< new: hand it to the watchers
    duplicate, ///< its seq was delivered already
    malformed, ///< data is not what the topic promises
  };

  /// An event of the active transport (not a replay outcome).
  verdict on_event(const server_event& ev);

  /// A replay outcome; true if a history catch-up is needed. An incomplete
  /// replay also resets the duplicate filter (the gateway's counter may
  /// have started anew: a restart with a clock that went back).
  bool on_replay(bool complete);

  /// A message recovered from the history (counted, positions updated).
  void on_recovered(const std::string& conversation_id, int64_t seq);

  /// The seq of the last event delivered (0 = none).
  uint64_t last_seq() const { return last_seq_; }

  /// Conversation id -> the highest message seq delivered in it.
  const std::map<std::string, int64_t>& conversations() const {
    return conversations_;
  }

  /// The highest message seq delivered in any conversation (-1 = none).
  int64_t last_message_seq() const { return last_message_seq_; }

  /// Forgets everything (another session begins).
  void reset();

  const event_stats& stats() const { return stats_; }

private:
  void on_position(const std::string& conv, int64_t seq);

  uint64_t last_seq_ = 0;
  int64_t last_message_seq_ = -1;
  std::map<std::string, int64_t> conversations_;
  event_stats stats_;
};

} // namespace aico
