// aico engine: the resilience layer between the repositories and the
// connection supervisor (see docs/resilience.md).
//
//   repositories / queue ──request──▶ resilient client ──request──▶ supervisor
//                                     │ breaker per endpoint key   ▲
//                                     │ retry + backoff + jitter   │ health (a
//                                     │ Retry-After, shared budget │ breaker opened)
//   breaker listeners ◀── (breaker, breaker_snapshot) on every state change
//
// The resilient client has the supervisor's request clause, so it converts
// to `api_gateway_actor`: repositories, the offline queue and the token
// manager can use either the supervisor or the resilient client.
//
// Per call: the endpoint's breaker admits the attempt (open, or half-open
// with every probe slot taken => fail fast with the circuit error below);
// the attempt goes to the supervisor with the time left; the outcome is
// recorded (network, timeout, 5xx and 429 count as failures; any other
// answer means the endpoint is alive); retryable failures are retried with
// the SAME api_call (same id = idempotency key) after max(backoff with
// jitter, Retry-After) while the attempts, the deadline and the shared
// retry budget allow. Otherwise the ORIGINAL error is returned.
//
// The circuit error: class server_error, status 503, code "circuit_open",
// retry_after_ms = time until the breaker admits probes again, message
// "circuit open for GET /x: ... next probe in N ms". It is classified as
// retryable (503) on purpose: a durable caller (offline queue) must keep the
// item and wait Retry-After instead of parking it; the actor itself never
// retries it, and any retry of it before Retry-After fails fast without
// touching the network.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/supervisor.hpp"
#include "messages/token_manager.hpp"
#include "messages/type_ids.hpp"
#include "src/core/circuit_breaker.hpp"
#include "src/core/retry.hpp"

namespace aico {

/// The error code of the fail-fast error of an open breaker.
inline constexpr const char* circuit_open_code = "circuit_open";

/// True if `err` is the fail-fast error of an open breaker.
bool is_circuit_open(const caf::error& err);

/// One breaker's state, as published to listeners and returned by
/// (breaker_atom).
struct breaker_snapshot {
  /// The endpoint key ("POST /conversations/messages").
  std::string endpoint;
  /// closed, open or half_open (`to_string(breaker_state)`).
  breaker_state state = breaker_state::closed;
  /// Failure share of the closed-state window; on a transition to open
  /// the share and call count that opened it.
  double failure_rate = 0.0;
  /// Outcomes in the closed-state window (or at the opening).
  uint32_t calls = 0;
  /// half_open: probes in flight.
  uint32_t probes_in_flight = 0;
  /// Consecutive openings without a close (1 = first).
  uint32_t open_count = 0;
  /// open: time until the breaker admits probes again; else 0.
  caf::timespan next_probe_in{0};
  /// open: wall-clock time of the next probe (for display); else epoch.
  caf::timestamp open_until;
  /// Why the last transition happened ("failure_rate", "open_wait_elapsed",
  /// "probes_succeeded", "probes_failed", "probe_timed_out", "reset"); empty
  /// if the breaker never changed state.
  std::string reason;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, breaker_snapshot& x) {
  return f(caf::meta::type_name("aico.breaker_snapshot"), x.endpoint, x.state,
           x.failure_rate, x.calls, x.probes_in_flight, x.open_count,
           x.next_probe_in, x.open_until, x.reason);
}

/// "GET /conversations/*/messages open (rate 1.00 over 10 calls, next
/// probe in 5000 ms)".
std::string to_string(const breaker_snapshot& x);

/// Receives every breaker state change (UI, stress tool).
using breaker_listener_actor
  = caf::typed_actor<caf::reacts_to<breaker_atom, breaker_snapshot>>;

using resilient_client_actor = caf::typed_actor<
  /// The supervisor's request clause with breakers and retries in front:
  /// replies with the 2xx reply, the original classified error, or the
  /// circuit error (code "circuit_open").
  caf::replies_to<request_atom, api_call, caf::timespan, bool>::with<
    api_reply>,
  /// Snapshots of every breaker created so far, sorted by endpoint key.
  caf::replies_to<breaker_atom>::with<std::vector<breaker_snapshot>>,
  /// Adds a listener: gets a snapshot of every breaker that is not closed
  /// at once, then every state change. Monitored; removed when it exits.
  caf::reacts_to<watch_atom, breaker_listener_actor>>;

/// The default endpoint key: "METHOD /path" with the query stripped and
/// every path segment that is not a literal route word of docs/protocol.md
/// (users, conversations, messages, current, read, me, ...) replaced by
/// "*": "GET /conversations/c-17/messages?limit=50" ->
/// "GET /conversations/*/messages".
std::string default_endpoint_key(const api_call& call);

struct resilience_config {
  /// Breaker settings for every endpoint (src/core/circuit_breaker.hpp).
  breaker_config breaker;
  /// Per-endpoint overrides, by endpoint key.
  std::map<std::string, breaker_config> breaker_overrides;
  /// Attempts, backoff, Retry-After handling (src/core/retry.hpp).
  retry_policy retry;
  /// Options of the budget created when `budget` is null.
  retry_budget::options budget_options;
  /// The retry budget shared by every repository of a backend. Null = the
  /// client creates one from `budget_options` (all users of this client
  /// share it). Pass the same pointer to several clients to share it wider.
  std::shared_ptr<retry_budget> budget;
  /// Endpoint key of a call; null = default_endpoint_key.
  std::function<std::string(const api_call&)> endpoint_key;
  /// Attempts for one call (including the first); null or a value < 1 =
  /// retry.max_attempts. E.g. 1 for calls that must not be repeated.
  std::function<int(const api_call&)> max_attempts;
  /// Ask the supervisor for a health check when a breaker opens.
  bool health_check_on_open = true;
  /// Extra time given to the supervisor beyond the call's time left before
  /// the client stops waiting (it answers by the deadline itself).
  caf::timespan supervisor_grace = std::chrono::seconds(1);
  /// Seed of the backoff and open-wait jitter (0 = random); for tests.
  uint64_t seed = 0;
};

/// Spawns the resilient client in front of `supervisor` (which is not
/// owned: stopping the client does not stop it).
resilient_client_actor spawn_resilient_client(caf::actor_system& sys,
                                              resilience_config cfg,
                                              supervisor_actor supervisor);

} // namespace aico
