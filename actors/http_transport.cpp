// aico engine: the HTTP transport actor (libcurl multi loop + SSE events).
//
// States (messages/transport.hpp): idle -> connecting -> up | down.
// * connect: GET /api/v1/health within cfg.connect_timeout; any HTTP answer
//   means up, a failure means down (with the reason).
// * request: only while up; sent on the curl loop with the time left as
//   CURLOPT_TIMEOUT_MS. Any HTTP status is an api_reply. A network failure is
//   replied as error_class::network AND takes the transport down (every other
//   pending request fails with network too); a timeout is only replied.
//   A deadline per request (time left + grace) is a safety net, so every
//   promise is delivered even if the loop never answers; one timer for the
//   earliest deadline serves them all (src/core/pending_requests.hpp).
// * token: while up with a token, one SSE stream (GET /api/v1/events) runs;
//   its events go to the listener. A dropped stream is reopened after a short
//   delay (a few tries); a reopen that fails with network/timeout = down.
//   A new token of the same user (a refresh) does not reopen the stream:
//   the gateway keeps it open while the token merely expires, and every
//   reopen is a switch-over. Every (re)open sends Last-Event-ID = the last
//   event seq the engine delivered (resume_atom) or this transport
//   forwarded; the Aico-Replay response header says whether the gateway
//   replayed everything after it (an `events.replay` outcome to the
//   listener, before the replayed events).
// * disconnect: everything is aborted, pending requests fail with network,
//   idle is reported.
// The link's status, the connect probe's deadline and the requests in flight
// with their deadlines are a src/core/link_session (one timer message for all
// of them, on the actor clock). No exception leaves a handler; the state
// destructor joins the loop thread.
#include "actors/http_transport.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include "messages/errors.hpp"
#include "src/core/event_cursor.hpp"
#include "src/core/jwt_claims.hpp"
#include "src/core/log_line.hpp"
#include "src/transport/curl/http_loop.hpp"
#include "src/core/log_line.hpp"
#include "src/core/url_host.hpp"
#include "src/transport/curl/sse_parser.hpp"

