// load_config: JSON file + AICO_* environment -> engine_config.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "actors/transport_registry.hpp"
#include "src/config/load_config.hpp"
#include "src/core/transport_modes.hpp"

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

// -- the client profile: layers, TLS, CURVE (issue 12) -----------------------------

namespace {

/// A file with `text` and `mode` in a private temp dir.
struct temp_dir_files {
  std::string dir;
  temp_dir_files() {
    char tmpl[] = "/tmp/aico-profile-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~temp_dir_files() {
    std::string cmd = "rm -rf '" + dir + "'";
    [[maybe_unused]] auto rc = std::system(cmd.c_str());
  }
  std::string file(const std::string& name, const std::string& text,
                   mode_t mode = 0600) {
    auto path = dir + "/" + name;
    std::ofstream{path} << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
};

const std::string good_pin
  = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const std::string z85_key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";

caf::expected<client_profile> profile(client_profile_inputs in) {
  return build_client_profile(in);
}

bool has_warning(const client_profile& p, const std::string& text) {
  for (auto& w : p.warnings)
    if (w.find(text) != std::string::npos)
      return true;
  return false;
}

} // namespace

TEST(ClientProfile, LayersDefaultsFileEnvironmentFlags) {
  temp_file f{R"({"url": "http://127.0.0.1:9000", "state_dir": "/a",
                  "request_timeout_ms": 2500})"};
  client_profile_inputs in;
  in.config_file = f.path;
  in.env = {{"AICO_URL", "http://127.0.0.1:9100"}, {"AICO_STATE_DIR", "/b"}};
  in.flags.url = "http://localhost:9200/";
  in.flags.timeout_s = 4;
  auto p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  auto& cfg = p->config;
  EXPECT_EQ(cfg.connection.http.base_url, "http://localhost:9200");
  EXPECT_EQ(cfg.connection.ws.url, "ws://localhost:9200/api/v1/ws");
  EXPECT_EQ(cfg.state_dir, "/b");
  EXPECT_EQ(cfg.tokens.state_dir, "/b");
  EXPECT_EQ(cfg.request_timeout, caf::timespan{4s});
  EXPECT_EQ(cfg.tokens.request_timeout, caf::timespan{4s});
  // connect timeouts never exceed the request timeout
  in.flags.timeout_s = 0.5;
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.connection.ws.connect_timeout, caf::timespan{500ms});
  EXPECT_TRUE(p->warnings.empty()) << p->warnings.front();
  // AICO_CONFIG names the file when none is given
  client_profile_inputs by_env;
  by_env.env = {{"AICO_CONFIG", f.path}};
  p = profile(by_env);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.http.base_url, "http://127.0.0.1:9000");
  // flag errors name the flag
  client_profile_inputs bad;
  bad.flags.transports = "ipc,pigeon";
  p = profile(bad);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("--transports:"), std::string::npos);
  // an unknown name is refused with the registry's names
  EXPECT_NE(message_of(p.error()).find("unknown transport 'pigeon'"),
            std::string::npos)
    << message_of(p.error());
  EXPECT_NE(message_of(p.error()).find("known transports: ipc, ws, http"),
            std::string::npos)
    << message_of(p.error());
  bad = {};
  bad.flags.url = "ftp://x";
  p = profile(bad);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("--url: expected an http:// or "
                                       "https:// URL"),
            std::string::npos)
    << message_of(p.error());
}

