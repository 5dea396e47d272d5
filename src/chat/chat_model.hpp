// aico-chat: what the terminal shows, as plain data (no ncurses here, no
// actors): the conversation's messages keyed by id, the bot's replies as
// they stream in, the connection state and the offline queue's counts.
// Only the UI thread touches a chat_model (see ui_queue.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "messages/offline_queue.hpp"
#include "messages/repositories.hpp"
#include "messages/types.hpp"

namespace aico::chat {

enum class page { starting, login, conversation };

/// One line of the conversation view before wrapping.
struct view_line {
  enum kind_t { message, streaming, notice } kind = message;
  std::string text;
};

class chat_model {
public:
  // -- screens -----------------------------------------------------------
  page current = page::starting;
  std::string login_error; ///< shown on the login screen
  bool login_pending = false;
  bool quit = false;

  // -- session and connection --------------------------------------------
  std::string username;
  connection_state conn;
  bool have_state = false;
  /// " · " in a UTF-8 terminal, " | " otherwise.
  std::string separator = " | ";

  /// "connected · IPC", "degraded · HTTP", "reconnecting in 2.1 s",
  /// "offline: reason", "auth expired: log in again", "connecting".
  std::string connection_text() const;
  /// The top line: connection, user, queued items.
  std::string status_bar() const;

  // -- conversation --------------------------------------------------------
  std::string conversation_id; ///< as asked (empty = current)
  std::string shown_conversation; ///< the gateway's id, once known
  bool offline_copy = false;
  bool history_loaded = false;

  /// Upsert by id (statuses never go backwards; the stream guarantees it,
  /// the model keeps the latest). A final message replaces its stream.
  void upsert(const chat_message& m);
  /// A chunk of a streamed bot reply.
  void add_chunk(const stream_chunk& c);
  /// History: messages not seen yet are inserted in seq order.
  void load_history(const history_result& r);
  /// A line of command output or an error, shown in the view.
  void notice(std::string text);

  /// Whether the model's inner monologue is shown (aico profile: messages
  /// whose id ends in ":thinking"); /thinking toggles it.
  bool show_thinking = false;
  /// A message of the model's inner monologue (not the reply).
  static bool is_thinking(const std::string& id);

  /// Everything the conversation view shows, oldest first.
  std::vector<view_line> lines() const;

  // -- offline queue -------------------------------------------------------
  void queue_update_seen(const queue_update& u);
  void queue_list_seen(const std::vector<queue_entry>& xs);
  size_t queued_count() const { return queue_.size(); }
  size_t parked_count() const;

  /// Text of a status tag: "[queued]", "[failed: reason]", ...
  static std::string status_tag(const chat_message& m);

private:
  bool accepts(const std::string& conversation) const;

  struct entry {
    chat_message msg;
    bool streaming = false;
    std::string partial;          ///< the stream so far
    std::map<uint64_t, std::string> chunks; ///< by seq_no (order, dedup)
    bool is_notice = false;
  };
  std::vector<std::string> order_; ///< ids in display order
  std::map<std::string, entry> entries_;
  uint64_t notices_ = 0;
  std::map<int64_t, std::string> queue_; ///< seq -> status (not yet sent)
};

} // namespace aico::chat
