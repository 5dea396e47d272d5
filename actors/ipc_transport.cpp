// aico engine: the IPC transport actor (ZeroMQ DEALER + protobuf frames,
// docs/protocol.md "IPC (ZeroMQ)").
//
// States (messages/transport.hpp): idle -> connecting -> up | down.
// * connect: opens a DEALER on the socket thread and sends a Ping; a Pong
//   within cfg.connect_timeout means up, otherwise down ("no answer from ipc
//   endpoint"). A connection attempt that fails at once (no socket file,
//   refused: the socket monitor's CONNECT_RETRIED) while connecting is down
//   at once too, so a missing gateway fails over in milliseconds.
// * token: kept; while up and non-empty a Subscribe{id, token, since} is sent
//   (again after every new socket); the same token again sends nothing; an
//   empty token unsubscribes. Event frames go to the listener as
//   server_event (via ipc). `since` is the resume point: the last event seq
//   the engine delivered (resume_atom) or this transport forwarded; the
//   Subscribe's response says whether the gateway replayed everything after
//   it, which goes to the listener as an `events.replay` outcome.
// * request: only while up; Frame{request} with a wire id, correlated with
//   the Frame{response} of the same id. A per-request deadline (the time
//   left; one timer for the earliest deadline serves all requests, see
//   src/core/pending_requests.hpp) replies error_class::timeout AND performs
//   the Lazy Pirate reset: the DEALER is closed and a fresh one connected
//   (re-subscribing), and every other request still pending on the old
//   socket fails with network (the supervisor re-sends them by id).
// * heartbeat: a Ping every cfg.ping_interval; nothing received (pong,
//   response, event, anything) for cfg.dead_peer_timeout -> down (socket
//   closed, pending requests fail with network). This is what detects the
//   gateway's `ipc: down` fault (its ROUTER unbinds silently for a DEALER).
// * connection monitor: when the connection under the DEALER drops while up
//   (gateway restart, `ipc: down`), everything pending on it fails with
//   network at once (those replies are lost) and, once libzmq has reconnected
//   by itself, the Subscribe is sent again (the gateway forgot this peer).
//   If libzmq's reconnect is refused (nothing listening any more) the link
//   is down at once; if it is not back within cfg.reconnect_grace, then.
// * disconnect: socket closed, pending requests fail with network, idle.
//
// The link itself (status, connect deadline, heartbeat and dead-peer timing,
// the reconnect grace, the requests in flight and their deadlines, what to
// fail on down) is a src/core/link_session; this actor executes what it says
// with one timer message (timeout_atom) for all of its deadlines, on the
// actor clock (so the test coordinator can drive it).
// The socket thread (src/transport/zmq/dealer_loop) talks back with anon_send
// through a weak address. Sockets are numbered (sock_gen) so whatever is still
// on its way from a closed socket is ignored. No exception leaves a handler;
// the state destructor stops and joins the socket thread.
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <algorithm>

#include <boost/json.hpp>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "src/core/event_cursor.hpp"
#include "src/core/link_session.hpp"
#include "src/core/timer_delay.hpp"
#include "messages/transport.hpp"
#include "src/transport/zmq/dealer_loop.hpp"
#include "src/transport/zmq/ipc_codec.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;

/// Messages the transport sends itself (socket-thread callbacks, timers).
using ipc_transport_internal = caf::typed_actor<
  /// Socket `gen` received a Response (id = the wire id).
  caf::reacts_to<io_atom, uint64_t, api_reply>,
  /// Socket `gen` received an Event.
  caf::reacts_to<io_atom, uint64_t, server_event>,
  /// Socket `gen` received a Pong (nonce).
  caf::reacts_to<io_atom, uint64_t, uint64_t>,
  /// Socket `gen` received something else (still a sign of life).
  caf::reacts_to<io_atom, uint64_t>,
  /// The send tagged with a request key failed on socket `gen`.
  caf::reacts_to<io_atom, uint64_t, uint64_t, std::string>,
  /// Socket `gen` failed (could not open, receive error).
  caf::reacts_to<io_atom, uint64_t, std::string>,
  /// Socket `gen` connected (true) or lost its connection (false).
  caf::reacts_to<io_atom, uint64_t, bool>,
  /// A connection attempt of socket `gen` failed at once (nothing bound).
  caf::reacts_to<probe_atom, uint64_t, bool>,
  /// The link's one timer: a deadline (connect, ping, dead peer, reconnect
  /// grace, request) may have passed.
  caf::reacts_to<timeout_atom>>;

