// aico engine: the generic transport actor (see transport_actor.hpp).
//
// States (messages/transport.hpp): idle -> connecting -> up | down.
// * connect: the driver opens connection `gen` (a new number per attempt);
//   link_up within the connect timeout = up, link_lost / security_failure /
//   the connect deadline = down. A driver that is unusable (bad URL, no
//   endpoint, no I/O thread) is down at once with its reason.
// * request: only while up; sent with the owner's key, a wire id (the call
//   id unless taken or reserved by the driver) and the time left until the
//   call's one absolute deadline. The link session's deadline sweep answers
//   a call that is still open at its deadline with error_class::timeout
//   (plus the driver's own-timeout grace); with reset_on_timeout the
//   connection is then replaced and everything else in flight on it fails
//   with network (Lazy Pirate). A reply whatever its status is delivered;
//   send_failed is an error of its class (with link_down: down too).
// * heartbeat (drivers with it): a ping every ping interval, down after the
//   dead-peer timeout of silence; every event of the connection counts.
// * peer_lost (drivers that reconnect by themselves): the calls in flight
//   fail with network at once, the subscription is gone; peer_back
//   subscribes again; not back within the reconnect grace = down.
// * token / resume / events: see "subscription" below.
// * disconnect: the connection closed, calls fail with network, idle.
// No exception leaves a handler; the state destructor stops the driver
// (no driver callback runs afterwards).
#include "actors/transport_actor.hpp"
#include "actors/timer_service.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "messages/errors.hpp"
#include "src/core/event_cursor.hpp"
#include "src/core/jwt_claims.hpp"
#include "src/core/link_session.hpp"
#include "src/core/timer_delay.hpp"
#include "src/core/timer_slack.hpp"
#include "src/model/codec.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;
namespace tp = aico::transport;

/// Reopen delay of a separate event stream that ended (times the attempt).
constexpr caf::timespan stream_retry_delay = 500ms;
/// Consecutive reopen attempts before the transport gives up (down).
constexpr int stream_max_tries = 4;
/// A stream that stayed open this long resets the attempt counter.
constexpr auto stream_stable_after = std::chrono::seconds(5);

/// Messages the actor gets from its driver (one type per event) and itself.
using transport_internal = caf::typed_actor<
  caf::reacts_to<tp::link_up>, caf::reacts_to<tp::link_lost>,
  caf::reacts_to<tp::peer_lost>, caf::reacts_to<tp::peer_back>,
  caf::reacts_to<tp::reply>, caf::reacts_to<tp::send_failed>,
  caf::reacts_to<tp::event_frame>, caf::reacts_to<tp::subscribed>,
  caf::reacts_to<tp::subscription_lost>, caf::reacts_to<tp::pong>,
  caf::reacts_to<tp::security_failure>,
  /// The link's one timer: a deadline may have passed.
  caf::reacts_to<timeout_atom>,
  /// Reopen the event stream of subscription `sub` (after a delay).
  caf::reacts_to<probe_atom, uint64_t>>;

using transport_impl = transport_actor::extend_with<transport_internal>;

/// How one call is answered, shared by the actor (pending table, deadline
/// sweep, fail-all, exit) and the driver's reply handler on the I/O thread:
/// whoever claims it first answers, exactly once. The answer is enqueued to
/// the requester with its request's response id from whichever thread wins
/// (no execution unit: CAF schedules the requester through the scheduler's
/// thread-safe external queue), so a reply on the happy path crosses one
/// thread hand-off: I/O thread -> requester.
struct call_completion {
  std::atomic<bool> claimed{false};
  caf::strong_actor_ptr source; ///< the requester (null: nobody waits)
  caf::message_id mid;          ///< its request id
  std::string call_id;          ///< api_call id (the reply carries it)
  transport_mode via = transport_mode::http;
  uint64_t gen = 0; ///< the connection the call was sent on
  uint64_t key = 0;
  std::string wire_id;
  // -- routed calls (the supervisor's one-hop path) ---------------------------
  caf::actor back;  ///< return address for what the router decides (or null)
  api_call call;    ///< the call, for a re-send after a hand-back
  uint64_t slot = 0;
  bool auth = false;
  // -- calls that came through the lane (call_lane::submit) -------------------
  // They are in the direct table only (not in the link session): its
  // deadline sweep, fail-all and drain look at them there.
  bool lane = false;
  caf::actor_clock::time_point deadline{}; ///< when it times out
  caf::actor_clock::time_point due{};      ///< deadline on the timer grid
  std::atomic<uint64_t> handle{0};          ///< the driver's (for cancel)
  bool resend_safe = true;                  ///< see pending_call

  bool routed() const { return static_cast<bool>(back); }

  /// True for the one caller that may answer.
  bool claim() { return !claimed.exchange(true, std::memory_order_acq_rel); }

  /// The final answer, to the requester.
  void respond(caf::message msg) {
    if (source)
      source->enqueue(nullptr, mid.response_id(), std::move(msg), nullptr);
  }

  /// A non-final outcome of a routed call, to the return address, as if
  /// the requester had sent it (same request id): the return address
  /// answers the requester.
  template <class T>
  void hand_back(T outcome) {
    auto msg = caf::make_message(request_atom_v, std::move(call), slot, auth,
                                 std::move(outcome));
    // the request id without the "answered" mark the promise set, so that
    // the return address can answer it
    auto id = caf::make_message_id(mid.integer_value()
                                   & ~caf::message_id::answered_flag_mask);
    auto dst = caf::actor_cast<caf::abstract_actor*>(back);
    dst->enqueue(caf::make_mailbox_element(source, id, {}, std::move(msg)),
                 nullptr);
  }
};

using completion_ptr = std::shared_ptr<call_completion>;

/// Whether a reply with `status` is the final answer of `c` (a 401 of a
/// routed authenticated call goes back: the router refreshes once).
bool final_reply(const call_completion& c, int32_t status) {
  return !(c.routed() && c.auth && status == 401);
}

/// The message a final reply becomes: the gateway's answer as it is for a
/// plain request, the checked reply (or its classified error) for a routed
/// call (what the supervisor delivers on its own path).
caf::message final_message(const call_completion& c, api_reply r) {
  if (!c.routed())
    return caf::make_message(std::move(r));
  auto checked = check_reply(std::move(r));
  if (!checked)
    return caf::make_message(std::move(checked.error()));
  return caf::make_message(std::move(*checked));
}

/// The calls the I/O thread may answer itself (by key and by wire id), and
/// the keys it answered, which the actor then drops from its own table
/// (on the next request or timer: no message per call). Also the call
/// lane: calls submitted on other threads straight to the driver
/// (call_lane::submit), kept here only.
struct direct_table final : call_lane {
  std::mutex mtx;
  std::unordered_map<uint64_t, completion_ptr> by_key;
  std::unordered_map<std::string, completion_ptr> by_wire;
  std::vector<uint64_t> done;
  /// When something last arrived that the actor was not told about (a
  /// reply answered on the I/O thread, a pong): a sign of life for the
  /// dead-peer timer, which reads it when it fires (ticks of the actor
  /// clock; 0 = nothing since it last looked). No message per pong.
  std::atomic<int64_t> rx_at{0};
  /// The current connection (the actor's `gen`): pongs of others are stale.
  std::atomic<uint64_t> cur_gen{0};