namespace aico {

http_transport_state::http_transport_state() = default;

http_transport_state::~http_transport_state() {
  // Stops and joins the loop thread before anything else of the state goes.
  if (loop) {
    loop->stop();
    loop.reset();
  }
}

namespace {

using namespace std::chrono_literals;

using self_ptr = http_transport_impl::stateful_pointer<http_transport_state>;
using sse_phase = http_transport_state::sse_phase;

/// The safety-net timer fires this long after the transfer's own deadline.
constexpr caf::timespan safety_grace = 250ms;
/// Reopen delay of a dropped event stream (times the attempt number).
constexpr caf::timespan sse_retry_delay = 500ms;
/// Consecutive reopen attempts before the transport gives up (down).
constexpr int sse_max_tries = 4;
/// A stream that stayed open this long resets the attempt counter.
constexpr auto sse_stable_after = std::chrono::seconds(5);
/// The gateway's ": keep-alive" period on the event stream.
constexpr auto sse_keepalive_period = std::chrono::seconds(15);

std::chrono::milliseconds ceil_ms(caf::timespan d) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(d);
  return std::max(ms, std::chrono::milliseconds{1});
}

http::failure failure_of(const http_result& r) {
  return static_cast<http::failure>(r.fail);
}

http_result to_result(http::response&& r) {
  http_result res;
  res.fail = static_cast<uint8_t>(r.fail);
  res.error = std::move(r.error);
  res.status = r.status;
  res.body = std::move(r.body);
  res.headers = std::move(r.headers);
  return res;
}

/// {base_url}/api/v1{path}; a path that already carries /api/v1 is kept.
std::string api_url(const std::string& base_url, const std::string& path) {
  std::string base = base_url;
  while (!base.empty() && base.back() == '/')
    base.pop_back();
  std::string p = path.empty() || path.front() != '/' ? "/" + path : path;
  static const std::string prefix = "/api/v1";
  if (p.compare(0, prefix.size(), prefix) == 0
      && (p.size() == prefix.size() || p[prefix.size()] == '/'
          || p[prefix.size()] == '?'))
    return base + p;
  return base + prefix + p;
}

/// Sends to the transport from the loop thread through its weak address.
template <class... Ts>
void post_back(const caf::actor_addr& addr, Ts&&... xs) {
  if (auto hdl = caf::actor_cast<http_transport_impl>(addr))
    caf::anon_send(hdl, std::forward<Ts>(xs)...);
}

link_timing timing_of(const http_transport_config& cfg) {
  link_timing t;
  // the probe's own CURLOPT_TIMEOUT answers first; this is the safety net
  t.connect_timeout = cfg.connect_timeout + safety_grace;
  return t; // no pings, no dead-peer check
}

/// Schedules the link's one timer if its next deadline needs it.
void arm_timer(self_ptr self) {
  if (auto d = self->state.link.arm(self->clock().now()))
    self->delayed_send(self, *d, timeout_atom_v);
}

void report(self_ptr self, transport_status s, std::string reason = {}) {
  auto& st = self->state;
  if (st.listener)
    self->send(st.listener, tstate_atom_v, transport_mode::http, s,
               std::move(reason));
}

// -- event stream ----------------------------------------------------------------

void stop_sse(self_ptr self) {
  auto& st = self->state;
  if (st.sse_transfer != 0 && st.loop)
    st.loop->cancel(st.sse_transfer);
  st.sse_transfer = 0;
  ++st.sse_gen; // everything of the old stream still on its way is stale
  st.sse = sse_phase::off;
}

void open_sse(self_ptr self) {
  stop_sse(self);
  auto& st = self->state;
  if (!st.link.up() || st.token.empty() || !st.loop)
    return;
  auto gen = st.sse_gen;
  http::request rq;
  rq.method = "GET";
  rq.url = api_url(st.cfg.base_url, "/events");
  rq.headers.emplace_back("Accept: text/event-stream");
  rq.headers.emplace_back("Cache-Control: no-cache");
  rq.headers.emplace_back("Authorization: Bearer " + st.token);
  if (st.resume_seq > 0)
    rq.headers.emplace_back("Last-Event-ID: " + std::to_string(st.resume_seq));
  http::stream_options so;
  so.open_timeout = ceil_ms(st.cfg.connect_timeout);
  so.idle_timeout = ceil_ms(st.cfg.dead_peer_timeout + sse_keepalive_period);
  auto parser = std::make_shared<http::sse_parser>();
  auto addr = self->address();
  http::stream_handlers h;
  h.on_open = [addr, gen](int status,
                          const std::map<std::string, std::string>& hs) {
    std::string replay;
    for (auto& [k, v] : hs)
      if (k.size() == 11
          && std::equal(k.begin(), k.end(), "aico-replay",
                        [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a))
                                 == b;
                        }))
        replay = v;
    post_back(addr, event_atom_v, gen, static_cast<int32_t>(status),
              std::move(replay));
  };
  h.on_data = [addr, gen, parser](std::string_view chunk) {
    auto dropped = parser->dropped_events();
    auto evs = parser->feed(chunk);
    if (parser->dropped_events() != dropped)
      log_line("aico: event stream: dropped an event larger than "
               + std::to_string(http::sse_parser::default_max_event)
               + " bytes (" + std::to_string(parser->dropped_events())
               + " so far on this stream)");
    for (auto& ev : evs) {
      server_event se;
      se.topic = std::move(ev.event);
      se.data = std::move(ev.data);
      se.seq = http::parse_seq(ev.id);
      se.via = transport_mode::http;
      post_back(addr, event_atom_v, gen, std::move(se));
    }
    return !parser->failed();
  };
  h.on_close = [addr, gen, parser](http::response r) {
    if (parser->failed())
      r.error = "the event stream was closed: " + parser->error();
    post_back(addr, event_atom_v, gen, to_result(std::move(r)));
  };
  st.sse_transfer = st.loop->open_stream(std::move(rq), so, std::move(h));
  st.sse_token = st.token;
  st.sse_since = st.resume_seq;
  st.sse = sse_phase::opening;
}

/// Whether two access tokens belong to the same user (their JWT `sub`).
bool same_user(const std::string& a, const std::string& b) {
  auto x = decode_jwt_claims(a);
  auto y = decode_jwt_claims(b);
  return x && y && !x->sub.empty() && x->sub == y->sub;
}

