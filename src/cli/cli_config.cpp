#include "cli_config.hpp"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <sstream>

#include <CLI/CLI.hpp>

using namespace std::chrono_literals;

namespace aico::cli {

std::string default_state_dir() {
  if (auto x = std::getenv("AICO_STATE_DIR"))
    return x;
  if (auto x = std::getenv("XDG_STATE_HOME"))
    return std::string{x} + "/aico";
  if (auto h = std::getenv("HOME"))
    return std::string{h} + "/.local/state/aico";
  return ".aico-state";
}

void add_connection_options(CLI::App& app, connection_options& o) {
  app.add_option("--url", o.url, "Gateway base URL (REST and WebSocket)")
    ->capture_default_str();
  app.add_option("--ipc", o.ipc, "Gateway IPC endpoint (ipc://PATH); IPC is "
                                 "skipped without it");
  app.add_option("--transports", o.transports,
                 "Transports to use, best first")
    ->capture_default_str();
  app.add_option("--state-dir", o.state_dir,
                 "Where tokens, the offline queue and the cache are kept")
    ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "Seconds allowed per request")
    ->capture_default_str()
    ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
    ->check(CLI::Range(0.1, 3600.0));
}

void apply_environment(connection_options& o) {
  o.state_dir = default_state_dir();
  if (auto x = std::getenv("AICO_URL"))
    o.url = x;
  if (auto x = std::getenv("AICO_IPC"))
    o.ipc = x;
}

std::string new_message_id() {
  static const char* hex = "0123456789abcdef";
  std::random_device rd;
  std::mt19937_64 rng{(static_cast<uint64_t>(rd()) << 32) ^ rd()};
  std::string id = "m-";
  for (int i = 0; i < 24; ++i)
    id += hex[rng() % 16];
  return id;
}

std::optional<engine_config> make_config(const connection_options& o,
                                         std::string& err) {
  engine_config cfg;
  auto& c = cfg.connection;
  auto url = o.url;
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  if (url.rfind("http://", 0) != 0) {
    err = "--url must start with http:// (got '" + o.url + "')";
    return std::nullopt;
  }
  c.http.base_url = url;
  c.ws.url = "ws://" + url.substr(7) + "/api/v1/ws";
  c.ipc.endpoint = o.ipc;
  c.order.clear();
  std::stringstream ss{o.transports};
  std::string item;
  while (std::getline(ss, item, ',')) {
    transport_mode m;
    if (!from_string(item, m)) {
      err = "--transports: unknown transport '" + item
            + "' (use ipc, ws, http)";
      return std::nullopt;
    }
    if (m == transport_mode::ipc && o.ipc.empty())
      continue; // no endpoint given: skip IPC
    if (std::find(c.order.begin(), c.order.end(), m) == c.order.end())
      c.order.push_back(m);
  }
  if (c.order.empty()) {
    err = "no transport left to use (IPC needs --ipc ENDPOINT)";
    return std::nullopt;
  }
  auto t = std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(o.timeout_s));
  cfg.request_timeout = t;
  c.http.connect_timeout = c.ws.connect_timeout = c.ipc.connect_timeout
    = std::min<caf::timespan>(t, 3s);
  c.ws.ping_interval = c.ipc.ping_interval = 5s;
  c.ws.dead_peer_timeout = c.ipc.dead_peer_timeout = 15s;
  c.health_interval = 10s;
  c.backoff = {std::chrono::milliseconds{250}, 1.6, 0.2,
               std::chrono::milliseconds{5000}};
  cfg.state_dir = o.state_dir;
  cfg.tokens.state_dir = o.state_dir;
  cfg.tokens.request_timeout = t;
  cfg.shutdown_timeout = 3s;
  return cfg;
}

} // namespace aico::cli
