// aico engine: the typed repositories, what an application uses.
//
//   app ──▶ chat / user / system repository
//             │ reads ──▶ response cache ──▶ resilient client ──▶ supervisor ──▶ transport
//             │ writes ─▶ offline queue  ──▶ resilient client ──▶ ...
//             └ stream ◀─ supervisor events + queue updates
//
// Chat messages carry an explicit status: queued -> sending -> sent ->
// delivered (seen back in the server's stream) | read, or failed{reason}.
// The chat stream is keyed by message id: every emission replaces the
// previous one with that id, and a status never goes backwards, so a
// message never disappears or appears twice in what the stream shows.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/cache.hpp"
#include "messages/models.hpp"
#include "messages/offline_queue.hpp"
#include "messages/supervisor.hpp"
#include "messages/token_manager.hpp"
#include "messages/type_ids.hpp"

namespace aico {

// -- chat ----------------------------------------------------------------------

/// The chat repository: the public chat_actor (aico/actors.hpp) plus its
/// wiring (supervisor events, queue updates; not for applications).
using chat_repository_actor = chat_actor::extend<
  caf::reacts_to<state_atom, connection_state>,
  caf::reacts_to<event_atom, server_event>,
  caf::reacts_to<queue_atom, queue_update>>;

// -- user ----------------------------------------------------------------------

/// The user repository: the public user_actor plus its wiring.
using user_repository_actor = user_actor::extend<
  caf::reacts_to<queue_atom, queue_update>>;

// -- system --------------------------------------------------------------------

/// The system repository: the public system_actor plus its wiring (its
/// own poll timer included).
using system_repository_actor = system_actor::extend<
  caf::reacts_to<state_atom, connection_state>,
  caf::reacts_to<event_atom, server_event>,
  caf::reacts_to<tick_atom, uint64_t>>;

/// What the repositories use.
struct repository_deps {
  api_gateway_actor api;    ///< resilient client (or the supervisor)
  offline_queue_actor queue;
  response_cache_actor cache;
  token_manager_actor tokens; ///< for the cache scope (user id)
  caf::timespan request_timeout = std::chrono::seconds(10);
};

struct system_repository_config {
  /// Poll of GET /system/status while someone watches and we are connected.
  caf::timespan status_interval = std::chrono::seconds(30);
};

chat_repository_actor spawn_chat_repository(caf::actor_system& sys,
                                            repository_deps deps);
user_repository_actor spawn_user_repository(caf::actor_system& sys,
                                            repository_deps deps);
system_repository_actor
spawn_system_repository(caf::actor_system& sys, repository_deps deps,
                        system_repository_config cfg = {});

} // namespace aico
