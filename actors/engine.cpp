#include "messages/engine.hpp"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "actors/transport_registry.hpp"

namespace aico {

namespace {

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string{base && *base ? base : "/tmp"}
                     + "/aico-engine-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    return {};
  return tmpl;
}

} // namespace

engine::engine(caf::actor_system& sys, engine_config cfg, bool connect)
  : sys_(sys), cfg_(std::move(cfg)) {
  if (cfg_.state_dir.empty())
    cfg_.state_dir = cfg_.tokens.state_dir;
  if (cfg_.state_dir.empty()) {
    temp_state_dir_ = make_temp_dir();
    cfg_.queue.state_dir = cfg_.cache.state_dir = temp_state_dir_;
    // tokens stay in memory only
  } else {
    if (cfg_.tokens.state_dir.empty())
      cfg_.tokens.state_dir = cfg_.state_dir;
    if (cfg_.queue.state_dir.empty())
      cfg_.queue.state_dir = cfg_.state_dir;
    if (cfg_.cache.state_dir.empty())
      cfg_.cache.state_dir = cfg_.state_dir;
  }
  if (cfg_.profile == wire_profile::aico) {
    // the transports pick the profile's drivers; its own state (identity
    // key, pinned server keys) lives in STATE_DIR/aico
    auto dir = (cfg_.state_dir.empty() ? temp_state_dir_ : cfg_.state_dir)
               + "/aico";
    for_each_transport(cfg_.connection, [&dir](transport_config& t) {
      t.profile = "aico";
      t.profile_state_dir = dir;
    });
  }
  cfg_.queue.request_timeout = cfg_.request_timeout;
  cfg_.cache.request_timeout = cfg_.request_timeout;
  sup_ = spawn_supervisor(sys_, cfg_.connection);
  tokens_ = spawn_token_manager(sys_, cfg_.tokens,
                                api_gateway_actor{sup_});
  api_ = spawn_resilient_client(sys_, cfg_.resilience, sup_);
  api_gateway_actor downstream = api_;
  queue_ = spawn_offline_queue(sys_, cfg_.queue, downstream);
  cache_ = spawn_response_cache(sys_, cfg_.cache, downstream);
  repository_deps deps{downstream, queue_, cache_, tokens_,
                       cfg_.request_timeout};
  chat_ = spawn_chat_repository(sys_, deps);
  users_ = spawn_user_repository(sys_, deps);
  system_ = spawn_system_repository(sys_, deps, cfg_.system);
  // wiring: who hears what (implicit subset conversions of typed_actor:
  // the compiler checks that each actor handles what it is sent)
  caf::anon_send(sup_, auth_atom_v, tokens_);
  caf::anon_send(sup_, watch_atom_v, engine_listener_actor{queue_});
  caf::anon_send(tokens_, watch_atom_v, auth_listener_actor{queue_});
  caf::anon_send(queue_, watch_atom_v, queue_listener_actor{chat_});
  caf::anon_send(queue_, watch_atom_v, queue_listener_actor{users_});
  caf::anon_send(sup_, watch_atom_v, engine_listener_actor{chat_});
  caf::anon_send(sup_, watch_atom_v, engine_listener_actor{system_});
  if (connect)
    caf::anon_send(sup_, connect_atom_v);
}

engine::~engine() {
  caf::scoped_actor self{sys_};
  std::vector<caf::actor> all{
    caf::actor_cast<caf::actor>(chat_),   caf::actor_cast<caf::actor>(users_),
    caf::actor_cast<caf::actor>(system_), caf::actor_cast<caf::actor>(queue_),
    caf::actor_cast<caf::actor>(cache_),  caf::actor_cast<caf::actor>(api_),
    caf::actor_cast<caf::actor>(tokens_), caf::actor_cast<caf::actor>(sup_)};
  size_t alive = 0;
  for (auto& a : all)
    if (a) {
      self->monitor(a);
      self->send_exit(a, caf::exit_reason::user_shutdown);
      ++alive;
    }
  // bounded wait for their down messages
  size_t down = 0;
  bool timed_out = false;
  while (down < alive && !timed_out)
    self->receive([&](caf::down_msg&) { ++down; },
                  caf::after(cfg_.shutdown_timeout) >> [&] {
                    timed_out = true;
                  });
  if (!temp_state_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_state_dir_, ec);
  }
}

} // namespace aico