TEST(ClientProfile, HttpsGivesWssAndTheTlsSectionReachesBothTransports) {
  temp_dir_files d;
  auto ca = d.file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  auto cert = d.file("client.pem", "cert", 0644);
  auto key = d.file("client.key", "key", 0600);
  temp_file f{R"({"url": "https://gateway.example:8443",
                  "tls": {"ca_file": ")" + ca + R"(", "ca_dir": ")" + d.dir
              + R"(", "pin": ")" + good_pin + R"(", "client_cert": ")" + cert
              + R"(", "client_key": ")" + key + R"("}})"};
  auto cfg = load_config(f.path, env_map{});
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.http.base_url, "https://gateway.example:8443");
  EXPECT_EQ(cfg->connection.ws.url, "wss://gateway.example:8443/api/v1/ws");
  for (auto* tls : {&cfg->connection.http.tls, &cfg->connection.ws.tls}) {
    EXPECT_EQ(tls->ca_file, ca);
    EXPECT_EQ(tls->ca_dir, d.dir);
    EXPECT_EQ(tls->pinned_public_key, good_pin);
    EXPECT_EQ(tls->client_cert, cert);
    EXPECT_EQ(tls->client_key, key);
    EXPECT_FALSE(tls->insecure_skip_verify);
  }
  // the environment, then the flags, override the file
  client_profile_inputs in;
  in.config_file = f.path;
  auto other_ca = d.file("other-ca.pem", "x", 0644);
  in.env = {{"AICO_TLS_CA_FILE", other_ca}, {"AICO_TLS_PIN", good_pin}};
  auto p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.ws.tls.ca_file, other_ca);
  in.flags.tls_ca_file = ca;
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.connection.http.tls.ca_file, ca);
  EXPECT_TRUE(p->warnings.empty());
}

TEST(ClientProfile, BadTlsSettingsAreRefusedWithASentenceNamingTheSource) {
  temp_dir_files d;
  auto cert = d.file("client.pem", "cert", 0644);
  struct bad_case {
    std::string json;
    env_map env;
    std::string expect;
  };
  std::vector<bad_case> cases{
    {R"({"tls": {"ca_file": "/nonexistent/ca.pem"}})", {},
     "tls.ca_file: cannot use '/nonexistent/ca.pem' as a CA certificate "
     "file (PEM): No such file or directory"},
    {R"({"tls": {"ca_dir": "/nonexistent"}})", {},
     "tls.ca_dir: '/nonexistent' is not a directory"},
    {R"({"tls": {"pin": "abc"}})", {},
     "tls.pin: expected sha256//BASE64 (the SHA-256 of the gateway's public "
     "key"},
    {R"({"tls": {"pin": "sha1//AAAA"}})", {}, "tls.pin: expected sha256//"},
    {R"({"tls": {"verify": false}})", {}, "tls.verify: unknown key"},
    {R"({"tls": {"insecure_dev_only": "yes"}})", {},
     "tls.insecure_dev_only: expected true or false"},
    {R"({"tls": {"client_cert": ")" + cert + R"("}})", {},
     "a client certificate needs its private key"},
    {"{}", {{"AICO_TLS_PIN", "sha256//short="}},
     "AICO_TLS_PIN: expected sha256//BASE64"},
    {"{}", {{"AICO_TLS_CLIENT_KEY", d.dir + "/missing.key"}},
     "AICO_TLS_CLIENT_KEY: cannot use '" + d.dir + "/missing.key'"},
    {"{}", {{"AICO_TLS_CA_FILE", d.dir}}, "AICO_TLS_CA_FILE: '" + d.dir
                                            + "' is not a file"},
    {"{}", {{"AICO_TLS_INSECURE_DEV_ONLY", "maybe"}},
     "AICO_TLS_INSECURE_DEV_ONLY: expected 1 or 0"},
  };
  for (auto& c : cases) {
    temp_file f{c.json};
    auto cfg = load_config(f.path, c.env);
    ASSERT_FALSE(cfg) << c.json;
    EXPECT_EQ(classify(cfg.error()).cls, error_class::validation);
    EXPECT_NE(message_of(cfg.error()).find(c.expect), std::string::npos)
      << c.json << " -> " << message_of(cfg.error());
  }
  client_profile_inputs in;
  in.flags.tls_pin = "sha256//not-base64!";
  auto p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("--tls-pin: expected sha256//BASE64"),
            std::string::npos)
    << message_of(p.error());
}