// -- state changes -----------------------------------------------------------------

/// Fails these requests (the link session's calls in flight), aborts every
/// transfer (also the stream and a connect probe) and drops the cached
/// connections.
template <class Entries>
void abort_all(self_ptr self, Entries&& failed, const caf::error& err) {
  auto& st = self->state;
  stop_sse(self);
  st.connect_key = 0;
  st.connect_transfer = 0;
  for (auto& e : failed)
    e.payload.rp.deliver(err);
  if (st.loop)
    st.loop->reset();
}

/// The link is dead: down until the supervisor connects again.
void go_down(self_ptr self, const std::string& reason) {
  auto failed = self->state.link.go_down();
  if (!failed)
    return; // not live: down was reported already
  abort_all(self, *failed,
            make_engine_error(error_class::network,
                              "http transport down: " + reason));
  report(self, transport_status::down, reason);
}

void on_connect_result(self_ptr self, http_result& r) {
  auto& st = self->state;
  st.connect_key = 0;
  st.connect_transfer = 0;
  if (st.link.status() != transport_status::connecting)
    return;
  if (failure_of(r) == http::failure::none) {
    st.link.established(self->clock().now());
    report(self, transport_status::up);
    st.sse_tries = 0;
    if (!st.token.empty())
      open_sse(self);
    return;
  }
  std::string why = failure_of(r) == http::failure::timeout
                      ? "health check timed out: " + r.error
                      : "health check failed: " + r.error;
  st.link.go_down(); // connecting: no requests in flight yet
  if (st.loop)
    st.loop->reset();
  report(self, transport_status::down, std::move(why));
}

void on_request_result(self_ptr self, uint64_t key, http_result& r) {
  auto& st = self->state;
  auto e = st.link.answer(key);
  if (!e)
    return; // answered already (safety net, disconnect, down)
  auto& p = e->payload;
  switch (failure_of(r)) {
    case http::failure::none: {
      api_reply rep;
      rep.id = std::move(p.id);
      rep.status = r.status;
      rep.body = std::move(r.body);
      rep.headers = std::move(r.headers);
      rep.via = transport_mode::http;
      p.rp.deliver(std::move(rep));
      break;
    }
    case http::failure::timeout:
      p.rp.deliver(make_engine_error(error_class::timeout,
                                     "http request timed out: " + r.error));
      break;
    case http::failure::network: {
      auto why = "http request failed: " + r.error;
      p.rp.deliver(make_engine_error(error_class::network, why));
      go_down(self, why);
      break;
    }
    case http::failure::unknown:
      p.rp.deliver(make_engine_error(error_class::unknown,
                                     "http request failed: " + r.error));
      break;
  }
}

void on_stream_closed(self_ptr self, http_result& r) {
  auto& st = self->state;
  st.sse_transfer = 0;
  bool was_open = st.sse == sse_phase::open;
  st.sse = sse_phase::off;
  if (!st.link.up() || st.token.empty())
    return;
  if (was_open
      && self->clock().now() - st.sse_opened_at >= sse_stable_after)
    st.sse_tries = 0;
  auto f = failure_of(r);
  if (!was_open
      && (f == http::failure::network || f == http::failure::timeout)) {
    // could not (re)open the stream: the gateway is unreachable
    go_down(self, "event stream: " + r.error);
    return;
  }
  if (f == http::failure::none && (r.status == 401 || r.status == 403)) {
    // the token was rejected: no events until a new token arrives
    return;
  }
  if (++st.sse_tries > sse_max_tries) {
    std::string why = f == http::failure::none
                        ? "status " + std::to_string(r.status)
                        : r.error;
    go_down(self, "event stream keeps failing: " + why);
    return;
  }
  st.sse = sse_phase::waiting;
  self->delayed_send(self, sse_retry_delay * st.sse_tries, probe_atom_v,
                     st.sse_gen);
}

// -- behavior ----------------------------------------------------------------------

