// Fault injection (/admin/faults) and persistence across restarts, against
// docs/protocol.md.
#include <sys/stat.h>

#include "integration.hpp"

namespace aico::test {
namespace {

using Faults = GatewayTest;
using Persistence = GatewayTest;

TEST_F(Faults, WsDownClosesAndRefusesThenUpWorks) {
  auto adm = root();
  auto s = alice();
  auto c = ws(s.access);
  ASSERT_TRUE(c->is_open());
  ASSERT_TRUE(c->request("GET", "/users/me").has_value());

  auto r = faults(adm.access, {{"ws", "down"}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/ws"), "down") << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/ipc"), "up") << r.raw;
  EXPECT_TRUE(c->wait_closed(ms(3000))) << "open WebSocket was not closed";

  ws_client refused("127.0.0.1", gw_->port());
  EXPECT_FALSE(refused.connect(s.access));
  EXPECT_EQ(refused.handshake_status(), 503) << refused.error();
  auto h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/websocket"), "down") << h.raw;
  // REST is unaffected.
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);

  r = faults(adm.access, {{"ws", "up"}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/ws"), "up") << r.raw;
  auto c2 = ws(s.access);
  ASSERT_TRUE(c2->is_open());
  auto me = c2->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 200);
  h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/websocket"), "up") << h.raw;
}

TEST_F(Faults, DropWsClosesOpenSockets) {
  auto adm = root();
  auto s = alice();
  auto c1 = ws(s.access);
  auto c2 = ws();
  ASSERT_TRUE(c1->is_open() && c2->is_open());
  EXPECT_OK(faults(adm.access, {{"drop_ws", true}}), 200);
  EXPECT_TRUE(c1->wait_closed(ms(3000)));
  EXPECT_TRUE(c2->wait_closed(ms(3000)));
  // Reconnecting works at once (drop is one-shot).
  auto c3 = ws(s.access);
  ASSERT_TRUE(c3->is_open());
  auto me = c3->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 200);
  auto f = http().get("/api/v1/admin/faults", adm.access);
  EXPECT_OK(f, 200);
  EXPECT_EQ(jstr(f.body, "/data/ws"), "up") << f.raw;
}

TEST_F(Faults, IpcDownGetsNoReplyThenUpWorksForNewDealer) {
  auto adm = root();
  auto s = alice();
  {
    auto c = ipc();
    auto me = c->request("GET", "/users/me", "", s.access);
    ASSERT_TRUE(me.has_value());
    EXPECT_EQ(me->status(), 200);
  }
  // A subscriber from before: `ipc: down` ends its subscription.
  auto old_sub = ipc();
  ASSERT_EQ(old_sub->subscribe(s.access).value_or(aico::ipc::Response{})
              .status(),
            200);
  auto sock_path = gw_->data_dir() + "/gateway.ipc";
  struct stat st {};
  EXPECT_EQ(::stat(sock_path.c_str(), &st), 0);
  auto r = faults(adm.access, {{"ipc", "down"}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/ipc"), "down") << r.raw;
  EXPECT_NE(::stat(sock_path.c_str(), &st), 0)
    << "socket file still there while ipc is down";
  {
    auto c = ipc();
    auto me = c->request("GET", "/users/me", "", s.access, ms(700));
    EXPECT_FALSE(me.has_value()) << "IPC answered while down: " << me->body();
  }
  auto h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/ipc"), "down") << h.raw;

  r = faults(adm.access, {{"ipc", "up"}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/ipc"), "up") << r.raw;
  auto c = ipc();
  auto me = c->request("GET", "/users/me", "", s.access, ms(3000));
  ASSERT_TRUE(me.has_value()) << "new DEALER got no reply after ipc up";
  EXPECT_EQ(me->status(), 200);
  h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/ipc"), "up") << h.raw;

  // The old DEALER reconnects by itself but is no longer subscribed.
  aico::ipc::Frame ping;
  ping.mutable_ping()->set_nonce(11);
  bool reconnected = false;
  for (int i = 0; i < 20 && !reconnected; ++i) {
    old_sub->send(ping);
    reconnected = old_sub
                    ->receive_if([](auto& f) { return f.has_pong(); }, ms(150))
                    .has_value();
  }
  ASSERT_TRUE(reconnected) << "old DEALER did not reconnect";
  old_sub->clear();
  auto id = uid("after-up");
  EXPECT_OK(send_message(s.access, id, "x", "conv-up", "image"), 201);
  auto stale = old_sub->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == id; },
    ms(300));
  EXPECT_FALSE(stale.has_value()) << "subscription survived ipc down";
  ASSERT_EQ(old_sub->subscribe(s.access).value_or(aico::ipc::Response{})
              .status(),
            200);
  auto id2 = uid("after-up");
  EXPECT_OK(send_message(s.access, id2, "y", "conv-up", "image"), 201);
  EXPECT_TRUE(old_sub->receive_event(
    "message", [&](const json::value& d) { return jstr(d, "/id") == id2; }));
}

TEST_F(Faults, FailRatioOneFailsApiButNotHealth) {
  auto adm = root();
  auto s = alice();
  auto w = ws(s.access);
  auto r = faults(adm.access, {{"fail_ratio", 1.0}});
  EXPECT_OK(r, 200);
  EXPECT_DOUBLE_EQ(jptr(r.body, "/data/fail_ratio")
                     ? jptr(r.body, "/data/fail_ratio")->to_number<double>()
                     : -1,
                   1.0)
    << r.raw;
  EXPECT_EQ(jint(r.body, "/data/fail_status"), 503) << r.raw;

  for (int i = 0; i < 3; ++i) {
    auto me = http().get("/api/v1/users/me", s.access);
    EXPECT_ERROR(me, 503, "unavailable");
    EXPECT_EQ(me.header("Retry-After"), "1");
  }
  auto login = http().post("/api/v1/users/authenticate",
                           {{"username", "bob"}, {"password", "bob-pw"}});
  EXPECT_ERROR(login, 503, "unavailable");
  // WebSocket responses carry the header in the frame.
  auto wr = w->request("GET", "/users/me");
  ASSERT_TRUE(wr.has_value());
  EXPECT_EQ(jint(*wr, "/status"), 503) << *wr;
  EXPECT_EQ(jstr(*wr, "/body/code"), "unavailable") << *wr;
  EXPECT_EQ(jstr(*wr, "/headers/Retry-After"), "1") << *wr;

  // Health and the fault switch itself are never failed.
  EXPECT_OK(http().get("/api/v1/health"), 200);
  EXPECT_OK(http().get("/api/v1/health/detailed"), 200);
  EXPECT_OK(http().get("/api/v1/admin/faults", adm.access), 200);

  r = faults(adm.access, {{"reset", true}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jint(r.body, "/data/fail_ratio", -1), 0) << r.raw;
  EXPECT_EQ(jint(r.body, "/data/latency_ms", -1), 0) << r.raw;
  EXPECT_EQ(jstr(r.body, "/data/ws"), "up");
  EXPECT_EQ(jstr(r.body, "/data/ipc"), "up");
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);
}

TEST_F(Faults, FailRatioHalfIsEvenlySpread) {
  auto adm = root();
  auto s = alice();
  EXPECT_OK(faults(adm.access, {{"fail_ratio", 0.5}}), 200);
  int failed = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = http().get("/api/v1/users/me", s.access);
    if (r.status == 503)
      ++failed;
    else
      EXPECT_EQ(r.status, 200) << r.raw;
  }
  EXPECT_EQ(failed, 5);
}

TEST_F(Faults, FailStatusIsUsedWithCodeUnavailable) {
  auto adm = root();
  auto s = alice();
  auto r = faults(adm.access, {{"fail_ratio", 1}, {"fail_status", 500}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jint(r.body, "/data/fail_status"), 500) << r.raw;
  auto me = http().get("/api/v1/users/me", s.access);
  EXPECT_ERROR(me, 500, "unavailable");
  EXPECT_EQ(me.header("Retry-After"), "1");
  EXPECT_OK(faults(adm.access, {{"reset", true}}), 200);
  EXPECT_OK(http().get("/api/v1/users/me", s.access), 200);
}

TEST_F(Faults, LatencyDelaysApiButNotHealth) {
  auto adm = root();
  auto s = alice();
  auto r = faults(adm.access, {{"latency_ms", 300}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jint(r.body, "/data/latency_ms"), 300) << r.raw;
  auto me = http().get("/api/v1/users/me", s.access);
  EXPECT_OK(me, 200);
  EXPECT_GE(me.elapsed.count(), 300) << "took " << me.elapsed.count() << " ms";
  auto h = http().get("/api/v1/health");
  EXPECT_OK(h, 200);
  EXPECT_LT(h.elapsed.count(), 300) << "health was delayed";
  // Over IPC as well.
  auto c = ipc();
  auto t0 = std::chrono::steady_clock::now();
  auto ir = c->request("GET", "/users/me", "", s.access);
  auto took = std::chrono::duration_cast<ms>(std::chrono::steady_clock::now()
                                             - t0);
  ASSERT_TRUE(ir.has_value());
  EXPECT_GE(took.count(), 300);
  EXPECT_OK(faults(adm.access, {{"latency_ms", 0}}), 200);
  me = http().get("/api/v1/users/me", s.access);
  EXPECT_LT(me.elapsed.count(), 300);
}

TEST_F(Faults, NeedsAdmin) {
  auto s = alice();
  EXPECT_ERROR(faults(s.access, {{"ws", "down"}}), 403, "forbidden");
  EXPECT_ERROR(http().get("/api/v1/admin/faults", s.access), 403, "forbidden");
  EXPECT_ERROR(http().post("/api/v1/admin/faults", {{"ws", "down"}}), 401,
               "unauthenticated");
  // Nothing changed.
  auto h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/websocket"), "up") << h.raw;
  auto adm = root();
  auto f = http().get("/api/v1/admin/faults", adm.access);
  EXPECT_OK(f, 200);
  EXPECT_EQ(jstr(f.body, "/data/ws"), "up") << f.raw;
  EXPECT_EQ(jint(f.body, "/data/latency_ms", -1), 0) << f.raw;
}

TEST_F(Faults, BodyIsValidatedAsAWhole) {
  auto adm = root();
  struct bad_case {
    json::value body;
    std::string field;
  };
  std::vector<bad_case> cases = {
    {{{"ws", "sideways"}}, "ws"},
    {{{"ipc", true}}, "ipc"},
    {{{"latency_ms", -1}}, "latency_ms"},
    {{{"latency_ms", 60001}}, "latency_ms"},
    {{{"fail_ratio", 1.5}}, "fail_ratio"},
    {{{"fail_status", 404}}, "fail_status"},
    {{{"drop_ws", "yes"}}, "drop_ws"},
    {{{"reset", 1}}, "reset"},
    // A valid field next to an invalid one: nothing is applied.
    {{{"latency_ms", 100}, {"fail_ratio", -0.1}}, "fail_ratio"},
  };
  for (auto& c : cases) {
    auto r = faults(adm.access, c.body);
    EXPECT_ERROR(r, 400, "validation_error");
    EXPECT_EQ(jstr(r.body, "/details/field"), c.field)
      << c.body << " -> " << r.raw;
  }
  auto f = http().get("/api/v1/admin/faults", adm.access);
  EXPECT_EQ(jint(f.body, "/data/latency_ms", -1), 0) << f.raw;
  // reset is applied first, then the other fields.
  auto rl = faults(adm.access, {{"reset", true}, {"latency_ms", 50}});
  EXPECT_OK(rl, 200);
  EXPECT_EQ(jint(rl.body, "/data/latency_ms"), 50) << rl.raw;
  EXPECT_OK(faults(adm.access, {{"reset", true}}), 200);
  // An empty object changes nothing and returns the state.
  auto e = faults(adm.access, json::object{});
  EXPECT_OK(e, 200);
  EXPECT_EQ(jstr(e.body, "/data/ws"), "up") << e.raw;
}

class FaultsDisabled : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.enable_faults = false;
    return o;
  }
};

TEST_F(FaultsDisabled, AdminFaultsIs404) {
  auto adm = root();
  EXPECT_ERROR(faults(adm.access, {{"ws", "down"}}), 404, "not_found");
  EXPECT_ERROR(http().get("/api/v1/admin/faults", adm.access), 404,
               "not_found");
  // 404 before any token check.
  EXPECT_ERROR(http().get("/api/v1/admin/faults"), 404, "not_found");
  auto h = http().get("/api/v1/health/detailed");
  EXPECT_FALSE(jtrue(h.body, "/data/faults/enabled")) << h.raw;
}

// -- persistence ----------------------------------------------------------------

TEST_F(Persistence, CleanRestartKeepsEverything) {
  auto s = alice();
  std::vector<std::string> ids;
  int64_t last_seq = 0;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(uid("persist"));
    auto r = send_message(s.access, ids.back(), "keep me " + std::to_string(i),
                          "conv-persist", "image");
    EXPECT_OK(r, 201);
    last_seq = jint(r.body, "/data/seq");
  }
  EXPECT_OK(http().put("/api/v1/users/me/preferences", {{"theme", "dark"}},
                       s.access),
            200);
  // A logged-out token must stay revoked after the restart.
  auto gone = bob();
  EXPECT_OK(http().post("/api/v1/users/logout",
                        {{"refresh_token", gone.refresh}}, gone.access),
            200);

  auto port = gw_->port();
  EXPECT_EQ(gw_->stop(), 0) << "SIGTERM must exit 0";
  struct stat st {};
  ASSERT_EQ(::stat((gw_->data_dir() + "/jwt.secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << std::oct << (st.st_mode & 0777);
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  EXPECT_EQ(gw_->port(), port);

  // The old access token is still valid (the secret persisted).
  auto me = http().get("/api/v1/users/me", s.access);
  EXPECT_OK(me, 200);
  EXPECT_EQ(jstr(me.body, "/data/preferences/theme"), "dark") << me.raw;
  // History is intact.
  auto h = history(s.access, "conv-persist");
  EXPECT_OK(h, 200);
  EXPECT_EQ(ids_of(h), ids) << h.raw;
  // Revocations persisted.
  EXPECT_ERROR(http().get("/api/v1/users/me", gone.access), 401,
               "invalid_token");
  EXPECT_ERROR(
    http().post("/api/v1/users/refresh", {{"refresh_token", gone.refresh}}),
    401, "invalid_refresh_token");
  // The old refresh token still works once.
  auto rr = http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}});
  EXPECT_OK(rr, 200);
  // Login still works; idempotency survives; seq keeps increasing.
  auto again = alice();
  EXPECT_FALSE(again.access.empty());
  EXPECT_OK(send_message(s.access, ids[0], "keep me 0", "conv-persist", "image"),
            200);
  auto nr = send_message(s.access, uid("after"), "new", "conv-persist", "image");
  EXPECT_OK(nr, 201);
  EXPECT_GT(jint(nr.body, "/data/seq"), last_seq);
}

TEST_F(Persistence, Kill9KeepsCommittedData) {
  auto s = alice();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(uid("wal"));
    EXPECT_OK(send_message(s.access, ids.back(), "durable " + std::to_string(i),
                           "conv-wal", "image"),
              201);
  }
  gw_->kill9();
  ASSERT_FALSE(gw_->running());
  ASSERT_TRUE(gw_->start()) << gw_->last_error();

