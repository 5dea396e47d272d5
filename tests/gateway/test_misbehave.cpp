// The test-only misbehave switch (POST /admin/faults "misbehave", with
// --enable-faults): each mode on each front door, before (not processed)
// and after (processed, then the answer goes wrong), the call filters, the
// count, validation and reset. Contract: docs/protocol.md, "admin".
#include "integration.hpp"

namespace aico::test {
namespace {

using Misbehave = GatewayTest;
using steady = std::chrono::steady_clock;

constexpr int slow_ms = 300;
constexpr ms no_answer_wait{700};

json::object rule(const std::string& door, const std::string& mode,
                  const std::string& when, int count = 1) {
  json::object r{{"door", door},
                 {"method", "POST"},
                 {"path", "/conversations/messages"},
                 {"mode", mode},
                 {"when", when},
                 {"count", count}};
  if (mode == "slow")
    r["delay_ms"] = slow_ms;
  return r;
}

json::object message_body(const std::string& id, const std::string& conv) {
  return {{"id", id}, {"conversation_id", conv}, {"content", "x"},
          {"type", "image"}}; // no bot reply: only the sender's message
}

/// What a client of one door saw of one send.
struct seen {
  bool answered = false;  ///< a complete answer arrived
  int status = 0;
  std::string raw;        ///< the body (HTTP, IPC) or the frame text (WS)
  bool cut = false;       ///< the answer started but was cut off
  ms elapsed{0};
};

class MisbehaveDoors : public GatewayTest {
protected:
  void SetUp() override {
    GatewayTest::SetUp();
    adm_ = root();
    user_ = alice();
  }

  void set_rule(const json::object& r) {
    auto res = faults(adm_.access, {{"misbehave", r}});
    ASSERT_EQ(res.status, 200) << res.raw;
    EXPECT_EQ(jstr(res.body, "/data/misbehave/mode"), jstr(r, "/mode"))
      << res.raw;
  }

  seen send_http(const std::string& id, const std::string& conv) {
    seen s;
    auto c = http(no_answer_wait + ms(slow_ms) + ms(500));
    auto r = c.post("/api/v1/conversations/messages", message_body(id, conv),
                    user_.access);
    s.elapsed = r.elapsed;
    s.status = r.status;
    s.raw = r.raw;
    s.answered = r.status != 0 && r.error.empty();
    s.cut = r.status != 0 && !r.error.empty();
    if (s.cut) {
      // Content-Length promised more than arrived
      auto len = r.header("content-length");
      EXPECT_FALSE(len.empty());
      if (!len.empty()) {
        EXPECT_LT(r.raw.size(), std::stoul(len));
      }
    }
    return s;
  }

  seen send_ws(const std::string& id, const std::string& conv) {
    seen s;
    auto c = ws(user_.access);
    json::object frame{{"type", "request"},
                       {"id", "w-" + id},
                       {"method", "POST"},
                       {"path", "/conversations/messages"},
                       {"body", message_body(id, conv)}};
    auto start = steady::now();
    EXPECT_TRUE(c->send(frame));
    auto f = c->receive_if(
      [&](const json::value& v) {
        return jstr(v, "/id") == "w-" + id
               || jstr(v, "/_raw").find("\"w-" + id + "\"")
                    != std::string::npos;
      },
      no_answer_wait + ms(slow_ms) + ms(500));
    s.elapsed = std::chrono::duration_cast<ms>(steady::now() - start);
    if (f) {
      s.answered = true;
      if (jptr(*f, "/_raw") != nullptr) {
        s.raw = jstr(*f, "/_raw");
      } else {
        s.raw = to_text(*f);
        s.status = static_cast<int>(jint(*f, "/status"));
      }
    } else if (c->wait_closed(ms(500))) {
      s.cut = true; // the message never completed, the connection is gone
    } else {
      // still open: a hung answer must not take the connection down
      auto pong = c->request("GET", "/users/me");
      EXPECT_TRUE(pong.has_value()) << "connection unusable after a hang";
    }
    return s;
  }

  seen send_ipc(const std::string& id, const std::string& conv) {
    seen s;
    auto c = ipc();
    auto start = steady::now();
    auto r = c->request("POST", "/conversations/messages",
                        to_text(message_body(id, conv)), user_.access,
                        no_answer_wait + ms(slow_ms) + ms(500));
    s.elapsed = std::chrono::duration_cast<ms>(steady::now() - start);
    if (r) {
      s.answered = true;
      s.status = r->status();
      s.raw = r->body();
    }
    return s;
  }

  seen send(const std::string& door, const std::string& id,
            const std::string& conv) {
    if (door == "http")
      return send_http(id, conv);
    if (door == "ws")
      return send_ws(id, conv);
    return send_ipc(id, conv);
  }