  void mark_rx(caf::actor_clock::time_point t) {
    auto v = static_cast<int64_t>(t.time_since_epoch().count());
    auto cur = rx_at.load(std::memory_order_relaxed);
    while (v > cur
           && !rx_at.compare_exchange_weak(cur, v, std::memory_order_relaxed))
      ;
  }

  std::optional<caf::actor_clock::time_point> take_rx() {
    auto v = rx_at.exchange(0, std::memory_order_relaxed);
    if (v == 0)
      return std::nullopt;
    return caf::actor_clock::time_point{
      caf::actor_clock::duration_type{v}};
  }
  /// Keys of calls, the actor's and the lane's (one number space).
  std::atomic<uint64_t> next_key{1};

  // -- the lane ----------------------------------------------------------------
  /// Guards `driver`: submitters share it while they call send(), the
  /// actor takes it alone to attach and to detach before stopping it.
  std::shared_mutex drv_mtx;
  tp::driver* driver = nullptr; ///< set (attach) for concurrent_send drivers
  // set once in attach, read under drv_mtx:
  tp::driver_caps caps;
  std::string proto;
  transport_mode mode = transport_mode::http;
  caf::actor_system* sys = nullptr;
  caf::actor_addr owner;
  bool slack = false;
  // under mtx:
  uint64_t lane_gen = 0; ///< the connection lane calls go on (0 = closed)
  /// When the owner's timer is set for the lane's deadlines (max = not).
  caf::actor_clock::time_point armed = caf::actor_clock::time_point::max();
  std::size_t lane_calls = 0;

  void attach(tp::driver* d, const tp::driver_caps& c, std::string name,
              transport_mode m, caf::actor_system& s, caf::actor_addr addr,
              bool timer_slack) {
    std::unique_lock<std::shared_mutex> guard{drv_mtx};
    driver = d;
    caps = c;
    proto = std::move(name);
    mode = m;
    sys = &s;
    owner = std::move(addr);
    slack = timer_slack;
  }

  /// No submitter is in the driver after this returns, and none enters.
  void detach() {
    std::unique_lock<std::shared_mutex> guard{drv_mtx};
    driver = nullptr;
    std::lock_guard<std::mutex> g{mtx};
    lane_gen = 0;
  }

  /// Opens the lane on connection `gen`, or closes it (0).
  void set_gen(uint64_t gen) {
    std::lock_guard<std::mutex> guard{mtx};
    lane_gen = gen;
  }

  bool has_wire(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    return by_wire.count(id) != 0;
  }

  bool has_lane_calls() {
    std::lock_guard<std::mutex> guard{mtx};
    return lane_calls != 0;
  }

  /// Takes every lane call out (to fail them).
  std::vector<completion_ptr> take_lane() {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<completion_ptr> res;
    if (lane_calls == 0)
      return res;
    for (auto& kv : by_key)
      if (kv.second->lane)
        res.push_back(kv.second);
    for (auto& c : res)
      erase_locked(*c);
    return res;
  }

  /// Takes the lane calls whose deadline passed by `now` out. `rearm` is
  /// set when the owner must schedule its timer for the next lane deadline:
  /// only when the lane's own timer (`armed`) has fired, so that the
  /// owner's other timers do not multiply the lane's.
  std::vector<completion_ptr>
  expire_lane(caf::actor_clock::time_point now,
              std::optional<caf::actor_clock::time_point>& rearm) {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<completion_ptr> res;
    std::optional<caf::actor_clock::time_point> next;
    rearm.reset();
    if (lane_calls != 0) {
      for (auto& kv : by_key) {
        auto& c = *kv.second;
        if (!c.lane)
          continue;
        if (c.deadline <= now)
          res.push_back(kv.second);
        else if (!next || c.due < *next)
          next = c.due;
      }
      std::sort(res.begin(), res.end(),
                [](const completion_ptr& a, const completion_ptr& b) {
                  return a->deadline < b->deadline;
                });
      for (auto& c : res)
        erase_locked(*c);
    }
    if (armed <= now) {
      // the lane's timer is due (it fired, or fires now): the next one
      armed = next ? *next : caf::actor_clock::time_point::max();
      rearm = next;
    } // else it is still pending, at or before every deadline left
    return res;
  }

  bool submit(api_call& call, const caf::response_promise& rp,
              const caf::actor& back, uint64_t slot, bool auth) override;

  /// Schedules the owner's timeout_atom at `t` (its deadline sweep).
  void wake_owner_at(caf::actor_clock::time_point t);

  void add(const completion_ptr& c) {
    std::lock_guard<std::mutex> guard{mtx};
    add_locked(c);
  }

  void add_locked(const completion_ptr& c) {
    if (by_key.emplace(c->key, c).second && c->lane)
      ++lane_calls;
    if (!c->wire_id.empty())
      by_wire.emplace(c->wire_id, c);
  }

  void erase(const call_completion& c) {
    std::lock_guard<std::mutex> guard{mtx};
    erase_locked(c);
  }

  /// The call a reply of connection `gen` answers (taken out), if any.
  completion_ptr take(uint64_t gen, uint64_t key, const std::string& wire) {
    std::lock_guard<std::mutex> guard{mtx};
    completion_ptr c;
    if (key != 0) {
      if (auto i = by_key.find(key); i != by_key.end())
        c = i->second;
    } else if (!wire.empty()) {
      if (auto i = by_wire.find(wire); i != by_wire.end())
        c = i->second;
    }
    if (!c || c->gen != gen)
      return nullptr;
    erase_locked(*c);
    return c;
  }

  void answered(uint64_t key) {
    std::lock_guard<std::mutex> guard{mtx};
    done.push_back(key);
  }

  std::vector<uint64_t> take_done() {
    std::lock_guard<std::mutex> guard{mtx};
    std::vector<uint64_t> res;
    res.swap(done);
    return res;
  }

private:
  void erase_locked(const call_completion& c) {
    if (auto i = by_key.find(c.key);
        i != by_key.end() && i->second.get() == &c) {
      by_key.erase(i);
      if (c.lane)
        --lane_calls;
    }
    if (!c.wire_id.empty())
      if (auto i = by_wire.find(c.wire_id);
          i != by_wire.end() && i->second.get() == &c)
        by_wire.erase(i);
  }
};

/// A call in flight; its key, wire id, deadline and connection are kept by
/// the link session.
struct pending_call {
  completion_ptr c;
  uint64_t handle = 0; ///< the driver's (send_result::handle)
  /// driver::resend_safe: false = failed as outcome_unknown, not network,
  /// when the link goes away under it (a resend could apply it twice).
  bool resend_safe = true;
};

/// Answers `c` with an error unless someone did: a network error of a
/// routed call goes back to its return address (the router fails over),
/// anything else to the requester. True if this call answered.
bool answer_error(direct_table& tab, call_completion& c, caf::error err) {
  tab.erase(c);
  if (!c.claim())
    return false;
  if (c.routed() && classify(err).cls == error_class::network)
    c.hand_back(std::move(err));
  else
    c.respond(caf::make_message(std::move(err)));
  return true;
}