  auto me = http().get("/api/v1/users/me", s.access);
  EXPECT_OK(me, 200);
  auto h = history(s.access, "conv-wal");
  EXPECT_OK(h, 200);
  EXPECT_EQ(ids_of(h), ids) << h.raw;
  auto again = alice();
  EXPECT_FALSE(again.access.empty());
  auto rr = http().post("/api/v1/users/refresh", {{"refresh_token", s.refresh}});
  EXPECT_OK(rr, 200);
  // The IPC door is back on the same endpoint.
  auto c = ipc();
  auto ir = c->request("GET", "/users/me", "", s.access, ms(3000));
  ASSERT_TRUE(ir.has_value());
  EXPECT_EQ(ir->status(), 200);
}

TEST_F(Persistence, ClientsSurviveARestart) {
  auto s = alice();
  auto w = ws(s.access);
  ASSERT_TRUE(w->is_open());
  EXPECT_EQ(gw_->stop(), 0);
  EXPECT_TRUE(w->wait_closed(ms(3000))) << "WS not closed on shutdown";
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  auto w2 = ws(s.access);
  ASSERT_TRUE(w2->is_open());
  auto me = w2->request("GET", "/users/me");
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jint(*me, "/status"), 200);
}

TEST_F(Persistence, SigtermWithOpenConnectionsExitsCleanly) {
  auto s = alice();
  auto w = ws(s.access);
  sse_client sse("127.0.0.1", gw_->port());
  ASSERT_EQ(sse.connect(s.access), 200);
  auto c = ipc();
  ASSERT_EQ(c->subscribe(s.access).value_or(aico::ipc::Response{}).status(),
            200);
  http_connection idle("127.0.0.1", gw_->port());
  ASSERT_TRUE(idle.connect());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(gw_->stop(ms(5000)), 0);
  auto took =
    std::chrono::duration_cast<ms>(std::chrono::steady_clock::now() - t0);
  EXPECT_LT(took.count(), 3000) << "shutdown took " << took.count() << " ms";
  EXPECT_TRUE(sse.wait_closed(ms(1000))) << "SSE stream not ended on stop";
  EXPECT_TRUE(w->wait_closed(ms(1000)));
  struct stat st {};
  EXPECT_NE(::stat((gw_->data_dir() + "/gateway.ipc").c_str(), &st), 0)
    << "IPC socket file left behind after stop";
}

