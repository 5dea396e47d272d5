// aico-gateway: the reference gateway (REST + WebSocket + ZeroMQ IPC).
// Contract: docs/protocol.md.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>

#include "gateway/api.hpp"
#include "gateway/http_server.hpp"
#include "gateway/ipc_server.hpp"

namespace fs = std::filesystem;
using namespace aico::gateway;

namespace {

/// Parses NAME:PASSWORD[:ROLE].
std::optional<user_spec> parse_user(const std::string& s, std::string& err) {
  auto c1 = s.find(':');
  if (c1 == std::string::npos || c1 == 0) {
    err = "--user expects NAME:PASSWORD[:ROLE], got '" + s + "'";
    return std::nullopt;
  }
  user_spec u;
  u.username = s.substr(0, c1);
  auto rest = s.substr(c1 + 1);
  auto c2 = rest.rfind(':');
  if (c2 != std::string::npos
      && (rest.substr(c2 + 1) == "admin" || rest.substr(c2 + 1) == "user")) {
    u.password = rest.substr(0, c2);
    u.role = rest.substr(c2 + 1);
  } else {
    u.password = rest;
  }
  if (u.password.empty()) {
    err = "--user '" + u.username + "': empty password";
    return std::nullopt;
  }
  for (char ch : u.username)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'
          || ch == '-' || ch == '.')) {
      err = "--user '" + u.username
            + "': names may only contain letters, digits, '_', '-', '.'";
      return std::nullopt;
    }
  return u;
}

bool parse_listen(const std::string& s, std::string& host, uint16_t& port,
                  std::string& err) {
  auto c = s.rfind(':');
  if (c == std::string::npos || c == 0 || c + 1 == s.size()) {
    err = "--listen expects HOST:PORT, got '" + s + "'";
    return false;
  }
  host = s.substr(0, c);
  try {
    size_t used = 0;
    auto p = std::stoul(s.substr(c + 1), &used);
    if (used != s.size() - c - 1 || p > 65535)
      throw std::out_of_range("port");
    port = static_cast<uint16_t>(p);
  } catch (...) {
    err = "--listen: invalid port in '" + s + "'";
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"aico-gateway: reference gateway (REST + WebSocket + ZeroMQ "
               "IPC) for the aico client engine"};
  std::string data_dir;
  std::string listen = "127.0.0.1:8771";
  std::string ipc;
  std::vector<std::string> users;
  gateway_config cfg;
  http_server_config http_cfg;
  ipc_server_config ipc_cfg;
  app.add_option("--data-dir", data_dir,
                 "Directory for the database and JWT secret (created)")
    ->required();
  app.add_option("--listen", listen, "HOST:PORT for REST and WebSocket "
                                     "(port 0 picks a free one)")
    ->capture_default_str();
  app.add_option("--ipc", ipc, "ZeroMQ endpoint for IPC (default "
                               "ipc://DATA_DIR/gateway.ipc; 'none' disables)");
  app.add_option("--user", users, "NAME:PASSWORD[:ROLE] (role user|admin), "
                                  "repeatable; created or updated at start");
  app.add_option("--access-ttl", cfg.access_ttl_s,
                 "Access token lifetime in seconds")
    ->capture_default_str()
    ->check(CLI::Range(1, 365 * 24 * 3600));
  app.add_option("--refresh-ttl", cfg.refresh_ttl_s,
                 "Refresh token lifetime in seconds")
    ->capture_default_str()
    ->check(CLI::Range(1, 10 * 365 * 24 * 3600));
  app.add_flag("--enable-faults", cfg.enable_faults,
               "Enable POST /admin/faults (for tests)");
  app.add_option("--max-body", cfg.max_body_bytes,
                 "Largest accepted request body in bytes")
    ->capture_default_str()
    ->check(CLI::Range(1024, 1024 * 1024));
  app.add_option("--rate-limit", cfg.rate_limit_per_s,
                 "Requests per second per user (0 = unlimited)")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 1e6));
  app.add_option("--replay-events", cfg.replay_events,
                 "Events kept for subscribers resuming from a seq "
                 "(0 = no replay)")
    ->capture_default_str()
    ->check(CLI::Range(0, 1000000));
  app.add_option("--replay-seconds", cfg.replay_seconds,
                 "How long events are kept for replay")
    ->capture_default_str()
    ->check(CLI::Range(0, 86400));
  app.add_option("--bot-delay-ms", cfg.bot_chunk_delay_ms,
                 "Delay between streamed bot reply chunks")
    ->capture_default_str()
    ->check(CLI::Range(0, 10000));
  bool no_bot = false;
  app.add_flag("--no-bot", no_bot, "Disable the companion bot");
  app.add_option("--threads", http_cfg.threads, "HTTP/WebSocket I/O threads")
    ->capture_default_str()
    ->check(CLI::Range(1, 64));
  app.add_option("--ws-idle-timeout", http_cfg.ws_idle_timeout_s,
                 "Close a WebSocket silent for this many seconds")
    ->capture_default_str()
    ->check(CLI::Range(1, 86400));
  app.add_option("--ipc-peer-timeout", ipc_cfg.peer_timeout_s,
                 "Stop events to an IPC peer silent for this many seconds")
    ->capture_default_str()
    ->check(CLI::Range(1, 86400));
  CLI11_PARSE(app, argc, argv);

  cfg.bot_enabled = !no_bot;
  cfg.version = AICO_VERSION;
  std::string err;
  for (auto& s : users) {
    auto u = parse_user(s, err);
    if (!u) {
      std::cerr << "aico-gateway: " << err << "\n";
      return 2;
    }
    cfg.users.push_back(*u);
  }
  if (!parse_listen(listen, http_cfg.host, http_cfg.port, err)) {
    std::cerr << "aico-gateway: " << err << "\n";
    return 2;
  }
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec || !fs::is_directory(data_dir)) {
    std::cerr << "aico-gateway: cannot create data directory '" << data_dir
              << "': " << ec.message() << "\n";
    return 1;
  }
  cfg.data_dir = fs::absolute(data_dir).string();
  if (ipc.empty())
    ipc = "ipc://" + (fs::path{cfg.data_dir} / "gateway.ipc").string();
  bool ipc_enabled = ipc != "none";
  if (ipc_enabled && ipc.rfind("ipc://", 0) == 0 && ipc.size() - 6 > 100) {
    std::cerr << "aico-gateway: IPC path too long for a Unix socket (max "
                 "100 characters): "
              << ipc << "\n";
    return 2;
  }
  ipc_cfg.endpoint = ipc;

  // Block the stop signals in every thread; main waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<api> core;
  std::unique_ptr<http_server> http;
  std::unique_ptr<ipc_server> ipc_srv;
  try {
    core = std::make_unique<api>(cfg);
    http = std::make_unique<http_server>(*core, http_cfg);
    http->start();
    if (ipc_enabled) {
      ipc_srv = std::make_unique<ipc_server>(*core, ipc_cfg);
      ipc_srv->start();
    }
  } catch (const std::exception& e) {
    std::cerr << "aico-gateway: " << e.what() << "\n";
    if (http)
      http->stop();
    if (core)
      core->stop();
    return 1;
  }
  auto port = std::to_string(http->port());
  std::cout << "ready http=http://" << http_cfg.host << ":" << port
            << " ws=ws://" << http_cfg.host << ":" << port << "/api/v1/ws"
            << " ipc=" << (ipc_srv ? ipc_srv->endpoint() : "none")
            << std::endl;

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "aico-gateway: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
            << ", stopping" << std::endl;
  http->stop();
  if (ipc_srv)
    ipc_srv->stop();
  core->stop();
  return 0;
}
