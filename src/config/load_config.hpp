// aico engine: engine_config from a JSON file and environment variables.
//
// File format (JSON object; every key optional, unknown keys are errors;
// durations in milliseconds; see docs/configuration.md for the full list):
//
//   {
//     "url": "http://127.0.0.1:8771",   // gateway base URL (HTTP + WS)
//     "ipc": "ipc:///run/aico/gateway.ipc",
//     "transports": ["ipc", "ws", "http"],   // or "ipc,ws,http"
//     "state_dir": "/home/me/.local/state/aico",
//     "request_timeout_ms": 10000,
//     "shutdown_timeout_ms": 3000,
//     "connection": { "connect_timeout_ms": 3000, ... },
//     "tokens": { ... }, "queue": { "limit": 1000, ... },
//     "cache": { ... }, "system": { ... }
//   }
//
// Environment variables override the file: AICO_URL, AICO_IPC,
// AICO_TRANSPORTS, AICO_STATE_DIR, AICO_REQUEST_TIMEOUT_MS,
// AICO_SHUTDOWN_TIMEOUT_MS.
#pragma once

#include <map>
#include <string>

#include "caf/all.hpp"

#include "messages/engine.hpp"

namespace aico {

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
/// IPC from the transports when no IPC endpoint is set.
caf::expected<engine_config>
load_config(const std::string& file,
            const std::map<std::string, std::string>& env
            = process_environment());

} // namespace aico
