// WebSocket and Server-Sent Events front doors against docs/protocol.md.
#include "integration.hpp"

namespace aico::test {
namespace {

using Ws = GatewayTest;
using Sse = GatewayTest;

bool is_response(const json::value& v, const std::string& id) {
  return jstr(v, "/type") == "response" && jstr(v, "/id") == id;
}

TEST_F(Ws, RequestResponseCorrelation) {
  auto s = alice();
  auto c = ws(s.access);
  ASSERT_TRUE(c->is_open());
  // Two requests in flight; the answers are matched by id.
  ASSERT_TRUE(c->send({{"type", "request"},
                       {"id", "first"},
                       {"method", "GET"},
                       {"path", "/users/me"}}));
  ASSERT_TRUE(c->send({{"type", "request"},
                       {"id", "second"},
                       {"method", "GET"},
                       {"path", "/api/v1/health"}}));
  auto r2 = c->receive_if([](auto& v) { return is_response(v, "second"); });
  auto r1 = c->receive_if([](auto& v) { return is_response(v, "first"); });
  ASSERT_TRUE(r1.has_value());
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(jint(*r1, "/status"), 200) << *r1;
  EXPECT_TRUE(jtrue(*r1, "/body/success")) << *r1;
  EXPECT_EQ(jstr(*r1, "/body/data/username"), "alice") << *r1;
  EXPECT_EQ(jint(*r2, "/status"), 200) << *r2;
  EXPECT_TRUE(jtrue(*r2, "/body/data/is_healthy")) << *r2;

  // A request with a body, and an error response in the envelope.
  auto sent = c->request("POST", "/conversations/messages",
                         {{"id", uid("ws")}, {"content", "via ws"},
                          {"conversation_id", "conv-ws"}});
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(jint(*sent, "/status"), 201) << *sent;
  EXPECT_EQ(jstr(*sent, "/body/data/content"), "via ws") << *sent;
  auto bad = c->request("POST", "/conversations/messages", {{"id", "x"}});
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(jint(*bad, "/status"), 400) << *bad;
  EXPECT_EQ(jstr(*bad, "/body/code"), "validation_error") << *bad;
  EXPECT_FALSE(jtrue(*bad, "/body/success")) << *bad;
  auto missing = c->request("GET", "/nope");
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(jint(*missing, "/status"), 404) << *missing;
}

TEST_F(Ws, MessageEventsAndBotStream) {
  auto s = alice();
  auto c = ws(s.access);
  ASSERT_TRUE(c->is_open());
  // Make sure the subscription is in place before sending.
  ASSERT_TRUE(c->request("GET", "/users/me").has_value());
  auto id = uid("evt");
  auto r = send_message(s.access, id, "hello wonderful world", "conv-evt");
  EXPECT_OK(r, 201);

  auto own = c->receive_event("message", [&](auto& v) {
    return jstr(v, "/data/id") == id;
  });
  ASSERT_TRUE(own.has_value()) << "no message event for " << id;
  EXPECT_EQ(jstr(*own, "/data/content"), "hello wonderful world");
  EXPECT_EQ(jstr(*own, "/data/conversation_id"), "conv-evt");
  EXPECT_EQ(jstr(*own, "/data/sender"), "alice");
  auto own_seq = jint(*own, "/seq");
  EXPECT_GT(own_seq, 0) << *own;

  auto final_msg = c->receive_event("message", [&](auto& v) {
    return jstr(v, "/data/id") == "bot-" + id;
  });
  ASSERT_TRUE(final_msg.has_value()) << "no bot reply for " << id;
  EXPECT_EQ(jstr(*final_msg, "/data/reply_to"), id) << *final_msg;
  EXPECT_EQ(jstr(*final_msg, "/data/sender"), "companion") << *final_msg;
  EXPECT_EQ(jstr(*final_msg, "/data/conversation_id"), "conv-evt");
  auto content = jstr(*final_msg, "/data/content");
  EXPECT_NE(content.find("wonderful"), std::string::npos) << content;
  EXPECT_GT(jint(*final_msg, "/seq"), own_seq);

  // The stream chunks arrived before the final message (they are still
  // queued: receive_event skipped them), in order, ending with done.
  std::string joined;
  int64_t expect_no = 0;
  int64_t last_seq = own_seq;
  bool done = false;
  for (;;) {
    auto chunk = c->receive_event(
      "message.stream",
      [&](auto& v) { return jstr(v, "/data/reply_to") == id; }, ms(500));
    if (!chunk)
      break;
    EXPECT_FALSE(done) << "chunk after done: " << *chunk;
    EXPECT_EQ(jint(*chunk, "/data/seq_no"), expect_no) << *chunk;
    EXPECT_EQ(jstr(*chunk, "/data/conversation_id"), "conv-evt");
    EXPECT_FALSE(jstr(*chunk, "/data/message_id").empty()) << *chunk;
    EXPECT_GT(jint(*chunk, "/seq"), last_seq) << "events out of order";
    EXPECT_LT(jint(*chunk, "/seq"), jint(*final_msg, "/seq"))
      << "chunk after the final message";
    last_seq = jint(*chunk, "/seq");
    ++expect_no;
    joined += jstr(*chunk, "/data/chunk");
    done = jtrue(*chunk, "/data/done");
  }
  EXPECT_GE(expect_no, 2) << "expected a few message.stream events";
  EXPECT_TRUE(done) << "last chunk must have done:true";
  EXPECT_EQ(joined, content);
}

TEST_F(Ws, AuthWithFirstFrame) {
  auto s = alice();
  auto c = ws();
  ASSERT_TRUE(c->is_open());
  // Unauthenticated: only health and login work.
  auto me = c->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 401) << *me;
  EXPECT_EQ(jstr(*me, "/body/code"), "unauthenticated") << *me;
  auto health = c->request("GET", "/health");
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(jint(*health, "/status"), 200);
  auto login = c->request("POST", "/users/authenticate",
                          {{"username", "bob"}, {"password", "bob-pw"}});
  ASSERT_TRUE(login.has_value());
  EXPECT_EQ(jint(*login, "/status"), 200) << *login;
  EXPECT_FALSE(jstr(*login, "/body/data/access_token").empty());