/// Answers `c` with a reply unless someone did (see final_reply).
bool answer_reply(direct_table& tab, call_completion& c, api_reply r) {
  tab.erase(c);
  if (!c.claim())
    return false;
  if (!final_reply(c, r.status))
    c.hand_back(std::move(r));
  else
    c.respond(final_message(c, std::move(r)));
  return true;
}

// -- the lane (callers' threads) ----------------------------------------------------

error_class class_of(tp::call_failure f) {
  switch (f) {
    case tp::call_failure::network:
      return error_class::network;
    case tp::call_failure::timeout:
      return error_class::timeout;
    case tp::call_failure::unknown:
      break;
  }
  return error_class::unknown;
}

void direct_table::wake_owner_at(caf::actor_clock::time_point t) {
  auto msg = caf::make_message(timeout_atom_v);
  if (on_virtual_clock(*sys)) {
    // the test coordinator's clock (tests move time themselves)
    if (auto dst = caf::actor_cast<caf::strong_actor_ptr>(owner))
      sys->clock().schedule_message(
        t, std::move(dst),
        caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                  std::move(msg)));
    return;
  }
  schedule_on_timer_thread(t, owner, std::move(msg));
}

/// The wire id of a lane call: its own id unless empty, taken or reserved
/// (then the same fallback as the actor's wire_id_for; under mtx).
std::string lane_wire_id(const direct_table& tab, const std::string& id,
                         uint64_t key) {
  auto in_use = [&](const std::string& x) {
    return tab.by_wire.count(x) != 0 || tab.driver->reserved_id(x);
  };
  if (!id.empty() && !in_use(id))
    return id;
  auto tag = "#" + tab.proto + std::to_string(key);
  std::string candidate = id + tag;
  if (tab.driver->reserved_id(candidate))
    candidate = tag + "#" + id;
  while (in_use(candidate))
    candidate += "_";
  return candidate;
}

bool direct_table::submit(api_call& call, const caf::response_promise& rp,
                          const caf::actor& back, uint64_t slot, bool auth) {
  std::shared_lock<std::shared_mutex> dg{drv_mtx};
  if (!driver || call.deadline == caf::actor_clock::time_point{})
    return false;
  auto now = sys->clock().now();
  if (call.deadline <= now)
    return false; // the actor's path answers it (no time left)
  auto c = std::make_shared<call_completion>();
  c->source = rp.source();
  c->mid = rp.id();
  c->call_id = call.id;
  c->via = mode;
  c->back = back;
  c->slot = slot;
  c->auth = auth;
  c->lane = true;
  c->deadline = call.deadline;
  c->due = slack ? coalesce_deadline(call.deadline, call.deadline - now, 64)
                 : call.deadline;
  // kept for a re-send after a hand-back; set before anyone else can see
  // the completion (a fail-all on the owner's thread hands it back)
  c->call = std::move(call);
  tp::outgoing_call oc;
  oc.method = c->call.method;
  oc.path = c->call.path;
  oc.body = c->call.body;
  oc.token = c->call.token;
  oc.time_left = c->call.deadline - now;
  c->resend_safe = driver->resend_safe(oc);
  uint64_t gen = 0;
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard{mtx};
    if (lane_gen == 0) {
      call = std::move(c->call); // closed: nothing happened
      return false;
    }
    gen = lane_gen;
    oc.key = next_key.fetch_add(1, std::memory_order_relaxed);
    if (caps.uses_wire_ids)
      oc.wire_id = lane_wire_id(*this, c->call_id, oc.key);
    c->gen = gen;
    c->key = oc.key;
    c->wire_id = oc.wire_id;
    // before the send: the reply may arrive before send() returns
    add_locked(c);
    if (c->due < armed) {
      armed = c->due;
      wake = true;
    }
  }
  auto res = driver->send(gen, std::move(oc));
  switch (res.what) {
    case tp::send_result::kind::local_reply: {
      api_reply r;
      r.id = c->call_id;
      r.status = res.status;
      r.body = std::move(res.body);
      r.via = mode;
      answer_reply(*this, *c, std::move(r));
      break;
    }
    case tp::send_result::kind::failed:
      answer_error(*this, *c,
                   make_engine_error(class_of(res.failure), res.reason));
      break;
    case tp::send_result::kind::queued:
      c->handle.store(res.handle, std::memory_order_release);
      break;
  }
  if (wake)
    wake_owner_at(c->due);
  return true;
}

/// The registry of lanes by actor (call_lane_of).
struct lane_registry {
  std::mutex mtx;
  std::unordered_map<caf::actor_addr, std::weak_ptr<direct_table>> lanes;
  std::size_t pruned_at = 64;

  static lane_registry& instance() {
    static auto* r = new lane_registry; // never destroyed (exit order)
    return *r;
  }
};

void register_lane(const caf::actor_addr& a,
                   const std::shared_ptr<direct_table>& t) {
  auto& r = lane_registry::instance();
  std::lock_guard<std::mutex> guard{r.mtx};
  r.lanes[a] = t;
  if (r.lanes.size() > 2 * r.pruned_at) {
    // an actor that ended before it was registered left its entry
    for (auto i = r.lanes.begin(); i != r.lanes.end();)
      i = i->second.expired() ? r.lanes.erase(i) : std::next(i);
    r.pruned_at = std::max<std::size_t>(64, r.lanes.size());
  }
}

void unregister_lane(const caf::actor_addr& a) {
  auto& r = lane_registry::instance();
  std::lock_guard<std::mutex> guard{r.mtx};
  r.lanes.erase(a);
}

enum class sub_phase : uint8_t {
  off,     ///< no subscription on the current connection
  opening, ///< asked for, not answered yet
  open,    ///< accepted
  waiting, ///< a separate stream ended; a reopen is scheduled
};

struct transport_state {
  transport_host_config cfg;
  transport_listener_actor listener;
  tp::driver_caps caps;
  std::string proto = "transport"; ///< the driver's name ("ipc", "ws", ...)
  link_session<pending_call> link{link_timing{}};
  /// Shared with the driver's reply handler (I/O thread) and, as the call
  /// lane, with submitters on other threads.
  std::shared_ptr<direct_table> tab = std::make_shared<direct_table>();
  caf::actor_addr lane_addr; ///< registered as a lane under this (or none)

  uint64_t gen = 0;      ///< the current connection (0 = none)
  uint64_t next_gen = 1; ///< connections and closes are numbered from here

  // -- subscription -----------------------------------------------------------
  std::string token;      ///< set with token_atom; empty = no events
  std::string open_token; ///< the token the connection was opened with
  sub_phase sub = sub_phase::off;
  uint64_t sub_id = 0;    ///< the current subscription's number
  uint64_t next_sub = 1;
  std::string sub_token;  ///< its token
  uint64_t sub_since = 0; ///< the seq it resumes after
  /// token_per_connection: the connection whose refused subscription asked
  /// for a fresh token already (once per connection).
  uint64_t token_asked_gen = 0;
  /// Live events of the connection's own subscription (subscribes_on_open)
  /// are dropped until the resuming subscription is answered: they are
  /// replayed after `since` anyway, and forwarding them first would move
  /// the engine past a gap a gateway without replay leaves.
  bool holding = false;
  /// A disconnect came while calls were in flight (the supervisor failed
  /// back to a better transport): reported idle at once, new calls are
  /// refused, and the connection is closed when the calls in flight are
  /// answered or their deadlines pass (finish_drain). Failing them instead
  /// would make the supervisor send them again elsewhere although the
  /// server may have taken them: harmless for a message (same id), but a
  /// refresh token sent twice revokes the session.
  bool draining = false;
  int stream_tries = 0;   ///< consecutive reopens of a separate stream
  caf::actor_clock::time_point sub_opened_at{};
  /// Events up to this seq were delivered: subscriptions resume from it.
  uint64_t resume_seq = 0;

