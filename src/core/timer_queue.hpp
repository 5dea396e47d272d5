// aico engine: the queue of a timer thread (pure logic, no threads).
//
// The process-wide timer thread (actors/timer_service.cpp) keeps the
// timers of every session here. What matters for idle sessions is when the
// thread must be woken: CAF 0.17's clock thread is woken by EVERY timer
// that is scheduled (its queue notifies on each push), so 10,000 idle
// sessions re-arming a heartbeat and a health check every 30 s woke it
// hundreds of times a second for nothing. Here adding a timer asks for a
// wake-up only when it is due before the instant the thread already plans
// to wake at; with timer slack (timer_slack.hpp) most timers land on an
// instant already planned, and the thread wakes once per instant.
#pragma once

#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace aico {

template <class Payload, class TimePoint>
class timer_queue {
public:
  using time_point = TimePoint;

  /// Adds a timer; true if the thread must be woken to see it (it is due
  /// before the planned wake-up, or none is planned).
  bool add(time_point t, Payload p) {
    entries_.emplace(t, std::move(p));
    if (!planned_ || t < *planned_) {
      planned_ = t;
      return true;
    }
    return false;
  }

  /// Removes and returns what is due at `now`, earliest first, and plans
  /// the next wake-up (the earliest timer left).
  std::vector<Payload> take_due(time_point now) {
    std::vector<Payload> due;
    auto i = entries_.begin();
    for (; i != entries_.end() && i->first <= now; ++i)
      due.push_back(std::move(i->second));
    entries_.erase(entries_.begin(), i);
    planned_ = next();
    return due;
  }

  /// The earliest timer, if any.
  std::optional<time_point> next() const {
    if (entries_.empty())
      return std::nullopt;
    return entries_.begin()->first;
  }

  /// When the thread plans to wake (none: it sleeps until woken).
  std::optional<time_point> planned() const { return planned_; }

  std::size_t size() const { return entries_.size(); }

  /// Drops every timer.
  void clear() {
    entries_.clear();
    planned_.reset();
  }

private:
  std::multimap<time_point, Payload> entries_;
  std::optional<time_point> planned_;
};

} // namespace aico
