// Unit tests: the WebSocket transport's pure logic (URL parsing, frame
// encoding and decoding). No I/O.
#include <gtest/gtest.h>

#include <string>

#include <boost/json.hpp>

#include "src/transport/lws/ws_codec.hpp"

using namespace aico::ws_link;
namespace json = boost::json;

TEST(ws_url, parses_host_port_path) {
  ws_url u;
  std::string why;
  ASSERT_TRUE(parse_url("ws://127.0.0.1:8771/api/v1/ws", u, why)) << why;
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8771);
  EXPECT_EQ(u.path, "/api/v1/ws");
  EXPECT_EQ(host_header(u), "127.0.0.1:8771");
}

TEST(ws_url, defaults_and_tls) {
  ws_url u;
  std::string why;
  ASSERT_TRUE(parse_url("ws://localhost", u, why)) << why;
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.path, "/");
  EXPECT_EQ(host_header(u), "localhost");
  ASSERT_TRUE(parse_url("WSS://example.org/x?a=1#frag", u, why)) << why;
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.path, "/x?a=1");
  ASSERT_TRUE(parse_url("ws://h?q=2", u, why)) << why;
  EXPECT_EQ(u.path, "/?q=2");
}

TEST(ws_url, ipv6_literal) {
  ws_url u;
  std::string why;
  ASSERT_TRUE(parse_url("ws://[::1]:9000/ws", u, why)) << why;
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(host_header(u), "[::1]:9000");
}

TEST(ws_url, rejects_bad_urls) {
  ws_url u;
  std::string why;
  EXPECT_FALSE(parse_url("http://127.0.0.1/", u, why));
  EXPECT_FALSE(why.empty());
  EXPECT_FALSE(parse_url("ws://", u, why));
  EXPECT_FALSE(parse_url("ws://:80/", u, why));
  EXPECT_FALSE(parse_url("ws://h:0/", u, why));
  EXPECT_FALSE(parse_url("ws://h:65536/", u, why));
  EXPECT_FALSE(parse_url("ws://h:12a/", u, why));
  EXPECT_FALSE(parse_url("ws://h:/", u, why));
  EXPECT_FALSE(parse_url("ws://[::1/", u, why));
  EXPECT_FALSE(parse_url("ws://user:pw@h/", u, why));
  EXPECT_FALSE(parse_url("ws://h/a b", u, why));
}

TEST(ws_frames, request_with_and_without_body) {
  std::string out;
  ASSERT_TRUE(encode_request("r1", "POST", "/conversations/messages",
                             R"({"content":"hi","n":[1,2]})", out));
  auto v = json::parse(out);
  EXPECT_EQ(v.at("type").as_string(), "request");
  EXPECT_EQ(v.at("id").as_string(), "r1");
  EXPECT_EQ(v.at("method").as_string(), "POST");
  EXPECT_EQ(v.at("path").as_string(), "/conversations/messages");
  EXPECT_EQ(v.at("body").at("content").as_string(), "hi");
  ASSERT_TRUE(encode_request("r2", "GET", "/health", "", out));
  v = json::parse(out);
  EXPECT_EQ(v.as_object().if_contains("body"), nullptr);
  // a body that is not JSON is refused (out untouched)
  std::string before = out;
  EXPECT_FALSE(encode_request("r3", "POST", "/x", "{not json", out));
  EXPECT_EQ(out, before);
}

TEST(ws_frames, auth_and_ping) {
  auto v = json::parse(encode_auth("auth-1", "tok\"en"));
  EXPECT_EQ(v.at("type").as_string(), "auth");
  EXPECT_EQ(v.at("id").as_string(), "auth-1");
  EXPECT_EQ(v.at("token").as_string(), "tok\"en");
  v = json::parse(encode_ping("hb-7"));
  EXPECT_EQ(v.at("type").as_string(), "ping");
  EXPECT_EQ(v.at("id").as_string(), "hb-7");
}

