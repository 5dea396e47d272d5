// aico engine: the API calls in flight in the supervisor, as pure logic
// (no actors, no clock: every event carries `now`).
//
// Each call has ONE absolute deadline (api_call::deadline, set once when the
// call enters the engine; every transport answers by it). The router keeps,
// per call: its attempts (sends so far, which also number the current send
// so a late answer to an earlier one is ignored), the transport slot a send
// is in flight on, whether it waits for a link, and whether it was already
// refreshed once after a 401. The supervisor asks it what to do:
//
//   * dispatch(key, active, now): send on the active slot (attempt number,
//     time left), wait for a link (queued once, in order), or answer with a
//     timeout (no time left);
//   * answered(key, attempt): the answer to this send is the current one
//     (not stale); no send is in flight afterwards;
//   * after_reply(key, status, can_refresh): refresh the token once on a 401
//     of an authenticated call, otherwise deliver;
//   * after_error(key, class, now): a network error is re-sent (same id) on
//     whatever is active next while time and attempts are left; anything
//     else fails the call;
//   * in_flight_on(slot): the sends a transport that stopped without
//     answering left behind (they fail over like a network error);
//   * expire(now) / next deadline / arm(now): ONE timer for all deadlines.
//
// `Payload` is what the actor needs to answer (its response promise).
// Tests: tests/engine/core/test_call_router.cpp (virtual time).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "messages/errors.hpp"
#include "messages/types.hpp"
#include "src/core/pending_requests.hpp"

namespace aico {

/// The routing state of one call (without what the actor needs to answer).
struct call_route {
  api_call call;
  bool auth = false;
  bool refreshed = false; ///< already re-sent once after a 401
  int attempts = 0;       ///< sends so far; numbers the current one
  std::optional<std::size_t> in_flight; ///< slot of the unanswered send
};

/// The decisions, independent of the payload (call_router.cpp).
struct call_routing {
  using clock_type = std::chrono::steady_clock;
  using time_point = clock_type::time_point;
  using duration = clock_type::duration;

  /// Upper bound on how often one call is sent (across all transports).
  static constexpr int default_max_attempts = 8;

  enum class dispatch_kind : uint8_t {
    send,    ///< send `attempt` on `slot` with `left` to go
    wait,    ///< no active link: wait for one (queued)
    expired, ///< no time left: answer with a timeout
    gone,    ///< no such call (answered already)
  };

  struct dispatch_step {
    dispatch_kind kind = dispatch_kind::gone;
    std::size_t slot = 0;
    int attempt = 0;
    duration left{0};
  };

  enum class reply_kind : uint8_t {
    deliver, ///< check the reply and answer the caller
    refresh, ///< 401: refresh the token once, then dispatch again
  };

  enum class error_kind : uint8_t {
    retry, ///< dispatch again (same id)
    fail,  ///< answer the caller with the error
    gone,  ///< no such call any more
  };

  /// The next send of `r` when `active` is the active slot (if any).
  static dispatch_step next_send(call_route& r, time_point deadline,
                                 std::optional<std::size_t> active,
                                 time_point now);
  /// What a reply with `status` means for `r`.
  static reply_kind reply(call_route& r, int32_t status, bool can_refresh);
  /// What an error of class `cls` means for `r`.
  static error_kind error(const call_route& r, error_class cls,
                          time_point deadline, time_point now,
                          int max_attempts);
};

template <class Payload>
class call_router : public call_routing {
public:
  struct call_entry_payload {
    call_route route;
    Payload payload;
  };
  using table_type = pending_requests<call_entry_payload, time_point>;
  using entry = typename table_type::entry;

  explicit call_router(int max_attempts = default_max_attempts)
    : max_attempts_(max_attempts) {
    // nop
  }

