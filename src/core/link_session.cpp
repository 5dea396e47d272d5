// aico engine: link_session (see link_session.hpp).
#include "src/core/link_session.hpp"

#include <algorithm>

namespace aico {

namespace {

using namespace std::chrono_literals;

link_timing::duration effective_ping(const link_timing& t) {
  auto every = t.ping_interval;
  if (every <= link_timing::duration{0})
    return link_timing::duration{0};
  auto half_dead = t.dead_peer_timeout / 2;
  if (half_dead > link_timing::duration{0} && every > half_dead)
    every = half_dead;
  return std::max<link_timing::duration>(every, 10ms);
}

} // namespace

const char* to_string(link_down_cause c) {
  switch (c) {
    case link_down_cause::none:
      return "none";
    case link_down_cause::connect_timeout:
      return "connect_timeout";
    case link_down_cause::dead_peer:
      return "dead_peer";
    case link_down_cause::reconnect_grace:
      return "reconnect_grace";
  }
  return "?";
}

link_session_base::link_session_base(link_timing t)
  : timing_(t), ping_every_(effective_ping(t)) {
  // nop
}

link_session_base::connect_step link_session_base::connect(time_point now) {
  if (status_ == transport_status::connecting)
    return connect_step::in_progress;
  if (status_ == transport_status::up)
    return connect_step::already_up;
  ++generation_;
  status_ = transport_status::connecting;
  connect_deadline_ = now + timing_.connect_timeout;
  lost_ = false;
  return connect_step::start;
}

bool link_session_base::established(time_point now) {
  if (status_ != transport_status::connecting)
    return false;
  status_ = transport_status::up;
  last_rx_ = now;
  next_ping_ = now + ping_every_;
  lost_ = false;
  return true;
}

void link_session_base::received(time_point now) {
  if (now > last_rx_)
    last_rx_ = now;
}

bool link_session_base::lose_peer(time_point now) {
  if (status_ != transport_status::up)
    return false;
  if (!lost_) {
    lost_ = true;
    grace_deadline_ = now + timing_.reconnect_grace;
  }
  return true;
}

void link_session_base::peer_back() {
  lost_ = false;
}

std::optional<link_session_base::time_point>
link_session_base::next_link_wakeup() const {
  std::optional<time_point> res;
  auto take = [&res](time_point t) {
    if (!res || t < *res)
      res = t;
  };
  if (status_ == transport_status::connecting) {
    take(connect_deadline_);
  } else if (status_ == transport_status::up) {
    if (ping_every_ > duration{0})
      take(next_ping_);
    if (timing_.dead_peer_timeout > duration{0})
      take(last_rx_ + timing_.dead_peer_timeout);
    if (lost_)
      take(grace_deadline_);
  }
  return res;
}

bool link_session_base::leave(transport_status to) {
  bool was_live = live();
  if (to == transport_status::down && !was_live)
    return false;
  ++generation_;
  status_ = to;
  lost_ = false;
  return true;
}

link_session_base::link_check link_session_base::check(time_point now) {
  link_check res;
  if (status_ == transport_status::connecting) {
    if (now >= connect_deadline_)
      res.down = link_down_cause::connect_timeout;
    return res;
  }
  if (status_ != transport_status::up)
    return res;
  if (timing_.dead_peer_timeout > duration{0}
      && now - last_rx_ >= timing_.dead_peer_timeout) {
    res.down = link_down_cause::dead_peer;
    res.silence = now - last_rx_;
    return res;
  }
  if (lost_ && now >= grace_deadline_) {
    res.down = link_down_cause::reconnect_grace;
    return res;
  }
  if (ping_every_ > duration{0} && now >= next_ping_) {
    res.send_ping = true;
    next_ping_ = now + ping_every_;
  }
  return res;
}

} // namespace aico
