// aico engine: the connection supervisor (see messages/supervisor.hpp).
//
// The failover/fail-back decisions are made by `link_policy` (src/core); this
// actor feeds it transport events and carries out its actions: connect,
// disconnect, activate, probe timers and fail-back health probes. The API
// calls in flight are a `call_router` (src/core): each call gets ONE absolute
// deadline when it enters (api_call::deadline, carried to the transport), is
// sent on the active transport, waits for one if none is active, is re-sent
// with the same id on the next transport when the one it was sent on fails
// with a network error, and is refreshed once on a 401; the router decides,
// this actor carries it out. `degraded` is the active transport's
// capability (link_policy), not a test of its mode.
//
// Cost per call (docs/performance.md): the deadlines of all calls share ONE
// timer (armed only when the earliest deadline moves earlier), and the
// request to the transport carries no CAF timeout: every transport answers
// each request by the deadline it is given and fails everything pending
// when it goes down, disconnects or exits; a transport that dies without
// answering (exit_reason::kill) is caught by the down handler, and the
// call's own deadline answers the caller in any case. Authenticated calls
// use the last token the token manager published (it re-publishes
// logged_in after every refresh); a stale one is refreshed once on a 401.
//
// Events (src/core/event_cursor.hpp): only the active transport's are
// passed on, each seq once. Before a transport connects it learns the last
// seq delivered (resume_atom), so its subscription resumes from there; when
// it becomes active after forwarding events that were dropped (it was not
// active yet), it resubscribes from exactly that seq. A replay outcome that
// says the gateway could not fill the gap starts a history catch-up: the
// messages of every known conversation since the last message seq seen
// there are delivered (seq 0) while live events wait, then the waiting
// ones (without the messages the catch-up delivered).
#include "messages/supervisor.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_set>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "src/core/call_router.hpp"
#include "src/core/event_cursor.hpp"
#include "src/core/jwt_claims.hpp"
#include "src/core/link_policy.hpp"
#include "src/core/timer_slack.hpp"
#include "actors/timer_service.hpp"
#include "actors/transport_actor.hpp"
#include "actors/transport_registry.hpp"
#include "src/model/codec.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;

using supervisor_impl = supervisor_actor::extend_with<
  transport_listener_actor, auth_listener_actor,
  caf::typed_actor<
    /// probe timer for a slot (slot, generation)
    caf::reacts_to<probe_atom, uint64_t, uint64_t>,
    /// periodic health check of the active transport (generation)
    caf::reacts_to<health_atom, uint64_t>,
    /// the one call timer: the earliest call deadline may have passed
    caf::reacts_to<timeout_atom>,
    /// a routed call handed back by its transport (from the original
    /// requester, with its request id): a network error, or a reply the
    /// router decides on (401); (call, slot, auth, outcome)
    caf::replies_to<request_atom, api_call, uint64_t, bool,
                    caf::error>::with<api_reply>,
    caf::replies_to<request_atom, api_call, uint64_t, bool,
                    api_reply>::with<api_reply>>>;

using time_point = caf::actor_clock::time_point;

/// The calls in flight; the payload answers the caller.
using call_table = call_router<caf::typed_response_promise<api_reply>>;

struct slot_info {
  transport_actor actor;
  /// Its call lane (null: none; see supervisor_config::call_lane).
  std::shared_ptr<call_lane> lane;
  caf::actor_clock::time_point probe_due;
  std::string last_reason;
  std::deque<caf::actor_clock::time_point> restarts;
  /// The highest seq of an event dropped because this slot was not active.
  uint64_t dropped_max = 0;
  /// It became active and was told to resubscribe from the last seq
  /// delivered (resume now): its events already on their way here come
  /// from the replaced subscription and may be newer than the replay that
  /// follows; delivered, they would move the cursor past the replay, whose
  /// older events would then be dropped as repeats (a silent loss; the
  /// failover test lost one event in about 1 of 20 runs under load). So
  /// its events are dropped until the replay marker of the new
  /// subscription arrives: the replay brings them again, in order.
  bool resuming = false;
};

/// A message read back from the history during a catch-up.
struct recovered_message {
  std::string conversation_id;
  int64_t seq = 0;
  std::string id;
  std::string json;
};

/// Live events held while the history catch-up runs, at most this many
/// (then they go out at once and the catch-up's messages follow later).
constexpr std::size_t max_held_events = 10000;
/// Deadline of each history read of a catch-up, and pages per conversation.
constexpr auto catch_up_timeout = std::chrono::seconds(10);
constexpr int catch_up_max_pages = 20;

struct supervisor_state {
  static inline const char* name = "aico.supervisor";

