// aico engine: the transport driver interface -- what one protocol library
// (libcurl, libwebsockets, ZeroMQ, ...) does for the engine, and the events
// it reports. No CAF and no C library here: a driver is plain C++ with an
// I/O thread behind it; the generic transport actor
// (actors/transport_actor.cpp) hosts one driver and owns everything that is
// the same for every protocol (the link session's status, generation and
// deadlines, the calls in flight, fail-all on down, the subscription and its
// resume point, the replay marker).
//
//   transport actor ──open/close/send/subscribe/ping (owner thread)──▶ driver ──▶ I/O thread
//         ▲                                                                          │
//         └──── anon_send(event struct) ◀── driver_events (std::function, I/O thread)┘
//
// What a driver does: I/O and the protocol's framing (its codec). It opens
// and closes connections numbered by the owner ("gen"), sends one call with
// the owner's key and wire id and the time left until its absolute
// deadline, sets the event subscription (token + resume point), sends a ping
// if the protocol has one, and stops. What it sees it reports as one of the
// named event structs below, each with the `gen` of the connection it came
// from (the owner ignores stale ones).
//
// What a driver does NOT do: decide when the link is up or down in time
// (connect deadline, heartbeat, dead peer, reconnect grace: the owner's
// link_session), keep calls or their deadlines, retry, or talk to the
// supervisor. Protocol differences the owner must know come from
// capabilities(), never from the protocol's name.
//
// Threading and ownership:
// * Every member function is called on the owner's thread, one at a time
//   (the actor serializes them); a driver may keep owner-side state for
//   them without a lock. The exception: a driver with
//   capabilities().concurrent_send lets other threads call send() and
//   resend_safe() at any time before stop().
// * Every driver_events handler is called on the driver's I/O thread (for
//   WebSocket: the process-wide service thread shared by every driver), so
//   handlers must be short and non-blocking (the actor's bridge only does
//   caf::anon_send). The I/O-thread side of a driver must not touch its
//   owner-side state (what both need is immutable after construction or
//   encoded in the ids, see `subscribe`).
// * The owner holds the driver by unique_ptr; stop() (also run by the
//   destructor) returns only when no handler runs any more and none will be
//   called again. Never call stop() from a handler.
// * No member function throws for an I/O failure: failures are events. A
//   thrown std::exception means a programming or resource error; the owner
//   catches it (no exception leaves an actor handler).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace aico::transport {

using duration = std::chrono::nanoseconds;

/// How one call failed in the driver (before any answer from the gateway).
enum class call_failure : uint8_t {
  network = 1, ///< refused, reset, send failed: re-send elsewhere
  timeout,     ///< the driver's own timeout (e.g. CURLOPT_TIMEOUT_MS)
  unknown,     ///< anything else (too large, bad URL, ...)
};

// -- events (I/O thread -> owner) ----------------------------------------------
//
// Every struct carries `gen`: the number of the connection (see open()) it
// comes from. Each has an inspect() so that it is a CAF message type (the
// bridge sends the struct itself: one message type per event).

/// Connection `gen` is usable: handshake done (WebSocket), the probe
/// answered (HTTP), the first frame arrived (IPC). Reported again for a
/// connection that replaced the current one while the link stays up.
struct link_up {
  uint64_t gen = 0;
};

/// Connection `gen` is gone for good (refused, closed by the peer, failed,
/// a reconnect refused after peer_lost): the link is down. `reason` is a
/// sentence for people and never contains a token.
struct link_lost {
  uint64_t gen = 0;
  std::string reason;
};

/// Only drivers with capabilities().reconnects_itself: the connection under
/// `gen` dropped and the library reconnects by itself. What was in flight on
/// it is lost (its replies too) and so is the gateway's subscription.
struct peer_lost {
  uint64_t gen = 0;
};

/// ... and it is back (subscribe again).
struct peer_back {
  uint64_t gen = 0;
};

/// The gateway's answer to the call sent with `key` / `wire_id`, whatever
/// its status. A driver fills in what it can match by: the key (HTTP: one
/// transfer per call) or the wire id (IPC, WebSocket), the other empty.
struct reply {
  uint64_t gen = 0;
  uint64_t key = 0;
  std::string wire_id;
  int32_t status = 0;
  std::string body; ///< the JSON envelope
  std::map<std::string, std::string> headers;
};

/// The call sent with `key` / `wire_id` failed in the driver. With
/// `link_down` the driver says the link is dead too (HTTP: a network error
/// of a request), and the owner takes it down.
struct send_failed {
  uint64_t gen = 0;
  uint64_t key = 0;
  std::string wire_id;
  call_failure kind = call_failure::network;
  std::string reason;
  bool link_down = false;
};