  bool stored(const std::string& conv, const std::string& id) {
    auto ids = ids_of(history(user_.access, conv, "limit=500"));
    return std::count(ids.begin(), ids.end(), id) == 1;
  }

  /// Every mode, before and after, on one door.
  void check_door(const std::string& door) {
    auto conv = "mb-" + door;
    for (std::string when : {"before", "after"}) {
      SCOPED_TRACE(door + " " + when);
      const bool after = when == "after";
      // malformed_json: a 200 whose body does not parse
      {
        auto id = uid("mal-" + door + "-" + when);
        set_rule(rule(door, "malformed_json", when));
        auto s = send(door, id, conv);
        ASSERT_TRUE(s.answered) << "no answer";
        EXPECT_TRUE(parse_json(s.raw).is_null()) << s.raw;
        if (door != "ws") {
          EXPECT_EQ(s.status, 200);
        }
        EXPECT_NE(s.raw.find("malformed"), std::string::npos) << s.raw;
        EXPECT_EQ(stored(conv, id), after);
      }
      // not_envelope: a 200 with valid JSON that is not an envelope
      {
        auto id = uid("env-" + door + "-" + when);
        set_rule(rule(door, "not_envelope", when));
        auto s = send(door, id, conv);
        ASSERT_TRUE(s.answered) << "no answer";
        EXPECT_EQ(s.status, 200) << s.raw;
        auto v = parse_json(s.raw);
        auto body = door == "ws" ? jptr(v, "/body") : &v;
        ASSERT_NE(body, nullptr) << s.raw;
        EXPECT_TRUE(body->is_object()) << s.raw;
        EXPECT_EQ(jptr(*body, "/success"), nullptr) << s.raw;
        EXPECT_EQ(stored(conv, id), after);
      }
      // truncated: the answer is cut off
      {
        auto id = uid("cut-" + door + "-" + when);
        set_rule(rule(door, "truncated", when));
        auto s = send(door, id, conv);
        if (door == "ipc") {
          ASSERT_TRUE(s.answered);
          EXPECT_EQ(s.status, after ? 201 : 200);
          EXPECT_TRUE(parse_json(s.raw).is_null()) << s.raw;
          EXPECT_FALSE(s.raw.empty());
        } else {
          EXPECT_FALSE(s.answered) << s.raw;
          EXPECT_TRUE(s.cut) << "the answer was not cut off";
        }
        EXPECT_EQ(stored(conv, id), after);
      }
      // slow: a correct answer after delay_ms (processed either way)
      {
        auto id = uid("slow-" + door + "-" + when);
        set_rule(rule(door, "slow", when));
        auto s = send(door, id, conv);
        ASSERT_TRUE(s.answered) << "no answer";
        EXPECT_EQ(s.status, 201) << s.raw;
        EXPECT_GE(s.elapsed.count(), slow_ms - 20);
        EXPECT_TRUE(stored(conv, id));
      }
      // hang: no answer at all
      {
        auto id = uid("hang-" + door + "-" + when);
        set_rule(rule(door, "hang", when));
        auto s = send(door, id, conv);
        EXPECT_FALSE(s.answered) << s.raw;
        EXPECT_FALSE(s.cut);
        EXPECT_EQ(stored(conv, id), after);
      }
    }
    // the rule is used up: the next call is answered normally
    auto id = uid("normal-" + door);
    auto s = send(door, id, conv);
    ASSERT_TRUE(s.answered);
    EXPECT_EQ(s.status, 201) << s.raw;
    EXPECT_TRUE(stored(conv, id));
  }