  /// Last member: destroyed first; stopped in the destructor, so no driver
  /// callback reaches this actor afterwards.
  std::unique_ptr<tp::driver> driver;

  transport_state() = default;
  transport_state(const transport_state&) = delete;
  transport_state& operator=(const transport_state&) = delete;

  ~transport_state() {
    try {
      if (lane_addr)
        unregister_lane(lane_addr);
      tab->detach(); // no submitter in the driver any more
      if (driver) {
        driver->stop();
        driver.reset();
      }
      // An actor killed outright (exit_reason::kill skips the exit
      // handler) still answers what is in flight: routed calls go back to
      // their return address (failed over), the others fail.
      auto err = make_engine_error(error_class::network,
                                   proto + " transport stopped");
      for (auto& e : link.stop())
        answer_error(*tab, *e.payload.c, err);
      for (auto& c : tab->take_lane())
        answer_error(*tab, *c, err);
    } catch (...) {
      // never throw from a destructor
    }
  }

  static constexpr const char* name = "aico.transport";
};

using self_ptr = transport_impl::stateful_pointer<transport_state>;

/// Sends to the actor from the driver's I/O thread through its weak
/// address (nothing if the actor is gone).
template <class T>
void post_back(const caf::actor_addr& addr, T&& x) {
  if (auto hdl = caf::actor_cast<transport_impl>(addr))
    caf::anon_send(hdl, std::forward<T>(x));
}

/// The bridge: every driver event becomes one message of its own type,
/// except the final reply of a call in the direct table, which the I/O
/// thread delivers to the requester itself (see call_completion).
tp::driver_events make_events(const caf::actor_addr& addr,
                              std::shared_ptr<direct_table> tab,
                              caf::actor_system* sys) {
  tp::driver_events ev;
  ev.on_link_up = [addr](tp::link_up&& x) { post_back(addr, std::move(x)); };
  ev.on_link_lost = [addr](tp::link_lost&& x) {
    post_back(addr, std::move(x));
  };
  ev.on_peer_lost = [addr](tp::peer_lost&& x) {
    post_back(addr, std::move(x));
  };
  ev.on_peer_back = [addr](tp::peer_back&& x) {
    post_back(addr, std::move(x));
  };
  ev.on_reply = [addr, tab, sys](tp::reply&& x) {
    try {
      tab->mark_rx(sys->clock().now());
      auto c = tab->take(x.gen, x.key, x.wire_id);
      auto answer = [&] {
        api_reply r;
        r.id = c->call_id;
        r.status = x.status;
        r.body = std::move(x.body);
        r.headers = std::move(x.headers);
        r.via = c->via;
        return r;
      };
      if (c && c->lane) {
        // a lane call is not in the actor's table: whatever the status,
        // answered (or handed back) from here
        answer_reply(*tab, *c, answer());
        return;
      }
      if (c && final_reply(*c, x.status)) {
        if (c->claim()) {
          c->respond(final_message(*c, answer()));
          tab->answered(c->key);
        }
        return; // answered (by this thread or, already, by the actor)
      }
    } catch (...) {
      // the actor's path below answers it (or the deadline does)
    }
    post_back(addr, std::move(x));
  };
  ev.on_send_failed = [addr](tp::send_failed&& x) {
    post_back(addr, std::move(x));
  };
  ev.on_event = [addr](tp::event_frame&& x) { post_back(addr, std::move(x)); };
  ev.on_subscribed = [addr](tp::subscribed&& x) {
    post_back(addr, std::move(x));
  };
  ev.on_subscription_lost = [addr](tp::subscription_lost&& x) {
    post_back(addr, std::move(x));
  };
  ev.on_pong = [tab, sys](tp::pong&& x) {
    // only the time matters (read by the timer): no message to the actor
    if (x.gen != 0 && x.gen == tab->cur_gen.load(std::memory_order_acquire))
      tab->mark_rx(sys->clock().now());
  };
  ev.on_security_failure = [addr](tp::security_failure&& x) {
    post_back(addr, std::move(x));
  };
  return ev;
}

link_timing timing_of(const transport_host_config& cfg,
                      const tp::driver_caps& caps) {
  link_timing t;
  // a driver that answers its own connect timeout: this is the safety net
  t.connect_timeout = cfg.timing.connect_timeout + caps.own_timeout_grace;
  if (caps.heartbeat) {
    t.ping_interval = cfg.timing.ping_interval;
    if (caps.max_ping_interval.count() > 0
        && (t.ping_interval.count() <= 0
            || t.ping_interval > caps.max_ping_interval))
      t.ping_interval = caps.max_ping_interval; // the server needs it
    t.dead_peer_timeout = cfg.timing.dead_peer_timeout;
  }
  if (caps.reconnects_itself)
    t.reconnect_grace = cfg.reconnect_grace;
  // heartbeats, dead-peer checks and the sweeps of calls answered long ago
  // of every session in the process fire together (timer_slack.hpp)
  t.timer_slack = cfg.timer_slack;
  return t;
}

/// Schedules the link's one timer if its next deadline needs it.
/// (An absolute time: with timer slack on, the link session puts it on an
/// instant shared by the process, and a relative delay would move it off by
/// the time between two clock reads. On the process-wide timer thread:
/// actors/timer_service.hpp.)
void arm_timer(self_ptr self) {
  auto now = self->clock().now();
  if (auto d = self->state.link.arm(now))
    schedule_at(self, now + *d, timeout_atom_v);
}

void report(self_ptr self, transport_status s, std::string reason = {}) {
  auto& st = self->state;
  if (st.listener)
    self->send(st.listener, tstate_atom_v, st.cfg.mode, s, std::move(reason));
}

void send_event(self_ptr self, server_event ev) {
  auto& st = self->state;
  if (st.listener)
    self->send(st.listener, event_atom_v, std::move(ev));
}

/// Drops the calls the I/O thread answered from the link session.
void drain_answered(transport_state& st) {
  for (auto key : st.tab->take_done())
    st.link.answer(key);
}

caf::error network_error(const transport_state& st, const std::string& what) {
  return make_engine_error(error_class::network, st.proto + " " + what);
}

/// Fails these calls with `err` (a network error: the supervisor re-sends
/// them elsewhere), except those the driver called unsafe to resend: they
/// may have reached the server, so their outcome is unknown (class unknown,
/// code outcome_unknown, not retryable; docs/profiles.md).
void fail_one(direct_table& tab, call_completion& c, bool resend_safe,
              const caf::error& err) {
  if (resend_safe) {
    answer_error(tab, c, err);
    return;
  }
  auto cl = classify(err);
  answer_error(tab, c,
               make_engine_error(error_class::unknown,
                                 cl.message
                                   + "; the call may have reached the server "
                                     "and is not re-sent",
                                 0, "outcome_unknown"));
}

