#include "gateway/login_throttle.hpp"

#include <algorithm>
#include <vector>

namespace aico::gateway {

namespace {

/// Keys are bounded (a user name may be as long as a request body).
constexpr std::size_t max_key_chars = 160;

std::string user_key(const std::string& user) {
  return "u:" + user.substr(0, max_key_chars);
}

std::string peer_key(const std::string& peer) {
  return "p:" + peer.substr(0, max_key_chars);
}

} // namespace

login_throttle::login_throttle(login_limits limits) : limits_(limits) {
  if (limits_.base_delay.count() < 1)
    limits_.base_delay = std::chrono::milliseconds(1);
  if (limits_.max_delay < limits_.base_delay)
    limits_.max_delay = limits_.base_delay;
  if (limits_.decay.count() < 1)
    limits_.decay = std::chrono::milliseconds(1);
  if (limits_.max_entries < 16)
    limits_.max_entries = 16;
}

void login_throttle::decay(entry& e, clock::time_point now) const {
  if (e.failures <= 0 || now <= e.last)
    return;
  auto steps = (now - e.last) / limits_.decay;
  if (steps <= 0)
    return;
  if (steps >= e.failures) {
    e.failures = 0;
    e.last = now;
    return;
  }
  e.failures -= static_cast<int>(steps);
  e.last += steps * std::chrono::duration_cast<clock::duration>(limits_.decay);
}

std::chrono::milliseconds login_throttle::wait_of(const std::string& key,
                                                  clock::time_point now) {
  auto it = entries_.find(key);
  if (it == entries_.end())
    return std::chrono::milliseconds(0);
  auto& e = it->second;
  decay(e, now);
  if (now < e.blocked_until)
    return std::chrono::ceil<std::chrono::milliseconds>(e.blocked_until - now);
  if (e.failures == 0)
    entries_.erase(it);
  return std::chrono::milliseconds(0);
}

std::chrono::milliseconds login_throttle::check(const std::string& user,
                                                const std::string& peer,
                                                clock::time_point now) {
  if (!limits_.enabled)
    return std::chrono::milliseconds(0);
  std::lock_guard<std::mutex> lock(mutex_);
  auto w = wait_of(user_key(user), now);
  if (!peer.empty())
    w = std::max(w, wait_of(peer_key(peer), now));
  return w;
}

void login_throttle::count(const std::string& key, int free_failures,
                           clock::time_point now) {
  auto& e = entries_[key];
  decay(e, now);
  ++e.failures;
  e.last = now;
  int over = e.failures - std::max(0, free_failures);
  if (over <= 0)
    return;
  // base * 2^(over-1), saturating at max_delay.
  auto delay = limits_.base_delay;
  for (int i = 1; i < over && delay < limits_.max_delay; ++i)
    delay *= 2;
  delay = std::min(delay, limits_.max_delay);
  e.blocked_until = std::max(e.blocked_until, now + delay);
}

void login_throttle::failed(const std::string& user, const std::string& peer,
                            clock::time_point now) {
  if (!limits_.enabled)
    return;
  std::lock_guard<std::mutex> lock(mutex_);
  count(user_key(user), limits_.user_free_failures, now);
  if (!peer.empty())
    count(peer_key(peer), limits_.peer_free_failures, now);
  if (entries_.size() > limits_.max_entries)
    prune(now);
}

void login_throttle::succeeded(const std::string& user,
                               clock::time_point /*now*/) {
  if (!limits_.enabled)
    return;
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.erase(user_key(user));
}

void login_throttle::prune(clock::time_point now) {
  // Forget what has decayed and is not locked; then, if still too many, the
  // keys with the oldest last failure.
  for (auto it = entries_.begin(); it != entries_.end();) {
    decay(it->second, now);
    if (it->second.failures == 0 && now >= it->second.blocked_until)
      it = entries_.erase(it);
    else
      ++it;
  }
  if (entries_.size() <= limits_.max_entries)
    return;
  std::vector<std::pair<clock::time_point, std::string>> by_age;
  by_age.reserve(entries_.size());
  for (auto& [k, e] : entries_)
    by_age.emplace_back(e.last, k);
  auto excess = entries_.size() - limits_.max_entries * 9 / 10;
  std::nth_element(by_age.begin(),
                   by_age.begin() + static_cast<std::ptrdiff_t>(excess),
                   by_age.end());
  for (std::size_t i = 0; i < excess; ++i)
    entries_.erase(by_age[i].second);
}

std::size_t login_throttle::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

} // namespace aico::gateway
