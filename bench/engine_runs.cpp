// aico-bench-transport: the engine variants (transport actor alone, whole
// engine). Round trips are measured from a caf::scoped_actor with
// request(...).receive(...), as a host thread would call the engine;
// throughput from an event-based actor that keeps `window` requests in flight
// with request(...).then(...) so the measurement does not serialise the
// engine. No exception leaves an actor handler.
#include "engine_runs.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <utility>

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "actors/transport_registry.hpp"
#include "messages/transport.hpp"

namespace aico::bench {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// Extra time a requester allows on top of the engine's own deadline (the
/// engine answers with a timeout error itself before that).
// Calls are requested without a CAF timeout (no timer-thread wake-up to
// set and cancel one per call): the engine and the transport actor answer
// every call by its deadline (`timeout`), as an application relies on.
constexpr caf::timespan grace = std::chrono::seconds(2);

std::string render(const caf::error& e) {
  return describe(e);
}

bool is_2xx(const api_reply& r) {
  return r.status >= 200 && r.status < 300;
}

// -- the pipelining actor --------------------------------------------------------

struct pipe_state {
  caf::actor target;
  bool via_supervisor = false; ///< 4-argument request (supervisor) or 3
  bool auth = false;
  api_call proto;
  caf::timespan timeout{0};
  int total = 0;
  int sent = 0;
  int done = 0;
  uint64_t next_id = 0;
  bool finished = true;
  caf::response_promise rp;
  static inline const char* name = "aico.bench-pipeline";
};

using pipe_ptr = caf::stateful_actor<pipe_state>*;

void finish(pipe_ptr self, caf::error err) {
  auto& st = self->state;
  if (st.finished)
    return;
  st.finished = true;
  if (err)
    st.rp.deliver(std::move(err));
  else
    st.rp.deliver(true);
}

void issue(pipe_ptr self);

void on_reply(pipe_ptr self, const api_reply& r) {
  auto& st = self->state;
  if (st.finished)
    return;
  if (!is_2xx(r)) {
    finish(self, caf::make_error(caf::sec::runtime_error,
                                 "status " + std::to_string(r.status) + ": "
                                   + r.body.substr(0, 200)));
    return;
  }
  if (++st.done >= st.total) {
    finish(self, caf::error{});
    return;
  }
  if (st.sent < st.total)
    issue(self);
}

void issue(pipe_ptr self) {
  auto& st = self->state;
  api_call c = st.proto;
  c.id = "pipe-" + std::to_string(++st.next_id);
  ++st.sent;
  auto ok = [self](api_reply& r) {
    try {
      on_reply(self, r);
    } catch (...) {
      finish(self, caf::make_error(caf::sec::runtime_error,
                                   std::string{"bench: internal error"}));
    }
  };
  auto fail = [self](caf::error& e) { finish(self, std::move(e)); };
  if (st.via_supervisor)
    self
      ->request(st.target, caf::infinite, request_atom_v, std::move(c),
                st.timeout, st.auth)
      .then(ok, fail);
  else
    self
      ->request(st.target, caf::infinite, request_atom_v, std::move(c),
                st.timeout)
      .then(ok, fail);
}

caf::behavior pipeline(pipe_ptr self, caf::actor target, bool via_supervisor,
                       bool auth, api_call proto, caf::timespan timeout) {
  auto& st = self->state;
  st.target = std::move(target);
  st.via_supervisor = via_supervisor;
  st.auth = auth;
  st.proto = std::move(proto);
  st.timeout = timeout;
  return {
    // (total, window): sends `total` requests, `window` at a time; replies
    // true when all were answered with 2xx, or the first error.
    [self](int total, int window) -> caf::response_promise {
      auto& st = self->state;
      st.rp = self->make_response_promise();
      st.total = total;
      st.sent = 0;
      st.done = 0;
      st.finished = false;
      try {
        if (total <= 0) {
          finish(self, caf::error{});
          return st.rp;
        }
        auto first = std::min(total, std::max(1, window));
        for (int i = 0; i < first; ++i)
          issue(self);
      } catch (const std::exception& e) {
        finish(self, caf::make_error(caf::sec::runtime_error,
                                     std::string{"bench: "} + e.what()));
      } catch (...) {
        finish(self, caf::make_error(caf::sec::runtime_error,
                                     std::string{"bench: internal error"}));
      }
      return st.rp;
    },
  };
}

// -- measurements shared by both variants --------------------------------------

/// Round trips from `self`, then the pipelined phase through a pipeline
/// actor. `target` answers request(api_call, timespan[, bool]).
void measure(caf::scoped_actor& self, caf::actor target, bool via_supervisor,
             bool auth, const call_spec& call, const run_params& p,
             run_result& res) {
  api_call proto{"", call.method, call.path, "",
                 via_supervisor && auth ? std::string{} : call.token};
  caf::timespan to = p.timeout;
  uint64_t n = 0;
  proc_usage usage0;
  for (int i = 0; i < p.warmup + p.requests; ++i) {
    if (i == p.warmup)
      usage0 = proc_usage_now();
    api_call c = proto;
    c.id = "seq-" + std::to_string(++n);
    std::string err;
    auto on_reply = [&](api_reply& r) {
      if (!is_2xx(r))
        err = "status " + std::to_string(r.status) + ": "
              + r.body.substr(0, 200);
    };
    auto on_error = [&](caf::error& e) { err = render(e); };
    auto t0 = steady::now();
    if (via_supervisor)
      self->request(target, caf::infinite, request_atom_v, std::move(c), to, auth)
        .receive(on_reply, on_error);
    else
      self->request(target, caf::infinite, request_atom_v, std::move(c), to)
        .receive(on_reply, on_error);
    auto t1 = steady::now();
    if (!err.empty()) {
      res.error = "request " + std::to_string(i + 1) + " failed: " + err;
      return;
    }
    if (i >= p.warmup)
      res.rtt_us.push_back(micros(t1 - t0));
  }
  res.usage_since(usage0, p.requests);
  auto pipe = self->spawn(pipeline, target, via_supervisor, auth, proto, to);
  auto run_pipe = [&](int total) {
    bool ok = false;
    caf::timespan limit = to * (1 + total / std::max(1, p.window)) + grace;
    self->request(pipe, limit, total, p.window)
      .receive([&](bool) { ok = true; },
               [&](caf::error& e) {
                 res.error = "pipelined phase failed: " + render(e);
               });
    return ok;
  };
  if (p.pipe_warmup <= 0 || run_pipe(p.pipe_warmup)) {
    auto t0 = steady::now();
    if (run_pipe(p.total)) {
      res.pipe_seconds = std::chrono::duration<double>(steady::now() - t0)
                           .count();
      res.rps = p.total / res.pipe_seconds;
    }
  }
  self->send_exit(pipe, caf::exit_reason::user_shutdown);
  self->wait_for(pipe);
}

} // namespace