  supervisor_config cfg;
  std::unique_ptr<link_policy> policy;
  std::vector<slot_info> slots;
  /// Every transport actor ever spawned and still possibly alive; stopped
  /// when the supervisor terminates (shared with an attached functor).
  std::shared_ptr<std::vector<caf::actor>> children
    = std::make_shared<std::vector<caf::actor>>();
  connection_state current;
  bool published_once = false;
  bool auth_expired = false;
  std::string offline_reason = "not started";
  std::vector<engine_listener_actor> watchers;
  token_manager_actor tokens;
  std::string token; ///< last token handed to the transports
  /// its `exp` claim (seconds since the epoch; 0 = none or not a JWT)
  int64_t token_exp = 0;
  uint64_t next_key = 1;
  /// The calls in flight (deadlines with one timer, waiting queue,
  /// attempts, refresh-once).
  call_table calls;
  /// "ws: closed by peer (1001 ...)": the last transport that went down and
  /// why (published with `reconnecting`).
  std::string last_failure;
  uint64_t health_gen = 0;
  caf::timestamp active_since;

  /// Position in the event stream: duplicates, malformed events, stats.
  event_cursor cursor;
  /// History catch-up after a gap the gateway could not replay.
  bool catching_up = false;
  bool catch_up_again = false;
  bool holding = false;
  uint64_t catch_up_gen = 0;
  int catch_up_pending = 0;
  std::vector<server_event> held;
  std::unordered_set<std::string> live_ids;
  std::vector<recovered_message> recovered;

  supervisor_state() = default;
  supervisor_state(const supervisor_state&) = delete;
  supervisor_state& operator=(const supervisor_state&) = delete;

  /// Whatever ends the supervisor (even exit_reason::kill), every call it
  /// still holds is answered: callers may wait without a CAF timeout.
  ~supervisor_state() {
    try {
      auto err = make_engine_error(error_class::network, "engine stopped");
      for (auto& e : calls.expire(call_routing::time_point::max()))
        e.payload.payload.deliver(err);
    } catch (...) {
      // never throw from a destructor
    }
  }
};

using self_ptr = supervisor_impl::stateful_pointer<supervisor_state>;

caf::timespan time_left(self_ptr self, const call_route& c) {
  auto now = self->clock().now();
  if (c.call.deadline <= now)
    return caf::timespan{0};
  return std::chrono::duration_cast<caf::timespan>(c.call.deadline - now);
}

/// Arms the one call timer if the earliest deadline needs it.
void arm_timer(self_ptr self) {
  if (auto d = self->state.calls.arm(self->clock().now()))
    self->delayed_send(self, *d, timeout_atom::value);
}

void publish(self_ptr self) {
  auto& st = self->state;
  connection_state cs;
  auto& p = *st.policy;
  if (st.auth_expired) {
    cs.state = link_state::auth_expired;
  } else if (!p.running()) {
    cs.state = link_state::offline;
    cs.reason = st.offline_reason;
  } else if (auto a = p.active()) {
    cs.mode = p.mode(*a);
    cs.state = p.degraded() ? link_state::degraded : link_state::connected;
    if (cs.state == link_state::degraded)
      cs.reason = st.last_failure; // why a better transport is not in use
  } else if (p.all_waiting()) {
    cs.state = link_state::reconnecting;
    auto now = self->clock().now();
    caf::actor_clock::time_point due = caf::actor_clock::time_point::max();
    for (auto& s : st.slots)
      due = std::min(due, s.probe_due);
    cs.next_attempt_in = due > now ? std::chrono::duration_cast<caf::timespan>(
                                       due - now)
                                   : caf::timespan{0};
    cs.reason = st.last_failure;
  } else {
    cs.state = link_state::connecting;
  }
  bool changed = !st.published_once || cs.state != st.current.state
                 || cs.mode != st.current.mode
                 || (cs.state == link_state::offline
                     && cs.reason != st.current.reason);
  if (!changed)
    return;
  cs.since = cs.state == link_state::connected
                 || cs.state == link_state::degraded
               ? st.active_since
               : caf::make_timestamp();
  st.current = cs;
  st.published_once = true;
  for (auto& w : st.watchers)
    self->send(w, state_atom::value, cs);
}

void execute(self_ptr self, const link_policy::actions& xs);

// -- events --------------------------------------------------------------------

void forward(self_ptr self, const server_event& ev) {
  for (auto& w : self->state.watchers)
    self->send(w, event_atom::value, ev);
}

std::string message_id_of(const server_event& ev) {
  if (ev.topic != "message")
    return {};
  boost::system::error_code ec;
  auto v = boost::json::parse(ev.data, ec);
  if (ec || !v.is_object())
    return {};
  auto id = v.get_object().if_contains("id");
  return id && id->is_string() ? std::string{id->get_string()}
                               : std::string{};
}

/// Ends a catch-up: the recovered messages (oldest first, without those
/// that came live meanwhile), then the live events that waited.
void finish_catch_up(self_ptr self) {
  auto& st = self->state;
  auto recovered = std::move(st.recovered);
  st.recovered.clear();
  std::sort(recovered.begin(), recovered.end(),
            [](const recovered_message& a, const recovered_message& b) {
              return a.seq < b.seq;
            });
  auto a = st.policy->active();
  auto via = a ? st.policy->mode(*a) : transport_mode::http;
  std::set<std::string> done;
  for (auto& m : recovered) {
    if (st.live_ids.count(m.id) > 0 || !done.insert(m.id).second)
      continue;
    server_event ev;
    ev.topic = "message";
    ev.data = std::move(m.json);
    ev.seq = 0; // from the history, not the event stream
    ev.via = via;
    st.cursor.on_recovered(m.conversation_id, m.seq);
    forward(self, ev);
  }
  auto held = std::move(st.held);
  st.held.clear();
  for (auto& ev : held)
    forward(self, ev);
  st.catching_up = false;
  st.holding = false;
  st.live_ids.clear();
}

