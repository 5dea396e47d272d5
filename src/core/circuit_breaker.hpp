// aico engine: per-endpoint circuit breakers as pure logic (no actors, no
// I/O, no threads). Time comes from an injected clock, so tests drive it in
// virtual time. One breaker is owned by one actor; it is not thread-safe.
//
// States:
//
//            failure rate >= threshold          open wait elapsed
//   closed ─────────────────────────────▶ open ─────────────────▶ half_open
//     ▲     (>= minimum_calls in window)   ▲                          │
//     │                                    │  failures_to_reopen      │
//     │                                    └──────────────────────────┤
//     │             successes_to_close                                │
//     └───────────────────────────────────────────────────────────────┘
//
// - closed: every call is admitted. Outcomes go into a TIME-BASED sliding
//   window (`window`, split into `window_buckets` buckets). Once the window
//   holds at least `minimum_calls` outcomes and the failure share reaches
//   `failure_rate_threshold`, the breaker opens.
// - open: calls are rejected at once with `retry_after` = time left. The
//   wait comes from a `backoff` (src/core/backoff.hpp): `open_wait.initial`
//   for the first opening, growing by `open_wait.multiplier` for every
//   re-open without an intermediate close, capped at `open_wait.max`,
//   jittered after the cap. It resets when the breaker closes.
// - half_open: at most `half_open_max_probes` calls ("probes") are in
//   flight at once; the next one is rejected. Every probe has a deadline
//   (`probe_timeout`): a probe that never reports back is counted as a
//   FAILED probe once the deadline passes and its slot is freed, so the
//   half-open state can never get stuck on lost permits (resilience4j#903,
//   #1090). `successes_to_close` successful probes close the breaker,
//   `failures_to_reopen` failed probes re-open it (default 2: one flaky
//   probe is tolerated, Polly#2381).
//
// Time-driven transitions (open -> half_open, probe timeouts) are applied
// lazily by every call, or explicitly by `tick()`: the owner schedules a
// timer for `next_deadline()` so they also happen without traffic.
//
// Which outcomes count as failures is the caller's decision: the breaker
// takes a bool. By convention (see `counts_for_breaker` in retry.hpp) a
// network, timeout or server_error classification is a failure; any other
// answer (4xx, auth errors) means the endpoint is alive and is reported as
// a success. A call that ended without an outcome (cancelled) is `release`d.
//
// Outcomes are only counted if they belong to the current phase: a permit
// taken before a state change (e.g. a closed-state call that completes
// after the breaker opened, or a probe that already timed out) is ignored.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/core/backoff.hpp"

namespace aico {

using clock_fn = std::function<std::chrono::steady_clock::time_point()>;

enum class breaker_state : uint8_t { closed, open, half_open };

const char* to_string(breaker_state s);

/// Breaker configuration. Defaults are discussed in docs/resilience.md.
struct breaker_config {
  /// Failure share in the window at or above which the breaker opens.
  double failure_rate_threshold = 0.5;
  /// Length of the time-based sliding window of the closed state.
  std::chrono::milliseconds window{10000};
  /// Number of buckets the window is split into (its granularity).
  uint32_t window_buckets = 10;
  /// Outcomes the window must hold before the rate is evaluated.
  uint32_t minimum_calls = 10;
  /// Open wait: first wait, growth per re-open, jitter, cap.
  backoff_options open_wait{std::chrono::milliseconds{5000}, 2.0, 0.2,
                            std::chrono::milliseconds{60000}};
  /// Probes admitted concurrently in half-open.
  uint32_t half_open_max_probes = 3;
  /// A probe that has not reported back after this long counts as failed.
  std::chrono::milliseconds probe_timeout{5000};
  /// Successful probes (in one half-open phase) that close the breaker.
  uint32_t successes_to_close = 3;
  /// Failed probes (in one half-open phase) that re-open the breaker.
  uint32_t failures_to_reopen = 2;
};

/// Why the breaker changed state.
enum class transition_reason : uint8_t {
  failure_rate,      ///< closed -> open
  open_wait_elapsed, ///< open -> half_open
  probes_succeeded,  ///< half_open -> closed
  probes_failed,     ///< half_open -> open (failed reports)
  probe_timed_out,   ///< half_open -> open (the last failure was a timeout)
  reset,             ///< any -> closed (manual)
};

const char* to_string(transition_reason r);

/// One state change, passed to the transition callback.
struct breaker_transition {
  breaker_state from;
  breaker_state to;
  transition_reason reason;
  std::chrono::steady_clock::time_point at;
  /// to == open: how long the breaker stays open.
  std::chrono::milliseconds open_wait{0};
  /// to == open: consecutive openings without a close (1 = first).
  uint32_t open_count = 0;
  /// closed -> open: the window's outcomes and failure share.
  uint32_t calls = 0;
  double failure_rate = 0.0;
};

/// Proof that a call was admitted; hand it back with the outcome.
struct breaker_permit {
  uint64_t id = 0;    ///< unique per breaker, 0 = no permit
  uint64_t phase = 0; ///< state generation the permit belongs to
  bool probe = false; ///< admitted in half_open
};

/// The answer of `try_acquire`.
struct breaker_admission {
  bool allowed = false;
  breaker_permit permit;                   ///< valid if allowed
  std::chrono::milliseconds retry_after{0}; ///< hint if rejected
  breaker_state state = breaker_state::closed;

  explicit operator bool() const { return allowed; }
};

class circuit_breaker {
public:
  using transition_fn = std::function<void(const breaker_transition&)>;

