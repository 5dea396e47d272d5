// aico engine: one transport link as pure logic (sans-I/O; no actors, no
// sockets, no clock: every event carries `now`).
//
// The transport actor (actors/transport_actor.cpp) owns one
// link_session. It feeds it what happens (connect asked, link established,
// something received, connection lost / back, closed, a call sent / answered,
// the timer fired) and executes what it says (report a status, send a ping,
// go down for a named cause, fail or time out calls). The session owns:
//
//   * status and generation: idle -> connecting -> up | down; every new
//     attempt and every end bumps the generation, so whatever is still on
//     its way from an older connection (I/O callbacks) can be told apart;
//   * the connect deadline (connecting longer than connect_timeout = down);
//   * heartbeat timing: a ping is due every ping interval while up (never
//     less often than every half of the dead-peer timeout, never more often
//     than every 10 ms); nothing received for dead_peer_timeout = down;
//   * an optional reconnect grace: the connection under an up link was lost
//     and the library reconnects by itself (ZeroMQ); not back within the
//     grace = down;
//   * the calls in flight (src/core/pending_requests.hpp), each with an
//     absolute deadline; on down / stop every one of them is handed back to
//     be failed (the supervisor re-sends them by id: "replay"), on the timer
//     the overdue ones are handed back to be answered with a timeout;
//   * ONE timer: next_wakeup() is the earliest of all these deadlines and
//     arm(now) says when the actor must schedule its single timer message
//     (none when one already pending fires early enough). A timer that finds
//     nothing due does nothing, so stale timers need no generation.
//
// Tests drive it step by step with a manual clock
// (tests/engine/core/test_link_session.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "messages/types.hpp"
#include "src/core/pending_requests.hpp"
#include "src/core/timer_slack.hpp"

namespace aico {

/// The timing of one link (durations; 0 switches a check off).
struct link_timing {
  using duration = std::chrono::steady_clock::duration;
  /// Connecting longer than this = down (link_down_cause::connect_timeout).
  duration connect_timeout = std::chrono::seconds(5);
  /// A ping is due this often while up (0 = no pings).
  duration ping_interval{0};
  /// Nothing received this long while up = down (0 = no check).
  duration dead_peer_timeout{0};
  /// After peer_lost(): not back within this = down (0 = down at the next
  /// timer).
  duration reconnect_grace{0};
  /// While up, let the heartbeat's wake-ups (ping, dead peer) fire up to
  /// 1/16 of their delay late and call deadlines up to 1/64 (at most
  /// 1.024 s), on instants shared by the whole process
  /// (src/core/timer_slack.hpp); the connect deadline and the reconnect
  /// grace stay exact. The actor sets it; off
  /// here so that step tests see exact delays.
  bool timer_slack = false;
};

/// Why the session says the link is down (the actor words the reason).
enum class link_down_cause : uint8_t {
  none,
  connect_timeout, ///< still connecting at the connect deadline
  dead_peer,       ///< nothing received for dead_peer_timeout
  reconnect_grace, ///< the lost connection was not back within the grace
};

const char* to_string(link_down_cause c);

/// The one absolute deadline of a call sent with `left` to go at `now`: the
/// call's own (api_call::deadline, set by the supervisor) if it has one and
/// it is not later, else now + left.
inline std::chrono::steady_clock::time_point
deadline_of(const api_call& call, std::chrono::steady_clock::time_point now,
            std::chrono::steady_clock::duration left) {
  auto by_left = now + left;
  if (call.deadline != std::chrono::steady_clock::time_point{}
      && call.deadline < by_left)
    return call.deadline;
  return by_left;
}

/// The non-template part: status, generation and the link's own deadlines.
class link_session_base {
public:
  using clock_type = std::chrono::steady_clock;
  using time_point = clock_type::time_point;
  using duration = clock_type::duration;

  /// What connect() decided.
  enum class connect_step : uint8_t {
    start,       ///< a new attempt: status connecting, open the connection
    in_progress, ///< connecting already: up or down follows, nothing to do
    already_up,  ///< up already: report up again
  };

  /// What the link's own deadlines say at a timer (calls apart).
  struct link_check {
    bool send_ping = false;
    link_down_cause down = link_down_cause::none;
    duration silence{0}; ///< dead_peer: how long nothing was received
  };

  explicit link_session_base(link_timing t);

  const link_timing& timing() const { return timing_; }
  transport_status status() const { return status_; }
  /// True while connecting or up (an end of the link is still to come).
  bool live() const {
    return status_ == transport_status::connecting
           || status_ == transport_status::up;
  }
  bool up() const { return status_ == transport_status::up; }
  /// Bumped by every new attempt and every end of a link.
  uint64_t generation() const { return generation_; }
  /// The ping interval actually used (see the header comment).
  duration ping_interval() const { return ping_every_; }
  /// The connection under an up link is lost (peer_lost, not yet back).
  bool peer_lost() const { return lost_; }
  /// When something was last received (or the link came up).
  time_point last_received() const { return last_rx_; }

  /// Connect was asked for.
  connect_step connect(time_point now);
  /// connecting -> up (handshake done, first answer); false if the session
  /// was not connecting (then nothing changes).
  bool established(time_point now);
  /// Something arrived on the current connection (any frame: a sign of
  /// life).
  void received(time_point now);
  /// The connection under an up link dropped; the library reconnects by
  /// itself. False (nothing changes) unless up.
  bool lose_peer(time_point now);
  /// The lost connection is back.
  void peer_back();

