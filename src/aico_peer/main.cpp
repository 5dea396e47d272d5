// aico-backend-peer: a test peer that reproduces the real AICO backend's
// client-facing wire (encrypted REST, UUID + PIN login, NDJSON streaming,
// WebSocket adapter with auth frames), quirks included. docs/profiles.md.
#include <pthread.h>
#include <signal.h>

#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "aico_peer/backend.hpp"
#include "aico_peer/server.hpp"

namespace fs = std::filesystem;
using namespace aico::peer;

namespace {

/// Parses UUID:PIN:NAME[:ROLE]; an empty PIN makes a user without a PIN.
std::optional<user_spec> parse_user(const std::string& s, std::string& err) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    auto c = s.find(':', start);
    parts.push_back(s.substr(start, c - start));
    if (c == std::string::npos)
      break;
    start = c + 1;
  }
  if (parts.size() < 3 || parts.size() > 4) {
    err = "a user is UUID:PIN:NAME[:ROLE], got '" + s + "'";
    return std::nullopt;
  }
  static const std::regex uuid_re{
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    "[0-9a-fA-F]{12}$"};
  user_spec u;
  u.uuid = parts[0];
  for (auto& c : u.uuid)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  u.pin = parts[1];
  u.name = parts[2];
  if (parts.size() == 4)
    u.role = parts[3];
  if (!std::regex_match(u.uuid, uuid_re)) {
    err = "user '" + s + "': '" + parts[0]
          + "' is not a UUID "
            "(8-4-4-4-12 hex digits)";
    return std::nullopt;
  }
  if (!u.pin.empty()
      && (u.pin.size() < 4 || u.pin.size() > 8
          || u.pin.find_first_not_of("0123456789") != std::string::npos)) {
    err = "user '" + u.uuid
          + "': the PIN must be 4 to 8 digits (or empty "
            "for a user without a PIN)";
    return std::nullopt;
  }
  if (u.name.empty()) {
    err = "user '" + u.uuid + "': empty name";
    return std::nullopt;
  }
  if (u.role != "user" && u.role != "admin") {
    err = "user '" + u.uuid + "': role must be 'user' or 'admin', got '"
          + u.role + "'";
    return std::nullopt;
  }
  return u;
}

