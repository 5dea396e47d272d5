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

/// How fresh a cached read must be.
struct read_options {
  /// Served from the cache without a request while at most this old.
  caf::timespan max_age = std::chrono::seconds(30);
  /// Always ask the gateway; the cache answers only if allow_stale.
  bool force_refresh = false;
  /// When the gateway cannot be reached, answer with the cached value of
  /// any age (flagged stale in read_origin). False: the error is the answer
  /// (with force_refresh: never from the cache, e.g. `history --refresh`).
  bool allow_stale = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_options& x) {
  return f(caf::meta::type_name("aico.read_options"), x.max_age,
           x.force_refresh, x.allow_stale);
}

/// Where a read's value came from.
struct read_origin {
  bool from_cache = false;
  /// Older than max_age, served because the gateway could not be reached.
  bool stale = false;
  caf::timespan age{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_origin& x) {
  return f(caf::meta::type_name("aico.read_origin"), x.from_cache, x.stale,
           x.age);
}

// -- chat ----------------------------------------------------------------------

/// A message to send.
struct outgoing_message {
  /// Idempotency key (1-128 of [A-Za-z0-9_.:-]); empty = generated.
  std::string id;
  /// Empty or "current" = the user's current conversation.
  std::string conversation_id;
  std::string content;
  std::string type = "text";
  std::string metadata = "{}"; ///< JSON object text
  /// How long queueing it durably may take at most (the caller's deadline,
  /// carried down to the queue file); 0 = the engine's request_timeout.
  /// The repository answers within it (plus a grace of about a second); an
  /// answer it cannot give in time is an error with code "outcome_unknown"
  /// naming the message id, never a false "not queued".
  caf::timespan timeout{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outgoing_message& x) {
  return f(caf::meta::type_name("aico.outgoing_message"), x.id,
           x.conversation_id, x.content, x.type, x.metadata, x.timeout);
}

struct history_query {
  /// Empty or "current" = the user's current conversation.
  std::string conversation_id;
  /// 0 = the latest `limit` messages; else the first `limit` after it.
  uint64_t since = 0;
  int32_t limit = 50; ///< 1-500
  read_options read;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_query& x) {
  return f(caf::meta::type_name("aico.history_query"), x.conversation_id,
           x.since, x.limit, x.read);
}

struct history_result {
  history_page page;
  read_origin origin;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_result& x) {
  return f(caf::meta::type_name("aico.history_result"), x.page, x.origin);
}

/// Receives the chat stream.
using chat_listener_actor = caf::typed_actor<
  /// A message is new or its status changed (replace by id).
  caf::reacts_to<message_atom, chat_message>,
  /// A chunk of a streamed bot reply.
  caf::reacts_to<event_atom, stream_chunk>>;

using chat_repository_actor = caf::typed_actor<
  /// Sends a message through the durable offline queue and replies at once
  /// with it as queued (optimistic update); the stream follows its status.
  /// Errors: validation (empty content, bad id, queue full), storage.
  caf::replies_to<send_atom, outgoing_message>::with<chat_message>,
  /// One page of history through the response cache.
  caf::replies_to<history_atom, history_query>::with<history_result>,
  /// Marks a message read (queued like a send, lane = conversation).
  caf::replies_to<mark_read_atom, std::string /*conversation*/,
                  std::string /*message id*/>::with<queue_entry>,
  /// Subscribes to the chat stream (messages in flight are sent at once).
  caf::reacts_to<watch_atom, chat_listener_actor>,
  // -- wiring: supervisor events, queue updates (not for applications) ----
  caf::reacts_to<state_atom, connection_state>,
  caf::reacts_to<event_atom, server_event>,
  caf::reacts_to<queue_atom, queue_update>>;

// -- user ----------------------------------------------------------------------

struct user_result {
  user value;
  read_origin origin;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_result& x) {
  return f(caf::meta::type_name("aico.user_result"), x.value, x.origin);
}

struct family_result {
  family value;
  read_origin origin;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, family_result& x) {
  return f(caf::meta::type_name("aico.family_result"), x.value, x.origin);
}

using user_repository_actor = caf::typed_actor<
  /// The logged-in user (GET /users/me, cached).
  caf::replies_to<me_atom, read_options>::with<user_result>,
  /// Merges these preferences (null value = delete the key); queued, so it
  /// also works offline. The cached user is refreshed once it is sent.
  caf::replies_to<prefs_atom, user_preferences>::with<queue_entry>,
  /// The other members of the household (GET /users/me/family, cached).
  caf::replies_to<family_atom, read_options>::with<family_result>,
  // -- wiring ----------------------------------------------------------------
  caf::reacts_to<queue_atom, queue_update>>;

// -- system --------------------------------------------------------------------

struct health_result {
  system_health value;
  read_origin origin;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, health_result& x) {
  return f(caf::meta::type_name("aico.health_result"), x.value, x.origin);
}

/// Receives the system status stream.
using system_listener_actor = caf::typed_actor<
  /// The gateway's status (polled while watched and connected; sent when it
  /// changes and right after subscribing).
  caf::reacts_to<status_atom, system_status>,
  /// A system update was scheduled or progressed (event system.update).
  caf::reacts_to<update_atom, system_update_event>,
  /// The engine's connection state.
  caf::reacts_to<state_atom, connection_state>>;

using system_repository_actor = caf::typed_actor<
  /// GET /health (no login needed), cached.
  caf::replies_to<health_atom, read_options>::with<health_result>,
  /// GET /system/status now.
  caf::replies_to<status_atom>::with<system_status>,
  /// POST /system/update (admin; authorization error otherwise).
  caf::replies_to<update_atom>::with<update_ticket>,
  /// Subscribes to the status stream.
  caf::reacts_to<watch_atom, system_listener_actor>,
  // -- wiring ----------------------------------------------------------------
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
