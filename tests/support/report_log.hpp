// Tests on real threads: a thread-safe record of what a transport actor
// reports to its listener (states and events), with bounded waits, and the
// small call builders the transport integration tests share
// (tests/engine/{ipc,ws,http,grpc}/test_*_transport.cpp).
//
// support/recorder.hpp is its counterpart for deterministic tests (the test
// coordinator: one thread, no locks, no waits).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "messages/transport.hpp"
#include "support/wait_first.hpp"

namespace aico::test {

struct state_report {
  transport_status status;
  std::string reason;
  std::chrono::steady_clock::time_point at;
};

/// Thread-safe record of everything a transport sent its listener. A
/// report that names another transport than `expected` (the listener's
/// mode or an event's `via`) is remembered: wrong_mode().
class report_log {
public:
  explicit report_log(transport_mode expected) : expected_(expected) {
  }

  void add(transport_mode m, transport_status s, std::string reason) {
    std::lock_guard<std::mutex> g{mtx_};
    if (m != expected_)
      wrong_mode_ = true;
    states_.push_back({s, std::move(reason), std::chrono::steady_clock::now()});
    cv_.notify_all();
  }

  void add(server_event ev) {
    std::lock_guard<std::mutex> g{mtx_};
    if (ev.via != expected_)
      wrong_mode_ = true;
    events_.push_back(std::move(ev));
    cv_.notify_all();
  }

  std::size_t state_count() const {
    std::lock_guard<std::mutex> g{mtx_};
    return states_.size();
  }

  std::size_t event_count() const {
    std::lock_guard<std::mutex> g{mtx_};
    return events_.size();
  }

  bool wrong_mode() const {
    std::lock_guard<std::mutex> g{mtx_};
    return wrong_mode_;
  }

  /// The first report of `s` at index >= from, waiting at most `timeout`.
  std::optional<state_report> wait_status(transport_status s,
                                          std::size_t from,
                                          std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> g{mtx_};
    return wait_first(g, cv_, states_, from, timeout,
                      [s](const state_report& r) { return r.status == s; });
  }

  /// The statuses reported at index >= from.
  std::vector<transport_status> statuses(std::size_t from = 0) const {
    std::lock_guard<std::mutex> g{mtx_};
    std::vector<transport_status> res;
    for (auto i = from; i < states_.size(); ++i)
      res.push_back(states_[i].status);
    return res;
  }

  /// The first event at index >= from satisfying `pred`, waiting at most
  /// `timeout`.
  std::optional<server_event>
  wait_event(const std::function<bool(const server_event&)>& pred,
             std::chrono::milliseconds timeout, std::size_t from = 0) {
    std::unique_lock<std::mutex> g{mtx_};
    return wait_first(g, cv_, events_, from, timeout, pred);
  }

  /// The events at index >= from.
  std::vector<server_event> events(std::size_t from = 0) const {
    std::lock_guard<std::mutex> g{mtx_};
    if (from >= events_.size())
      return {};
    return {events_.begin() + static_cast<std::ptrdiff_t>(from),
            events_.end()};
  }

private:
  const transport_mode expected_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<state_report> states_;
  std::vector<server_event> events_;
  bool wrong_mode_ = false;
};

/// A transport listener writing into `log` (spawn with sys.spawn).
inline transport_listener_actor::behavior_type
recorder(transport_listener_actor::pointer, std::shared_ptr<report_log> log) {
  return {
    [log](tstate_atom, transport_mode m, transport_status s,
          std::string& reason) { log->add(m, s, std::move(reason)); },
    [log](event_atom, server_event& ev) { log->add(std::move(ev)); },
  };
}

inline api_call make_call(std::string id, std::string method, std::string path,
                          std::string body = {}, std::string token = {}) {
  api_call c;
  c.id = std::move(id);
  c.method = std::move(method);
  c.path = std::move(path);
  c.body = std::move(body);
  c.token = std::move(token);
  return c;
}

/// The body of POST /chat/messages.
inline std::string message_body(const std::string& id,
                                const std::string& content) {
  return R"({"id":")" + id + R"(","content":")" + content + R"("})";
}

} // namespace aico::test