template <class Entries>
void fail_all(direct_table& tab, Entries&& entries, const caf::error& err) {
  for (auto& e : entries)
    fail_one(tab, *e.payload.c, e.payload.resend_safe, err);
}

/// Fails the lane's calls in flight like fail_all.
void fail_lane(direct_table& tab, const caf::error& err) {
  for (auto& c : tab.take_lane())
    fail_one(tab, *c, c->resend_safe, err);
}

/// The lane is open exactly when a request to the actor would be sent.
void update_lane(transport_state& st) {
  st.tab->set_gen(st.link.up() && st.driver && st.gen != 0 && !st.draining
                    ? st.gen
                    : 0);
}

// -- connection --------------------------------------------------------------------

void forget_subscription(transport_state& st) {
  st.sub = sub_phase::off;
  st.holding = false;
}

/// Closes the current connection: whatever still comes from it is stale.
void close_connection(self_ptr self) {
  auto& st = self->state;
  st.gen = 0;
  st.tab->cur_gen.store(0, std::memory_order_release);
  ++st.next_gen;
  update_lane(st); // closed
  forget_subscription(st);
  if (st.driver)
    st.driver->close();
}

/// The link is dead: down until the supervisor connects again.
void go_down(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  auto failed = st.link.go_down();
  if (!failed)
    return; // not live: down was reported already
  bool was_draining = std::exchange(st.draining, false);
  close_connection(self);
  auto err = network_error(st, "transport down: " + reason);
  fail_all(*st.tab, *failed, err);
  fail_lane(*st.tab, err);
  if (!was_draining) // (idle was reported when the drain began)
    report(self, transport_status::down, reason);
}

/// Calls still in flight on an up link (after dropping what the I/O thread
/// answered).
bool calls_in_flight(transport_state& st) {
  drain_answered(st);
  return st.link.up()
         && (!st.link.calls().empty() || st.tab->has_lane_calls());
}

/// Disconnect: idle; the connection is closed and what is still in flight
/// fails with network (the caller reports idle if it has not yet).
void stop_link(self_ptr self) {
  auto& st = self->state;
  st.draining = false;
  auto failed = st.link.stop();
  close_connection(self);
  auto err = network_error(st, "transport disconnected");
  fail_all(*st.tab, failed, err);
  fail_lane(*st.tab, err);
}

/// Draining (see transport_state::draining): closes the connection once no
/// call is in flight; until then looks again shortly (the I/O thread
/// answers most calls without telling the actor).
void finish_drain(self_ptr self) {
  auto& st = self->state;
  if (!st.draining)
    return;
  if (calls_in_flight(st)) {
    self->delayed_send(self, std::chrono::milliseconds(20), timeout_atom_v);
    return;
  }
  stop_link(self);
}

/// Subscribes with the current token, resuming after resume_seq.
void subscribe(self_ptr self) {
  auto& st = self->state;
  if (!st.driver || st.gen == 0 || st.token.empty())
    return;
  st.sub_id = st.next_sub++;
  st.sub_token = st.token;
  st.sub_since = st.resume_seq;
  st.sub = sub_phase::opening;
  st.driver->subscribe(st.gen, st.sub_id, st.token, st.resume_seq);
}

/// Opens a new connection numbered `gen` (replacing the current one).
void open_connection(self_ptr self) {
  auto& st = self->state;
  st.gen = st.next_gen++;
  st.open_token = st.token;
  forget_subscription(st);
  st.tab->cur_gen.store(st.gen, std::memory_order_release);
  st.driver->open(st.gen, st.open_token);
  update_lane(st); // a replaced connection of an up link: lane calls go on it
}

/// Lazy Pirate: a reply was lost, so the connection may be wedged. Replace
/// it; everything still in flight on it fails with network. False if there
/// was nothing to reset (not up).
bool reset_connection(self_ptr self) {
  auto& st = self->state;
  if (!st.link.up() || !st.driver)
    return false;
  st.tab->set_gen(0); // nothing more on the old connection
  auto err = network_error(st, "socket reset after a lost reply; re-send");
  fail_all(*st.tab, st.link.drop_calls(), err);
  fail_lane(*st.tab, err);
  open_connection(self);
  if (!st.token.empty())
    subscribe(self);
  return true;
}

/// Something arrived on the current connection.
void on_alive(self_ptr self) {
  self->state.link.received(self->clock().now());
}

/// The connection is usable: up (if connecting) and subscribed.
void on_link_up(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  st.link.received(now);
  if (!st.link.established(now))
    return; // a replaced connection of an up link (already subscribed)
  update_lane(st); // open
  report(self, transport_status::up);
  st.stream_tries = 0;
  if (!st.token.empty()) {
    if (st.caps.subscribes_on_open && !st.open_token.empty()) {
      // the connection subscribed (live) with the token it was opened with
      st.sub = sub_phase::open;
      st.sub_id = st.next_sub++;
      st.sub_token = st.open_token;
      st.sub_since = 0;
      if (st.token != st.open_token || st.resume_seq > 0) {
        bool resume = st.resume_seq > 0;
        subscribe(self); // changed, or resume
        st.holding = resume;
      }
    } else {
      subscribe(self);
    }
  }
  arm_timer(self); // heartbeat and dead-peer deadlines
}

// -- calls -------------------------------------------------------------------------

bool id_in_use(const transport_state& st, const std::string& id) {
  return st.link.has_wire_id(id) || st.tab->has_wire(id)
         || (st.driver && st.driver->reserved_id(id));
}

/// The id a call travels with: its own id unless that is empty or taken
/// (in flight, or reserved by the driver for its own frames).
std::string wire_id_for(const transport_state& st, const std::string& id,
                        uint64_t key) {
  if (!id.empty() && !id_in_use(st, id))
    return id;
  auto tag = "#" + st.proto + std::to_string(key);
  std::string candidate = id + tag;
  // a reserved prefix stays reserved with a suffix: put the tag first
  // (drivers never reserve ids starting with '#'), so that only the calls
  // in flight can be in the way (finitely many)
  if (st.driver && st.driver->reserved_id(candidate))
    candidate = tag + "#" + id;
  while (id_in_use(st, candidate))
    candidate += "_";
  return candidate;
}

api_reply make_reply(const transport_state& st, std::string id,
                     int32_t status, std::string body,
                     std::map<std::string, std::string> headers = {}) {
  api_reply r;
  r.id = std::move(id);
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  r.via = st.cfg.mode;
  return r;
}