bool parse_listen(const std::string& what, const std::string& s,
                  std::string& host, uint16_t& port, std::string& err) {
  auto c = s.rfind(':');
  if (c == std::string::npos || c == 0 || c + 1 == s.size()) {
    err = what + " expects HOST:PORT, got '" + s + "'";
    return false;
  }
  host = s.substr(0, c);
  auto p = s.substr(c + 1);
  if (p.find_first_not_of("0123456789") != std::string::npos || p.size() > 5
      || std::stoul(p) > 65535) {
    err = what + ": invalid port in '" + s + "'";
    return false;
  }
  port = static_cast<uint16_t>(std::stoul(p));
  return true;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"aico-backend-peer: a test server reproducing the AICO "
               "backend's client-facing wire (docs/profiles.md)"};
  peer_config cfg;
  server_config srv;
  std::string listen = "127.0.0.1:8771";
  std::string ws_listen = "127.0.0.1:8772";
  std::vector<std::string> users;
  std::string users_file;
  app
    .add_option("--data-dir", cfg.data_dir,
                "Directory for peer.db, identity.key and jwt.secret "
                "(created)")
    ->required();
  app
    .add_option("--listen", listen,
                "HOST:PORT of the REST API (port 0 picks a free one)")
    ->capture_default_str();
  app
    .add_option("--ws-listen", ws_listen,
                "HOST:PORT of the WebSocket adapter (port 0 picks a free "
                "one)")
    ->capture_default_str();
  app.add_option("--user", users,
                 "UUID:PIN:NAME[:ROLE] (role user|admin; empty PIN = no PIN "
                 "configured), repeatable; created or updated at start");
  app.add_option("--users-file", users_file,
                 "File with one UUID:PIN:NAME[:ROLE] per line ('#' comments)");
  app
    .add_option("--access-ttl", cfg.access_ttl_s,
                "Access token (and session row) lifetime in seconds")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{1}, int64_t{365} * 24 * 3600));
  app
    .add_option("--refresh-ttl", cfg.refresh_ttl_s,
                "Refresh token lifetime in seconds")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{1}, int64_t{10} * 365 * 24 * 3600));
  app
    .add_option("--channel-ttl", cfg.channel_ttl_s,
                "Encryption channel lifetime in seconds")
    ->capture_default_str()
    ->check(CLI::Range(0.01, 1e7));
  app
    .add_option("--handshake-window", cfg.handshake_window_s,
                "Accepted |now - timestamp| of a handshake in seconds")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 1e7));
  app
    .add_option("--lockout-seconds", cfg.lockout_s,
                "How long 5 failed PINs lock an account")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 1e7));
  app
    .add_option("--reply-timeout", cfg.reply_timeout_s,
                "Non-streaming send: seconds before 'Request timed out'")
    ->capture_default_str()
    ->check(CLI::Range(0.01, 3600.0));
  app
    .add_option("--stream-timeout", cfg.stream_timeout_s,
                "Streaming send: seconds from the stream's start before "
                "'Streaming timeout'")
    ->capture_default_str()
    ->check(CLI::Range(0.01, 3600.0));
  app
    .add_option("--model-delay-ms", cfg.model_delay_ms,
                "Delay between the fake model's chunks")
    ->capture_default_str()
    ->check(CLI::Range(0, 10000));
  app
    .add_option("--thinking-chunks", cfg.thinking_chunks,
                "Thinking chunks the fake model streams before its reply")
    ->capture_default_str()
    ->check(CLI::Range(0, 100));
  app
    .add_option("--hang-timeout", cfg.hang_timeout_s,
                "Bound of the plaintext-to-protected-path hang in seconds")
    ->capture_default_str()
    ->check(CLI::Range(0.01, 86400.0));
  app
    .add_option("--history-ttl", cfg.history_ttl_s,
                "History shows messages younger than this (working memory)")
    ->capture_default_str()
    ->check(CLI::Range(1.0, 1e9));
  app
    .add_option("--keep-alive-timeout", srv.keep_alive_s,
                "Idle seconds before a keep-alive connection is closed")
    ->capture_default_str()
    ->check(CLI::Range(0.01, 3600.0));
  app
    .add_option("--ws-heartbeat-interval", cfg.ws_heartbeat_interval_s,
                "WebSocket heartbeat check period; a connection without a "
                "heartbeat for 3 periods is closed")
    ->capture_default_str()
    ->check(CLI::Range(0.01, 3600.0));
  app
    .add_option("--ws-max-connections", cfg.ws_max_connections,
                "WebSocket connections before new ones get 1013")
    ->capture_default_str()
    ->check(CLI::Range(1, 1000000));
  app.add_flag("--enable-faults", cfg.enable_faults,
               "Enable the test-only /_peer/* routes (faults, message "
               "listing, WebSocket drop)");
  CLI11_PARSE(app, argc, argv);

  std::string err;
  if (!users_file.empty()) {
    std::ifstream in(users_file);
    if (!in) {
      std::cerr << "aico-backend-peer: cannot read users file '" << users_file
                << "'\n";
      return 2;
    }
    std::string line;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
        line.pop_back();
      auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#')
        continue;
      users.push_back(line.substr(first));
    }
  }
  for (auto& s : users) {
    auto u = parse_user(s, err);
    if (!u) {
      std::cerr << "aico-backend-peer: " << err << "\n";
      return 2;
    }
    cfg.users.push_back(*u);
  }
  if (!parse_listen("--listen", listen, srv.http_host, srv.http_port, err)
      || !parse_listen("--ws-listen", ws_listen, srv.ws_host, srv.ws_port,
                       err)) {
    std::cerr << "aico-backend-peer: " << err << "\n";
    return 2;
  }
  std::error_code ec;
  fs::create_directories(cfg.data_dir, ec);
  if (ec || !fs::is_directory(cfg.data_dir)) {
    std::cerr << "aico-backend-peer: cannot create data directory '"
              << cfg.data_dir << "': " << ec.message() << "\n";
    return 1;
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<backend> be;
  std::unique_ptr<server> srv_ptr;
  try {
    be = std::make_unique<backend>(cfg);
    srv_ptr = std::make_unique<server>(*be, srv);
    srv_ptr->start();
  } catch (const std::exception& e) {
    std::cerr << "aico-backend-peer: " << e.what() << "\n";
    return 1;
  }
  std::cout << "ready http=http://" << srv.http_host << ":"
            << srv_ptr->http_port() << " ws=ws://" << srv.ws_host << ":"
            << srv_ptr->ws_port() << " identity=" << be->identity_key_b64()
            << std::endl;

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "aico-backend-peer: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
            << ", stopping" << std::endl;
  srv_ptr->stop();
  srv_ptr.reset();
  be.reset();
  return 0;
}