void start_catch_up(self_ptr self);

void catch_up_page_done(self_ptr self, uint64_t gen) {
  auto& st = self->state;
  if (gen != st.catch_up_gen || !st.catching_up)
    return;
  if (--st.catch_up_pending > 0)
    return;
  finish_catch_up(self);
  if (st.catch_up_again) {
    st.catch_up_again = false;
    start_catch_up(self);
  }
}

/// Reads one page of a conversation's history after `since`.
void fetch_catch_up_page(self_ptr self, uint64_t gen, std::string conv,
                         int64_t since, int pages_left) {
  auto& st = self->state;
  api_call call;
  call.id = "catch-up-" + std::to_string(st.next_key++);
  call.method = "GET";
  call.path = "/conversations/" + conv + "/messages?since="
              + std::to_string(since) + "&limit=500";
  auto me = caf::actor_cast<supervisor_actor>(self);
  self
    ->request(me, catch_up_timeout + std::chrono::seconds(1),
              request_atom::value, std::move(call),
              caf::timespan{catch_up_timeout}, true)
    .then(
      [=](const api_reply& r) {
        auto& st = self->state;
        if (gen != st.catch_up_gen)
          return;
        int64_t next = since;
        bool more = false;
        try {
          boost::system::error_code ec;
          auto v = boost::json::parse(r.body, ec);
          const boost::json::object* data = nullptr;
          if (!ec && v.is_object())
            if (auto d = v.get_object().if_contains("data");
                d && d->is_object())
              data = &d->get_object();
          if (data) {
            if (auto ms = data->if_contains("messages");
                ms && ms->is_array()) {
              for (auto& m : ms->get_array()) {
                if (!m.is_object())
                  continue;
                auto& o = m.get_object();
                recovered_message rm;
                if (auto x = o.if_contains("id"); x && x->is_string())
                  rm.id = std::string{x->get_string()};
                if (auto x = o.if_contains("conversation_id");
                    x && x->is_string())
                  rm.conversation_id = std::string{x->get_string()};
                if (auto x = o.if_contains("seq"); x && x->is_int64())
                  rm.seq = x->get_int64();
                if (rm.id.empty())
                  continue;
                rm.json = boost::json::serialize(o);
                next = std::max(next, rm.seq);
                st.recovered.push_back(std::move(rm));
              }
            }
            if (auto h = data->if_contains("has_more"); h && h->is_bool())
              more = h->get_bool();
          }
        } catch (...) {
          // a page we cannot read: what we have is delivered
        }
        if (more && next > since && pages_left > 1) {
          fetch_catch_up_page(self, gen, conv, next, pages_left - 1);
          return;
        }
        catch_up_page_done(self, gen);
      },
      [=](caf::error&) {
        // unreachable, forbidden, ...: nothing to add from here
        catch_up_page_done(self, gen);
      });
}

/// The gateway could not replay everything after the last event: read the
/// history of every conversation the engine has seen a message of, since
/// the last message seq seen there (and the current conversation since the
/// last message seq seen anywhere), holding live events meanwhile.
void start_catch_up(self_ptr self) {
  auto& st = self->state;
  if (st.catching_up) {
    st.catch_up_again = true;
    return;
  }
  auto targets = st.cursor.conversations();
  if (targets.empty())
    return; // no message seen yet: nothing to catch up from
  if (targets.count("current") == 0)
    targets["current"] = st.cursor.last_message_seq();
  st.catching_up = true;
  st.holding = true;
  st.live_ids.clear();
  st.recovered.clear();
  auto gen = ++st.catch_up_gen;
  st.catch_up_pending = static_cast<int>(targets.size());
  for (auto& [conv, since] : targets)
    fetch_catch_up_page(self, gen, conv, since, catch_up_max_pages);
}

/// Drops a catch-up in progress (logout): what waited goes out.
void abort_catch_up(self_ptr self) {
  auto& st = self->state;
  if (!st.catching_up)
    return;
  ++st.catch_up_gen;
  st.recovered.clear();
  auto held = std::move(st.held);
  st.held.clear();
  for (auto& ev : held)
    forward(self, ev);
  st.catching_up = false;
  st.holding = false;
  st.catch_up_again = false;
  st.live_ids.clear();
}

void adopt_token(self_ptr self, const std::string& tok);

/// A transport's server spent the token (token_per_connection: the AICO
/// backend's WebSocket): a fresh one through the token manager (single
/// flight there; the transport asks once per connection), handed to the
/// transports like every new token. A failure leaves it: the next login,
/// refresh or reconnect tries again.
void on_token_refused(self_ptr self) {
  auto& st = self->state;
  if (!st.tokens || st.token.empty())
    return;
  self->request(st.tokens, std::chrono::seconds(30), refresh_atom::value,
                st.token)
    .then(
      [=](const std::string& tok) {
        if (!tok.empty())
          adopt_token(self, tok);
      },
      [](caf::error&) {});
}

