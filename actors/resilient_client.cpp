// aico engine: the resilient client (see messages/resilience.hpp and
// docs/resilience.md). Circuit breakers per endpoint key, retries with
// backoff + jitter + Retry-After and a shared retry budget, in front of the
// connection supervisor. The decisions are the pure logic of src/core
// (circuit_breaker, retry_policy, retry_budget, backoff); this actor owns
// the timers: one delayed_send per retry wait and one for the breakers'
// next deadline (open -> half_open, probe timeouts). Nothing blocks, and no
// exception leaves a handler.
#include "messages/resilience.hpp"

#include "src/model/codec.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

namespace aico {

// -- free functions -------------------------------------------------------------

bool is_circuit_open(const caf::error& err) {
  if (!err)
    return false;
  auto c = classify(err);
  return c.cls == error_class::server_error && c.code == circuit_open_code;
}

std::string to_string(const breaker_snapshot& x) {
  std::string res = x.endpoint;
  res += ' ';
  res += to_string(x.state);
  char buf[128];
  std::snprintf(buf, sizeof(buf), " (rate %.2f over %u calls", x.failure_rate,
                static_cast<unsigned>(x.calls));
  res += buf;
  if (x.state == breaker_state::open) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                x.next_probe_in)
                .count();
    res += ", next probe in " + std::to_string(ms) + " ms";
  } else if (x.state == breaker_state::half_open) {
    res += ", " + std::to_string(x.probes_in_flight) + " probes in flight";
  }
  res += ")";
  return res;
}

namespace {

/// The literal words of the gateway's routes (docs/protocol.md); any other
/// path segment is an id.
bool is_route_word(const std::string& s) {
  static const std::set<std::string> words{
    "api",      "v1",        "users",   "authenticate", "refresh",
    "logout",   "me",        "preferences", "family",   "members",
    "conversations", "messages", "current", "read",      "health",
    "detailed", "system",    "status",  "update",       "admin",
    "faults",   "events",    "subscribe", "ws",         "stream",
  };
  return words.count(s) > 0;
}

} // namespace

std::string default_endpoint_key(const api_call& call) {
  auto path = call.path;
  auto q = path.find_first_of("?#");
  if (q != std::string::npos)
    path.resize(q);
  std::string res = call.method;
  for (auto& ch : res)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  res += ' ';
  bool any = false;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    auto next = path.find('/', pos);
    if (next == std::string::npos)
      next = path.size();
    if (next > pos) {
      auto seg = path.substr(pos, next - pos);
      res += '/';
      res += is_route_word(seg) ? seg : std::string{"*"};
      any = true;
    }
    pos = next + 1;
  }
  if (!any)
    res += '/';
  return res;
}

namespace {

using namespace std::chrono_literals;
using time_point = caf::actor_clock::time_point;

using client_impl = resilient_client_actor::extend_with<caf::typed_actor<
  /// the retry wait of a call elapsed (call key)
  caf::reacts_to<retry_atom, uint64_t>,
  /// the breakers' next deadline (open wait over, probe timeout)
  caf::reacts_to<tick_atom>>>;

struct call_state {
  caf::typed_response_promise<api_reply> rp;
  api_call call;
  bool auth = false;
  std::string endpoint;
  time_point deadline;
  int attempts = 0; ///< attempts sent so far
  int max_attempts = 1;
  backoff bo;
  caf::error last_error; ///< of the last attempt that reached the supervisor
};

struct client_state {
  static inline const char* name = "aico.resilient_client";

