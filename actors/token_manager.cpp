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
// - Across processes sharing the state directory, a refresh happens under
//   an exclusive lock on STATE_DIR/tokens.lock (src/core/token_store.hpp),
//   taken without blocking: while another process holds it, a timer polls
//   every cfg.lock_poll up to cfg.lock_timeout. Under the lock tokens.json is
//   read again (plan_refresh): a newer pair stored by another process is
//   adopted instead of refreshing (presenting our used refresh token would
//   make the gateway revoke the session of every process); a file that is
//   gone or holds another user means our session ended. The lock is held
//   across the refresh call (bounded by cfg.request_timeout) and the write
//   of the new pair, and dropped by the kernel if the process dies.
// - Logout forgets the tokens at once (memory, then tokens.json under the
//   lock), then tells the gateway and waits for its answer (bounded); an
//   expired access token is refreshed once for that.
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
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "src/core/backoff.hpp"
#include "src/core/jwt_claims.hpp"
#include "src/core/timer_delay.hpp"
#include "src/core/token_store.hpp"

namespace aico {

namespace {

/// Internal messages: the refresh timer (with its generation) and the
/// poll of the tokens.lock held by another process.
using token_manager_impl = token_manager_actor::extend_with<
  caf::typed_actor<caf::reacts_to<tick_atom, uint64_t>,
                   caf::reacts_to<probe_atom>>>;

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
      if (e->is_int64()) // bounded: now + expires_in must not overflow
        res.expires_in = std::clamp<int64_t>(e->get_int64(), 0,
                                             int64_t{1} << 40);
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

/// The outcome of waiting for tokens.lock.
enum class lock_result {
  held,        ///< we hold it
  busy,        ///< another process held it for all of cfg.lock_timeout
  unavailable, ///< it cannot be used (I/O error): go on without it
};

struct lock_waiter {
  caf::actor_clock::time_point deadline;
  std::function<void(lock_result)> f;
};

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
  /// The pending refresh timer was shortened to max_timer_delay (exp is
  /// further away): when it fires, it is set again instead of refreshing.
  bool timer_capped = false;
  backoff retry{retry_backoff_options()};

  std::vector<auth_listener_actor> watchers;

  std::string id_prefix;
  uint64_t next_id = 0;

  /// The last tokens.json failure (kept for debugging; never has tokens).
  caf::error store_error;
  /// The last save failed: the file may be older than what we hold, so it
  /// is not trusted to tell whether another process refreshed.
  bool save_failed = false;

