// aico engine: the engine as a whole, spawned into a host's
// caf::actor_system and wired together:
//
//   repositories (chat, user, system)
//     ├─ reads ──▶ response cache ─┐
//     └─ writes ─▶ offline queue ──┴─▶ resilient client (breakers, retry)
//                                        └─▶ supervisor ──▶ IPC / WS / HTTP
//   token manager ◀──▶ supervisor (tokens, refresh on 401)
//
// Host actors use the typed handles; `engine` owns their lifetime.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "caf/all.hpp"

#include "messages/cache.hpp"
#include "messages/offline_queue.hpp"
#include "messages/repositories.hpp"
#include "messages/resilience.hpp"
#include "messages/supervisor.hpp"
#include "messages/token_manager.hpp"

namespace aico {

/// How the engine's logical calls are put on the wire (docs/profiles.md).
enum class wire_profile : uint8_t {
  /// The reference gateway's wire (docs/protocol.md): the default.
  gateway = 0,
  /// The real AICO backend's wire (issue 14): app-level encryption, UUID +
  /// PIN login, NDJSON streaming; transports ws and http only. The wire
  /// layer is src/profile/aico; the registry spawns its HTTP driver.
  aico,
};

/// "gateway" or "aico".
inline const char* to_string(wire_profile p) {
  return p == wire_profile::aico ? "aico" : "gateway";
}

/// Parses "gateway" or "aico"; false for anything else.
inline bool from_string(const std::string& s, wire_profile& out) {
  if (s == "gateway") {
    out = wire_profile::gateway;
    return true;
  }
  if (s == "aico") {
    out = wire_profile::aico;
    return true;
  }
  return false;
}

struct engine_config {
  /// The wire profile (config "profile", AICO_PROFILE, --profile). The
  /// profile builder applies its transport rules; the engine hands it to
  /// the transports (profile_state_dir = STATE_DIR/aico).
  wire_profile profile = wire_profile::gateway;
  /// Directory for tokens.json, the offline queue and the response cache
  /// (created 0700). Empty = a private temporary directory removed when the
  /// engine stops: nothing survives a restart.
  std::string state_dir;
  supervisor_config connection;
  token_manager_config tokens;      ///< state_dir is filled in from above
  resilience_config resilience;
  offline_queue_config queue;       ///< state_dir is filled in from above
  response_cache_config cache;      ///< state_dir is filled in from above
  system_repository_config system;
  /// Default deadline of API calls made through the engine.
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Upper bound for stopping the engine's actors on destruction.
  caf::timespan shutdown_timeout = std::chrono::seconds(5);
};

class engine {
public:
  /// Spawns the engine's actors into `sys` and starts connecting (unless
  /// `connect` is false).
  engine(caf::actor_system& sys, engine_config cfg, bool connect = true);

  /// Stops the engine's actors (never the host's), bounded by
  /// cfg.shutdown_timeout. Unsent commands stay in the durable queue.
  ~engine();

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Connection state stream: `watch_atom` with an engine_listener_actor
  /// (state + server events), `state_atom` for the current state.
  supervisor_actor connection() const { return sup_; }
  /// Login, logout, session (messages/token_manager.hpp).
  token_manager_actor tokens() const { return tokens_; }
  /// Raw API calls through breakers and retries (messages/resilience.hpp).
  resilient_client_actor api() const { return api_; }
  /// The durable offline queue: list, retry, drop, watch.
  offline_queue_actor queue() const { return queue_; }
  /// The response cache (normally used through the repositories).
  response_cache_actor cache() const { return cache_; }
  /// Send, history, mark read, the chat stream (messages/repositories.hpp).
  chat_repository_actor chat() const { return chat_; }
  /// The logged-in user, preferences, family.
  user_repository_actor users() const { return users_; }
  /// Health, system status (and its stream), update requests.
  system_repository_actor system() const { return system_; }
  /// The configuration in use (state dirs filled in).
  const engine_config& config() const { return cfg_; }

private:
  caf::actor_system& sys_;
  engine_config cfg_;
  std::string temp_state_dir_;
  supervisor_actor sup_;
  token_manager_actor tokens_;
  resilient_client_actor api_;
  offline_queue_actor queue_;
  response_cache_actor cache_;
  chat_repository_actor chat_;
  user_repository_actor users_;
  system_repository_actor system_;
};

} // namespace aico