  resilience_config cfg;
  supervisor_actor sup;
  std::unique_ptr<breaker_registry> breakers;
  std::shared_ptr<retry_budget> budget;
  /// transitions reported by the breakers, published by flush()
  std::vector<std::pair<std::string, breaker_transition>> transitions;
  /// the last transition per endpoint (for snapshots)
  std::map<std::string, breaker_transition> last;
  std::set<std::string> endpoints;
  std::vector<breaker_listener_actor> listeners;
  std::map<uint64_t, call_state> calls;
  uint64_t next_key = 1;
  /// when the pending tick timer fires, if any
  std::optional<time_point> armed;
};

using self_ptr = client_impl::stateful_pointer<client_state>;

caf::timespan until(time_point from, time_point to) {
  if (to <= from)
    return caf::timespan{0};
  return std::chrono::duration_cast<caf::timespan>(to - from);
}

breaker_snapshot snapshot(self_ptr self, const std::string& key,
                          const circuit_breaker& cb) {
  auto& st = self->state;
  breaker_snapshot s;
  s.endpoint = key;
  s.state = cb.state();
  s.calls = cb.window_calls();
  s.failure_rate = s.calls > 0 ? static_cast<double>(cb.window_failures())
                                   / static_cast<double>(s.calls)
                               : 0.0;
  s.probes_in_flight = static_cast<uint32_t>(cb.probes_in_flight());
  s.open_count = cb.open_count();
  auto i = st.last.find(key);
  if (i != st.last.end()) {
    s.reason = to_string(i->second.reason);
    if (s.state == breaker_state::open && i->second.to == breaker_state::open
        && s.calls == 0) {
      s.calls = i->second.calls;
      s.failure_rate = i->second.failure_rate;
    }
  }
  if (s.state == breaker_state::open) {
    s.next_probe_in = until(self->clock().now(), cb.open_until());
    s.open_until = caf::make_timestamp() + s.next_probe_in;
  }
  return s;
}

/// Arms the tick timer for the breakers' earliest deadline unless an
/// earlier one is already pending.
void arm(self_ptr self) {
  auto& st = self->state;
  auto nd = st.breakers->next_deadline();
  if (!nd)
    return;
  if (st.armed && *st.armed <= *nd)
    return;
  st.armed = *nd;
  auto d = until(self->clock().now(), *nd);
  if (d <= caf::timespan{0})
    self->send(self, tick_atom::value);
  else
    self->delayed_send(self, d, tick_atom::value);
}

/// Publishes the transitions collected since the last flush, asks the
/// supervisor for a health check if a breaker opened, re-arms the timer.
void flush(self_ptr self) {
  auto& st = self->state;
  bool opened = false;
  while (!st.transitions.empty()) {
    auto xs = std::move(st.transitions);
    st.transitions.clear();
    for (auto& [key, t] : xs) {
      st.last[key] = t;
      auto* cb = st.breakers->find(key);
      if (!cb)
        continue;
      auto s = snapshot(self, key, *cb);
      s.state = t.to; // one snapshot per transition, in order
      if (t.to == breaker_state::open) {
        opened = true;
        s.calls = t.calls;
        s.failure_rate = t.failure_rate;
        s.open_count = t.open_count;
        s.next_probe_in = until(self->clock().now(), t.at + t.open_wait);
        s.open_until = caf::make_timestamp() + s.next_probe_in;
      }
      for (auto& l : st.listeners)
        self->send(l, breaker_atom::value, s);
    }
  }
  // (health_atom) = "check the active transport now" (supervisor.hpp). Sent
  // unchecked so this file also builds against a supervisor interface
  // without that clause (an unknown message is dropped there).
  if (opened && st.cfg.health_check_on_open && st.sup)
    caf::anon_send(caf::actor_cast<caf::actor>(st.sup), health_atom::value);
  arm(self);
}

void finish(self_ptr self, uint64_t id, caf::error err) {
  auto& st = self->state;
  auto i = st.calls.find(id);
  if (i == st.calls.end())
    return;
  i->second.rp.deliver(std::move(err));
  st.calls.erase(i);
}

caf::error circuit_error(const std::string& endpoint,
                         const breaker_admission& adm) {
  auto wait = adm.retry_after.count();
  std::string msg = "circuit open for " + endpoint + ": ";
  if (adm.state == breaker_state::half_open)
    msg += "all probe slots are taken; a slot frees in at most "
           + std::to_string(wait) + " ms";
  else
    msg += "failing fast; next probe in " + std::to_string(wait) + " ms";
  return make_engine_error(error_class::server_error, std::move(msg), 503,
                           circuit_open_code, wait);
}

void on_result(self_ptr self, uint64_t id, breaker_permit permit,
               caf::expected<api_reply> res);

void attempt(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto i = st.calls.find(id);
  if (i == st.calls.end())
    return;
  auto& c = i->second;
  auto now = self->clock().now();
  if (now >= c.deadline) {
    finish(self, id,
           c.last_error ? c.last_error
                        : make_engine_error(error_class::timeout,
                                            "no answer before the deadline"));
    return;
  }
  auto adm = st.breakers->get(c.endpoint).try_acquire();
  st.endpoints.insert(c.endpoint);
  flush(self);
  if (!adm) {
    // A call that already reached the gateway keeps its own (last) error;
    // only a call that never got through gets the circuit error.
    if (c.attempts > 0 && c.last_error)
      finish(self, id, c.last_error);
    else
      finish(self, id, circuit_error(c.endpoint, adm));
    return;
  }
  ++c.attempts;
  auto left = until(now, c.deadline);
  auto permit = adm.permit;
  self
    ->request(st.sup, left + st.cfg.supervisor_grace, request_atom::value,
              c.call, left, c.auth)
    .then(
      [=](api_reply& r) { on_result(self, id, permit, std::move(r)); },
      [=](caf::error& err) { on_result(self, id, permit, std::move(err)); });
}

void on_result(self_ptr self, uint64_t id, breaker_permit permit,
               caf::expected<api_reply> res) {
  auto& st = self->state;
  auto i = st.calls.find(id);
  if (i == st.calls.end())
    return;
  auto& c = i->second;
  // the supervisor already checked the answer; the same check again keeps
  // any other downstream honest
  if (res)
    res = check_reply(std::move(*res));
  auto& cb = st.breakers->get(c.endpoint);
  if (res) {
    cb.on_success(permit);
    st.budget->on_success();
    flush(self);
    c.rp.deliver(std::move(*res));
    st.calls.erase(i);
    return;
  }
  auto err = std::move(res.error());
  auto cls = classify(err);
  cb.on_result(permit, counts_for_breaker(cls));
  flush(self);
  c.last_error = err;
  retry_policy pol = st.cfg.retry;
  pol.max_attempts = c.max_attempts;
  auto d = pol.decide(cls, c.attempts, *st.budget, c.bo);
  if (!d.retry) {
    finish(self, id, std::move(err));
    return;
  }
  auto now = self->clock().now();
  if (now + d.delay >= c.deadline) {
    // no time for another attempt
    finish(self, id, std::move(err));
    return;
  }
  // the breaker opened (possibly by this failure): waiting can't help
  cb.tick();
  flush(self);
  if (cb.state() == breaker_state::open) {
    finish(self, id, std::move(err));
    return;
  }
  self->delayed_send(self, d.delay, retry_atom::value, id);
}

client_impl::behavior_type client_fun(self_ptr self, resilience_config cfg,
                                      supervisor_actor sup) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.sup = std::move(sup);
  st.budget = st.cfg.budget
                ? st.cfg.budget
                : std::make_shared<retry_budget>(st.cfg.budget_options);
  st.breakers = std::make_unique<breaker_registry>(
    st.cfg.breaker, [self] { return self->clock().now(); },
    [self](const std::string& key, const breaker_transition& t) {
      self->state.transitions.emplace_back(key, t);
    },
    st.cfg.seed);
  for (auto& [key, bc] : st.cfg.breaker_overrides)
    st.breakers->configure(key, bc);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ls = self->state.listeners;
    ls.erase(std::remove_if(ls.begin(), ls.end(),
                            [&](const breaker_listener_actor& l) {
                              return l.address() == dm.source;
                            }),
             ls.end());
  });
  return {
    [=](request_atom, api_call& call, caf::timespan timeout,
        bool auth) -> caf::result<api_reply> {
      auto& st = self->state;
      auto id = st.next_key++;
      call_state c;
      c.rp = self->make_response_promise<api_reply>();
      auto rp = c.rp;
      // the same id on every attempt: give the call one now if it has none
      if (call.id.empty())
        call.id = "rc-" + std::to_string(id);
      try {
        c.endpoint = st.cfg.endpoint_key ? st.cfg.endpoint_key(call)
                                         : default_endpoint_key(call);
        c.max_attempts = st.cfg.max_attempts ? st.cfg.max_attempts(call) : 0;
      } catch (...) {
        c.endpoint = default_endpoint_key(call);
        c.max_attempts = 0;
      }
      if (c.max_attempts < 1)
        c.max_attempts = std::max(st.cfg.retry.max_attempts, 1);
      c.bo = backoff{st.cfg.retry.backoff_opts,
                     st.cfg.seed != 0 ? st.cfg.seed + id : 0};
      c.call = std::move(call);
      c.auth = auth;
      c.deadline = self->clock().now() + timeout;
      st.calls.emplace(id, std::move(c));
      attempt(self, id);
      return rp;
    },
    [=](breaker_atom) {
      auto& st = self->state;
      st.breakers->tick();
      flush(self);
      std::vector<breaker_snapshot> res;
      for (auto& key : st.endpoints)
        if (auto* cb = st.breakers->find(key))
          res.push_back(snapshot(self, key, *cb));
      return res;
    },
    [=](watch_atom, breaker_listener_actor l) {
      auto& st = self->state;
      self->monitor(l);
      st.listeners.push_back(l);
      st.breakers->tick();
      flush(self);
      for (auto& key : st.endpoints)
        if (auto* cb = st.breakers->find(key);
            cb && cb->state() != breaker_state::closed)
          self->send(l, breaker_atom::value, snapshot(self, key, *cb));
    },
    [=](retry_atom, uint64_t id) { attempt(self, id); },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.armed && *st.armed <= self->clock().now())
        st.armed.reset();
      st.breakers->tick();
      flush(self);
    },
  };
}

} // namespace

resilient_client_actor spawn_resilient_client(caf::actor_system& sys,
                                              resilience_config cfg,
                                              supervisor_actor supervisor) {
  return sys.spawn(client_fun, std::move(cfg), std::move(supervisor));
}

} // namespace aico
