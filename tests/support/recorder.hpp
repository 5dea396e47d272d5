// Tests: actors that record what they are sent, for assertions.
//
// * transport_recorder: a transport's listener (tstate and event), as the
//   supervisor would be.
// * call_box / call_into: the answer of one request, delivered to a
//   throw-away actor (no scoped_actor blocking on the test coordinator).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "messages/transport.hpp"

namespace aico::test {

/// What a transport reported to its listener, in order.
struct transport_log {
  std::vector<std::pair<transport_status, std::string>> states;
  std::vector<server_event> events;

  transport_status last() const {
    return states.empty() ? transport_status::idle : states.back().first;
  }
  std::string last_reason() const {
    return states.empty() ? std::string{} : states.back().second;
  }
};

inline caf::behavior transport_recorder_fun(caf::event_based_actor*,
                                            std::shared_ptr<transport_log> l) {
  return {
    [l](tstate_atom, transport_mode, transport_status s,
        const std::string& reason) { l->states.emplace_back(s, reason); },
    [l](event_atom, const server_event& ev) { l->events.push_back(ev); },
  };
}

/// A listener recording into `log`.
inline transport_listener_actor
spawn_transport_recorder(caf::actor_system& sys,
                         std::shared_ptr<transport_log> log) {
  return caf::actor_cast<transport_listener_actor>(
    sys.spawn(transport_recorder_fun, std::move(log)));
}

/// The answer of one request (done once it came).
template <class T>
struct call_box {
  bool done = false;
  caf::expected<T> res{caf::error{}};
};

/// Sends `xs...` to `dst` as a request without a CAF timeout from a new
/// actor and stores the answer in the returned box (run the scheduler to
/// get it).
template <class T, class Handle, class... Ts>
std::shared_ptr<call_box<T>> call_into(caf::actor_system& sys,
                                       const Handle& dst, Ts... xs) {
  auto box = std::make_shared<call_box<T>>();
  sys.spawn([box, dst, xs...](caf::event_based_actor* self) {
    self->request(dst, caf::infinite, xs...)
      .then(
        [box](T& x) {
          box->done = true;
          box->res = std::move(x);
        },
        [box](caf::error& e) {
          box->done = true;
          box->res = std::move(e);
        });
  });
  return box;
}

} // namespace aico::test
