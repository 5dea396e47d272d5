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
