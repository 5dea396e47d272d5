// aico client engine: the one header an application includes.
//
// Two ways to embed the engine:
//
//  * Actor code (CAF 0.17): construct an aico::engine on the host's
//    caf::actor_system and talk to its typed actor handles:
//      aico::engine eng{sys, cfg};
//      self->request(eng.chat(), 10s, aico::send_atom_v, msg).then(...);
//      self->send(eng.chat(), aico::watch_atom_v, my_chat_listener);
//      self->send(eng.connection(), aico::watch_atom_v, my_state_listener);
//    See messages/engine.hpp and messages/repositories.hpp.
//
//  * Plain C++: aico::client (aico/facade.hpp) with std::future results and
//    callback subscriptions.
//
// Configuration: aico::load_config(file, env) (src/config/load_config.hpp,
// docs/configuration.md). Link with `aico::client` (CMake package
// aico_client) or `pkg-config --cflags --libs aico_client`.
#pragma once

#include "messages/engine.hpp"       // aico::engine, engine_config
#include "messages/errors.hpp"       // error_class, classify, describe
#include "messages/models.hpp"       // chat_message, user, system_status, ...
#include "messages/repositories.hpp" // chat/user/system repositories
#include "messages/type_ids.hpp"     // atoms (send_atom, watch_atom, ...)
#include "messages/types.hpp"        // connection_state, session_info, ...
#include "src/config/load_config.hpp" // load_config, default_client_config

#include "aico/facade.hpp"           // aico::client, subscription