/// A server-pushed event of subscription `sub` (0 for protocols that push
/// on the connection itself).
struct event_frame {
  uint64_t gen = 0;
  uint64_t sub = 0;
  std::string topic;
  std::string data; ///< JSON text
  uint64_t seq = 0;
};

/// The gateway answered subscription `sub`: accepted (`ok`) or refused.
/// `replay_complete`: everything after the `since` it asked for is replayed
/// (false also when the gateway has no replay); the replayed events follow.
struct subscribed {
  uint64_t gen = 0;
  uint64_t sub = 0;
  bool ok = false;
  bool replay_complete = false;
};

/// Only drivers with capabilities().separate_event_stream: the event stream
/// of subscription `sub` ended while the link itself may be fine.
/// `was_open`: it had been accepted (else it failed while opening);
/// `kind` 0 = the server ended it (`status` = its HTTP status), else how it
/// failed.
struct subscription_lost {
  uint64_t gen = 0;
  uint64_t sub = 0;
  bool was_open = false;
  uint8_t kind = 0; ///< 0 or a call_failure
  int32_t status = 0;
  std::string reason;
};

/// A sign of life that is nothing else (a pong, a frame not understood).
/// Every other event from a connection is a sign of life too.
struct pong {
  uint64_t gen = 0;
};

