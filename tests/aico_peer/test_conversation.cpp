// Wire document section 2.3 (and 10): sending (blocking and NDJSON
// streaming), the conversation_id rule, history and its paging quirks,
// persistence across restarts, and the test-only message listing.
#include <regex>

#include "peer_fixture.hpp"

namespace aico::test {
namespace {

const std::string messages = "/api/v1/conversation/messages";

json::object msg(const std::string& text, const std::string& cid = "") {
  json::object o{{"message", text}, {"message_type", "text"}};
  if (!cid.empty())
    o["conversation_id"] = cid;
  return o;
}

TEST_F(PeerTest, ABlockingSendReturnsTheWholeReply) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto before = static_cast<int64_t>(unix_seconds());
  auto r = c.call("POST", messages, msg("Hello there"), access);
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_TRUE(r.encrypted);
  EXPECT_TRUE(r.success());
  EXPECT_EQ(r.str("/ai_response"), "You said: Hello there");
  EXPECT_EQ(r.str("/status"), "completed");
  EXPECT_EQ(r.str("/conversation_action"), "conversation_started");
  EXPECT_EQ(r.str("/message_id").size(), 36u);
  // A fresh conversation id is "{user_uuid}_{unix_ts}".
  auto cid = r.str("/conversation_id");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(cid, m, std::regex(pu::alice_uuid + "_(\\d+)")))
    << cid;
  EXPECT_GE(std::stoll(m[1]), before);
  EXPECT_TRUE(
    std::regex_match(r.str("/timestamp"),
                     std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?)")))
    << r.str("/timestamp");
  // An empty message is accepted.
  auto empty = c.call("POST", messages, msg(""), access);
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.str("/ai_response"), "I received an empty message.");
  // A missing message is a validation error.
  auto missing
    = c.call("POST", messages, json::object{{"message_type", "text"}}, access);
  EXPECT_EQ(missing.status, 422);
  EXPECT_EQ(missing.str("/detail/0/loc/1"), "message");
}

TEST_F(PeerTest, AConversationIdIsReusedOnlyWhenItContainsAnUnderscore) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto cid_of = [&](const std::string& given) {
    return c.call("POST", messages, msg("x", given), access)
      .str("/conversation_id");
  };
  EXPECT_EQ(cid_of("mine_1"), "mine_1");
  auto minted = [&](const std::string& cid) {
    return cid.rfind(pu::alice_uuid + "_", 0) == 0;
  };
  EXPECT_TRUE(minted(cid_of("plain")));
  EXPECT_TRUE(minted(cid_of("default")));
  EXPECT_TRUE(minted(cid_of("")));
  auto first
    = c.call("POST", messages, msg("one"), access).str("/conversation_id");
  EXPECT_EQ(cid_of(first), first); // what a client keeps for the next send
}

TEST_F(PeerTest, AStreamingSendIsEncryptedNdjsonLineByLine) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto s = c.stream(messages + "?stream=true",
                    msg("Hello from the test", "conv_1"), access, 5000ms);
  ASSERT_EQ(s.status, 200) << s.error;
  ASSERT_TRUE(s.complete) << s.error;
  EXPECT_EQ(s.header("content-type"), "application/x-ndjson");
  EXPECT_EQ(s.header("transfer-encoding"), "chunked");
  EXPECT_EQ(s.header("x-conversation-id"), "conv_1");
  auto message_id = s.header("x-request-id");
  EXPECT_EQ(message_id.size(), 36u);
  // 1 metadata + 3 thinking + 6 response chunks + the final chunk.
  ASSERT_EQ(s.lines.size(), 11u);
  for (auto& raw : s.raw_lines) {
    auto env = parse_json(raw);
    EXPECT_TRUE(jtrue(env, "/encrypted")) << raw;
    EXPECT_TRUE(jptr(env, "/payload")->is_string());
  }
  auto& meta = s.lines[0];
  EXPECT_EQ(jstr(meta, "/type"), "metadata");
  EXPECT_EQ(jstr(meta, "/message_id"), message_id);
  EXPECT_EQ(jstr(meta, "/conversation_id"), "conv_1");
  std::string thinking, response;
  for (std::size_t i = 1; i + 1 < s.lines.size(); ++i) {
    auto& l = s.lines[i];
    EXPECT_EQ(jstr(l, "/type"), "chunk");
    EXPECT_FALSE(jtrue(l, "/done"));
    auto ct = jstr(l, "/content_type");
    auto& acc = ct == "thinking" ? thinking : response;
    EXPECT_TRUE(ct == "thinking" || ct == "response") << ct;
    if (ct == "response") {
      EXPECT_FALSE(thinking.empty()) << "thinking comes first";
    }
    acc += jstr(l, "/content");
    EXPECT_EQ(jstr(l, "/accumulated"), acc);
  }
  EXPECT_EQ(thinking, "thought-1 thought-2 thought-3");
  EXPECT_EQ(response, "You said: Hello from the test");
  auto& last = s.lines.back();
  EXPECT_EQ(to_text(last), to_text(json::object{
                             {"type", "chunk"},
                             {"content", ""},
                             {"accumulated", "You said: Hello from the test"},
                             {"done", true},
                             {"content_type", "response"},
                             {"conversation_id", "conv_1"},
                             {"message_id", message_id}}));
}

class SlowModelTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.model_delay_ms = 60;
    return o;
  }
};

TEST_F(SlowModelTest, StreamedChunksArriveOneByOne) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto s = c.stream(messages + "?stream=true", msg("a b c"), access, 5000ms);
  ASSERT_TRUE(s.complete) << s.error;
  ASSERT_EQ(s.lines.size(), 1u + 3 + 5 + 1); // "You said: a b c"
  // Each content chunk comes ~60 ms after the previous one, not in a burst.
  for (std::size_t i = 2; i + 1 < s.arrival.size(); ++i)
    EXPECT_GE((s.arrival[i] - s.arrival[i - 1]).count(), 30) << "line " << i;
  EXPECT_GE((s.arrival.back() - s.arrival.front()).count(), 6 * 60 - 30);
}

class TimeoutTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.model_delay_ms = 100;
    o.extra_args = {"--stream-timeout", "0.35", "--reply-timeout", "0.3"};
    return o;
  }
};

TEST_F(TimeoutTest, AStreamGivesUpCountingFromItsStart) {
  auto c = connected();
  auto [access, refresh] = login(c);
  // The model is slow but steady: chunks come every 100 ms, yet the stream
  // ends 350 ms after it started.
  auto s = c.stream(messages + "?stream=true", msg("one two three four"),
                    access, 5000ms);
  ASSERT_TRUE(s.complete) << s.error;
  ASSERT_GE(s.lines.size(), 3u);
  EXPECT_EQ(jstr(s.lines[1], "/type"), "chunk");
  EXPECT_EQ(to_text(s.lines.back()),
            R"({"type":"error","error":"Streaming timeout"})");
  EXPECT_LE(s.lines.size(), 1u + 3 + 1); // metadata, <=3 chunks, the error
  EXPECT_GE(s.arrival.back().count(), 300);
  // A model that never answers: metadata, then the timeout.
  add_fault({{"fault", "model_stall"}});
  auto stalled = c.stream(messages + "?stream=true", msg("x"), access, 5000ms);
  ASSERT_EQ(stalled.lines.size(), 2u);
  EXPECT_EQ(jstr(stalled.lines[0], "/type"), "metadata");
  EXPECT_EQ(jstr(stalled.lines[1], "/error"), "Streaming timeout");
}

TEST_F(TimeoutTest, ABlockingSendTimesOutWithAn200) {
  auto c = connected();
  auto [access, refresh] = login(c);
  add_fault({{"fault", "model_stall"}});
  auto r = c.call("POST", messages, msg("x"), access);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.str("/status"), "completed");
  EXPECT_EQ(r.str("/ai_response"), "Request timed out - please try again");
  EXPECT_GE(r.elapsed.count(), 250);
}

TEST_F(PeerTest, ModelFailuresAreNdjsonErrorLines) {
  auto c = connected();
  auto [access, refresh] = login(c);
  add_fault(
    {{"fault", "model_error"}, {"after", 2}, {"detail", "model crashed"}});
  auto s = c.stream(messages + "?stream=true", msg("a b"), access, 5000ms);
  ASSERT_EQ(s.status, 200);
  ASSERT_EQ(s.lines.size(), 4u);
  EXPECT_EQ(jstr(s.lines[0], "/type"), "metadata");
  EXPECT_EQ(jstr(s.lines[2], "/type"), "chunk");
  EXPECT_EQ(to_text(s.lines[3]), R"({"type":"error","error":"model crashed"})");
  // The blocking form: an encrypted HTTPException.
  add_fault({{"fault", "model_error"}, {"detail", "model crashed"}});
  auto r = c.call("POST", messages, msg("x"), access);
  EXPECT_EQ(r.status, 500);
  EXPECT_TRUE(r.encrypted);
  EXPECT_EQ(r.str("/detail"), "Error processing message: model crashed");
}

