// Unit tests: the incremental Server-Sent Events parser and the libcurl
// result mapping (pure logic, no server).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "src/transport/curl/http_loop.hpp"
#include "src/transport/curl/sse_parser.hpp"

using aico::http::parse_seq;
using aico::http::sse_event;
using aico::http::sse_parser;

namespace {

/// Feeds `text` in pieces of `step` bytes and collects every event.
std::vector<sse_event> feed_in_steps(sse_parser& p, const std::string& text,
                                     std::size_t step) {
  std::vector<sse_event> out;
  for (std::size_t i = 0; i < text.size(); i += step) {
    auto evs = p.feed(std::string_view{text}.substr(i, step));
    out.insert(out.end(), evs.begin(), evs.end());
  }
  return out;
}

} // namespace

TEST(sse_parser, single_event_with_id_event_and_data) {
  sse_parser p;
  auto evs = p.feed("id: 42\nevent: message\ndata: {\"a\":1}\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].id, "42");
  EXPECT_EQ(evs[0].event, "message");
  EXPECT_EQ(evs[0].data, "{\"a\":1}");
  EXPECT_EQ(p.last_event_id(), "42");
}

TEST(sse_parser, nothing_is_dispatched_before_the_blank_line) {
  sse_parser p;
  EXPECT_TRUE(p.feed("id: 1\nevent: x\ndata: y\n").empty());
  auto evs = p.feed("\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "y");
}

TEST(sse_parser, multi_line_data_is_joined_with_newlines) {
  sse_parser p;
  auto evs = p.feed("data: first\ndata: second\ndata:\ndata: fourth\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "first\nsecond\n\nfourth");
}

TEST(sse_parser, comments_are_counted_and_never_dispatched) {
  sse_parser p;
  auto evs = p.feed(": keep-alive\n\n: another\n\n");
  EXPECT_TRUE(evs.empty());
  EXPECT_EQ(p.comments(), 2u);
  evs = p.feed(": note\ndata: x\n: inside\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "x");
  EXPECT_EQ(p.comments(), 4u);
}

TEST(sse_parser, crlf_and_cr_line_endings) {
  sse_parser p;
  auto evs = p.feed("id: 7\r\nevent: a\r\ndata: one\r\n\r\n"
                    "event: b\rdata: two\r\r");
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].event, "a");
  EXPECT_EQ(evs[0].data, "one");
  EXPECT_EQ(evs[1].event, "b");
  EXPECT_EQ(evs[1].data, "two");
  EXPECT_EQ(evs[1].id, "7"); // sticky
}

TEST(sse_parser, crlf_split_across_chunks_is_one_line_ending) {
  sse_parser p;
  EXPECT_TRUE(p.feed("data: a\r").empty());
  EXPECT_TRUE(p.feed("\ndata: b\r").empty());
  auto evs = p.feed("\n\r");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "a\nb");
  // the LF after the dispatching CR is part of it, not another blank line
  evs = p.feed("\ndata: c\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "c");
}

TEST(sse_parser, events_split_at_every_position_give_the_same_result) {
  const std::string text = ": keep-alive\r\n\r\n"
                           "id: 10\nevent: message\ndata: {\"x\":\"a b\"}\n\n"
                           "id: 11\r\nevent: message.stream\r\ndata: l1\r\n"
                           "data: l2\r\n\r\n"
                           "id: 12\revent: system.update\rdata: {}\r\r";
  sse_parser whole;
  auto expected = whole.feed(text);
  ASSERT_EQ(expected.size(), 3u);
  for (std::size_t step = 1; step <= text.size(); ++step) {
    sse_parser p;
    auto evs = feed_in_steps(p, text, step);
    ASSERT_EQ(evs.size(), expected.size()) << "step " << step;
    for (std::size_t i = 0; i < evs.size(); ++i) {
      EXPECT_EQ(evs[i].id, expected[i].id) << "step " << step;
      EXPECT_EQ(evs[i].event, expected[i].event) << "step " << step;
      EXPECT_EQ(evs[i].data, expected[i].data) << "step " << step;
    }
    EXPECT_EQ(p.comments(), 1u);
  }
  EXPECT_EQ(expected[0].id, "10");
  EXPECT_EQ(expected[0].data, "{\"x\":\"a b\"}");
  EXPECT_EQ(expected[1].event, "message.stream");
  EXPECT_EQ(expected[1].data, "l1\nl2");
  EXPECT_EQ(expected[2].event, "system.update");
}

TEST(sse_parser, field_syntax_details) {
  sse_parser p;
  // no space after the colon; two spaces keep one; a line without a colon
  // is a field with an empty value; unknown fields are ignored
  auto evs = p.feed("data:x\ndata:  y\ndata\nfoo: bar\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "x\n y\n");
  EXPECT_EQ(evs[0].event, "message"); // the default type
}

TEST(sse_parser, an_event_without_data_is_not_dispatched_but_sets_the_id) {
  sse_parser p;
  auto evs = p.feed("id: 5\nevent: ping\n\n");
  EXPECT_TRUE(evs.empty());
  EXPECT_EQ(p.last_event_id(), "5");
  evs = p.feed("data: z\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].id, "5");
  EXPECT_EQ(evs[0].event, "message"); // the event type does not carry over
}

TEST(sse_parser, leading_bom_is_ignored_even_when_split) {
  sse_parser p;
  EXPECT_TRUE(p.feed("\xEF\xBB").empty());
  auto evs = p.feed("\xBF" "data: a\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "a");
}

TEST(sse_parser, retry_field) {
  sse_parser p;
  EXPECT_EQ(p.retry_ms(), -1);
  p.feed("retry: 1500\n\n");
  EXPECT_EQ(p.retry_ms(), 1500);
  p.feed("retry: soon\n\n"); // not a number: ignored
  EXPECT_EQ(p.retry_ms(), 1500);
}

TEST(sse_parser, overlong_line_fails_the_parser) {
  sse_parser p{16};
  EXPECT_TRUE(p.feed("data: 0123456789").empty());
  EXPECT_FALSE(p.failed());
  EXPECT_TRUE(p.feed("abcdef\n\n").empty());
  EXPECT_TRUE(p.failed());
  EXPECT_TRUE(p.feed("data: x\n\n").empty());
  p.reset();
  EXPECT_FALSE(p.failed());
  EXPECT_EQ(p.feed("data: x\n\n").size(), 1u);
}

TEST(sse_parser, overlong_line_failure_says_why) {
  sse_parser p{16};
  EXPECT_EQ(p.error(), "");
  p.feed("data: 0123456789abcdef\n");
  ASSERT_TRUE(p.failed());
  EXPECT_NE(p.error().find("longer than 16 bytes"), std::string::npos);
}

TEST(sse_parser, data_lines_without_a_blank_line_stay_bounded) {
  // issue 12: an unterminated stream of data: lines (no blank line) used
  // to be buffered without bound (512 MiB measured).
  sse_parser p; // defaults: 4 MiB per line and per event
  const std::string line = "data: " + std::string(1000, 'x') + "\n";
  std::string chunk;
  for (int i = 0; i < 64; ++i)
    chunk += line; // 64 KB per chunk
  std::size_t most = 0;
  for (int i = 0; i < 160; ++i) { // 10 MiB in all
    EXPECT_TRUE(p.feed(chunk).empty());
    most = std::max(most, p.buffered_bytes());
  }
  EXPECT_FALSE(p.failed());
  EXPECT_LE(most, sse_parser::default_max_event + sse_parser::default_max_line);
  EXPECT_LE(p.buffered_bytes(), 1024u); // the oversized event was let go
  EXPECT_EQ(p.dropped_events(), 1u);
  // the blank line ends the dropped event; the next one is delivered
  EXPECT_TRUE(p.feed("id: 7\n\n").empty());
  auto evs = p.feed("id: 8\ndata: ok\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "ok");
  EXPECT_EQ(evs[0].id, "8");
  EXPECT_EQ(p.dropped_events(), 1u);
}

TEST(sse_parser, event_cap_counts_the_joined_data) {
  sse_parser p{64, 10};
  // 5 + 1 + 4 = 10 bytes: fits exactly
  auto evs = p.feed("data: 12345\ndata: 6789\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "12345\n6789");
  // 11 bytes: dropped, the next event is fine
  evs = p.feed("data: 12345\ndata: 67890\ndata: more\n\ndata: next\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "next");
  EXPECT_EQ(p.dropped_events(), 1u);
  EXPECT_FALSE(p.failed());
}

TEST(sse_parser, gateway_frame) {
  // exactly what the gateway writes (src/gateway/http_server.cpp sse_frame)
  sse_parser p;
  auto evs = p.feed("id: 123\nevent: message\ndata: {\"id\":\"m1\"}\n\n"
                    ": keep-alive\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(parse_seq(evs[0].id), 123u);
  EXPECT_EQ(p.comments(), 1u);
}

TEST(sse_parser, parse_seq) {
  EXPECT_EQ(parse_seq("0"), 0u);
  EXPECT_EQ(parse_seq("18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(parse_seq("18446744073709551616"), 0u); // overflow
  EXPECT_EQ(parse_seq(""), 0u);
  EXPECT_EQ(parse_seq("12a"), 0u);
  EXPECT_EQ(parse_seq("-1"), 0u);
}

TEST(curl_mapping, codes_map_to_network_timeout_or_unknown) {
  using aico::http::classify_curl_code;
  using aico::http::failure;
  // CURLcode values are part of libcurl's stable ABI
  EXPECT_EQ(classify_curl_code(0), failure::none);        // OK
  EXPECT_EQ(classify_curl_code(28), failure::timeout);    // OPERATION_TIMEDOUT
  EXPECT_EQ(classify_curl_code(7), failure::network);     // COULDNT_CONNECT
  EXPECT_EQ(classify_curl_code(6), failure::network);     // COULDNT_RESOLVE_HOST
  EXPECT_EQ(classify_curl_code(55), failure::network);    // SEND_ERROR
  EXPECT_EQ(classify_curl_code(56), failure::network);    // RECV_ERROR
  EXPECT_EQ(classify_curl_code(52), failure::network);    // GOT_NOTHING
  EXPECT_EQ(classify_curl_code(18), failure::network);    // PARTIAL_FILE
  EXPECT_EQ(classify_curl_code(3), failure::unknown);     // URL_MALFORMAT
  EXPECT_EQ(classify_curl_code(23), failure::unknown);    // WRITE_ERROR
  EXPECT_EQ(classify_curl_code(27), failure::unknown);    // OUT_OF_MEMORY
}
