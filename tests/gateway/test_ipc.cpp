// ZeroMQ IPC front door (DEALER + protobuf Frames) and cross-door behaviour,
// against docs/protocol.md.
#include "integration.hpp"

namespace aico::test {
namespace {

using Ipc = GatewayTest;
using CrossDoor = GatewayTest;

json::value body_of(const aico::ipc::Response& r) { return parse_json(r.body()); }

TEST_F(Ipc, LoginRequestIsAnsweredWithSameId) {
  auto c = ipc();
  auto bystander = ipc();
  aico::ipc::Frame hello;
  hello.mutable_ping()->set_nonce(1);
  ASSERT_TRUE(bystander->send(hello));
  ASSERT_TRUE(bystander->receive_if([](auto& f) { return f.has_pong(); }));
  aico::ipc::Frame f;
  auto* req = f.mutable_request();
  req->set_id("login-1");
  req->set_method("POST");
  req->set_path("/users/authenticate");
  req->set_body(R"({"username":"alice","password":"alice-pw"})");
  ASSERT_TRUE(c->send(f));
  auto resp = c->receive(ms(5000));
  ASSERT_TRUE(resp.has_value()) << "no reply over IPC";
  ASSERT_TRUE(resp->has_response()) << resp->DebugString();
  EXPECT_EQ(resp->response().id(), "login-1");
  EXPECT_EQ(resp->response().status(), 200) << resp->response().body();
  auto body = body_of(resp->response());
  EXPECT_TRUE(jtrue(body, "/success")) << resp->response().body();
  EXPECT_EQ(split(jstr(body, "/data/access_token"), '.').size(), 3u);
  EXPECT_FALSE(jstr(body, "/data/refresh_token").empty());
  EXPECT_EQ(jstr(body, "/data/user/username"), "alice");
  // Replies go back to the sending peer only.
  auto stray = bystander->receive(ms(200));
  EXPECT_FALSE(stray.has_value()) << stray->DebugString();

  // Bad password over IPC: same envelope as REST.
  auto bad = c->request("POST", "/users/authenticate",
                        R"({"username":"alice","password":"nope"})");
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status(), 401);
  EXPECT_EQ(jstr(body_of(*bad), "/code"), "invalid_credentials") << bad->body();
}

TEST_F(Ipc, RequestWithToken) {
  auto s = alice();
  auto c = ipc();
  auto me = c->request("GET", "/users/me", "", s.access);
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(me->status(), 200) << me->body();
  EXPECT_EQ(jstr(body_of(*me), "/data/username"), "alice") << me->body();
  // The /api/v1 prefix is accepted.
  auto me2 = c->request("GET", "/api/v1/users/me", "", s.access);
  ASSERT_TRUE(me2.has_value());
  EXPECT_EQ(me2->status(), 200) << me2->body();
  // No token, bad token.
  auto anon = c->request("GET", "/users/me");
  ASSERT_TRUE(anon.has_value());
  EXPECT_EQ(anon->status(), 401);
  EXPECT_EQ(jstr(body_of(*anon), "/code"), "unauthenticated") << anon->body();
  auto forged = c->request("GET", "/users/me", "", "abc");
  ASSERT_TRUE(forged.has_value());
  EXPECT_EQ(forged->status(), 401);
  EXPECT_EQ(jstr(body_of(*forged), "/code"), "invalid_token");
  // Bad JSON body.
  auto bad = c->request("POST", "/conversations/messages", "{oops", s.access);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status(), 400);
  EXPECT_EQ(jstr(body_of(*bad), "/code"), "bad_json") << bad->body();
}

TEST_F(Ipc, ManyRequestsInFlightAreCorrelated) {
  auto s = alice();
  auto c = ipc();
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    aico::ipc::Frame f;
    auto* r = f.mutable_request();
    ids.push_back("multi-" + std::to_string(i));
    r->set_id(ids.back());
    r->set_method("POST");
    r->set_path("/conversations/messages");
    r->set_token(s.access);
    r->set_body(to_text(json::object{{"id", ids.back()},
                                     {"content", "n" + std::to_string(i)},
                                     {"conversation_id", "conv-multi"},
                                     {"type", "image"}}));
    ASSERT_TRUE(c->send(f));
  }
  for (auto& id : ids) {
    auto r = c->receive_response(id);
    ASSERT_TRUE(r.has_value()) << "no response for " << id;
    EXPECT_EQ(r->status(), 201) << r->body();
    EXPECT_EQ(jstr(body_of(*r), "/data/id"), id) << r->body();
  }
}