using ipc_transport_impl
  = transport_actor::extend_with<ipc_transport_internal>;

/// A request in flight; its wire id (normally the call id), deadline and
/// socket (generation = sock_gen) are kept by the link session.
struct pending_request {
  caf::typed_response_promise<api_reply> rp;
  std::string call_id; ///< api_call id (the reply carries it)
};

using time_point = caf::actor_clock::time_point;

struct ipc_transport_state {
  ipc_transport_config cfg;
  std::string setup_error; ///< the CURVE key file could not be used
  transport_listener_actor listener;
  /// The link: status, deadlines, the requests in flight (by key and by
  /// wire id, with the socket they were sent on).
  link_session<pending_request> link{link_timing{}};
  std::string token;

  uint64_t sock_gen = 0; ///< number of the current socket (0 = none)
  uint64_t next_key = 1;
  uint64_t next_nonce = 1;
  uint64_t next_control = 1;

  /// Ids of Subscribe/Unsubscribe frames in flight on the current socket,
  /// with the `since` a Subscribe asked for.
  std::unordered_map<std::string, uint64_t> control_ids;
  bool subscribed = false; ///< a Subscribe was sent on the current socket
  /// Events up to this seq were delivered: subscriptions resume from it.
  uint64_t resume_seq = 0;
  /// CONNECT_RETRIED events since the loss: libzmq reports one when it arms
  /// its reconnect timer, so the second means a reconnect attempt failed.
  int retries_since_loss = 0;

  /// Last member: destroyed first. Stops and joins the socket thread.
  std::unique_ptr<ipc_link::dealer_loop> loop;

  ipc_transport_state() = default;
  ipc_transport_state(const ipc_transport_state&) = delete;
  ipc_transport_state& operator=(const ipc_transport_state&) = delete;

  ~ipc_transport_state() {
    try {
      if (loop) {
        loop->stop();
        loop.reset();
      }
    } catch (...) {
      // never throw from a destructor
    }
  }

  static constexpr const char* name = "aico.ipc-transport";
};

using self_ptr = ipc_transport_impl::stateful_pointer<ipc_transport_state>;

