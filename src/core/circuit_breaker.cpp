#include "src/core/circuit_breaker.hpp"

#include <algorithm>

namespace aico {

using std::chrono::milliseconds;
using time_point = std::chrono::steady_clock::time_point;

const char* to_string(breaker_state s) {
  switch (s) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half_open";
  }
  return "?";
}

const char* to_string(transition_reason r) {
  switch (r) {
    case transition_reason::failure_rate:
      return "failure_rate";
    case transition_reason::open_wait_elapsed:
      return "open_wait_elapsed";
    case transition_reason::probes_succeeded:
      return "probes_succeeded";
    case transition_reason::probes_failed:
      return "probes_failed";
    case transition_reason::probe_timed_out:
      return "probe_timed_out";
    case transition_reason::reset:
      return "reset";
  }
  return "?";
}

namespace {

breaker_config sanitize(breaker_config cfg) {
  cfg.failure_rate_threshold = std::clamp(cfg.failure_rate_threshold, 0.0, 1.0);
  if (cfg.failure_rate_threshold <= 0.0)
    cfg.failure_rate_threshold = 1.0; // "0" would open on the first call
  cfg.window = std::max(cfg.window, milliseconds{1});
  cfg.window_buckets = std::max<uint32_t>(cfg.window_buckets, 1);
  cfg.minimum_calls = std::max<uint32_t>(cfg.minimum_calls, 1);
  cfg.half_open_max_probes = std::max<uint32_t>(cfg.half_open_max_probes, 1);
  cfg.probe_timeout = std::max(cfg.probe_timeout, milliseconds{1});
  cfg.successes_to_close = std::max<uint32_t>(cfg.successes_to_close, 1);
  cfg.failures_to_reopen = std::max<uint32_t>(cfg.failures_to_reopen, 1);
  return cfg;
}

milliseconds ceil_ms(std::chrono::steady_clock::duration d) {
  return std::max(std::chrono::ceil<milliseconds>(d), milliseconds{0});
}

} // namespace

// -- circuit_breaker ----------------------------------------------------------

circuit_breaker::circuit_breaker(breaker_config cfg, clock_fn clock,
                                 transition_fn on_transition, uint64_t seed)
  : cfg_(sanitize(cfg)),
    clock_(clock ? std::move(clock)
                 : clock_fn{[] { return std::chrono::steady_clock::now(); }}),
    on_transition_(std::move(on_transition)),
    open_backoff_(cfg_.open_wait, seed),
    origin_(clock_()),
    bucket_width_(std::max<std::chrono::nanoseconds::rep>(
      std::chrono::nanoseconds{cfg_.window}.count() / cfg_.window_buckets,
      1)),
    buckets_(cfg_.window_buckets) {
}

int64_t circuit_breaker::bucket_index(time_point t) const {
  return static_cast<int64_t>((t - origin_) / bucket_width_);
}

void circuit_breaker::clear_window() {
  std::fill(buckets_.begin(), buckets_.end(), bucket{});
}

circuit_breaker::window_sum
circuit_breaker::sum_window(time_point t) const {
  auto cur = bucket_index(t);
  auto n = static_cast<int64_t>(buckets_.size());
  window_sum res;
  for (auto& b : buckets_) {
    if (b.index > cur - n && b.index <= cur) {
      res.calls += b.calls;
      res.failures += b.failures;
    }
  }
  return res;
}

uint32_t circuit_breaker::window_calls() const {
  return sum_window(now()).calls;
}

uint32_t circuit_breaker::window_failures() const {
  return sum_window(now()).failures;
}

void circuit_breaker::record(time_point t, bool failed) {
  auto idx = bucket_index(t);
  auto& b = buckets_[static_cast<std::size_t>(idx) % buckets_.size()];
  if (b.index != idx)
    b = bucket{idx, 0, 0};
  ++b.calls;
  if (failed)
    ++b.failures;
}

