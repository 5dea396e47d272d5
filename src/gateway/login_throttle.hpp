// aico reference gateway: throttling of failed logins, per user name and per
// peer (docs/protocol.md, "Login throttling"). Pure logic with an injected
// clock; thread-safe.
//
// Every failed login counts against the user name tried and against the
// peer it came from (the client's IP address; for IPC the client's CURVE key
// or "ipc"). Up to `free_failures` failures a key is not slowed down; each
// further failure locks that key for base_delay * 2^(n-1) (n = failures
// beyond the free ones), at most max_delay. While a key is locked a login
// for it is answered 429 `rate_limited` with Retry-After, without checking
// the password (and without counting). The count decays: one failure is
// forgotten per `decay` without a new failure. A successful login clears
// the user name's count (not the peer's, so that one valid account does not
// reset the throttle of a peer guessing other users' passwords).
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace aico::gateway {

struct login_limits {
  bool enabled = true;
  int user_free_failures = 5;  ///< per user name, before the backoff
  int peer_free_failures = 20; ///< per peer address, before the backoff
  std::chrono::milliseconds base_delay{1000};
  std::chrono::milliseconds max_delay{300000};
  std::chrono::milliseconds decay{60000};
  std::size_t max_entries = 100000; ///< oldest keys go beyond this
};

class login_throttle {
public:
  using clock = std::chrono::steady_clock;

  explicit login_throttle(login_limits limits);

  /// How long a login of `user` from `peer` must wait (zero: check the
  /// password). An empty peer is not throttled by peer.
  std::chrono::milliseconds check(const std::string& user,
                                  const std::string& peer,
                                  clock::time_point now);

  /// A login of `user` from `peer` failed (wrong password, unknown user).
  void failed(const std::string& user, const std::string& peer,
              clock::time_point now);

  /// A login of `user` succeeded: its count is cleared.
  void succeeded(const std::string& user, clock::time_point now);

  /// Keys currently tracked (for tests).
  std::size_t size() const;

  const login_limits& limits() const { return limits_; }

private:
  struct entry {
    int failures = 0;
    clock::time_point last{};          ///< last failure (decay base)
    clock::time_point blocked_until{}; ///< locked until then
  };

  void decay(entry& e, clock::time_point now) const;
  std::chrono::milliseconds wait_of(const std::string& key,
                                    clock::time_point now);
  void count(const std::string& key, int free_failures,
             clock::time_point now);
  void prune(clock::time_point now);

  login_limits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, entry> entries_;
};

} // namespace aico::gateway
