// Integration tests of the aico profile through the whole engine (token
// manager, repositories, offline queue, resilient client, supervisor, the
// generic transport actor hosting the aico HTTP driver) against
// aico-backend-peer, started by each test on 127.0.0.1 (temp data dir,
// kernel-picked ports) and stopped at its end. Only the http transport: the
// WebSocket part of the profile is tested with the ws driver.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>

#include "caf/all.hpp"

#include "aico_peer/peer_fixture.hpp"
#include "messages/engine.hpp"
#include "messages/errors.hpp"

namespace aico::test {
namespace {

/// What a chat listener got: messages (by arrival) and stream chunks.
struct chat_log {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<chat_message> messages;
  std::vector<stream_chunk> chunks;

  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds t = 10s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, t, [&] { return pred(); });
  }

  /// The last status seen for message `id`, if any.
  std::optional<chat_message> last(const std::string& id) {
    std::optional<chat_message> res;
    for (auto& m : messages)
      if (m.id == id)
        res = m;
    return res;
  }
};

/// Stored on the backend: sent (the send's answer), or delivered (the
/// stored message seen back as an event, which the aico driver pushes).
bool stored(message_status s) {
  return s == message_status::sent || s == message_status::delivered;
}

chat_listener_actor spawn_chat_listener(caf::actor_system& sys,
                                        std::shared_ptr<chat_log> log) {
  return sys.spawn([log]() -> chat_listener_actor::behavior_type {
    return {
      [log](message_atom, const chat_message& m) {
        std::lock_guard<std::mutex> g{log->mtx};
        log->messages.push_back(m);
        log->cv.notify_all();
      },
      [log](event_atom, const stream_chunk& c) {
        std::lock_guard<std::mutex> g{log->mtx};
        log->chunks.push_back(c);
        log->cv.notify_all();
      },
    };
  });
}

class AicoEngine : public PeerTest {
protected:
  void TearDown() override {
    eng.reset();
    PeerTest::TearDown();
  }

  virtual void tune(engine_config&) {}

  engine_config config() {
    engine_config cfg;
    cfg.profile = wire_profile::aico;
    auto& c = cfg.connection;
    c.order = {transport_mode::http};
    c.http.base_url = peer->http_url();
    c.http.connect_timeout = 2s;
    c.health_interval = 1s;
    c.health_timeout = 1s;
    c.backoff = {std::chrono::milliseconds{100}, 1.6, 0.2,
                 std::chrono::milliseconds{1000}};
    cfg.state_dir = state.path();
    cfg.tokens.request_timeout = 5s;
    cfg.request_timeout = 10s;
    cfg.shutdown_timeout = 5s;
    tune(cfg);
    return cfg;
  }

  void start_engine() {
    eng = std::make_unique<engine>(sys, config());
    caf::anon_send(eng->chat(), watch_atom_v,
                   spawn_chat_listener(sys, chat));
  }