TEST(ws_frames, decodes_response) {
  auto f = decode_frame(
    R"({"type":"response","id":"a","status":503,)"
    R"("body":{"success":false,"code":"unavailable"},)"
    R"("headers":{"Retry-After":"1","X-N":2}})");
  ASSERT_EQ(f.kind, frame_kind::response);
  EXPECT_EQ(f.id, "a");
  EXPECT_EQ(f.status, 503);
  auto body = json::parse(f.body);
  EXPECT_EQ(body.at("code").as_string(), "unavailable");
  EXPECT_EQ(f.headers.at("Retry-After"), "1");
  EXPECT_EQ(f.headers.at("X-N"), "2");
  f = decode_frame(R"({"type":"response","id":"b","status":200,"body":null})");
  EXPECT_EQ(f.kind, frame_kind::response);
  EXPECT_EQ(f.body, "");
}

TEST(ws_frames, decodes_event_pong_auth_error) {
  auto f = decode_frame(
    R"({"type":"event","topic":"message","data":{"id":"m1"},"seq":42})");
  ASSERT_EQ(f.kind, frame_kind::event);
  EXPECT_EQ(f.topic, "message");
  EXPECT_EQ(json::parse(f.data).at("id").as_string(), "m1");
  EXPECT_EQ(f.seq, 42u);
  f = decode_frame(R"({"type":"pong","id":"hb-1"})");
  EXPECT_EQ(f.kind, frame_kind::pong);
  EXPECT_EQ(f.id, "hb-1");
  f = decode_frame(R"({"type":"auth_ok","id":"auth-1","user":{"id":"u"}})");
  EXPECT_EQ(f.kind, frame_kind::auth_ok);
  EXPECT_EQ(f.id, "auth-1");
  f = decode_frame(R"({"type":"error","status":401,"code":"invalid_token",)"
                   R"("message":"nope","id":"auth-2"})");
  ASSERT_EQ(f.kind, frame_kind::error);
  EXPECT_EQ(f.status, 401);
  EXPECT_EQ(f.code, "invalid_token");
  EXPECT_EQ(f.message, "nope");
  EXPECT_EQ(f.id, "auth-2");
  f = decode_frame(R"({"type":"error","status":400,"id":17})");
  EXPECT_EQ(f.kind, frame_kind::error);
  EXPECT_EQ(f.id, ""); // non-string ids are ignored
}

TEST(ws_frames, invalid_frames) {
  EXPECT_EQ(decode_frame("").kind, frame_kind::invalid);
  EXPECT_EQ(decode_frame("not json").kind, frame_kind::invalid);
  EXPECT_EQ(decode_frame("[1,2]").kind, frame_kind::invalid);
  EXPECT_EQ(decode_frame(R"({"id":"x"})").kind, frame_kind::invalid);
  EXPECT_EQ(decode_frame(R"({"type":5})").kind, frame_kind::invalid);
  EXPECT_EQ(decode_frame(R"({"type":"whatever"})").kind, frame_kind::other);
}

TEST(ws_frames, error_envelope_is_gateway_shaped) {
  auto v = json::parse(error_envelope("bad_json", "broken"));
  EXPECT_FALSE(v.at("success").as_bool());
  EXPECT_EQ(v.at("code").as_string(), "bad_json");
  EXPECT_EQ(v.at("message").as_string(), "broken");
}

// -- issue 12: hosts, numbers ----------------------------------------------------

