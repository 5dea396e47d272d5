#include "src/core/retry.hpp"

#include <algorithm>
#include <cmath>

namespace aico {

bool counts_for_breaker(const classification& c) {
  switch (c.cls) {
    case error_class::network:
    case error_class::timeout:
    case error_class::server_error:
      return true;
    default:
      return false;
  }
}

// -- retry_budget -------------------------------------------------------------

namespace {

int64_t to_milli(double x) {
  return static_cast<int64_t>(std::llround(std::max(x, 0.0) * 1000.0));
}

} // namespace

retry_budget::retry_budget(options opts)
  : opts_(opts),
    max_milli_(std::max<int64_t>(to_milli(opts.max_tokens), 1)),
    ratio_milli_(to_milli(opts.token_ratio)),
    milli_(max_milli_) {
}

void retry_budget::add(int64_t delta) {
  auto cur = milli_.load(std::memory_order_relaxed);
  int64_t next;
  do {
    next = std::clamp<int64_t>(cur + delta, 0, max_milli_);
  } while (!milli_.compare_exchange_weak(cur, next, std::memory_order_relaxed));
}

void retry_budget::on_success() {
  add(ratio_milli_);
}

void retry_budget::on_failure() {
  add(-1000);
}

bool retry_budget::can_retry() const {
  // tokens > max/2, compared as 2 * tokens > max to stay exact.
  return 2 * milli_.load(std::memory_order_relaxed) > max_milli_;
}

double retry_budget::tokens() const {
  return static_cast<double>(milli_.load(std::memory_order_relaxed)) / 1000.0;
}

// -- retry_policy -------------------------------------------------------------

const char* to_string(retry_reason r) {
  switch (r) {
    case retry_reason::retry:
      return "retry";
    case retry_reason::not_retryable:
      return "not_retryable";
    case retry_reason::max_attempts:
      return "max_attempts";
    case retry_reason::retry_after_too_long:
      return "retry_after_too_long";
    case retry_reason::budget_exhausted:
      return "budget_exhausted";
  }
  return "?";
}

retry_decision retry_policy::decide(const classification& c, int attempt,
                                    retry_budget& budget, backoff& bo) const {
  using std::chrono::milliseconds;
  retry_decision res;
  if (!c.retryable) {
    res.reason = retry_reason::not_retryable;
    return res;
  }
  budget.on_failure();
  if (attempt >= std::max(max_attempts, 1)) {
    res.reason = retry_reason::max_attempts;
    return res;
  }
  milliseconds server_wait{0};
  if (honour_retry_after && c.retry_after_ms >= 0) {
    server_wait = milliseconds{c.retry_after_ms};
    if (server_wait > max_retry_after) {
      res.reason = retry_reason::retry_after_too_long;
      res.delay = server_wait;
      return res;
    }
  }
  if (!budget.can_retry()) {
    res.reason = retry_reason::budget_exhausted;
    return res;
  }
  res.retry = true;
  res.reason = retry_reason::retry;
  res.delay = std::max(bo.next(), server_wait);
  return res;
}

} // namespace aico
