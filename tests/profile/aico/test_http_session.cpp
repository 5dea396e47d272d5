// Integration tests of the aico wire profile over real HTTP:
// aico_http_session (src/profile/aico) on the engine's curl loop against
// aico-backend-peer, started by each test on 127.0.0.1 (temp data dir,
// kernel-picked ports) and stopped at its end.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "aico_peer/peer_fixture.hpp"
#include "src/profile/aico/http_session.hpp"
#include "src/transport/curl/http_loop.hpp"

namespace aico::test {
namespace {

namespace ap = aico::aico_profile;

class AicoSession : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--stream-timeout", "2"};
    return o;
  }

  void SetUp() override {
    PeerTest::SetUp();
    state = std::make_unique<temp_dir>();
  }

  std::shared_ptr<ap::aico_http_session>
  session(ap::session_options o = {}) {
    if (o.base_url.empty())
      o.base_url = peer->http_url();
    if (o.state_dir.empty())
      o.state_dir = state->path() + "/aico";
    o.request_timeout = 5s;
    std::string err;
    auto s = ap::aico_http_session::create(loop, std::move(o), err);
    EXPECT_TRUE(s) << err;
    return s;
  }

  ap::call_result login(ap::aico_http_session& s,
                        const std::string& uuid = pu::alice_uuid,
                        const std::string& pin = pu::alice_pin) {
    return s.call_blocking({"POST", "/users/authenticate",
                            to_text(json::object{{"username", uuid},
                                                 {"password", pin}}),
                            ""});
  }

  /// Logs in; the access and refresh tokens.
  std::pair<std::string, std::string> tokens(ap::aico_http_session& s) {
    auto r = login(s);
    EXPECT_TRUE(r.ok) << r.error.message;
    auto v = parse_json(r.answer.body);
    return {jstr(v, "/data/access_token"), jstr(v, "/data/refresh_token")};
  }

  static ap::logical_call send_call(const std::string& id,
                                    const std::string& text,
                                    const std::string& token,
                                    const std::string& conversation = "") {
    json::object b{{"id", id}, {"content", text}, {"type", "text"}};
    if (!conversation.empty())
      b["conversation_id"] = conversation;
    return {"POST", "/conversations/messages", to_text(b), token};
  }

  http::loop loop;
  std::unique_ptr<temp_dir> state;
};

TEST_F(AicoSession, HandshakeAndLoginPinTheServerKey) {
  auto s = session();
  auto r = login(*s);
  ASSERT_TRUE(r.ok) << r.error.message;
  auto v = parse_json(r.answer.body);
  EXPECT_TRUE(jtrue(v, "/success"));
  EXPECT_FALSE(jstr(v, "/data/access_token").empty());
  EXPECT_EQ(jint(v, "/data/expires_in"), 900);
  EXPECT_EQ(jstr(v, "/data/user/id"), pu::alice_uuid);
  EXPECT_EQ(jstr(v, "/data/user/display_name"), pu::alice_name);
  EXPECT_EQ(s->counters().handshakes, 1u);
  EXPECT_EQ(stat("handshakes"), 1);
  EXPECT_EQ(stat("logins_ok"), 1);
  // the identity is private and stable
  struct stat st {};
  ASSERT_EQ(::stat((state->path() + "/aico/identity.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(session()->client_id(), s->client_id());
  // the server key is pinned
  std::ifstream pins(s->pin_file());
  std::string line;
  std::getline(pins, line);
  EXPECT_NE(line.find(peer->identity_key()), std::string::npos) << line;
}

TEST_F(AicoSession, BadPinIsA200FailureMappedToAuthentication) {
  auto s = session();
  auto r = login(*s, pu::alice_uuid, "9999");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.cls, error_class::authentication);
  EXPECT_EQ(r.error.code, "invalid_credentials");
  EXPECT_EQ(r.error.status, 200);
  EXPECT_FALSE(r.error.retryable);
  // no PIN configured, unknown user
  EXPECT_EQ(login(*s, pu::nopin_uuid, "1234").error.code, "no_pin_configured");
  EXPECT_EQ(login(*s, "d0d00000-0000-4000-8000-000000000009", "1234").error.code,
            "invalid_credentials");
  // a malformed PIN: the backend's clear text/plain 500
  r = login(*s, pu::alice_uuid, "12");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.cls, error_class::server_error);
  EXPECT_EQ(r.error.status, 500);
  EXPECT_NE(r.error.message.find("Internal Server Error"), std::string::npos);
}

TEST_F(AicoSession, RefreshWithoutBearerDoesNotRotate) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  auto r = s->call_blocking({"POST", "/users/refresh",
                             to_text(json::object{{"refresh_token", refresh}}),
                             access});
  ASSERT_TRUE(r.ok) << r.error.message;
  auto v = parse_json(r.answer.body);
  EXPECT_EQ(jstr(v, "/data/refresh_token"), refresh);
  EXPECT_FALSE(jstr(v, "/data/access_token").empty());
  EXPECT_EQ(stat("refreshes"), 1);
  // an access token is not a refresh token: 200 success:false
  r = s->call_blocking({"POST", "/users/refresh",
                        to_text(json::object{{"refresh_token", access}}), ""});
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.code, "invalid_refresh_token");
  EXPECT_EQ(r.error.cls, error_class::authentication);
}

