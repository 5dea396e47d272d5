// aico engine: the WebSocket transport actor (libwebsockets client, JSON text
// frames, docs/protocol.md "WebSocket frames").
//
// States (messages/transport.hpp): idle -> connecting -> up | down.
// * connect: opens a connection on the service thread to cfg.url; the token
//   set with `token` (if any) goes into the upgrade's Authorization header.
//   The handshake completing means up; a failed connect or a refused upgrade
//   (e.g. "HTTP 401", "HTTP 503") means down with that reason; no handshake
//   within cfg.connect_timeout means down too.
// * token: kept. While up, a token different from the one the connection
//   uses is sent as an auth frame ({"type":"auth"}). auth_ok / error answers
//   are only noted (a failed auth leaves the connection as it was: no
//   events). Events are forwarded to the listener only while a token is set
//   ("empty = no events").
// * resume: every auth frame carries `since` = the last event seq the
//   engine delivered (resume_atom) or this transport forwarded, and a new
//   connection sends one at once when there is such a seq, so the gateway
//   replays what came after it (the upgrade's own subscription starts
//   live). Its auth_ok says whether everything was replayed; that goes to
//   the listener as an `events.replay` outcome before the replayed events.
// * request: only while up. {"type":"request","id","method","path","body"}
//   (body = the call's JSON, absent when empty); a call token that differs
//   from the connection's is sent as an auth frame first (the gateway
//   handles frames in order). Responses are matched by id (they may come
//   back in any order). A per-request deadline (the time left) answers with
//   error_class::timeout; the link stays up. One timer for the earliest
//   deadline serves all requests (src/core/pending_requests.hpp).
// * heartbeat: {"type":"ping","id":"hb-N"} every cfg.ping_interval (at most
//   half the dead-peer timeout); nothing received at all for
//   cfg.dead_peer_timeout -> the peer is dead: closed, pending requests fail
//   with network, down.
// * closed by the peer (drop_ws, ws down, gateway stop, ...): pending
//   requests fail with network, down with the close code and reason.
// * disconnect: closed, pending requests fail with network, idle.
//
// The link itself (status, generation, connect deadline, heartbeat and
// dead-peer timing, the requests in flight and their deadlines, what to fail
// on down) is a src/core/link_session; this actor only executes what it says,
// with one timer message (timeout_atom) for all of its deadlines and the
// actor clock (so the test coordinator can drive it).
// The service thread (src/transport/lws/ws_loop, shared by every WebSocket
// transport of the process) talks back with anon_send through a weak
// address. Connections are numbered (the link generation, bumped on every
// connect/down/disconnect) so whatever still arrives from an old connection
// is ignored. No exception leaves a handler; the state
// destructor stops the loop (its connection closed and detached from the
// service thread; the last loop of the process joins that thread). Tokens
// never appear in a reason or error message.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "caf/all.hpp"

#include "messages/errors.hpp"
#include "src/core/event_cursor.hpp"
#include "src/core/link_session.hpp"
#include "src/core/timer_delay.hpp"
#include "messages/transport.hpp"
#include "src/core/log_line.hpp"
#include "src/transport/lws/ws_codec.hpp"
#include "src/transport/lws/ws_loop.hpp"

namespace aico {

namespace {

using namespace std::chrono_literals;

/// Frames over this size make the gateway close the connection (1009).
constexpr std::size_t max_frame_bytes = 1024u * 1024u;

/// Messages the transport sends itself (service-thread callbacks, timers).
using ws_transport_internal = caf::typed_actor<
  /// Connection `gen` is established.
  caf::reacts_to<io_atom, uint64_t>,
  /// Connection `gen` received a text message.
  caf::reacts_to<io_atom, uint64_t, std::string>,
  /// Connection `gen` failed or was closed (status down, reason).
  caf::reacts_to<io_atom, uint64_t, transport_status, std::string>,
  /// The link's one timer: a deadline (connect, ping, dead peer, request)
  /// may have passed.
  caf::reacts_to<timeout_atom>>;

using ws_transport_impl = transport_actor::extend_with<ws_transport_internal>;

/// A request in flight; its wire id (normally the call id) and deadline
/// are kept by the link session.
struct pending_request {
  caf::typed_response_promise<api_reply> rp;
  std::string call_id; ///< api_call id (the reply carries it)
};

using time_point = caf::actor_clock::time_point;

struct ws_transport_state {
  ws_transport_config cfg;
  transport_listener_actor listener;
  /// The link: status, generation (= connection number), deadlines and the
  /// requests in flight.
  link_session<pending_request> link{link_timing{}};