TEST(ws_url, rejects_hosts_with_line_breaks_controls_and_invalid_bytes) {
  ws_url u;
  std::string why;
  for (std::string bad : {std::string{"ws://exa\r\nmple.org/ws"},
                          std::string{"ws://example.org\r\nX-Evil: 1/ws"},
                          std::string{"ws://exa mple.org/"},
                          std::string{"ws://exa\tmple.org/"},
                          std::string{"ws://exa\x01mple.org:80/"},
                          std::string{"ws://ex\x7f.org/"},
                          std::string{"ws://h\xc3\xa9llo.org/"},
                          std::string{"ws://a<b>.org/"},
                          std::string{"ws://a%0d.org/"},
                          std::string{"ws://a..b/"},
                          std::string{"ws://[::1\n]:80/"},
                          std::string{"ws://[example.org]/"},
                          std::string{"ws://[::1%eth0]/"},
                          std::string{"ws://h\0st/", 11}}) {
    why.clear();
    EXPECT_FALSE(parse_url(bad, u, why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
    for (char c : why)
      EXPECT_GE(static_cast<unsigned char>(c), 0x20u) << "why echoes a control byte";
  }
  EXPECT_FALSE(parse_url("ws://exa\r\nmple.org/ws", u, why));
  EXPECT_NE(why.find("line break"), std::string::npos) << why;
  EXPECT_FALSE(parse_url("ws://exa mple.org/ws", u, why));
  EXPECT_NE(why.find("space"), std::string::npos) << why;
  // still fine
  for (std::string good : {"ws://localhost/", "ws://my-host.example.org:8771/x",
                           "wss://[::1]:443/", "ws://[::ffff:127.0.0.1]/",
                           "ws://under_score.local/", "ws://10.0.0.1/"}) {
    EXPECT_TRUE(parse_url(good, u, why)) << good << ": " << why;
  }
}

TEST(ws_frames, integer_members_are_range_checked_not_cast) {
  // a status beyond int32 used to wrap around (2^32 + 200 read as 200)
  auto f = decode_frame(
    R"({"type":"response","id":"a","status":4294967496,"body":{}})");
  EXPECT_EQ(f.kind, frame_kind::response);
  EXPECT_EQ(f.status, 0);
  f = decode_frame(R"({"type":"response","id":"a","status":1e10})");
  EXPECT_EQ(f.status, 0);
  f = decode_frame(R"({"type":"response","id":"a","status":-1e3096})");
  EXPECT_EQ(f.status, 0);
  f = decode_frame(R"({"type":"response","id":"a","status":200.0})");
  EXPECT_EQ(f.status, 200); // a whole number written as a double is fine
  f = decode_frame(R"({"type":"error","status":401.5,"code":"x"})");
  EXPECT_EQ(f.status, 0);
  // seq: -1e3096 is -infinity for Boost.JSON; casting it is UB
  f = decode_frame(R"({"type":"event","topic":"t","data":1,"seq":-1e3096})");
  EXPECT_EQ(f.kind, frame_kind::event);
  EXPECT_EQ(f.seq, 0u);
  f = decode_frame(R"({"type":"event","topic":"t","data":1,"seq":1e3096})");
  EXPECT_EQ(f.seq, 0u);
  f = decode_frame(R"({"type":"event","topic":"t","data":1,"seq":1e19})");
  EXPECT_EQ(f.seq, 0u);
  f = decode_frame(R"({"type":"event","topic":"t","data":1,"seq":7.5})");
  EXPECT_EQ(f.seq, 0u);
  f = decode_frame(R"({"type":"event","topic":"t","data":1,"seq":42.0})");
  EXPECT_EQ(f.seq, 42u);
  // a seq above INT64_MAX is a valid seq, not a negative one
  f = decode_frame(
    R"({"type":"event","topic":"t","data":1,"seq":18446744073709551615})");
  EXPECT_EQ(f.seq, 18446744073709551615u);
}

TEST(ws_frames, numbers_beyond_double_range_are_never_passed_on) {
  auto f = decode_frame(
    R"({"type":"response","id":"a","status":200,"body":{"success":true,)"
    R"("data":{"big":1e400}},"headers":{"x-n":-1e400,"x-s":"ok"}})");
  ASSERT_EQ(f.kind, frame_kind::response);
  EXPECT_EQ(f.body.find("Infinity"), std::string::npos) << f.body;
  auto body = json::parse(f.body); // valid JSON
  EXPECT_EQ(body.at("success"), false);
  EXPECT_EQ(body.at("code"), "bad_number");
  EXPECT_EQ(f.headers.count("x-n"), 0u);
  EXPECT_EQ(f.headers.at("x-s"), "ok");
  f = decode_frame(
    R"({"type":"event","topic":"t","data":{"v":[1,1e999]},"seq":3})");
  EXPECT_EQ(f.kind, frame_kind::invalid);
  EXPECT_EQ(f.data.find("Infinity"), std::string::npos);
}

TEST(ws_frames, encode_request_never_emits_infinity_or_nan) {
  std::string out = "untouched";
  EXPECT_FALSE(encode_request("1", "PUT", "/users/me/preferences",
                              R"({"big":1e400})", out));
  EXPECT_EQ(out, "untouched");
  EXPECT_FALSE(encode_request("1", "PUT", "/p", R"([1,[-1e400]])", out));
  EXPECT_EQ(out, "untouched");
  EXPECT_TRUE(encode_request("1", "PUT", "/p", R"({"big":1e300})", out));
  EXPECT_EQ(out.find("Infinity"), std::string::npos);
  EXPECT_NO_THROW(json::parse(out));
}