TEST_F(AicoSession, StreamingSendRoutesThinkingAndResponse) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  std::mutex mu;
  std::vector<ap::stream_piece> pieces;
  auto r = s->call_blocking(send_call("k-1", "hello there", access),
                            [&](const ap::stream_piece& p) {
                              std::lock_guard<std::mutex> g{mu};
                              pieces.push_back(p);
                            });
  ASSERT_TRUE(r.ok) << r.error.message;
  ASSERT_TRUE(r.send);
  EXPECT_EQ(r.answer.status, 201);
  auto v = parse_json(r.answer.body);
  EXPECT_EQ(jstr(v, "/data/id"), "k-1");
  EXPECT_EQ(jstr(v, "/data/status"), "sent");
  EXPECT_EQ(r.send->reply.content, "You said: hello there");
  EXPECT_EQ(r.send->reply.reply_to, "k-1");
  EXPECT_EQ(r.send->thinking, "thought-1 thought-2 thought-3");
  EXPECT_FALSE(r.send->aico_message_id.empty());
  EXPECT_EQ(r.send->reply.id, r.send->aico_message_id);
  auto cid = r.send->sent.conversation_id;
  EXPECT_EQ(cid.rfind(pu::alice_uuid + "_", 0), 0u) << cid;
  // chunks: 3 thinking, then the reply piece by piece, the last one done
  std::lock_guard<std::mutex> g{mu};
  ASSERT_GE(pieces.size(), 5u);
  std::string thinking, response;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].chunk.seq_no, i);
    EXPECT_EQ(pieces[i].chunk.reply_to, "k-1");
    EXPECT_EQ(pieces[i].chunk.conversation_id, cid);
    (pieces[i].thinking ? thinking : response) += pieces[i].chunk.chunk;
  }
  EXPECT_EQ(thinking, "thought-1 thought-2 thought-3");
  EXPECT_EQ(response, "You said: hello there");
  EXPECT_TRUE(pieces.back().chunk.done);
  EXPECT_TRUE(pieces[0].thinking);
  // the backend's message id is the one it stored
  auto msgs = debug("GET", "/_peer/messages");
  ASSERT_TRUE(msgs.is_object() || msgs.is_array());
  auto text = to_text(msgs);
  EXPECT_NE(text.find(r.send->aico_message_id), std::string::npos);
  // the conversation is kept for the next message ("current")
  EXPECT_EQ(s->conversation(), cid);
  auto r2 = s->call_blocking(send_call("k-2", "again", access, "current"));
  ASSERT_TRUE(r2.ok) << r2.error.message;
  EXPECT_EQ(r2.send->sent.conversation_id, cid);
  EXPECT_EQ(stat("streams"), 2);
}