  session adm_;
  session user_;
};

TEST_F(MisbehaveDoors, EveryModeOverHttp) {
  check_door("http");
}

TEST_F(MisbehaveDoors, EveryModeOverWebSocket) {
  check_door("ws");
}

TEST_F(MisbehaveDoors, EveryModeOverIpc) {
  check_door("ipc");
}

TEST_F(MisbehaveDoors, OnlyMatchingCallsMisbehaveAndCountIsKept) {
  // door, method and path filter; count 2; /api/v1 and a query are ignored
  json::object r{{"door", "http"},
                 {"method", "post"},
                 {"path", "/api/v1/conversations/messages?x=1"},
                 {"mode", "not_envelope"},
                 {"count", 2}};
  auto res = faults(adm_.access, {{"misbehave", r}});
  ASSERT_EQ(res.status, 200) << res.raw;
  EXPECT_EQ(jstr(res.body, "/data/misbehave/path"), "/conversations/messages");
  EXPECT_EQ(jstr(res.body, "/data/misbehave/method"), "POST");
  EXPECT_EQ(jstr(res.body, "/data/misbehave/when"), "before");
  EXPECT_EQ(jint(res.body, "/data/misbehave/remaining"), 2);
  // other door, other method, other path: normal
  auto w = send_ws(uid("other-door"), "mb-f");
  EXPECT_EQ(w.status, 201) << w.raw;
  EXPECT_OK(http().get("/api/v1/users/me", user_.access), 200);
  EXPECT_OK(history(user_.access, "mb-f"), 200);
  // matching: twice misbehaving, then normal
  EXPECT_EQ(send_http(uid("m1"), "mb-f").raw, R"({"misbehave":"not_envelope"})");
  auto mid = http().get("/api/v1/admin/faults", adm_.access);
  EXPECT_EQ(jint(mid.body, "/data/misbehave/remaining"), 1) << mid.raw;
  EXPECT_EQ(send_http(uid("m2"), "mb-f").raw, R"({"misbehave":"not_envelope"})");
  EXPECT_EQ(send_http(uid("m3"), "mb-f").status, 201);
  auto end = http().get("/api/v1/admin/faults", adm_.access);
  EXPECT_EQ(jint(end.body, "/data/misbehave/remaining"), 0) << end.raw;
  // health is never affected; reset clears the rule
  EXPECT_OK(faults(adm_.access, {{"misbehave", rule("any", "hang", "before",
                                                    5)}}),
            200);
  EXPECT_OK(http().get("/api/v1/health"), 200);
  auto cleared = faults(adm_.access, {{"reset", true}});
  EXPECT_OK(cleared, 200);
  auto mb = jptr(cleared.body, "/data/misbehave");
  ASSERT_NE(mb, nullptr) << cleared.raw;
  EXPECT_TRUE(mb->is_null()) << cleared.raw;
  EXPECT_EQ(send_http(uid("m4"), "mb-f").status, 201);
  // null clears it too
  EXPECT_OK(faults(adm_.access, {{"misbehave", rule("any", "hang", "before")}}),
            200);
  auto off = faults(adm_.access, {{"misbehave", nullptr}});
  EXPECT_TRUE(jptr(off.body, "/data/misbehave")->is_null()) << off.raw;
  EXPECT_EQ(send_http(uid("m5"), "mb-f").status, 201);
}

TEST_F(Misbehave, RuleIsValidatedAsAWhole) {
  auto adm = root();
  auto good = rule("any", "hang", "before");
  auto with = [&](const char* key, json::value v) {
    auto r = good;
    r[key] = std::move(v);
    return r;
  };
  auto without = [&](const char* key) {
    auto r = good;
    r.erase(key);
    return r;
  };
  struct bad_case {
    json::value body;
    std::string field;
  };
  std::vector<bad_case> cases = {
    {{{"misbehave", "hang"}}, "misbehave"},
    {{{"misbehave", with("door", "sse")}}, "misbehave.door"},
    {{{"misbehave", with("method", "PATCH")}}, "misbehave.method"},
    {{{"misbehave", without("path")}}, "misbehave.path"},
    {{{"misbehave", with("path", "conversations")}}, "misbehave.path"},
    {{{"misbehave", with("path", "/health")}}, "misbehave.path"},
    {{{"misbehave", without("mode")}}, "misbehave.mode"},
    {{{"misbehave", with("mode", "explode")}}, "misbehave.mode"},
    {{{"misbehave", with("count", 0)}}, "misbehave.count"},
    {{{"misbehave", with("when", "during")}}, "misbehave.when"},
    {{{"misbehave", with("mode", "slow")}}, "misbehave.delay_ms"},
    {{{"misbehave", with("delay_ms", 60001)}}, "misbehave.delay_ms"},
    {{{"misbehave", with("colour", "red")}}, "misbehave.colour"},
    // a valid rule next to an invalid field: nothing is applied
    {{{"misbehave", good}, {"latency_ms", -1}}, "latency_ms"},
  };
  for (auto& c : cases) {
    auto r = faults(adm.access, c.body);
    EXPECT_ERROR(r, 400, "validation_error");
    EXPECT_EQ(jstr(r.body, "/details/field"), c.field)
      << c.body << " -> " << r.raw;
  }
  auto f = http().get("/api/v1/admin/faults", adm.access);
  EXPECT_OK(f, 200);
  auto mb = jptr(f.body, "/data/misbehave");
  ASSERT_NE(mb, nullptr) << f.raw;
  EXPECT_TRUE(mb->is_null()) << f.raw;
  // the detailed health reports the rule with the other faults
  EXPECT_OK(faults(adm.access, {{"misbehave", good}}), 200);
  auto h = http().get("/api/v1/health/detailed");
  EXPECT_EQ(jstr(h.body, "/data/faults/misbehave/mode"), "hang") << h.raw;
  EXPECT_EQ(jstr(h.body, "/data/faults/misbehave/door"), "any") << h.raw;
}

} // namespace
} // namespace aico::test