/// Connection `gen` failed its security check (CURVE handshake refused,
/// wrong server key): the link is down with `reason`.
struct security_failure {
  uint64_t gen = 0;
  std::string reason;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, link_up& x) {
  return f(x.gen);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, link_lost& x) {
  return f(x.gen, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_lost& x) {
  return f(x.gen);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_back& x) {
  return f(x.gen);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reply& x) {
  return f(x.gen, x.key, x.wire_id, x.status, x.body, x.headers);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, send_failed& x) {
  auto k = static_cast<uint8_t>(x.kind);
  return f(x.gen, x.key, x.wire_id, k, x.reason, x.link_down);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_frame& x) {
  return f(x.gen, x.sub, x.topic, x.data, x.seq);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, subscribed& x) {
  return f(x.gen, x.sub, x.ok, x.replay_complete);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, subscription_lost& x) {
  return f(x.gen, x.sub, x.was_open, x.kind, x.status, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pong& x) {
  return f(x.gen);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, security_failure& x) {
  return f(x.gen, x.reason);
}

/// Where a driver reports (called on its I/O thread). Every handler must be
/// set by the owner.
struct driver_events {
  std::function<void(link_up&&)> on_link_up;
  std::function<void(link_lost&&)> on_link_lost;
  std::function<void(peer_lost&&)> on_peer_lost;
  std::function<void(peer_back&&)> on_peer_back;
  std::function<void(reply&&)> on_reply;
  std::function<void(send_failed&&)> on_send_failed;
  std::function<void(event_frame&&)> on_event;
  std::function<void(subscribed&&)> on_subscribed;
  std::function<void(subscription_lost&&)> on_subscription_lost;
  std::function<void(pong&&)> on_pong;
  std::function<void(security_failure&&)> on_security_failure;
};

// -- what the owner asks ---------------------------------------------------------

/// One API call to send (docs/protocol.md: the same logical call on every
/// transport).
struct outgoing_call {
  uint64_t key = 0;     ///< the owner's number for it (unique per driver)
  std::string wire_id;  ///< the id it travels with ("" if !uses_wire_ids)
  std::string method;   ///< GET if empty
  std::string path;     ///< relative to /api/v1, with query
  std::string body;     ///< JSON text, may be empty
  std::string token;    ///< bearer token for this call, "" = none
  duration time_left{0}; ///< until the call's absolute deadline (> 0)
};

/// What send() did: queued (the answer is a reply / send_failed event), or
/// answered at once without the gateway (then no event follows).
struct send_result {
  enum class kind : uint8_t {
    queued,
    local_reply, ///< status/body: what the gateway would have answered
    failed,      ///< failure/reason
  };
  kind what = kind::queued;
  /// queued: the driver's own handle of the call (given back to cancel()).
  uint64_t handle = 0;
  int32_t status = 0;
  std::string body;
  call_failure failure = call_failure::unknown;
  std::string reason;

  static send_result queued(uint64_t handle = 0) {
    send_result r;
    r.handle = handle;
    return r;
  }
  static send_result answer(int32_t status, std::string body) {
    send_result r;
    r.what = kind::local_reply;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
  static send_result fail(call_failure f, std::string reason) {
    send_result r;
    r.what = kind::failed;
    r.failure = f;
    r.reason = std::move(reason);
    return r;
  }
};

/// What is different about a protocol, as far as the owner goes.
struct driver_caps {
  /// ping() means something: the owner pings every ping interval and goes
  /// down after the dead-peer timeout of silence.
  bool heartbeat = false;
  /// peer_lost / peer_back are reported: the owner waits up to the
  /// reconnect grace for the library's own reconnect.
  bool reconnects_itself = false;
  /// A call that times out may have wedged the connection (ZeroMQ's Lazy
  /// Pirate): the owner replaces it (open() with a new gen while up) and
  /// fails whatever else was in flight on it.
  bool reset_on_timeout = false;
  /// open(gen, token) subscribes already (the WebSocket upgrade's
  /// Authorization header starts a live subscription); a resume needs one
  /// more subscribe, and the live events before its answer are dropped.
  bool subscribes_on_open = false;
  /// Events come on a separate stream per subscription that can end on its
  /// own (subscription_lost); the owner reopens it a few times.
  bool separate_event_stream = false;
  /// A new token of the same user does not resubscribe (HTTP: the gateway
  /// keeps the stream open while a token merely expires; a reopen is a
  /// switch-over).
  bool refresh_keeps_subscription = false;
  /// Replies are matched by wire id (IPC, WebSocket); else by key.
  bool uses_wire_ids = true;
  /// The driver answers its own timeouts (connect probe, calls); the
  /// owner's deadlines trail them by this, as a safety net.
  duration own_timeout_grace{0};
  /// The server spends a token per connection (the AICO backend revokes
  /// the session of a WebSocket's token when it closes): a refused
  /// subscription asks the engine for a fresh token, once per connection
  /// (the owner forwards an event of topic token_refused_topic).
  bool token_per_connection = false;
  /// With heartbeat: the server needs a ping at least this often (0 = no
  /// limit); the owner pings at the shorter of this and its ping interval.
  duration max_ping_interval{0};
  /// send() and resend_safe() may be called from any thread, also while
  /// the owner calls the other member functions (never with or after
  /// stop()): the owner's call lane then sends calls straight from the
  /// caller's thread (actors/transport_actor.hpp, call_lane).
  bool concurrent_send = false;
};

/// Why the owner's link session says the link is down (for words).
enum class timing_cause : uint8_t { connect_timeout, dead_peer, reconnect_grace };

class driver {
public:
  virtual ~driver() = default;

  /// Short protocol name used in messages ("ipc", "ws", "http").
  virtual const char* name() const = 0;

  virtual driver_caps capabilities() const = 0;

  /// Why this driver cannot connect at all ("" = it can): a bad URL, no
  /// endpoint, an unusable key file, an I/O thread that did not start.
  virtual std::string unusable() const = 0;

  /// Opens connection `gen` (closing the current one first); link_up or
  /// link_lost follows. `token` (may be empty) is the subscription token
  /// for drivers with subscribes_on_open.
  virtual void open(uint64_t gen, const std::string& token) = 0;

  /// Closes the current connection, aborting everything in flight on it (no
  /// events for it follow, or only stale ones).
  virtual void close() = 0;

  /// Sends one call on connection `gen`.
  virtual send_result send(uint64_t gen, outgoing_call call) = 0;

  /// Gives up on the call sent with this handle (send_result::handle; its
  /// deadline passed): no event for it follows.
  virtual void cancel(uint64_t handle) { (void)handle; }

  /// Subscribes to events on connection `gen` with `token`, resuming after
  /// `since` (0 = live only); replaces an earlier subscription. `sub` is the
  /// owner's number for it (subscribed / event_frame / subscription_lost
  /// carry it back).
  virtual void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                         uint64_t since)
    = 0;

  /// Ends the subscription (logged out).
  virtual void unsubscribe(uint64_t gen) = 0;

  /// False if `call`, once sent, must not be sent again when the link goes
  /// away under it (the server has no idempotency key for it, e.g. the AICO
  /// backend's send): the owner then fails it as outcome_unknown instead of
  /// network, so neither failover nor retry re-sends it.
  virtual bool resend_safe(const outgoing_call& call) const {
    (void)call;
    return true;
  }

  /// Sends a liveness ping on `gen` (only called with caps().heartbeat).
  virtual void ping(uint64_t gen) { (void)gen; }

  /// True if `id` is one the driver uses for its own frames (the owner
  /// never gives a call that wire id). Never true for an id starting with
  /// '#' (the owner's fallback for call ids that are taken).
  virtual bool reserved_id(const std::string& id) const {
    (void)id;
    return false;
  }

  /// The sentence for a down the owner's timing decided (e.g. "no answer
  /// from ipc endpoint"); `silence` for dead_peer, `limit` the configured
  /// duration that passed.
  virtual std::string describe(timing_cause c, duration silence,
                               duration limit) const = 0;

  /// Stops the I/O: no handler runs after it returned. Idempotent.
  virtual void stop() = 0;
};

} // namespace aico::transport
