#include "src/transport/curl/sse_parser.hpp"

#include <charconv>

namespace aico::http {

namespace {

constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

bool all_digits(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s)
    if (c < '0' || c > '9')
      return false;
  return true;
}

} // namespace

void sse_parser::reset() {
  line_.clear();
  skip_lf_ = false;
  bom_checked_ = false;
  failed_ = false;
  event_.clear();
  data_.clear();
  has_data_ = false;
  last_id_.clear();
  comments_ = 0;
  retry_ms_ = -1;
  dropping_ = false;
  dropped_ = 0;
}

std::string sse_parser::error() const {
  if (!failed_)
    return {};
  return "event stream line longer than " + std::to_string(max_line_)
         + " bytes";
}

std::vector<sse_event> sse_parser::feed(std::string_view chunk) {
  std::vector<sse_event> out;
  while (!chunk.empty() && !failed_) {
    if (skip_lf_) {
      // a CR ended the previous line: a directly following LF belongs to it
      skip_lf_ = false;
      if (chunk.front() == '\n') {
        chunk.remove_prefix(1);
        continue;
      }
    }
    auto eol = chunk.find_first_of("\r\n");
    if (eol == std::string_view::npos) {
      if (line_.size() + chunk.size() > max_line_) {
        failed_ = true;
        line_.clear();
        break;
      }
      line_.append(chunk.data(), chunk.size());
      break;
    }
    std::string_view piece = chunk.substr(0, eol);
    if (line_.size() + piece.size() > max_line_) {
      failed_ = true;
      line_.clear();
      break;
    }
    if (chunk[eol] == '\r') {
      if (eol + 1 < chunk.size()) {
        if (chunk[eol + 1] == '\n')
          ++eol; // CRLF within this chunk
      } else {
        skip_lf_ = true; // CR at the very end: maybe an LF comes next
      }
    }
    chunk.remove_prefix(eol + 1);
    if (line_.empty()) {
      process_line(piece, out);
    } else {
      line_.append(piece.data(), piece.size());
      std::string line;
      line.swap(line_);
      process_line(line, out);
    }
  }
  return out;
}

void sse_parser::process_line(std::string_view line,
                              std::vector<sse_event>& out) {
  if (!bom_checked_) {
    bom_checked_ = true;
    if (line.substr(0, utf8_bom.size()) == utf8_bom)
      line.remove_prefix(utf8_bom.size());
  }
  if (line.empty()) {
    // dispatch
    if (dropping_) {
      dropping_ = false;
    } else if (has_data_) {
      sse_event ev;
      ev.id = last_id_;
      ev.event = event_.empty() ? std::string{"message"} : event_;
      ev.data = std::move(data_);
      out.emplace_back(std::move(ev));
    }
    event_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') {
    ++comments_;
    return;
  }
  std::string_view field;
  std::string_view value;
  auto colon = line.find(':');
  if (colon == std::string_view::npos) {
    field = line;
  } else {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
  }
  if (field == "data") {
    if (dropping_)
      return;
    if (data_.size() + (has_data_ ? 1 : 0) + value.size() > max_event_) {
      // too large: forget what we have, skip the rest of the event
      ++dropped_;
      dropping_ = true;
      std::string{}.swap(data_);
      has_data_ = false;
      return;
    }
    if (has_data_)
      data_ += '\n';
    data_.append(value.data(), value.size());
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value.data(), value.size());
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos)
      last_id_.assign(value.data(), value.size());
  } else if (field == "retry") {
    if (all_digits(value)) {
      int64_t ms = 0;
      auto res = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (res.ec == std::errc{})
        retry_ms_ = ms;
    }
  }
  // any other field is ignored
}

uint64_t parse_seq(std::string_view id) {
  if (!all_digits(id))
    return 0;
  uint64_t v = 0;
  auto res = std::from_chars(id.data(), id.data() + id.size(), v);
  if (res.ec != std::errc{} || res.ptr != id.data() + id.size())
    return 0;
  return v;
}

} // namespace aico::http