void circuit_breaker::transition(breaker_state to, transition_reason why,
                                 time_point t) {
  auto from = state_;
  state_ = to;
  ++phase_; // every permit handed out so far becomes stale
  probes_.clear();
  probe_ok_ = 0;
  probe_failed_ = 0;
  if (to == breaker_state::closed) {
    clear_window();
    open_count_ = 0;
    open_backoff_.reset();
  }
  if (!on_transition_)
    return;
  breaker_transition rec{from, to, why, t};
  if (to == breaker_state::open) {
    rec.open_wait = last_wait_;
    rec.open_count = open_count_;
    if (from == breaker_state::closed) {
      rec.calls = last_calls_;
      rec.failure_rate = last_rate_;
    }
  }
  on_transition_(rec);
}

void circuit_breaker::open(transition_reason why, time_point t) {
  ++open_count_;
  last_wait_ = open_backoff_.next();
  open_until_ = t + last_wait_;
  clear_window();
  transition(breaker_state::open, why, t);
}

void circuit_breaker::advance(time_point t) {
  if (state_ == breaker_state::open && t >= open_until_)
    transition(breaker_state::half_open, transition_reason::open_wait_elapsed,
               t);
  // Expire probes in deadline order; each one is a failed probe.
  while (state_ == breaker_state::half_open && !probes_.empty()) {
    auto first = std::min_element(probes_.begin(), probes_.end(),
                                  [](const probe& a, const probe& b) {
                                    return a.deadline < b.deadline;
                                  });
    if (first->deadline > t)
      break;
    probes_.erase(first);
    if (++probe_failed_ >= cfg_.failures_to_reopen)
      open(transition_reason::probe_timed_out, t);
  }
}

void circuit_breaker::tick() {
  advance(now());
}

breaker_admission circuit_breaker::try_acquire() {
  auto t = now();
  advance(t);
  breaker_admission res;
  res.state = state_;
  switch (state_) {
    case breaker_state::closed:
      res.allowed = true;
      res.permit = breaker_permit{next_id_++, phase_, false};
      break;
    case breaker_state::open:
      res.retry_after = ceil_ms(open_until_ - t);
      break;
    case breaker_state::half_open:
      if (probes_.size() < cfg_.half_open_max_probes) {
        res.allowed = true;
        res.permit = breaker_permit{next_id_++, phase_, true};
        probes_.push_back(probe{res.permit.id, t + cfg_.probe_timeout});
      } else {
        auto earliest = probes_.front().deadline;
        for (auto& p : probes_)
          earliest = std::min(earliest, p.deadline);
        res.retry_after = ceil_ms(earliest - t);
      }
      break;
  }
  return res;
}

bool circuit_breaker::probe_outcome(const breaker_permit& p, bool failed,
                                    time_point t) {
  auto i = std::find_if(probes_.begin(), probes_.end(),
                        [&](const probe& x) { return x.id == p.id; });
  if (i == probes_.end())
    return false; // timed out already (and counted as failed)
  probes_.erase(i);
  if (failed) {
    if (++probe_failed_ >= cfg_.failures_to_reopen)
      open(transition_reason::probes_failed, t);
  } else {
    if (++probe_ok_ >= cfg_.successes_to_close)
      transition(breaker_state::closed, transition_reason::probes_succeeded,
                 t);
  }
  return true;
}

bool circuit_breaker::on_success(const breaker_permit& p) {
  auto t = now();
  advance(t);
  if (p.id == 0 || !current(p))
    return false;
  if (state_ == breaker_state::closed && !p.probe) {
    record(t, false);
    return true;
  }
  if (state_ == breaker_state::half_open && p.probe)
    return probe_outcome(p, false, t);
  return false;
}

