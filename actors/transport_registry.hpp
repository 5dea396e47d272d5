// aico engine: the transport registry -- every transport the engine knows,
// by name. The failover order (supervisor_config::order, the config file's
// "transports", --transports) is a list of these names; the supervisor
// spawns a slot's transport from its entry and hands the entry's
// capabilities to the link policy.
//
// An entry is: the name (also the config section holding its settings), the
// transport_mode it reports as, its capabilities (pushes events on the
// link itself, degraded, heartbeat) and how to spawn it from the
// supervisor's config: the generic transport actor (actors/transport_actor)
// hosting the transport's driver (src/transport/<lib>/<x>_driver).
//
// A transport configured by one endpoint (ipc, grpc) also says in its entry
// where the endpoint is kept and how it is checked: the config file's key,
// the AICO_ variable and the --flag of aico, aico-chat and aico-stress are
// made from its name (src/config/load_config.cpp, src/cli/cli_config.cpp).
//
// Adding a transport (docs/architecture.md "Adding a transport"): its driver
// folder (with its settings struct), one entry in transport_registry.cpp,
// its member in supervisor_config, its transport_mode value, and tests.
#pragma once

#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/supervisor.hpp"
#include "messages/transport.hpp"
#include "src/core/link_policy.hpp"

namespace aico {

/// The endpoint of a transport configured by one string (ipc, grpc; ws and
/// http take their URLs from --url). Its config-file key, its command-line
/// flag and its variable come from the entry's name: "grpc", --grpc,
/// AICO_GRPC (endpoint_variable()).
struct transport_endpoint {
  /// Where the endpoint is kept in the supervisor's config ("" = not given:
  /// the transport is dropped from the order).
  std::string& (*of)(supervisor_config& cfg);
  /// The flag's --help text.
  const char* help;
  /// Checks the given endpoint of a transport the order uses: "" when it
  /// is fine, else a sentence saying what is wrong and what to give
  /// instead (the loader prefixes "config: NAME: ").
  std::string (*check)(const supervisor_config& cfg);
  /// The endpoint asks for TLS (grpcs://): the shared TLS options apply to
  /// it (nullptr: never).
  bool (*uses_tls)(const supervisor_config& cfg);
};

struct transport_entry {
  /// The name in the failover order and the config section of its
  /// settings ("ipc", "ws", "http").
  const char* name;
  /// What it reports as (tstate, api_reply::via, server_event::via).
  transport_mode mode;
  /// For the published link state: pushes events on the link itself,
  /// degraded.
  transport_caps caps;
  /// It pings and notices a silent peer (ping_interval, dead_peer_timeout
  /// apply).
  bool heartbeat;
  /// Spawns it with the settings in `cfg` (its section).
  transport_actor (*spawn)(caf::actor_system& sys,
                           const supervisor_config& cfg,
                           transport_listener_actor listener);
  /// Its name in sentences ("IPC", "gRPC").
  const char* title;
  /// What a server needs to offer for it, in sentences ("client-facing
  /// ZeroMQ", "gRPC door").
  const char* door;
  /// Set for a transport configured by one endpoint, else nullptr.
  const transport_endpoint* endpoint;
  /// Its settings section in the supervisor's config (cfg.grpc), as the
  /// settings every transport has.
  transport_config& (*settings)(supervisor_config& cfg);
  /// Its TLS options (cfg.grpc.tls); nullptr for a transport without TLS.
  transport::tls_options* (*tls)(supervisor_config& cfg);
};

/// Every known transport; the default failover order is ipc, ws, http
/// (supervisor_config::order), grpc only where an order names it.
const std::vector<transport_entry>& transport_registry();

/// The entry of a name / mode (nullptr if unknown).
const transport_entry* find_transport(const std::string& name);
const transport_entry* find_transport(transport_mode mode);

/// Calls `f` with the settings every transport has (transport_config&),
/// once per registry entry: code that sets what all transports share
/// (timeouts, the wire profile) names none of them.
template <class F>
void for_each_transport(supervisor_config& cfg, F&& f) {
  for (auto& e : transport_registry())
    f(e.settings(cfg));
}

/// Calls `f` with the TLS options (transport::tls_options&) of every
/// transport that has them: one CA, pin or client certificate is set for
/// all of them.
template <class F>
void for_each_tls(supervisor_config& cfg, F&& f) {
  for (auto& e : transport_registry())
    if (e.tls)
      f(*e.tls(cfg));
}

/// The environment variable of an entry's endpoint: "AICO_" and its name in
/// capitals ("AICO_GRPC").
std::string endpoint_variable(const transport_entry& e);

/// The known names, comma-separated ("ipc, ws, http"), for messages.
std::string known_transport_names();

} // namespace aico