TEST_F(AicoSession, HistoryPagesNewestFirstAscendingWithinAPage) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  for (int i = 1; i <= 3; ++i) {
    auto r = s->call_blocking(send_call("h-" + std::to_string(i),
                                        "m" + std::to_string(i), access));
    ASSERT_TRUE(r.ok) << r.error.message;
  }
  // 6 stored messages (3 sent + 3 replies), pages of 4
  auto p1 = s->call_blocking(
    {"GET", "/conversations/current/messages?limit=4", "", access});
  ASSERT_TRUE(p1.ok) << p1.error.message;
  auto v1 = parse_json(p1.answer.body);
  auto* m1 = jptr(v1, "/data/messages");
  ASSERT_TRUE(m1 && m1->is_array());
  ASSERT_EQ(m1->as_array().size(), 4u);
  EXPECT_TRUE(jtrue(v1, "/data/has_more"));
  EXPECT_EQ(jint(v1, "/data/next_since"), 2);
  // newest last within the page: the last reply
  EXPECT_EQ(jstr(m1->as_array()[3], "/content"), "You said: m3");
  EXPECT_EQ(jstr(m1->as_array()[3], "/sender"), "companion");
  EXPECT_EQ(jstr(v1, "/data/conversation_id"), s->conversation());
  auto p2 = s->call_blocking(
    {"GET", "/conversations/current/messages?limit=4&since=2", "", access});
  ASSERT_TRUE(p2.ok) << p2.error.message;
  auto v2 = parse_json(p2.answer.body);
  auto* m2 = jptr(v2, "/data/messages");
  ASSERT_TRUE(m2 && m2->is_array());
  ASSERT_EQ(m2->as_array().size(), 2u);
  EXPECT_EQ(jstr(m2->as_array()[0], "/content"), "m1");
  EXPECT_FALSE(jtrue(v2, "/data/has_more"));
}

TEST_F(AicoSession, ErrorShapesOfThePeer) {
  // the raw error shapes: no history check of unknown sends
  ap::session_options raw;
  raw.verify_unknown_sends = false;
  auto s = session(raw);
  auto [access, refresh] = tokens(*s);
  // 403 "Not authenticated" = a missing token
  auto r = s->call_blocking(send_call("e-1", "x", ""));
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(r.error.missing_token);
  EXPECT_EQ(r.error.status, 403);
  EXPECT_EQ(r.error.cls, error_class::authentication);
  // a forged token: encrypted 401 {"detail":"Invalid token"}
  r = s->call_blocking(send_call("e-2", "x", "a.b.c"));
  EXPECT_EQ(r.error.code, "invalid_token");
  EXPECT_EQ(r.error.status, 401);
  // HTTPException with any status (encrypted detail)
  add_fault({{"fault", "http_error"}, {"status", 409}, {"detail", "busy here"},
             {"path", "/api/v1/conversation/messages"}});
  r = s->call_blocking(
    {"GET", "/conversations/current/messages", "", access});
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.status, 409);
  EXPECT_EQ(r.error.cls, error_class::validation);
  EXPECT_NE(r.error.message.find("busy here"), std::string::npos);
  // clear text/plain 500
  add_fault({{"fault", "plain_500"}, {"path", "/api/v1/conversation/messages"}});
  r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  EXPECT_EQ(r.error.cls, error_class::server_error);
  EXPECT_TRUE(r.error.retryable);
  EXPECT_NE(r.error.message.find("Internal Server Error"), std::string::npos);
  // clear 500 {"error":"Internal server error"} of the middleware
  add_fault({{"fault", "internal_error"}, {"path", "/api/v1/conversation/messages"}});
  r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  EXPECT_EQ(r.error.code, "internal_error");
  // NDJSON error line mid-stream: the outcome is unknown, not retried
  add_fault({{"fault", "model_error"}, {"after", 1}, {"detail", "model crashed"}});
  r = s->call_blocking(send_call("e-3", "x", access));
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.code, "stream_error");
  EXPECT_TRUE(r.error.outcome_unknown);
  EXPECT_FALSE(r.error.retryable);
  // the stream cut after two lines
  add_fault({{"fault", "stream_cut"}, {"after", 2}});
  r = s->call_blocking(send_call("e-4", "x", access));
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(r.error.outcome_unknown) << r.error.message;
  // the model never answers: "Streaming timeout" (--stream-timeout 2)
  add_fault({{"fault", "model_stall"}});
  r = s->call_blocking(send_call("e-5", "x", access));
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.code, "streaming_timeout");
  EXPECT_EQ(r.error.cls, error_class::timeout);
  EXPECT_TRUE(r.error.outcome_unknown);
  // a call the profile has no wire for
  r = s->call_blocking({"PUT", "/users/me/preferences", "{}", access});
  EXPECT_TRUE(r.local);
  EXPECT_EQ(r.error.cls, error_class::validation);
  // logout is local (the backend's /users/logout always fails)
  auto before = stat("protected_requests");
  r = s->call_blocking({"POST", "/users/logout", "{}", access});
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.local);
  EXPECT_EQ(stat("protected_requests"), before);
  // health is clear
  r = s->call_blocking({"GET", "/health", "", ""});
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_TRUE(jtrue(parse_json(r.answer.body), "/data/is_healthy"));
}

