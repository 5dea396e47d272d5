// aico: the command-line frontends' shared connection options (aico,
// aico-chat): the same flags, on top of the config file and the AICO_*
// environment variables, all through the one client-profile builder
// (src/config/load_config.hpp).
#pragma once

#include <optional>
#include <string>

#include "messages/engine.hpp"
#include "src/config/load_config.hpp"

namespace CLI {
class App;
}

namespace aico::cli {

/// Where the gateway is and where the client keeps its state.
struct connection_options {
  /// Program name for messages ("aico", "aico-chat").
  std::string program = "aico";
  /// --config FILE ("" = $AICO_CONFIG, else none).
  std::string config_file;
  /// What was given on the command line.
  client_flags flags;
  // -- filled in by make_config from the resulting profile ------------------------------
  std::string state_dir;
  double timeout_s = 10; ///< per request
};

/// Adds --config, --profile, --url, the endpoint options (--ipc, --grpc),
/// --transports, --state-dir, --timeout (and the TLS and CURVE options) to
/// `app`.
void add_connection_options(CLI::App& app, connection_options& o);

/// Adds --NAME ENDPOINT for each transport configured by an endpoint
/// (--ipc, --grpc; actors/transport_registry.hpp), into `f.endpoints`.
void add_endpoint_options(CLI::App& app, client_flags& f);

/// Adds --profile (the wire profile; also used by aico-stress).
void add_profile_option(CLI::App& app, client_flags& f);

/// Adds the TLS (--tls-*) and CURVE (--ipc-server-key*, --ipc-client-key-file)
/// options to `app` (also used by aico-stress).
void add_security_options(CLI::App& app, client_flags& f);

/// $AICO_STATE_DIR, else $XDG_STATE_HOME/aico, else ~/.local/state/aico.
std::string default_state_dir();

/// A fresh random idempotency key ("m-" + 24 hex digits).
std::string new_message_id();

/// Where a password comes from (`aico login`, aico-chat --user).
struct password_source {
  std::string argv_value;  ///< given on the command line (warned about)
  bool from_stdin = false; ///< --password-stdin: the first line of stdin
  std::string file;        ///< --password-file PATH: its first line
};

/// Adds --password-stdin and --password-file to `app`.
void add_password_options(CLI::App& app, password_source& src);

/// The password from `src`; with none of its sources set, a prompt on the
/// terminal (/dev/tty, no echo) if `prompt` is not empty. Warns (stderr)
/// about a password given on the command line. False and a sentence in
/// `err` if there is none or it cannot be read.
bool read_password(const std::string& program, const password_source& src,
                   const std::string& prompt, std::string& out,
                   std::string& err);

/// The file of this client's CURVE key pair for `cfg`: the configured one,
/// else STATE_DIR/ipc-client.key ("" without a state dir).
std::string client_key_file(const engine_config& cfg);

/// Builds the engine configuration (defaults < config file < environment <
/// command line); prints the profile's warnings on stderr. nullopt (and a
/// sentence in `err`) on a bad option.
std::optional<engine_config> make_config(connection_options& o,
                                         std::string& err);

} // namespace aico::cli