  /// `clock` defaults to steady_clock::now. `on_transition` is called
  /// synchronously on every state change; it must not call back into this
  /// breaker. `seed` makes the open-wait jitter reproducible (0 = random).
  explicit circuit_breaker(breaker_config cfg = {}, clock_fn clock = {},
                           transition_fn on_transition = {},
                           uint64_t seed = 0);

  /// Asks to make one call. Rejected while open, or in half_open when all
  /// `half_open_max_probes` probe slots are taken.
  breaker_admission try_acquire();

  /// The call succeeded (or failed in a way that does not count).
  /// Returns false if the outcome was ignored (stale or unknown permit).
  bool on_success(const breaker_permit& p);

  /// The call failed in a way that counts (network, timeout, server_error).
  /// Returns false if the outcome was ignored (stale or unknown permit).
  bool on_failure(const breaker_permit& p);

  /// Convenience: on_failure if `failed`, else on_success.
  bool on_result(const breaker_permit& p, bool failed) {
    return failed ? on_failure(p) : on_success(p);
  }

  /// The call was abandoned without an outcome: frees a probe slot without
  /// counting anything. Returns false if the permit was stale or unknown.
  bool release(const breaker_permit& p);

  /// Applies time-driven transitions (open wait elapsed, probe timeouts).
  void tick();

  /// When `tick()` will next have something to do: the end of the open
  /// wait, or the earliest probe deadline; none when closed or idle.
  std::optional<std::chrono::steady_clock::time_point> next_deadline() const;

  /// Forces the breaker closed (operator override); clears all counters.
  void reset();

  // -- observers --------------------------------------------------------------

  /// The stored state. Call `tick()` first to apply elapsed time.
  breaker_state state() const { return state_; }
  /// Outcomes and failures currently in the closed-state window.
  uint32_t window_calls() const;
  uint32_t window_failures() const;
  /// Probes in flight (half_open).
  std::size_t probes_in_flight() const { return probes_.size(); }
  /// Probe outcomes counted in the current half-open phase.
  uint32_t probe_successes() const { return probe_ok_; }
  uint32_t probe_failures() const { return probe_failed_; }
  /// Consecutive openings without a close.
  uint32_t open_count() const { return open_count_; }
  /// End of the current open wait (meaningful when open).
  std::chrono::steady_clock::time_point open_until() const {
    return open_until_;
  }
  const breaker_config& config() const { return cfg_; }

private:
  using time_point = std::chrono::steady_clock::time_point;

  struct bucket {
    int64_t index = -1;
    uint32_t calls = 0;
    uint32_t failures = 0;
  };

  struct probe {
    uint64_t id;
    time_point deadline;
  };

  struct window_sum {
    uint32_t calls = 0;
    uint32_t failures = 0;
  };

  time_point now() const { return clock_(); }
  void advance(time_point now);
  void record(time_point now, bool failed);
  int64_t bucket_index(time_point t) const;
  window_sum sum_window(time_point t) const;
  void transition(breaker_state to, transition_reason why, time_point now);
  void open(transition_reason why, time_point now);
  bool probe_outcome(const breaker_permit& p, bool failed, time_point now);
  bool current(const breaker_permit& p) const { return p.phase == phase_; }
  void clear_window();

  breaker_config cfg_;
  clock_fn clock_;
  transition_fn on_transition_;
  backoff open_backoff_;
  time_point origin_;
  std::chrono::nanoseconds bucket_width_;
  breaker_state state_ = breaker_state::closed;
  uint64_t phase_ = 1;
  uint64_t next_id_ = 1;
  std::vector<bucket> buckets_;
  // closed -> open details for the transition record
  uint32_t last_calls_ = 0;
  double last_rate_ = 0.0;
  // open
  time_point open_until_{};
  std::chrono::milliseconds last_wait_{0};
  uint32_t open_count_ = 0;
  // half_open
  std::vector<probe> probes_;
  uint32_t probe_ok_ = 0;
  uint32_t probe_failed_ = 0;
};

/// One breaker per endpoint key (e.g. "POST /conversations/messages"),
/// created on first use with the registry's config, clock and seed.
class breaker_registry {
public:
  using transition_fn =
    std::function<void(const std::string& key, const breaker_transition&)>;

  explicit breaker_registry(breaker_config cfg = {}, clock_fn clock = {},
                            transition_fn on_transition = {},
                            uint64_t seed = 0);

  /// The breaker of `key`, created if needed. References stay valid for
  /// the registry's lifetime.
  circuit_breaker& get(const std::string& key);

  /// The breaker of `key` if it exists.
  circuit_breaker* find(const std::string& key);
  const circuit_breaker* find(const std::string& key) const;

  /// Uses `cfg` instead of the default for `key` (before its first use).
  void configure(const std::string& key, breaker_config cfg);

  /// `tick()` on every breaker.
  void tick();

  /// The earliest `next_deadline()` of all breakers.
  std::optional<std::chrono::steady_clock::time_point> next_deadline() const;

  /// Keys of the breakers that are not closed.
  std::vector<std::string> not_closed() const;

  std::size_t size() const { return breakers_.size(); }

private:
  breaker_config cfg_;
  clock_fn clock_;
  std::shared_ptr<transition_fn> on_transition_;
  uint64_t seed_;
  uint64_t created_ = 0;
  std::unordered_map<std::string, breaker_config> overrides_;
  std::unordered_map<std::string, std::unique_ptr<circuit_breaker>> breakers_;
};

} // namespace aico
