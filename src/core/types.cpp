#include "messages/types.hpp"

#include <utility>

#include "src/core/transport_modes.hpp"

namespace aico {

namespace {

/// The modes and their names, in value order.
constexpr std::pair<transport_mode, const char*> mode_names[] = {
  {transport_mode::ipc, "ipc"},
  {transport_mode::ws, "ws"},
  {transport_mode::http, "http"},
  {transport_mode::grpc, "grpc"},
};

} // namespace

const char* to_string(transport_mode m) {
  for (auto& [mode, name] : mode_names)
    if (mode == m)
      return name;
  return "?";
}

bool from_string(const std::string& s, transport_mode& out) {
  for (auto& [mode, name] : mode_names)
    if (s == name) {
      out = mode;
      return true;
    }
  return false;
}

const std::vector<transport_mode>& transport_modes() {
  static const std::vector<transport_mode> res = [] {
    std::vector<transport_mode> xs;
    for (auto& entry : mode_names)
      xs.push_back(entry.first);
    return xs;
  }();
  return res;
}

const char* to_string(transport_status s) {
  switch (s) {
    case transport_status::idle:
      return "idle";
    case transport_status::connecting:
      return "connecting";
    case transport_status::up:
      return "up";
    case transport_status::down:
      return "down";
  }
  return "?";
}

const char* to_string(link_state s) {
  switch (s) {
    case link_state::connecting:
      return "connecting";
    case link_state::connected:
      return "connected";
    case link_state::degraded:
      return "degraded";
    case link_state::reconnecting:
      return "reconnecting";
    case link_state::offline:
      return "offline";
    case link_state::auth_expired:
      return "auth_expired";
  }
  return "?";
}

const char* to_string(auth_state s) {
  switch (s) {
    case auth_state::logged_out:
      return "logged_out";
    case auth_state::logged_in:
      return "logged_in";
    case auth_state::refreshing:
      return "refreshing";
    case auth_state::auth_expired:
      return "auth_expired";
  }
  return "?";
}

std::string to_string(const connection_state& s) {
  std::string res = to_string(s.state);
  switch (s.state) {
    case link_state::connected:
    case link_state::degraded:
      res += "{mode=";
      res += to_string(s.mode);
      res += "}";
      break;
    case link_state::reconnecting:
      res += "{next_attempt_in=";
      res += std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(
          s.next_attempt_in)
          .count());
      res += "ms";
      if (!s.reason.empty())
        res += ", last=" + s.reason;
      res += "}";
      break;
    case link_state::offline:
      res += "{reason=" + s.reason + "}";
      break;
    default:
      break;
  }
  return res;
}

std::string describe(const connection_state& s) {
  switch (s.state) {
    case link_state::connecting:
      return "connecting";
    case link_state::connected:
      return std::string{"connected over "} + to_string(s.mode);
    case link_state::degraded: {
      std::string res = std::string{"connected over "} + to_string(s.mode)
                        + ", degraded";
      if (!s.reason.empty())
        res += " (last down: " + s.reason + ")";
      return res;
    }
    case link_state::reconnecting: {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  s.next_attempt_in)
                  .count();
      std::string res = "no transport is up; the next attempt is in "
                        + std::to_string(ms) + " ms";
      if (!s.reason.empty())
        res += " (last down: " + s.reason + ")";
      return res;
    }
    case link_state::offline:
      return s.reason.empty() ? std::string{"offline"}
                              : "offline: " + s.reason;
    case link_state::auth_expired:
      return "the session expired: log in again";
  }
  return to_string(s);
}

} // namespace aico