  ASSERT_TRUE(c->send({{"type", "auth"}, {"token", s.access}}));
  auto ok = c->receive_if([](auto& v) {
    auto t = jstr(v, "/type");
    return t == "auth_ok" || t == "error";
  });
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(jstr(*ok, "/type"), "auth_ok") << *ok;
  EXPECT_EQ(jstr(*ok, "/user/username"), "alice") << *ok;

  me = c->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 200) << *me;
  EXPECT_EQ(jstr(*me, "/body/data/username"), "alice");

  // Events flow once authenticated.
  auto id = uid("auth-evt");
  EXPECT_OK(send_message(s.access, id, "after auth", "conv-auth"), 201);
  auto ev = c->receive_event("message",
                             [&](auto& v) { return jstr(v, "/data/id") == id; });
  EXPECT_TRUE(ev.has_value());
}

TEST_F(Ws, AuthFrameWithBadTokenIsError401) {
  auto c = ws();
  ASSERT_TRUE(c->is_open());
  ASSERT_TRUE(c->send({{"type", "auth"}, {"token", "abc"}}));
  auto e = c->receive_if([](auto& v) {
    auto t = jstr(v, "/type");
    return t == "auth_ok" || t == "error";
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(jstr(*e, "/type"), "error") << *e;
  EXPECT_EQ(jint(*e, "/status"), 401) << *e;
  // Still usable.
  auto h = c->request("GET", "/health");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(jint(*h, "/status"), 200);
}

TEST_F(Ws, InvalidTokenOnUpgradeIsRefused) {
  ws_client c("127.0.0.1", gw_->port());
  EXPECT_FALSE(c.connect("abc"));
  EXPECT_EQ(c.handshake_status(), 401) << c.error();
  auto s = alice();
  auto parts = split(s.access, '.');
  ASSERT_EQ(parts.size(), 3u);
  auto forged = parts[0] + "." + parts[1] + "."
                + (parts[2][0] == 'A' ? "B" : "A") + parts[2].substr(1);
  ws_client c2("127.0.0.1", gw_->port());
  EXPECT_FALSE(c2.connect(forged));
  EXPECT_EQ(c2.handshake_status(), 401);
  // A good token still connects.
  ws_client c3("127.0.0.1", gw_->port());
  EXPECT_TRUE(c3.connect(s.access)) << c3.error();
}

TEST_F(Ws, PingPong) {
  auto c = ws();
  ASSERT_TRUE(c->send({{"type", "ping"}, {"id", "p-1"}}));
  auto p = c->receive_type("pong");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(jstr(*p, "/id"), "p-1") << *p;
  ASSERT_TRUE(c->send({{"type", "ping"}, {"id", "p-2"}}));
  p = c->receive_type("pong");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(jstr(*p, "/id"), "p-2") << *p;
}

TEST_F(Ws, GarbageFramesAreBadFrameAndConnectionSurvives) {
  auto s = alice();
  auto c = ws(s.access);
  ASSERT_TRUE(c->is_open());
  const std::vector<std::string> garbage = {
    "this is not json",
    "[1,2,3]",
    R"({"type":"whatever","id":"w1"})",
    R"({"type":"request","method":"GET","path":"/health"})",
    R"({"id":"no-type"})",
    "42",
  };
  int n = 0;
  for (auto& g : garbage) {
    ASSERT_TRUE(c->send_text(g)) << g;
    auto e = c->receive_type("error");
    ASSERT_TRUE(e.has_value()) << "no error frame for: " << g;
    EXPECT_EQ(jint(*e, "/status"), 400) << g << " -> " << *e;
    EXPECT_EQ(jstr(*e, "/code"), "bad_frame") << g << " -> " << *e;
    EXPECT_NE(jptr(*e, "/message"), nullptr) << *e;
    // Still alive.
    auto id = "alive-" + std::to_string(++n);
    ASSERT_TRUE(c->send({{"type", "ping"}, {"id", id}}));
    auto p = c->receive_type("pong");
    ASSERT_TRUE(p.has_value()) << "connection dead after: " << g;
    EXPECT_EQ(jstr(*p, "/id"), id);
  }
  EXPECT_TRUE(c->is_open());
  auto me = c->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 200);
}

TEST_F(Ws, EventsGoOnlyToTheirUser) {
  auto a = alice();
  auto b = bob();
  auto ca = ws(a.access);
  auto cb = ws(b.access);
  ASSERT_TRUE(ca->request("GET", "/users/me").has_value());
  ASSERT_TRUE(cb->request("GET", "/users/me").has_value());
  auto id = uid("private");
  EXPECT_OK(send_message(a.access, id, "for alice only", "conv-priv"), 201);
  EXPECT_TRUE(ca->receive_event("message", [&](auto& v) {
    return jstr(v, "/data/id") == "bot-" + id;
  }));
  // Bob got none of it.
  auto leaked = cb->receive_if(
    [](auto& v) { return jstr(v, "/type") == "event"; }, ms(300));
  EXPECT_FALSE(leaked.has_value()) << *leaked;
}

TEST_F(Ws, SystemUpdateAndReadEvents) {
  auto a = alice();
  auto c = ws(a.access);
  ASSERT_TRUE(c->request("GET", "/users/me").has_value());
  auto b = bob();
  ipc_client bob_ipc(gw_->ipc_endpoint());
  ASSERT_EQ(bob_ipc.subscribe(b.access).value_or(aico::ipc::Response{}).status(),
            200);
  auto adm = root();
  auto r = http().post("/api/v1/system/update", json::object{}, adm.access);
  EXPECT_OK(r, 202);
  auto bob_ev = bob_ipc.receive_event("system.update");
  ASSERT_TRUE(bob_ev.has_value()) << "system.update must reach every subscriber";
  EXPECT_EQ(jstr(parse_json(bob_ev->data()), "/update_id"),
            jstr(r.body, "/data/update_id"));
  auto ev = c->receive_event("system.update");
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(jstr(*ev, "/data/update_id"), jstr(r.body, "/data/update_id"))
    << *ev;
  EXPECT_NE(jptr(*ev, "/data/status"), nullptr) << *ev;
  EXPECT_NE(jptr(*ev, "/data/version"), nullptr) << *ev;

  auto id = uid("toread");
  EXPECT_OK(send_message(a.access, id, "read", "conv-toread", "image"), 201);
  EXPECT_OK(http().request("POST",
                           "/api/v1/conversations/messages/" + id + "/read",
                           "", a.access),
            200);
  auto rd = c->receive_event("message.read",
                             [&](auto& v) { return jstr(v, "/data/id") == id; });
  ASSERT_TRUE(rd.has_value());
  EXPECT_EQ(jstr(*rd, "/data/status"), "read") << *rd;
}

TEST_F(Ws, ReauthenticateSwitchesUser) {
  auto a = alice();
  auto b = bob();
  auto c = ws(a.access);
  ASSERT_TRUE(c->send({{"type", "auth"}, {"token", b.access}}));
  auto ok = c->receive_type("auth_ok");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(jstr(*ok, "/user/username"), "bob");
  auto me = c->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jstr(*me, "/body/data/username"), "bob") << *me;
}