bool circuit_breaker::on_failure(const breaker_permit& p) {
  auto t = now();
  advance(t);
  if (p.id == 0 || !current(p))
    return false;
  if (state_ == breaker_state::closed && !p.probe) {
    record(t, true);
    auto w = sum_window(t);
    if (w.calls >= cfg_.minimum_calls) {
      auto rate = static_cast<double>(w.failures) / static_cast<double>(w.calls);
      if (rate >= cfg_.failure_rate_threshold) {
        last_calls_ = w.calls;
        last_rate_ = rate;
        open(transition_reason::failure_rate, t);
      }
    }
    return true;
  }
  if (state_ == breaker_state::half_open && p.probe)
    return probe_outcome(p, true, t);
  return false;
}

bool circuit_breaker::release(const breaker_permit& p) {
  advance(now());
  if (p.id == 0 || !current(p))
    return false;
  if (!p.probe)
    return state_ == breaker_state::closed;
  auto i = std::find_if(probes_.begin(), probes_.end(),
                        [&](const probe& x) { return x.id == p.id; });
  if (i == probes_.end())
    return false;
  probes_.erase(i);
  return true;
}

std::optional<time_point> circuit_breaker::next_deadline() const {
  if (state_ == breaker_state::open)
    return open_until_;
  if (state_ == breaker_state::half_open && !probes_.empty()) {
    auto earliest = probes_.front().deadline;
    for (auto& p : probes_)
      earliest = std::min(earliest, p.deadline);
    return earliest;
  }
  return std::nullopt;
}

void circuit_breaker::reset() {
  if (state_ != breaker_state::closed) {
    transition(breaker_state::closed, transition_reason::reset, now());
  } else {
    ++phase_;
    clear_window();
    open_count_ = 0;
    open_backoff_.reset();
  }
}

// -- breaker_registry ---------------------------------------------------------

breaker_registry::breaker_registry(breaker_config cfg, clock_fn clock,
                                   transition_fn on_transition, uint64_t seed)
  : cfg_(cfg),
    clock_(clock ? std::move(clock)
                 : clock_fn{[] { return std::chrono::steady_clock::now(); }}),
    on_transition_(std::make_shared<transition_fn>(std::move(on_transition))),
    seed_(seed) {
}

circuit_breaker& breaker_registry::get(const std::string& key) {
  if (auto i = breakers_.find(key); i != breakers_.end())
    return *i->second;
  auto cfg = cfg_;
  if (auto o = overrides_.find(key); o != overrides_.end())
    cfg = o->second;
  circuit_breaker::transition_fn cb;
  if (*on_transition_)
    cb = [fn = on_transition_, key](const breaker_transition& t) {
      (*fn)(key, t);
    };
  auto seed = seed_ == 0 ? 0 : seed_ + created_;
  ++created_;
  auto ptr = std::make_unique<circuit_breaker>(cfg, clock_, std::move(cb),
                                               seed);
  auto& ref = *ptr;
  breakers_.emplace(key, std::move(ptr));
  return ref;
}

circuit_breaker* breaker_registry::find(const std::string& key) {
  auto i = breakers_.find(key);
  return i != breakers_.end() ? i->second.get() : nullptr;
}

const circuit_breaker* breaker_registry::find(const std::string& key) const {
  auto i = breakers_.find(key);
  return i != breakers_.end() ? i->second.get() : nullptr;
}

void breaker_registry::configure(const std::string& key, breaker_config cfg) {
  overrides_[key] = cfg;
}

void breaker_registry::tick() {
  for (auto& kv : breakers_)
    kv.second->tick();
}

std::optional<time_point> breaker_registry::next_deadline() const {
  std::optional<time_point> res;
  for (auto& kv : breakers_)
    if (auto d = kv.second->next_deadline(); d && (!res || *d < *res))
      res = d;
  return res;
}

std::vector<std::string> breaker_registry::not_closed() const {
  std::vector<std::string> res;
  for (auto& kv : breakers_)
    if (kv.second->state() != breaker_state::closed)
      res.push_back(kv.first);
  std::sort(res.begin(), res.end());
  return res;
}

} // namespace aico
