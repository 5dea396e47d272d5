// aico engine: engine_config from a JSON file and environment variables.
//
// File format (JSON object; every key optional, unknown keys are errors;
// durations in milliseconds; see docs/configuration.md for the full list):
//
//   {
//     "profile": "gateway",             // wire profile: gateway or aico
//     "url": "http://127.0.0.1:8771",   // gateway base URL (HTTP + WS)
//     "ipc": "ipc:///run/aico/gateway.ipc",
//     "grpc": "127.0.0.1:50051",        // gRPC door (grpcs://HOST:PORT = TLS)
//     "transports": ["ipc", "ws", "http"],   // or "ipc,ws,http"; also "grpc"
//     "state_dir": "/home/me/.local/state/aico",
//     "request_timeout_ms": 10000,
//     "shutdown_timeout_ms": 3000,
//     "connection": { "connect_timeout_ms": 3000, ... },
//     "tokens": { ... }, "queue": { "limit": 1000, ... },
//     "cache": { ... }, "system": { ... }
//   }
//
//     "tls": { "ca_file": "...", "ca_dir": "...", "pin": "sha256//...",
//              "client_cert": "...", "client_key": "...",
//              "insecure_dev_only": false },
//     "curve": { "server_key": "Z85...", "server_key_file": "...",
//                "client_key_file": "..." }
//
// Environment variables override the file: AICO_CONFIG (the file itself,
// when none is given), AICO_PROFILE, AICO_URL, AICO_IPC, AICO_GRPC, AICO_TRANSPORTS, AICO_STATE_DIR,
// AICO_REQUEST_TIMEOUT_MS, AICO_SHUTDOWN_TIMEOUT_MS, AICO_TLS_CA_FILE,
// AICO_TLS_CA_DIR, AICO_TLS_PIN, AICO_TLS_CLIENT_CERT, AICO_TLS_CLIENT_KEY,
// AICO_TLS_INSECURE_DEV_ONLY (1/true), AICO_IPC_SERVER_KEY,
// AICO_IPC_SERVER_KEY_FILE, AICO_IPC_CLIENT_KEY_FILE.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "src/core/url_host.hpp"

namespace aico {

/// "a, b,,c" -> {"a", "b", "c"}: a comma-separated list (the transports),
/// items trimmed, empty ones dropped.
std::vector<std::string> split_list(const std::string& s);

/// The process environment as a map (for load_config's default).
std::map<std::string, std::string> process_environment();

/// Client defaults: engine_config{} with the timings the `aico` CLI uses
/// (3 s connect timeout, 5 s pings, 15 s dead peer, 10 s health checks,
/// 250 ms..5 s reconnect backoff, 3 s shutdown timeout).
engine_config default_client_config();

/// Applies JSON config text to `cfg` (starting values are kept for keys
/// that are absent). Errors are validation errors naming the key, e.g.
/// "queue.limit: expected a positive integer".
caf::error apply_config_json(const std::string& json_text, engine_config& cfg);

/// Applies the AICO_* variables present in `env` to `cfg`.
caf::error apply_config_env(const std::map<std::string, std::string>& env,
                            engine_config& cfg);

/// default_client_config(), then `file` (skipped if empty; a missing or
/// unreadable file is an error), then `env`. Also derives the sub-configs
/// from the top-level keys (ws URL from url, state_dir, timeouts) and drops
/// IPC (gRPC) from the transports when no IPC (gRPC) endpoint is set.
caf::expected<engine_config>
load_config(const std::string& file,
            const std::map<std::string, std::string>& env
            = process_environment());

/// Values given on a program's command line (aico, aico-chat, aico-stress);
/// unset = not given, the lower layers decide.
struct client_flags {
  std::optional<std::string> profile;    ///< --profile (gateway, aico)
  std::optional<std::string> url;        ///< --url
  /// --ipc, --grpc: the endpoint of each transport configured by one, by
  /// its registry name (actors/transport_registry.hpp).
  std::map<std::string, std::string> endpoints;
  std::optional<std::string> transports; ///< --transports
  std::optional<std::string> state_dir;  ///< --state-dir
  std::optional<double> timeout_s;       ///< --timeout (seconds per request)
  // TLS of the HTTP and WebSocket transports (https://, wss://)
  std::optional<std::string> tls_ca_file;     ///< --tls-ca-file
  std::optional<std::string> tls_ca_dir;      ///< --tls-ca-dir
  std::optional<std::string> tls_pin;         ///< --tls-pin
  std::optional<std::string> tls_client_cert; ///< --tls-client-cert
  std::optional<std::string> tls_client_key;  ///< --tls-client-key
  bool tls_insecure_dev_only = false;         ///< --tls-insecure-dev-only
  // CurveZMQ of the IPC transport
  std::optional<std::string> ipc_server_key;      ///< --ipc-server-key
  std::optional<std::string> ipc_server_key_file; ///< --ipc-server-key-file
  std::optional<std::string> ipc_client_key_file; ///< --ipc-client-key-file
};

/// The layered inputs of a client profile: `defaults` < `config_file` <
/// `env` < `flags`.
struct client_profile_inputs {
  engine_config defaults = default_client_config();
  /// JSON config file; "" = none (then $AICO_CONFIG from `env` if set).
  std::string config_file;
  std::map<std::string, std::string> env;
  client_flags flags;
};

/// The engine configuration of a client, and warnings for people (printed
/// by the programs on stderr on every run).
struct client_profile {
  engine_config config;
  std::vector<std::string> warnings;
};

/// The one client-profile builder of the library, `aico`, `aico-chat` and
/// `aico-stress`: applies the layers in order, derives the sub-configs
/// (WebSocket URL from the base URL, state dirs, timeouts bounded by the
/// request timeout) and validates. Errors are validation errors whose
/// message names the key, flag or variable and says what is wrong.
///
/// The wire profile (`profile` / AICO_PROFILE / --profile: "gateway", the
/// default, or "aico") is kept in engine_config::profile. With "aico": the
/// transports default to ws,http and an `ipc` transport is refused (the
/// AICO backend has no client-facing ZeroMQ); the WebSocket URL, unless
/// given (connection.ws_url), is ws(s)://HOST:8772 (the backend's WebSocket
/// server has its own port); an IPC endpoint or CURVE key given anyway is
/// warned about and not used.
caf::expected<client_profile>
build_client_profile(const client_profile_inputs& in);

// is_loopback_url(url): src/core/url_host.hpp (also used by the
// registry's endpoint checks).

/// Whether `key` is a CurveZMQ key in Z85 (40 characters).
bool valid_z85_key(const std::string& key);

/// Sets the state directory of `cfg` and of its sub-configs.
void set_state_dir(engine_config& cfg, const std::string& dir);

} // namespace aico