TEST(ClientProfile, WarningsForInsecureAndPlaintextOffLoopback) {
  client_profile_inputs in;
  // the demo: loopback plaintext, no warning
  auto p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->warnings.empty());
  in.flags.url = "http://[::1]:8771";
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->warnings.empty());
  // plaintext to another host
  in.flags.url = "http://gateway.example:8771";
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(has_warning(*p, "the connection to http://gateway.example:8771 "
                              "is not encrypted (http://)"));
  // WebSocket only: the ws:// URL is named
  in.flags.transports = "ws";
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(has_warning(*p, "ws://gateway.example:8771/api/v1/ws is not "
                              "encrypted (ws://)"));
  // https: none; the development switch: always
  in.flags.url = "https://gateway.example:8771";
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->warnings.empty());
  in.flags.tls_insecure_dev_only = true;
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->config.connection.ws.tls.insecure_skip_verify);
  EXPECT_TRUE(has_warning(*p, "TLS certificate verification is OFF"));
  client_profile_inputs env_in;
  env_in.env = {{"AICO_TLS_INSECURE_DEV_ONLY", "1"}};
  p = profile(env_in);
  ASSERT_TRUE(p);
  EXPECT_TRUE(has_warning(*p, "verification is OFF"));
  // TLS options with an http:// URL are pointless: said so
  client_profile_inputs unused;
  unused.flags.tls_pin = good_pin;
  p = profile(unused);
  ASSERT_TRUE(p);
  EXPECT_TRUE(has_warning(*p, "TLS options are set but"));
  // a client key others can read
  temp_dir_files d;
  client_profile_inputs open_key;
  open_key.flags.url = "https://127.0.0.1:1";
  open_key.flags.tls_client_cert = d.file("c.pem", "c", 0644);
  open_key.flags.tls_client_key = d.file("c.key", "k", 0644);
  p = profile(open_key);
  ASSERT_TRUE(p);
  EXPECT_TRUE(has_warning(*p, "can be read by other users"));
}

TEST(ClientProfile, LoopbackHosts) {
  for (auto u : {"http://127.0.0.1:1", "https://localhost", "ws://[::1]:5/x",
                 "http://127.1.2.3/", "http://LOCALHOST:80"})
    EXPECT_TRUE(is_loopback_url(u)) << u;
  for (auto u : {"http://10.0.0.1:1", "https://gateway.example",
                 "http://127.0.0.1.example.com/", "http://[::2]:1",
                 "http://localhost.evil:1"})
    EXPECT_FALSE(is_loopback_url(u)) << u;
}

TEST(ClientProfile, CurveForIpc) {
  temp_dir_files d;
  // tcp:// without the gateway's key: refused with a sentence
  client_profile_inputs in;
  in.flags.endpoints["ipc"] = "tcp://127.0.0.1:5555";
  auto p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("the IPC endpoint tcp://127.0.0.1:5555 "
                                       "is reached over TCP, which needs "
                                       "CurveZMQ"),
            std::string::npos)
    << message_of(p.error());
  // ... unless IPC is not used at all
  in.flags.transports = "ws,http";
  EXPECT_TRUE(profile(in));
  in.flags.transports.reset();
  // with the key: fine; the client's key file defaults into the state dir
  in.flags.ipc_server_key = z85_key;
  in.flags.state_dir = d.dir;
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.ipc.curve_server_key, z85_key);
  EXPECT_EQ(p->config.connection.ipc.curve_key_file, d.dir + "/ipc-client.key");
  // a malformed key
  in.flags.ipc_server_key = "short";
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("--ipc-server-key: expected the "
                                       "gateway's CURVE public key (40 Z85 "
                                       "characters"),
            std::string::npos)
    << message_of(p.error());
  // the key from a file (the gateway's ipc-curve.pub), by env and config
  auto pub = d.file("ipc-curve.pub", z85_key + "\n", 0644);
  client_profile_inputs by_env;
  by_env.env = {{"AICO_IPC", "tcp://127.0.0.1:5555"},
                {"AICO_IPC_SERVER_KEY_FILE", pub},
                {"AICO_IPC_CLIENT_KEY_FILE", d.dir + "/mine.key"}};
  p = profile(by_env);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.ipc.curve_server_key, z85_key);
  EXPECT_EQ(p->config.connection.ipc.curve_key_file, d.dir + "/mine.key");
  auto not_a_key = d.file("junk.pub", "hello\n", 0644);
  temp_file f{R"({"ipc": "tcp://127.0.0.1:1", "curve": {"server_key_file": ")"
              + not_a_key + R"("}})"};
  auto cfg = load_config(f.path, env_map{});
  ASSERT_FALSE(cfg);
  EXPECT_NE(message_of(cfg.error()).find("curve.server_key_file: '" + not_a_key
                                         + "' does not hold a CURVE public "
                                           "key"),
            std::string::npos)
    << message_of(cfg.error());
  temp_file g{R"({"ipc": "tcp://127.0.0.1:1", "curve": {"server_key": ")"
              + z85_key + R"(", "client_key_file": "/x/k"}})"};
  cfg = load_config(g.path, env_map{});
  ASSERT_TRUE(cfg) << describe(cfg.error());
  EXPECT_EQ(cfg->connection.ipc.curve_key_file, "/x/k");
  // not an IPC endpoint at all
  client_profile_inputs odd;
  odd.flags.endpoints["ipc"] = "udp://127.0.0.1:1";
  p = profile(odd);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("expected an ipc:// or tcp:// "
                                       "endpoint"),
            std::string::npos);
}