TEST_F(Ws, OversizedFrameClosesWith1009) {
  auto s = alice();
  auto c = ws(s.access);
  ASSERT_TRUE(c->is_open());
  std::string huge = R"({"type":"ping","id":")" + std::string(1100 * 1024, 'x')
                     + R"("})";
  c->send_text(huge); // may fail once the server closes
  EXPECT_TRUE(c->wait_closed(ms(3000))) << "connection not closed";
  EXPECT_EQ(c->close_code(), 1009);
  // The server is fine.
  auto c2 = ws(s.access);
  auto me = c2->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 200);
}

TEST_F(Ws, HealthCountsOpenWebSockets) {
  auto s = alice();
  auto c1 = ws(s.access);
  auto c2 = ws();
  ASSERT_TRUE(c1->request("GET", "/health").has_value());
  ASSERT_TRUE(c2->request("GET", "/health").has_value());
  auto h = http().get("/api/v1/health/detailed");
  EXPECT_EQ(jint(h.body, "/data/connections/ws"), 2) << h.raw;
  c1->close();
  c2->close();
  // Closing is noticed soon.
  int64_t n = -1;
  for (int i = 0; i < 40 && n != 0; ++i) {
    std::this_thread::sleep_for(ms(50));
    n = jint(http().get("/api/v1/health/detailed").body, "/data/connections/ws");
  }
  EXPECT_EQ(n, 0);
}

