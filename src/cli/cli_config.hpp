// aico: the command-line frontends' shared connection options (aico,
// aico-chat): the same flags and environment variables, and the same
// client-friendly engine timings.
#pragma once

#include <optional>
#include <string>

#include "messages/engine.hpp"

namespace CLI {
class App;
}

namespace aico::cli {

/// Where the gateway is and where the client keeps its state.
struct connection_options {
  std::string url = "http://127.0.0.1:8771";
  std::string ipc; ///< ipc://PATH; empty = IPC is skipped
  std::string transports = "ipc,ws,http";
  std::string state_dir;
  double timeout_s = 10; ///< per request
};

/// Adds --url, --ipc, --transports, --state-dir and --timeout to `app`.
void add_connection_options(CLI::App& app, connection_options& o);

/// $AICO_STATE_DIR, else $XDG_STATE_HOME/aico, else ~/.local/state/aico.
std::string default_state_dir();

/// Defaults from the environment: AICO_URL, AICO_IPC, AICO_STATE_DIR.
void apply_environment(connection_options& o);

/// A fresh random idempotency key ("m-" + 24 hex digits).
std::string new_message_id();

/// Builds the engine configuration; nullopt (and `err`) on a bad option.
std::optional<engine_config> make_config(const connection_options& o,
                                         std::string& err);

} // namespace aico::cli
