#include "cli_config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>

#include "actors/transport_registry.hpp"
#include "messages/errors.hpp"
#include "src/core/log_line.hpp"
#include "src/core/small_rng.hpp"

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

namespace {

/// A string option stored into an optional (unset = not given).
void opt_string(CLI::App& app, const std::string& name,
                std::optional<std::string>& out, const std::string& help) {
  app.add_option_function<std::string>(
    name, [&out](const std::string& v) { out = v; }, help);
}

} // namespace

void add_endpoint_options(CLI::App& app, client_flags& f) {
  // --ipc, --grpc: one per transport configured by an endpoint
  for (auto& e : transport_registry()) {
    if (!e.endpoint)
      continue;
    std::string name = e.name;
    app.add_option_function<std::string>(
      "--" + name, [&f, name](const std::string& v) { f.endpoints[name] = v; },
      e.endpoint->help);
  }
}

void add_connection_options(CLI::App& app, connection_options& o) {
  app.add_option("--config", o.config_file,
                 "JSON config file (default $AICO_CONFIG; see "
                 "docs/configuration.md)");
  auto& f = o.flags;
  add_profile_option(app, f);
  opt_string(app, "--url", f.url,
             "Gateway base URL, http:// or https:// (REST and WebSocket; "
             "default http://127.0.0.1:8771)");
  add_endpoint_options(app, f);
  opt_string(app, "--transports", f.transports,
             "Transports to use, best first (default ipc,ws,http)");
  opt_string(app, "--state-dir", f.state_dir,
             "Where tokens, the offline queue and the cache are kept "
             "(default $AICO_STATE_DIR, $XDG_STATE_HOME/aico or "
             "~/.local/state/aico)");
  app.add_option_function<double>(
       "--timeout", [&f](const double& v) { f.timeout_s = v; },
       "Seconds allowed per request (default 10)")
    ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
    ->check(CLI::Range(0.1, 3600.0));
  add_security_options(app, f);
}

void add_profile_option(CLI::App& app, client_flags& f) {
  opt_string(app, "--profile", f.profile,
             "Wire profile: gateway (the reference gateway, default) or aico "
             "(the real AICO backend: UUID + PIN login, transports ws,http; "
             "docs/profiles.md)");
}

void add_security_options(CLI::App& app, client_flags& f) {
  // TLS (https:// and wss://): the certificate is always verified
  opt_string(app, "--tls-ca-file", f.tls_ca_file,
             "Trust only the CA certificate(s) in this PEM file (default: "
             "the system's CAs)");
  opt_string(app, "--tls-ca-dir", f.tls_ca_dir,
             "Trust only the CA certificates in this directory (OpenSSL "
             "hashed layout)");
  opt_string(app, "--tls-pin", f.tls_pin,
             "Also require the gateway's public key to be this one: "
             "sha256//BASE64 of its SubjectPublicKeyInfo (';' between "
             "several)");
  opt_string(app, "--tls-client-cert", f.tls_client_cert,
             "Client certificate (PEM) for mutual TLS (with "
             "--tls-client-key)");
  opt_string(app, "--tls-client-key", f.tls_client_key,
             "Private key (PEM) of --tls-client-cert");
  app.add_flag("--tls-insecure-dev-only", f.tls_insecure_dev_only,
               "DEVELOPMENT ONLY: do not verify the gateway's certificate "
               "(warns on every run)");
  // CurveZMQ (IPC)
  opt_string(app, "--ipc-server-key", f.ipc_server_key,
             "The gateway's CURVE public key (Z85, 40 characters; its "
             "DATA_DIR/ipc-curve.pub): encrypts the IPC link and pins the "
             "gateway; required for tcp:// endpoints");
  opt_string(app, "--ipc-server-key-file", f.ipc_server_key_file,
             "Read --ipc-server-key from this file (e.g. the gateway's "
             "ipc-curve.pub)");
  opt_string(app, "--ipc-client-key-file", f.ipc_client_key_file,
             "This client's CURVE key file (default STATE_DIR/ipc-client.key,"
             " made 0600 on first use; `aico ipc-key` prints its public key)");
}