TEST_F(PeerTest, TheFirstChunkCanBeLostButAccumulatedStillHasIt) {
  auto c = connected(); // the slow-joiner race of the real backend
  auto [access, refresh] = login(c);
  add_fault({{"fault", "lose_first_chunk"}});
  auto s = c.stream(messages + "?stream=true", msg("hi"), access, 5000ms);
  ASSERT_TRUE(s.complete);
  ASSERT_EQ(s.lines.size(), 1u + 2 + 3 + 1);
  EXPECT_EQ(jstr(s.lines[1], "/content"), " thought-2");
  EXPECT_EQ(jstr(s.lines[1], "/accumulated"), "thought-1 thought-2");
}

TEST_F(PeerTest, AStreamCanBeCutMidway) {
  auto c = connected();
  auto [access, refresh] = login(c);
  add_fault({{"fault", "stream_cut"}, {"after", 2}});
  auto s = c.stream(messages + "?stream=true", msg("hi"), access, 5000ms);
  EXPECT_EQ(s.status, 200);
  EXPECT_FALSE(s.complete);
  EXPECT_EQ(s.lines.size(), 2u);
  // The reply was still produced and stored, as the model finished it.
  ASSERT_TRUE(eventually([&] {
    return jptr(debug("GET", "/_peer/messages"), "/messages/1") != nullptr;
  }));
}

TEST_F(PeerTest, HistoryIsNewestFirstWithItsOwnIdsAndCappedTotals) {
  auto c = connected();
  auto [access, refresh] = login(c);
  std::vector<std::string> sent_ids;
  for (auto text : {"m1", "m2", "m3"})
    sent_ids.push_back(
      c.call("POST", messages, msg(text, "conv_a"), access).str("/message_id"));
  c.call("POST", messages, msg("other", "conv_b"), access);
  // Bob's messages never show up in Alice's history.
  auto [bob, bob_refresh] = login(c, pu::bob_uuid, pu::bob_pin);
  c.call("POST", messages, msg("bob's"), bob);

  auto h = c.call("GET", messages + "?conversation_id=conv_a", json::object{},
                  access);
  ASSERT_EQ(h.status, 200) << h.raw;
  EXPECT_EQ(h.str("/conversation_id"), "conv_a");
  auto& list = jptr(h.json, "/messages")->as_array();
  ASSERT_EQ(list.size(), 6u);
  EXPECT_EQ(jint(h.json, "/total_count"), 6);
  EXPECT_EQ(jstr(list[0], "/content"), "You said: m3");
  EXPECT_EQ(jstr(list[0], "/role"), "assistant");
  EXPECT_EQ(jstr(list[0], "/message_type"), "assistant_response");
  EXPECT_EQ(jstr(list[1], "/content"), "m3");
  EXPECT_EQ(jstr(list[1], "/role"), "user");
  EXPECT_EQ(jstr(list[1], "/message_type"), "user_input");
  EXPECT_EQ(jstr(list[1], "/user_id"), pu::alice_uuid);
  EXPECT_EQ(jstr(list[5], "/content"), "m1");
  // History ids are new per stored message, not the send's message_id.
  for (auto& m : list)
    for (auto& id : sent_ids)
      EXPECT_NE(jstr(m, "/id"), id);
  EXPECT_EQ(h.plain.find("\"url\""), std::string::npos);

  // Without a conversation: everything of the user, "user_<uuid>".
  auto all = c.call("GET", messages, json::object{}, access);
  EXPECT_EQ(all.str("/conversation_id"), "user_" + pu::alice_uuid);
  EXPECT_EQ(jint(all.json, "/total_count"), 8);
  EXPECT_EQ(jint(all.json, "/page_size"), 50);
  // Paging: total_count is capped at page * page_size.
  auto p1
    = c.call("GET", messages + "?page=1&page_size=3", json::object{}, access);
  EXPECT_EQ(jint(p1.json, "/total_count"), 3);
  EXPECT_EQ(jptr(p1.json, "/messages")->as_array().size(), 3u);
  auto p3
    = c.call("GET", messages + "?page=3&page_size=3", json::object{}, access);
  EXPECT_EQ(jint(p3.json, "/total_count"), 8);
  ASSERT_EQ(jptr(p3.json, "/messages")->as_array().size(), 2u);
  EXPECT_EQ(jstr(p3.json, "/messages/1/content"), "m1");
  EXPECT_EQ(jint(p3.json, "/page"), 3);
  auto p9
    = c.call("GET", messages + "?page=9&page_size=3", json::object{}, access);
  EXPECT_TRUE(jptr(p9.json, "/messages")->as_array().empty());
}

