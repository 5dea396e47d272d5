// aico engine: the project's single CAF type-ID block. Every atom and every
// message type of the engine is declared here (atoms: at most 10 chars).
// Register once with cfg.add_message_types<caf::id_block::aico>() when
// messages cross the network (the stress tool's distributed mode); local use
// needs no registration.
#pragma once

#include "caf/all.hpp"

#include "aico/actors.hpp" // the public atoms (not repeated here)

#include "messages/errors.hpp"
#include "messages/models.hpp"
#include "messages/types.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(aico, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(aico, (aico::api_call))
  CAF_ADD_TYPE_ID(aico, (aico::api_reply))
  CAF_ADD_TYPE_ID(aico, (aico::server_event))
  CAF_ADD_TYPE_ID(aico, (aico::connection_state))
  CAF_ADD_TYPE_ID(aico, (aico::session_info))
  // models (messages/models.hpp)
  CAF_ADD_TYPE_ID(aico, (aico::message_status))
  CAF_ADD_TYPE_ID(aico, (aico::chat_message))
  CAF_ADD_TYPE_ID(aico, (std::vector<aico::chat_message>))
  CAF_ADD_TYPE_ID(aico, (aico::stream_chunk))
  CAF_ADD_TYPE_ID(aico, (aico::history_page))
  CAF_ADD_TYPE_ID(aico, (aico::pref_value))
  CAF_ADD_TYPE_ID(aico, (aico::user_preferences))
  CAF_ADD_TYPE_ID(aico, (aico::user))
  CAF_ADD_TYPE_ID(aico, (aico::family_member))
  CAF_ADD_TYPE_ID(aico, (aico::family))
  CAF_ADD_TYPE_ID(aico, (aico::system_status))
  CAF_ADD_TYPE_ID(aico, (aico::system_health))
  CAF_ADD_TYPE_ID(aico, (aico::update_ticket))
  CAF_ADD_TYPE_ID(aico, (aico::system_update_event))
  CAF_ADD_TYPE_ID(aico, (aico::envelope))
  // connection lifecycle
  CAF_ADD_ATOM(aico, aico, connect_atom, "connect")
  CAF_ADD_ATOM(aico, aico, disconnect_atom, "disconnect")
  CAF_ADD_ATOM(aico, aico, request_atom, "request")
  CAF_ADD_ATOM(aico, aico, token_atom, "token")
  CAF_ADD_ATOM(aico, aico, tstate_atom, "tstate")
  // authentication
  CAF_ADD_ATOM(aico, aico, refresh_atom, "refresh")
  CAF_ADD_ATOM(aico, aico, auth_atom, "auth")
  // internal timers and I/O-thread callbacks
  CAF_ADD_ATOM(aico, aico, tick_atom, "tick")
  CAF_ADD_ATOM(aico, aico, timeout_atom, "timeout")
  CAF_ADD_ATOM(aico, aico, probe_atom, "probe")
  CAF_ADD_ATOM(aico, aico, io_atom, "io")
  // resilience, offline queue, cache, repositories (issue 4)
  CAF_ADD_ATOM(aico, aico, breaker_atom, "breaker")
  CAF_ADD_ATOM(aico, aico, enqueue_atom, "enqueue")
  CAF_ADD_ATOM(aico, aico, queue_atom, "queue")
  CAF_ADD_ATOM(aico, aico, drain_atom, "drain")
  CAF_ADD_ATOM(aico, aico, read_atom, "read")
  CAF_ADD_ATOM(aico, aico, invalidate_atom, "invalidate")
  // event stream continuity (issue 15)
  CAF_ADD_TYPE_ID(aico, (aico::event_stats))
  CAF_ADD_ATOM(aico, aico, resume_atom, "resume")
  CAF_ADD_ATOM(aico, aico, stats_atom, "evstats")
CAF_END_TYPE_ID_BLOCK(aico)