// -- wire profiles (issue 14, docs/profiles.md) --------------------------------------

TEST(ClientProfile, WireProfileFromFileEnvironmentAndFlag) {
  client_profile_inputs in;
  auto p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.profile, wire_profile::gateway);
  temp_file f{R"({"profile": "aico"})"};
  in.config_file = f.path;
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.profile, wire_profile::aico);
  // the environment overrides the file, the flag the environment
  in.env = {{"AICO_PROFILE", "gateway"}};
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.profile, wire_profile::gateway);
  in.flags.profile = "aico";
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.profile, wire_profile::aico);
  client_profile_inputs by_env;
  by_env.env = {{"AICO_PROFILE", "aico"}};
  p = profile(by_env);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.profile, wire_profile::aico);
}

TEST(ClientProfile, UnknownProfileIsAClearError) {
  client_profile_inputs in;
  in.flags.profile = "flutter";
  auto p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_EQ(message_of(p.error()),
            "config: --profile: unknown profile 'flutter' (use gateway, the "
            "default, or aico)");
  in = {};
  in.env = {{"AICO_PROFILE", "Aico"}};
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("AICO_PROFILE: unknown profile 'Aico'"),
            std::string::npos);
  temp_file f{R"({"profile": 1})"};
  in = {};
  in.config_file = f.path;
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("profile: expected \"gateway\" or "
                                       "\"aico\""),
            std::string::npos)
    << message_of(p.error());
}

TEST(ClientProfile, AicoProfileTransportsAndWebSocketPort) {
  client_profile_inputs in;
  in.flags.profile = "aico";
  in.flags.url = "http://127.0.0.1:8771";
  auto p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  auto& c = p->config.connection;
  EXPECT_EQ(c.order, (std::vector<transport_mode>{transport_mode::ws,
                                                  transport_mode::http}));
  // the backend's WebSocket server has its own port
  EXPECT_EQ(c.ws.url, "ws://127.0.0.1:8772");
  // the transports use the profile: nothing to warn about
  EXPECT_TRUE(p->warnings.empty());
  // an explicit ws_url is kept (a later --url derives the URL anew, as
  // with the gateway profile)
  temp_file f{R"({"url": "http://127.0.0.1:8771",
                  "connection": {"ws_url": "ws://127.0.0.1:9999/x"}})"};
  in.config_file = f.path;
  in.flags.url.reset();
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.ws.url, "ws://127.0.0.1:9999/x");
  in.config_file.clear();
  // https gives wss on the same host
  in.flags.url = "https://[::1]:8771";
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.ws.url, "wss://[::1]:8772");
  // explicit transports without ipc are kept in their order
  in.flags.url = "http://127.0.0.1:8771";
  in.flags.transports = "http,ws";
  p = profile(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.connection.order,
            (std::vector<transport_mode>{transport_mode::http,
                                         transport_mode::ws}));
  // the gateway profile's defaults are unchanged (ipc kept with an endpoint)
  client_profile_inputs gw;
  gw.flags.endpoints["ipc"] = "ipc:///tmp/x.ipc";
  p = profile(gw);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->config.connection.order.front(), transport_mode::ipc);
  EXPECT_EQ(p->config.connection.ws.url, "ws://127.0.0.1:8771/api/v1/ws");
}

