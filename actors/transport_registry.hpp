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
// Adding a transport (docs/architecture.md "Adding a transport"): its driver
// folder, one entry in transport_registry.cpp, its settings struct in
// src/transport/config.hpp and member in supervisor_config, its config keys
// in src/config/load_config.cpp, its transport_mode value, and tests.
#pragma once

#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/supervisor.hpp"
#include "messages/transport.hpp"
#include "src/core/link_policy.hpp"

namespace aico {

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
};

/// Every known transport; the default failover order is ipc, ws, http
/// (supervisor_config::order), grpc only where an order names it.
const std::vector<transport_entry>& transport_registry();

/// The entry of a name / mode (nullptr if unknown).
const transport_entry* find_transport(const std::string& name);
const transport_entry* find_transport(transport_mode mode);

/// The known names, comma-separated ("ipc, ws, http"), for messages.
std::string known_transport_names();

} // namespace aico
