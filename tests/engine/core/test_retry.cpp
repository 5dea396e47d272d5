// Retry decisions and the shared retry budget, step by step (no timers: the
// decision only returns a delay; the caller schedules it).
#include <gtest/gtest.h>

#include "src/core/retry.hpp"

using namespace aico;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using rr = retry_reason;

namespace {

/// The default policy without jitter: delays 500 ms, 1 s, 2 s, ... 10 s.
retry_policy exact() {
  retry_policy p;
  p.backoff_opts.jitter = 0.0;
  return p;
}

/// A classification as classify() produces it for a gateway status.
classification status(int32_t code, const std::string& retry_after = {}) {
  return classify(make_status_error(code, R"({"code":"x","message":"m"})",
                                    retry_after));
}

classification network() {
  return classify(make_engine_error(error_class::network, "refused"));
}

} // namespace

TEST(retry, non_retryable_classes_are_never_retried) {
  auto policy = exact();
  retry_budget budget;
  backoff bo{policy.backoff_opts, 1};
  // 400, 401, 403, 404, 422: the request or the credentials are wrong;
  // 501: the endpoint does not exist. Retrying can't help.
  for (int code : {400, 401, 403, 404, 409, 422, 501}) {
    auto d = policy.decide(status(code), 1, budget, bo);
    EXPECT_FALSE(d.retry) << code;
    EXPECT_EQ(d.reason, rr::not_retryable) << code;
  }
  // An unknown error is not retried either.
  auto d = policy.decide(classify(caf::make_error(caf::sec::unexpected_message)),
                         1, budget, bo);
  EXPECT_EQ(d.reason, rr::not_retryable);
  // They did not cost budget (they say nothing about overload) and did not
  // advance the backoff.
  EXPECT_DOUBLE_EQ(budget.tokens(), 10.0);
  EXPECT_EQ(bo.attempts(), 0u);
}

TEST(retry, retryable_failures_back_off_until_max_attempts) {
  auto policy = exact(); // max_attempts 3 = the first call + 2 retries
  retry_budget budget;
  backoff bo{policy.backoff_opts, 1};
  // Attempt 1 failed (connection refused): retry after 500 ms.
  auto d = policy.decide(network(), 1, budget, bo);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.reason, rr::retry);
  EXPECT_EQ(d.delay, 500ms);
  // Attempt 2 failed (503): retry after 1 s.
  d = policy.decide(status(503), 2, budget, bo);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 1000ms);
  // Attempt 3 failed (timeout): that was the last one.
  d = policy.decide(classify(caf::make_error(caf::sec::request_timeout)), 3,
                    budget, bo);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, rr::max_attempts);
  // All three failures were charged to the budget.
  EXPECT_DOUBLE_EQ(budget.tokens(), 7.0);
}

TEST(retry, retry_after_wins_when_longer_than_the_backoff) {
  auto policy = exact();
  retry_budget budget;
  backoff bo{policy.backoff_opts, 1};
  // 429 with Retry-After: 3 -> wait 3 s, not the 500 ms backoff.
  auto d = policy.decide(status(429, "3"), 1, budget, bo);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 3000ms);
  // 503 with Retry-After: 0.1 -> the backoff (1 s now) is longer and wins.
  d = policy.decide(status(503, "0.1"), 2, budget, bo);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 1000ms);
}

TEST(retry, retry_after_beyond_the_max_gives_up_with_the_hint) {
  auto policy = exact(); // max_retry_after 30 s
  retry_budget budget;
  backoff bo{policy.backoff_opts, 1};
  // Retry-After: 120 -> we won't hold the call for 2 minutes, and we won't
  // come back earlier than asked either. The hint goes to the caller.
  auto d = policy.decide(status(503, "120"), 1, budget, bo);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, rr::retry_after_too_long);
  EXPECT_EQ(d.delay, 120s);
  // Exactly the max is still fine.
  d = policy.decide(status(503, "30"), 1, budget, bo);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 30s);
}

TEST(retry, retry_after_can_be_ignored) {
  auto policy = exact();
  policy.honour_retry_after = false;
  retry_budget budget;
  backoff bo{policy.backoff_opts, 1};
  auto d = policy.decide(status(429, "120"), 1, budget, bo);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 500ms);
}

