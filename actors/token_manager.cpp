// aico engine: the token manager actor (interface: messages/token_manager.hpp).
//
// State machine (auth_state; `refreshing` is never published: the state
// stays logged_in while a refresh is in flight):
//
//   logged_out ──login──▶ logged_in ──refresh rejected (401/400)──▶ auth_expired
//      ▲   ▲                │    ↺ refresh ok: logged_in re-published       │
//      │   └────logout──────┘    ↺ network/timeout/5xx: kept, retried       │
//      └────────────────────────────logout──────────────────────────────────┘
//   login succeeds from any state ──▶ logged_in
//
// - One refresh at a time ("single-flight"): every demand (token near
//   expiry, refresh(stale) after a 401, the proactive timer) joins the
//   refresh in flight; its response promises are kept in the state and all
//   get the same new token or the same error.
// - Proactive refresh: a timer (delayed_send + generation counter) fires
//   when refresh_at_fraction of the access token's lifetime is left, but at
//   least refresh_margin_min before `exp` (from the JWT, else expires_in).
// - A rejected refresh token (authentication/validation class) clears the
//   tokens, publishes auth_expired once and never retries by itself.
//   Network/timeout/server errors keep the tokens and retry on a backoff.
// - Responses of a refresh that was overtaken by a login or logout are
//   recognised by an epoch number and ignored.
// - Tokens never appear in an error message (or anywhere but the gateway
//   call and tokens.json).
//
// Persistence (tokens.json) is a few hundred bytes written with fsync from
// the handler: short enough not to matter for the scheduler.
#include "messages/token_manager.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "src/core/backoff.hpp"
#include "src/core/jwt_claims.hpp"
#include "src/core/token_store.hpp"

namespace aico {

namespace {

/// Internal messages: the refresh timer (with its generation).
using token_manager_impl = token_manager_actor::extend_with<
  caf::typed_actor<caf::reacts_to<tick_atom, uint64_t>>>;

using token_promise = caf::typed_response_promise<std::string>;

/// The gateway (supervisor) gets request_timeout as the call's deadline and
/// answers by then with a classified error ("no transport available",
/// "no answer before the deadline"); our own CAF timeout is a little longer
/// so that answer, not a bare request_timeout, is what the caller sees.
constexpr auto grace = std::chrono::seconds(1);

/// Backoff of refresh retries after network/timeout/server errors.
backoff_options retry_backoff_options() {
  backoff_options res;
  res.initial = std::chrono::seconds(1);
  res.multiplier = 2.0;
  res.jitter = 0.2;
  res.max = std::chrono::seconds(60);
  return res;
}

/// A proactive refresh is never scheduled sooner than this after the
/// previous one (guards against tokens with tiny lifetimes).
constexpr auto min_refresh_delay = std::chrono::seconds(1);

/// What authenticate and refresh return.
struct auth_reply {
  std::string access_token;
  std::string refresh_token;
  int64_t expires_in = 0;
  std::string user_id;
  std::string username;
  std::string role;
};

std::string json_text(const boost::json::value& v) {
  if (v.is_string())
    return std::string{v.get_string().data(), v.get_string().size()};
  if (v.is_int64())
    return std::to_string(v.get_int64());
  if (v.is_uint64())
    return std::to_string(v.get_uint64());
  return {};
}

caf::error malformed_reply(const char* what) {
  return make_engine_error(error_class::unknown,
                           std::string{"malformed authentication reply: "}
                             + what);
}

/// Parses the envelope {success, data:{access_token, refresh_token,
/// expires_in, user:{id, username, role}}}. Never throws.
caf::expected<auth_reply> parse_auth_reply(const api_reply& r) {
  try {
    boost::system::error_code ec;
    auto jv = boost::json::parse(r.body, ec);
    if (ec || !jv.is_object())
      return malformed_reply("not a JSON object");
    const auto& env = jv.get_object();
    if (auto s = env.if_contains("success");
        s && (!s->is_bool() || !s->get_bool()))
      return malformed_reply("success is not true");
    auto data = env.if_contains("data");
    if (!data || !data->is_object())
      return malformed_reply("no data object");
    const auto& obj = data->get_object();
    auth_reply res;
    auto at = obj.if_contains("access_token");
    auto rt = obj.if_contains("refresh_token");
    if (!at || !at->is_string() || at->get_string().empty())
      return malformed_reply("no access_token");
    if (!rt || !rt->is_string() || rt->get_string().empty())
      return malformed_reply("no refresh_token");
    res.access_token = json_text(*at);
    res.refresh_token = json_text(*rt);
    if (auto e = obj.if_contains("expires_in")) {
      if (e->is_int64())
        res.expires_in = e->get_int64();
      else if (e->is_uint64())
        res.expires_in = static_cast<int64_t>(
          std::min<uint64_t>(e->get_uint64(), uint64_t{1} << 40));
      else if (e->is_double() && std::isfinite(e->get_double())
               && std::fabs(e->get_double()) < 1e12)
        res.expires_in = static_cast<int64_t>(e->get_double());
    }
    if (auto u = obj.if_contains("user"); u && u->is_object()) {
      const auto& user = u->get_object();
      if (auto v = user.if_contains("id"))
        res.user_id = json_text(*v);
      if (auto v = user.if_contains("username"))
        res.username = json_text(*v);
      if (auto v = user.if_contains("role"))
        res.role = json_text(*v);
    }
    return res;
  } catch (...) {
    return malformed_reply("could not be parsed");
  }
}

struct token_manager_state {
  static constexpr const char* name = "aico.token_manager";