TEST_F(Ipc, SubscribeReceivesEvents) {
  auto s = alice();
  auto c = ipc();
  auto sub = c->subscribe(s.access);
  ASSERT_TRUE(sub.has_value()) << "no subscribe response";
  EXPECT_EQ(sub->status(), 200) << sub->body();
  auto id = uid("ipc-evt");
  EXPECT_OK(send_message(s.access, id, "hello ipc subscriber", "conv-ipc"), 201);
  auto ev = c->receive_event("message", [&](const json::value& d) {
    return jstr(d, "/id") == id;
  });
  ASSERT_TRUE(ev.has_value()) << "no message event over IPC";
  EXPECT_GT(ev->seq(), 0u);
  EXPECT_EQ(jstr(parse_json(ev->data()), "/content"), "hello ipc subscriber");
  auto stream = c->receive_event("message.stream", [&](const json::value& d) {
    return jstr(d, "/reply_to") == id;
  });
  EXPECT_TRUE(stream.has_value()) << "no message.stream event over IPC";
  auto bot = c->receive_event("message", [&](const json::value& d) {
    return jstr(d, "/id") == "bot-" + id;
  });
  ASSERT_TRUE(bot.has_value()) << "no bot reply over IPC";
  EXPECT_GT(bot->seq(), ev->seq());
}

TEST_F(Ipc, UnsubscribeStopsEvents) {
  auto s = alice();
  auto c = ipc();
  auto sub = c->subscribe(s.access);
  ASSERT_TRUE(sub.has_value());
  EXPECT_EQ(sub->status(), 200);
  aico::ipc::Frame f;
  f.mutable_unsubscribe()->set_id("unsub-1");
  ASSERT_TRUE(c->send(f));
  auto r = c->receive_response("unsub-1");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 200) << r->body();
  c->clear();
  EXPECT_OK(send_message(s.access, uid(), "nobody listens", "conv-unsub"), 201);
  auto ev = c->receive_if([](auto& f) { return f.has_event(); }, ms(400));
  EXPECT_FALSE(ev.has_value()) << ev->DebugString();
}

TEST_F(Ipc, PingPongSameNonce) {
  auto c = ipc();
  aico::ipc::Frame f;
  f.mutable_ping()->set_nonce(424242);
  f.mutable_ping()->set_sent_at_ms(1234567);
  ASSERT_TRUE(c->send(f));
  auto p = c->receive_if([](auto& f) { return f.has_pong(); });
  ASSERT_TRUE(p.has_value()) << "no pong";
  EXPECT_EQ(p->pong().nonce(), 424242u);
  EXPECT_EQ(p->pong().sent_at_ms(), 1234567);
}

TEST_F(Ipc, EmptyDelimiterIsMirrored) {
  auto c = ipc();
  aico::ipc::Frame f;
  f.mutable_ping()->set_nonce(7);
  ASSERT_TRUE(c->send(f, /*with_delimiter=*/true));
  auto p = c->receive(ms(3000));
  ASSERT_TRUE(p.has_value()) << c->last_error();
  EXPECT_TRUE(p->has_pong());
  EXPECT_TRUE(c->last_had_delimiter());
  // And without one, none comes back.
  ASSERT_TRUE(c->send(f));
  p = c->receive(ms(3000));
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(c->last_had_delimiter());
}

TEST_F(Ipc, GarbageIsBadFrameAndSocketSurvives) {
  auto s = alice();
  auto c = ipc();
  // Field 1 (request), length-delimited, with a length far beyond the data.
  ASSERT_TRUE(c->send_raw(std::string("\x0a\xff\xff\xff\x0f garbage", 13)));
  auto r = c->receive(ms(3000));
  ASSERT_TRUE(r.has_value()) << "no reply to garbage " << c->last_error();
  ASSERT_TRUE(r->has_response()) << r->DebugString();
  EXPECT_EQ(r->response().id(), "");
  EXPECT_EQ(r->response().status(), 400);
  EXPECT_EQ(jstr(body_of(r->response()), "/code"), "bad_frame")
    << r->response().body();
  ASSERT_TRUE(c->send_raw("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"));
  r = c->receive(ms(3000));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->response().status(), 400);
  // Still works.
  auto me = c->request("GET", "/users/me", "", s.access);
  ASSERT_TRUE(me.has_value()) << "socket dead after garbage";
  EXPECT_EQ(me->status(), 200);
}