TEST(ClientProfile, AicoProfileRefusesGrpc) {
  client_profile_inputs in;
  in.flags.profile = "aico";
  in.flags.transports = "ws,grpc,http";
  auto p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_EQ(message_of(p.error()),
            "config: transports: the aico profile cannot use the grpc "
            "transport, because the AICO backend has no gRPC door; use ws "
            "and http (e.g. --transports ws,http)");
  // a gRPC endpoint is warned about and dropped
  in = {};
  in.flags.profile = "aico";
  in.flags.endpoints["grpc"] = "127.0.0.1:50051";
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_TRUE(p->config.connection.grpc.endpoint.empty());
  ASSERT_EQ(p->warnings.size(), 1u);
  EXPECT_NE(p->warnings[0].find("gRPC settings are not used"),
            std::string::npos);
}

TEST(ClientProfile, AicoProfileRefusesIpc) {
  client_profile_inputs in;
  in.flags.profile = "aico";
  in.flags.transports = "ipc,ws,http";
  auto p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_EQ(message_of(p.error()),
            "config: transports: the aico profile cannot use the ipc "
            "transport, because the AICO backend has no client-facing "
            "ZeroMQ; use ws and http (e.g. --transports ws,http)");
  // the same from the environment
  in = {};
  in.env = {{"AICO_PROFILE", "aico"}, {"AICO_TRANSPORTS", "ipc"}};
  p = profile(in);
  ASSERT_FALSE(p);
  // an IPC endpoint is warned about and dropped
  in = {};
  in.flags.profile = "aico";
  in.flags.endpoints["ipc"] = "ipc:///tmp/x.ipc";
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_TRUE(p->config.connection.ipc.endpoint.empty());
  ASSERT_EQ(p->warnings.size(), 1u);
  EXPECT_NE(p->warnings[0].find("not used with the aico profile"),
            std::string::npos);
}

TEST(ClientProfile, GrpcEndpointFromFileEnvironmentAndFlag) {
  // without an endpoint grpc is dropped from the order (as ipc), and the
  // default order does not name it
  client_profile_inputs in;
  in.flags.transports = "grpc,http";
  auto p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.order,
            (std::vector<transport_mode>{transport_mode::http}));
  in.flags.transports = "grpc";
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("gRPC needs an endpoint (--grpc"),
            std::string::npos)
    << message_of(p.error());
  // the file key, AICO_GRPC, --grpc: each layer over the one below
  temp_file f{R"({"grpc": "127.0.0.1:7001", "transports": ["grpc", "http"],
                  "connection": {"connect_timeout_ms": 1500,
                                 "ping_interval_ms": 700,
                                 "dead_peer_timeout_ms": 2100}})"};
  in = {};
  in.config_file = f.path;
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  auto& g = p->config.connection.grpc;
  EXPECT_EQ(g.endpoint, "127.0.0.1:7001");
  EXPECT_EQ(p->config.connection.order,
            (std::vector<transport_mode>{transport_mode::grpc,
                                         transport_mode::http}));
  EXPECT_EQ(g.connect_timeout, caf::timespan{1500ms});
  EXPECT_EQ(g.ping_interval, caf::timespan{700ms});
  EXPECT_EQ(g.dead_peer_timeout, caf::timespan{2100ms});
  in.env = {{"AICO_GRPC", "localhost:7002"}};
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.grpc.endpoint, "localhost:7002");
  in.flags.endpoints["grpc"] = "grpc://[::1]:7003";
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.grpc.endpoint, "grpc://[::1]:7003");
  EXPECT_TRUE(p->warnings.empty()) << p->warnings.front();
  // grpc anywhere in the order
  in.flags.transports = "ws,grpc,http";
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  EXPECT_EQ(p->config.connection.order,
            (std::vector<transport_mode>{transport_mode::ws,
                                         transport_mode::grpc,
                                         transport_mode::http}));
  // plaintext gRPC off this machine is refused; grpcs:// is fine
  in = {};
  in.flags.transports = "grpc";
  in.flags.endpoints["grpc"] = "gw.example:443";
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("not on this machine and not "
                                       "encrypted"),
            std::string::npos)
    << message_of(p.error());
  in.flags.endpoints["grpc"] = "grpcs://gw.example:443";
  p = profile(in);
  ASSERT_TRUE(p) << describe(p.error());
  // a wrong scheme names the forms
  in.flags.endpoints["grpc"] = "http://127.0.0.1:7001";
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("grpcs://HOST:PORT"),
            std::string::npos)
    << message_of(p.error());
  // the aico profile has no gRPC door
  in.flags.endpoints["grpc"] = "127.0.0.1:7001";
  in.flags.profile = "aico";
  in.flags.transports = "grpc,http";
  p = profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("cannot use the grpc transport"),
            std::string::npos)
    << message_of(p.error());
}