void on_server_event(self_ptr self, const server_event& ev) {
  auto& st = self->state;
  if (ev.topic == token_refused_topic) {
    on_token_refused(self);
    return;
  }
  // only the active transport's events: no duplicates while a fail-back
  // candidate is being probed (what it forwarded is remembered, see
  // kind::activate)
  auto a = st.policy->active();
  if (!a || st.policy->mode(*a) != ev.via) {
    if (auto i = st.policy->slot_of(ev.via); i && ev.seq > 0)
      st.slots[*i].dropped_max = std::max(st.slots[*i].dropped_max, ev.seq);
    return;
  }
  if (auto& s = st.slots[*a]; s.resuming) {
    if (ev.topic != replay_topic)
      return; // the replaced subscription's (see slot_info::resuming)
    s.resuming = false;
  }
  if (ev.topic == replay_topic) {
    uint64_t since = 0;
    bool complete = false;
    if (!decode_replay_outcome(ev.data, since, complete))
      complete = false;
    if (st.cursor.on_replay(complete))
      start_catch_up(self);
    return;
  }
  if (st.cursor.on_event(ev) != event_cursor::verdict::deliver)
    return; // a repeat of a replay, or malformed (counted)
  if (st.catching_up) {
    if (auto id = message_id_of(ev); !id.empty())
      st.live_ids.insert(std::move(id));
    if (st.holding) {
      st.held.push_back(ev);
      if (st.held.size() >= max_held_events) {
        // too long a wait: let them go; the catch-up follows later
        auto held = std::move(st.held);
        st.held.clear();
        st.holding = false;
        for (auto& x : held)
          forward(self, x);
      }
      return;
    }
  }
  forward(self, ev);
}

void on_link_down(self_ptr self, std::size_t i, const std::string& reason) {
  auto& st = self->state;
  st.slots[i].last_reason = reason;
  st.last_failure = std::string{to_string(st.policy->mode(i))} + ": " + reason;
  execute(self, self->state.policy->on_down(i));
}

void deliver_error(self_ptr self, uint64_t key, caf::error err) {
  if (auto e = self->state.calls.finish(key))
    e->payload.payload.deliver(std::move(err));
}

void dispatch(self_ptr self, uint64_t key);

/// Hands a token the supervisor got (token manager, refresh) to the
/// transports (event subscriptions) if it is new; it is also the token of
/// the next authenticated calls.
void adopt_token(self_ptr self, const std::string& tok) {
  auto& st = self->state;
  if (tok == st.token)
    return;
  st.token = tok;
  auto claims = decode_jwt_claims(tok);
  st.token_exp = claims ? claims->exp : 0;
  for (auto& s : st.slots)
    if (s.actor)
      self->send(s.actor, token_atom::value, tok);
}

void on_reply(self_ptr self, uint64_t key, int attempt, api_reply r) {
  auto& st = self->state;
  // a late answer to an earlier send is ignored
  if (!st.calls.answered(key, attempt))
    return;
  if (st.calls.after_reply(key, r.status, static_cast<bool>(st.tokens))
      == call_routing::reply_kind::refresh) {
    // the token was rejected: refresh once (single-flight in the token
    // manager) and send again with the new token
    auto& c = *st.calls.find(key);
    auto left = time_left(self, c);
    self->request(st.tokens, left, refresh_atom::value, c.call.token)
      .then(
        [=](const std::string& tok) {
          if (!tok.empty())
            adopt_token(self, tok); // the next calls use it too
          auto j = self->state.calls.find(key);
          if (!j)
            return;
          j->call.token = tok;
          dispatch(self, key);
        },
        [=](caf::error& err) { deliver_error(self, key, std::move(err)); });
    return;
  }
  // the one check of every answer: a 2xx must be a valid envelope with
  // success true, anything else becomes its classified error
  auto checked = check_reply(std::move(r));
  if (!checked) {
    deliver_error(self, key, std::move(checked.error()));
    return;
  }
  if (auto done = st.calls.finish(key))
    done->payload.payload.deliver(std::move(*checked));
}

void on_call_error(self_ptr self, uint64_t key, std::size_t slot, int attempt,
                   caf::error err) {
  auto& st = self->state;
  if (!st.calls.answered(key, attempt))
    return; // a late answer to an earlier send
  auto c = classify(err);
  if (c.cls == error_class::network) {
    // the transport is gone: fail over and send again (same id) while time
    // and attempts are left
    if (st.policy->active() == slot) {
      // The transport may still believe its link is up (a lost reply, a
      // reset socket): close it, so the next probe really reconnects
      // instead of finding it "already up" and never reporting.
      if (st.slots[slot].actor)
        self->send(st.slots[slot].actor, disconnect_atom::value);
      on_link_down(self, slot, c.message);
    }
  }
  // (on_link_down may have answered calls: the router looks it up again)
  switch (st.calls.after_error(key, c.cls, self->clock().now())) {
    case call_routing::error_kind::retry:
      dispatch(self, key);
      return;
    case call_routing::error_kind::gone:
      return;
    case call_routing::error_kind::fail:
      deliver_error(self, key, std::move(err));
      return;
  }
}