  /// tokens.lock while this actor holds it (one user at a time; the others
  /// wait in lock_waiters).
  token_lock lock;
  std::deque<lock_waiter> lock_waiters;
  bool lock_poll_armed = false;
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

stored_tokens current_pair(self_ptr self) {
  auto& st = self->state;
  stored_tokens x;
  x.access_token = st.access;
  x.refresh_token = st.refresh;
  x.user_id = st.session.user_id;
  x.username = st.session.username;
  x.role = st.session.role;
  return x;
}

void persist(self_ptr self) {
  auto& st = self->state;
  st.store_error = st.store.save(current_pair(self));
  st.save_failed = static_cast<bool>(st.store_error);
}

/// Forgets the tokens in memory (tokens.json is the caller's business).
void forget_memory(self_ptr self) {
  auto& st = self->state;
  st.access.clear();
  st.refresh.clear();
  st.session = session_info{};
  st.access_iat = 0;
  ++st.timer_gen; // cancels the proactive refresh / retry
  st.retry.reset();
}

void clear_file(self_ptr self) {
  auto& st = self->state;
  st.store_error = st.store.clear();
  st.save_failed = false;
}

// -- tokens.lock -----------------------------------------------------------------

void arm_lock_poll(self_ptr self) {
  auto& st = self->state;
  if (st.lock_poll_armed)
    return;
  st.lock_poll_armed = true;
  self->delayed_send(self, st.cfg.lock_poll, probe_atom_v);
}

/// Grants tokens.lock to the waiters in turn, as far as possible now.
void pump_lock(self_ptr self) {
  auto& st = self->state;
  while (!st.lock_waiters.empty() && !st.lock.held()) {
    auto& w = st.lock_waiters.front();
    lock_result r;
    token_lock l;
    if (auto err = st.store.try_lock(l)) {
      st.store_error = std::move(err);
      r = lock_result::unavailable;
    } else if (l.held()) {
      st.lock = std::move(l);
      r = lock_result::held;
    } else if (self->clock().now() >= w.deadline) {
      r = lock_result::busy;
    } else {
      arm_lock_poll(self); // another process has it: look again soon
      return;
    }
    auto f = std::move(w.f);
    st.lock_waiters.pop_front();
    try {
      f(r);
    } catch (...) {
      // nothing may escape a handler
    }
  }
}

/// Calls `f` once tokens.lock is ours (or could not be had in time).
void acquire_lock(self_ptr self, std::function<void(lock_result)> f) {
  auto& st = self->state;
  st.lock_waiters.push_back(
    lock_waiter{self->clock().now() + st.cfg.lock_timeout, std::move(f)});
  pump_lock(self);
}

/// Lets go of tokens.lock; the next waiter gets it (asynchronously, so no
/// caller runs inside another one's continuation).
void release_lock(self_ptr self) {
  auto& st = self->state;
  if (!st.lock.held())
    return;
  st.lock.release();
  if (!st.lock_waiters.empty())
    self->send(self, probe_atom_v);
}

/// Reads tokens.json under the lock: the pair another process stored, if
/// the file can be trusted; none if there is no file.
caf::expected<caf::optional<stored_tokens>> read_shared(self_ptr self) {
  auto& st = self->state;
  if (!st.store.persistent() || st.save_failed)
    return make_engine_error(error_class::unknown, "tokens.json not shared");
  return st.store.load();
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

/// Takes over a pair another process stored.
void adopt_stored(self_ptr self, const stored_tokens& t, int64_t now) {
  auth_reply r;
  r.access_token = t.access_token;
  r.refresh_token = t.refresh_token;
  r.user_id = t.user_id;
  r.username = t.username;
  r.role = t.role;
  adopt(self, r, now);
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
  return static_cast<double>(exp) - static_cast<double>(now)
         > seconds_of(st.cfg.refresh_margin_min);
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
  // in double: no int64 overflow whatever exp, iat and now are
  auto lifetime = static_cast<double>(exp) - static_cast<double>(st.access_iat);
  if (lifetime <= 0)
    lifetime = static_cast<double>(exp) - static_cast<double>(now);
  auto fraction = std::clamp(st.cfg.refresh_at_fraction, 0.0, 1.0);
  auto left = std::max(lifetime * fraction,
                       seconds_of(st.cfg.refresh_margin_min));
  auto delay_s = static_cast<double>(exp) - left - static_cast<double>(now);
  if (delay_s <= 0 && only_if_due_later)
    return;
  // saturates: a far-future exp must neither overflow the conversion (UB,
  // in practice a negative delay and then a refresh every second) nor wait
  // longer than a day (the timer then fires early and is set again)
  bool capped = false;
  caf::timespan delay = saturating_delay(delay_s, &capped);
  delay = std::max<caf::timespan>(delay, min_refresh_delay);
  st.timer_capped = capped;
  self->delayed_send(self, delay, tick_atom::value, gen);
}

/// Retries a failed refresh later (network/timeout/server errors).
void schedule_retry(self_ptr self) {
  auto& st = self->state;
  auto gen = ++st.timer_gen;
  st.timer_capped = false;
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
  release_lock(self);
  auto ws = std::move(st.waiters);
  st.waiters.clear();
  for (auto& w : ws)
    f(w);
}

// -- refresh -------------------------------------------------------------------

void on_refresh_reply(self_ptr self, uint64_t epoch, const api_reply& r);
void on_refresh_error(self_ptr self, uint64_t epoch, caf::error err);
void refresh_locked(self_ptr self, uint64_t epoch, lock_result lr);

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
  acquire_lock(self,
               [=](lock_result lr) { refresh_locked(self, epoch, lr); });
}

/// Joins (or starts) the refresh in flight; the promise gets its result.
token_promise join_refresh(self_ptr self) {
  auto rp = self->make_response_promise<std::string>();
  self->state.waiters.push_back(rp);
  start_refresh(self);
  return rp;
}

/// The refresh succeeded (or a newer pair was adopted): everyone waiting
/// gets the new token, watchers learn about it.
void refresh_done(self_ptr self, int64_t now) {
  auto& st = self->state;
  st.refreshing = false;
  release_lock(self);
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

/// Our session is over (rejected, or ended by another process): forget it,
/// tell the waiters, publish auth_expired once. tokens.json is deleted only
/// if it still holds our pair.
void session_over(self_ptr self, caf::error e, bool delete_file) {
  auto& st = self->state;
  st.refreshing = false;
  forget_memory(self);
  if (delete_file)
    clear_file(self);
  release_lock(self);
  auto ws = std::move(st.waiters);
  st.waiters.clear();
  for (auto& w : ws)
    w.deliver(e);
  set_state(self, auth_state::auth_expired); // published once
}

void refresh_failed(self_ptr self, caf::error err) {
  auto& st = self->state;
  auto c = classify(err);
  if (c.cls == error_class::authentication
      || c.cls == error_class::validation) {
    // the refresh token was rejected (used, revoked, expired). If another
    // process stored a newer pair meanwhile, that one is the session now.
    auto mine = current_pair(self);
    bool ours_on_disk = true;
    if (st.lock.held()) {
      if (auto loaded = read_shared(self)) {
        auto plan = plan_refresh(mine, *loaded);
        if (plan == refresh_plan::adopt) {
          auto now = now_s(self);
          adopt_stored(self, **loaded, now);
          if (access_fresh(self, now)) {
            refresh_done(self, now);
            return;
          }
        }
        ours_on_disk = plan == refresh_plan::refresh;
      }
    }
    // No retry: only a new login helps.
    session_over(self, session_expired(c.status, c.code), ours_on_disk);
    return;
  }
  // network, timeout, server error, malformed reply: keep the tokens (the
  // access token may still be valid) and try again later
  st.refreshing = false;
  release_lock(self);
  auto ws = std::move(st.waiters);
  st.waiters.clear();
  for (auto& w : ws)
    w.deliver(err);
  schedule_retry(self);
}

void send_refresh(self_ptr self, uint64_t epoch) {
  auto& st = self->state;
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

/// Continues a refresh once tokens.lock is ours: another process may have
/// refreshed (or ended the session) while we waited.
void refresh_locked(self_ptr self, uint64_t epoch, lock_result lr) {
  auto& st = self->state;
  if (!st.refreshing || epoch != st.refresh_epoch) {
    release_lock(self); // overtaken by a login or logout meanwhile
    return;
  }
  if (lr == lock_result::busy) {
    refresh_failed(self,
                   make_engine_error(error_class::timeout,
                                     "another process sharing the state "
                                     "directory is refreshing the session "
                                     "and did not finish in time"));
    return;
  }
  if (lr == lock_result::held) {
    if (auto loaded = read_shared(self)) {
      auto now = now_s(self);
      switch (plan_refresh(current_pair(self), *loaded)) {
        case refresh_plan::refresh:
          break;
        case refresh_plan::adopt:
          // another process refreshed already: its pair is ours now
          adopt_stored(self, **loaded, now);
          if (access_fresh(self, now)) {
            refresh_done(self, now);
            return;
          }
          break; // refresh the adopted (newest) refresh token
        case refresh_plan::ended:
          session_over(self,
                       make_engine_error(error_class::authentication,
                                         "session ended by another process "
                                         "sharing the state directory, log "
                                         "in again"),
                       false);
          return;
      }
    }
    // (an unreadable file is rewritten after the refresh)
  }
  if (st.refresh.empty()) {
    session_over(self, session_expired(), false);
    return;
  }
  send_refresh(self, epoch);
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
  auto now = now_s(self);
  adopt(self, *parsed, now); // rotation: the new refresh token replaces the old
  persist(self);             // still under the lock
  refresh_done(self, now);
}

void on_refresh_error(self_ptr self, uint64_t epoch, caf::error err) {
  auto& st = self->state;
  if (!st.refreshing || epoch != st.refresh_epoch)
    return;
  refresh_failed(self, std::move(err));
}

// -- logout ----------------------------------------------------------------------

using bool_promise = caf::typed_response_promise<bool>;

void tell_logout(self_ptr self, stored_tokens pair,
                 caf::actor_clock::time_point deadline, bool refreshed,
                 bool_promise rp);

/// The gateway would not take the access token (expired): get a fresh one
/// with the refresh token, then log out with that.
void refresh_for_logout(self_ptr self, stored_tokens pair,
                        caf::actor_clock::time_point deadline,
                        bool_promise rp) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto left = std::chrono::duration_cast<caf::timespan>(deadline - now);
  api_call call;
  try {
    boost::json::object body;
    body["refresh_token"] = pair.refresh_token;
    call.body = boost::json::serialize(body);
  } catch (...) {
    rp.deliver(make_engine_error(error_class::unknown,
                                 "cannot build the refresh request"));
    return;
  }
  call.id = next_call_id(self, "logout-refresh");
  call.method = "POST";
  call.path = "/users/refresh";
  self
    ->request(st.gateway, left + grace, request_atom::value, std::move(call),
              left, false)
    .then(
      [=](const api_reply& r) mutable {
        auto parsed = parse_auth_reply(r);
        if (!parsed) {
          rp.deliver(std::move(parsed.error()));
          return;
        }
        stored_tokens fresh = pair;
        fresh.access_token = parsed->access_token;
        fresh.refresh_token = parsed->refresh_token;
        tell_logout(self, fresh, deadline, true, rp);
      },
      [=](caf::error& err) mutable {
        auto c = classify(err);
        if (c.cls == error_class::authentication
            || c.cls == error_class::validation)
          rp.deliver(true); // the gateway had ended the session already
        else
          rp.deliver(std::move(err));
      });
}

/// POST /users/logout with `pair`; answers `rp` with the outcome.
void tell_logout(self_ptr self, stored_tokens pair,
                 caf::actor_clock::time_point deadline, bool refreshed,
                 bool_promise rp) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (!st.gateway || now >= deadline) {
    rp.deliver(make_engine_error(error_class::timeout,
                                 "no answer from the gateway in time"));
    return;
  }
  auto left = std::chrono::duration_cast<caf::timespan>(deadline - now);
  api_call call;
  try {
    boost::json::object body;
    if (!pair.refresh_token.empty())
      body["refresh_token"] = pair.refresh_token;
    call.body = boost::json::serialize(body);
  } catch (...) {
    call.body = "{}";
  }
  call.id = next_call_id(self, "logout");
  call.method = "POST";
  call.path = "/users/logout";
  call.token = pair.access_token;
  self
    ->request(st.gateway, left + grace, request_atom::value, std::move(call),
              left, false)
    .then([=](const api_reply&) mutable { rp.deliver(true); },
          [=](caf::error& err) mutable {
            auto c = classify(err);
            if (c.cls == error_class::authentication && c.status == 401
                && c.code == "token_expired" && !refreshed
                && !pair.refresh_token.empty()) {
              refresh_for_logout(self, pair, deadline, rp);
              return;
            }
            if (c.cls == error_class::authentication)
              rp.deliver(true); // revoked or unknown: already logged out
            else
              rp.deliver(std::move(err));
          });
}

caf::result<bool> logout(self_ptr self, caf::timespan timeout) {
  auto mine = current_pair(self);
  // nothing may use the tokens any more, from now on
  disown_refresh(self, [](token_promise& w) {
    w.deliver(make_engine_error(error_class::authentication, "logged out"));
  });
  forget_memory(self);
  set_state(self, auth_state::logged_out);
  auto deadline = self->clock().now() + timeout;
  auto rp = self->make_response_promise<bool>();
  acquire_lock(self, [=](lock_result lr) mutable {
    auto& st = self->state;
    // the session of this state directory: another process may have
    // rotated our pair (then the file has the newest one)
    auto pair = mine;
    bool delete_file = true;
    if (lr == lock_result::held || lr == lock_result::busy) {
      if (auto loaded = self->state.store.load(); loaded && *loaded) {
        auto plan = plan_refresh(mine, *loaded);
        if (plan == refresh_plan::adopt)
          pair = **loaded;
        else if (plan == refresh_plan::ended)
          delete_file = false; // another user's session: not ours to end
      }
    }
    if (delete_file)
      clear_file(self);
    release_lock(self);
    if (pair.access_token.empty() && pair.refresh_token.empty()) {
      rp.deliver(true); // there was no session
      return;
    }
    if (timeout <= caf::timespan{0} || !st.gateway) {
      rp.deliver(make_engine_error(error_class::network,
                                   "the gateway was not contacted"));
      return;
    }
    tell_logout(self, pair, deadline, false, rp);
  });
  return rp;
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
            st.retry.reset();
            schedule_refresh(self, now, false);
            // a refresh of the previous session in flight is obsolete: its
            // waiters get the new token
            auto tok = st.access;
            disown_refresh(self, [&](token_promise& w) { w.deliver(tok); });
            st.state = auth_state::logged_in;
            publish(self);
            // written under tokens.lock (a process refreshing the previous
            // session must not overwrite it afterwards); the login is
            // answered once the session is on disk
            acquire_lock(self, [=](lock_result) mutable {
              auto& st = self->state;
              if (st.access == tok)
                persist(self); // (unless another login overtook this one)
              release_lock(self);
              rp.deliver(st.session);
            });
          },
          // non-2xx replies arrive already classified: pass them through
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](logout_atom) -> caf::result<bool> {
      return logout(self, self->state.cfg.request_timeout);
    },
    [=](logout_atom, caf::timespan timeout) -> caf::result<bool> {
      return logout(self, timeout);
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
    [=](probe_atom) {
      self->state.lock_poll_armed = false;
      pump_lock(self);
    },
    [=](tick_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.timer_gen)
        return; // stale timer
      if (st.state != auth_state::logged_in || st.refresh.empty())
        return;
      if (st.timer_capped) {
        schedule_refresh(self, now_s(self), false);
        return;
      }
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