TEST_F(PeerTest, HistoryParametersAreValidated) {
  auto c = connected();
  auto [access, refresh] = login(c);
  c.call("POST", messages, msg("before"), access);
  auto big = c.call("GET", messages + "?page_size=101", json::object{}, access);
  EXPECT_EQ(big.status, 422);
  EXPECT_TRUE(big.encrypted);
  EXPECT_EQ(big.str("/detail/0/type"), "less_than_equal");
  EXPECT_EQ(big.str("/detail/0/loc/1"), "page_size");
  EXPECT_EQ(big.str("/detail/0/input"), "101");
  EXPECT_EQ(jint(big.json, "/detail/0/ctx/le"), 100);
  auto zero = c.call("GET", messages + "?page=0", json::object{}, access);
  EXPECT_EQ(zero.status, 422);
  EXPECT_EQ(zero.str("/detail/0/type"), "greater_than_equal");
  auto nan = c.call("GET", messages + "?page=x", json::object{}, access);
  EXPECT_EQ(nan.str("/detail/0/type"), "int_parsing");
  // Without a token the Bearer check comes before validation.
  EXPECT_EQ(c.call("GET", messages + "?page_size=101").status, 403);
  // since: a naive ISO datetime filters; a zone or a unix number is a 500.
  auto later = c.call("GET", messages + "?since=2999-01-01T00:00:00",
                      json::object{}, access);
  EXPECT_EQ(later.status, 200);
  EXPECT_TRUE(jptr(later.json, "/messages")->as_array().empty());
  auto earlier = c.call("GET", messages + "?since=2000-01-01T00:00:00.5",
                        json::object{}, access);
  EXPECT_EQ(jptr(earlier.json, "/messages")->as_array().size(), 2u);
  for (auto since :
       {"2000-01-01T00:00:00Z", "2000-01-01T00:00:00%2B02:00", "946684800"}) {
    auto r
      = c.call("GET", messages + "?since=" + since, json::object{}, access);
    EXPECT_EQ(r.status, 500) << since;
    EXPECT_TRUE(r.encrypted) << since;
    EXPECT_NE(r.str("/detail"), "") << since;
  }
  auto junk
    = c.call("GET", messages + "?since=yesterday", json::object{}, access);
  EXPECT_EQ(junk.status, 422);
}

TEST_F(PeerTest, HistorySurvivesARestartAndTheListingShowsClientVisibleIds) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto s = c.stream(messages + "?stream=true", msg("keep me", "conv_k"), access,
                    5000ms);
  ASSERT_TRUE(s.complete);
  auto send_id = s.header("x-request-id");
  peer->kill9(); // no clean shutdown
  ASSERT_TRUE(peer->start()) << peer->last_error();
  std::string why;
  ASSERT_TRUE(c.handshake(&why)) << why;
  // The access token is still valid (same secret), and history is there.
  auto h = c.call("GET", messages + "?conversation_id=conv_k", json::object{},
                  access);
  ASSERT_EQ(h.status, 200) << h.raw;
  auto& list = jptr(h.json, "/messages")->as_array();
  ASSERT_EQ(list.size(), 2u);
  // The test-only listing ties history ids to the send's message_id.
  auto all = debug("GET", "/_peer/messages");
  auto& stored = jptr(all, "/messages")->as_array();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(jstr(stored[0], "/role"), "user");
  EXPECT_EQ(jstr(stored[0], "/content"), "keep me");
  EXPECT_EQ(jstr(stored[0], "/send_message_id"), send_id);
  EXPECT_EQ(jstr(stored[1], "/send_message_id"), send_id);
  EXPECT_EQ(jstr(stored[0], "/conversation_id"), "conv_k");
  EXPECT_EQ(jstr(stored[0], "/id"), jstr(list[1], "/id"));
  EXPECT_EQ(jstr(stored[1], "/id"), jstr(list[0], "/id"));
}

} // namespace
} // namespace aico::test
