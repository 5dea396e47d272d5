#include "src/core/event_cursor.hpp"

#include <algorithm>

#include <boost/json.hpp>

namespace aico {

namespace json = boost::json;

namespace {

/// Topics whose data the protocol defines as a JSON object.
bool object_topic(const std::string& t) {
  return t == "message" || t == "message.read" || t == "message.stream"
         || t == "system.update";
}

} // namespace

std::string encode_replay_outcome(uint64_t since, bool complete) {
  json::object o;
  o["since"] = since;
  o["complete"] = complete;
  return json::serialize(o);
}

bool decode_replay_outcome(const std::string& data, uint64_t& since,
                           bool& complete) {
  boost::system::error_code ec;
  auto v = json::parse(data, ec);
  if (ec || !v.is_object())
    return false;
  auto& o = v.get_object();
  auto c = o.if_contains("complete");
  if (!c || !c->is_bool())
    return false;
  complete = c->get_bool();
  since = 0;
  if (auto s = o.if_contains("since")) {
    if (s->is_uint64())
      since = s->get_uint64();
    else if (s->is_int64() && s->get_int64() > 0)
      since = static_cast<uint64_t>(s->get_int64());
  }
  return true;
}

server_event replay_outcome_event(uint64_t since, bool complete,
                                  transport_mode via) {
  server_event ev;
  ev.topic = replay_topic;
  ev.data = encode_replay_outcome(since, complete);
  ev.seq = 0;
  ev.via = via;
  return ev;
}

event_cursor::verdict event_cursor::on_event(const server_event& ev) {
  const bool is_message = ev.topic == "message" || ev.topic == "message.read";
  std::string conv;
  int64_t msg_seq = -1;
  if (object_topic(ev.topic)) {
    boost::system::error_code ec;
    auto v = json::parse(ev.data, ec);
    if (ec || !v.is_object()) {
      ++stats_.malformed;
      return verdict::malformed;
    }
    if (is_message) {
      auto& o = v.get_object();
      if (auto c = o.if_contains("conversation_id"); c && c->is_string())
        conv.assign(c->get_string().data(), c->get_string().size());
      if (auto s = o.if_contains("seq"); s && s->is_int64())
        msg_seq = s->get_int64();
      else if (s && s->is_uint64())
        msg_seq = static_cast<int64_t>(
          std::min<uint64_t>(s->get_uint64(), INT64_MAX));
    }
  }
  if (ev.seq > 0) {
    if (ev.seq <= last_seq_) {
      ++stats_.duplicates;
      return verdict::duplicate;
    }
    last_seq_ = ev.seq;
    stats_.last_seq = last_seq_;
  }
  if (is_message && !conv.empty() && msg_seq >= 0)
    on_position(conv, msg_seq);
  ++stats_.delivered;
  return verdict::deliver;
}

void event_cursor::on_position(const std::string& conv, int64_t seq) {
  auto& at = conversations_[conv];
  at = std::max(at, seq);
  last_message_seq_ = std::max(last_message_seq_, seq);
}

bool event_cursor::on_replay(bool complete) {
  ++stats_.resumes;
  if (complete)
    return false;
  ++stats_.gaps;
  last_seq_ = 0; // the next event sets it again, whatever its counter
  return true;
}

void event_cursor::on_recovered(const std::string& conversation_id,
                                int64_t seq) {
  ++stats_.recovered;
  ++stats_.delivered;
  if (!conversation_id.empty() && seq >= 0)
    on_position(conversation_id, seq);
}

void event_cursor::reset() {
  last_seq_ = 0;
  last_message_seq_ = -1;
  conversations_.clear();
  stats_.last_seq = 0;
}

} // namespace aico