TEST(retry, budget_is_exhausted_by_an_outage_and_recovers_with_successes) {
  auto policy = exact();
  retry_budget budget; // 10 tokens, +0.2 per success, retry while > 5
  // An outage: every first attempt fails. Each failure costs one token.
  // Failures 1..4 leave 9, 8, 7, 6 tokens (> 5): retries allowed.
  for (int i = 1; i <= 4; ++i) {
    backoff bo{policy.backoff_opts, 1};
    auto d = policy.decide(network(), 1, budget, bo);
    EXPECT_TRUE(d.retry) << i;
  }
  // Failure 5 leaves 5 tokens: not > 5, so no more retries. The outage is
  // no longer amplified: each call is tried once.
  backoff bo{policy.backoff_opts, 1};
  auto d = policy.decide(network(), 1, budget, bo);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, rr::budget_exhausted);
  EXPECT_FALSE(budget.can_retry());
  // The outage goes on: the bucket drains to 0 and stays there.
  for (int i = 0; i < 20; ++i)
    policy.decide(network(), 1, budget, bo);
  EXPECT_DOUBLE_EQ(budget.tokens(), 0.0);
  // The gateway is back. 25 successes refill 25 * 0.2 = 5 tokens: still
  // not above half ...
  for (int i = 0; i < 25; ++i)
    budget.on_success();
  EXPECT_DOUBLE_EQ(budget.tokens(), 5.0);
  EXPECT_FALSE(budget.can_retry());
  // ... the 26th makes 5.2 > 5: the budget is above half again.
  budget.on_success();
  EXPECT_TRUE(budget.can_retry());
  // But a failure is charged BEFORE the check (as in gRPC): a 502 now
  // leaves 4.2 tokens, so it is not retried yet.
  backoff fresh{policy.backoff_opts, 1};
  d = policy.decide(status(502), 1, budget, fresh);
  EXPECT_EQ(d.reason, rr::budget_exhausted);
  EXPECT_DOUBLE_EQ(budget.tokens(), 4.2);
  // 10 more successes (6.2 tokens): the next failure leaves 5.2 and is
  // retried.
  for (int i = 0; i < 10; ++i)
    budget.on_success();
  d = policy.decide(status(502), 1, budget, fresh);
  EXPECT_TRUE(d.retry);
  EXPECT_DOUBLE_EQ(budget.tokens(), 5.2);
  // Successes never fill beyond max_tokens.
  for (int i = 0; i < 1000; ++i)
    budget.on_success();
  EXPECT_DOUBLE_EQ(budget.tokens(), 10.0);
}

TEST(retry, one_budget_is_shared_by_all_repositories) {
  // Three repositories with their own policies, one budget.
  retry_budget budget;
  retry_policy chat = exact(), users = exact(), system = exact();
  backoff b1{chat.backoff_opts, 1}, b2{users.backoff_opts, 2}, b3{system.backoff_opts, 3};
  // Each fails twice during the same outage: 6 tokens spent together.
  for (int i = 0; i < 2; ++i) {
    chat.decide(network(), 1, budget, b1);
    users.decide(network(), 1, budget, b2);
    system.decide(network(), 1, budget, b3);
  }
  EXPECT_DOUBLE_EQ(budget.tokens(), 4.0);
  // So none of them retries any more, although each failed only twice.
  EXPECT_EQ(chat.decide(status(503), 1, budget, b1).reason,
            rr::budget_exhausted);
}

TEST(retry, backoff_jitter_stays_within_bounds) {
  retry_policy policy; // jitter 0.2
  retry_budget budget;
  backoff bo{policy.backoff_opts, 42};
  auto d = policy.decide(network(), 1, budget, bo);
  EXPECT_GE(d.delay, 400ms);
  EXPECT_LE(d.delay, 600ms);
}

TEST(retry, budget_options_are_configurable) {
  retry_budget budget{{4.0, 1.0}}; // retries while > 2 tokens
  budget.on_failure();
  EXPECT_TRUE(budget.can_retry()); // 3
  budget.on_failure();
  EXPECT_FALSE(budget.can_retry()); // 2
  budget.on_success();
  EXPECT_TRUE(budget.can_retry()); // 3
}

TEST(retry, breaker_counts_only_health_failures) {
  EXPECT_TRUE(counts_for_breaker(network()));
  EXPECT_TRUE(counts_for_breaker(status(503)));
  EXPECT_TRUE(counts_for_breaker(status(429)));
  EXPECT_TRUE(counts_for_breaker(
    classify(caf::make_error(caf::sec::request_timeout))));
  // The endpoint answered: it is healthy as far as the breaker is concerned.
  EXPECT_FALSE(counts_for_breaker(status(401)));
  EXPECT_FALSE(counts_for_breaker(status(404)));
  EXPECT_FALSE(counts_for_breaker(status(422)));
}