void add_password_options(CLI::App& app, password_source& src) {
  app.add_flag("--password-stdin", src.from_stdin,
               "Read the password from the first line of standard input");
  app.add_option("--password-file", src.file,
                 "Read the password from the first line of this file "
                 "(keep it private: chmod 600)");
}

namespace {

void strip_newline(std::string& s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
}

/// Reads one line from the terminal with echo off.
bool prompt_on_tty(const std::string& prompt, std::string& out,
                   std::string& err) {
  int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    err = "no password given and no terminal to ask on: use "
          "--password-stdin or --password-file PATH";
    return false;
  }
  termios old{};
  bool have_termios = ::tcgetattr(fd, &old) == 0;
  if (have_termios) {
    auto quiet = old;
    quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  [[maybe_unused]] auto w = ::write(fd, prompt.data(), prompt.size());
  std::string line;
  char ch;
  bool got_any = false;
  while (::read(fd, &ch, 1) == 1) {
    got_any = true;
    if (ch == '\n')
      break;
    line += ch;
  }
  if (have_termios)
    ::tcsetattr(fd, TCSAFLUSH, &old);
  ::close(fd);
  if (!got_any) {
    err = "no password was typed";
    return false;
  }
  strip_newline(line);
  out = std::move(line);
  return true;
}

} // namespace

bool read_password(const std::string& program, const password_source& src,
                   const std::string& prompt, std::string& out,
                   std::string& err) {
  int given = (!src.argv_value.empty() ? 1 : 0) + (src.from_stdin ? 1 : 0)
              + (!src.file.empty() ? 1 : 0);
  if (given > 1) {
    err = "give the password one way only (on the command line, "
          "--password-stdin or --password-file)";
    return false;
  }
  if (!src.argv_value.empty()) {
    log_line(program + ": warning: a password on the command line can be "
             "read by other users of this machine (/proc/PID/cmdline); use "
             "the prompt, --password-stdin or --password-file");
    out = src.argv_value;
    return true;
  }
  if (src.from_stdin) {
    std::string line;
    if (!std::getline(std::cin, line) && line.empty()) {
      err = "--password-stdin: standard input is empty";
      return false;
    }
    strip_newline(line);
    out = std::move(line);
    return true;
  }
  if (!src.file.empty()) {
    std::ifstream in{src.file};
    if (!in) {
      err = "--password-file: cannot read '" + src.file + "'";
      return false;
    }
    struct stat st {};
    if (::stat(src.file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      log_line(program + ": warning: the password file '" + src.file
               + "' can be read by other users (chmod 600 it)");
    std::string line;
    std::getline(in, line);
    strip_newline(line);
    out = std::move(line);
    return true;
  }
  if (prompt.empty()) {
    err = "no password given";
    return false;
  }
  return prompt_on_tty(prompt, out, err);
}

std::string client_key_file(const engine_config& cfg) {
  if (!cfg.connection.ipc.curve_key_file.empty())
    return cfg.connection.ipc.curve_key_file;
  if (cfg.state_dir.empty())
    return {};
  return cfg.state_dir + "/ipc-client.key";
}

std::string new_message_id() {
  static const char* hex = "0123456789abcdef";
  std::mt19937_64 rng{random_seed()};
  std::string id = "m-";
  for (int i = 0; i < 24; ++i)
    id += hex[rng() % 16];
  return id;
}

std::optional<engine_config> make_config(connection_options& o,
                                         std::string& err) {
  client_profile_inputs in;
  in.defaults.state_dir = default_state_dir();
  in.config_file = o.config_file;
  in.env = process_environment();
  in.flags = o.flags;
  auto p = build_client_profile(in);
  if (!p) {
    err = classify(p.error()).message;
    return std::nullopt;
  }
  for (auto& w : p->warnings)
    log_line(o.program + ": warning: " + w);
  o.state_dir = p->config.state_dir;
  o.timeout_s
    = std::chrono::duration<double>(p->config.request_timeout).count();
  return std::move(p->config);
}

} // namespace aico::cli