TEST_F(Ipc, SubscribeWithBadTokenIs401) {
  auto c = ipc();
  auto sub = c->subscribe("abc");
  ASSERT_TRUE(sub.has_value());
  EXPECT_EQ(sub->status(), 401) << sub->body();
  auto body = body_of(*sub);
  EXPECT_FALSE(jtrue(body, "/success"));
  EXPECT_EQ(jstr(body, "/code"), "invalid_token") << sub->body();
  auto none = c->subscribe("");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->status(), 401) << none->body();
  // No events arrive for an unauthenticated subscription.
  auto s = alice();
  EXPECT_OK(send_message(s.access, uid(), "hi", "conv-badsub"), 201);
  auto ev = c->receive_if([](auto& f) { return f.has_event(); }, ms(300));
  EXPECT_FALSE(ev.has_value());
}

TEST_F(Ipc, RetryAfterInHeadersMap) {
  auto adm = root();
  auto s = alice();
  EXPECT_OK(faults(adm.access, {{"fail_ratio", 1.0}}), 200);
  auto c = ipc();
  auto r = c->request("GET", "/users/me", "", s.access);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 503) << r->body();
  EXPECT_EQ(jstr(body_of(*r), "/code"), "unavailable") << r->body();
  ASSERT_TRUE(r->headers().count("Retry-After")) << r->DebugString();
  EXPECT_EQ(r->headers().at("Retry-After"), "1");
  EXPECT_OK(faults(adm.access, {{"reset", true}}), 200);
  r = c->request("GET", "/users/me", "", s.access);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 200);
}

TEST_F(Ipc, SubscribeAndUnsubscribeData) {
  auto s = alice();
  auto c = ipc();
  auto sub = c->subscribe(s.access);
  ASSERT_TRUE(sub.has_value());
  EXPECT_EQ(sub->status(), 200);
  auto body = body_of(*sub);
  EXPECT_TRUE(jtrue(body, "/success")) << sub->body();
  EXPECT_TRUE(jtrue(body, "/data/subscribed")) << sub->body();
  EXPECT_EQ(jstr(body, "/data/user_id"), s.user_id) << sub->body();
  aico::ipc::Frame f;
  f.mutable_unsubscribe()->set_id("u-1");
  ASSERT_TRUE(c->send(f));
  auto r = c->receive_response("u-1");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 200);
  auto ub = body_of(*r);
  auto subscribed = jptr(ub, "/data/subscribed");
  ASSERT_NE(subscribed, nullptr) << r->body();
  EXPECT_TRUE(subscribed->is_bool() && !subscribed->get_bool()) << r->body();
  // Unsubscribing again (not subscribed) is still 200.
  f.mutable_unsubscribe()->set_id("u-2");
  ASSERT_TRUE(c->send(f));
  r = c->receive_response("u-2");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 200);
}

TEST_F(Ipc, SecondSubscribeReplacesTheFirst) {
  auto a = alice();
  auto b = bob();
  auto c = ipc();
  ASSERT_EQ(c->subscribe(a.access).value_or(aico::ipc::Response{}).status(),
            200);
  ASSERT_EQ(c->subscribe(b.access).value_or(aico::ipc::Response{}).status(),
            200);
  auto ida = uid("rep-a");
  auto idb = uid("rep-b");
  EXPECT_OK(send_message(a.access, ida, "alice", "conv-rep-a", "image"), 201);
  EXPECT_OK(send_message(b.access, idb, "bob", "conv-rep-b", "image"), 201);
  EXPECT_TRUE(c->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == idb; }));
  auto stale = c->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == ida; },
    ms(200));
  EXPECT_FALSE(stale.has_value()) << "the replaced subscription still delivers";

  // A failed subscribe ends the earlier subscription.
  auto bad = c->subscribe("abc");
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status(), 401);
  auto idb2 = uid("rep-b");
  EXPECT_OK(send_message(b.access, idb2, "bob again", "conv-rep-b", "image"),
            201);
  auto after = c->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == idb2; },
    ms(300));
  EXPECT_FALSE(after.has_value()) << "events after a failed subscribe";
}

TEST_F(Ipc, FramesWithoutAKindOrWithManyPartsAreBadFrame) {
  auto c = ipc();
  // A valid protobuf Frame with no kind set.
  ASSERT_TRUE(c->send(aico::ipc::Frame{}));
  auto r = c->receive(ms(3000));
  ASSERT_TRUE(r.has_value()) << "no reply to an empty Frame";
  ASSERT_TRUE(r->has_response());
  EXPECT_EQ(r->response().id(), "");
  EXPECT_EQ(r->response().status(), 400);
  EXPECT_EQ(jstr(body_of(r->response()), "/code"), "bad_frame");
  // Two payload frames in one message.
  aico::ipc::Frame ping;
  ping.mutable_ping()->set_nonce(5);
  std::string bytes;
  ASSERT_TRUE(ping.SerializeToString(&bytes));
  ASSERT_TRUE(c->send_parts({bytes, bytes}));
  r = c->receive(ms(3000));
  ASSERT_TRUE(r.has_value()) << "no reply to a two-part message";
  ASSERT_TRUE(r->has_response()) << r->DebugString();
  EXPECT_EQ(r->response().status(), 400);
  EXPECT_EQ(jstr(body_of(r->response()), "/code"), "bad_frame");
}

