// aico engine: the project's single CAF type-ID block. Every atom and every
// message type of the engine is declared here (atoms: at most 10 chars).
// Register once with cfg.add_message_types<caf::id_block::aico>() when
// messages cross the network (the stress tool's distributed mode); local use
// needs no registration.
#pragma once

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "messages/types.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(aico, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(aico, (aico::api_call))
  CAF_ADD_TYPE_ID(aico, (aico::api_reply))
  CAF_ADD_TYPE_ID(aico, (aico::server_event))
  CAF_ADD_TYPE_ID(aico, (aico::connection_state))
  CAF_ADD_TYPE_ID(aico, (aico::session_info))
  // connection lifecycle
  CAF_ADD_ATOM(aico, aico, connect_atom, "connect")
  CAF_ADD_ATOM(aico, aico, disconnect_atom, "disconnect")
  CAF_ADD_ATOM(aico, aico, request_atom, "request")
  CAF_ADD_ATOM(aico, aico, token_atom, "token")
  CAF_ADD_ATOM(aico, aico, event_atom, "event")
  CAF_ADD_ATOM(aico, aico, tstate_atom, "tstate")
  CAF_ADD_ATOM(aico, aico, state_atom, "state")
  CAF_ADD_ATOM(aico, aico, watch_atom, "watch")
  // authentication
  CAF_ADD_ATOM(aico, aico, login_atom, "login")
  CAF_ADD_ATOM(aico, aico, logout_atom, "logout")
  CAF_ADD_ATOM(aico, aico, refresh_atom, "refresh")
  CAF_ADD_ATOM(aico, aico, auth_atom, "auth")
  CAF_ADD_ATOM(aico, aico, session_atom, "session")
  // internal timers and I/O-thread callbacks
  CAF_ADD_ATOM(aico, aico, tick_atom, "tick")
  CAF_ADD_ATOM(aico, aico, timeout_atom, "timeout")
  CAF_ADD_ATOM(aico, aico, probe_atom, "probe")
  CAF_ADD_ATOM(aico, aico, health_atom, "health")
  CAF_ADD_ATOM(aico, aico, io_atom, "io")
CAF_END_TYPE_ID_BLOCK(aico)