  caf::expected<session_info> login(const std::string& u = pu::alice_uuid,
                                    const std::string& p = pu::alice_pin) {
    caf::scoped_actor self{sys};
    caf::expected<session_info> res{caf::error{}};
    self->request(eng->tokens(), 12s, login_atom_v, u, p)
      .receive([&](session_info& s) { res = std::move(s); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// One raw call through the resilient client and the supervisor.
  caf::expected<api_reply> call(api_call c, caf::timespan t = 10s) {
    caf::scoped_actor self{sys};
    caf::expected<api_reply> res{caf::error{}};
    self->request(eng->api(), t + 2s, request_atom_v, c, t, true)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// The classification of a raw call's failure (a non-2xx reply included).
  classification failure_of(const caf::expected<api_reply>& r) {
    if (!r)
      return classify(r.error());
    if (r->status >= 200 && r->status < 300) {
      ADD_FAILURE() << "expected a failure, got " << r->status << " "
                    << r->body;
      return {};
    }
    return classify(make_status_error(r->status, r->body));
  }

  api_call send_call(const std::string& id, const std::string& text) {
    json::object b{{"id", id}, {"content", text}, {"type", "text"}};
    return api_call{id, "POST", "/conversations/messages", to_text(b), ""};
  }

  caf::expected<chat_message> chat_send(const std::string& id,
                                        const std::string& text) {
    caf::scoped_actor self{sys};
    outgoing_message m;
    m.id = id;
    m.content = text;
    caf::expected<chat_message> res{caf::error{}};
    self->request(eng->chat(), 10s, send_atom_v, m)
      .receive([&](chat_message& x) { res = std::move(x); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<history_result> history(const std::string& conv = "",
                                        uint64_t since = 0,
                                        int32_t limit = 50) {
    caf::scoped_actor self{sys};
    history_query q;
    q.conversation_id = conv;
    q.since = since;
    q.limit = limit;
    q.read.force_refresh = true;
    q.read.allow_stale = false;
    caf::expected<history_result> res{caf::error{}};
    self->request(eng->chat(), 10s, history_atom_v, q)
      .receive([&](history_result& x) { res = std::move(x); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// How many stored messages (all roles) have this content.
  int stored_copies(const std::string& content) {
    auto all = debug("GET", "/_peer/messages");
    int n = 0;
    for (auto& m : all.at("messages").as_array())
      if (jstr(m, "/content") == content)
        ++n;
    return n;
  }

  /// Waits until the message reached a final status (sent or failed).
  std::optional<chat_message> settled(const std::string& id,
                                      std::chrono::milliseconds t = 10s) {
    std::optional<chat_message> res;
    chat->wait(
      [&] {
        res = chat->last(id);
        return res
               && (res->status == message_status::sent
                   || res->status == message_status::delivered
                   || res->status == message_status::failed);
      },
      t);
    return res;
  }

  std::vector<queue_entry> queue_list() {
    caf::scoped_actor self{sys};
    std::vector<queue_entry> res;
    self->request(eng->queue(), 5s, list_atom_v)
      .receive([&](std::vector<queue_entry>& x) { res = std::move(x); },
               [&](caf::error& e) { ADD_FAILURE() << describe(e); });
    return res;
  }

  caf::expected<queue_entry> queue_retry(int64_t seq) {
    caf::scoped_actor self{sys};
    caf::expected<queue_entry> res{caf::error{}};
    self->request(eng->queue(), 5s, retry_atom_v, seq)
      .receive([&](queue_entry& x) { res = std::move(x); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  std::string refresh_token_on_disk() {
    std::ifstream in(state.path() + "/tokens.json");
    std::stringstream ss;
    ss << in.rdbuf();
    json::error_code ec;
    auto v = json::parse(ss.str(), ec);
    if (ec)
      return {};
    return jstr(v, "/refresh_token");
  }

  caf::actor_system_config sys_cfg;
  caf::actor_system sys{sys_cfg};
  temp_dir state{"aico-engine-aico"};
  std::shared_ptr<chat_log> chat = std::make_shared<chat_log>();
  std::unique_ptr<engine> eng;
};

TEST_F(AicoEngine, LoginStreamingSendAndHistory) {
  start_engine();
  auto s = login();
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_EQ(s->user_id, pu::alice_uuid);
  EXPECT_EQ(s->role, "user");
  // the identity of the profile lives in STATE_DIR/aico
  struct stat st {};
  ASSERT_EQ(::stat((state.path() + "/aico/identity.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto q = chat_send("e-1", "hello engine");
  ASSERT_TRUE(q) << describe(q.error());
  auto m = settled("e-1");
  ASSERT_TRUE(m);
  ASSERT_TRUE(stored(m->status)) << m->failure_reason;
  EXPECT_FALSE(m->conversation_id.empty());
  EXPECT_NE(m->conversation_id.find('_'), std::string::npos);
  // the reply's chunks reached the chat stream in order, the last one done
  ASSERT_TRUE(chat->wait([&] {
    for (auto& c : chat->chunks)
      if (c.reply_to == "e-1" && c.done)
        return true;
    return false;
  })) << "no final chunk";
  std::string text, thinking, reply_id;
  uint64_t next = 0, next_thought = 0;
  {
    std::lock_guard<std::mutex> g{chat->mtx};
    for (auto& c : chat->chunks) {
      if (c.reply_to != "e-1")
        continue;
      EXPECT_FALSE(c.message_id.empty());
      EXPECT_EQ(c.conversation_id, m->conversation_id);
      auto suffix = std::string(":thinking");
      if (c.message_id.size() > suffix.size()
          && c.message_id.compare(c.message_id.size() - suffix.size(),
                                  suffix.size(), suffix)
               == 0) {
        // the model's inner monologue: a message of its own
        EXPECT_EQ(c.seq_no, next_thought++);
        thinking += c.chunk;
        continue;
      }
      EXPECT_EQ(c.seq_no, next++);
      reply_id = c.message_id;
      text += c.chunk;
      if (c.done)
        break;
    }
  }
  EXPECT_EQ(text, "You said: hello engine");
  EXPECT_GE(next, 3u); // "You", " said:", " hello", " engine", done
  EXPECT_EQ(thinking, "thought-1 thought-2 thought-3");
  // the stored reply follows as a message (it replaces the stream)
  ASSERT_TRUE(chat->wait([&] {
    auto r = chat->last(reply_id);
    return r && r->content == "You said: hello engine";
  })) << "no reply message";
  EXPECT_EQ(chat->last(reply_id)->sender, "companion");
  EXPECT_EQ(chat->last(reply_id)->reply_to, "e-1");
  ASSERT_TRUE(chat->wait([&] {
    auto r = chat->last(reply_id + ":thinking");
    return r && r->content == "thought-1 thought-2 thought-3";
  })) << "no thinking message";

  // a second send continues the same conversation
  ASSERT_TRUE(chat_send("e-2", "and again"));
  auto m2 = settled("e-2");
  ASSERT_TRUE(m2);
  ASSERT_TRUE(stored(m2->status)) << m2->failure_reason;
  EXPECT_EQ(m2->conversation_id, m->conversation_id);

  // history of the current conversation: both turns, ascending
  auto h = history();
  ASSERT_TRUE(h) << describe(h.error());
  std::vector<std::string> contents;
  for (auto& x : h->page.messages)
    contents.push_back(x.content);
  EXPECT_EQ(contents,
            (std::vector<std::string>{"hello engine", "You said: hello engine",
                                      "and again", "You said: and again"}));
  EXPECT_EQ(h->page.messages[1].sender, "companion");
  EXPECT_EQ(stored_copies("hello engine"), 1);
  EXPECT_EQ(stored_copies("and again"), 1);
}

TEST_F(AicoEngine, HistoryPaging) {
  start_engine();
  ASSERT_TRUE(login());
  for (int i = 0; i < 3; ++i) {
    auto id = "p-" + std::to_string(i);
    ASSERT_TRUE(chat_send(id, "page " + std::to_string(i)));
    auto m = settled(id);
    ASSERT_TRUE(m && stored(m->status));
  }
  // 6 messages. The latest page (since 0) is the newest `limit`, ascending
  auto h = history("", 0, 4);
  ASSERT_TRUE(h) << describe(h.error());
  ASSERT_EQ(h->page.messages.size(), 4u);
  EXPECT_EQ(h->page.messages.front().content, "page 1");
  EXPECT_EQ(h->page.messages.back().content, "You said: page 2");
  // the backend pages count back from the newest: `since` is the page
  // number (docs/profiles.md), has_more / next_since lead to older pages
  auto p1 = history("", 1, 4);
  ASSERT_TRUE(p1) << describe(p1.error());
  ASSERT_EQ(p1->page.messages.size(), 4u);
  EXPECT_EQ(p1->page.messages.front().content, "page 1");
  EXPECT_TRUE(p1->page.has_more);
  EXPECT_EQ(p1->page.next_since, 2u);
  auto p2 = history("", p1->page.next_since, 4);
  ASSERT_TRUE(p2) << describe(p2.error());
  ASSERT_EQ(p2->page.messages.size(), 2u);
  EXPECT_FALSE(p2->page.has_more);
  EXPECT_EQ(p2->page.messages.front().content, "page 0");
  EXPECT_EQ(p2->page.messages.back().content, "You said: page 0");
}

TEST_F(AicoEngine, FailedLoginIsAClearSentence) {
  start_engine();
  auto s = login(pu::alice_uuid, "9999");
  ASSERT_FALSE(s);
  auto c = classify(s.error());
  EXPECT_EQ(c.cls, error_class::authentication);
  EXPECT_EQ(c.code, "invalid_credentials");
  EXPECT_NE(c.message.find("wrong user id or PIN"), std::string::npos)
    << c.message;
  // an unknown user: the same class
  s = login("d0000000-0000-4000-8000-00000000dead", "1234");
  ASSERT_FALSE(s);
  EXPECT_EQ(classify(s.error()).cls, error_class::authentication);
  // a user without a PIN
  s = login(pu::nopin_uuid, "1234");
  ASSERT_FALSE(s);
  EXPECT_EQ(classify(s.error()).cls, error_class::authentication);
  EXPECT_EQ(classify(s.error()).code, "no_pin_configured");
  // and the right PIN still works
  ASSERT_TRUE(login()) << "login after failures";
}

class AicoEngineShortTokens : public AicoEngine {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--access-ttl", "4"};
    return o;
  }
};

TEST_F(AicoEngineShortTokens, RefreshDoesNotRotateTheRefreshToken) {
  start_engine();
  ASSERT_TRUE(login());
  auto refresh_before = refresh_token_on_disk();
  ASSERT_FALSE(refresh_before.empty());
  // the access token lives 4 s: the token manager refreshes it (before it
  // expires, or on the 401 "Token has expired") and calls keep working
  std::this_thread::sleep_for(5s);
  ASSERT_TRUE(chat_send("r-1", "after expiry"));
  auto m = settled("r-1");
  ASSERT_TRUE(m);
  EXPECT_TRUE(stored(m->status)) << m->failure_reason;
  EXPECT_GE(stat("refreshes"), 1);
  EXPECT_EQ(stat("logins_ok"), 1); // no second login
  // the backend hands back the same refresh token
  EXPECT_EQ(refresh_token_on_disk(), refresh_before);
}

TEST_F(AicoEngine, RehandshakeAfterAPeerRestart) {
  start_engine();
  ASSERT_TRUE(login());
  ASSERT_TRUE(chat_send("x-1", "before the restart"));
  auto m = settled("x-1");
  ASSERT_TRUE(m && stored(m->status));
  EXPECT_GE(stat("handshakes"), 1);
  // a restart loses every channel (kept: users, messages, the identity)
  ASSERT_EQ(peer->stop(), 0);
  ASSERT_TRUE(peer->start()) << peer->last_error();
  ASSERT_TRUE(chat_send("x-2", "after the restart"));
  m = settled("x-2", 20s);
  ASSERT_TRUE(m);
  EXPECT_TRUE(stored(m->status)) << m->failure_reason;
  EXPECT_GE(stat("handshakes"), 1); // the new peer's count
  EXPECT_EQ(stored_copies("after the restart"), 1);
  auto h = history();
  ASSERT_TRUE(h) << describe(h.error());
  EXPECT_EQ(h->page.messages.back().content, "You said: after the restart");
}

TEST_F(AicoEngine, ErrorShapesReachTheCallerAsTheirClass) {
  start_engine();
  ASSERT_TRUE(login());
  const std::string hist = "/conversations/current/messages?since=0&limit=5";
  auto get = [&] { return call(api_call{"h", "GET", hist, "", ""}, 5s); };
  // encrypted {"detail":…} with 404 / 403 / 422
  add_fault({{"fault", "http_error"}, {"path", "/api/v1/conversation/messages"},
             {"status", 404}, {"detail", "Conversation not found"}});
  auto c = failure_of(get());
  EXPECT_EQ(c.cls, error_class::validation);
  EXPECT_EQ(c.status, 404);
  EXPECT_NE(c.message.find("Conversation not found"), std::string::npos)
    << c.message;
  add_fault({{"fault", "http_error"}, {"path", "/api/v1/conversation/messages"},
             {"status", 403}, {"detail", "Access denied"}});
  c = failure_of(get());
  EXPECT_EQ(c.cls, error_class::authorization) << c.message;
  add_fault({{"fault", "http_error"}, {"path", "/api/v1/conversation/messages"},
             {"status", 422}, {"detail", "Unprocessable"}});
  c = failure_of(get());
  EXPECT_EQ(c.cls, error_class::validation) << c.message;
  EXPECT_EQ(c.status, 422);
  // the clear text/plain 500 and the middleware's clear 500: server errors
  // (retried by the resilient client, so every try fails)
  add_fault({{"fault", "plain_500"}, {"path", "/api/v1/conversation/messages"},
             {"count", -1}});
  c = failure_of(get());
  EXPECT_EQ(c.cls, error_class::server_error) << c.message;
  EXPECT_TRUE(c.retryable);
  debug("DELETE", "/_peer/faults");
  add_fault({{"fault", "internal_error"},
             {"path", "/api/v1/conversation/messages"}, {"count", -1}});
  c = failure_of(get());
  EXPECT_EQ(c.cls, error_class::server_error) << c.message;
  debug("DELETE", "/_peer/faults");
  // a call the backend has no equivalent of: refused without a wire call
  c = failure_of(call(api_call{"p", "GET", "/users/me/preferences", "", ""}));
  EXPECT_EQ(c.cls, error_class::validation);
  EXPECT_NE(c.message.find("no equivalent"), std::string::npos) << c.message;
  // a send whose connection is dropped before the application stored it:
  // the outcome is unknown to the engine (not retried, not failed over),
  // and the history does not have it
  add_fault({{"fault", "drop"}, {"path", "/api/v1/conversation/messages"},
             {"method", "POST"}});
  c = failure_of(call(send_call("d-1", "dropped before storing")));
  EXPECT_EQ(c.cls, error_class::unknown) << c.message;
  EXPECT_EQ(c.code, "outcome_unknown");
  EXPECT_FALSE(c.retryable);
  EXPECT_NE(c.message.find("not in the history"), std::string::npos)
    << c.message;
  EXPECT_EQ(stored_copies("dropped before storing"), 0);
  // stored, then the stream ends with an error line / is cut / the
  // connection dies before any byte: found in the history, stored once
  // (neither libcurl nor the engine resent it)
  int n = 0;
  for (auto f : {json::object{{"fault", "model_error"}, {"after", 2}},
                 json::object{{"fault", "stream_cut"}, {"after", 2}},
                 json::object{{"fault", "stored_drop"}, {"method", "POST"}}}) {
    auto name = std::string(f.at("fault").as_string());
    f["path"] = "/api/v1/conversation/messages";
    add_fault(f);
    auto text = "stored then " + name;
    auto r = call(send_call("st-" + std::to_string(n++), text));
    ASSERT_TRUE(r) << name << ": " << describe(r.error());
    EXPECT_EQ(r->status, 201) << name << ": " << r->body;
    EXPECT_NE(r->body.find("found_in_history"), std::string::npos) << r->body;
    EXPECT_EQ(stored_copies(text), 1) << name;
  }
  // and the engine still works
  auto ok = call(send_call("ok-1", "fine again"));
  ASSERT_TRUE(ok) << describe(ok.error());
  EXPECT_EQ(ok->status, 201) << ok->body;
}

TEST_F(AicoEngine, ExpiredChannelIsRenewedWithoutTheCallerNoticing) {
  start_engine();
  ASSERT_TRUE(login());
  ASSERT_TRUE(chat_send("c-1", "one"));
  ASSERT_TRUE(settled("c-1"));
  // the backend forgets every channel: the next call gets the clear 401
  // "Encryption required", handshakes again and is resent once
  debug("POST", "/_peer/channels/clear");
  auto before = stat("handshakes");
  auto h = history();
  ASSERT_TRUE(h) << describe(h.error());
  EXPECT_EQ(stat("handshakes"), before + 1);
  EXPECT_GE(stat("encryption_required"), 1);
}

TEST_F(AicoEngine, UnknownOutcomeFoundInTheHistoryIsSentOnce) {
  start_engine();
  ASSERT_TRUE(login());
  // the stream breaks after the message was stored: the engine does not
  // resend it; the history shows it arrived, so it is sent
  add_fault({{"fault", "stream_cut"}, {"path", "/api/v1/conversation/messages"},
             {"after", 2}});
  ASSERT_TRUE(chat_send("u-1", "cut after storing"));
  auto m = settled("u-1");
  ASSERT_TRUE(m);
  EXPECT_TRUE(stored(m->status)) << m->failure_reason;
  EXPECT_NE(m->metadata.find("found_in_history"), std::string::npos)
    << m->metadata;
  // an error line after storing: the same
  add_fault({{"fault", "model_error"}, {"path", "/api/v1/conversation/messages"},
             {"after", 1}});
  ASSERT_TRUE(chat_send("u-2", "model failed after storing"));
  m = settled("u-2");
  ASSERT_TRUE(m);
  EXPECT_TRUE(stored(m->status)) << m->failure_reason;
  // the same text again, stored then dropped: the earlier copy is not
  // taken as the proof of this one (it is claimed already)
  add_fault({{"fault", "stored_drop"},
             {"path", "/api/v1/conversation/messages"}, {"method", "POST"}});
  ASSERT_TRUE(chat_send("u-3", "cut after storing"));
  m = settled("u-3");
  ASSERT_TRUE(m);
  EXPECT_TRUE(stored(m->status)) << m->failure_reason;
  EXPECT_EQ(stored_copies("cut after storing"), 2);
  EXPECT_EQ(stored_copies("model failed after storing"), 1);
  EXPECT_EQ(stat("sends"), 3); // nothing was resent
  for (auto& e : queue_list())
    EXPECT_NE(e.status, "failed") << e.idempotency_key << " " << e.last_error;
}

TEST_F(AicoEngine, UnknownOutcomeNotInTheHistoryWaitsForQueueRetry) {
  start_engine();
  ASSERT_TRUE(login());
  // the connection is dropped before the application stored anything: the
  // outcome is unknown to the engine, the history does not have it, so it
  // is left failed (not resent) until the user retries it
  add_fault({{"fault", "drop"}, {"path", "/api/v1/conversation/messages"},
             {"method", "POST"}});
  ASSERT_TRUE(chat_send("n-1", "never arrived"));
  auto m = settled("n-1");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, message_status::failed);
  EXPECT_NE(m->failure_reason.find("not in the history"), std::string::npos)
    << m->failure_reason;
  EXPECT_EQ(stored_copies("never arrived"), 0);
  EXPECT_EQ(stat("sends"), 0);
  std::optional<queue_entry> failed;
  for (auto& e : queue_list())
    if (e.idempotency_key == "n-1")
      failed = e;
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, "failed");
  // `aico queue retry N`
  auto r = queue_retry(failed->seq);
  ASSERT_TRUE(r) << describe(r.error());
  ASSERT_TRUE(chat->wait([&] {
    auto x = chat->last("n-1");
    return x && stored(x->status);
  })) << "not sent after the retry";
  EXPECT_EQ(stored_copies("never arrived"), 1);
}

TEST_F(AicoEngine, ASendOutlivingItsDeadlineIsFoundInTheHistory) {
  start_engine();
  ASSERT_TRUE(login());
  // the model never answers (the backend gives up only after 30 s): the
  // stream is cut before the call's 3 s are over, with time left to find
  // the message (stored on arrival) in the history: sent, not resent
  add_fault({{"fault", "model_stall"}, {"path", "/api/v1/conversation/messages"}});
  auto r = call(send_call("slow-1", "a slow model"), 3s);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_NE(r->body.find("found_in_history"), std::string::npos) << r->body;
  EXPECT_EQ(stored_copies("a slow model"), 1);
  EXPECT_EQ(stat("sends"), 1);
}

} // namespace
} // namespace aico::test
