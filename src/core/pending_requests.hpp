// aico engine: bookkeeping of requests in flight with deadlines (pure logic,
// no actors, time is passed in).
//
// One table shared by the three transport actors and the supervisor:
//
//   * entries by key (the owner's counter), optionally also by wire id (the
//     id the request travels with; empty = not indexed), each with a
//     deadline, a generation (socket/link number, free for the owner) and a
//     payload (typically the caller's response promise);
//   * expire(now) takes every entry whose deadline has passed, earliest
//     first; earliest_deadline() says when the next one is due;
//   * take_all() empties the table (fail everything on down / disconnect /
//     exit).
//
// `single_timer` decides when the owner has to arm its ONE timer: only when
// the earliest deadline moves before the timer already scheduled, instead of
// one timer per request (every CAF 0.17 delayed_send wakes the clock thread).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace aico {

template <class Payload,
          class TimePoint = std::chrono::steady_clock::time_point>
class pending_requests {
public:
  using time_point = TimePoint;
  using payload_type = Payload;

  struct entry {
    uint64_t key = 0;
    std::string wire_id; ///< empty = not indexed by wire id
    time_point deadline{};
    uint64_t generation = 0;
    Payload payload{};
  };

  /// Adds an entry. False (and nothing added) if `key` or a non-empty
  /// `wire_id` is in use already.
  bool insert(uint64_t key, time_point deadline, Payload payload,
              std::string wire_id = {}, uint64_t generation = 0) {
    if (entries_.count(key) > 0
        || (!wire_id.empty() && by_wire_.count(wire_id) > 0))
      return false;
    entry e;
    e.key = key;
    e.wire_id = std::move(wire_id);
    e.deadline = deadline;
    e.generation = generation;
    e.payload = std::move(payload);
    by_deadline_.emplace(e.deadline, key);
    if (!e.wire_id.empty())
      by_wire_.emplace(e.wire_id, key);
    entries_.emplace(key, std::move(e));
    return true;
  }

  bool contains(uint64_t key) const {
    return entries_.count(key) > 0;
  }

  bool contains_wire_id(const std::string& wire_id) const {
    return by_wire_.count(wire_id) > 0;
  }

  /// The entry `key` (nullptr if none); its payload may be changed, its key,
  /// wire id and deadline must not.
  entry* find(uint64_t key) {
    auto i = entries_.find(key);
    return i == entries_.end() ? nullptr : &i->second;
  }

  const entry* find(uint64_t key) const {
    auto i = entries_.find(key);
    return i == entries_.end() ? nullptr : &i->second;
  }

  entry* find_by_wire_id(const std::string& wire_id) {
    auto i = by_wire_.find(wire_id);
    return i == by_wire_.end() ? nullptr : find(i->second);
  }

  /// Removes and returns the entry `key`.
  std::optional<entry> take(uint64_t key) {
    auto i = entries_.find(key);
    if (i == entries_.end())
      return std::nullopt;
    std::optional<entry> res{std::move(i->second)};
    entries_.erase(i);
    unindex(*res);
    return res;
  }

  /// Removes and returns the entry with this wire id.
  std::optional<entry> take_by_wire_id(const std::string& wire_id) {
    auto i = by_wire_.find(wire_id);
    if (i == by_wire_.end())
      return std::nullopt;
    return take(i->second);
  }

  /// Removes the entry `key`; false if there was none.
  bool erase(uint64_t key) {
    return take(key).has_value();
  }

  /// Removes and returns every entry whose deadline is at or before `now`,
  /// earliest deadline first (ties: lower key first).
  std::vector<entry> expire(time_point now) {
    std::vector<entry> res;
    while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
      auto key = by_deadline_.begin()->second;
      auto i = entries_.find(key);
      if (i == entries_.end()) { // cannot happen; keeps the loop finite
        by_deadline_.erase(by_deadline_.begin());
        continue;
      }
      res.push_back(std::move(i->second));
      entries_.erase(i);
      unindex(res.back());
    }
    return res;
  }

  /// The earliest deadline of all entries (none if empty).
  std::optional<time_point> earliest_deadline() const {
    if (by_deadline_.empty())
      return std::nullopt;
    return by_deadline_.begin()->first;
  }

  /// Removes and returns every entry, in key order.
  std::vector<entry> take_all() {
    std::vector<entry> res;
    res.reserve(entries_.size());
    for (auto& kv : entries_)
      res.push_back(std::move(kv.second));
    entries_.clear();
    by_wire_.clear();
    by_deadline_.clear();
    std::sort(res.begin(), res.end(),
              [](const entry& a, const entry& b) { return a.key < b.key; });
    return res;
  }

  /// Calls f(entry&) for every entry (no insert/erase from inside f).
  template <class F>
  void for_each(F f) {
    for (auto& kv : entries_)
      f(kv.second);
  }

  std::size_t size() const {
    return entries_.size();
  }

  bool empty() const {
    return entries_.empty();
  }

private:
  void unindex(const entry& e) {
    by_deadline_.erase(std::make_pair(e.deadline, e.key));
    if (!e.wire_id.empty()) {
      auto w = by_wire_.find(e.wire_id);
      if (w != by_wire_.end() && w->second == e.key)
        by_wire_.erase(w);
    }
  }

  std::unordered_map<uint64_t, entry> entries_;
  std::unordered_map<std::string, uint64_t> by_wire_;
  std::set<std::pair<time_point, uint64_t>> by_deadline_;
};

/// When to arm an owner's single deadline timer. The owner keeps one of
/// these next to its pending_requests and:
///   * after adding an entry (and after a sweep) calls `arm(earliest, now)`;
///     a returned delay means "send yourself the timer message after this
///     long" (nothing returned: a timer that fires early enough is pending);
///   * when the timer message arrives calls `fired(now)`, expires what is
///     due and calls `arm` again for the next earliest deadline.
/// Timers cannot be cancelled (CAF 0.17): a timer whose deadline was
/// answered in time just fires and finds nothing due. The delay is clamped
/// to [min_delay, max_delay]; the time actually scheduled is remembered, so
/// a clamped timer re-arms when it fires.
template <class TimePoint = std::chrono::steady_clock::time_point>
class single_timer {
public:
  using time_point = TimePoint;
  using duration = typename TimePoint::duration;

  explicit single_timer(
    duration min_delay = std::chrono::milliseconds(1),
    duration max_delay = std::chrono::hours(24))
    : min_delay_(min_delay), max_delay_(max_delay) {
    // nop
  }

  /// The delay to schedule a timer with, if one is needed for `deadline`.
  std::optional<duration> arm(time_point deadline, time_point now) {
    if (scheduled_for_ && *scheduled_for_ <= deadline)
      return std::nullopt; // the pending timer fires early enough
    auto d = std::clamp<duration>(deadline - now, min_delay_, max_delay_);
    scheduled_for_ = now + d;
    return d;
  }

  /// Same, for an optional deadline (nothing to do without one).
  std::optional<duration> arm(const std::optional<time_point>& deadline,
                              time_point now) {
    if (!deadline)
      return std::nullopt;
    return arm(*deadline, now);
  }

  /// A timer message arrived at `now`: the scheduled one has fired if its
  /// time has come (an older, overtaken timer may arrive earlier).
  void fired(time_point now) {
    if (scheduled_for_ && *scheduled_for_ <= now)
      scheduled_for_.reset();
  }

  /// When the pending timer fires (none: no timer pending).
  std::optional<time_point> scheduled_for() const {
    return scheduled_for_;
  }

private:
  duration min_delay_;
  duration max_delay_;
  std::optional<time_point> scheduled_for_;
};

} // namespace aico
