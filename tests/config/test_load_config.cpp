// load_config: JSON file + AICO_* environment -> engine_config.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "src/config/load_config.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text) {
    char tmpl[] = "/tmp/aico-config-XXXXXX";
    int fd = mkstemp(tmpl);
    path = tmpl;
    std::ofstream out{path};
    out << text;
    close(fd);
  }
  ~temp_file() {
    std::remove(path.c_str());
  }
};

std::string message_of(const caf::error& err) {
  return classify(err).message;
}

using env_map = std::map<std::string, std::string>;

} // namespace

TEST(LoadConfig, DefaultsWithoutFileOrEnv) {
  auto cfg = load_config("", env_map{});
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "http://127.0.0.1:8771");
  // no IPC endpoint: IPC is dropped from the transports
  EXPECT_EQ(cfg->connection.order,
            (std::vector<transport_mode>{transport_mode::ws,
                                         transport_mode::http}));
  EXPECT_EQ(cfg->request_timeout, caf::timespan{10s});
  EXPECT_EQ(cfg->shutdown_timeout, caf::timespan{3s});
  EXPECT_EQ(cfg->connection.ws.connect_timeout, caf::timespan{3s});
  EXPECT_TRUE(cfg->state_dir.empty());
}

TEST(LoadConfig, ParsesFile) {
  temp_file f{R"({
    // comments are allowed
    "url": "http://127.0.0.1:9000/",
    "ipc": "ipc:///tmp/gw.ipc",
    "transports": ["ipc", "http"],
    "state_dir": "/tmp/state",
    "request_timeout_ms": 2500,
    "shutdown_timeout_ms": 1000,
    "connection": {"connect_timeout_ms": 700, "health_interval_ms": 4000,
                   "backoff": {"initial_ms": 100, "max_ms": 2000}},
    "tokens": {"refresh_at_fraction": 0.5},
    "queue": {"limit": 42, "max_in_flight": 2},
    "cache": {"max_entries": 10, "fallback_timeout_ms": 500},
    "resilience": {"minimum_calls": 5},
    "system": {"status_interval_ms": 1500}
  })"};
  auto cfg = load_config(f.path, env_map{});
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "http://127.0.0.1:9000");
  EXPECT_EQ(cfg->connection.ws.url, "ws://127.0.0.1:9000/api/v1/ws");
  EXPECT_EQ(cfg->connection.ipc.endpoint, "ipc:///tmp/gw.ipc");
  EXPECT_EQ(cfg->connection.order,
            (std::vector<transport_mode>{transport_mode::ipc,
                                         transport_mode::http}));
  EXPECT_EQ(cfg->state_dir, "/tmp/state");
  EXPECT_EQ(cfg->queue.state_dir, "/tmp/state");
  EXPECT_EQ(cfg->tokens.state_dir, "/tmp/state");
  EXPECT_EQ(cfg->request_timeout, caf::timespan{2500ms});
  EXPECT_EQ(cfg->tokens.request_timeout, caf::timespan{2500ms});
  EXPECT_EQ(cfg->shutdown_timeout, caf::timespan{1s});
  EXPECT_EQ(cfg->connection.ipc.connect_timeout, caf::timespan{700ms});
  EXPECT_EQ(cfg->connection.health_interval, caf::timespan{4s});
  EXPECT_EQ(cfg->connection.backoff.initial, 100ms);
  EXPECT_EQ(cfg->connection.backoff.max, 2000ms);
  EXPECT_DOUBLE_EQ(cfg->tokens.refresh_at_fraction, 0.5);
  EXPECT_EQ(cfg->queue.limit, 42u);
  EXPECT_EQ(cfg->queue.max_in_flight, 2u);
  EXPECT_EQ(cfg->cache.max_entries, 10u);
  EXPECT_EQ(cfg->cache.fallback_timeout, caf::timespan{500ms});
  EXPECT_EQ(cfg->resilience.breaker.minimum_calls, 5u);
  EXPECT_EQ(cfg->system.status_interval, caf::timespan{1500ms});
}