TEST_F(AicoSession, DroppedConnectionsAndClearAnswers) {
  // the raw error shapes: no history check of unknown sends
  ap::session_options raw;
  raw.verify_unknown_sends = false;
  auto s = session(raw);
  auto [access, refresh] = tokens(*s);
  // a read whose connection is dropped: a network error, retryable. (Two
  // drops: libcurl itself retries once on a fresh connection when a reused
  // one dies before answering.)
  add_fault({{"fault", "drop"}, {"path", "/api/v1/conversation/messages"},
             {"method", "GET"}, {"count", 2}});
  auto r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  debug("DELETE", "/_peer/faults");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.cls, error_class::network) << r.error.message;
  EXPECT_TRUE(r.error.retryable);
  EXPECT_FALSE(r.error.outcome_unknown);
  // a send whose connection is dropped after the request: outcome unknown
  add_fault({{"fault", "drop"}, {"path", "/api/v1/conversation/messages"},
             {"method", "POST"}, {"count", 2}});
  r = s->call_blocking(send_call("d-1", "x", access));
  debug("DELETE", "/_peer/faults");
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(r.error.outcome_unknown) << r.error.message;
  EXPECT_FALSE(r.error.retryable);
  // the backend sends the answer in clear when encrypting fails: still read
  add_fault({{"fault", "encrypt_fail"}, {"path", "/api/v1/users/authenticate"}});
  r = login(*s);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_FALSE(jstr(parse_json(r.answer.body), "/data/access_token").empty());
  // and everything works afterwards on the same channel
  r = s->call_blocking(send_call("d-2", "still here", access));
  ASSERT_TRUE(r.ok) << r.error.message;
  // a network failure may be a restart: the channel is renewed after each
  EXPECT_EQ(s->counters().handshakes, 3u);
  EXPECT_EQ(s->counters().rehandshakes_401, 0u);
}