run_result transport_actor_run(caf::actor_system& sys, const engine_target& t,
                               const call_spec& call, const run_params& p) {
  run_result res;
  caf::scoped_actor self{sys};
  // the scoped actor is the listener: it only gets tstate reports (no token
  // is set, so no event subscription)
  auto listener = caf::actor_cast<transport_listener_actor>(self);
  // the transport as the supervisor spawns it: from its registry entry
  supervisor_config sc;
  sc.ipc.endpoint = t.ipc_endpoint;
  sc.ws.url = t.ws_url;
  sc.http.base_url = t.http_url;
  sc.http.max_connections = p.http_connections;
  sc.grpc.endpoint = t.grpc_endpoint;
  auto* entry = find_transport(t.mode);
  if (!entry) {
    res.error = "no transport registered for this mode";
    return res;
  }
  transport_actor tr = entry->spawn(sys, sc, listener);
  self->send(tr, connect_atom_v);
  auto deadline = steady::now() + p.timeout;
  bool up = false;
  while (!up && res.error.empty()) {
    auto left = deadline - steady::now();
    if (left <= steady::duration::zero()) {
      res.error = "transport did not come up in time";
      break;
    }
    self->receive(
      [&](tstate_atom, transport_mode, transport_status s,
          const std::string& reason) {
        if (s == transport_status::up)
          up = true;
        else if (s == transport_status::down || s == transport_status::idle)
          res.error = "transport down: " + reason;
      },
      [&](event_atom, const server_event&) {},
      caf::after(std::chrono::duration_cast<caf::timespan>(left)) >> [] {});
  }
  if (up)
    measure(self, caf::actor_cast<caf::actor>(tr), false, false, call, p, res);
  self->send_exit(tr, caf::exit_reason::user_shutdown);
  self->wait_for(tr);
  return res;
}

run_result engine_run(caf::actor_system& sys, const engine_target& t,
                      const call_spec& call, const run_params& p) {
  run_result res;
  engine_config cfg;
  auto& c = cfg.connection;
  c.order = {t.mode};
  c.http.base_url = t.http_url;
  c.http.max_connections = p.http_connections;
  c.ws.url = t.ws_url;
  c.ipc.endpoint = t.ipc_endpoint;
  c.grpc.endpoint = t.grpc_endpoint;
  c.one_hop = p.one_hop;
  c.call_lane = p.call_lane;
  cfg.request_timeout = p.timeout;
  cfg.tokens.state_dir.clear(); // tokens in memory only
  cfg.shutdown_timeout = 5s;
  bool auth = !call.token.empty();
  caf::scoped_actor self{sys};
  engine eng{sys, cfg, true};
  self->send(eng.connection(), watch_atom_v,
             caf::actor_cast<engine_listener_actor>(self));
  auto deadline = steady::now() + p.timeout;
  bool up = false;
  std::string last = "no state yet";
  while (!up) {
    auto left = deadline - steady::now();
    if (left <= steady::duration::zero())
      break;
    self->receive(
      [&](state_atom, const connection_state& cs) {
        last = to_string(cs);
        up = cs.state == link_state::connected
             || cs.state == link_state::degraded;
      },
      [&](event_atom, const server_event&) {},
      caf::after(std::chrono::duration_cast<caf::timespan>(left)) >> [] {});
  }
  if (!up) {
    res.error = "engine did not connect in time (last state: " + last + ")";
    return res;
  }
  if (auth) {
    self
      ->request(eng.tokens(), p.timeout + grace, login_atom_v, t.username,
                t.password)
      .receive([](const session_info&) {},
               [&](caf::error& e) { res.error = "login: " + render(e); });
    if (!res.error.empty())
      return res;
  }
  measure(self, caf::actor_cast<caf::actor>(eng.connection()), true, auth,
          call, p, res);
  return res;
}

} // namespace aico::bench
