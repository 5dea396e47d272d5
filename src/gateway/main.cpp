// aico-gateway: the reference gateway (REST + WebSocket + ZeroMQ IPC + gRPC).
// Contract: docs/protocol.md.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>

#include "gateway/api.hpp"
#include "gateway/grpc_server.hpp"
#include "gateway/http_server.hpp"
#include "gateway/ipc_curve.hpp"
#include "gateway/ipc_server.hpp"
#include "gateway/secure_files.hpp"

namespace fs = std::filesystem;
using namespace aico::gateway;

namespace {

/// Parses NAME:PASSWORD[:ROLE]. `origin` names where it came from in
/// messages ("--user", "users.txt line 3"); the password is never shown.
std::optional<user_spec> parse_user(const std::string& s, std::string& err,
                                    const std::string& origin = "--user") {
  auto c1 = s.find(':');
  if (c1 == std::string::npos || c1 == 0) {
    err = origin + ": expected NAME:PASSWORD[:ROLE]";
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
    err = origin + " '" + u.username + "': empty password";
    return std::nullopt;
  }
  for (char ch : u.username)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'
          || ch == '-' || ch == '.')) {
      err = origin + ": user names may only contain letters, digits, '_', "
                     "'-', '.'";
      return std::nullopt;
    }
  return u;
}

/// Reads --users-file: one NAME:PASSWORD[:ROLE] per line, taken verbatim
/// (only a trailing CR is dropped); blank lines and lines starting with '#'
/// are skipped. The file must be private (it holds passwords).
bool read_users_file(const std::string& path, std::vector<user_spec>& out,
                     std::string& err) {
  std::string text;
  try {
    text = read_private_file(path, "the users file", 1024 * 1024);
  } catch (const std::exception& e) {
    err = e.what();
    return false;
  }
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos
                                          ? std::string::npos
                                          : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#')
      continue;
    auto u = parse_user(line, err,
                        path + " line " + std::to_string(line_no));
    if (!u)
      return false;
    out.push_back(*u);
  }
  return true;
}