  bool url_ok = false;
  std::string url_error;
  ws_link::ws_url url;

  /// The token set with token_atom (events; upgrade header).
  std::string token;
  /// The token the gateway uses for the next frame we send, as far as we
  /// know (upgrade header, then the last auth frame sent).
  std::string conn_token;
  /// The token the gateway confirmed (upgrade or auth_ok).
  std::string confirmed_token;
  /// The last auth frame was rejected (its code, e.g. "token_expired").
  std::string auth_error;

  uint64_t next_key = 1;
  uint64_t next_ping = 1;
  uint64_t next_auth = 1;

  /// Auth frames in flight on the current connection: id -> token, since.
  std::unordered_map<std::string, std::pair<std::string, uint64_t>> auth_ids;
  /// Events up to this seq were delivered: subscriptions resume from it.
  uint64_t resume_seq = 0;
  /// The auth frame that resumes a new connection's subscription (its id),
  /// "" when none is outstanding. Until it is answered, events of the
  /// upgrade's own (live) subscription are dropped: they are replayed after
  /// `since` anyway, and forwarding them first would move the engine past
  /// a gap a gateway without replay leaves.
  std::string resume_auth_id;

  /// Last member: destroyed first. Stopped in the destructor: no callback
  /// reaches this actor afterwards.
  std::unique_ptr<ws_link::ws_loop> loop;

  ws_transport_state() = default;
  ws_transport_state(const ws_transport_state&) = delete;
  ws_transport_state& operator=(const ws_transport_state&) = delete;

  ~ws_transport_state() {
    try {
      if (loop) {
        loop->stop();
        loop.reset();
      }
    } catch (...) {
      // never throw from a destructor
    }
  }

