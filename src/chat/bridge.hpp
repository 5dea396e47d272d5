// aico-chat: the bridge between the engine's actors and the UI thread.
//
//   engine actors ──▶ listener actor ──push──▶ ui_queue ──drain──▶ UI thread
//   UI thread ──ask()──▶ one-shot requester actor ──▶ engine ──reply──▶ ui_queue
//
// Actors never block on the UI and the UI never blocks on an actor: every
// update crosses as a closure applied to the chat_model on the UI thread.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "chat_model.hpp"
#include "messages/engine.hpp"

namespace aico::chat {

/// A thread-safe FIFO of model updates (filled by actors, drained by the UI).
class ui_queue {
public:
  using update = std::function<void(chat_model&)>;

  /// Thread-safe; never throws (an update that cannot be stored is lost).
  void push(update f) noexcept;

  /// Takes everything queued so far (UI thread).
  std::vector<update> drain();

private:
  std::mutex mtx_;
  std::deque<update> items_;
};

/// Spawns the listener actor and subscribes it to the chat stream, the
/// system status stream, the connection state and the offline queue.
/// Stop it with caf::anon_send_exit.
caf::actor spawn_listener(caf::actor_system& sys, engine& eng, ui_queue& q);

/// Sends one request from a short-lived actor; the reply (or the error)
/// arrives on the UI thread through `q` as on_ok(model, value) /
/// on_err(model, text).
template <class Result, class Handle, class OnOk, class OnErr, class... Ts>
void ask(caf::actor_system& sys, ui_queue& q, Handle dest,
         caf::timespan timeout, OnOk on_ok, OnErr on_err, Ts... xs) {
  sys.spawn([=, &q](caf::event_based_actor* self) {
    self->request(dest, timeout, xs...)
      .then(
        [=, &q](Result& r) {
          q.push([on_ok, r](chat_model& m) { on_ok(m, r); });
        },
        [=, &q](caf::error& err) {
          std::string text;
          try {
            text = describe(err); // a sentence, never error(1, 'aico', ...)
          } catch (...) {
            text = "unexpected error";
          }
          q.push([on_err, text](chat_model& m) { on_err(m, text); });
        });
  });
}

} // namespace aico::chat
