// aico engine: the one generic transport actor. It offers the common
// interface of messages/transport.hpp (transport_actor) for every protocol
// and hosts one driver (src/transport/driver.hpp) that does the protocol's
// I/O and framing. Which driver a transport name gets, with which settings,
// is the registry's business (actors/transport_registry.hpp).
//
//   supervisor ──connect/disconnect/token/resume/request──▶ transport actor ──▶ driver ──▶ I/O thread
//        ▲                                                   │      ▲                          │
//        └──────── tstate(mode, status, reason) / event ◀────┘      └── event structs ◀───────┘
//                                                                      (anon_send, weak address)
//
// The actor owns everything that is the same for every protocol:
// * the link (src/core/link_session): status, generation, the connect
//   deadline, heartbeat and dead-peer timing, the reconnect grace, the calls
//   in flight with their absolute deadlines, ONE timer message for all of
//   them (timeout_atom, on the actor clock: the test coordinator drives it);
// * fail-all: on down, disconnect and exit every call in flight fails with
//   error_class::network (the supervisor re-sends them by id);
// * the connection number (`gen`) handed to the driver: every event from an
//   older connection is ignored;
// * the subscription: the token, the resume point (the last event seq the
//   engine delivered or this transport forwarded), when to (re)subscribe,
//   the `events.replay` marker before replayed events, reopening a separate
//   event stream that ended (a few tries, then down);
// * the words: "<name> transport down: <reason>", "<name> request timed out".
// What differs between protocols comes from the driver's capabilities.
#pragma once

#include <functional>
#include <memory>

#include "caf/all.hpp"

#include "messages/transport.hpp"
#include "src/transport/driver.hpp"

namespace aico {

/// Makes the driver (with the events it must report to). Called once, on
/// the new actor's thread, before its first message.
using driver_factory = std::function<std::unique_ptr<transport::driver>(
  transport::driver_events)>;

/// What the generic actor itself needs to know about a transport.
struct transport_host_config {
  /// Reported in tstate and stamped on replies and events (`via`).
  transport_mode mode = transport_mode::http;
  /// connect_timeout, ping_interval, dead_peer_timeout (the last two apply
  /// only to drivers with the heartbeat capability).
  transport_config timing;
  /// Only for drivers that reconnect by themselves: how long to wait for
  /// it after peer_lost before the link is down.
  transport_duration reconnect_grace = std::chrono::milliseconds(500);
  /// Timer slack (src/core/timer_slack.hpp): while the link is up its one
  /// timer may fire late, on an instant shared by every session of the
  /// process: heartbeat wake-ups by up to 1/16 of their delay, call
  /// deadlines by up to 1/64 (at most 1.024 s). Off only where a test needs
  /// exact times.
  bool timer_slack = true;
};

/// The request-side hop of the one-hop path: a thread-safe way into a
/// transport's driver past its actor. A caller (the supervisor) submits a
/// routed call on its own thread; it goes straight to the driver, which
/// queues it for its I/O thread, and the answer goes to the requester from
/// that thread (or, for what the router decides, to `back`), exactly as
/// for a routed call sent through the actor. The actor keeps owning
/// everything else: the lane is open only while its link is up (and not
/// draining), its one timer sweeps the lane's deadlines, and every fail-all
/// (down, reset, disconnect, exit) fails the lane's calls too.
///
/// Only drivers whose capabilities() say concurrent_send get a lane; for
/// the others submit() is always false.
class call_lane {
public:
  virtual ~call_lane() = default;

  /// Sends `call` (with its absolute deadline set; a routed call as in
  /// request(call, back, slot, auth)) and answers `rp`'s requester later.
  /// False when the lane is closed or the call has no time left: nothing
  /// happened and `call` is untouched (send it through the actor).
  virtual bool submit(api_call& call, const caf::response_promise& rp,
                      const caf::actor& back, uint64_t slot, bool auth)
    = 0;
};

/// The lane of a transport actor spawned by spawn_transport_actor (null
/// for other actors, and once the actor is gone).
std::shared_ptr<call_lane> call_lane_of(const caf::actor_addr& transport);

/// Spawns a transport actor hosting the driver `make` builds.
transport_actor spawn_transport_actor(caf::actor_system& sys,
                                      transport_host_config cfg,
                                      driver_factory make,
                                      transport_listener_actor listener);

} // namespace aico
