// aico-chat's bridge: an engine error reaches the UI as a sentence, never as
// a raw caf::error rendering (issue 15: the login screen showed
// `login failed: error(1, 'aico', (0, "", "no transport available", -1))`).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "caf/all.hpp"

#include "bridge.hpp"
#include "messages/engine.hpp"

using namespace aico;
using namespace std::chrono_literals;

TEST(chat_bridge, a_failed_login_is_shown_as_a_sentence) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  std::string shown;
  {
    engine_config ec;
    // nothing listens on any of these: every transport fails
    ec.connection.order = {transport_mode::http};
    ec.connection.http.base_url = "http://127.0.0.1:1";
    ec.connection.http.connect_timeout = 200ms;
    ec.tokens.request_timeout = 500ms;
    ec.request_timeout = 500ms;
    engine eng{sys, ec};
    chat::ui_queue q;
    chat::chat_model model;
    chat::ask<session_info>(
      sys, q, eng.tokens(), 5s, [](chat::chat_model&, const session_info&) {},
      [](chat::chat_model& m, const std::string& e) {
        m.login_error = "login failed: " + e; // as main.cpp does
      },
      login_atom_v, std::string{"alice"}, std::string{"alice-pw"});
    auto until = std::chrono::steady_clock::now() + 10s;
    while (model.login_error.empty()
           && std::chrono::steady_clock::now() < until) {
      for (auto& f : q.drain())
        f(model);
      std::this_thread::sleep_for(10ms);
    }
    shown = model.login_error;
  }
  EXPECT_EQ(shown, "login failed: gateway unreachable (no transport "
                   "available)");
  EXPECT_EQ(shown.find("error("), std::string::npos) << shown;
}

// The aico profile streams the model's inner monologue as a message of its
// own (id "<reply id>:thinking"): hidden until /thinking turns it on; the
// reply streams chunk by chunk and its stored message replaces the stream.
TEST(chat_model, thinking_is_hidden_until_toggled_and_replies_stream) {
  chat::chat_model m;
  auto chunk = [](std::string id, uint64_t n, std::string text, bool done) {
    stream_chunk c;
    c.conversation_id = "u_1";
    c.reply_to = "m-1";
    c.message_id = std::move(id);
    c.seq_no = n;
    c.chunk = std::move(text);
    c.done = done;
    return c;
  };
  m.add_chunk(chunk("r1:thinking", 0, "thought-1", false));
  m.add_chunk(chunk("r1", 0, "You", false));
  m.add_chunk(chunk("r1", 1, " said", false));
  auto text = [&] {
    std::string all;
    for (auto& l : m.lines())
      all += l.text + "\n";
    return all;
  };
  EXPECT_EQ(text(), "companion: You said [streaming...]\n");
  m.show_thinking = true;
  EXPECT_EQ(text(), "companion (thinking): thought-1 [streaming...]\n"
                    "companion: You said [streaming...]\n");
  chat_message reply;
  reply.id = "r1";
  reply.conversation_id = "u_1";
  reply.sender = "companion";
  reply.content = "You said hi";
  reply.status = message_status::delivered;
  m.upsert(reply);
  m.show_thinking = false;
  EXPECT_EQ(text(), "companion: You said hi [delivered]\n");
  EXPECT_TRUE(chat::chat_model::is_thinking("r1:thinking"));
  EXPECT_FALSE(chat::chat_model::is_thinking(":thinking"));
  EXPECT_FALSE(chat::chat_model::is_thinking("r1"));
}