void dispatch(self_ptr self, uint64_t key) {
  auto& st = self->state;
  auto active = st.policy->active();
  if (active && !st.slots[*active].actor)
    active.reset(); // its actor is being restarted: wait
  auto step = st.calls.dispatch(key, active, self->clock().now());
  switch (step.kind) {
    case call_routing::dispatch_kind::gone:
    case call_routing::dispatch_kind::wait:
      return;
    case call_routing::dispatch_kind::expired:
      deliver_error(self, key,
                    make_engine_error(error_class::timeout,
                                      "no answer before the deadline"));
      return;
    case call_routing::dispatch_kind::send:
      break;
  }
  auto attempt = step.attempt;
  auto slot = step.slot;
  auto left = std::chrono::duration_cast<caf::timespan>(step.left);
  // No CAF request timeout (each one costs the timer thread a wake-up to
  // set and one to cancel): the transport answers within `left`, fails what
  // is pending when it goes down or exits, a dead transport's mailbox
  // bounces the request (request_receiver_down), a killed one is handled by
  // on_child_down, and the call's deadline answers the caller regardless.
  self
    ->request(st.slots[slot].actor, caf::infinite, request_atom::value,
              st.calls.find(key)->call, left)
    .then([=](api_reply& r) { on_reply(self, key, attempt, std::move(r)); },
          [=](caf::error& err) {
            on_call_error(self, key, slot, attempt, std::move(err));
          });
}

/// The slot of the one-hop path for a new call, if it can take it: a
/// running engine with an active transport whose actor is alive, no calls
/// waiting for a link (they go first, in order), and for an authenticated
/// call a published token. Everything else takes the router's path.
std::optional<std::size_t> fast_route(self_ptr self, bool auth) {
  auto& st = self->state;
  if (!st.cfg.one_hop)
    return std::nullopt;
  if (!st.policy->running() || st.calls.has_waiting())
    return std::nullopt;
  if (auth && (!st.tokens || st.token.empty()))
    return std::nullopt;
  auto a = st.policy->active();
  if (!a || *a >= st.slots.size() || !st.slots[*a].actor)
    return std::nullopt;
  return a;
}

/// A routed call its transport handed back enters the router as if its
/// first send (on `slot`) had just been answered; returns its key, or
/// nothing for a slot that does not exist.
std::optional<uint64_t> readmit(self_ptr self, api_call call, uint64_t slot,
                                bool auth,
                                caf::typed_response_promise<api_reply> rp) {
  auto& st = self->state;
  if (slot >= st.slots.size()) {
    rp.deliver(make_engine_error(error_class::unknown,
                                 "a call came back from an unknown transport"));
    return std::nullopt;
  }
  auto key = st.next_key++;
  auto now = self->clock().now();
  auto left = call.deadline > now ? call.deadline - now
                                  : call_routing::duration{0};
  st.calls.admit(key, std::move(call), auth, std::move(rp), now, left);
  auto r = st.calls.find(key);
  r->attempts = 1;
  r->in_flight = static_cast<std::size_t>(slot);
  arm_timer(self);
  return key;
}

void flush_waiting(self_ptr self) {
  for (auto key : self->state.calls.take_waiting())
    dispatch(self, key);
}

/// Whether the token in hand stays valid well past the next health check
/// (its `exp`, wall clock): then the periodic check need not ask the token
/// manager (a request and its answer per session and check, most of what an
/// idle session costs after its heartbeat). Near expiry, or for a token
/// without `exp`, it asks; the token manager refreshes before expiry
/// anyway, and a call that meets a 401 refreshes at once (the router).
bool token_lasts(self_ptr self) {
  auto& st = self->state;
  if (st.token.empty() || st.token_exp <= 0)
    return false;
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  auto interval = std::chrono::duration_cast<std::chrono::seconds>(
                    st.cfg.health_interval)
                    .count();
  return st.token_exp - now > 2 * interval + 60;
}

/// Asks the token manager for a valid token and hands it to the transports
/// (for event subscriptions) when it changed, or to `only` in any case.
void sync_token(self_ptr self, std::optional<std::size_t> only = {}) {
  auto& st = self->state;
  if (!st.tokens)
    return;
  // (no request timer: the token manager answers by its own deadlines)
  self->request(st.tokens, caf::infinite, token_atom::value)
    .then(
      [=](const std::string& tok) {
        auto& st = self->state;
        if (tok != st.token) {
          adopt_token(self, tok);
        } else if (only && st.slots[*only].actor) {
          self->send(st.slots[*only].actor, token_atom::value, tok);
        }
      },
      [=](caf::error&) {
        // logged out or auth expired: no events; nothing else to do
      });
}

/// The periodic health check, on an instant shared with the other
/// sessions of the process (timer slack: src/core/timer_slack.hpp).
void schedule_health(self_ptr self) {
  auto gen = ++self->state.health_gen;
  auto now = self->clock().now();
  auto every = self->state.cfg.health_interval;
  schedule_at(self, coalesce_deadline(now + every, every), health_atom::value,
              gen);
}