/// Sends a call (plain or routed) and keeps it until it is answered; every
/// outcome goes through its completion `c` (also the early ones).
void start_call(self_ptr self, api_call& call, caf::timespan left,
                const completion_ptr& c) {
  auto& st = self->state;
  drain_answered(st);
  c->call_id = call.id;
  c->via = st.cfg.mode;
  if (!st.link.up() || !st.driver || st.gen == 0 || st.draining) {
    answer_error(*st.tab, *c, network_error(st, "transport not connected"));
    return;
  }
  if (left <= caf::timespan{0}) {
    answer_error(*st.tab, *c,
                 make_engine_error(error_class::timeout,
                                   "no time left for the " + st.proto
                                     + " request"));
    return;
  }
  auto key = st.tab->next_key.fetch_add(1, std::memory_order_relaxed);
  auto now = self->clock().now();
  auto deadline = deadline_of(call, now, clamp_delay(left));
  if (c->routed())
    c->call = call; // kept for a re-send after a hand-back
  tp::outgoing_call oc;
  oc.key = key;
  if (st.caps.uses_wire_ids)
    oc.wire_id = wire_id_for(st, call.id, key);
  oc.method = std::move(call.method);
  oc.path = std::move(call.path);
  oc.body = std::move(call.body);
  oc.token = std::move(call.token);
  oc.time_left = deadline - now;
  c->gen = st.gen;
  c->key = key;
  c->wire_id = oc.wire_id;
  bool resend_safe = st.driver->resend_safe(oc);
  // before the send: the reply may arrive before send() returns
  st.tab->add(c);
  auto res = st.driver->send(st.gen, std::move(oc));
  switch (res.what) {
    case tp::send_result::kind::local_reply:
      answer_reply(*st.tab, *c,
                   make_reply(st, c->call_id, res.status, std::move(res.body)));
      return;
    case tp::send_result::kind::failed:
      answer_error(*st.tab, *c,
                   make_engine_error(class_of(res.failure), res.reason));
      return;
    case tp::send_result::kind::queued:
      break;
  }
  // A routed call's caller waits for exactly its deadline (the supervisor
  // used to answer it then); a plain request leaves the driver its grace
  // to report its own timeout first.
  auto grace = c->routed() ? caf::timespan{0} : st.caps.own_timeout_grace;
  if (!st.link.add_call(key, deadline + grace, pending_call{c, res.handle, resend_safe},
                        c->wire_id, st.gen)) {
    st.driver->cancel(res.handle);
    answer_error(*st.tab, *c,
                 make_engine_error(error_class::unknown,
                                   st.proto
                                     + " transport: request id in use"));
    return;
  }
  arm_timer(self);
}

/// The completion of the request being handled (the promise's requester
/// and request id); the handler returns the promise (answered later).
completion_ptr completion_of(const caf::response_promise& rp) {
  auto c = std::make_shared<call_completion>();
  c->source = rp.source(); // (no forwarding stages in the engine)
  c->mid = rp.id();
  return c;
}

/// Runs start_call, keeping every exception inside the handler.
void guarded_call(self_ptr self, api_call& call, caf::timespan left,
                  const completion_ptr& c) {
  auto& st = self->state;
  try {
    start_call(self, call, left, c);
  } catch (const std::exception& e) {
    answer_error(*st.tab, *c,
                 make_engine_error(error_class::unknown,
                                   st.proto + " transport: " + e.what()));
  } catch (...) {
    answer_error(*st.tab, *c,
                 make_engine_error(error_class::unknown,
                                   st.proto + " transport: internal error"));
  }
}

/// The call an answer is for: by key if the driver gave one, else by id.
std::optional<link_session<pending_call>::entry>
take_call(transport_state& st, uint64_t key, const std::string& wire_id) {
  if (key != 0)
    return st.link.answer(key);
  if (wire_id.empty())
    return std::nullopt;
  return st.link.answer_wire_id(wire_id);
}

// -- subscription --------------------------------------------------------------------

/// Whether two access tokens belong to the same user (their JWT `sub`).
bool same_user(const std::string& a, const std::string& b) {
  auto x = decode_jwt_claims(a);
  auto y = decode_jwt_claims(b);
  return x && y && !x->sub.empty() && x->sub == y->sub;
}

bool subscription_live(const transport_state& st) {
  return st.sub == sub_phase::opening || st.sub == sub_phase::open;
}

void on_token(self_ptr self, std::string& tok) {
  auto& st = self->state;
  if (tok.empty()) {
    st.token.clear();
    st.resume_seq = 0; // logged out: the next session starts afresh
    if (st.sub != sub_phase::off && st.driver && st.gen != 0)
      st.driver->unsubscribe(st.gen);
    forget_subscription(st);
    return;
  }
  st.token = std::move(tok);
  if (!st.link.up())
    return; // subscribed once up
  if (subscription_live(st)
      && (st.sub_token == st.token
          || (st.caps.refresh_keeps_subscription
              && same_user(st.sub_token, st.token)))) {
    // subscribed with it already (or in flight); a refreshed token of the
    // same user does not end a separate stream (a reopen is a switch-over):
    // the next (re)open uses the new token
    return;
  }
  st.stream_tries = 0;
  subscribe(self); // also replaces an earlier subscription
}

void on_resume(self_ptr self, uint64_t seq, bool now) {
  auto& st = self->state;
  if (!now) {
    st.resume_seq = std::max(st.resume_seq, seq);
    return;
  }
  st.resume_seq = seq;
  if (st.link.up() && !st.token.empty() && subscription_live(st)) {
    st.stream_tries = 0;
    subscribe(self); // replaces the subscription, replaying from seq
    // Live events of the subscription it replaces may still arrive before
    // the answer (a driver whose events carry no subscription id: IPC, WS).
    // Forwarded, one newer than `seq` would move the engine's cursor past
    // the replay, whose events would then be dropped as repeats: a silent
    // loss. They are in the replay that follows the answer.
    st.holding = seq > 0;
  }
}

/// token_per_connection: the server refused the token (it spent it on an
/// earlier connection); ask the engine for a fresh one, once per connection
/// (it comes back as token_atom and subscribes again).
void ask_fresh_token(self_ptr self) {
  auto& st = self->state;
  if (!st.link.up() || st.token.empty() || st.token_asked_gen == st.gen)
    return;
  st.token_asked_gen = st.gen;
  server_event ev;
  ev.topic = token_refused_topic;
  ev.data = "{}";
  ev.via = st.cfg.mode;
  send_event(self, std::move(ev));
}

void on_subscribed(self_ptr self, const tp::subscribed& s) {
  auto& st = self->state;
  if (s.sub != st.sub_id)
    return; // an older subscription's answer
  if (!s.ok && st.caps.token_per_connection) {
    // such a driver may accept a subscription at once (its events do not
    // depend on the token) and report the server's refusal later: the
    // subscription stays as it is, the token is renewed
    ask_fresh_token(self);
    if (st.sub == sub_phase::open)
      return;
  }
  if (st.sub != sub_phase::opening)
    return; // answered already
  bool held = st.holding;
  st.holding = false;
  if (s.ok) {
    st.sub = sub_phase::open;
    st.sub_opened_at = self->clock().now();
    // the replayed events follow this answer: the outcome goes first
    if (st.sub_since > 0 && st.link.up() && !st.token.empty())
      send_event(self, replay_outcome_event(st.sub_since, s.replay_complete,
                                            st.cfg.mode));
    return;
  }
  // Refused: no events with it (until a new token). A connection that
  // subscribed when it was opened stays as it was.
  st.sub = st.caps.subscribes_on_open && !st.open_token.empty()
             ? sub_phase::open
             : sub_phase::off;
  if (held && st.sub_since > 0 && !st.token.empty())
    // not resumed: what was dropped meanwhile is a gap
    send_event(self, replay_outcome_event(st.sub_since, false, st.cfg.mode));
}

