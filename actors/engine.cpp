#include "messages/engine.hpp"

namespace aico {

engine::engine(caf::actor_system& sys, engine_config cfg, bool connect)
  : sys_(sys), cfg_(std::move(cfg)) {
  sup_ = spawn_supervisor(sys_, cfg_.connection);
  tokens_ = spawn_token_manager(sys_, cfg_.tokens,
                                caf::actor_cast<api_gateway_actor>(sup_));
  caf::anon_send(sup_, auth_atom::value, tokens_);
  if (connect)
    caf::anon_send(sup_, connect_atom::value);
}

engine::~engine() {
  caf::scoped_actor self{sys_};
  self->send_exit(sup_, caf::exit_reason::user_shutdown);
  self->send_exit(tokens_, caf::exit_reason::user_shutdown);
  // bounded wait: monitor both and wait for their down messages
  self->monitor(sup_);
  self->monitor(tokens_);
  int down = 0;
  bool timed_out = false;
  while (down < 2 && !timed_out)
    self->receive([&](caf::down_msg&) { ++down; },
                  caf::after(cfg_.shutdown_timeout) >> [&] {
                    timed_out = true;
                  });
}

} // namespace aico