/// One GET /health through slot `i`; calls `done(ok)`.
template <class F>
void health_request(self_ptr self, std::size_t i, F done) {
  auto& st = self->state;
  if (!st.slots[i].actor) {
    done(false);
    return;
  }
  api_call call{"health-" + std::to_string(st.next_key++), "GET", "/health",
                "", ""};
  auto t = st.cfg.health_timeout;
  if (auto& lane = st.slots[i].lane) {
    // through the call lane, as a plain call (no return address: any
    // failure is this check's answer) with this actor as the requester:
    // neither way through the transport actor's mailbox
    call.deadline = self->clock().now() + t;
    auto mid = self->new_request_id(caf::message_priority::normal);
    auto me = caf::actor_cast<caf::strong_actor_ptr>(self);
    caf::response_promise rp{me, me, {}, mid};
    if (lane->submit(call, rp, caf::actor{}, static_cast<uint64_t>(i),
                     false)) {
      self->add_multiplexed_response_handler(
        mid.response_id(),
        caf::behavior{[=](api_reply&) { done(true); },
                      [=](caf::error&) { done(false); }});
      return;
    }
    call.deadline = {}; // the lane is closed: the actor answers at once
  }
  // no CAF request timer (a wake-up of the clock thread to set and one to
  // cancel, every health check of every session): the transport answers
  // by the call's deadline, see dispatch()
  self
    ->request(st.slots[i].actor, caf::infinite, request_atom::value, call, t)
    .then([=](api_reply&) { done(true); },
          [=](caf::error&) { done(false); });
}

void execute(self_ptr self, const link_policy::actions& xs) {
  auto& st = self->state;
  using kind = link_policy::action_kind;
  for (auto& a : xs) {
    auto& s = st.slots[a.slot];
    switch (a.kind) {
      case kind::connect:
        if (s.actor) {
          // its subscription resumes after what was delivered
          self->send(s.actor, resume_atom::value, st.cursor.last_seq(), false);
          self->send(s.actor, connect_atom::value);
        } else {
          // the transport was given up after too many crashes
          self->send(self, tstate_atom::value, st.policy->mode(a.slot),
                     transport_status::down,
                     std::string{"transport disabled after repeated crashes"});
        }
        break;
      case kind::disconnect:
        if (s.actor) {
          if (a.drain)
            self->send(s.actor, disconnect_atom::value, true);
          else
            self->send(s.actor, disconnect_atom::value);
        }
        break;
      case kind::activate: {
        st.active_since = caf::make_timestamp();
        // events it forwarded before (not active then) were dropped: if any
        // is newer than what was delivered, it resubscribes from there
        auto last = st.cursor.last_seq();
        bool resume_now = last > 0 && s.dropped_max > last;
        if (s.actor)
          self->send(s.actor, resume_atom::value, last, resume_now);
        s.resuming = resume_now && s.actor;
        s.dropped_max = 0;
        schedule_health(self);
        sync_token(self, a.slot);
        break;
      }
      case kind::deactivate:
        ++st.health_gen;
        s.resuming = false;
        break;
      case kind::schedule_probe:
        s.probe_due = self->clock().now() + a.delay;
        self->delayed_send(self, a.delay, probe_atom::value,
                           static_cast<uint64_t>(a.slot), a.gen);
        break;
      case kind::health_probe: {
        auto slot = a.slot;
        health_request(self, slot, [=](bool ok) {
          execute(self, self->state.policy->on_health_probe(slot, ok));
        });
        break;
      }
    }
  }
  publish(self);
  if (st.policy->active() && st.calls.has_waiting())
    flush_waiting(self);
}

transport_actor make_transport(self_ptr self, transport_mode m) {
  auto& st = self->state;
  auto listener = caf::actor_cast<transport_listener_actor>(self);
  transport_actor res;
  if (st.cfg.factory)
    res = st.cfg.factory(self->system(), m, listener);
  else if (auto entry = find_transport(m))
    res = entry->spawn(self->system(), st.cfg, listener);
  if (res) {
    self->monitor(res);
    st.children->push_back(caf::actor_cast<caf::actor>(res));
    if (!st.token.empty())
      self->send(res, token_atom::value, st.token);
  }
  return res;
}

/// The call lane of a transport actor, if the engine uses lanes.
std::shared_ptr<call_lane> lane_of(self_ptr self, const transport_actor& t) {
  if (!t || !self->state.cfg.one_hop || !self->state.cfg.call_lane)
    return nullptr;
  return call_lane_of(t.address());
}

