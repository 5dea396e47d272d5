#include "chat_model.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

namespace aico::chat {

namespace {

std::string upper(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

} // namespace

std::string chat_model::connection_text() const {
  if (!have_state)
    return "connecting";
  switch (conn.state) {
    case link_state::connecting:
      return "connecting";
    case link_state::connected:
      return "connected" + separator + upper(to_string(conn.mode));
    case link_state::degraded:
      return "degraded" + separator + upper(to_string(conn.mode));
    case link_state::reconnecting: {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  conn.next_attempt_in)
                  .count();
      char buf[64];
      std::snprintf(buf, sizeof(buf), "reconnecting in %.1f s",
                    static_cast<double>(ms) / 1000.0);
      return buf;
    }
    case link_state::offline:
      return "offline: " + (conn.reason.empty() ? "stopped" : conn.reason);
    case link_state::auth_expired:
      return "auth expired: log in again";
  }
  return "?";
}

std::string chat_model::status_bar() const {
  std::string s = " " + connection_text();
  if (!username.empty())
    s += separator + "user " + username;
  s += separator + "queue " + std::to_string(queue_.size());
  if (auto p = parked_count(); p > 0)
    s += " (" + std::to_string(p) + " failed)";
  return s;
}

bool chat_model::accepts(const std::string& conversation) const {
  if (conversation.empty() || shown_conversation.empty())
    return true;
  return conversation == shown_conversation;
}

void chat_model::upsert(const chat_message& m) {
  if (m.id.empty() || !accepts(m.conversation_id))
    return;
  if (shown_conversation.empty() && !m.conversation_id.empty()
      && conversation_id.empty() && m.status != message_status::queued)
    shown_conversation = m.conversation_id;
  auto i = entries_.find(m.id);
  if (i == entries_.end()) {
    order_.push_back(m.id);
    entries_[m.id].msg = m;
    return;
  }
  auto& e = i->second;
  e.msg = m;
  e.streaming = false; // the final message replaces the stream
  e.partial.clear();
  e.chunks.clear();
}

void chat_model::add_chunk(const stream_chunk& c) {
  if (c.message_id.empty() || !accepts(c.conversation_id))
    return;
  auto i = entries_.find(c.message_id);
  if (i == entries_.end()) {
    order_.push_back(c.message_id);
    auto& e = entries_[c.message_id];
    e.streaming = true;
    e.msg.id = c.message_id;
    e.msg.conversation_id = c.conversation_id;
    e.msg.sender = "companion";
    e.msg.reply_to = c.reply_to;
    i = entries_.find(c.message_id);
  }
  auto& e = i->second;
  if (!e.streaming)
    return; // the final message is already there
  e.chunks[c.seq_no] = c.chunk;
  e.partial.clear();
  for (auto& [n, text] : e.chunks)
    e.partial += text;
}

void chat_model::load_history(const history_result& r) {
  history_loaded = true;
  offline_copy = r.origin.from_cache;
  if (!r.page.conversation_id.empty())
    shown_conversation = r.page.conversation_id;
  std::vector<std::string> order;
  std::set<std::string> seen;
  for (auto& m : r.page.messages) {
    if (m.id.empty() || !seen.insert(m.id).second)
      continue;
    order.push_back(m.id);
    auto i = entries_.find(m.id);
    if (i == entries_.end())
      entries_[m.id].msg = m;
    else if (i->second.msg.seq == 0)
      i->second.msg.seq = m.seq;
  }
  for (auto& id : order_)
    if (seen.insert(id).second)
      order.push_back(id);
  order_ = std::move(order);
}

void chat_model::notice(std::string text) {
  auto id = "\x01notice-" + std::to_string(++notices_);
  order_.push_back(id);
  auto& e = entries_[id];
  e.is_notice = true;
  e.msg.content = std::move(text);
}

std::string chat_model::status_tag(const chat_message& m) {
  if (m.status == message_status::failed)
    return "[failed: "
           + (m.failure_reason.empty() ? std::string{"unknown"}
                                       : m.failure_reason)
           + "]";
  return std::string{"["} + to_string(m.status) + "]";
}

bool chat_model::is_thinking(const std::string& id) {
  static const std::string suffix = ":thinking";
  return id.size() > suffix.size()
         && id.compare(id.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<view_line> chat_model::lines() const {
  std::vector<view_line> res;
  res.reserve(order_.size());
  for (auto& id : order_) {
    auto i = entries_.find(id);
    if (i == entries_.end())
      continue;
    auto& e = i->second;
    if (e.is_notice) {
      res.push_back({view_line::notice, "* " + e.msg.content});
      continue;
    }
    auto sender = e.msg.sender.empty() ? (username.empty() ? "me" : username)
                                       : e.msg.sender;
    if (is_thinking(id)) {
      if (!show_thinking)
        continue;
      sender += " (thinking)";
    }
    if (e.streaming) {
      res.push_back({view_line::streaming,
                     sender + ": " + e.partial + " [streaming...]"});
      continue;
    }
    res.push_back(
      {view_line::message,
       sender + ": " + e.msg.content + " " + status_tag(e.msg)});
  }
  return res;
}

void chat_model::queue_update_seen(const queue_update& u) {
  switch (u.status) {
    case queue_status::sent:
    case queue_status::dropped:
      queue_.erase(u.entry.seq);
      break;
    case queue_status::failed:
      queue_[u.entry.seq] = "parked";
      break;
    default:
      queue_[u.entry.seq] = to_string(u.status);
  }
}

void chat_model::queue_list_seen(const std::vector<queue_entry>& xs) {
  queue_.clear();
  for (auto& e : xs)
    queue_[e.seq] = e.state == "parked" ? std::string{"parked"} : e.status;
}

size_t chat_model::parked_count() const {
  return static_cast<size_t>(std::count_if(
    queue_.begin(), queue_.end(),
    [](auto& kv) { return kv.second == "parked"; }));
}

} // namespace aico::chat
