// Unit tests: the IPC wire codec (no I/O).
#include <gtest/gtest.h>

#include <string>

#include "src/transport/zmq/ipc_codec.hpp"

using namespace aico::ipc_link;

TEST(ipc_codec, request_round_trip) {
  wire_request r;
  r.id = "req-1";
  r.method = "POST";
  r.path = "/users/authenticate";
  r.token = "tok";
  r.body = R"({"username":"alice"})";
  auto bytes = encode_request(r);
  ASSERT_FALSE(bytes.empty());
  auto f = decode_frame(bytes);
  ASSERT_EQ(f.kind, frame_kind::request) << f.error;
  EXPECT_EQ(f.request.id, r.id);
  EXPECT_EQ(f.request.method, r.method);
  EXPECT_EQ(f.request.path, r.path);
  EXPECT_EQ(f.request.token, r.token);
  EXPECT_EQ(f.request.body, r.body);
}

TEST(ipc_codec, response_with_headers) {
  wire_response r;
  r.id = "x";
  r.status = 503;
  r.body = R"({"success":false})";
  r.headers["Retry-After"] = "1";
  auto f = decode_frame(encode_response(r));
  ASSERT_EQ(f.kind, frame_kind::response) << f.error;
  EXPECT_EQ(f.response.id, "x");
  EXPECT_EQ(f.response.status, 503);
  EXPECT_EQ(f.response.body, r.body);
  ASSERT_EQ(f.response.headers.count("Retry-After"), 1u);
  EXPECT_EQ(f.response.headers.at("Retry-After"), "1");
}

TEST(ipc_codec, event_ping_pong_subscribe) {
  wire_event e{"message", R"({"id":"m1"})", 42};
  auto fe = decode_frame(encode_event(e));
  ASSERT_EQ(fe.kind, frame_kind::event);
  EXPECT_EQ(fe.event.topic, "message");
  EXPECT_EQ(fe.event.data, e.data);
  EXPECT_EQ(fe.event.seq, 42u);

  auto fp = decode_frame(encode_ping(7, 1234));
  ASSERT_EQ(fp.kind, frame_kind::ping);
  EXPECT_EQ(fp.ping.nonce, 7u);
  EXPECT_EQ(fp.ping.sent_at_ms, 1234);

  auto fo = decode_frame(encode_pong(8, 99));
  ASSERT_EQ(fo.kind, frame_kind::pong);
  EXPECT_EQ(fo.ping.nonce, 8u);

  auto fs = decode_frame(encode_subscribe("s1", "tok"));
  ASSERT_EQ(fs.kind, frame_kind::subscribe);
  EXPECT_EQ(fs.subscribe.id, "s1");
  EXPECT_EQ(fs.subscribe.token, "tok");

  auto fu = decode_frame(encode_unsubscribe("s2"));
  ASSERT_EQ(fu.kind, frame_kind::unsubscribe);
  EXPECT_EQ(fu.subscribe.id, "s2");
}

TEST(ipc_codec, garbage_is_invalid_not_an_exception) {
  EXPECT_EQ(decode_frame(std::string{}).kind, frame_kind::invalid);
  auto f = decode_frame(std::string{"\xff\xff\xff\xff\x0f", 5});
  EXPECT_EQ(f.kind, frame_kind::invalid);
  EXPECT_FALSE(f.error.empty());
  // A valid but empty Frame (no kind set): one byte-less message is "empty",
  // an unknown field only is "no kind".
  auto g = decode_frame(std::string{"\x48\x01", 2}); // field 9 varint 1
  EXPECT_EQ(g.kind, frame_kind::invalid);
  EXPECT_FALSE(g.error.empty());
}
