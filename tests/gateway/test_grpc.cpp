// The gRPC front door (proto/gateway.proto) against docs/protocol.md, "gRPC
// door": the generated stub straight against a real aico-gateway child
// process on 127.0.0.1 (--grpc 127.0.0.1:0).
#include "integration.hpp"

#include <cstdlib>

#include "grpc_client.hpp"
#include "support/test_pki.hpp"

namespace aico::test {
namespace {

gateway_options grpc_options() {
  auto o = fast_options();
  o.extra_args.insert(o.extra_args.end(), {"--grpc", "127.0.0.1:0"});
  return o;
}

class Grpc : public GatewayTest {
protected:
  gateway_options options() override { return grpc_options(); }

  std::string target() const { return gw_->reported_grpc(); }
  std::unique_ptr<grpc_client> client() const {
    return std::make_unique<grpc_client>(target());
  }

  /// Reads stream messages until an event matching `pred` (or the stream
  /// ends / `limit` messages were read).
  template <class Pred>
  std::optional<aico::rpc::Event> read_event(grpc_client::stream& s,
                                             Pred pred, int limit = 200) {
    aico::rpc::EventsMessage m;
    for (int i = 0; i < limit && s.read(m); ++i)
      if (m.has_event() && pred(m.event()))
        return m.event();
    return std::nullopt;
  }
};

TEST_F(Grpc, ReadyLineNamesTheDoor) {
  auto t = target();
  ASSERT_FALSE(t.empty()) << gw_->ready_line();
  EXPECT_EQ(t.rfind("127.0.0.1:", 0), 0u) << t;
  EXPECT_NE(t, "127.0.0.1:0");
}

TEST_F(Grpc, WithoutTheOptionTheDoorIsOff) {
  gateway_options o = fast_options();
  gateway_process other(o);
  ASSERT_TRUE(other.start()) << other.last_error();
  EXPECT_EQ(other.ready_line().find(" grpc="), std::string::npos)
    << other.ready_line();
  EXPECT_EQ(other.reported_grpc(), "");
  http_client h("127.0.0.1", other.port());
  auto r = h.get("/api/v1/health");
  // started without --grpc: the door is off (a configured door that is
  // not listening or switched down by a fault is "down")
  EXPECT_EQ(jstr(r.body, "/data/services/grpc"), "off") << r.raw;
}

TEST_F(Grpc, AuthNoneBadExpiredGood) {
  auto c = client();
  // none
  EXPECT_ERROR(c->call("GET", "/users/me"), 401, "unauthenticated");
  // bad: forged, and another scheme than Bearer
  EXPECT_ERROR(c->call("GET", "/users/me", "", "abc.def.ghi"), 401,
               "invalid_token");
  auto s = alice();
  auto basic = c->call("GET", "/users/me", "", "", std::chrono::seconds(5),
                       "Basic YWxpY2U6YWxpY2UtcHc=");
  EXPECT_ERROR(basic, 401, "unauthenticated");
  // good, also with a lower-case scheme
  auto me = c->call("GET", "/users/me", "", s.access);
  EXPECT_OK(me, 200);
  EXPECT_EQ(jstr(me.body, "/data/username"), "alice") << me.raw;
  EXPECT_OK(c->call("GET", "/users/me", "", "", std::chrono::seconds(5),
                    "bearer " + s.access),
            200);
  // The /api/v1 prefix is accepted.
  EXPECT_OK(c->call("GET", "/api/v1/users/me", "", s.access), 200);
  // A login over gRPC gives a working token.
  auto tok = c->login("bob", "bob-pw");
  ASSERT_FALSE(tok.empty());
  EXPECT_EQ(jstr(c->call("GET", "/users/me", "", tok).body, "/data/username"),
            "bob");
  EXPECT_ERROR(c->call_json("POST", "/users/authenticate",
                       json::object{{"username", "bob"}, {"password", "no"}}),
               401, "invalid_credentials");
}

class GrpcShortTtl : public Grpc {
protected:
  gateway_options options() override {
    auto o = grpc_options();
    o.access_ttl_s = 1;
    return o;
  }
};

TEST_F(GrpcShortTtl, ExpiredTokenIs401OnCallAndUnauthenticatedOnEvents) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto frac = std::chrono::duration_cast<ms>(now) % 1000;
  std::this_thread::sleep_for(ms(1000) - frac + ms(20));
  auto s = alice();
  auto c = client();
  EXPECT_OK(c->call("GET", "/users/me", "", s.access), 200);
  std::this_thread::sleep_for(ms(2200));
  EXPECT_ERROR(c->call("GET", "/users/me", "", s.access), 401,
               "token_expired");
  auto st = c->events(s.access);
  aico::rpc::EventsMessage m;
  EXPECT_FALSE(st.read(m));
  auto status = st.finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
    << status.error_message();
  EXPECT_EQ(st.trailer("aico-code"), "token_expired");
}

TEST_F(Grpc, EveryStatusCodeOfTheOtherDoors) {
  auto c = client();
  auto a = alice();
  auto b = bob();
  auto root = this->root();
  // 200, 201 and 200 again for a re-sent id
  auto id = uid("grpc-st");
  json::object msg{{"id", id}, {"content", "status codes over grpc"},
                   {"conversation_id", "conv-grpc-st"}, {"type", "image"}};
  EXPECT_OK(c->call_json("POST", "/conversations/messages", msg, a.access), 201);
  EXPECT_OK(c->call_json("POST", "/conversations/messages", msg, a.access), 200);
  // 202
  EXPECT_OK(c->call("POST", "/system/update", "", root.access), 202);
  // 400 bad_json and validation_error (with details.field)
  EXPECT_ERROR(c->call("POST", "/conversations/messages", "{oops", a.access),
               400, "bad_json");
  auto v = c->call_json("POST", "/conversations/messages",
                   json::object{{"id", uid("v")}, {"content", 5}}, a.access);
  EXPECT_ERROR(v, 400, "validation_error");
  EXPECT_EQ(jstr(v.body, "/details/field"), "content") << v.raw;
  // 403: a user on an admin route; another user's conversation
  EXPECT_ERROR(c->call("GET", "/admin/users", "", a.access), 403,
               "forbidden");
  EXPECT_ERROR(c->call("GET", "/conversations/conv-grpc-st/messages", "",
                       b.access),
               403, "forbidden");
  // 404, 405 with Allow
  EXPECT_ERROR(c->call("GET", "/nope", "", a.access), 404, "not_found");
  auto r405 = c->call("DELETE", "/users/me", "", a.access);
  EXPECT_ERROR(r405, 405, "method_not_allowed");
  EXPECT_NE(r405.header("Allow").find("GET"), std::string::npos)
    << r405.header("Allow");
  // 409: the same id from another user
  auto dup = msg;
  dup["conversation_id"] = "conv-grpc-st-b";
  EXPECT_ERROR(c->call_json("POST", "/conversations/messages", dup, b.access), 409,
               "conflict");
  // 413 over --max-body, with details.max_bytes
  std::string big(70000, 'x');
  auto r413 = c->call_json("POST", "/conversations/messages",
                      json::object{{"id", uid("big")}, {"content", big}},
                      a.access);
  EXPECT_ERROR(r413, 413, "payload_too_large");
  EXPECT_EQ(jint(r413.body, "/details/max_bytes"), 65536) << r413.raw;
  // 503 from an injected fault, with Retry-After: 1
  EXPECT_OK(faults(root.access, {{"fail_ratio", 1.0}}), 200);
  auto r503 = c->call("GET", "/users/me", "", a.access);
  EXPECT_ERROR(r503, 503, "unavailable");
  EXPECT_EQ(r503.header("Retry-After"), "1");
  // /admin/faults itself is never failed: undo it over gRPC
  EXPECT_OK(c->call_json("POST", "/admin/faults",
                    json::object{{"fail_ratio", 0.0}}, root.access),
            200);
  EXPECT_OK(c->call("GET", "/users/me", "", a.access), 200);
  // 429: logins throttled after the free failures, with Retry-After
  grpc_response last;
  for (int i = 0; i < 7; ++i)
    last = c->call_json("POST", "/users/authenticate",
                   json::object{{"username", "bob"}, {"password", "wrong"}});
  EXPECT_ERROR(last, 429, "rate_limited");
  EXPECT_GE(std::atoi(last.header("Retry-After").c_str()), 1) << last.raw;
}

TEST_F(Grpc, BadInput) {
  auto c = client();
  auto a = alice();
  // a body that is not valid UTF-8
  EXPECT_ERROR(c->call("POST", "/conversations/messages",
                       std::string("{\"id\":\"x\",\"content\":\"\xff\xfe\"}"),
                       a.access),
               400, "bad_json");
  // not an object
  auto arr = c->call("POST", "/conversations/messages", "[1,2]", a.access);
  EXPECT_ERROR(arr, 400, "validation_error");
  EXPECT_EQ(jstr(arr.body, "/details/field"), "body") << arr.raw;
  // non-finite number
  auto inf = c->call("POST", "/conversations/messages",
                     R"({"id":"inf-1","content":"x","metadata":{"big":1e400}})",
                     a.access);
  EXPECT_ERROR(inf, 400, "validation_error");
  // bad query values
  auto q = c->call("GET", "/conversations/current/messages?limit=0", "",
                   a.access);
  EXPECT_ERROR(q, 400, "validation_error");
  EXPECT_EQ(jstr(q.body, "/details/field"), "limit") << q.raw;
  // an empty method or path is a route that does not exist
  EXPECT_ERROR(c->call("", "", "", a.access), 404, "not_found");
  // over the transport cap (1 MiB): refused by gRPC before the API
  std::string huge(1200 * 1024, 'x');
  auto r = c->call("POST", "/conversations/messages", huge, a.access);
  EXPECT_EQ(r.code, grpc::StatusCode::RESOURCE_EXHAUSTED) << r.error;
  EXPECT_EQ(r.status, 0);
  // the door still works afterwards
  EXPECT_OK(c->call("GET", "/users/me", "", a.access), 200);
}

TEST_F(Grpc, EventsLive) {
  auto c = client();
  auto a = alice();
  auto st = c->events(a.access);
  aico::rpc::EventsMessage first;
  ASSERT_TRUE(st.read(first));
  ASSERT_TRUE(first.has_subscribed()) << first.DebugString();
  EXPECT_EQ(first.subscribed().user_id(), a.user_id);
  EXPECT_FALSE(first.subscribed().replay());
  auto id = uid("grpc-evt");
  EXPECT_OK(send_message(a.access, id, "hello grpc subscriber", "conv-grpc"),
            201);
  auto ev = read_event(st, [&](const aico::rpc::Event& e) {
    return e.topic() == "message"
           && jstr(parse_json(e.data()), "/id") == id;
  });
  ASSERT_TRUE(ev.has_value()) << "no message event over gRPC";
  EXPECT_GT(ev->seq(), 0u);
  EXPECT_EQ(jstr(parse_json(ev->data()), "/content"), "hello grpc subscriber");
  auto bot = read_event(st, [&](const aico::rpc::Event& e) {
    return e.topic() == "message"
           && jstr(parse_json(e.data()), "/reply_to") == id;
  });
  EXPECT_TRUE(bot.has_value()) << "no bot reply over gRPC";
  EXPECT_GT(bot->seq(), ev->seq());
  // health/detailed counts the stream
  auto h = http().get("/api/v1/health/detailed");
  EXPECT_EQ(jint(h.body, "/data/connections/grpc"), 1) << h.raw;
  st.ctx->TryCancel();
  st.finish();
}

TEST_F(Grpc, EventsNeedAToken) {
  auto c = client();
  for (std::string tok : {std::string(), std::string("forged.token.x")}) {
    auto st = c->events(tok);
    aico::rpc::EventsMessage m;
    EXPECT_FALSE(st.read(m));
    auto status = st.finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << status.error_message();
    EXPECT_EQ(st.trailer("aico-status"), "401");
    EXPECT_EQ(st.trailer("aico-code"),
              tok.empty() ? "unauthenticated" : "invalid_token");
  }
}

TEST_F(Grpc, EventsReplaySinceAndMarker) {
  auto c = client();
  auto a = alice();
  uint64_t since = 0;
  std::vector<std::string> ids;
  {
    auto st = c->events(a.access);
    aico::rpc::EventsMessage m;
    ASSERT_TRUE(st.read(m));
    auto id = uid("grpc-rp");
    EXPECT_OK(send_message(a.access, id, "first", "conv-grpc-rp", "image"),
              201);
    auto ev = read_event(st, [&](const aico::rpc::Event& e) {
      return jstr(parse_json(e.data()), "/id") == id;
    });
    ASSERT_TRUE(ev.has_value());
    since = ev->seq();
    st.ctx->TryCancel();
    st.finish();
  }
  // While nobody listens: two more messages.
  for (int i = 0; i < 2; ++i) {
    ids.push_back(uid("grpc-rp-missed"));
    EXPECT_OK(send_message(a.access, ids.back(), "missed", "conv-grpc-rp",
                           "image"),
              201);
  }
  auto st = c->events(a.access, since);
  aico::rpc::EventsMessage m;
  ASSERT_TRUE(st.read(m));
  ASSERT_TRUE(m.has_subscribed()) << m.DebugString();
  EXPECT_TRUE(m.subscribed().replay());
  EXPECT_EQ(m.subscribed().since(), since);
  EXPECT_TRUE(m.subscribed().complete());
  EXPECT_EQ(m.subscribed().replayed(), 2u);
  for (auto& id : ids) {
    ASSERT_TRUE(st.read(m));
    ASSERT_TRUE(m.has_event());
    EXPECT_GT(m.event().seq(), since);
    EXPECT_EQ(jstr(parse_json(m.event().data()), "/id"), id);
  }
  // Then live, without a gap.
  auto live = uid("grpc-rp-live");
  EXPECT_OK(send_message(a.access, live, "live", "conv-grpc-rp", "image"),
            201);
  ASSERT_TRUE(st.read(m));
  EXPECT_EQ(jstr(parse_json(m.event().data()), "/id"), live);
  st.ctx->TryCancel();
  st.finish();
  // A since from elsewhere (beyond any seq handed out): incomplete.
  auto far = c->events(a.access, since + 1000000000000ull);
  ASSERT_TRUE(far.read(m));
  ASSERT_TRUE(m.has_subscribed());
  EXPECT_FALSE(m.subscribed().complete());
  far.ctx->TryCancel();
  far.finish();
}

TEST_F(Grpc, LogoutEndsTheStream) {
  auto c = client();
  auto a = alice();
  auto st = c->events(a.access);
  aico::rpc::EventsMessage m;
  ASSERT_TRUE(st.read(m));
  EXPECT_OK(c->call("POST", "/users/logout", "", a.access), 200);
  auto t0 = std::chrono::steady_clock::now();
  while (st.read(m)) {
  }
  auto status = st.finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
    << status.error_message();
  EXPECT_EQ(st.trailer("aico-code"), "invalid_token");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(Grpc, FaultDownEndsStreamsAndRefusesCallsUpRestores) {
  auto c = client();
  auto a = alice();
  auto root = this->root();
  auto st = c->events(a.access);
  aico::rpc::EventsMessage m;
  ASSERT_TRUE(st.read(m));
  auto h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/grpc"), "up") << h.raw;

  auto r = faults(root.access, {{"grpc", "down"}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/grpc"), "down") << r.raw;
  while (st.read(m)) {
  }
  auto status = st.finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
    << status.error_message();
  auto refused = c->call("GET", "/users/me", "", a.access, ms(2000));
  EXPECT_EQ(refused.code, grpc::StatusCode::UNAVAILABLE)
    << refused.status << " " << refused.raw << refused.error;
  h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/grpc"), "down") << h.raw;
  // other doors are not affected
  EXPECT_OK(http().get("/api/v1/users/me", a.access), 200);

  EXPECT_OK(faults(root.access, {{"grpc", "up"}}), 200);
  h = http().get("/api/v1/health");
  EXPECT_EQ(jstr(h.body, "/data/services/grpc"), "up") << h.raw;
  // the same port again; the channel reconnects by itself
  grpc_response again;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    again = c->call("GET", "/users/me", "", a.access, ms(2000));
  } while (again.status != 200 && std::chrono::steady_clock::now() < deadline);
  EXPECT_OK(again, 200);
  auto st2 = c->events(a.access);
  ASSERT_TRUE(st2.read(m));
  EXPECT_TRUE(m.has_subscribed());
  st2.ctx->TryCancel();
  st2.finish();
}

TEST_F(Grpc, FaultSwitchIsValidatedAndReported) {
  auto root = this->root();
  auto bad = faults(root.access, {{"grpc", "sideways"}});
  EXPECT_ERROR(bad, 400, "validation_error");
  EXPECT_EQ(jstr(bad.body, "/details/field"), "grpc") << bad.raw;
  auto state = http().get("/api/v1/admin/faults", root.access);
  EXPECT_EQ(jstr(state.body, "/data/grpc"), "up") << state.raw;
  auto mb = faults(root.access, {{"misbehave", {{"door", "grpcx"},
                                                {"path", "/users/me"},
                                                {"mode", "hang"}}}});
  EXPECT_ERROR(mb, 400, "validation_error");
  EXPECT_EQ(jstr(mb.body, "/details/field"), "misbehave.door") << mb.raw;
  // reset brings a switched-off door back
  EXPECT_OK(faults(root.access, {{"grpc", "down"}}), 200);
  auto r = faults(root.access, {{"reset", true}});
  EXPECT_EQ(jstr(r.body, "/data/grpc"), "up") << r.raw;
  auto c = client();
  grpc_response h;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    h = c->call("GET", "/health", "", "", ms(2000));
  } while (h.status != 200 && std::chrono::steady_clock::now() < deadline);
  EXPECT_OK(h, 200);
}

TEST_F(Grpc, DownOverTheGrpcDoorItself) {
  // The fault request may come through the door it switches off.
  auto c = client();
  auto root = c->login("root", "root-pw");
  ASSERT_FALSE(root.empty());
  auto t0 = std::chrono::steady_clock::now();
  auto r = c->call_json("POST", "/admin/faults",
                   json::object{{"grpc", "down"}}, root);
  EXPECT_OK(r, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_OK(faults(this->root().access, {{"grpc", "up"}}), 200);
}

TEST_F(Grpc, HealthOverGrpcAndMisbehave) {
  auto c = client();
  auto h = c->call("GET", "/health");
  EXPECT_OK(h, 200);
  EXPECT_EQ(jstr(h.body, "/data/services/grpc"), "up") << h.raw;
  auto root = this->root();
  auto a = alice();
  // misbehave on the grpc door: truncated, then hang until the deadline
  EXPECT_OK(faults(root.access,
                   {{"misbehave", {{"door", "grpc"},
                                   {"path", "/users/me"},
                                   {"mode", "truncated"}}}}),
            200);
  auto t = c->call("GET", "/users/me", "", a.access);
  EXPECT_EQ(t.status, 200);
  EXPECT_TRUE(t.body.is_null()) << t.raw;
  EXPECT_OK(faults(root.access,
                   {{"misbehave", {{"door", "grpc"},
                                   {"path", "/users/me"},
                                   {"mode", "hang"}}}}),
            200);
  auto hung = c->call("GET", "/users/me", "", a.access, ms(500));
  EXPECT_EQ(hung.code, grpc::StatusCode::DEADLINE_EXCEEDED) << hung.error;
  // a rule for another door leaves this one alone
  EXPECT_OK(faults(root.access,
                   {{"misbehave", {{"door", "ipc"},
                                   {"path", "/users/me"},
                                   {"mode", "hang"}}}}),
            200);
  EXPECT_OK(c->call("GET", "/users/me", "", a.access), 200);
}

class GrpcSlow : public Grpc {
protected:
  gateway_options options() override {
    auto o = grpc_options();
    o.extra_args.insert(o.extra_args.end(),
                        {"--grpc-max-out-bytes", "65536", "--no-bot"});
    return o;
  }
};

TEST_F(GrpcSlow, AReaderThatDoesNotReadIsCutOff) {
  // A client that opens a stream and never reads: the gateway's queue for it
  // is bounded; the stream ends (RESOURCE_EXHAUSTED, or cancelled when the
  // gateway's write was stuck in flow control).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto ch = grpc::CreateCustomChannel(target(),
                                      grpc::InsecureChannelCredentials(), args);
  auto stub = aico::rpc::Gateway::NewStub(ch);
  auto a = alice();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  ctx.AddMetadata("authorization", "Bearer " + a.access);
  aico::rpc::EventsRequest req;
  auto reader = stub->Events(&ctx, req);
  aico::rpc::EventsMessage m;
  ASSERT_TRUE(reader->Read(&m)); // subscribed; then no more reading
  auto c = client();
  std::string content(3500, 'y');
  bool ended = false;
  for (int i = 0; i < 400 && !ended; ++i) {
    auto r = c->call_json("POST", "/conversations/messages",
                     json::object{{"id", uid("flood")},
                                  {"content", content},
                                  {"conversation_id", "conv-flood"},
                                  {"type", "image"}},
                     a.access);
    ASSERT_EQ(r.status, 201) << r.raw << r.error;
    if (i % 50 == 49) {
      auto d = http().get("/api/v1/health/detailed");
      ended = jint(d.body, "/data/connections/grpc") == 0;
    }
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!ended && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(ms(200));
    auto d = http().get("/api/v1/health/detailed");
    ended = jint(d.body, "/data/connections/grpc") == 0;
  }
  EXPECT_TRUE(ended) << "the stream of a reader that does not read was not "
                        "ended";
  while (reader->Read(&m)) {
  }
  auto status = reader->Finish();
  EXPECT_TRUE(status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED
              || status.error_code() == grpc::StatusCode::CANCELLED)
    << status.error_code() << " " << status.error_message();
}

// -- TLS and mutual TLS -----------------------------------------------------------

class GrpcTls : public Grpc {
protected:
  void SetUp() override {
    pki_dir_ = std::make_unique<temp_dir>("aico-pki");
    pki_ = make_test_pki(pki_dir_->path());
    Grpc::SetUp();
  }
  gateway_options options() override {
    auto o = grpc_options();
    auto tls = gateway_tls_args(pki_, mutual());
    o.extra_args.insert(o.extra_args.end(), tls.begin(), tls.end());
    return o;
  }
  virtual bool mutual() const { return false; }
  std::string tls_target() const {
    // the certificate names localhost / 127.0.0.1
    return target();
  }
  std::unique_ptr<temp_dir> pki_dir_;
  test_pki pki_;
};

TEST_F(GrpcTls, TrustedCaWorksPlaintextAndUnknownCaFail) {
  grpc_client good(tls_target(), grpc_tls{pki_.ca_cert, "", ""});
  auto h = good.call("GET", "/health");
  EXPECT_OK(h, 200);
  auto tok = good.login("alice", "alice-pw");
  ASSERT_FALSE(tok.empty());
  EXPECT_OK(good.call("GET", "/users/me", "", tok), 200);
  grpc_client plain(tls_target());
  auto p = plain.call("GET", "/health", "", "", ms(2000));
  EXPECT_NE(p.code, grpc::StatusCode::OK);
  EXPECT_EQ(p.status, 0);
  grpc_client rogue(tls_target(), grpc_tls{pki_.rogue_ca_cert, "", ""});
  auto r = rogue.call("GET", "/health", "", "", ms(2000));
  EXPECT_EQ(r.code, grpc::StatusCode::UNAVAILABLE) << r.error;
}

class GrpcMtls : public GrpcTls {
protected:
  bool mutual() const override { return true; }
};

TEST_F(GrpcMtls, DeviceCertificateRequired) {
  grpc_client device(tls_target(), grpc_tls{pki_.ca_cert, pki_.device_cert,
                                            pki_.device_key});
  auto tok = device.login("alice", "alice-pw");
  ASSERT_FALSE(tok.empty());
  auto st = device.events(tok);
  aico::rpc::EventsMessage m;
  ASSERT_TRUE(st.read(m));
  EXPECT_TRUE(m.has_subscribed());
  st.ctx->TryCancel();
  st.finish();
  grpc_client none(tls_target(), grpc_tls{pki_.ca_cert, "", ""});
  EXPECT_EQ(none.call("GET", "/health", "", "", ms(2000)).status, 0);
  grpc_client rogue(tls_target(), grpc_tls{pki_.ca_cert,
                                           pki_.rogue_device_cert,
                                           pki_.rogue_device_key});
  EXPECT_EQ(rogue.call("GET", "/health", "", "", ms(2000)).status, 0);
  // the device is logged by its subject
  std::ifstream in(gw_->log_path());
  std::string log((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("grpc: tls client"), std::string::npos) << log;
  EXPECT_NE(log.find("kitchen-tablet"), std::string::npos) << log;
}

TEST(GrpcStartup, NonLoopbackPlaintextIsRefused) {
  temp_dir tmp("aico-grpc-start");
  gateway_options o = fast_options();
  o.data_dir = tmp.path();
  o.extra_args.insert(o.extra_args.end(), {"--grpc", "0.0.0.0:0"});
  gateway_process gw(o);
  EXPECT_FALSE(gw.start(std::chrono::seconds(10)));
  std::ifstream in(tmp.path() + "/gateway.log");
  std::string log((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("refusing to serve plaintext gRPC"), std::string::npos)
    << log;
}

TEST_F(Grpc, ShutdownIsPromptWithAnOpenStream) {
  auto c = client();
  auto a = alice();
  auto st = c->events(a.access);
  aico::rpc::EventsMessage m;
  ASSERT_TRUE(st.read(m));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(gw_->stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  while (st.read(m)) {
  }
  EXPECT_EQ(st.finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

} // namespace
} // namespace aico::test
