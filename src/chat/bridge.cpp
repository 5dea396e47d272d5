#include "bridge.hpp"

namespace aico::chat {

void ui_queue::push(update f) noexcept {
  try {
    std::lock_guard<std::mutex> guard{mtx_};
    items_.push_back(std::move(f));
  } catch (...) {
    // out of memory: the update is lost, the next one will show the state
  }
}

std::vector<ui_queue::update> ui_queue::drain() {
  std::vector<update> res;
  std::lock_guard<std::mutex> guard{mtx_};
  res.reserve(items_.size());
  for (auto& f : items_)
    res.push_back(std::move(f));
  items_.clear();
  return res;
}

namespace {

/// Handlers only copy the value into a closure and push it: no blocking,
/// and push() never throws, so nothing escapes a handler.
caf::behavior listener(caf::event_based_actor* self, ui_queue* q) {
  self->set_default_handler(caf::drop);
  return {
    [=](message_atom, const chat_message& x) {
      q->push([x](chat_model& m) { m.upsert(x); });
    },
    [=](event_atom, const stream_chunk& x) {
      q->push([x](chat_model& m) { m.add_chunk(x); });
    },
    [=](event_atom, const server_event&) {
      // raw events: the repositories turn the chat ones into the above
    },
    [=](state_atom, const connection_state& x) {
      q->push([x](chat_model& m) {
        m.conn = x;
        m.have_state = true;
      });
    },
    [=](status_atom, const system_status&) {
      // the gateway's status: shown on /health (asked then)
    },
    [=](update_atom, const system_update_event& x) {
      auto text = "system update: " + x.status;
      q->push([text](chat_model& m) { m.notice(text); });
    },
    [=](queue_atom, const queue_update& x) {
      q->push([x](chat_model& m) { m.queue_update_seen(x); });
    },
  };
}

} // namespace

caf::actor spawn_listener(caf::actor_system& sys, engine& eng, ui_queue& q) {
  auto l = sys.spawn(listener, &q);
  caf::anon_send(eng.chat(), watch_atom::value,
                 caf::actor_cast<chat_listener_actor>(l));
  caf::anon_send(eng.system(), watch_atom::value,
                 caf::actor_cast<system_listener_actor>(l));
  caf::anon_send(eng.connection(), watch_atom::value,
                 caf::actor_cast<engine_listener_actor>(l));
  caf::anon_send(eng.queue(), watch_atom::value,
                 caf::actor_cast<queue_listener_actor>(l));
  return l;
}

} // namespace aico::chat
