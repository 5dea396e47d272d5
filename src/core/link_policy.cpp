#include "src/core/link_policy.hpp"

namespace aico {

const char* to_string(link_policy::slot_status s) {
  switch (s) {
    case link_policy::slot_status::idle:
      return "idle";
    case link_policy::slot_status::connecting:
      return "connecting";
    case link_policy::slot_status::up:
      return "up";
    case link_policy::slot_status::waiting:
      return "waiting";
  }
  return "?";
}

transport_caps capabilities_of(transport_mode m) {
  transport_caps c;
  c.pushes_events = m != transport_mode::http;
  c.degraded = m == transport_mode::http;
  return c;
}

link_policy::link_policy(std::vector<transport_mode> order, backoff_options opts,
                         int failback_probes, uint64_t seed,
                         std::vector<transport_caps> caps)
  : failback_probes_(failback_probes < 1 ? 1 : failback_probes) {
  uint64_t n = 0;
  for (auto m : order) {
    auto i = slots_.size();
    slot s{m, slot_status::idle, backoff{opts, seed == 0 ? 0 : seed + n++},
           0, 0, false, std::chrono::milliseconds{0},
           i < caps.size() ? caps[i] : capabilities_of(m)};
    slots_.push_back(std::move(s));
  }
}

std::optional<std::size_t> link_policy::slot_of(transport_mode m) const {
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].mode == m)
      return i;
  return std::nullopt;
}

bool link_policy::all_waiting() const {
  if (!running_ || active_)
    return false;
  for (auto& s : slots_)
    if (s.status != slot_status::waiting)
      return false;
  return !slots_.empty();
}

link_policy::actions link_policy::start() {
  actions out;
  if (running_)
    return out;
  running_ = true;
  for (auto& s : slots_) {
    s.status = slot_status::idle;
    s.bo.reset();
    ++s.gen;
  }
  reconcile(out);
  return out;
}

link_policy::actions link_policy::stop() {
  actions out;
  running_ = false;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    if (s.status == slot_status::up || s.status == slot_status::connecting)
      out.push_back({action_kind::disconnect, i});
    s.status = slot_status::idle;
    s.probing = false;
    s.probes_ok = 0;
    ++s.gen; // cancels pending probe timers
  }
  if (active_) {
    out.push_back({action_kind::deactivate, *active_});
    active_.reset();
  }
  return out;
}

void link_policy::schedule(std::size_t i, actions& out) {
  auto& s = slots_[i];
  s.status = slot_status::waiting;
  s.probing = false;
  s.probes_ok = 0;
  s.last_delay = s.bo.next();
  out.push_back({action_kind::schedule_probe, i, s.last_delay, ++s.gen});
}

void link_policy::activate(std::size_t i, actions& out) {
  if (active_ && *active_ != i) {
    auto old = *active_;
    out.push_back({action_kind::deactivate, old});
    // only ever replaced by a better one: the old one is not needed now,
    // but what is in flight on it finishes there (drain)
    out.push_back({action_kind::disconnect, old, {}, 0, true});
    slots_[old].status = slot_status::idle;
  }
  active_ = i;
  auto& s = slots_[i];
  s.status = slot_status::up;
  s.probing = false;
  s.probes_ok = 0;
  s.bo.reset();
  out.push_back({action_kind::activate, i});
}

void link_policy::reconcile(actions& out) {
  if (!running_)
    return;
  if (!active_) {
    // prefer any transport that is already up (e.g. a fail-back candidate)
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].status == slot_status::up) {
        activate(i, out);
        break;
      }
  }
  if (!active_) {
    for (auto& s : slots_)
      if (s.status == slot_status::connecting)
        return; // wait for its outcome
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].status == slot_status::idle) {
        slots_[i].status = slot_status::connecting;
        out.push_back({action_kind::connect, i});
        return;
      }
    return; // all waiting for probe timers: reconnecting
  }
  auto a = *active_;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    if (i < a && s.status == slot_status::idle)
      schedule(i, out); // probe better ones in the background
    else if (i > a
             && (s.status == slot_status::up
                 || s.status == slot_status::connecting)) {
      s.status = slot_status::idle; // hold only one link
      out.push_back({action_kind::disconnect, i});
    } else if (i > a && s.status == slot_status::waiting) {
      s.status = slot_status::idle; // tried again on the next failover
      ++s.gen;
    }
  }
}

link_policy::actions link_policy::on_up(std::size_t i) {
  actions out;
  if (i >= slots_.size())
    return out;
  auto& s = slots_[i];
  if (!running_) {
    out.push_back({action_kind::disconnect, i});
    s.status = slot_status::idle;
    return out;
  }
  if (s.status == slot_status::up)
    return out; // duplicate
  if (s.status == slot_status::idle || s.status == slot_status::waiting) {
    // a late "up" for a link we no longer want: reconcile decides
    if (active_ && i > *active_) {
      out.push_back({action_kind::disconnect, i});
      s.status = slot_status::idle;
      return out;
    }
  }
  s.status = slot_status::up;
  if (!active_) {
    activate(i, out);
  } else if (i < *active_) {
    s.probing = true;
    s.probes_ok = 0;
    out.push_back({action_kind::health_probe, i});
  }
  reconcile(out);
  return out;
}

link_policy::actions link_policy::on_down(std::size_t i) {
  actions out;
  if (i >= slots_.size() || !running_)
    return out;
  auto& s = slots_[i];
  if (s.status == slot_status::waiting || s.status == slot_status::idle)
    return out; // duplicate, or a link we dropped ourselves
  bool was_active = active_ && *active_ == i;
  if (was_active) {
    active_.reset();
    out.push_back({action_kind::deactivate, i});
  }
  schedule(i, out);
  reconcile(out);
  return out;
}

link_policy::actions link_policy::on_probe_timer(std::size_t i, uint64_t gen) {
  actions out;
  if (i >= slots_.size() || !running_)
    return out;
  auto& s = slots_[i];
  if (gen != s.gen || s.status != slot_status::waiting)
    return out; // stale timer
  if (active_ && i > *active_) {
    s.status = slot_status::idle; // worse than the active one: not needed
    return out;
  }
  s.status = slot_status::connecting;
  out.push_back({action_kind::connect, i});
  reconcile(out);
  return out;
}

link_policy::actions link_policy::on_health_probe(std::size_t i, bool ok) {
  actions out;
  if (i >= slots_.size() || !running_)
    return out;
  auto& s = slots_[i];
  if (s.status != slot_status::up || !s.probing)
    return out;
  if (!ok) {
    out.push_back({action_kind::disconnect, i});
    schedule(i, out);
    return out;
  }
  if (++s.probes_ok >= failback_probes_) {
    activate(i, out);
    reconcile(out);
  } else {
    out.push_back({action_kind::health_probe, i});
  }
  return out;
}

} // namespace aico
