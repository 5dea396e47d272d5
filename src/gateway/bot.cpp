#include "gateway/bot.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "gateway/json_util.hpp"

namespace aico::gateway {

namespace {

bool is_word_byte(unsigned char c) {
  return c >= 0x80 || std::isalnum(c) != 0;
}

// The first `n` code points of UTF-8 text.
std::string utf8_prefix(std::string_view s, std::size_t n) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (count == n)
        return std::string(s.substr(0, i));
      ++count;
    }
  }
  return std::string(s);
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

} // namespace

std::vector<std::string> bot_key_words(std::string_view text, std::size_t n) {
  std::vector<std::string> words;
  std::set<std::string> seen;
  std::size_t i = 0;
  while (i < text.size()) {
    if (!is_word_byte(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && is_word_byte(static_cast<unsigned char>(text[j])))
      ++j;
    std::string w = utf8_prefix(text.substr(i, j - i), 64);
    if (seen.insert(ascii_lower(w)).second)
      words.push_back(std::move(w));
    i = j;
  }
  std::stable_sort(words.begin(), words.end(),
                   [](const std::string& a, const std::string& b) {
                     return utf8_length(a) > utf8_length(b);
                   });
  if (words.size() > n)
    words.resize(n);
  return words;
}

std::string bot_reply_text(std::string_view text) {
  auto words = bot_key_words(text, 3);
  std::string out = "I hear you.";
  if (!words.empty()) {
    out += " You mentioned ";
    for (std::size_t k = 0; k < words.size(); ++k) {
      if (k > 0)
        out += k + 1 == words.size() ? " and " : ", ";
      out += "\"" + words[k] + "\"";
    }
    out += ".";
  }
  out += " Tell me more?";
  return out;
}

std::vector<std::string> bot_chunks(std::string_view reply) {
  // Tokens keep their trailing space, so chunks concatenate to the reply.
  std::vector<std::string_view> tokens;
  std::size_t start = 0;
  for (std::size_t i = 0; i < reply.size(); ++i) {
    if (reply[i] == ' ') {
      tokens.push_back(reply.substr(start, i + 1 - start));
      start = i + 1;
    }
  }
  if (start < reply.size())
    tokens.push_back(reply.substr(start));
  std::size_t n = tokens.size() >= 4 ? 4 : 3;
  std::vector<std::string> chunks(n);
  if (tokens.size() < n) {
    // Too few words: cut by bytes at UTF-8 boundaries instead.
    std::size_t pos = 0;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t end = k + 1 == n ? reply.size() : reply.size() * (k + 1) / n;
      while (end < reply.size()
             && (static_cast<unsigned char>(reply[end]) & 0xC0) == 0x80)
        ++end;
      end = std::max(end, pos);
      chunks[k] = std::string(reply.substr(pos, end - pos));
      pos = end;
    }
    return chunks;
  }
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t from = tokens.size() * k / n;
    std::size_t to = tokens.size() * (k + 1) / n;
    for (std::size_t t = from; t < to; ++t)
      chunks[k] += tokens[t];
  }
  return chunks;
}

} // namespace aico::gateway