  /// The earliest of the link's own deadlines (calls apart).
  std::optional<time_point> next_link_wakeup() const;

  /// How often the heartbeat wakes while up: the ping interval, else the
  /// dead-peer timeout (0: no heartbeat).
  duration heartbeat_period() const {
    return ping_every_ > duration{0} ? ping_every_ : timing_.dead_peer_timeout;
  }

protected:
  /// Ends the link: to `down` only if live, to `idle` always. True if the
  /// status changed from live (or to idle).
  bool leave(transport_status to);
  /// The link's own deadlines at `now` (advances the ping schedule).
  link_check check(time_point now);

private:
  link_timing timing_;
  duration ping_every_;
  transport_status status_ = transport_status::idle;
  uint64_t generation_ = 0;
  time_point connect_deadline_{};
  time_point last_rx_{};
  time_point next_ping_{};
  bool lost_ = false;
  time_point grace_deadline_{};
};

/// One link and its calls in flight. `Payload` is what the actor needs to
/// answer a call (typically its response promise and the call id).
template <class Payload>
class link_session : public link_session_base {
public:
  using table_type = pending_requests<Payload, time_point>;
  using entry = typename table_type::entry;

  /// What the timer found due.
  struct timer_result : link_check {
    /// Calls past their deadline, earliest first: answer with a timeout.
    std::vector<entry> expired;
  };

  explicit link_session(link_timing t) : link_session_base(t), timer_(
    std::chrono::milliseconds(1), std::chrono::hours(24)) {
    // nop
  }

  /// The link is dead (closed, failed, a deadline passed): down. Returns the
  /// calls to fail with a network error (the supervisor re-sends them), or
  /// nothing if the link was not live (already down or idle: no report).
  std::optional<std::vector<entry>> go_down() {
    if (!leave(transport_status::down))
      return std::nullopt;
    return calls_.take_all();
  }

  /// Disconnect or exit: idle; every call in flight is to be failed.
  std::vector<entry> stop() {
    leave(transport_status::idle);
    return calls_.take_all();
  }

  /// The calls in flight are lost while the link stays up (the connection
  /// under it was replaced): every one of them is to be failed.
  std::vector<entry> drop_calls() { return calls_.take_all(); }

  /// A call was sent. False (nothing added) unless up, or if `key` or a
  /// non-empty `wire_id` is in use.
  bool add_call(uint64_t key, time_point deadline, Payload payload,
                std::string wire_id = {}, uint64_t generation = 0) {
    if (!up())
      return false;
    return calls_.insert(key, deadline, std::move(payload),
                         std::move(wire_id), generation);
  }

  /// The call answered by key / wire id (nothing if it timed out already
  /// or was failed).
  std::optional<entry> answer(uint64_t key) { return calls_.take(key); }
  std::optional<entry> answer_wire_id(const std::string& wire_id) {
    return calls_.take_by_wire_id(wire_id);
  }

  bool has_wire_id(const std::string& wire_id) const {
    return calls_.contains_wire_id(wire_id);
  }
  const table_type& calls() const { return calls_; }

  /// The timer fired at `now` (it may be stale or early: then nothing is
  /// due).
  timer_result on_timer(time_point now) {
    timer_.fired(now);
    timer_result res;
    static_cast<link_check&>(res) = check(now);
    res.expired = calls_.expire(now);
    return res;
  }

  /// The earliest deadline of all (link and calls); none = no timer needed.
  std::optional<time_point> next_wakeup() const {
    auto a = next_link_wakeup();
    auto b = calls_.earliest_deadline();
    if (a && b)
      return std::min(*a, *b);
    return a ? a : b;
  }

  /// Call after every event: the delay to schedule the one timer message
  /// with, if the pending one (if any) would fire too late.
  std::optional<duration> arm(time_point now) {
    auto next = next_wakeup();
    if (timing().timer_slack && status() == transport_status::up
        && !peer_lost()) {
      // while up, the link's own wake-ups are the heartbeat's (ping, dead
      // peer): they may slip onto the shared grid by 1/16 of their delay;
      // call deadlines by 1/64 (the sweeps of calls answered long before
      // fire together; a caller waits at most 1/64 longer for its
      // timeout); the connect deadline and the reconnect grace stay exact
      auto link = next_link_wakeup();
      auto calls = calls_.earliest_deadline();
      // the heartbeat's slack follows from its period, not from the time
      // left: armed again while already due but not yet fired (a pong or
      // a reply in between), it still lands on the same instant instead
      // of a timer of its own right away
      if (link && heartbeat_period() > duration{0})
        link = coalesce_deadline(*link, heartbeat_period());
      if (calls && *calls > now)
        calls = coalesce_deadline(*calls, *calls - now, 64);
      if (link && calls)
        next = std::min(*link, *calls);
      else
        next = link ? link : calls;
    }
    auto d = timer_.arm(next, now);
    if (!d)
      return std::nullopt;
    return std::chrono::duration_cast<duration>(*d);
  }

private:
  table_type calls_;
  single_timer<time_point> timer_;
};

} // namespace aico
