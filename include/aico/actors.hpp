// aico client library: the engine for CAF 0.17 applications, as typed actor
// handles living in the host's own caf::actor_system.
//
//   aico::actor_engine eng{sys, aico::client_config::load("client.json")};
//   self->request(eng.session(), 15s, aico::login_atom_v, user, pw).then(...);
//   self->send(eng.chat(), aico::watch_atom_v, my_chat_listener);
//   self->request(eng.chat(), 15s, aico::send_atom_v, msg).then(...);
//   self->send(eng.connection(), aico::watch_atom_v, my_state_listener);
//
// Only the app-facing interfaces are here: session, chat, user, system, the
// connection state stream and the offline queue, with their value types
// (aico/models.hpp) and atoms. The engine's internal wiring (its transports,
// timers, queue and cache plumbing) is not reachable through these handles.
// Errors arrive as caf::error; aico::classify() and aico::describe() turn
// them into a classification or a sentence for people.
//
// Needs CAF 0.17.6's headers (libcaf-dev) and nothing else beyond this
// library's own headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "aico/config.hpp"
#include "aico/errors.hpp"
#include "aico/export.hpp"
#include "aico/models.hpp"

namespace aico {

// -- atoms of the public interfaces ----------------------------------------------

#define AICO_PUBLIC_ATOM(name, text)                                           \
  using name = caf::atom_constant<caf::atom(text)>;                            \
  constexpr name name##_v = name{};

AICO_PUBLIC_ATOM(login_atom, "login")
AICO_PUBLIC_ATOM(logout_atom, "logout")
AICO_PUBLIC_ATOM(session_atom, "session")
AICO_PUBLIC_ATOM(watch_atom, "watch")
AICO_PUBLIC_ATOM(state_atom, "state")
AICO_PUBLIC_ATOM(event_atom, "event")
AICO_PUBLIC_ATOM(message_atom, "message")
AICO_PUBLIC_ATOM(send_atom, "send")
AICO_PUBLIC_ATOM(history_atom, "history")
AICO_PUBLIC_ATOM(mark_read_atom, "markread")
AICO_PUBLIC_ATOM(me_atom, "me")
AICO_PUBLIC_ATOM(prefs_atom, "prefs")
AICO_PUBLIC_ATOM(family_atom, "family")
AICO_PUBLIC_ATOM(health_atom, "health")
AICO_PUBLIC_ATOM(status_atom, "status")
AICO_PUBLIC_ATOM(update_atom, "update")
AICO_PUBLIC_ATOM(list_atom, "list")
AICO_PUBLIC_ATOM(retry_atom, "retry")
AICO_PUBLIC_ATOM(drop_atom, "drop")

#undef AICO_PUBLIC_ATOM

// -- CAF inspection of the value types (aico/models.hpp) -------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(caf::meta::type_name("aico.chat_message"), x.id, x.conversation_id,
           x.content, x.type, x.sender_id, x.sender, x.timestamp,
           x.timestamp_ms, x.seq, x.status, x.failure_reason, x.read_at,
           x.metadata, x.reply_to);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stream_chunk& x) {
  return f(caf::meta::type_name("aico.stream_chunk"), x.conversation_id,
           x.reply_to, x.message_id, x.seq_no, x.chunk, x.done);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_page& x) {
  return f(caf::meta::type_name("aico.history_page"), x.conversation_id,
           x.messages, x.has_more, x.next_since);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pref_value& x) {
  return f(caf::meta::type_name("aico.pref_value"), x.kind, x.boolean,
           x.integer, x.number, x.string);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_preferences& x) {
  return f(caf::meta::type_name("aico.user_preferences"), x.values);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user& x) {
  return f(caf::meta::type_name("aico.user"), x.id, x.username,
           x.display_name, x.role, x.preferences, x.created_at);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, family_member& x) {
  return f(caf::meta::type_name("aico.family_member"), x.id, x.username,
           x.display_name, x.role);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, family& x) {
  return f(caf::meta::type_name("aico.family"), x.members);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, system_status& x) {
  return f(caf::meta::type_name("aico.system_status"), x.is_healthy,
           x.version, x.timestamp, x.services, x.uptime_s);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, system_health& x) {
  return f(caf::meta::type_name("aico.system_health"), x.is_healthy,
           x.version, x.timestamp, x.services, x.uptime_s, x.connections,
           x.counts, x.faults);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, update_ticket& x) {
  return f(caf::meta::type_name("aico.update_ticket"), x.update_id, x.status);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, system_update_event& x) {
  return f(caf::meta::type_name("aico.system_update_event"), x.update_id,
           x.status, x.version, x.timestamp);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, connection_state& x) {
  return f(caf::meta::type_name("aico.connection_state"), x.state, x.mode,
           x.since, x.next_attempt_in, x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_info& x) {
  return f(caf::meta::type_name("aico.session_info"), x.user_id, x.username,
           x.role, x.access_expires_at);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_options& x) {
  return f(caf::meta::type_name("aico.read_options"), x.max_age,
           x.force_refresh, x.allow_stale);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_origin& x) {
  return f(caf::meta::type_name("aico.read_origin"), x.from_cache, x.stale,
           x.age);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outgoing_message& x) {
  return f(caf::meta::type_name("aico.outgoing_message"), x.id,
           x.conversation_id, x.content, x.type, x.metadata, x.timeout);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_query& x) {
  return f(caf::meta::type_name("aico.history_query"), x.conversation_id,
           x.since, x.limit, x.read);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_result& x) {
  return f(caf::meta::type_name("aico.history_result"), x.page, x.origin);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_result& x) {
  return f(caf::meta::type_name("aico.user_result"), x.value, x.origin);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, family_result& x) {
  return f(caf::meta::type_name("aico.family_result"), x.value, x.origin);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, health_result& x) {
  return f(caf::meta::type_name("aico.health_result"), x.value, x.origin);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_entry& x) {
  return f(caf::meta::type_name("aico.queue_entry"), x.seq,
           x.idempotency_key, x.kind, x.lane, x.method, x.path, x.body,
           x.created_at_ms, x.attempts, x.next_attempt_at_ms, x.state,
           x.status, x.last_error_class, x.last_error, x.parked_reason);
}

// -- the app-facing typed interfaces -------------------------------------------------

/// Login and logout (tokens are kept by the engine, never shown).
using session_actor = caf::typed_actor<
  /// Logs in; the session (user, role, expiry). Errors: authentication
  /// (wrong password), network, timeout, ...
  caf::replies_to<login_atom, std::string /*user*/,
                  std::string /*password*/>::with<session_info>,
  /// Forgets the tokens at once, then tells the gateway: true once it
  /// confirmed; an error if it could not be told.
  caf::replies_to<logout_atom>::with<bool>,
  /// The current session (authentication error if logged out).
  caf::replies_to<session_atom>::with<session_info>>;

/// Receives the chat stream.
using chat_listener_actor = caf::typed_actor<
  /// A message is new or its status changed (replace by id).
  caf::reacts_to<message_atom, chat_message>,
  /// A chunk of a streamed bot reply.
  caf::reacts_to<event_atom, stream_chunk>>;

/// Chat messages carry an explicit status: queued -> sending -> sent ->
/// delivered (seen back in the server's stream) | read, or failed{reason}.
/// The chat stream is keyed by message id: every emission replaces the
/// previous one with that id, and a status never goes backwards.
using chat_actor = caf::typed_actor<
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
  caf::reacts_to<watch_atom, chat_listener_actor>>;

/// The logged-in user, preferences, family.
using user_actor = caf::typed_actor<
  /// The logged-in user (GET /users/me, cached).
  caf::replies_to<me_atom, read_options>::with<user_result>,
  /// Merges these preferences (null value = delete the key); queued, so it
  /// also works offline.
  caf::replies_to<prefs_atom, user_preferences>::with<queue_entry>,
  /// The other members of the household (cached).
  caf::replies_to<family_atom, read_options>::with<family_result>>;

/// Receives the system status stream.
using system_listener_actor = caf::typed_actor<
  /// The gateway's status (polled while watched and connected; sent when it
  /// changes and right after subscribing).
  caf::reacts_to<status_atom, system_status>,
  /// A system update was scheduled or progressed.
  caf::reacts_to<update_atom, system_update_event>,
  /// The engine's connection state.
  caf::reacts_to<state_atom, connection_state>>;

/// Health, system status (and its stream), update requests.
using system_actor = caf::typed_actor<
  /// GET /health (no login needed), cached.
  caf::replies_to<health_atom, read_options>::with<health_result>,
  /// GET /system/status now.
  caf::replies_to<status_atom>::with<system_status>,
  /// POST /system/update (admin; authorization error otherwise).
  caf::replies_to<update_atom>::with<update_ticket>,
  /// Subscribes to the status stream.
  caf::reacts_to<watch_atom, system_listener_actor>>;

/// Receives the connection state stream.
using connection_listener_actor
  = caf::typed_actor<caf::reacts_to<state_atom, connection_state>>;

/// The connection state stream.
using connection_actor = caf::typed_actor<
  /// The current state.
  caf::replies_to<state_atom>::with<connection_state>,
  /// The current state at once, then every change, until the listener
  /// terminates.
  caf::reacts_to<watch_atom, connection_listener_actor>>;

/// The durable offline queue (sends, mark-read, preference updates).
using queue_actor = caf::typed_actor<
  caf::replies_to<list_atom>::with<std::vector<queue_entry>>,
  /// Puts a failed (parked) entry back in its lane.
  caf::replies_to<retry_atom, int64_t>::with<queue_entry>,
  /// Removes a pending or parked entry; false if it was not removed.
  caf::replies_to<drop_atom, int64_t>::with<bool>>;

// -- the engine ------------------------------------------------------------------------

/// The engine's actors, spawned into a host's actor system.
class AICO_API actor_engine {
public:
  /// Spawns the engine into `sys` (which must outlive this object) and
  /// starts connecting. Throws client_error (validation) on a bad
  /// configuration.
  actor_engine(caf::actor_system& sys, const client_config& cfg);

  /// Stops the engine's actors (never the host's), bounded by the
  /// configured shutdown timeout. Unsent commands stay in the durable queue.
  ~actor_engine();

  actor_engine(const actor_engine&) = delete;
  actor_engine& operator=(const actor_engine&) = delete;

  session_actor session() const;
  chat_actor chat() const;
  user_actor users() const;
  system_actor system() const;
  connection_actor connection() const;
  queue_actor queue() const;

  /// The configured default deadline of API calls (a good timeout for
  /// requests to these handles is a few seconds more).
  caf::timespan request_timeout() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// -- errors ----------------------------------------------------------------------------

/// Classifies an error from the engine (or CAF: request_timeout -> timeout,
/// request_receiver_down -> network, ...). Retryable: network, timeout,
/// server_error (5xx except 501, and 429).
AICO_API classification classify(const caf::error& err);

/// One sentence for people, "<what happened> (<detail>)", e.g. "gateway
/// unreachable (no transport available)". Never a raw caf::error rendering.
AICO_API std::string describe(const caf::error& err);

} // namespace aico

CAF_ERROR_CODE_ENUM(aico::error_class, "aico")