TEST_F(Ipc, ServerSideFramesFromAClientAreIgnored) {
  auto c = ipc();
  aico::ipc::Frame resp;
  resp.mutable_response()->set_id("x");
  resp.mutable_response()->set_status(200);
  aico::ipc::Frame ev;
  ev.mutable_event()->set_topic("message");
  aico::ipc::Frame pong;
  pong.mutable_pong()->set_nonce(3);
  ASSERT_TRUE(c->send(resp));
  ASSERT_TRUE(c->send(ev));
  ASSERT_TRUE(c->send(pong));
  aico::ipc::Frame ping;
  ping.mutable_ping()->set_nonce(99);
  ASSERT_TRUE(c->send(ping));
  // The only answer is the pong to the ping.
  auto p = c->receive(ms(3000));
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->has_pong()) << p->DebugString();
  EXPECT_EQ(p->pong().nonce(), 99u);
  auto more = c->receive(ms(200));
  EXPECT_FALSE(more.has_value()) << more->DebugString();
}

TEST_F(Ipc, DoesNotBindOverALiveSocket) {
  // A second gateway with the same IPC path must not steal the endpoint.
  // The same data directory gives the same ipc:// path (and another port).
  gateway_options o = fast_options();
  o.data_dir = gw_->data_dir();
  gateway_process intruder(o);
  ASSERT_EQ(intruder.ipc_endpoint(), gw_->ipc_endpoint());
  EXPECT_FALSE(intruder.start(ms(5000)))
    << "a second gateway bound over a live IPC socket";
  auto s = alice();
  auto c = ipc();
  auto me = c->request("GET", "/users/me", "", s.access);
  ASSERT_TRUE(me.has_value()) << "the first gateway lost its IPC endpoint";
  EXPECT_EQ(me->status(), 200);
}

TEST(IpcStartup, DoesNotBindOverARegularFile) {
  temp_dir dir("aico-ipcf");
  auto path = dir.path() + "/gateway.ipc";
  {
    std::ofstream f(path);
    f << "not a socket";
  }
  gateway_options o = fast_options();
  o.data_dir = dir.path();
  gateway_process gw(o);
  EXPECT_FALSE(gw.start(ms(5000))) << "bound over a regular file";
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "not a socket") << "the file was replaced";
}

class IpcPeerTimeout : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.extra_args.push_back("--ipc-peer-timeout");
    o.extra_args.push_back("1");
    return o;
  }
};

TEST_F(IpcPeerTimeout, SilentSubscriberStopsReceivingPingingOneKeeps) {
  auto s = alice();
  auto silent = ipc();
  auto lively = ipc();
  ASSERT_EQ(silent->subscribe(s.access).value_or(aico::ipc::Response{}).status(),
            200);
  ASSERT_EQ(lively->subscribe(s.access).value_or(aico::ipc::Response{}).status(),
            200);
  auto deadline = std::chrono::steady_clock::now() + ms(2000);
  uint64_t nonce = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    aico::ipc::Frame f;
    f.mutable_ping()->set_nonce(++nonce);
    ASSERT_TRUE(lively->send(f));
    ASSERT_TRUE(lively->receive_if([](auto& f) { return f.has_pong(); }));
    std::this_thread::sleep_for(ms(300));
  }
  auto id = uid("timeout");
  EXPECT_OK(send_message(s.access, id, "anyone?", "conv-timeout", "image"), 201);
  EXPECT_TRUE(lively->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == id; }))
    << "pinging subscriber lost its events";
  auto ev = silent->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == id; },
    ms(300));
  EXPECT_FALSE(ev.has_value()) << "silent subscriber still gets events";
  // It can subscribe again.
  auto again = silent->subscribe(s.access);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status(), 200);
  auto id2 = uid("timeout");
  EXPECT_OK(send_message(s.access, id2, "back?", "conv-timeout", "image"), 201);
  EXPECT_TRUE(silent->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == id2; }));
}

// -- cross-door ------------------------------------------------------------------