TEST_F(AicoSession, SendStoredThenDroppedIsNotResentByLibcurl) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  // a read first: the connection it used stays in libcurl's cache, so a
  // send could go out on a reused keep-alive connection
  auto h = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  ASSERT_TRUE(h.ok) << h.error.message;
  // the backend stores the message, then the connection dies before a byte
  // of the answer: libcurl would re-send a request on a reused connection
  // that died like this, and the backend would store it twice
  add_fault({{"fault", "stored_drop"}, {"path", "/api/v1/conversation/messages"},
             {"method", "POST"}, {"count", 1}});
  auto r = s->call_blocking(send_call("sd-1", "only once please", access));
  // the outcome was unknown; the history shows it arrived (once)
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.answer.status, 201);
  EXPECT_NE(r.answer.body.find("found_in_history"), std::string::npos)
    << r.answer.body;
  auto all = debug("GET", "/_peer/messages");
  int copies = 0;
  for (auto& m : all.at("messages").as_array())
    if (jstr(m, "/content") == "only once please")
      ++copies;
  EXPECT_EQ(copies, 1) << to_text(all);
  EXPECT_EQ(stat("sends"), 1);
}

TEST_F(AicoSession, TheConversationIsKeptBetweenRuns) {
  ap::session_options o;
  o.conversation_file = state->path() + "/conversation";
  auto s = session(o);
  auto [access, refresh] = tokens(*s);
  auto r = s->call_blocking(send_call("k-1", "first run", access));
  ASSERT_TRUE(r.ok) << r.error.message;
  auto cid = s->conversation();
  ASSERT_FALSE(cid.empty());
  struct stat st {};
  ASSERT_EQ(::stat(o.conversation_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // a new session (the next `aico send`) continues it
  std::this_thread::sleep_for(1100ms); // a new one would get another id
  auto s2 = session(o);
  EXPECT_EQ(s2->conversation(), cid);
  r = s2->call_blocking(send_call("k-2", "second run", access));
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(jstr(parse_json(r.answer.body), "/data/conversation_id"), cid);
  // another user's send does not join it
  auto other = login(*s2, pu::bob_uuid, pu::bob_pin);
  ASSERT_TRUE(other.ok) << other.error.message;
  auto bob = jstr(parse_json(other.answer.body), "/data/access_token");
  r = s2->call_blocking(send_call("k-3", "bob here", bob));
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_NE(jstr(parse_json(r.answer.body), "/data/conversation_id"), cid);
}

TEST_F(AicoSession, HandshakeRefusedForASkewedClock) {
  ap::session_options o;
  o.wall = [] {
    return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
             .count()
           + 120; // beyond the backend's 30 s window
  };
  auto s = session(o);
  auto r = login(*s);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.code, "handshake_failed");
  EXPECT_EQ(r.error.status, 500);
  EXPECT_NE(r.error.message.find("clock"), std::string::npos);
  EXPECT_EQ(stat("logins_ok") + stat("logins_failed"), 0);
  // the server key was not pinned by a failed handshake
  EXPECT_FALSE(std::filesystem::exists(s->pin_file()));
}

class AicoSessionShortTokens : public AicoSession {
protected:
  peer_options options() override {
    auto o = AicoSession::options();
    o.extra_args.insert(o.extra_args.end(), {"--access-ttl", "1"});
    return o;
  }
};

TEST_F(AicoSessionShortTokens, ExpiredAccessTokenIsTokenExpired) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  std::this_thread::sleep_for(2100ms);
  auto r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.code, "token_expired");
  EXPECT_EQ(r.error.status, 401);
  EXPECT_EQ(r.error.cls, error_class::authentication);
  EXPECT_FALSE(r.error.rehandshake);
  // the refresh (no Bearer) gives a working token; the refresh token stays
  r = s->call_blocking({"POST", "/users/refresh",
                        to_text(json::object{{"refresh_token", refresh}}), ""});
  ASSERT_TRUE(r.ok) << r.error.message;
  auto v = parse_json(r.answer.body);
  EXPECT_EQ(jstr(v, "/data/refresh_token"), refresh);
  EXPECT_EQ(jint(v, "/data/expires_in"), 1);
  r = s->call_blocking({"GET", "/conversations/current/messages", "",
                        jstr(v, "/data/access_token")});
  EXPECT_TRUE(r.ok) << r.error.message;
}

