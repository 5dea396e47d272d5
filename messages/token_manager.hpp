// aico engine: the token manager actor's interface.
//
//   caller ──login/logout/token/refresh──▶ token manager ──request(no auth)──▶ gateway (supervisor)
//                                               │
//   watchers ◀────────── auth(auth_state) ──────┘       tokens.json (0600) in state_dir
//
// Keeps the access and refresh tokens, refreshes *before* expiry (from the
// JWT `exp`) and on demand after a 401, single-flight: concurrent refresh
// demands share one gateway call, and processes sharing the state directory
// take turns (a lock on tokens.lock; whoever comes second uses the pair the
// first one stored instead of presenting the used refresh token again). A rejected refresh token moves to
// auth_state::auth_expired (published once, no retry storm). Tokens never
// appear in any log line or error message.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "caf/all.hpp"

#include "messages/type_ids.hpp"

namespace aico {

/// How the token manager reaches the gateway: the supervisor's request
/// clause. The bool says whether to attach the access token (false for
/// authenticate/refresh).
using api_gateway_actor = caf::typed_actor<
  caf::replies_to<request_atom, api_call, caf::timespan, bool>::with<
    api_reply>>;

/// Receives authentication state changes.
using auth_listener_actor
  = caf::typed_actor<caf::reacts_to<auth_atom, auth_state>>;

using token_manager_actor = caf::typed_actor<
  /// Logs in with username and password (POST /users/authenticate).
  /// Errors: authentication (bad credentials), network, timeout, ...
  caf::replies_to<login_atom, std::string, std::string>::with<session_info>,
  /// Logs out: forgets the tokens at once (in memory and tokens.json, so
  /// nothing uses them any more), then tells the gateway (POST
  /// /users/logout, which revokes the access token and the refresh token's
  /// family) and waits for its answer within cfg.request_timeout. Replies
  /// true once the gateway confirmed (or there was no session, or the
  /// gateway had ended it already); otherwise the error why the gateway
  /// could not be told (network, timeout, server error). The tokens are
  /// forgotten locally in every case.
  caf::replies_to<logout_atom>::with<bool>,
  /// The same with an explicit deadline for telling the gateway; 0 = do not
  /// try (forget locally only; replies a network error).
  caf::replies_to<logout_atom, caf::timespan>::with<bool>,
  /// A currently valid access token; refreshes first if it is expired or
  /// about to expire. Error authentication if logged out or auth expired.
  caf::replies_to<token_atom>::with<std::string>,
  /// "This token got a 401": refreshes unless a newer token already exists
  /// (then returns it at once). Single-flight. Returns the new token.
  caf::replies_to<refresh_atom, std::string>::with<std::string>,
  /// The current session (error authentication if logged out).
  caf::replies_to<session_atom>::with<session_info>,
  /// Adds a watcher of auth_state changes (gets the current state at once).
  caf::reacts_to<watch_atom, auth_listener_actor>>;

struct token_manager_config {
  /// Directory for tokens.json (created 0700 if missing; file mode 0600).
  /// Empty = keep tokens in memory only.
  std::string state_dir;
  /// Refresh when less than this fraction of the access token's lifetime is
  /// left (and at least refresh_margin_min before expiry).
  double refresh_at_fraction = 0.2;
  caf::timespan refresh_margin_min = std::chrono::seconds(1);
  /// Deadline of each authenticate/refresh call.
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Processes sharing state_dir take turns refreshing (a lock on
  /// STATE_DIR/tokens.lock, held at most request_timeout plus a second by a
  /// live holder). A refresh waits this long for the lock, polling every
  /// lock_poll, then fails retryably (a login or logout writes anyway).
  caf::timespan lock_timeout = std::chrono::seconds(12);
  caf::timespan lock_poll = std::chrono::milliseconds(10);
  /// Wall clock in seconds since epoch (injectable for tests).
  std::function<int64_t()> now_s;
};

token_manager_actor spawn_token_manager(caf::actor_system& sys,
                                        token_manager_config cfg,
                                        api_gateway_actor gateway);

} // namespace aico