  /// A new call under `key` (the actor's counter; false if in use). Its
  /// deadline is now + `timeout`, or call.deadline if the call comes with an
  /// earlier one; it is written into the call (the one deadline every send
  /// of it carries).
  bool admit(uint64_t key, api_call call, bool auth, Payload payload,
             time_point now, duration timeout) {
    if (call.deadline == time_point{} || call.deadline > now + timeout)
      call.deadline = now + timeout;
    auto deadline = call.deadline;
    call_entry_payload p;
    p.route.call = std::move(call);
    p.route.auth = auth;
    p.payload = std::move(payload);
    return calls_.insert(key, deadline, std::move(p));
  }

  call_route* find(uint64_t key) {
    auto e = calls_.find(key);
    return e ? &e->payload.route : nullptr;
  }

  /// Removes the call (to answer it); nothing if answered already.
  std::optional<entry> finish(uint64_t key) {
    auto e = calls_.take(key);
    if (e)
      unwait(key);
    return e;
  }

  /// The next step of call `key` (see dispatch_kind). A waiting call is
  /// queued once; a send counts as an attempt.
  dispatch_step dispatch(uint64_t key, std::optional<std::size_t> active,
                         time_point now) {
    auto e = calls_.find(key);
    if (!e)
      return {};
    auto step = next_send(e->payload.route, e->deadline, active, now);
    if (step.kind == dispatch_kind::wait
        && std::find(waiting_.begin(), waiting_.end(), key) == waiting_.end())
      waiting_.push_back(key);
    return step;
  }

  /// The calls waiting for a link, oldest first (the queue is emptied:
  /// dispatch them again).
  std::vector<uint64_t> take_waiting() {
    std::vector<uint64_t> res(waiting_.begin(), waiting_.end());
    waiting_.clear();
    return res;
  }

  bool has_waiting() const { return !waiting_.empty(); }

  /// The answer to send `attempt` of call `key` is the current one; no send
  /// is in flight afterwards. False for a stale answer or a finished call.
  bool answered(uint64_t key, int attempt) {
    auto e = calls_.find(key);
    if (!e || e->payload.route.attempts != attempt)
      return false;
    e->payload.route.in_flight.reset();
    return true;
  }

  /// After answered(): what a reply with `status` means.
  reply_kind after_reply(uint64_t key, int32_t status, bool can_refresh) {
    auto e = calls_.find(key);
    if (!e)
      return reply_kind::deliver;
    return reply(e->payload.route, status, can_refresh);
  }

  /// After answered(): what an error of class `cls` means.
  error_kind after_error(uint64_t key, error_class cls, time_point now) {
    auto e = calls_.find(key);
    if (!e)
      return error_kind::gone;
    return error(e->payload.route, cls, e->deadline, now, max_attempts_);
  }

  /// Sends in flight on `slot` (key, attempt), by key.
  std::vector<std::pair<uint64_t, int>> in_flight_on(std::size_t slot) {
    std::vector<std::pair<uint64_t, int>> res;
    calls_.for_each([&](entry& e) {
      if (e.payload.route.in_flight == slot)
        res.emplace_back(e.key, e.payload.route.attempts);
    });
    std::sort(res.begin(), res.end());
    return res;
  }

  /// Every call past its deadline, earliest first (also out of the queue).
  std::vector<entry> expire(time_point now) {
    timer_.fired(now);
    auto res = calls_.expire(now);
    if (!res.empty())
      waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                    [this](uint64_t key) {
                                      return !calls_.contains(key);
                                    }),
                     waiting_.end());
    return res;
  }

  /// The delay to schedule the one deadline timer with, if needed.
  std::optional<duration> arm(time_point now) {
    auto d = timer_.arm(calls_.earliest_deadline(), now);
    if (!d)
      return std::nullopt;
    return std::chrono::duration_cast<duration>(*d);
  }

  std::size_t size() const { return calls_.size(); }

private:
  void unwait(uint64_t key) {
    auto i = std::find(waiting_.begin(), waiting_.end(), key);
    if (i != waiting_.end())
      waiting_.erase(i);
  }

  int max_attempts_;
  table_type calls_;
  std::deque<uint64_t> waiting_;
  single_timer<time_point> timer_;
};

} // namespace aico