void on_child_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  // prune stopped children
  auto& ch = *st.children;
  ch.erase(std::remove_if(ch.begin(), ch.end(),
                          [&](const caf::actor& a) {
                            return a.address() == dm.source;
                          }),
           ch.end());
  for (std::size_t i = 0; i < st.slots.size(); ++i) {
    auto& s = st.slots[i];
    if (!s.actor || s.actor.address() != dm.source)
      continue;
    s.actor = nullptr;
    s.lane = nullptr;
    // a crashed transport is restarted, within a budget per minute
    auto now = self->clock().now();
    while (!s.restarts.empty() && now - s.restarts.front() > 60s)
      s.restarts.pop_front();
    // Calls still waiting for an answer from the stopped actor: a transport
    // that exits fails them itself (before this down message), but one
    // killed outright (exit_reason::kill skips its exit handler) never
    // answers, and the requests carry no CAF timeout.
    auto orphans = st.calls.in_flight_on(i);
    if (static_cast<int>(s.restarts.size()) < st.cfg.max_restarts_per_minute) {
      s.restarts.push_back(now);
      s.actor = make_transport(self, st.policy->mode(i));
      s.lane = lane_of(self, s.actor);
    }
    auto why = "transport actor stopped: " + describe(dm.reason);
    on_link_down(self, i, why);
    // ... so they are failed over like a network error of that transport
    for (auto& [key, attempt] : orphans)
      on_call_error(self, key, i, attempt,
                    make_engine_error(error_class::network, why));
    return;
  }
  // a watcher went away
  st.watchers.erase(std::remove_if(st.watchers.begin(), st.watchers.end(),
                                   [&](const engine_listener_actor& w) {
                                     return w.address() == dm.source;
                                   }),
                    st.watchers.end());
}

