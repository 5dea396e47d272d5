// The public API's own logic, without a gateway: aico::client_config mapped
// onto the engine configuration (precedence, errors naming the key) and
// aico::actor_engine's handles (the connection stream adapter).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "aico/actors.hpp"
#include "aico/client.hpp"
#include "src/facade/public_config.hpp"
#include "support/gateway_process.hpp" // test::temp_dir

using namespace aico;
using namespace std::chrono_literals;

namespace {

std::string message_of(const client_config& cfg) {
  try {
    cfg.check();
  } catch (const client_error& e) {
    EXPECT_EQ(e.cls(), error_class::validation);
    return e.what();
  }
  return "no error";
}

} // namespace

TEST(PublicConfig, DefaultsFileEnvThenFields) {
  test::temp_dir dir;
  auto file = dir.path() + "/c.json";
  std::ofstream{file} << R"({"url": "http://127.0.0.1:1111",
                             "state_dir": "/from/file",
                             "request_timeout_ms": 1000,
                             "queue": {"limit": 7}})";
  client_config cc;
  cc.file = file;
  auto cfg = to_engine_config(cc);
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "http://127.0.0.1:1111");
  EXPECT_EQ(cfg->state_dir, "/from/file");
  EXPECT_EQ(cfg->queue.state_dir, "/from/file");
  EXPECT_EQ(cfg->queue.limit, 7u);
  EXPECT_EQ(cfg->request_timeout, caf::timespan{1s});
  // the environment wins over the file
  cc.env = {{"AICO_URL", "http://127.0.0.1:2222"},
            {"AICO_REQUEST_TIMEOUT_MS", "2000"},
            {"HOME", "/ignored"}};
  cfg = to_engine_config(cc);
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "http://127.0.0.1:2222");
  EXPECT_EQ(cfg->request_timeout, caf::timespan{2s});
  // explicit fields win over both
  cc.url = "http://127.0.0.1:3333";
  cc.state_dir = dir.path();
  cc.request_timeout = 3s;
  cc.shutdown_timeout = 1500ms;
  cc.transports = {"ws", "http"};
  cfg = to_engine_config(cc);
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "http://127.0.0.1:3333");
  EXPECT_EQ(cfg->connection.ws.url, "ws://127.0.0.1:3333/api/v1/ws");
  EXPECT_EQ(cfg->state_dir, dir.path());
  EXPECT_EQ(cfg->tokens.state_dir, dir.path());
  EXPECT_EQ(cfg->request_timeout, caf::timespan{3s});
  EXPECT_EQ(cfg->shutdown_timeout, caf::timespan{1500ms});
  EXPECT_EQ(cfg->connection.order,
            (std::vector<transport_mode>{transport_mode::ws,
                                         transport_mode::http}));
  EXPECT_EQ(cfg->queue.limit, 7u); // file-only keys are kept
}

TEST(PublicConfig, IpcNeedsAnEndpoint) {
  client_config cc;
  auto cfg = to_engine_config(cc);
  ASSERT_TRUE(cfg);
  for (auto m : cfg->connection.order)
    EXPECT_NE(m, transport_mode::ipc);
  cc.ipc = "ipc:///tmp/aico-test-nothing.ipc";
  cfg = to_engine_config(cc);
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->connection.order.front(), transport_mode::ipc);
  EXPECT_EQ(cfg->connection.ipc.endpoint, cc.ipc);
}

TEST(PublicConfig, ErrorsNameTheKey) {
  client_config cc;
  cc.url = "ftp://nope";
  EXPECT_NE(message_of(cc).find("url:"), std::string::npos) << message_of(cc);
  EXPECT_EQ(message_of(cc).find("AICO_URL"), std::string::npos);
  cc = {};
  cc.env = {{"AICO_REQUEST_TIMEOUT_MS", "soon"}};
  EXPECT_NE(message_of(cc).find("AICO_REQUEST_TIMEOUT_MS"), std::string::npos)
    << message_of(cc);
  cc = {};
  cc.transports = {"ipc", "carrier-pigeon"};
  EXPECT_NE(message_of(cc).find("transports"), std::string::npos)
    << message_of(cc);
  cc = {};
  cc.file = "/nonexistent/aico.json";
  EXPECT_NE(message_of(cc).find("/nonexistent/aico.json"), std::string::npos)
    << message_of(cc);
  EXPECT_THROW(client_config::load("/nonexistent/aico.json", {}),
               client_error);
  // a valid one
  cc = {};
  cc.url = "http://127.0.0.1:9";
  EXPECT_EQ(message_of(cc), "no error");
}

TEST(PublicConfig, ClientRejectsABadConfiguration) {
  client_config cc;
  cc.env = {{"AICO_SHUTDOWN_TIMEOUT_MS", "-1"}};
  try {
    client c{cc};
    FAIL() << "constructed with a bad configuration";
  } catch (const client_error& e) {
    EXPECT_EQ(e.cls(), error_class::validation);
    EXPECT_FALSE(e.retryable());
    EXPECT_NE(std::string{e.what()}.find("AICO_SHUTDOWN_TIMEOUT_MS"),
              std::string::npos)
      << e.what();
  }
}

TEST(PublicConfig, LibraryVersion) {
  EXPECT_FALSE(std::string{library_version()}.empty());
}

// -- actor_engine ------------------------------------------------------------------

TEST(ActorEngine, ConnectionStreamDeliversStatesOnly) {
  test::temp_dir dir;
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  client_config cc;
  cc.url = "http://127.0.0.1:9"; // nothing listens: it keeps reconnecting
  cc.state_dir = dir.path();
  cc.shutdown_timeout = 2s;
  {
    actor_engine eng{sys, cc};
    caf::scoped_actor self{sys};
    // the current state on request
    bool answered = false;
    self->request(eng.connection(), 5s, state_atom_v)
      .receive([&](const connection_state&) { answered = true; },
               [&](const caf::error& err) { FAIL() << describe(err); });
    EXPECT_TRUE(answered);
    // a watcher gets the current state at once (and no server events)
    auto fwd = caf::actor_cast<caf::actor>(self);
    auto listener = sys.spawn(
      [fwd](connection_listener_actor::pointer)
        -> connection_listener_actor::behavior_type {
        return {
          [fwd](state_atom, const connection_state& s) {
            caf::anon_send(fwd, state_atom_v, s);
          },
        };
      });
    self->send(eng.connection(), watch_atom_v, listener);
    bool got_state = false;
    self->receive(
      [&](state_atom, const connection_state& s) {
        got_state = true;
        EXPECT_NE(s.state, link_state::connected);
      },
      caf::after(10s) >> [] {});
    EXPECT_TRUE(got_state);
    caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
    // the other handles are the engine's actors behind public interfaces
    EXPECT_TRUE(eng.chat());
    EXPECT_TRUE(eng.users());
    EXPECT_TRUE(eng.system());
    EXPECT_TRUE(eng.session());
    EXPECT_TRUE(eng.queue());
    std::vector<queue_entry> entries{queue_entry{}};
    self->request(eng.queue(), 5s, list_atom_v)
      .receive([&](std::vector<queue_entry>& xs) { entries = std::move(xs); },
               [&](const caf::error& err) { FAIL() << describe(err); });
    EXPECT_TRUE(entries.empty());
    // not logged in: the session handle says so with a classified error
    self->request(eng.session(), 5s, session_atom_v)
      .receive([&](const session_info&) { FAIL() << "a session?"; },
               [&](const caf::error& err) {
                 EXPECT_EQ(classify(err).cls, error_class::authentication)
                   << describe(err);
               });
  }
}