/// 127.0.0.0/8, ::1 and "localhost" are loopback; anything else (0.0.0.0,
/// ::, another address or a name) may be reachable from the network.
bool is_loopback_host(const std::string& host) {
  if (host == "localhost")
    return true;
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  in_addr a4{};
  if (inet_pton(AF_INET, h.c_str(), &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, h.c_str(), &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

bool parse_listen(const std::string& s, std::string& host, uint16_t& port,
                  std::string& err, const std::string& option = "--listen") {
  auto c = s.rfind(':');
  if (c == std::string::npos || c == 0 || c + 1 == s.size()) {
    err = option + " expects HOST:PORT, got '" + s + "'";
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
    err = option + ": invalid port in '" + s + "'";
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"aico-gateway: reference gateway (REST + WebSocket + ZeroMQ "
               "IPC + gRPC) for the aico client engine"};
  std::string data_dir;
  std::string listen = "127.0.0.1:8771";
  std::string ipc;
  std::vector<std::string> users;
  std::string users_file;
  bool insecure_plaintext = false;
  std::string ipc_allow;
  gateway_config cfg;
  http_server_config http_cfg;
  ipc_server_config ipc_cfg;
  grpc_server_config grpc_cfg;
  std::string grpc_listen;
  app.add_option("--data-dir", data_dir,
                 "Directory for the database and JWT secret (created)")
    ->required();
  app.add_option("--listen", listen, "HOST:PORT for REST and WebSocket "
                                     "(port 0 picks a free one)")
    ->capture_default_str();
  app.add_option("--ipc", ipc, "ZeroMQ endpoint for IPC (default "
                               "ipc://DATA_DIR/gateway.ipc; 'none' disables)");
  app.add_option("--grpc", grpc_listen,
                 "HOST:PORT for the gRPC door (off unless given; port 0 "
                 "picks a free one); TLS as for --listen");
  app.add_option("--grpc-max-out-bytes", grpc_cfg.max_out_bytes,
                 "Events queued for one gRPC Events stream before it is "
                 "ended (RESOURCE_EXHAUSTED, slow consumer)")
    ->capture_default_str()
    ->check(CLI::Range(std::size_t{64 * 1024}, std::size_t{1} << 32));
  app.add_option("--user", users, "NAME:PASSWORD[:ROLE] (role user|admin), "
                                  "repeatable; created or updated at start. "
                                  "For tests: other local users can read "
                                  "it; prefer --users-file");
  app.add_option("--users-file", users_file,
                 "File with one NAME:PASSWORD[:ROLE] per line ('#' "
                 "comments); must be private (mode 0600, owned by the "
                 "gateway's user)");
  app.add_option("--tls-cert", http_cfg.tls.cert_file,
                 "PEM certificate chain: serve REST, WebSocket and SSE over "
                 "TLS (with --tls-key)");
  app.add_option("--tls-key", http_cfg.tls.key_file,
                 "PEM private key of --tls-cert (must be private: 0600)");
  app.add_option("--client-ca", http_cfg.tls.client_ca_file,
                 "PEM CA file: require client certificates issued by it "
                 "(mutual TLS); the subject is logged as the device");
  app.add_flag("--insecure-plaintext", insecure_plaintext,
               "Allow plaintext HTTP on a non-loopback --listen address "
               "(passwords and tokens cross the network in clear text)");
  app.add_option("--ipc-allow", ipc_allow,
                 "Turn CurveZMQ on for the IPC door; the file lists the "
                 "client public keys (Z85, one per line) let in");
  app.add_option("--ws-max-out-bytes", http_cfg.ws_max_out_bytes,
                 "Output queued for one WebSocket before it is closed (1008 "
                 "slow consumer); reading pauses above half of it")
    ->capture_default_str()
    ->check(CLI::Range(std::size_t{64 * 1024}, std::size_t{1} << 32));
  app.add_option("--sse-max-out-bytes", http_cfg.sse_max_out_bytes,
                 "Output queued for one event stream before it is ended")
    ->capture_default_str()
    ->check(CLI::Range(std::size_t{64 * 1024}, std::size_t{1} << 32));
  int64_t backoff_ms = cfg.login.base_delay.count();
  int64_t backoff_max_ms = cfg.login.max_delay.count();
  int64_t decay_ms = cfg.login.decay.count();
  app.add_option("--login-attempts-user", cfg.login.user_free_failures,
                 "Failed logins of one user name before the backoff starts")
    ->capture_default_str()
    ->check(CLI::Range(1, 1000000));
  app.add_option("--login-attempts-peer", cfg.login.peer_free_failures,
                 "Failed logins from one peer address before the backoff "
                 "starts")
    ->capture_default_str()
    ->check(CLI::Range(1, 1000000));
  app.add_option("--login-backoff-ms", backoff_ms,
                 "First lockout after the free failures; doubles with each "
                 "further failure")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{1}, int64_t{86400000}));
  app.add_option("--login-backoff-max-ms", backoff_max_ms,
                 "Longest lockout")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{1}, int64_t{86400000}));
  app.add_option("--login-decay-ms", decay_ms,
                 "One failure is forgotten per this much time without a "
                 "new one")
    ->capture_default_str()
    ->check(CLI::Range(int64_t{1}, int64_t{86400000}));
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

  // Everything the gateway creates (data dir, database, secrets, the IPC
  // socket) is private, whatever umask it was started with.
  ::umask(077);

  cfg.login.base_delay = std::chrono::milliseconds(backoff_ms);
  cfg.login.max_delay = std::chrono::milliseconds(backoff_max_ms);
  cfg.login.decay = std::chrono::milliseconds(decay_ms);
  cfg.bot_enabled = !no_bot;
  cfg.version = AICO_VERSION;
  std::string err;
  if (!users.empty())
    std::cerr << "aico-gateway: warning: --user puts passwords on the "
                 "command line, where every local user can read them "
                 "(/proc/PID/cmdline); use --users-file outside tests\n";
  for (auto& s : users) {
    auto u = parse_user(s, err);
    if (!u) {
      std::cerr << "aico-gateway: " << err << "\n";
      return 2;
    }
    cfg.users.push_back(*u);
  }
  if (!users_file.empty() && !read_users_file(users_file, cfg.users, err)) {
    std::cerr << "aico-gateway: " << err << "\n";
    return 2;
  }
  if (!parse_listen(listen, http_cfg.host, http_cfg.port, err)) {
    std::cerr << "aico-gateway: " << err << "\n";
    return 2;
  }
  bool grpc_enabled = !grpc_listen.empty();
  if (grpc_enabled
      && !parse_listen(grpc_listen, grpc_cfg.host, grpc_cfg.port, err,
                       "--grpc")) {
    std::cerr << "aico-gateway: " << err << "\n";
    return 2;
  }
  if (grpc_enabled && !http_cfg.tls.enabled()
      && !is_loopback_host(grpc_cfg.host)) {
    if (!insecure_plaintext) {
      std::cerr << "aico-gateway: refusing to serve plaintext gRPC on "
                << grpc_listen
                << ", which is not a loopback address: passwords and tokens "
                   "would cross the network in clear text. Give --tls-cert "
                   "FILE --tls-key FILE, use 127.0.0.1, or pass "
                   "--insecure-plaintext if that is really intended.\n";
      return 2;
    }
    std::cerr << "aico-gateway: WARNING: serving plaintext gRPC on "
              << grpc_listen
              << " (--insecure-plaintext): passwords and tokens cross the "
                 "network in clear text\n";
  }
  grpc_cfg.tls = http_cfg.tls;
  if (http_cfg.tls.enabled() != !http_cfg.tls.key_file.empty()) {
    std::cerr << "aico-gateway: --tls-cert and --tls-key go together\n";
    return 2;
  }
  if (!http_cfg.tls.client_ca_file.empty() && !http_cfg.tls.enabled()) {
    std::cerr << "aico-gateway: --client-ca needs TLS (--tls-cert and "
                 "--tls-key)\n";
    return 2;
  }
  if (!http_cfg.tls.enabled() && !is_loopback_host(http_cfg.host)) {
    if (!insecure_plaintext) {
      std::cerr << "aico-gateway: refusing to serve plaintext HTTP on "
                << listen
                << ", which is not a loopback address: passwords and tokens "
                   "would cross the network in clear text. Give --tls-cert "
                   "FILE --tls-key FILE, listen on 127.0.0.1, or pass "
                   "--insecure-plaintext if that is really intended.\n";
      return 2;
    }
    std::cerr << "aico-gateway: WARNING: serving plaintext HTTP on " << listen
              << " (--insecure-plaintext): passwords and tokens cross the "
                 "network in clear text\n";
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
  std::string ipc_public_key;
  if (ipc_enabled && !ipc_allow.empty()) {
    try {
      ensure_private_dir(cfg.data_dir);
      auto kp = load_or_create_curve_keys(cfg.data_dir);
      ipc_cfg.curve_secret_key = kp.secret_z85;
      ipc_cfg.allow_file = fs::absolute(ipc_allow).string();
      ipc_public_key = kp.public_z85;
    } catch (const std::exception& e) {
      std::cerr << "aico-gateway: " << e.what() << "\n";
      return 1;
    }
  }

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
  std::unique_ptr<grpc_server> grpc_srv;
  try {
    core = std::make_unique<api>(cfg);
    http = std::make_unique<http_server>(*core, http_cfg);
    http->start();
    if (ipc_enabled) {
      ipc_srv = std::make_unique<ipc_server>(*core, ipc_cfg);
      ipc_srv->start();
    }
    if (grpc_enabled) {
      grpc_srv = std::make_unique<grpc_server>(*core, grpc_cfg);
      grpc_srv->start();
    }
  } catch (const std::exception& e) {
    std::cerr << "aico-gateway: " << e.what() << "\n";
    if (ipc_srv)
      ipc_srv->stop();
    if (http)
      http->stop();
    if (core)
      core->stop();
    return 1;
  }
  auto port = std::to_string(http->port());
  bool tls = http_cfg.tls.enabled();
  if (!ipc_public_key.empty())
    std::cerr << "aico-gateway: ipc: CurveZMQ on; server public key "
              << ipc_public_key << " (also in " << cfg.data_dir
              << "/ipc-curve.pub)" << std::endl;
  std::cout << "ready http=" << (tls ? "https" : "http") << "://"
            << http_cfg.host << ":" << port << " ws=" << (tls ? "wss" : "ws")
            << "://" << http_cfg.host << ":" << port << "/api/v1/ws"
            << " ipc=" << (ipc_srv ? ipc_srv->endpoint() : "none");
  if (!ipc_public_key.empty() && ipc_srv)
    std::cout << " ipc_key=" << ipc_public_key;
  if (grpc_srv) {
    std::string h = grpc_cfg.host;
    if (h.find(':') != std::string::npos && h.front() != '[')
      h = "[" + h + "]";
    std::cout << " grpc=" << h << ":" << grpc_srv->port();
  }
  std::cout << std::endl;

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "aico-gateway: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
            << ", stopping" << std::endl;
  http->stop();
  if (ipc_srv)
    ipc_srv->stop();
  if (grpc_srv)
    grpc_srv->stop();
  core->stop();
  return 0;
}