void on_subscription_lost(self_ptr self, const tp::subscription_lost& l) {
  auto& st = self->state;
  if (l.sub != st.sub_id || !subscription_live(st))
    return; // an older stream
  st.sub = sub_phase::off;
  st.holding = false;
  if (!st.link.up() || st.token.empty())
    return;
  if (l.was_open
      && self->clock().now() - st.sub_opened_at >= stream_stable_after)
    st.stream_tries = 0;
  auto network = l.kind == static_cast<uint8_t>(tp::call_failure::network)
                 || l.kind == static_cast<uint8_t>(tp::call_failure::timeout);
  if (!l.was_open && network) {
    // could not (re)open the stream: the gateway is unreachable
    go_down(self, "event stream: " + l.reason);
    return;
  }
  if (l.kind == 0 && (l.status == 401 || l.status == 403))
    return; // the token was rejected: no events until a new token arrives
  if (++st.stream_tries > stream_max_tries) {
    go_down(self, "event stream keeps failing: "
                    + (l.kind == 0 ? "status " + std::to_string(l.status)
                                   : l.reason));
    return;
  }
  st.sub = sub_phase::waiting;
  self->delayed_send(self, stream_retry_delay * st.stream_tries, probe_atom_v,
                     st.sub_id);
}

void on_event(self_ptr self, tp::event_frame& e) {
  auto& st = self->state;
  if (!st.link.up() || st.token.empty() || st.sub == sub_phase::off
      || st.sub == sub_phase::waiting || st.holding)
    return; // "empty token = no events"; before a resumed subscription
  if (e.sub != 0 && e.sub != st.sub_id)
    return; // an older stream's
  server_event ev;
  ev.topic = std::move(e.topic);
  ev.data = std::move(e.data);
  ev.seq = e.seq;
  ev.via = st.cfg.mode;
  st.resume_seq = std::max(st.resume_seq, ev.seq);
  send_event(self, std::move(ev));
}

// -- timer ---------------------------------------------------------------------------

void on_timer(self_ptr self) {
  auto& st = self->state;
  drain_answered(st);
  auto now = self->clock().now();
  if (auto t = st.tab->take_rx(); t && st.link.up())
    st.link.received(std::min(*t, now)); // replies and pongs on the I/O thread
  auto r = st.link.on_timer(now);
  // Earliest deadline first, as separate timers would have fired.
  bool was_reset = false;
  // the lane's calls past their deadline (taken out: the I/O thread can no
  // longer answer them; the next lane deadline is scheduled)
  std::optional<caf::actor_clock::time_point> lane_next;
  for (auto& c : st.tab->expire_lane(now, lane_next)) {
    try {
      if (!c->claim())
        continue; // answered on the I/O thread meanwhile
      c->respond(caf::make_message(make_engine_error(
        error_class::timeout, "no answer before the deadline")));
      if (st.driver)
        st.driver->cancel(c->handle.load(std::memory_order_acquire));
      if (st.caps.reset_on_timeout && c->gen == st.gen && !was_reset)
        was_reset = reset_connection(self);
    } catch (...) {
    }
  }
  if (lane_next)
    schedule_at(self, *lane_next, timeout_atom_v);
  for (auto& e : r.expired) {
    try {
      if (was_reset) {
        // the reset failed everything still in flight on the old
        // connection, these included
        answer_error(*st.tab, *e.payload.c,
                     network_error(st,
                                   "socket reset after a lost reply; re-send"));
        continue;
      }
      // the sweep and the I/O thread race for the call: the winner answers
      // (a routed call's caller gets the words the supervisor used)
      auto& c = *e.payload.c;
      auto what = c.routed() ? std::string{"no answer before the deadline"}
                             : st.proto + " request timed out";
      if (!answer_error(*st.tab, c,
                        make_engine_error(error_class::timeout, what)))
        continue; // the reply won (answered on the I/O thread)
      if (st.driver)
        st.driver->cancel(e.payload.handle);
      if (st.caps.reset_on_timeout && e.generation == st.gen)
        was_reset = reset_connection(self);
    } catch (...) {
    }
  }
  auto limit = caf::timespan{0};
  tp::timing_cause cause{};
  switch (r.down) {
    case link_down_cause::connect_timeout:
      cause = tp::timing_cause::connect_timeout;
      limit = st.cfg.timing.connect_timeout;
      break;
    case link_down_cause::dead_peer:
      cause = tp::timing_cause::dead_peer;
      limit = st.cfg.timing.dead_peer_timeout;
      break;
    case link_down_cause::reconnect_grace:
      cause = tp::timing_cause::reconnect_grace;
      limit = st.cfg.reconnect_grace;
      break;
    case link_down_cause::none:
      if (r.send_ping && st.driver && st.gen != 0)
        st.driver->ping(st.gen);
      return;
  }
  go_down(self, st.driver ? st.driver->describe(cause, r.silence, limit)
                          : st.proto + " link timed out");
}

/// Runs `f`, keeping every exception inside the handler.
template <class F>
void guarded(self_ptr self, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    try {
      go_down(self, self->state.proto + " transport: " + e.what());
    } catch (...) {
    }
  } catch (...) {
    try {
      go_down(self, self->state.proto + " transport: internal error");
    } catch (...) {
    }
  }
}

/// disconnect_atom (see messages/transport.hpp): with `drain` and calls in
/// flight, idle now and closed when they are answered (finish_drain).
void disconnect(self_ptr self, bool drain) {
  auto& st = self->state;
  try {
    if (drain && calls_in_flight(st)) {
      if (!st.draining) {
        st.draining = true;
        update_lane(st); // closed: new calls go elsewhere
        report(self, transport_status::idle);
      }
      finish_drain(self);
      return;
    }
    stop_link(self);
    report(self, transport_status::idle);
  } catch (...) {
    // idle already (the link session moved first)
  }
}

// -- behavior ------------------------------------------------------------------------

