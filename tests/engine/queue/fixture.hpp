// Shared fixture of the queue and cache actor tests: CAF's deterministic
// test coordinator (virtual time, no threads), a manual wall clock that
// advances together with the virtual clock, a temporary state directory and
// a fake downstream (api_gateway_actor) that records every call and holds
// it until the test answers it.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/caf_fixture.hpp"
#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "messages/token_manager.hpp"

namespace aico::test {

using answer_atom = caf::atom_constant<caf::atom("answer")>;
using fail_atom = caf::atom_constant<caf::atom("fail")>;

/// What the fake downstream saw; shared by the test and the fake.
struct fake_downstream_log {
  std::vector<api_call> calls; ///< every request, in arrival order
  std::vector<bool> auth;
  /// false: answer at once with auto_status / auto_body
  bool hold = true;
  int32_t auto_status = 200;
  std::string auto_body = R"({"success":true,"data":{}})";

  size_t count(const std::string& id) const {
    size_t n = 0;
    for (auto& c : calls)
      if (c.id == id)
        ++n;
    return n;
  }

  std::vector<std::string> ids() const {
    std::vector<std::string> res;
    for (auto& c : calls)
      res.push_back(c.id);
    return res;
  }
};

struct fake_downstream_state {
  std::map<std::string, std::deque<caf::response_promise>> held;
};

/// Answers like the supervisor: 2xx as api_reply, anything else as the
/// classified error (make_status_error).
inline void answer(caf::response_promise& rp, const std::string& id,
                   int32_t status, const std::string& body,
                   const std::string& retry_after) {
  if (status >= 200 && status < 300) {
    api_reply r;
    r.id = id;
    r.status = status;
    r.body = body;
    rp.deliver(std::move(r));
  } else {
    rp.deliver(make_status_error(status, body, retry_after));
  }
}

inline caf::behavior
fake_downstream(caf::stateful_actor<fake_downstream_state>* self,
                std::shared_ptr<fake_downstream_log> log) {
  return {
    [=](request_atom, const api_call& c, caf::timespan,
        bool auth) -> caf::response_promise {
      log->calls.push_back(c);
      log->auth.push_back(auth);
      auto rp = self->make_response_promise();
      if (log->hold)
        self->state.held[c.id].push_back(rp);
      else
        answer(rp, c.id, log->auto_status, log->auto_body, "");
      return rp;
    },
    /// answers the newest held call with this id
    [=](answer_atom, const std::string& id, int32_t status,
        const std::string& body, const std::string& retry_after) {
      auto i = self->state.held.find(id);
      if (i == self->state.held.end() || i->second.empty()) {
        ADD_FAILURE() << "no held call with id " << id;
        return;
      }
      auto rp = i->second.back(); // the newest (older ones: dead callers)
      i->second.pop_back();
      answer(rp, id, status, body, retry_after);
    },
    [=](fail_atom, const std::string& id, const caf::error& err) {
      auto i = self->state.held.find(id);
      if (i == self->state.held.end() || i->second.empty()) {
        ADD_FAILURE() << "no held call with id " << id;
        return;
      }
      auto rp = i->second.back(); // the newest (older ones: dead callers)
      i->second.pop_back();
      rp.deliver(err);
    },
  };
}

struct actor_fixture : aico::test::caf_fixture {
  caf::scoped_actor self{sys};
  std::shared_ptr<fake_downstream_log> net
    = std::make_shared<fake_downstream_log>();
  caf::actor fake;
  std::string dir;
  /// The manual wall clock handed to the actors.
  std::chrono::system_clock::time_point wall
    = std::chrono::system_clock::time_point{
      std::chrono::milliseconds{1'700'000'000'000}};

  actor_fixture() {
    namespace fs = std::filesystem;
    std::string tmpl = (fs::temp_directory_path() / "aico-queue-XXXXXX")
                         .string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    fake = sys.spawn(fake_downstream, net);
  }

  ~actor_fixture() override {
    self->send_exit(fake, caf::exit_reason::user_shutdown);
    sched.run();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  std::function<std::chrono::system_clock::time_point()> clock() {
    return [this] { return wall; };
  }

  api_gateway_actor downstream() {
    return caf::actor_cast<api_gateway_actor>(fake);
  }

  /// Advances the wall clock and the virtual clock, then runs.
  void advance(std::chrono::milliseconds d) {
    wall += d;
    sched.advance_time(d);
    sched.run();
  }

  void answer(const std::string& id, int32_t status,
              std::string body = R"({"success":true,"data":{}})",
              std::string retry_after = {}) {
    self->send(fake, answer_atom::value, id, status, std::move(body),
               std::move(retry_after));
    sched.run();
  }

  void fail(const std::string& id, caf::error err) {
    self->send(fake, fail_atom::value, id, std::move(err));
    sched.run();
  }

  /// Sends a request to `dst`, runs the scheduler, returns the answer.
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dst, Ts&&... xs) {
    auto rh = self->request(dst, caf::infinite, std::forward<Ts>(xs)...);
    sched.run();
    caf::expected<T> res{caf::error{}};
    rh.receive([&](T& x) { res = std::move(x); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }
};

} // namespace aico::test