  token_manager_config cfg;
  api_gateway_actor gateway;
  token_store store;

  auth_state state = auth_state::logged_out;
  std::string access;  ///< current access token ("" = none)
  std::string refresh; ///< current refresh token ("" = none)
  session_info session;
  int64_t access_iat = 0; ///< start of the access token's lifetime (s)

  /// Single-flight refresh.
  bool refreshing = false;
  uint64_t refresh_epoch = 0; ///< bumped to disown the refresh in flight
  std::vector<token_promise> waiters;

  /// Proactive refresh / retry timer.
  uint64_t timer_gen = 0;
  backoff retry{retry_backoff_options()};

  std::vector<auth_listener_actor> watchers;

  std::string id_prefix;
  uint64_t next_id = 0;

  /// The last tokens.json failure (kept for debugging; never has tokens).
  caf::error store_error;
};

using self_ptr = token_manager_impl::stateful_pointer<token_manager_state>;

// -- small helpers -------------------------------------------------------------

int64_t now_s(self_ptr self) {
  auto& f = self->state.cfg.now_s;
  if (f) {
    try {
      return f();
    } catch (...) {
      // fall through to the system clock
    }
  }
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

double seconds_of(caf::timespan d) {
  return std::chrono::duration<double>(d).count();
}

std::string next_call_id(self_ptr self, const char* what) {
  auto& st = self->state;
  return st.id_prefix + what + "-" + std::to_string(++st.next_id);
}

caf::error not_logged_in() {
  return make_engine_error(error_class::authentication, "not logged in");
}

caf::error session_expired(int32_t status = 0, std::string code = {}) {
  return make_engine_error(error_class::authentication,
                           "session expired, log in again", status,
                           std::move(code));
}

void publish(self_ptr self) {
  auto& st = self->state;
  for (auto& w : st.watchers)
    self->send(w, auth_atom::value, st.state);
}

/// Changes the state; publishes only on a change.
void set_state(self_ptr self, auth_state s) {
  if (self->state.state == s)
    return;
  self->state.state = s;
  publish(self);
}

void persist(self_ptr self) {
  auto& st = self->state;
  stored_tokens x;
  x.access_token = st.access;
  x.refresh_token = st.refresh;
  x.user_id = st.session.user_id;
  x.username = st.session.username;
  x.role = st.session.role;
  st.store_error = st.store.save(x);
}

void forget_tokens(self_ptr self) {
  auto& st = self->state;
  st.access.clear();
  st.refresh.clear();
  st.session = session_info{};
  st.access_iat = 0;
  ++st.timer_gen; // cancels the proactive refresh / retry
  st.retry.reset();
  st.store_error = st.store.clear();
}

/// Sets the current tokens; exp from the JWT, falling back to expires_in.
void adopt(self_ptr self, const auth_reply& r, int64_t now) {
  auto& st = self->state;
  st.access = r.access_token;
  st.refresh = r.refresh_token;
  session_info s;
  int64_t exp = 0;
  int64_t iat = now;
  auto claims = decode_jwt_claims(st.access);
  if (claims) {
    s.user_id = claims->sub;
    s.username = claims->name;
    s.role = claims->role;
    if (claims->exp > 0) {
      exp = claims->exp;
      if (claims->iat > 0 && claims->iat <= claims->exp)
        iat = claims->iat;
    }
  }
  if (exp == 0 && r.expires_in > 0)
    exp = now + r.expires_in;
  // the user object of the reply wins over the claims; a refresh reply
  // without one keeps what we know
  if (!r.user_id.empty())
    s.user_id = r.user_id;
  if (!r.username.empty())
    s.username = r.username;
  if (!r.role.empty())
    s.role = r.role;
  if (s.user_id.empty())
    s.user_id = st.session.user_id;
  if (s.username.empty())
    s.username = st.session.username;
  if (s.role.empty())
    s.role = st.session.role;
  s.access_expires_at = exp;
  st.session = std::move(s);
  st.access_iat = iat;
}

/// True if the access token is valid for longer than refresh_margin_min
/// (or its expiry is unknown: then the gateway's 401 tells us).
bool access_fresh(self_ptr self, int64_t now) {
  auto& st = self->state;
  if (st.access.empty())
    return false;
  auto exp = st.session.access_expires_at;
  if (exp == 0)
    return true;
  return static_cast<double>(exp - now) > seconds_of(st.cfg.refresh_margin_min);
}

/// Schedules the proactive refresh for the current access token. With
/// `only_if_due_later`, does nothing when the refresh is already due (used
/// at start: the next token request refreshes).
void schedule_refresh(self_ptr self, int64_t now, bool only_if_due_later) {
  auto& st = self->state;
  auto gen = ++st.timer_gen;
  auto exp = st.session.access_expires_at;
  if (exp == 0 || st.refresh.empty())
    return;
  auto lifetime = static_cast<double>(exp - st.access_iat);
  if (lifetime <= 0)
    lifetime = static_cast<double>(exp - now);
  auto fraction = std::clamp(st.cfg.refresh_at_fraction, 0.0, 1.0);
  auto left = std::max(lifetime * fraction,
                       seconds_of(st.cfg.refresh_margin_min));
  auto delay_s = static_cast<double>(exp) - left - static_cast<double>(now);
  if (delay_s <= 0 && only_if_due_later)
    return;
  caf::timespan delay = std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(std::max(delay_s, 0.0)));
  delay = std::max<caf::timespan>(delay, min_refresh_delay);
  self->delayed_send(self, delay, tick_atom::value, gen);
}

/// Retries a failed refresh later (network/timeout/server errors).
void schedule_retry(self_ptr self) {
  auto& st = self->state;
  auto gen = ++st.timer_gen;
  self->delayed_send(self, caf::timespan{st.retry.next()}, tick_atom::value,
                     gen);
}

/// Stops the refresh in flight (its reply will be ignored) and hands its
/// waiters to `f`.
template <class F>
void disown_refresh(self_ptr self, F f) {
  auto& st = self->state;
  if (!st.refreshing)
    return;
  st.refreshing = false;
  ++st.refresh_epoch;
  auto ws = std::move(st.waiters);
  st.waiters.clear();
  for (auto& w : ws)
    f(w);
}

// -- refresh -------------------------------------------------------------------

void on_refresh_reply(self_ptr self, uint64_t epoch, const api_reply& r);
void on_refresh_error(self_ptr self, uint64_t epoch, caf::error err);

void start_refresh(self_ptr self) {
  auto& st = self->state;
  if (st.refreshing)
    return;
  st.refreshing = true;
  auto epoch = ++st.refresh_epoch;
  if (!st.gateway) {
    on_refresh_error(self, epoch,
                     make_engine_error(error_class::network,
                                       "no gateway to refresh the session"));
    return;
  }
  api_call call;
  try {
    boost::json::object body;
    body["refresh_token"] = st.refresh;
    call.body = boost::json::serialize(body);
  } catch (...) {
    on_refresh_error(self, epoch,
                     make_engine_error(error_class::unknown,
                                       "cannot build the refresh request"));
    return;
  }
  call.id = next_call_id(self, "refresh");
  call.method = "POST";
  call.path = "/users/refresh";
  self
    ->request(st.gateway, st.cfg.request_timeout + grace,
              request_atom::value, std::move(call), st.cfg.request_timeout,
              false)
    .then([=](const api_reply& r) { on_refresh_reply(self, epoch, r); },
          [=](caf::error& err) { on_refresh_error(self, epoch, std::move(err)); });
}

/// Joins (or starts) the refresh in flight; the promise gets its result.
token_promise join_refresh(self_ptr self) {
  auto rp = self->make_response_promise<std::string>();
  self->state.waiters.push_back(rp);
  start_refresh(self);
  return rp;
}

void refresh_failed(self_ptr self, caf::error err) {
  auto& st = self->state;
  st.refreshing = false;
  auto c = classify(err);
  auto ws = std::move(st.waiters);
  st.waiters.clear();
  if (c.cls == error_class::authentication
      || c.cls == error_class::validation) {
    // the refresh token was rejected (used, revoked, expired): the session
    // is over. No retry: only a new login helps.
    forget_tokens(self);
    auto e = session_expired(c.status, c.code);
    for (auto& w : ws)
      w.deliver(e);
    set_state(self, auth_state::auth_expired); // published once
    return;
  }
  // network, timeout, server error, malformed reply: keep the tokens (the
  // access token may still be valid) and try again later
  for (auto& w : ws)
    w.deliver(err);
  schedule_retry(self);
}

void on_refresh_reply(self_ptr self, uint64_t epoch, const api_reply& r) {
  auto& st = self->state;
  if (!st.refreshing || epoch != st.refresh_epoch)
    return; // overtaken by a login or logout
  auto parsed = parse_auth_reply(r);
  if (!parsed) {
    refresh_failed(self, std::move(parsed.error()));
    return;
  }
  st.refreshing = false;
  auto now = now_s(self);
  adopt(self, *parsed, now); // rotation: the new refresh token replaces the old
  persist(self);
  st.retry.reset();
  schedule_refresh(self, now, false);
  auto ws = std::move(st.waiters);
  st.waiters.clear();
  for (auto& w : ws)
    w.deliver(st.access);
  // re-published after every refresh so watchers pick up the new token
  st.state = auth_state::logged_in;
  publish(self);
}

void on_refresh_error(self_ptr self, uint64_t epoch, caf::error err) {
  auto& st = self->state;
  if (!st.refreshing || epoch != st.refresh_epoch)
    return;
  refresh_failed(self, std::move(err));
}

/// Replies to a token demand: the current token if it is fresh, else the
/// result of a (shared) refresh.
caf::result<std::string> valid_token(self_ptr self) {
  auto& st = self->state;
  switch (st.state) {
    case auth_state::logged_out:
      return not_logged_in();
    case auth_state::auth_expired:
      return session_expired();
    default:
      break;
  }
  if (access_fresh(self, now_s(self)))
    return st.access;
  if (st.refresh.empty())
    return session_expired();
  return join_refresh(self);
}

// -- start ---------------------------------------------------------------------

void load_tokens(self_ptr self) {
  auto& st = self->state;
  auto loaded = st.store.load();
  if (!loaded) {
    // corrupt or unreadable: ignore it and start logged out
    st.store_error = std::move(loaded.error());
    return;
  }
  if (!*loaded)
    return;
  auto& t = **loaded;
  auth_reply r;
  r.access_token = t.access_token;
  r.refresh_token = t.refresh_token;
  r.user_id = t.user_id;
  r.username = t.username;
  r.role = t.role;
  auto now = now_s(self);
  adopt(self, r, now);
  st.state = auth_state::logged_in;
  // if the access token has expired, the next token request refreshes
  schedule_refresh(self, now, true);
}

token_manager_impl::behavior_type
token_manager_fun(self_ptr self, token_manager_config cfg,
                  api_gateway_actor gateway) {
  auto& st = self->state;
  st.store = token_store{cfg.state_dir};
  st.cfg = std::move(cfg);
  st.gateway = std::move(gateway);
  // call ids unique across engine instances: a random prefix + a counter
  uint32_t salt = 0;
  try {
    salt = std::random_device{}();
  } catch (...) {
    salt = static_cast<uint32_t>(
      std::chrono::steady_clock::now().time_since_epoch().count());
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "tm-%08x-", static_cast<unsigned>(salt));
  st.id_prefix = buf;
  load_tokens(self);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ws = self->state.watchers;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const auth_listener_actor& w) {
                              return w.address() == dm.source;
                            }),
             ws.end());
  });
  return {
    [=](login_atom, const std::string& user,
        const std::string& password) -> caf::result<session_info> {
      auto& st = self->state;
      if (!st.gateway)
        return make_engine_error(error_class::network,
                                 "no gateway to log in with");
      api_call call;
      try {
        boost::json::object body;
        body["username"] = user;
        body["password"] = password;
        call.body = boost::json::serialize(body);
      } catch (...) {
        return make_engine_error(error_class::unknown,
                                 "cannot build the login request");
      }
      call.id = next_call_id(self, "login");
      call.method = "POST";
      call.path = "/users/authenticate";
      auto rp = self->make_response_promise<session_info>();
      self
        ->request(st.gateway, st.cfg.request_timeout + grace,
                  request_atom::value, std::move(call),
                  st.cfg.request_timeout, false)
        .then(
          [=](const api_reply& r) mutable {
            auto parsed = parse_auth_reply(r);
            if (!parsed) {
              rp.deliver(std::move(parsed.error()));
              return;
            }
            auto& st = self->state;
            auto now = now_s(self);
            adopt(self, *parsed, now);
            persist(self);
            st.retry.reset();
            schedule_refresh(self, now, false);
            // a refresh of the previous session in flight is obsolete: its
            // waiters get the new token
            auto tok = st.access;
            disown_refresh(self, [&](token_promise& w) { w.deliver(tok); });
            st.state = auth_state::logged_in;
            publish(self);
            rp.deliver(st.session);
          },
          // non-2xx replies arrive already classified: pass them through
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](logout_atom) -> caf::result<bool> {
      auto& st = self->state;
      if ((!st.access.empty() || !st.refresh.empty()) && st.gateway) {
        // best effort: revoke on the gateway, but do not wait for it
        api_call call;
        try {
          boost::json::object body;
          if (!st.refresh.empty())
            body["refresh_token"] = st.refresh;
          call.body = boost::json::serialize(body);
        } catch (...) {
          call.body = "{}";
        }
        call.id = next_call_id(self, "logout");
        call.method = "POST";
        call.path = "/users/logout";
        call.token = st.access;
        self
          ->request(st.gateway, st.cfg.request_timeout + grace,
                    request_atom::value, std::move(call),
                    st.cfg.request_timeout, false)
          .then([](const api_reply&) {}, [](caf::error&) {});
      }
      disown_refresh(self, [](token_promise& w) {
        w.deliver(make_engine_error(error_class::authentication,
                                    "logged out"));
      });
      forget_tokens(self);
      set_state(self, auth_state::logged_out);
      return true;
    },
    [=](token_atom) -> caf::result<std::string> { return valid_token(self); },
    [=](refresh_atom,
        const std::string& stale) -> caf::result<std::string> {
      auto& st = self->state;
      if (st.state == auth_state::logged_in && !st.access.empty()
          && st.access != stale) {
        // someone else refreshed already: the current token, if fresh
        return valid_token(self);
      }
      switch (st.state) {
        case auth_state::logged_out:
          return not_logged_in();
        case auth_state::auth_expired:
          return session_expired();
        default:
          break;
      }
      if (st.refresh.empty())
        return session_expired();
      return join_refresh(self);
    },
    [=](session_atom) -> caf::result<session_info> {
      auto& st = self->state;
      switch (st.state) {
        case auth_state::logged_out:
          return not_logged_in();
        case auth_state::auth_expired:
          return session_expired();
        default:
          return st.session;
      }
    },
    [=](watch_atom, const auth_listener_actor& w) {
      if (!w)
        return;
      auto& ws = self->state.watchers;
      if (std::none_of(ws.begin(), ws.end(),
                       [&](const auth_listener_actor& x) { return x == w; })) {
        self->monitor(w);
        ws.push_back(w);
      }
      self->send(w, auth_atom::value, self->state.state);
    },
    // -- internal ---------------------------------------------------------
    [=](tick_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.timer_gen)
        return; // stale timer
      if (st.state != auth_state::logged_in || st.refresh.empty())
        return;
      start_refresh(self); // no-op if one is in flight already
    },
  };
}

} // namespace

token_manager_actor spawn_token_manager(caf::actor_system& sys,
                                        token_manager_config cfg,
                                        api_gateway_actor gateway) {
  return sys.spawn(token_manager_fun, std::move(cfg), std::move(gateway));
}

} // namespace aico