  static constexpr const char* name = "aico.ws-transport";
};

using self_ptr = ws_transport_impl::stateful_pointer<ws_transport_state>;

int64_t to_ms(caf::timespan d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Sends to the transport from the service thread through its weak address.
template <class... Ts>
void post_back(const caf::actor_addr& addr, Ts&&... xs) {
  if (auto hdl = caf::actor_cast<ws_transport_impl>(addr))
    caf::anon_send(hdl, std::forward<Ts>(xs)...);
}

ws_link::loop_handlers make_handlers(const caf::actor_addr& addr) {
  ws_link::loop_handlers h;
  h.on_open = [addr](uint64_t gen) { post_back(addr, io_atom_v, gen); };
  h.on_message = [addr](uint64_t gen, std::string&& text) {
    post_back(addr, io_atom_v, gen, std::move(text));
  };
  h.on_closed = [addr](uint64_t gen, const std::string& reason) {
    post_back(addr, io_atom_v, gen, transport_status::down, reason);
  };
  h.on_warning = [](uint64_t, const std::string& w) {
    log_line("aico: ws: " + w);
  };
  return h;
}

link_timing timing_of(const ws_transport_config& cfg) {
  link_timing t;
  t.connect_timeout = cfg.connect_timeout;
  t.ping_interval = cfg.ping_interval;
  t.dead_peer_timeout = cfg.dead_peer_timeout;
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
    self->send(st.listener, tstate_atom_v, transport_mode::ws, s,
               std::move(reason));
}

/// Fails these requests with `err`.
template <class Entries>
void fail_all(Entries&& entries, const caf::error& err) {
  for (auto& e : entries)
    e.payload.rp.deliver(err);
}

/// Closes the current connection (the link session has moved to a new
/// generation: whatever still comes from it is stale).
void close_connection(self_ptr self) {
  auto& st = self->state;
  st.auth_ids.clear();
  st.resume_auth_id.clear();
  if (st.loop)
    st.loop->close();
}

/// The link is dead: down until the supervisor connects again.
void go_down(self_ptr self, const std::string& reason) {
  auto failed = self->state.link.go_down();
  if (!failed)
    return; // not live: down was reported already
  close_connection(self);
  fail_all(*failed, make_engine_error(error_class::network,
                                      "ws transport down: " + reason));
  report(self, transport_status::down, reason);
}

/// Sends an auth frame with `tok` on the current connection; its id ("" if
/// none was sent).
std::string send_auth(self_ptr self, const std::string& tok) {
  auto& st = self->state;
  if (!st.loop || tok.empty())
    return {};
  std::string id = "auth-" + std::to_string(st.next_auth++);
  st.loop->send(st.link.generation(), ws_link::encode_auth(id, tok, st.resume_seq));
  st.auth_ids.emplace(id, std::make_pair(tok, st.resume_seq));
  st.conn_token = tok;
  return id;
}

void send_ping(self_ptr self) {
  auto& st = self->state;
  if (!st.loop)
    return;
  st.loop->send(st.link.generation(),
                ws_link::encode_ping("hb-" + std::to_string(st.next_ping++)));
}

bool id_in_use(const ws_transport_state& st, const std::string& id) {
  return st.link.has_wire_id(id) || st.auth_ids.count(id) > 0;
}

/// The id a request travels with: its own id unless that is empty or taken.
std::string wire_id_for(const ws_transport_state& st, const std::string& id,
                        uint64_t key) {
  if (!id.empty() && !id_in_use(st, id))
    return id;
  std::string candidate = id + "#ws" + std::to_string(key);
  while (id_in_use(st, candidate))
    candidate += "_";
  return candidate;
}

/// A reply made here for a call the gateway would reject the same way (so
/// the answer does not depend on the transport).
api_reply local_reply(const std::string& id, int32_t status,
                      const std::string& code, const std::string& message) {
  api_reply r;
  r.id = id;
  r.status = status;
  r.body = ws_link::error_envelope(code, message);
  r.via = transport_mode::ws;
  return r;
}

void on_frame(self_ptr self, const std::string& text) {
  auto& st = self->state;
  auto f = ws_link::decode_frame(text);
  switch (f.kind) {
    case ws_link::frame_kind::response: {
      auto e = st.link.answer_wire_id(f.id);
      if (!e)
        return; // timed out already, or unknown
      auto& p = e->payload;
      api_reply r;
      r.id = std::move(p.call_id);
      r.status = f.status;
      r.body = std::move(f.body);
      r.headers = std::move(f.headers);
      r.via = transport_mode::ws;
      p.rp.deliver(std::move(r));
      return;
    }
    case ws_link::frame_kind::event: {
      if (!st.link.up() || st.token.empty()
          || !st.listener)
        return; // "empty token = no events"
      if (!st.resume_auth_id.empty())
        return; // before the resumed subscription (see resume_auth_id)
      server_event ev;
      ev.topic = std::move(f.topic);
      ev.data = std::move(f.data);
      ev.seq = f.seq;
      ev.via = transport_mode::ws;
      st.resume_seq = std::max(st.resume_seq, ev.seq);
      self->send(st.listener, event_atom_v, std::move(ev));
      return;
    }
    case ws_link::frame_kind::auth_ok: {
      auto i = st.auth_ids.find(f.id);
      if (i == st.auth_ids.end())
        return;
      auto since = i->second.second;
      st.confirmed_token = std::move(i->second.first);
      st.auth_ids.erase(i);
      st.auth_error.clear();
      if (f.id == st.resume_auth_id)
        st.resume_auth_id.clear();
      // the replayed events follow this frame: the outcome goes first
      if (since > 0 && st.listener && !st.token.empty())
        self->send(st.listener, event_atom_v,
                   replay_outcome_event(since,
                                        f.has_replay && f.replay_complete,
                                        transport_mode::ws));
      return;
    }
    case ws_link::frame_kind::error: {
      auto i = st.auth_ids.find(f.id);
      if (i != st.auth_ids.end()) {
        // A rejected auth leaves the connection as it was (no events if it
        // was not authenticated). Just note it.
        if (st.conn_token == i->second.first)
          st.conn_token = st.confirmed_token;
        if (f.id == st.resume_auth_id) {
          // not resumed: what was dropped meanwhile is a gap
          st.resume_auth_id.clear();
          if (st.listener && !st.token.empty())
            self->send(st.listener, event_atom_v,
                       replay_outcome_event(i->second.second, false,
                                            transport_mode::ws));
        }
        st.auth_ids.erase(i);
        st.auth_error = f.code.empty() ? std::string{"auth rejected"}
                                       : f.code;
        return;
      }
      if (f.id.empty())
        return;
      if (auto e = st.link.answer_wire_id(f.id)) {
        // the gateway did not understand the request frame
        auto status = f.status != 0 ? f.status : 400;
        auto code = f.code.empty() ? std::string{"bad_frame"} : f.code;
        e->payload.rp.deliver(
          local_reply(e->payload.call_id, status, code, f.message));
      }
      return;
    }
    default:
      return; // pong, unknown or invalid: only a sign of life
  }
}

// -- behavior --------------------------------------------------------------------

ws_transport_impl::behavior_type
ws_transport_fun(self_ptr self, ws_transport_config cfg,
                 transport_listener_actor listener) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.listener = std::move(listener);
  st.link = link_session<pending_request>{timing_of(st.cfg)};
  st.url_ok = ws_link::parse_url(st.cfg.url, st.url, st.url_error);
  try {
    ws_link::loop_options lo;
    lo.tls = st.url_ok && st.url.tls;
    if (lo.tls)
      lo.tls_config = st.cfg.tls;
    st.loop = std::make_unique<ws_link::ws_loop>(
      lo, make_handlers(self->address()));
  } catch (const std::exception& e) {
    st.loop.reset(); // connect reports down
    st.url_error = std::string{"ws transport: "} + e.what();
  } catch (...) {
    st.loop.reset();
    st.url_error = "ws transport: cannot start the service thread";
  }
  // Fail what is pending before going away (the default handler would quit
  // without delivering the promises).
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (!em.reason)
      return; // like the default handler: a normal exit of a link is ignored
    try {
      fail_all(self->state.link.stop(),
               make_engine_error(error_class::network,
                                 "ws transport stopped"));
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
                 st.url_error.empty() ? "ws transport: no service thread"
                                      : st.url_error);
          return;
        }
        if (!st.url_ok) {
          report(self, transport_status::down, st.url_error);
          return;
        }
        st.link.connect(self->clock().now());
        st.auth_ids.clear();
        st.conn_token = st.token;
        st.confirmed_token.clear();
        st.auth_error.clear();
        report(self, transport_status::connecting);
        st.loop->open(st.link.generation(), st.url, st.token);
        arm_timer(self); // the connect deadline
      } catch (const std::exception& e) {
        go_down(self, std::string{"ws transport: "} + e.what());
      } catch (...) {
        go_down(self, "ws transport: internal error");
      }
    },
    [self](disconnect_atom) {
      auto& st = self->state;
      try {
        auto failed = st.link.stop();
        close_connection(self);
        fail_all(failed, make_engine_error(error_class::network,
                                           "ws transport disconnected"));
        report(self, transport_status::idle);
      } catch (...) {
        // idle already (the link session moved first)
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
        if (st.link.up() && !st.token.empty())
          send_auth(self, st.token); // resubscribes, replaying from seq
      } catch (...) {
      }
    },
    [self](token_atom, std::string& tok) {
      auto& st = self->state;
      try {
        if (tok.empty())
          st.resume_seq = 0; // logged out: the next session starts afresh
        st.token = std::move(tok);
        if (!st.link.up())
          return; // used on the next upgrade / sent once up
        if (!st.token.empty() && st.token != st.conn_token)
          send_auth(self, st.token);
        // An empty token cannot un-authenticate the connection; events are
        // simply no longer forwarded.
      } catch (...) {
        // no events; the next token or reconnect tries again
      }
    },
    [self](request_atom, api_call& call,
           caf::timespan left) -> caf::result<api_reply> {
      auto& st = self->state;
      if (!st.link.up() || !st.loop)
        return make_engine_error(error_class::network,
                                 "ws transport not connected");
      if (left <= caf::timespan{0})
        return make_engine_error(error_class::timeout,
                                 "no time left for the ws request");
      try {
        auto key = st.next_key++;
        auto wire_id = wire_id_for(st, call.id, key);
        std::string frame;
        auto method = call.method.empty() ? std::string{"GET"} : call.method;
        if (!ws_link::encode_request(wire_id, method, call.path, call.body,
                                     frame))
          return local_reply(call.id, 400, "bad_json",
                             "the request body is not valid JSON (or holds a "
                             "number out of range)");
        if (frame.size() > max_frame_bytes)
          return local_reply(call.id, 413, "payload_too_large",
                             "the request is too large for a WebSocket "
                             "frame");
        if (!call.token.empty() && call.token != st.conn_token)
          send_auth(self, call.token);
        auto rp = self->make_response_promise<api_reply>();
        auto deadline = deadline_of(call, self->clock().now(),
                                    clamp_delay(left));
        if (!st.link.add_call(key, deadline,
                              pending_request{rp, std::move(call.id)},
                              std::move(wire_id))) {
          rp.deliver(make_engine_error(error_class::unknown,
                                       "ws transport: request id in use"));
          return rp;
        }
        st.loop->send(st.link.generation(), std::move(frame));
        arm_timer(self);
        return rp;
      } catch (const std::exception& e) {
        return make_engine_error(error_class::unknown,
                                 std::string{"ws transport: "} + e.what());
      } catch (...) {
        return make_engine_error(error_class::unknown,
                                 "ws transport: internal error");
      }
    },
    // -- from the service thread -----------------------------------------------
    [self](io_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.link.generation()
          || !st.link.established(self->clock().now()))
        return;
      try {
        st.confirmed_token = st.conn_token; // the upgrade accepted it
        report(self, transport_status::up);
        st.resume_auth_id.clear();
        if (!st.token.empty()
            && (st.token != st.conn_token || st.resume_seq > 0)) {
          auto id = send_auth(self, st.token); // changed, or resume
          if (st.resume_seq > 0)
            st.resume_auth_id = std::move(id);
        }
        arm_timer(self); // heartbeat and dead-peer deadlines
      } catch (...) {
        go_down(self, "ws transport: internal error");
      }
    },
    [self](io_atom, uint64_t gen, std::string& text) {
      auto& st = self->state;
      if (gen != st.link.generation() || !st.link.up())
        return;
      try {
        st.link.received(self->clock().now());
        on_frame(self, text);
      } catch (...) {
        // a frame we cannot handle; its request's timer answers it
      }
    },
    [self](io_atom, uint64_t gen, transport_status, std::string& reason) {
      if (gen != self->state.link.generation())
        return;
      try {
        go_down(self, reason);
      } catch (...) {
      }
    },
    // -- timer ------------------------------------------------------------------
    [self](timeout_atom) {
      auto& st = self->state;
      try {
        auto r = st.link.on_timer(self->clock().now());
        for (auto& e : r.expired)
          e.payload.rp.deliver(make_engine_error(error_class::timeout,
                                                 "ws request timed out"));
        switch (r.down) {
          case link_down_cause::connect_timeout:
            go_down(self, "websocket connect timed out after "
                            + std::to_string(to_ms(st.cfg.connect_timeout))
                            + " ms");
            break;
          case link_down_cause::dead_peer:
            go_down(self, "websocket peer silent for "
                            + std::to_string(to_ms(r.silence)) + " ms");
            break;
          case link_down_cause::reconnect_grace: // not used by WebSocket
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

transport_actor spawn_ws_transport(caf::actor_system& sys,
                                   ws_transport_config cfg,
                                   transport_listener_actor listener) {
  auto hdl = sys.spawn(ws_transport_fun, std::move(cfg), std::move(listener));
  return caf::actor_cast<transport_actor>(hdl);
}

} // namespace aico