TEST(LoadConfig, EnvironmentOverridesFile) {
  temp_file f{R"({"url": "http://127.0.0.1:9000", "state_dir": "/a",
                  "request_timeout_ms": 2500, "transports": "ws,http"})"};
  env_map env{{"AICO_URL", "http://127.0.0.1:9100"},
              {"AICO_IPC", "ipc:///tmp/x.ipc"},
              {"AICO_TRANSPORTS", "ipc, ws"},
              {"AICO_STATE_DIR", "/b"},
              {"AICO_REQUEST_TIMEOUT_MS", "1200"},
              {"PATH", "/usr/bin"}};
  auto cfg = load_config(f.path, env);
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "http://127.0.0.1:9100");
  EXPECT_EQ(cfg->connection.ws.url, "ws://127.0.0.1:9100/api/v1/ws");
  EXPECT_EQ(cfg->connection.ipc.endpoint, "ipc:///tmp/x.ipc");
  EXPECT_EQ(cfg->connection.order,
            (std::vector<transport_mode>{transport_mode::ipc,
                                         transport_mode::ws}));
  EXPECT_EQ(cfg->state_dir, "/b");
  EXPECT_EQ(cfg->cache.state_dir, "/b");
  EXPECT_EQ(cfg->request_timeout, caf::timespan{1200ms});
}

TEST(LoadConfig, ErrorsNameTheKey) {
  struct bad_case {
    const char* text;
    const char* key;
  };
  bad_case cases[] = {
    {R"({"bogus": 1})", "bogus"},
    {R"({"queue": {"limti": 5}})", "queue.limti"},
    {R"({"queue": {"limit": 0}})", "queue.limit"},
    {R"({"queue": {"limit": "ten"}})", "queue.limit"},
    {R"({"url": "ftp://x"})", "url"},
    {R"({"url": 5})", "url"},
    {R"({"transports": ["ipc", "carrier-pigeon"]})", "transports"},
    {R"({"transports": []})", "transports"},
    {R"({"request_timeout_ms": -5})", "request_timeout_ms"},
    {R"({"connection": {"backoff": {"jitter": 2}}})",
     "connection.backoff.jitter"},
    {R"({"connection": 3})", "connection"},
    {R"({"cache": {"reset_damaged": "yes"}})", "cache.reset_damaged"},
    {R"([1, 2])", "<top>"},
    {R"({"url": )", "<file>"},
  };
  for (auto& c : cases) {
    temp_file f{c.text};
    auto cfg = load_config(f.path, env_map{});
    ASSERT_FALSE(cfg) << c.text;
    auto cl = classify(cfg.error());
    EXPECT_EQ(cl.cls, error_class::validation) << c.text;
    EXPECT_NE(cl.message.find(std::string{c.key} + ":"), std::string::npos)
      << c.text << " -> " << cl.message;
  }
}

TEST(LoadConfig, BadEnvironmentAndMissingFile) {
  auto cfg = load_config("", env_map{{"AICO_REQUEST_TIMEOUT_MS", "soon"}});
  ASSERT_FALSE(cfg);
  EXPECT_NE(message_of(cfg.error()).find("AICO_REQUEST_TIMEOUT_MS"),
            std::string::npos);
  cfg = load_config("", env_map{{"AICO_TRANSPORTS", "ipc,smoke"}});
  ASSERT_FALSE(cfg);
  EXPECT_NE(message_of(cfg.error()).find("AICO_TRANSPORTS"),
            std::string::npos);
  cfg = load_config("", env_map{{"AICO_URL", "localhost"}});
  ASSERT_FALSE(cfg);
  EXPECT_NE(message_of(cfg.error()).find("AICO_URL"), std::string::npos);
  cfg = load_config("/nonexistent/aico.json", env_map{});
  ASSERT_FALSE(cfg);
  EXPECT_NE(message_of(cfg.error()).find("/nonexistent/aico.json"),
            std::string::npos);
  // only IPC selected but no endpoint
  cfg = load_config("", env_map{{"AICO_TRANSPORTS", "ipc"}});
  ASSERT_FALSE(cfg);
  EXPECT_NE(message_of(cfg.error()).find("transports"), std::string::npos);
}