int64_t to_ms(caf::timespan d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

/// Sends to the transport from the socket thread through its weak address.
template <class... Ts>
void post_back(const caf::actor_addr& addr, Ts&&... xs) {
  if (auto hdl = caf::actor_cast<ipc_transport_impl>(addr))
    caf::anon_send(hdl, std::forward<Ts>(xs)...);
}

ipc_link::loop_handlers make_handlers(const caf::actor_addr& addr) {
  ipc_link::loop_handlers h;
  h.on_frame = [addr](uint64_t gen, ipc_link::decoded_frame&& f) {
    switch (f.kind) {
      case ipc_link::frame_kind::response: {
        api_reply r;
        r.id = std::move(f.response.id);
        r.status = f.response.status;
        r.body = std::move(f.response.body);
        r.headers = std::move(f.response.headers);
        r.via = transport_mode::ipc;
        post_back(addr, io_atom_v, gen, std::move(r));
        break;
      }
      case ipc_link::frame_kind::event: {
        server_event ev;
        ev.topic = std::move(f.event.topic);
        ev.data = std::move(f.event.data);
        ev.seq = f.event.seq;
        ev.via = transport_mode::ipc;
        post_back(addr, io_atom_v, gen, std::move(ev));
        break;
      }
      case ipc_link::frame_kind::pong:
        post_back(addr, io_atom_v, gen, f.ping.nonce);
        break;
      default:
        post_back(addr, io_atom_v, gen);
        break;
    }
  };
  h.on_send_failed = [addr](uint64_t gen, uint64_t tag,
                            const std::string& why) {
    post_back(addr, io_atom_v, gen, tag, why);
  };
  h.on_socket_error = [addr](uint64_t gen, const std::string& why) {
    post_back(addr, io_atom_v, gen, why);
  };
  // A failed CURVE handshake (refused client key, wrong server key pinned)
  // is the link's down reason, as a socket error.
  h.on_security_failure = [addr](uint64_t gen, const std::string& why) {
    post_back(addr, io_atom_v, gen, why);
  };
  h.on_link = [addr](uint64_t gen, bool connected) {
    post_back(addr, io_atom_v, gen, connected);
  };
  h.on_connect_failed = [addr](uint64_t gen) {
    post_back(addr, probe_atom_v, gen, false);
  };
  return h;
}

link_timing timing_of(const ipc_transport_config& cfg) {
  link_timing t;
  t.connect_timeout = cfg.connect_timeout;
  t.ping_interval = cfg.ping_interval;
  t.dead_peer_timeout = cfg.dead_peer_timeout;
  t.reconnect_grace = cfg.reconnect_grace;
  return t;
}

/// Schedules the link's one timer if its next deadline needs it.
void arm_timer(self_ptr self) {
  if (auto d = self->state.link.arm(self->clock().now()))
    self->delayed_send(self, *d, timeout_atom_v);
}

void report(self_ptr self, transport_status s, std::string reason = {}) {
  auto& st = self->state;
  if (st.listener)
    self->send(st.listener, tstate_atom_v, transport_mode::ipc, s,
               std::move(reason));
}

bool id_in_use(const ipc_transport_state& st, const std::string& id) {
  return st.link.has_wire_id(id) || st.control_ids.count(id) > 0;
}

/// The id a request travels with: its own id unless that is empty or taken.
std::string wire_id_for(const ipc_transport_state& st, const std::string& id,
                        uint64_t key) {
  if (!id.empty() && !id_in_use(st, id))
    return id;
  std::string candidate = id + "#ipc" + std::to_string(key);
  while (id_in_use(st, candidate))
    candidate += "_";
  return candidate;
}

std::string fresh_control_id(ipc_transport_state& st) {
  std::string id;
  do {
    id = "ipc-ctl-" + std::to_string(st.next_control++);
  } while (id_in_use(st, id));
  return id;
}

void send_ping(self_ptr self) {
  auto& st = self->state;
  if (!st.loop || st.sock_gen == 0)
    return;
  auto bytes = ipc_link::encode_ping(st.next_nonce++, now_ms());
  if (!bytes.empty())
    st.loop->send(st.sock_gen, 0, std::move(bytes));
}

void send_subscribe(self_ptr self) {
  auto& st = self->state;
  if (!st.loop || st.sock_gen == 0 || st.token.empty())
    return;
  auto id = fresh_control_id(st);
  auto bytes = ipc_link::encode_subscribe(id, st.token, st.resume_seq);
  if (bytes.empty())
    return;
  st.control_ids.emplace(id, st.resume_seq);
  st.loop->send(st.sock_gen, 0, std::move(bytes));
  st.subscribed = true;
}

void send_unsubscribe(self_ptr self) {
  auto& st = self->state;
  st.subscribed = false;
  if (!st.loop || st.sock_gen == 0)
    return;
  auto id = fresh_control_id(st);
  auto bytes = ipc_link::encode_unsubscribe(id);
  if (bytes.empty())
    return;
  st.control_ids.emplace(id, 0);
  st.loop->send(st.sock_gen, 0, std::move(bytes));
}

/// Fails these requests with `err`.
template <class Entries>
void fail_all(Entries&& entries, const caf::error& err) {
  for (auto& e : entries)
    e.payload.rp.deliver(err);
}

/// Connects a fresh DEALER (closing the current one first).
void open_socket(self_ptr self) {
  auto& st = self->state;
  st.sock_gen = st.sock_gen + 1;
  st.control_ids.clear();
  st.subscribed = false;
  st.loop->open(st.sock_gen, st.cfg.endpoint);
}

/// Closes the socket; whatever is still on its way from it is stale.
void close_socket(self_ptr self) {
  auto& st = self->state;
  ++st.sock_gen;
  st.control_ids.clear();
  st.subscribed = false;
  if (st.loop)
    st.loop->close();
}

/// The link is dead: down until the supervisor connects again.
void go_down(self_ptr self, const std::string& reason) {
  auto failed = self->state.link.go_down();
  if (!failed)
    return; // not live: down was reported already
  close_socket(self);
  fail_all(*failed, make_engine_error(error_class::network,
                                      "ipc transport down: " + reason));
  report(self, transport_status::down, reason);
}

caf::error socket_reset_error() {
  return make_engine_error(error_class::network,
                           "ipc socket reset after a lost reply; re-send");
}

/// Lazy Pirate: a reply was lost, so the socket may be wedged. Close it and
/// connect a new one; everything still pending on it fails with network.
/// False if there was nothing to reset (not up).
bool reset_socket(self_ptr self) {
  auto& st = self->state;
  if (!st.link.up() || !st.loop)
    return false;
  fail_all(st.link.drop_calls(), socket_reset_error());
  open_socket(self);
  send_ping(self);
  if (!st.token.empty())
    send_subscribe(self);
  return true;
}

/// Something arrived on the current socket.
void on_alive(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  st.link.received(now);
  if (!st.link.established(now))
    return;
  report(self, transport_status::up);
  if (!st.token.empty())
    send_subscribe(self);
  arm_timer(self); // heartbeat and dead-peer deadlines
}

/// What the gateway replayed for a Subscribe with `since` (its 200
/// response's data.replay; absent = a gateway without replay).
bool replay_complete(const std::string& body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_object())
    return false;
  auto d = v.get_object().if_contains("data");
  if (!d || !d->is_object())
    return false;
  auto rep = d->get_object().if_contains("replay");
  if (!rep || !rep->is_object())
    return false;
  auto c = rep->get_object().if_contains("complete");
  return c && c->is_bool() && c->get_bool();
}

