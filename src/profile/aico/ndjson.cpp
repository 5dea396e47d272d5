#include "src/profile/aico/ndjson.hpp"

#include <boost/json.hpp>

namespace aico::aico_profile {

namespace json = boost::json;

bool ndjson_reader::feed(std::string_view bytes, const line_fn& on_line) {
  if (failed_)
    return false;
  while (!bytes.empty()) {
    auto nl = bytes.find('\n');
    auto part = bytes.substr(0, nl);
    if (pending_.size() + part.size() > max_line_ + 1) { // +1: a trailing \r
      failed_ = true;
      pending_.clear();
      return false;
    }
    if (nl == std::string_view::npos) {
      pending_.append(part.data(), part.size());
      // a line may only exceed the cap by the '\r' of its "\r\n"
      if (pending_.size() > max_line_
          && !(pending_.size() == max_line_ + 1 && pending_.back() == '\r')) {
        failed_ = true;
        pending_.clear();
        return false;
      }
      return true;
    }
    pending_.append(part.data(), part.size());
    bytes.remove_prefix(nl + 1);
    std::string line;
    line.swap(pending_);
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.size() > max_line_) {
      failed_ = true;
      return false;
    }
    if (!line.empty() && on_line)
      on_line(line);
  }
  return true;
}

bool ndjson_reader::finish(const line_fn& on_line) {
  if (failed_)
    return false;
  std::string line;
  line.swap(pending_);
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  if (!line.empty() && on_line)
    on_line(line);
  return true;
}

namespace {

std::string str_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string{};
}

} // namespace

stream_line parse_stream_line(std::string_view plain) {
  stream_line s;
  json::error_code ec;
  auto v = json::parse(plain, ec);
  if (ec || !v.is_object())
    return s;
  auto& o = v.get_object();
  auto type = str_of(o, "type");
  s.message_id = str_of(o, "message_id");
  s.conversation_id = str_of(o, "conversation_id");
  s.timestamp = str_of(o, "timestamp");
  if (type == "metadata") {
    s.kind = line_kind::metadata;
  } else if (type == "error") {
    s.kind = line_kind::error;
    s.error = decode_stream_error(plain);
  } else if (type == "chunk") {
    s.content = str_of(o, "content");
    s.accumulated = str_of(o, "accumulated");
    auto* done = o.if_contains("done");
    if (done && done->is_bool() && done->get_bool())
      s.kind = line_kind::final;
    else if (str_of(o, "content_type") == "thinking")
      s.kind = line_kind::thinking;
    else
      s.kind = line_kind::response;
  }
  return s;
}

const stream_line& reply_stream::add(std::string_view plain) {
  last_ = parse_stream_line(plain);
  auto& s = last_;
  auto take_ids = [&] {
    if (!s.message_id.empty())
      message_id_ = s.message_id;
    if (!s.conversation_id.empty())
      conversation_id_ = s.conversation_id;
    if (!s.timestamp.empty() && timestamp_.empty())
      timestamp_ = s.timestamp;
  };
  switch (s.kind) {
    case line_kind::metadata:
      take_ids();
      break;
    case line_kind::thinking:
      ++chunks_;
      thinking_ += s.content;
      break;
    case line_kind::response:
      ++chunks_;
      ++response_chunks_;
      response_ += s.content;
      break;
    case line_kind::final:
      take_ids();
      if (!s.content.empty()) {
        ++chunks_;
        ++response_chunks_;
        response_ += s.content;
      }
      if (!s.accumulated.empty() || response_.empty())
        response_ = s.accumulated;
      done_ = true;
      break;
    case line_kind::error:
      if (!error_ && s.error)
        error_ = s.error;
      break;
    case line_kind::other:
      break;
  }
  return last_;
}

} // namespace aico::aico_profile
