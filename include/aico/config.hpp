// aico client library: the engine's configuration as a host gives it.
//
// A plain value type (std types only). It names where the settings come
// from and what the host sets explicitly; the library turns it into the
// engine's internal configuration when a client or engine is constructed.
// Precedence, lowest first:
//   1. the client defaults (docs/configuration.md, "Client defaults"),
//   2. the JSON config file `file` (every key of docs/configuration.md),
//   3. the AICO_* variables in `env` (AICO_URL, AICO_IPC, AICO_GRPC,
//      AICO_TRANSPORTS, AICO_STATE_DIR, AICO_REQUEST_TIMEOUT_MS,
//      AICO_SHUTDOWN_TIMEOUT_MS),
//   4. the fields below that are set (non-empty / non-zero).
//
//   auto cfg = aico::client_config::load("client.json"); // file + process env
//   cfg.state_dir = "/var/lib/myapp/aico";               // explicit: wins
//   aico::client c{cfg};
//
// An invalid setting is a client_error of class `validation` naming the key
// ("queue.limit: expected a positive integer"), thrown by load(),
// check() and the constructors of aico::client and aico::actor_engine.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "aico/export.hpp"

namespace aico {

struct AICO_API client_config {
  /// A JSON config file (docs/configuration.md); empty = none. A file that
  /// is missing or unreadable is an error.
  std::string file;
  /// Environment variables (only the AICO_* ones are read). Empty by
  /// default: the process environment is used only if copied in here
  /// (load() does that).
  std::map<std::string, std::string> env;

  // -- explicit settings: applied last, when set -------------------------------

  /// Gateway base URL for HTTP (the WebSocket URL is derived from it),
  /// e.g. "http://127.0.0.1:8771".
  std::string url;
  /// IPC endpoint, e.g. "ipc:///run/aico/gateway.ipc". Without one, IPC is
  /// left out of the transports.
  std::string ipc;
  /// Transports to use, best first: any of "ipc", "ws", "http", "grpc"
  /// (gRPC's endpoint comes from the file's "grpc" key or AICO_GRPC in
  /// `env`; without one it is left out, as IPC).
  std::vector<std::string> transports;
  /// Directory for tokens, the offline queue and the response cache
  /// (created 0700). Empty (everywhere) = a private temporary directory
  /// removed when the engine stops.
  std::string state_dir;
  /// Default deadline of API calls.
  std::chrono::milliseconds request_timeout{0};
  /// Upper bound for stopping the engine on destruction.
  std::chrono::milliseconds shutdown_timeout{0};

  /// `file` plus the process environment; throws client_error
  /// (validation) if either is invalid.
  static client_config load(const std::string& file = {});

  /// `file` plus `env`; throws client_error (validation) if invalid.
  static client_config
  load(const std::string& file, std::map<std::string, std::string> env);

  /// The process environment (its AICO_* variables) as a map.
  static std::map<std::string, std::string> process_environment();

  /// Reads the file and checks every setting; throws client_error
  /// (validation) naming the first bad key.
  void check() const;
};

} // namespace aico