void on_response(self_ptr self, api_reply& r) {
  auto& st = self->state;
  auto ci = st.control_ids.find(r.id);
  if (ci != st.control_ids.end()) {
    auto since = ci->second;
    st.control_ids.erase(ci);
    // A rejected Subscribe ends the subscription (no events until a new
    // token arrives); nothing else to do.
    if (r.status != 200) {
      st.subscribed = false;
      return;
    }
    // the replayed events follow this response: the outcome goes first
    if (since > 0 && st.listener && st.link.up())
      self->send(st.listener, event_atom_v,
                 replay_outcome_event(since, replay_complete(r.body),
                                      transport_mode::ipc));
    return;
  }
  auto e = st.link.answer_wire_id(r.id);
  if (!e)
    return; // timed out already, bad_frame (id "") or unknown
  auto& p = e->payload;
  r.id = std::move(p.call_id);
  r.via = transport_mode::ipc;
  p.rp.deliver(std::move(r));
}

// -- behavior --------------------------------------------------------------------

ipc_transport_impl::behavior_type
ipc_transport_fun(self_ptr self, ipc_transport_config cfg,
                  transport_listener_actor listener) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.listener = std::move(listener);
  st.link = link_session<pending_request>{timing_of(st.cfg)};
  try {
    ipc_link::socket_options so;
    // Reconnect quickly: the transport itself never waits longer than
    // connect_timeout for the first Pong, and a lost link is declared down
    // at the first refused reconnect, which libzmq makes after this interval
    // plus a random 0-100 % of it (so 30-60 ms; it doubles up to the max
    // while refused).
    so.reconnect_ivl = 30ms;
    so.reconnect_ivl_max = 1000ms;
    so.sndhwm = 1000;
    so.rcvhwm = 10000;
    // CurveZMQ: pin the gateway's key; this client's pair from its key file
    // (made on first use) unless given directly.
    so.curve_server_key = st.cfg.curve_server_key;
    so.curve_public_key = st.cfg.curve_public_key;
    so.curve_secret_key = st.cfg.curve_secret_key;
    if (!so.curve_server_key.empty() && so.curve_public_key.empty()
        && !st.cfg.curve_key_file.empty()) {
      ipc_link::curve_keys keys;
      std::string err;
      if (ipc_link::load_or_create_client_keys(st.cfg.curve_key_file, keys,
                                               err)) {
        so.curve_public_key = keys.public_key;
        so.curve_secret_key = keys.secret_key;
      } else {
        st.setup_error = "ipc CURVE: " + err;
      }
    }
    st.loop = std::make_unique<ipc_link::dealer_loop>(
      so, make_handlers(self->address()));
  } catch (...) {
    st.loop.reset(); // connect reports down
  }
  // Fail what is pending before going away (the default handler would quit
  // without delivering the promises).
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (!em.reason)
      return; // like the default handler: a normal exit of a link is ignored
    try {
      fail_all(self->state.link.stop(),
               make_engine_error(error_class::network,
                                 "ipc transport stopped"));
    } catch (...) {
      // quitting anyway
    }
    self->quit(em.reason);
  });
  return {
    // -- public interface ------------------------------------------------------
    [self](connect_atom) {
      auto& st = self->state;
      if (st.link.status() == transport_status::connecting)
        return; // up or down follows
      if (st.link.up()) {
        report(self, transport_status::up); // tell the caller again
        return;
      }
      try {
        if (!st.loop) {
          report(self, transport_status::down,
                 "ipc transport: no socket thread");
          return;
        }
        if (st.cfg.endpoint.empty()) {
          report(self, transport_status::down, "no ipc endpoint configured");
          return;
        }
        if (!st.setup_error.empty()) {
          report(self, transport_status::down, st.setup_error);
          return;
        }
        st.link.connect(self->clock().now());
        report(self, transport_status::connecting);
        open_socket(self);
        send_ping(self);
        arm_timer(self); // the connect deadline
      } catch (const std::exception& e) {
        go_down(self, std::string{"ipc transport: "} + e.what());
      } catch (...) {
        go_down(self, "ipc transport: internal error");
      }
    },
    [self](disconnect_atom) {
      auto& st = self->state;
      try {
        auto failed = st.link.stop();
        close_socket(self);
        fail_all(failed, make_engine_error(error_class::network,
                                           "ipc transport disconnected"));
        report(self, transport_status::idle);
      } catch (...) {
        // idle already (the link session moved first)
      }
    },
    [self](token_atom, std::string& tok) {
      auto& st = self->state;
      try {
        if (tok == st.token && (st.subscribed || tok.empty()))
          return; // subscribed with it already (or in flight)
        st.token = std::move(tok);
        if (st.token.empty())
          st.resume_seq = 0; // logged out: the next session starts afresh
        if (!st.link.up())
          return; // subscribed once up
        if (!st.token.empty())
          send_subscribe(self); // also replaces an earlier subscription
        else if (st.subscribed)
          send_unsubscribe(self);
      } catch (...) {
        // no events; the next token or reconnect tries again
      }
    },
    [self](resume_atom, uint64_t seq, bool now) {
      auto& st = self->state;
      try {
        if (!now) {
          st.resume_seq = std::max(st.resume_seq, seq);
          return;
        }
        st.resume_seq = seq;
        if (st.link.up() && st.subscribed
            && !st.token.empty())
          send_subscribe(self); // replaces the subscription, replaying
      } catch (...) {
      }
    },
    [self](request_atom, api_call& call,
           caf::timespan left) -> caf::result<api_reply> {
      auto& st = self->state;
      if (!st.link.up() || !st.loop || st.sock_gen == 0)
        return make_engine_error(error_class::network,
                                 "ipc transport not connected");
      if (left <= caf::timespan{0})
        return make_engine_error(error_class::timeout,
                                 "no time left for the ipc request");
      try {
        auto key = st.next_key++;
        auto deadline = deadline_of(call, self->clock().now(),
                                    clamp_delay(left));
        ipc_link::wire_request wr;
        wr.id = wire_id_for(st, call.id, key);
        wr.method = call.method.empty() ? std::string{"GET"} : call.method;
        wr.path = std::move(call.path);
        wr.token = std::move(call.token);
        wr.body = std::move(call.body);
        auto bytes = ipc_link::encode_request(wr);
        if (bytes.empty())
          return make_engine_error(error_class::unknown,
                                   "ipc transport: cannot encode request");
        auto rp = self->make_response_promise<api_reply>();
        if (!st.link.add_call(key, deadline,
                              pending_request{rp, std::move(call.id)},
                              std::move(wr.id), st.sock_gen)) {
          rp.deliver(make_engine_error(error_class::unknown,
                                       "ipc transport: request id in use"));
          return rp;
        }
        st.loop->send(st.sock_gen, key, std::move(bytes));
        arm_timer(self);
        return rp;
      } catch (const std::exception& e) {
        return make_engine_error(error_class::unknown,
                                 std::string{"ipc transport: "} + e.what());
      } catch (...) {
        return make_engine_error(error_class::unknown,
                                 "ipc transport: internal error");
      }
    },
    // -- from the socket thread ------------------------------------------------
    [self](io_atom, uint64_t gen, api_reply& r) {
      if (gen != self->state.sock_gen)
        return;
      try {
        on_alive(self);
        on_response(self, r);
      } catch (...) {
        // the request's timer answers it
      }
    },
    [self](io_atom, uint64_t gen, server_event& ev) {
      auto& st = self->state;
      if (gen != st.sock_gen)
        return;
      try {
        on_alive(self);
        if (st.link.up() && st.listener) {
          ev.via = transport_mode::ipc;
          st.resume_seq = std::max(st.resume_seq, ev.seq);
          self->send(st.listener, event_atom_v, std::move(ev));
        }
      } catch (...) {
      }
    },
    [self](io_atom, uint64_t gen, uint64_t) {
      if (gen != self->state.sock_gen)
        return;
      try {
        on_alive(self); // a Pong: the first one makes the link up
      } catch (...) {
      }
    },
    [self](io_atom, uint64_t gen) {
      if (gen != self->state.sock_gen)
        return;
      try {
        on_alive(self);
      } catch (...) {
      }
    },
    [self](io_atom, uint64_t gen, uint64_t key, std::string& why) {
      auto& st = self->state;
      if (gen != st.sock_gen || key == 0)
        return;
      try {
        if (auto e = st.link.answer(key))
          e->payload.rp.deliver(make_engine_error(error_class::network, why));
      } catch (...) {
      }
    },
    [self](io_atom, uint64_t gen, std::string& why) {
      if (gen != self->state.sock_gen)
        return;
      try {
        go_down(self, why);
      } catch (...) {
      }
    },
    [self](io_atom, uint64_t gen, bool connected) {
      auto& st = self->state;
      if (gen != st.sock_gen || !st.link.up())
        return; // while connecting, the Pong decides
      try {
        if (!connected) {
          // The connection under the socket dropped (gateway restart, ipc
          // down, oversized frame). libzmq reconnects by itself, but what was
          // on the old connection is lost: its replies and the gateway's
          // subscription for this peer. Without a reconnect within the
          // grace period the link is down (a vanished endpoint would
          // otherwise only be noticed at the dead-peer timeout, while new
          // requests wait for a peer that is not coming back).
          fail_all(st.link.drop_calls(),
                   make_engine_error(error_class::network,
                                     "ipc connection lost"));
          st.control_ids.clear();
          st.subscribed = false;
          st.link.lose_peer(self->clock().now());
          st.retries_since_loss = 0;
          arm_timer(self); // the reconnect grace
          return;
        }
        st.link.peer_back();
        // (re)connected: subscribe again if the subscription was lost
        if (!st.token.empty() && !st.subscribed)
          send_subscribe(self);
        send_ping(self);
      } catch (...) {
      }
    },
    [self](probe_atom, uint64_t gen, bool) {
      auto& st = self->state;
      if (gen != st.sock_gen)
        return;
      try {
        // A first connect fails over at once: nothing is bound to the
        // endpoint (no socket file, refused), so waiting for connect_timeout
        // would only delay trying the next transport.
        if (st.link.status() == transport_status::connecting) {
          go_down(self, "cannot connect to " + st.cfg.endpoint
                          + ": nothing is listening there");
          return;
        }
        // A lost link: libzmq's first CONNECT_RETRIED only arms its
        // reconnect timer; the second says the reconnect was refused, so
        // the endpoint is gone (ipc down, gateway stopped) and waiting out
        // the rest of the grace would only delay the failover. A reconnect
        // that neither succeeds nor fails is the grace timer's business.
        if (st.link.up() && st.link.peer_lost()
            && ++st.retries_since_loss >= 2)
          go_down(self, "ipc connection lost: cannot reconnect to "
                          + st.cfg.endpoint + ", nothing is listening there");
      } catch (...) {
      }
    },
    // -- timer ------------------------------------------------------------------
    [self](timeout_atom) {
      auto& st = self->state;
      try {
        auto r = st.link.on_timer(self->clock().now());
        // Earliest deadline first, as separate timers would have fired.
        bool was_reset = false;
        for (auto& e : r.expired) {
          try {
            if (was_reset) {
              // the reset failed everything still pending on the old
              // socket, these included
              e.payload.rp.deliver(socket_reset_error());
              continue;
            }
            e.payload.rp.deliver(make_engine_error(error_class::timeout,
                                                   "ipc request timed out"));
            // Lazy Pirate: never keep using a socket that lost a reply.
            if (e.generation == st.sock_gen)
              was_reset = reset_socket(self);
          } catch (...) {
          }
        }
        switch (r.down) {
          case link_down_cause::connect_timeout:
            go_down(self, "no answer from ipc endpoint");
            break;
          case link_down_cause::dead_peer:
            go_down(self, "ipc peer silent for "
                            + std::to_string(to_ms(r.silence)) + " ms");
            break;
          case link_down_cause::reconnect_grace:
            go_down(self, "ipc connection lost and not back within "
                            + std::to_string(to_ms(st.cfg.reconnect_grace))
                            + " ms");
            break;
          case link_down_cause::none:
            if (r.send_ping)
              send_ping(self);
            break;
        }
      } catch (...) {
      }
      try {
        arm_timer(self); // for the next deadline
      } catch (...) {
      }
    },
  };
}

} // namespace

transport_actor spawn_ipc_transport(caf::actor_system& sys,
                                    ipc_transport_config cfg,
                                    transport_listener_actor listener) {
  auto hdl = sys.spawn(ipc_transport_fun, std::move(cfg), std::move(listener));
  return caf::actor_cast<transport_actor>(hdl);
}

} // namespace aico