TEST_F(AicoSession, LostChannelMeansOneRehandshakeAndOneResend) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  debug("POST", "/_peer/channels/clear");
  auto r = s->call_blocking(send_call("c-1", "after clear", access));
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(s->counters().rehandshakes_401, 1u);
  EXPECT_EQ(s->counters().handshakes, 2u);
  EXPECT_EQ(stat("encryption_required"), 1);
  EXPECT_EQ(stat("sends"), 1); // resent once, stored once
}

class AicoSessionShortChannel : public AicoSession {
protected:
  peer_options options() override {
    auto o = AicoSession::options();
    o.extra_args.insert(o.extra_args.end(), {"--channel-ttl", "1.5"});
    return o;
  }
};

TEST_F(AicoSessionShortChannel, HandshakesBeforeTheChannelExpires) {
  ap::session_options o;
  o.channel.lifetime = 1500ms;
  o.channel.margin = 1000ms;
  auto s = session(o);
  auto [access, refresh] = tokens(*s);
  std::this_thread::sleep_for(700ms); // past lifetime - margin, not expired
  auto r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(s->counters().proactive, 1u);
  EXPECT_EQ(s->counters().rehandshakes_401, 0u);
  EXPECT_EQ(stat("encryption_required"), 0);
}

TEST_F(AicoSession, PeerRestartKeepsTheServerIdentity) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  auto key = peer->identity_key();
  peer->stop();
  // while it is down: a network error, nothing is pinned anew
  auto down = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  ASSERT_FALSE(down.ok);
  EXPECT_EQ(down.error.cls, error_class::network) << down.error.message;
  ASSERT_TRUE(peer->start()) << peer->last_error();
  EXPECT_EQ(peer->identity_key(), key);
  auto r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(s->counters().handshakes, 2u);
}

TEST_F(AicoSession, ChangedServerKeyIsRefused) {
  auto s = session();
  auto [access, refresh] = tokens(*s);
  peer->stop();
  std::filesystem::remove(peer->data_dir() + "/identity.key");
  ASSERT_TRUE(peer->start()) << peer->last_error();
  auto before = stat("protected_requests");
  auto r = s->call_blocking({"GET", "/conversations/current/messages", "", access});
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.code, "server_identity_changed");
  EXPECT_EQ(r.error.cls, error_class::authentication);
  EXPECT_NE(r.error.message.find("differs from the one pinned"),
            std::string::npos)
    << r.error.message;
  // the only protected request was the one sealed for the old channel,
  // which the restarted server refused (clear 401); none after the refusal
  EXPECT_EQ(stat("protected_requests"), before + 1);
  EXPECT_EQ(stat("encryption_required"), 1);
  auto again = s->call_blocking(
    {"GET", "/conversations/current/messages", "", access});
  EXPECT_EQ(again.error.code, "server_identity_changed");
  EXPECT_EQ(stat("protected_requests"), before + 1);
  // a fresh state directory trusts the new key
  ap::session_options o;
  o.state_dir = state->path() + "/other";
  auto s2 = session(o);
  EXPECT_TRUE(login(*s2).ok);
}

TEST_F(AicoSession, SessionRefusesAnIdentityOthersCanRead) {
  auto dir = state->path() + "/aico";
  session(); // creates it
  ::chmod((dir + "/identity.key").c_str(), 0644);
  ap::session_options o;
  o.base_url = peer->http_url();
  o.state_dir = dir;
  std::string err;
  EXPECT_FALSE(ap::aico_http_session::create(loop, o, err));
  EXPECT_NE(err.find("refusing to use it"), std::string::npos) << err;
  o.base_url = "ftp://127.0.0.1:1";
  EXPECT_FALSE(ap::aico_http_session::create(loop, o, err));
}

} // namespace
} // namespace aico::test
