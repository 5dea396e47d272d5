// aico reference gateway: the companion bot's deterministic replies.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace aico::gateway {

/// Up to `n` key words of a text: the longest words (ties: first seen),
/// case-insensitively unique, longest first. Words are runs of ASCII letters
/// and digits and non-ASCII UTF-8 characters; each is cut to 64 characters.
std::vector<std::string> bot_key_words(std::string_view text,
                                       std::size_t n = 3);

/// The bot's reply to a user's text, e.g.
/// `I hear you. You mentioned "gardening", "tomatoes" and "summer". Tell me
/// more?`.
std::string bot_reply_text(std::string_view text);

/// Splits a reply into 3 or 4 chunks (at spaces) whose concatenation is the
/// reply.
std::vector<std::string> bot_chunks(std::string_view reply);

} // namespace aico::gateway