transport_impl::behavior_type
transport_fun(self_ptr self, transport_host_config cfg, driver_factory make,
              transport_listener_actor listener,
              std::shared_ptr<direct_table> lane) {
  auto& st = self->state;
  st.tab = std::move(lane);
  st.lane_addr = self->address();
  st.cfg = std::move(cfg);
  st.listener = std::move(listener);
  try {
    if (make)
      st.driver = make(make_events(self->address(), st.tab,
                                   &self->home_system()));
  } catch (...) {
    st.driver.reset(); // connect reports down
  }
  if (st.driver) {
    st.caps = st.driver->capabilities();
    st.proto = st.driver->name();
    if (st.caps.concurrent_send)
      st.tab->attach(st.driver.get(), st.caps, st.proto, st.cfg.mode,
                     self->home_system(), self->address(), st.cfg.timer_slack);
  }
  st.link = link_session<pending_call>{timing_of(st.cfg, st.caps)};
  // Fail what is in flight before going away (the default handler would
  // quit without delivering the promises).
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (!em.reason)
      return; // like the default handler: a normal exit of a link is ignored
    try {
      auto& st = self->state;
      st.tab->set_gen(0);
      auto err = network_error(st, "transport stopped");
      fail_all(*st.tab, st.link.stop(), err);
      fail_lane(*st.tab, err);
      if (st.driver)
        st.driver->close();
    } catch (...) {
      // quitting anyway
    }
    self->quit(em.reason);
  });
  return {
    // -- public interface ------------------------------------------------------
    [self](connect_atom) {
      auto& st = self->state;
      st.draining = false; // wanted again: the connection stays
      update_lane(st);
      if (st.link.status() == transport_status::connecting)
        return; // up or down follows
      if (st.link.up()) {
        report(self, transport_status::up); // tell the caller again
        return;
      }
      guarded(self, [&] {
        auto why = st.driver ? st.driver->unusable()
                             : st.proto + " transport: no driver";
        if (!why.empty()) {
          report(self, transport_status::down, std::move(why));
          return;
        }
        st.link.connect(self->clock().now());
        report(self, transport_status::connecting);
        open_connection(self);
        arm_timer(self); // the connect deadline
      });
    },
    [self](disconnect_atom) { disconnect(self, false); },
    [self](disconnect_atom, bool drain) { disconnect(self, drain); },
    [self](token_atom, std::string& tok) {
      try {
        on_token(self, tok);
      } catch (...) {
        // no events; the next token or reconnect tries again
        forget_subscription(self->state);
      }
    },
    [self](resume_atom, uint64_t seq, bool now) {
      try {
        on_resume(self, seq, now);
      } catch (...) {
        forget_subscription(self->state);
      }
    },
    [self](request_atom, api_call& call,
           caf::timespan left) -> caf::result<api_reply> {
      auto rp = self->make_response_promise();
      guarded_call(self, call, left, completion_of(rp));
      return rp;
    },
    [self](request_atom, api_call& call, caf::actor& back, uint64_t slot,
           bool auth) -> caf::result<api_reply> {
      auto rp = self->make_response_promise();
      auto c = completion_of(rp);
      c->back = std::move(back);
      c->slot = slot;
      c->auth = auth;
      auto left = caf::timespan::max();
      if (call.deadline != std::chrono::steady_clock::time_point{})
        left = std::chrono::duration_cast<caf::timespan>(
          call.deadline - self->clock().now());
      guarded_call(self, call, left, c);
      return rp;
    },
    // -- from the driver -------------------------------------------------------
    [self](tp::link_up& x) {
      if (x.gen != self->state.gen)
        return;
      guarded(self, [&] { on_link_up(self); });
    },
    [self](tp::link_lost& x) {
      if (x.gen != self->state.gen)
        return;
      guarded(self, [&] { go_down(self, x.reason); });
    },
    [self](tp::security_failure& x) {
      if (x.gen != self->state.gen)
        return;
      guarded(self, [&] { go_down(self, x.reason); });
    },
    [self](tp::peer_lost& x) {
      auto& st = self->state;
      if (x.gen != st.gen || !st.link.up())
        return; // while connecting, link_up or the deadline decides
      guarded(self, [&] {
        // What was on the lost connection is gone: its replies and the
        // gateway's subscription. Without a reconnect within the grace the
        // link is down.
        auto err = network_error(st, "connection lost");
        fail_all(*st.tab, st.link.drop_calls(), err);
        fail_lane(*st.tab, err);
        forget_subscription(st);
        st.link.lose_peer(self->clock().now());
        arm_timer(self); // the reconnect grace
      });
    },
    [self](tp::peer_back& x) {
      auto& st = self->state;
      if (x.gen != st.gen || !st.link.up())
        return;
      guarded(self, [&] {
        st.link.peer_back();
        if (!st.token.empty() && st.sub == sub_phase::off)
          subscribe(self); // the gateway forgot the lost peer's
        if (st.caps.heartbeat)
          st.driver->ping(st.gen);
      });
    },
    [self](tp::reply& x) {
      auto& st = self->state;
      if (x.gen != st.gen)
        return;
      try {
        on_alive(self);
        auto e = take_call(st, x.key, x.wire_id);
        if (!e)
          return; // timed out already, failed, or unknown
        auto& c = *e->payload.c;
        answer_reply(*st.tab, c,
                     make_reply(st, c.call_id, x.status, std::move(x.body),
                                std::move(x.headers)));
        finish_drain(self);
      } catch (...) {
        // the call's deadline answers it
      }
    },
    [self](tp::send_failed& x) {
      auto& st = self->state;
      if (x.gen != st.gen)
        return;
      guarded(self, [&] {
        auto err = make_engine_error(class_of(x.kind), x.reason);
        if (auto e = take_call(st, x.key, x.wire_id))
          answer_error(*st.tab, *e->payload.c, std::move(err));
        else if (auto c = st.tab->take(x.gen, x.key, x.wire_id);
                 c && c->lane)
          answer_error(*st.tab, *c, std::move(err)); // a lane call
        if (x.link_down)
          go_down(self, x.reason);
      });
    },
    [self](tp::event_frame& x) {
      if (x.gen != self->state.gen)
        return;
      try {
        on_alive(self);
        on_event(self, x);
      } catch (...) {
      }
    },
    [self](tp::subscribed& x) {
      if (x.gen != self->state.gen)
        return;
      try {
        on_alive(self);
        on_subscribed(self, x);
      } catch (...) {
      }
    },
    [self](tp::subscription_lost& x) {
      if (x.gen != self->state.gen)
        return;
      guarded(self, [&] { on_subscription_lost(self, x); });
    },
    [self](tp::pong& x) {
      if (x.gen != self->state.gen)
        return;
      try {
        on_alive(self);
      } catch (...) {
      }
    },
    // -- timers ----------------------------------------------------------------
    [self](timeout_atom) {
      guarded(self, [&] { on_timer(self); });
      guarded(self, [&] { finish_drain(self); });
      try {
        arm_timer(self); // for the next deadline
      } catch (...) {
      }
    },
    [self](probe_atom, uint64_t sub) {
      auto& st = self->state;
      if (sub != st.sub_id || st.sub != sub_phase::waiting || !st.link.up())
        return;
      guarded(self, [&] { subscribe(self); });
    },
  };
}

} // namespace

std::shared_ptr<call_lane> call_lane_of(const caf::actor_addr& transport) {
  auto& r = lane_registry::instance();
  std::lock_guard<std::mutex> guard{r.mtx};
  auto i = r.lanes.find(transport);
  if (i == r.lanes.end())
    return nullptr;
  return i->second.lock();
}

transport_actor spawn_transport_actor(caf::actor_system& sys,
                                      transport_host_config cfg,
                                      driver_factory make,
                                      transport_listener_actor listener) {
  // the lane exists (and can be found) from the start; it opens once the
  // actor has its driver and its link is up
  auto lane = std::make_shared<direct_table>();
  auto hdl = sys.spawn(transport_fun, std::move(cfg), std::move(make),
                       std::move(listener), lane);
  register_lane(hdl.address(), lane);
  return caf::actor_cast<transport_actor>(hdl);
}

} // namespace aico