TEST_F(CrossDoor, SendOverIpcReadOverRest) {
  auto s = alice();
  auto c = ipc();
  auto id = uid("x-ipc");
  auto r = c->request("POST", "/conversations/messages",
                      to_text(json::object{{"id", id},
                                           {"content", "sent through ipc"},
                                           {"conversation_id", "conv-x"}}),
                      s.access);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 201) << r->body();
  auto h = history(s.access, "conv-x");
  EXPECT_OK(h, 200);
  auto ids = ids_of(h);
  ASSERT_FALSE(ids.empty()) << h.raw;
  EXPECT_EQ(ids.front(), id) << h.raw;
  EXPECT_EQ(jstr(h.body, "/data/messages/0/content"), "sent through ipc");
  // History over IPC, with a query string.
  auto ih = c->request("GET", "/conversations/conv-x/messages?since=0&limit=1",
                       "", s.access);
  ASSERT_TRUE(ih.has_value());
  EXPECT_EQ(ih->status(), 200) << ih->body();
  auto ihb = parse_json(ih->body());
  EXPECT_EQ(jstr(ihb, "/data/messages/0/id"), id) << ih->body();
  EXPECT_EQ(jptr(ihb, "/data/messages/1"), nullptr) << ih->body();
  // Idempotency across doors: the same id over REST is 200, not a new one.
  EXPECT_OK(send_message(s.access, id, "sent through ipc", "conv-x"), 200);
  // And over WebSocket.
  auto w = ws(s.access);
  auto wr = w->request("POST", "/conversations/messages",
                       {{"id", id},
                        {"content", "sent through ipc"},
                        {"conversation_id", "conv-x"}});
  ASSERT_TRUE(wr.has_value());
  EXPECT_EQ(jint(*wr, "/status"), 200) << *wr;
  EXPECT_EQ(jint(*wr, "/body/data/seq"), jint(h.body, "/data/messages/0/seq"));
}

TEST_F(CrossDoor, EventsReachEverySubscriberOfTheUserOnly) {
  auto a = alice();
  auto b = bob();
  auto wa = ws(a.access);
  ASSERT_TRUE(wa->request("GET", "/users/me").has_value());
  auto ia = ipc();
  auto sa = ia->subscribe(a.access);
  ASSERT_TRUE(sa.has_value());
  EXPECT_EQ(sa->status(), 200);
  auto ib = ipc();
  auto sb = ib->subscribe(b.access);
  ASSERT_TRUE(sb.has_value());
  EXPECT_EQ(sb->status(), 200);
  sse_client sse_b("127.0.0.1", gw_->port());
  ASSERT_EQ(sse_b.connect(b.access), 200);
  sse_client sse_a("127.0.0.1", gw_->port());
  ASSERT_EQ(sse_a.connect(a.access), 200);

  auto id = uid("fanout");
  EXPECT_OK(send_message(a.access, id, "to every door", "conv-fanout"), 201);
  auto ev_ws = wa->receive_event(
    "message", [&](auto& v) { return jstr(v, "/data/id") == id; });
  auto ev_ipc = ia->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == id; });
  ASSERT_TRUE(ev_ws.has_value()) << "WS subscriber missed the event";
  ASSERT_TRUE(ev_ipc.has_value()) << "IPC subscriber missed the event";
  // The same event, same gateway-wide seq, on both doors.
  EXPECT_EQ(static_cast<uint64_t>(jint(*ev_ws, "/seq")), ev_ipc->seq());
  auto ev_sse = sse_a.receive(
    "message", [&](const sse_event& e) { return jstr(e.json, "/id") == id; });
  ASSERT_TRUE(ev_sse.has_value()) << "SSE subscriber missed the event";
  EXPECT_EQ(ev_sse->id, std::to_string(ev_ipc->seq()));
  // Wait for the bot's final message, then check bob saw nothing.
  EXPECT_TRUE(wa->receive_event(
    "message", [&](auto& v) { return jstr(v, "/data/id") == "bot-" + id; }));
  auto leaked = ib->receive_if([](auto& f) { return f.has_event(); }, ms(300));
  EXPECT_FALSE(leaked.has_value()) << leaked->DebugString();
  auto leaked_sse = sse_b.receive("", {}, ms(100));
  EXPECT_FALSE(leaked_sse.has_value()) << leaked_sse->data;

  // And bob's own message reaches bob's subscriber, not alice's IPC.
  auto idb = uid("bob-msg");
  EXPECT_OK(send_message(b.access, idb, "bob here", "conv-bob", "image"), 201);
  EXPECT_TRUE(ib->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == idb; }));
  auto to_alice = ia->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == idb; },
    ms(300));
  EXPECT_FALSE(to_alice.has_value());
}

} // namespace
} // namespace aico::test