class WsIdle : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.extra_args.push_back("--ws-idle-timeout");
    o.extra_args.push_back("1");
    return o;
  }
};

TEST_F(WsIdle, SilentConnectionIsClosedActiveOneIsNot) {
  auto s = alice();
  auto silent = ws(s.access);
  auto active = ws(s.access);
  ASSERT_TRUE(silent->is_open() && active->is_open());
  auto deadline = std::chrono::steady_clock::now() + ms(1800);
  int n = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto id = "keep-" + std::to_string(++n);
    ASSERT_TRUE(active->send({{"type", "ping"}, {"id", id}}));
    ASSERT_TRUE(active->receive_type("pong").has_value());
    std::this_thread::sleep_for(ms(300));
  }
  EXPECT_TRUE(silent->wait_closed(ms(1500))) << "idle WS not closed";
  EXPECT_TRUE(active->is_open()) << "active WS was closed";
}

// -- SSE --------------------------------------------------------------------------

TEST_F(Sse, ReceivesMessageEvents) {
  auto s = alice();
  sse_client sse("127.0.0.1", gw_->port());
  ASSERT_EQ(sse.connect(s.access), 200);
  auto ct = sse.headers().count("content-type")
              ? sse.headers().at("content-type")
              : "";
  EXPECT_NE(ct.find("text/event-stream"), std::string::npos) << ct;
  // The subscription is set up when the header is sent; send now.
  auto id = uid("sse");
  auto r = send_message(s.access, id, "over sse please", "conv-sse");
  EXPECT_OK(r, 201);
  auto ev = sse.receive("message", [&](const sse_event& e) {
    return jstr(e.json, "/id") == id;
  });
  ASSERT_TRUE(ev.has_value()) << "no SSE message event";
  EXPECT_EQ(jstr(ev->json, "/content"), "over sse please");
  EXPECT_FALSE(ev->id.empty());
  EXPECT_GT(std::atoll(ev->id.c_str()), 0) << "id: " << ev->id;
  auto bot = sse.receive("message", [&](const sse_event& e) {
    return jstr(e.json, "/id") == "bot-" + id;
  });
  EXPECT_TRUE(bot.has_value()) << "no bot reply over SSE";
  if (bot) {
    EXPECT_GT(std::atoll(bot->id.c_str()), std::atoll(ev->id.c_str()));
  }
}

TEST_F(Sse, WithoutTokenIs401) {
  sse_client sse("127.0.0.1", gw_->port());
  EXPECT_EQ(sse.connect(""), 401);
  auto body = parse_json(sse.body());
  EXPECT_EQ(jstr(body, "/code"), "unauthenticated") << sse.body();
  sse_client bad("127.0.0.1", gw_->port());
  EXPECT_EQ(bad.connect("abc"), 401);
}

TEST_F(Sse, StreamEndsOnLogout) {
  auto s = alice();
  sse_client sse("127.0.0.1", gw_->port());
  ASSERT_EQ(sse.connect(s.access), 200);
  EXPECT_OK(http().post("/api/v1/users/logout", {{"refresh_token", s.refresh}},
                        s.access),
            200);
  EXPECT_TRUE(sse.wait_closed(ms(3000)));
}

} // namespace
} // namespace aico::test