TEST_F(Persistence, EventSeqKeepsIncreasingAcrossRestart) {
  auto s = alice();
  int64_t before = 0;
  {
    auto w = ws(s.access);
    ASSERT_TRUE(w->request("GET", "/users/me").has_value());
    auto id = uid("seq");
    EXPECT_OK(send_message(s.access, id, "one", "conv-seq", "image"), 201);
    auto ev = w->receive_event(
      "message", [&](auto& v) { return jstr(v, "/data/id") == id; });
    ASSERT_TRUE(ev.has_value());
    before = jint(*ev, "/seq");
  }
  EXPECT_EQ(gw_->stop(), 0);
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  auto w = ws(s.access);
  ASSERT_TRUE(w->request("GET", "/users/me").has_value());
  auto id = uid("seq");
  EXPECT_OK(send_message(s.access, id, "two", "conv-seq", "image"), 201);
  auto ev = w->receive_event(
    "message", [&](auto& v) { return jstr(v, "/data/id") == id; });
  ASSERT_TRUE(ev.has_value());
  EXPECT_GT(jint(*ev, "/seq"), before);
}

class Concurrency : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.bot = false;
    return o;
  }
};

TEST_F(Concurrency, ParallelSendsOverAllDoorsStoreEachMessageOnce) {
  auto s = alice();
  constexpr int per_thread = 15;
  std::vector<std::vector<int>> status(6);
  std::vector<std::vector<int64_t>> seqs(6);
  std::vector<std::thread> threads;
  auto body_for = [](int t, int i) {
    return json::object{{"id", "par-" + std::to_string(t) + "-"
                                 + std::to_string(i % 10)},
                        {"content", "parallel"},
                        {"conversation_id", "conv-par"}};
  };
  // i % 10: the last five of each thread re-send an earlier id (idempotent).
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      auto c = http();
      for (int i = 0; i < per_thread; ++i) {
        auto r = c.post("/api/v1/conversations/messages", body_for(t, i),
                        s.access);
        status[t].push_back(r.status);
        seqs[t].push_back(jint(r.body, "/data/seq"));
      }
    });
  for (int t = 2; t < 4; ++t)
    threads.emplace_back([&, t] {
      ipc_client c(gw_->ipc_endpoint());
      for (int i = 0; i < per_thread; ++i) {
        auto r = c.request("POST", "/conversations/messages",
                           to_text(body_for(t, i)), s.access);
        status[t].push_back(r ? r->status() : 0);
        seqs[t].push_back(r ? jint(parse_json(r->body()), "/data/seq") : -1);
      }
    });
  for (int t = 4; t < 6; ++t)
    threads.emplace_back([&, t] {
      ws_client c("127.0.0.1", gw_->port());
      if (!c.connect(s.access))
        return;
      for (int i = 0; i < per_thread; ++i) {
        auto r = c.request("POST", "/conversations/messages", body_for(t, i));
        status[t].push_back(r ? static_cast<int>(jint(*r, "/status")) : 0);
        seqs[t].push_back(r ? jint(*r, "/body/data/seq") : -1);
      }
    });
  for (auto& th : threads)
    th.join();
  std::set<int64_t> distinct;
  for (int t = 0; t < 6; ++t) {
    ASSERT_EQ(status[t].size(), static_cast<size_t>(per_thread))
      << "thread " << t;
    for (int i = 0; i < per_thread; ++i) {
      EXPECT_EQ(status[t][i], i < 10 ? 201 : 200)
        << "thread " << t << " request " << i;
      if (i >= 10) {
        EXPECT_EQ(seqs[t][i], seqs[t][i - 10]) << "re-send got another seq";
      }
      distinct.insert(seqs[t][i]);
    }
  }
  EXPECT_EQ(distinct.size(), 60u);
  auto h = history(s.access, "conv-par", "limit=500");
  EXPECT_OK(h, 200);
  auto ids = ids_of(h);
  EXPECT_EQ(ids.size(), 60u);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 60u);
  // Ascending seq.
  auto msgs = jptr(h.body, "/data/messages");
  ASSERT_TRUE(msgs && msgs->is_array());
  int64_t last = 0;
  for (auto& m : msgs->as_array()) {
    EXPECT_GT(jint(m, "/seq"), last);
    last = jint(m, "/seq");
  }
}

} // namespace
} // namespace aico::test