supervisor_impl::behavior_type
supervisor_fun(self_ptr self, supervisor_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  if (st.cfg.order.empty())
    st.offline_reason = "no transport enabled";
  // each slot's capabilities (degraded, pushes events) from the registry
  std::vector<transport_caps> caps;
  for (auto m : st.cfg.order) {
    auto entry = find_transport(m);
    caps.push_back(entry ? entry->caps : capabilities_of(m));
  }
  st.policy = std::make_unique<link_policy>(st.cfg.order, st.cfg.backoff,
                                            st.cfg.failback_probes, 0,
                                            std::move(caps));
  st.slots.resize(st.cfg.order.size());
  for (std::size_t i = 0; i < st.slots.size(); ++i) {
    st.slots[i].actor = make_transport(self, st.cfg.order[i]);
    st.slots[i].lane = lane_of(self, st.slots[i].actor);
  }
  publish(self); // offline("not started") until connect
  // stop the transports whenever the supervisor terminates
  auto children = st.children;
  self->attach_functor([children](const caf::error&) {
    for (auto& c : *children)
      caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler(
    [=](caf::down_msg& dm) { on_child_down(self, dm); });
  return {
    // -- public interface ------------------------------------------------------
    [=](request_atom, api_call& call, caf::timespan timeout,
        bool auth) -> caf::result<api_reply> {
      auto& st = self->state;
      if (call.id.empty())
        call.id = "call-" + std::to_string(st.next_key);
      if (auto slot = fast_route(self, auth)) {
        // The one-hop path: the transport actor answers the caller itself
        // (its I/O thread on the happy path) by the call's deadline, and
        // hands back to this actor what the router decides (network error,
        // link down, 401); no entry, timer or response promise here.
        ++st.next_key;
        auto now = self->clock().now();
        if (call.deadline == time_point{} || call.deadline > now + timeout)
          call.deadline = now + timeout;
        if (auth)
          call.token = st.token;
        if (auto& lane = st.slots[*slot].lane) {
          // straight to the driver (the request-side hop): the answer
          // comes from its I/O thread, the router's cases come back here
          auto rp = self->make_response_promise();
          if (lane->submit(call, rp, caf::actor_cast<caf::actor>(self),
                           static_cast<uint64_t>(*slot), auth))
            return rp;
          // closed just now (e.g. the link went down): the actor's path
          return rp.delegate(st.slots[*slot].actor, request_atom::value,
                             std::move(call),
                             caf::actor_cast<caf::actor>(self),
                             static_cast<uint64_t>(*slot), auth);
        }
        return self->delegate(st.slots[*slot].actor, request_atom::value,
                              std::move(call),
                              caf::actor_cast<caf::actor>(self),
                              static_cast<uint64_t>(*slot), auth);
      }
      auto key = st.next_key++;
      auto rp = self->make_response_promise<api_reply>();
      // the call's one deadline, unless it comes with one already
      st.calls.admit(key, std::move(call), auth, rp, self->clock().now(),
                     timeout);
      arm_timer(self);
      if (!st.policy->running()) {
        deliver_error(self, key,
                      make_engine_error(error_class::network,
                                        "engine is offline: "
                                          + st.offline_reason));
        return rp;
      }
      if (auth) {
        if (!st.tokens) {
          deliver_error(self, key,
                        make_engine_error(error_class::authentication,
                                          "not logged in"));
          return rp;
        }
        if (!st.token.empty()) {
          // the last token the token manager published (kept fresh by its
          // re-publishing after every refresh; a stale one gets a 401, and
          // on_reply refreshes once)
          st.calls.find(key)->call.token = st.token;
          dispatch(self, key);
          return rp;
        }
        self->request(st.tokens, timeout, token_atom::value)
          .then(
            [=](const std::string& tok) {
              auto j = self->state.calls.find(key);
              if (!j)
                return;
              j->call.token = tok;
              dispatch(self, key);
            },
            [=](caf::error& err) { deliver_error(self, key, std::move(err)); });
      } else {
        dispatch(self, key);
      }
      return rp;
    },
    [=](request_atom, api_call& call, uint64_t slot, bool auth,
        caf::error& err) -> caf::result<api_reply> {
      auto rp = self->make_response_promise<api_reply>();
      if (auto key = readmit(self, std::move(call), slot, auth, rp))
        on_call_error(self, *key, slot, 1, std::move(err));
      return rp;
    },
    [=](request_atom, api_call& call, uint64_t slot, bool auth,
        api_reply& r) -> caf::result<api_reply> {
      auto rp = self->make_response_promise<api_reply>();
      if (auto key = readmit(self, std::move(call), slot, auth, rp))
        on_reply(self, *key, 1, std::move(r));
      return rp;
    },
    [=](state_atom) { return self->state.current; },
    [=](stats_atom) { return self->state.cursor.stats(); },
    [=](watch_atom, engine_listener_actor w) {
      self->monitor(w);
      self->state.watchers.push_back(w);
      self->send(w, state_atom::value, self->state.current);
    },
    [=](auth_atom, token_manager_actor tm) {
      self->state.tokens = tm;
      self->send(tm, watch_atom::value,
                 caf::actor_cast<auth_listener_actor>(self));
    },
    [=](connect_atom) {
      execute(self, self->state.policy->start());
    },
    [=](disconnect_atom) {
      auto& st = self->state;
      st.offline_reason = "disconnected";
      execute(self, st.policy->stop());
      for (auto key : st.calls.take_waiting())
        deliver_error(self, key,
                      make_engine_error(error_class::network,
                                        "engine disconnected"));
    },
    [=](health_atom) {
      // on demand (a circuit breaker opened): the periodic check, now; a
      // passing check re-arms the periodic timer from here
      self->send(self, health_atom::value, self->state.health_gen);
    },
    // -- from transports -----------------------------------------------------
    [=](tstate_atom, transport_mode m, transport_status status,
        const std::string& reason) {
      auto& st = self->state;
      auto i = st.policy->slot_of(m);
      if (!i)
        return;
      switch (status) {
        case transport_status::up:
          execute(self, st.policy->on_up(*i));
          if (st.policy->status(*i) == link_policy::slot_status::up)
            sync_token(self, *i);
          break;
        case transport_status::down:
          on_link_down(self, *i, reason);
          break;
        case transport_status::idle: {
          // idle without us asking for it counts as down
          auto ps = st.policy->status(*i);
          if (ps == link_policy::slot_status::up
              || ps == link_policy::slot_status::connecting)
            on_link_down(self, *i, reason.empty() ? "closed" : reason);
          break;
        }
        case transport_status::connecting:
          break;
      }
    },
    [=](event_atom, const server_event& ev) { on_server_event(self, ev); },
    // -- from the token manager ------------------------------------------------
    [=](auth_atom, auth_state s) {
      auto& st = self->state;
      bool expired = s == auth_state::auth_expired;
      if (expired != st.auth_expired) {
        st.auth_expired = expired;
        st.published_once = false; // force a publish
      }
      if (s == auth_state::logged_in) {
        // A new session (another user, maybe) or a refreshed token: calls
        // from now on must not go out with the old one (a login as root
        // right after alice would otherwise send root's next call with
        // alice's token, 403). The token manager published this before
        // answering the login, so asking it for the token is enough; the
        // transports get it in sync_token.
        st.token.clear();
        sync_token(self);
      }
      if (s == auth_state::logged_out || expired) {
        // the next session's events start afresh
        abort_catch_up(self);
        st.cursor.reset();
        st.token.clear();
        for (auto& sl : st.slots)
          if (sl.actor)
            self->send(sl.actor, token_atom::value, std::string{});
      }
      publish(self);
    },
    // -- timers ----------------------------------------------------------------
    [=](probe_atom, uint64_t slot, uint64_t gen) {
      execute(self, self->state.policy->on_probe_timer(slot, gen));
    },
    [=](health_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.health_gen)
        return;
      auto a = st.policy->active();
      if (!a)
        return;
      auto slot = *a;
      health_request(self, slot, [=](bool ok) {
        auto& st = self->state;
        if (!ok && st.policy->active() == slot) {
          on_link_down(self, slot, "health check failed");
        } else if (ok && st.policy->active() == slot) {
          // keeps event subscriptions on a fresh token
          if (!token_lasts(self))
            sync_token(self);
          schedule_health(self);
        }
      });
    },
    [=](timeout_atom) {
      auto& st = self->state;
      auto due = st.calls.expire(self->clock().now());
      if (!due.empty()) {
        auto active = st.policy->active();
        for (auto& e : due)
          e.payload.payload.deliver(
            active ? make_engine_error(error_class::timeout,
                                       "no answer before the deadline")
                   : make_engine_error(error_class::network,
                                       "no transport available"));
      }
      arm_timer(self); // for the next earliest deadline
    },
  };
}

} // namespace

supervisor_actor spawn_supervisor(caf::actor_system& sys,
                                  supervisor_config cfg) {
  return sys.spawn(supervisor_fun, std::move(cfg));
}

} // namespace aico