TEST(LoadConfig, GrpcTransportName) {
  transport_mode m{};
  ASSERT_TRUE(from_string("grpc", m));
  EXPECT_EQ(m, transport_mode::grpc);
  EXPECT_STREQ(to_string(transport_mode::grpc), "grpc");
}

// Every transport configured by an endpoint (the registry's entries with
// a transport_endpoint: ipc, grpc) has its config-file key, its AICO_
// variable and its --flag, checked by the entry and named in the error.
TEST(ClientProfile, EveryEndpointTransportHasKeyVariableAndFlag) {
  int endpoints = 0;
  for (auto& e : transport_registry()) {
    if (!e.endpoint)
      continue;
    ++endpoints;
    std::string name = e.name;
    auto prefix = "config: " + name + ": ";
    // a bad endpoint through each layer is refused by the entry's check
    temp_file f{"{\"" + name + "\": \"no endpoint here\"}"};
    client_profile_inputs file;
    file.config_file = f.path;
    file.flags.transports = name;
    client_profile_inputs env;
    env.env = {{endpoint_variable(e), "no endpoint here"}};
    env.flags.transports = name;
    client_profile_inputs flag;
    flag.flags.endpoints[name] = "no endpoint here";
    flag.flags.transports = name;
    for (auto* in : {&file, &env, &flag}) {
      auto p = build_client_profile(*in);
      ASSERT_FALSE(p) << name;
      EXPECT_EQ(message_of(p.error()).rfind(prefix, 0), 0u)
        << message_of(p.error());
    }
    // without one it is dropped, and alone it says where to give it
    client_profile_inputs none;
    none.flags.transports = name;
    auto p = build_client_profile(none);
    ASSERT_FALSE(p);
    EXPECT_NE(message_of(p.error()).find(
                std::string{e.title} + " needs an endpoint (--" + name + ", "
                + endpoint_variable(e) + " or \"" + name
                + "\" in the config file)"),
              std::string::npos)
      << message_of(p.error());
  }
  EXPECT_EQ(endpoints, 2); // ipc, grpc
  EXPECT_EQ(endpoint_variable(*find_transport("grpc")), "AICO_GRPC");
}

TEST(ClientProfile, EndpointFlagOfOtherTransportsIsRefused) {
  client_profile_inputs in;
  in.flags.endpoints["ws"] = "ws://127.0.0.1:1/api/v1/ws";
  auto p = build_client_profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("no transport named 'ws' is "
                                       "configured by an endpoint"),
            std::string::npos)
    << message_of(p.error());
  in.flags.endpoints = {{"pigeon", "x"}};
  p = build_client_profile(in);
  ASSERT_FALSE(p);
  EXPECT_NE(message_of(p.error()).find("--pigeon"), std::string::npos)
    << message_of(p.error());
}

TEST(ClientProfile, GrpcEndpointWithoutPortIsRefusedByTheLoader) {
  client_profile_inputs in;
  in.flags.transports = "grpc,http";
  in.flags.endpoints["grpc"] = "127.0.0.1";
  auto p = build_client_profile(in);
  ASSERT_FALSE(p);
  EXPECT_EQ(message_of(p.error()),
            "config: grpc: expected HOST:PORT (with a port 1-65535), got "
            "'127.0.0.1'");
  in.flags.endpoints["grpc"] = "[::1]:50051";
  p = build_client_profile(in);
  ASSERT_TRUE(p) << describe(p.error());
}

// The registry's names are the modes' names, and every mode has an entry.
TEST(LoadConfig, RegistryNamesAreTheModeNames) {
  EXPECT_EQ(transport_registry().size(), transport_modes().size());
  for (auto m : transport_modes()) {
    auto e = find_transport(m);
    ASSERT_NE(e, nullptr) << to_string(m);
    EXPECT_STREQ(e->name, to_string(m));
    transport_mode back{};
    ASSERT_TRUE(from_string(e->name, back));
    EXPECT_EQ(back, m);
  }
  transport_mode x{};
  EXPECT_FALSE(from_string("pigeon", x));
}
