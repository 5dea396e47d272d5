// aico engine: aico::actor_engine (include/aico/actors.hpp), the engine's
// app-facing handles for CAF hosts. The handles are the engine's own actors
// converted to the public interfaces (CAF 0.17's typed_actor subset
// conversion, checked by the compiler), except the connection stream: the
// supervisor's watchers also get server events (internal), so a small
// adapter actor forwards only the states to a connection_listener_actor.
#include "aico/actors.hpp"

#include <utility>

#include "messages/engine.hpp"
#include "src/facade/public_config.hpp"

namespace aico {

namespace {

/// One per watcher: an engine listener that forwards the states and ends
/// with its listener.
engine_listener_actor::behavior_type
state_forwarder(engine_listener_actor::stateful_pointer<caf::unit_t> self,
                connection_listener_actor listener) {
  self->monitor(listener);
  self->set_down_handler([self](const caf::down_msg&) { self->quit(); });
  return {
    [self, listener](state_atom, const connection_state& s) {
      self->send(listener, state_atom_v, s);
    },
    [](event_atom, const server_event&) {
      // internal: not for applications
    },
  };
}

connection_actor::behavior_type
connection_view(connection_actor::pointer self, supervisor_actor sup) {
  return {
    [self, sup](state_atom) -> caf::result<connection_state> {
      return self->delegate(sup, state_atom_v);
    },
    [self, sup](watch_atom, connection_listener_actor listener) {
      if (!listener)
        return;
      auto fwd = self->home_system().spawn(state_forwarder, listener);
      self->send(sup, watch_atom_v, fwd);
    },
  };
}

} // namespace

struct AICO_LOCAL actor_engine::impl {
  engine eng;
  connection_actor conn;

  impl(caf::actor_system& sys, engine_config cfg)
    : eng(sys, std::move(cfg)),
      conn(sys.spawn(connection_view, eng.connection())) {
  }

  ~impl() {
    caf::anon_send_exit(conn, caf::exit_reason::user_shutdown);
  }
};

actor_engine::actor_engine(caf::actor_system& sys, const client_config& cfg)
  : impl_(std::make_unique<impl>(sys, engine_config_or_throw(cfg))) {
}

actor_engine::~actor_engine() = default;

session_actor actor_engine::session() const {
  return impl_->eng.tokens();
}

chat_actor actor_engine::chat() const {
  return impl_->eng.chat();
}

user_actor actor_engine::users() const {
  return impl_->eng.users();
}

system_actor actor_engine::system() const {
  return impl_->eng.system();
}

connection_actor actor_engine::connection() const {
  return impl_->conn;
}

queue_actor actor_engine::queue() const {
  return impl_->eng.queue();
}

caf::timespan actor_engine::request_timeout() const {
  return impl_->eng.config().request_timeout;
}

} // namespace aico
