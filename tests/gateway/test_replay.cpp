// The replay buffer through the three doors (docs/protocol.md "Events"):
// SSE Last-Event-ID, the WebSocket auth frame's `since`, the IPC Subscribe's
// `since`; each says whether the replay reached back far enough; a refreshed
// token of the same user keeps the subscription instead of replacing it.
#include "integration.hpp"

namespace aico::test {
namespace {

class replay_test : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.bot = false;
    return o;
  }

  /// Sends n messages and returns the seqs of their events, as a
  /// reference WebSocket subscriber saw them.
  std::vector<uint64_t> produce(const session& s, ws_client& ref, int n,
                                const std::string& prefix) {
    // the upgrade's subscription exists once a frame has been answered
    EXPECT_TRUE(ref.send(json::object{{"type", "ping"}, {"id", "live?"}}));
    EXPECT_TRUE(ref.receive_type("pong"));
    std::vector<uint64_t> seqs;
    for (int i = 0; i < n; ++i) {
      auto id = prefix + std::to_string(i);
      EXPECT_EQ(send_message(s.access, id, "x").status, 201);
      auto ev = ref.receive_event("message", [&](const json::value& f) {
        return jstr(f, "/data/id") == id;
      });
      EXPECT_TRUE(ev) << id;
      if (ev)
        seqs.push_back(static_cast<uint64_t>(jint(*ev, "/seq")));
    }
    return seqs;
  }
};

TEST_F(replay_test, sse_resumes_after_last_event_id) {
  auto a = alice();
  auto ref = ws(a.access);
  auto seqs = produce(a, *ref, 4, "sse-");
  ASSERT_EQ(seqs.size(), 4u);
  sse_client sse{"127.0.0.1", gw_->port()};
  ASSERT_EQ(sse.connect(a.access, "/api/v1/events",
                        {{"Last-Event-ID", std::to_string(seqs[1])}}),
            200);
  EXPECT_EQ(sse.headers().at("aico-replay"), "complete");
  EXPECT_EQ(sse.headers().at("aico-replayed"), "2");
  for (int i = 2; i < 4; ++i) {
    auto ev = sse.receive("message");
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->id, std::to_string(seqs[i]));
  }
  // then live ones
  ASSERT_EQ(send_message(a.access, "sse-live", "x").status, 201);
  auto live = sse.receive("message");
  ASSERT_TRUE(live);
  EXPECT_EQ(jstr(live->json, "/id"), "sse-live");
  // a seq from before this gateway started: incomplete
  sse_client old{"127.0.0.1", gw_->port()};
  ASSERT_EQ(old.connect(a.access, "/api/v1/events", {{"Last-Event-ID", "7"}}),
            200);
  EXPECT_EQ(old.headers().at("aico-replay"), "incomplete");
  // no Last-Event-ID: no replay headers, live only
  sse_client plain{"127.0.0.1", gw_->port()};
  ASSERT_EQ(plain.connect(a.access), 200);
  EXPECT_EQ(plain.headers().count("aico-replay"), 0u);
}

TEST_F(replay_test, websocket_auth_with_since_replays_and_reports_it) {
  auto a = alice();
  auto ref = ws(a.access);
  auto seqs = produce(a, *ref, 3, "ws-");
  ASSERT_EQ(seqs.size(), 3u);
  auto c = ws();
  ASSERT_TRUE(c->send(json::object{{"type", "auth"},
                                   {"id", "a1"},
                                   {"token", a.access},
                                   {"since", seqs[0]}}));
  auto ok = c->receive_type("auth_ok");
  ASSERT_TRUE(ok);
  EXPECT_TRUE(jtrue(*ok, "/replay/complete"));
  EXPECT_EQ(jint(*ok, "/replay/replayed"), 2);
  EXPECT_EQ(static_cast<uint64_t>(jint(*ok, "/replay/since")), seqs[0]);
  for (int i = 1; i < 3; ++i) {
    auto ev = c->receive_type("event");
    ASSERT_TRUE(ev);
    EXPECT_EQ(static_cast<uint64_t>(jint(*ev, "/seq")), seqs[i]);
  }
  // a bad since is a bad frame, the connection stays as it was
  ASSERT_TRUE(c->send(json::object{{"type", "auth"},
                                   {"id", "a2"},
                                   {"token", a.access},
                                   {"since", "soon"}}));
  auto err = c->receive_type("error");
  ASSERT_TRUE(err);
  EXPECT_EQ(jstr(*err, "/code"), "bad_frame");
}

TEST_F(replay_test, websocket_reauth_of_the_same_user_keeps_the_subscription) {
  auto a = alice();
  auto c = ws(a.access);
  ASSERT_TRUE(c->send(json::object{{"type", "ping"}, {"id", "live?"}}));
  ASSERT_TRUE(c->receive_type("pong")); // subscribed since the upgrade
  auto fresh = login("alice", "alice-pw"); // another token of alice
  // events keep flowing while the token is replaced over and over: none is
  // lost or repeated (a replaced subscription used to drop the events on
  // their way)
  std::atomic<bool> stop{false};
  constexpr int n = 150;
  std::thread writer([&] {
    for (int i = 0; i < n && !stop; ++i)
      send_message(a.access, "ra-" + std::to_string(i), "x");
  });
  for (int k = 0; k < 30; ++k) {
    c->send(json::object{{"type", "auth"},
                         {"id", "r" + std::to_string(k)},
                         {"token", k % 2 ? a.access : fresh.access}});
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  writer.join();
  std::set<std::string> ids;
  int events = 0;
  while (ids.size() < static_cast<std::size_t>(n)) {
    auto ev = c->receive_type("event", ms(3000));
    if (!ev)
      break;
    ++events;
    ids.insert(jstr(*ev, "/data/id"));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(events, n);
}

TEST_F(replay_test, ipc_subscribe_with_since_replays_and_reports_it) {
  auto a = alice();
  auto ref = ws(a.access);
  auto seqs = produce(a, *ref, 3, "ipc-");
  ASSERT_EQ(seqs.size(), 3u);
  auto c = ipc();
  aico::ipc::Frame f;
  f.mutable_subscribe()->set_id("s1");
  f.mutable_subscribe()->set_token(a.access);
  f.mutable_subscribe()->set_since(seqs[0]);
  ASSERT_TRUE(c->send(f));
  auto r = c->receive_response("s1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status(), 200);
  auto body = parse_json(r->body());
  EXPECT_TRUE(jtrue(body, "/data/replay/complete")) << r->body();
  EXPECT_EQ(jint(body, "/data/replay/replayed"), 2);
  for (int i = 1; i < 3; ++i) {
    auto ev = c->receive_if(
      [](const aico::ipc::Frame& x) { return x.has_event(); });
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->event().seq(), seqs[i]);
  }
  // the same user again without since: the subscription stays (no replay
  // field, no repeated events)
  auto again = c->subscribe(a.access);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status(), 200);
  EXPECT_EQ(jptr(parse_json(again->body()), "/data/replay"), nullptr);
  ASSERT_EQ(send_message(a.access, "ipc-live", "x").status, 201);
  auto live = c->receive_if(
    [](const aico::ipc::Frame& x) { return x.has_event(); });
  ASSERT_TRUE(live);
  EXPECT_EQ(jstr(parse_json(live->event().data()), "/id"), "ipc-live");
  auto none = c->receive_if(
    [](const aico::ipc::Frame& x) { return x.has_event(); }, ms(200));
  EXPECT_FALSE(none) << "an event came twice";
}

} // namespace
} // namespace aico::test
