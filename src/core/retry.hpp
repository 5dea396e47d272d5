// aico engine: retry decisions as pure logic (no actors, no timers).
//
// A repository that got a failed attempt classifies it (`classify()` in
// messages/errors.hpp) and asks `retry_policy::decide`. The decision checks,
// in this order:
//
//   1. the class is retryable (network, timeout, server_error except
//      501/505), else `not_retryable` — and the budget is not touched;
//   2. the failure is charged to the shared `retry_budget` (-1 token);
//   3. attempts left (`max_attempts` counts the first call), else
//      `max_attempts`;
//   4. a Retry-After longer than `max_retry_after` means the server does not
//      want us back soon: `retry_after_too_long`, delay = the server's value
//      so the caller (offline queue, UI) can schedule it later. We never
//      retry EARLIER than the server asked;
//   5. the budget still allows retries, else `budget_exhausted`;
//   6. retry after max(backoff.next(), Retry-After).
//
// The budget is gRPC's retry throttling (gRFC A6 `retryThrottling`): a token
// bucket of `max_tokens`; every retryable failure costs 1 token, every
// success refunds `token_ratio`; retries are allowed only while
// tokens > max_tokens / 2. First attempts are never blocked, so the budget
// only removes the amplification of an outage, not the traffic itself. One
// budget is shared by all repositories of an engine (per backend), so three
// repositories retrying independently can't triple the load.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "messages/errors.hpp"
#include "src/core/backoff.hpp"

namespace aico {

/// True for the classes a circuit breaker counts as failures (network,
/// timeout, server_error). Anything else means the endpoint answered.
bool counts_for_breaker(const classification& c);

/// gRPC-style retry throttling. Lock-free: repositories running on
/// different scheduler threads may share one instance (e.g. through a
/// shared_ptr). Tokens are kept in thousandths to avoid float drift.
class retry_budget {
public:
  struct options {
    double max_tokens = 10.0;
    double token_ratio = 0.2;
  };

  explicit retry_budget(options opts);
  retry_budget() : retry_budget(options{}) {
  }

  retry_budget(const retry_budget&) = delete;
  retry_budget& operator=(const retry_budget&) = delete;

  /// A call (any attempt) succeeded: +token_ratio, capped at max_tokens.
  void on_success();

  /// An attempt failed with a retryable class: -1 token, floored at 0.
  void on_failure();

  /// Retries are allowed while tokens > max_tokens / 2.
  bool can_retry() const;

  double tokens() const;
  const options& opts() const { return opts_; }

private:
  void add(int64_t delta);

  options opts_;
  int64_t max_milli_;
  int64_t ratio_milli_;
  std::atomic<int64_t> milli_;
};

enum class retry_reason : uint8_t {
  retry,                ///< retry after `delay`
  not_retryable,        ///< the class says retrying can't help
  max_attempts,         ///< attempts used up
  retry_after_too_long, ///< server asked for more than max_retry_after
  budget_exhausted,     ///< the shared budget is below half: outage
};

const char* to_string(retry_reason r);

struct retry_decision {
  bool retry = false;
  /// retry: wait this long. retry_after_too_long: the server's Retry-After.
  std::chrono::milliseconds delay{0};
  retry_reason reason = retry_reason::not_retryable;
};

struct retry_policy {
  /// Attempts in total, including the first call.
  int max_attempts = 3;
  /// Delays between attempts (jittered after the cap; see backoff.hpp).
  backoff_options backoff_opts{std::chrono::milliseconds{500}, 2.0, 0.2,
                               std::chrono::milliseconds{10000}};
  /// Use the server's Retry-After when it is longer than the backoff.
  bool honour_retry_after = true;
  /// Longest Retry-After we wait for inside one call; beyond it, give up.
  std::chrono::milliseconds max_retry_after{30000};

  /// Decides after attempt number `attempt` (1 = the first call) failed
  /// with `c`. Charges retryable failures to `budget`; advances `bo` only
  /// when it decides to retry. `bo` belongs to this one logical call.
  retry_decision decide(const classification& c, int attempt,
                        retry_budget& budget, backoff& bo) const;
};

} // namespace aico