http_transport_impl::behavior_type
http_transport_fun(self_ptr self, http_transport_config cfg,
                   transport_listener_actor listener) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.listener = std::move(listener);
  st.link = link_session<http_transport_state::pending_request>{
    timing_of(st.cfg)};
  try {
    http::loop_options lo;
    // One connection more than cfg.max_connections: the long-lived event
    // stream holds one for good, the requests keep max_connections.
    lo.max_host_connections = std::max(1, st.cfg.max_connections) + 1;
    lo.connect_timeout = ceil_ms(st.cfg.connect_timeout);
    lo.tls = st.cfg.tls;
    lo.on_warning = [](const std::string& w) { log_line("aico: http: " + w); };
    st.loop = std::make_unique<http::loop>(lo);
  } catch (...) {
    st.loop.reset(); // connect reports down
  }
  // Fail what is pending before going away (the default handler would quit
  // without delivering the promises).
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (!em.reason)
      return; // like the default handler: a normal exit of a link is ignored
    try {
      abort_all(self, self->state.link.stop(),
                make_engine_error(error_class::network,
                                  "http transport stopped"));
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
                 "http transport: no I/O thread");
          return;
        }
        if (std::string why; !valid_url_authority(st.cfg.base_url, why)) {
          report(self, transport_status::down,
                 "http transport: bad base URL: " + why);
          return;
        }
        auto key = st.next_key++;
        st.connect_key = key;
        st.link.connect(self->clock().now());
        report(self, transport_status::connecting);
        http::request rq;
        rq.method = "GET";
        rq.url = api_url(st.cfg.base_url, "/health");
        rq.headers.emplace_back("Accept: application/json");
        rq.timeout = ceil_ms(st.cfg.connect_timeout);
        auto addr = self->address();
        st.connect_transfer = st.loop->submit(
          std::move(rq), [addr, key](http::response r) {
            post_back(addr, io_atom_v, key, to_result(std::move(r)));
          });
        arm_timer(self); // the probe's safety net
      } catch (const std::exception& e) {
        st.connect_key = 0;
        go_down(self, std::string{"http transport: "} + e.what());
      } catch (...) {
        st.connect_key = 0;
        go_down(self, "http transport: internal error");
      }
    },
    [self](disconnect_atom) {
      try {
        abort_all(self, self->state.link.stop(),
                  make_engine_error(error_class::network,
                                    "http transport disconnected"));
        report(self, transport_status::idle);
      } catch (...) {
        // idle already (the link session moved first)
      }
    },
    [self](token_atom, std::string& tok) {
      auto& st = self->state;
      try {
        st.token = std::move(tok);
        if (st.token.empty()) {
          st.resume_seq = 0; // logged out: the next session starts afresh
          stop_sse(self);
          return;
        }
        if (!st.link.up())
          return; // opened once up
        if ((st.sse == sse_phase::opening || st.sse == sse_phase::open)
            && (st.sse_token == st.token
                || same_user(st.sse_token, st.token))) {
          // already streaming for this user: a refreshed token does not
          // end the stream, so it is not reopened (a reopen is a
          // switch-over); the next (re)open uses the new token
          return;
        }
        st.sse_tries = 0;
        open_sse(self);
      } catch (...) {
        // no events; the next token or reconnect tries again
        st.sse = sse_phase::off;
      }
    },
    [self](request_atom, api_call& call,
           caf::timespan left) -> caf::result<api_reply> {
      auto& st = self->state;
      if (!st.link.up() || !st.loop)
        return make_engine_error(error_class::network,
                                 "http transport not connected");
      if (left <= caf::timespan{0})
        return make_engine_error(error_class::timeout,
                                 "no time left for the http request");
      try {
        auto key = st.next_key++;
        // the call's one deadline; the transfer's own timeout is the time
        // left until it, the safety net fires a grace after it
        auto now = self->clock().now();
        auto deadline = deadline_of(call, now, left);
        http::request rq;
        rq.method = call.method.empty() ? std::string{"GET"} : call.method;
        rq.url = api_url(st.cfg.base_url, call.path);
        rq.body = std::move(call.body);
        rq.headers.emplace_back("Accept: application/json");
        if (!rq.body.empty())
          rq.headers.emplace_back("Content-Type: application/json");
        if (!call.token.empty())
          rq.headers.emplace_back("Authorization: Bearer " + call.token);
        rq.timeout = ceil_ms(deadline - now);
        auto rp = self->make_response_promise<api_reply>();
        auto addr = self->address();
        auto tid = st.loop->submit(
          std::move(rq), [addr, key](http::response r) {
            post_back(addr, io_atom_v, key, to_result(std::move(r)));
          });
        if (!st.link.add_call(
              key, deadline + safety_grace,
              http_transport_state::pending_request{rp, call.id, tid})) {
          st.loop->cancel(tid);
          rp.deliver(make_engine_error(error_class::unknown,
                                       "http transport: request key in use"));
          return rp;
        }
        arm_timer(self);
        return rp;
      } catch (const std::exception& e) {
        return make_engine_error(error_class::unknown,
                                 std::string{"http transport: "} + e.what());
      } catch (...) {
        return make_engine_error(error_class::unknown,
                                 "http transport: internal error");
      }
    },
    // -- from the loop thread --------------------------------------------------
    [self](io_atom, uint64_t key, http_result& r) {
      try {
        if (key != 0 && key == self->state.connect_key)
          on_connect_result(self, r);
        else
          on_request_result(self, key, r);
      } catch (...) {
        // a promise that was not delivered is caught by its safety net
      }
    },
    [self](event_atom, uint64_t gen, int32_t status, std::string& replay) {
      auto& st = self->state;
      if (gen != st.sse_gen || st.sse != sse_phase::opening)
        return;
      if (status >= 200 && status < 300) {
        st.sse = sse_phase::open;
        st.sse_opened_at = self->clock().now();
        // the replayed events follow: the outcome goes first
        if (st.sse_since > 0 && st.listener && st.link.up())
          self->send(st.listener, event_atom_v,
                     replay_outcome_event(st.sse_since, replay == "complete",
                                          transport_mode::http));
      }
    },
    [self](event_atom, uint64_t gen, server_event& ev) {
      auto& st = self->state;
      if (gen != st.sse_gen || !st.link.up() || !st.listener)
        return;
      st.resume_seq = std::max(st.resume_seq, ev.seq);
      self->send(st.listener, event_atom_v, std::move(ev));
    },
    [self](resume_atom, uint64_t seq, bool now) {
      auto& st = self->state;
      try {
        if (!now) {
          st.resume_seq = std::max(st.resume_seq, seq);
          return;
        }
        st.resume_seq = seq;
        if (st.link.up() && !st.token.empty()
            && (st.sse == sse_phase::opening || st.sse == sse_phase::open)) {
          st.sse_tries = 0;
          open_sse(self); // reopens with Last-Event-ID = seq
        }
      } catch (...) {
        st.sse = sse_phase::off;
      }
    },
    [self](event_atom, uint64_t gen, http_result& r) {
      if (gen != self->state.sse_gen)
        return;
      try {
        on_stream_closed(self, r);
      } catch (...) {
        self->state.sse = sse_phase::off;
      }
    },
    // -- timers ----------------------------------------------------------------
    [self](timeout_atom) {
      auto& st = self->state;
      try {
        auto r = st.link.on_timer(self->clock().now());
        for (auto& e : r.expired) {
          try {
            if (st.loop)
              st.loop->cancel(e.payload.transfer);
          } catch (...) {
            // the transfer's late answer finds nothing pending
          }
          e.payload.rp.deliver(make_engine_error(error_class::timeout,
                                                 "http request timed out"));
        }
        if (r.down == link_down_cause::connect_timeout) {
          // the probe did not finish on its own: give up on it
          if (st.loop && st.connect_transfer != 0)
            st.loop->cancel(st.connect_transfer);
          st.connect_key = 0;
          st.connect_transfer = 0;
          go_down(self, "health check timed out");
        }
      } catch (...) {
        // nothing sensible left to do
      }
      try {
        arm_timer(self); // for the next deadline
      } catch (...) {
      }
    },
    [self](probe_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.sse_gen || st.sse != sse_phase::waiting)
        return;
      try {
        open_sse(self);
      } catch (...) {
        st.sse = sse_phase::off;
      }
    },
  };
}

} // namespace

transport_actor spawn_http_transport(caf::actor_system& sys,
                                     http_transport_config cfg,
                                     transport_listener_actor listener) {
  auto hdl = sys.spawn(http_transport_fun, std::move(cfg), std::move(listener));
  return caf::actor_cast<transport_actor>(hdl);
}

} // namespace aico
