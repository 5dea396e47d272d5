// aico engine: the supervisor's failover / fail-back decisions as pure logic
// (no actors, no clocks: delays come from per-transport `backoff`s, the actor
// schedules them). The supervisor feeds it events and executes the actions
// it returns; tests drive it step by step.
//
// Rules:
// - Transports are ranked by their position in `order` (0 = best).
// - With nothing active, connect the best transport that is idle; when it
//   fails, it waits for a probe timer (backoff) and the next idle one is
//   tried at once. So failover takes at most one connect attempt per
//   transport.
// - A transport that comes up while nothing is active is activated at once.
// - A transport better than the active one that comes up must pass
//   `failback_probes` consecutive health probes before it is activated;
//   the previously active one is then disconnected.
// - Transports worse than the active one are disconnected (idle) so only
//   one link is held; they are tried again on the next failover.
// - A transport better than the active one that is idle or down is probed
//   in the background on its backoff timer.
// - A transport's backoff resets when it is activated.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "messages/types.hpp"
#include "src/core/backoff.hpp"

namespace aico {

/// What a transport offers, as far as the published link state goes. The
/// defaults per mode are `capabilities_of`; a transport registry will hand
/// them in with each transport.
struct transport_caps {
  /// The gateway pushes events on the link itself (else: a side stream).
  bool pushes_events = true;
  /// Working but worse than the others (published as `degraded` while it is
  /// the active one): HTTP, with requests on pooled connections and events
  /// on a separate SSE stream.
  bool degraded = false;
};

/// The capabilities of the built-in transports.
transport_caps capabilities_of(transport_mode m);

class link_policy {
public:
  enum class slot_status : uint8_t {
    idle,       ///< not connected, may be tried at once
    connecting, ///< connect requested, waiting for up/down
    up,         ///< connected (active, or a fail-back candidate)
    waiting,    ///< failed; a probe timer is pending
  };

  enum class action_kind : uint8_t {
    connect,        ///< send connect to slot
    disconnect,     ///< send disconnect to slot
    activate,       ///< slot becomes the active transport
    deactivate,     ///< nothing is active any more (slot = former active)
    schedule_probe, ///< after `delay`, call on_probe_timer(slot, gen)
    health_probe,   ///< run one health probe through slot (fail-back)
  };

  struct action {
    action_kind kind;
    std::size_t slot;
    std::chrono::milliseconds delay{0}; ///< schedule_probe only
    uint64_t gen = 0;                   ///< schedule_probe only
    /// disconnect only: the slot was replaced by a better one (fail-back),
    /// so its calls in flight finish before it closes (drain).
    bool drain = false;
  };

  using actions = std::vector<action>;

  /// `caps` per slot (same order); missing ones are capabilities_of(mode).
  link_policy(std::vector<transport_mode> order, backoff_options opts,
              int failback_probes, uint64_t seed = 0,
              std::vector<transport_caps> caps = {});

  /// Start connecting (nothing active yet).
  actions start();

  /// Stop: everything back to idle; returns disconnects for live slots.
  actions stop();

  /// The transport at `slot` reported up.
  actions on_up(std::size_t slot);

  /// The transport at `slot` reported down (or crashed, or failed a health
  /// check, or a request on it failed with a network error).
  actions on_down(std::size_t slot);

  /// A probe timer fired; stale generations are ignored.
  actions on_probe_timer(std::size_t slot, uint64_t gen);

  /// Result of one fail-back health probe through `slot`.
  actions on_health_probe(std::size_t slot, bool ok);

  // -- observers --------------------------------------------------------------

  std::optional<std::size_t> active() const { return active_; }
  bool running() const { return running_; }
  std::size_t size() const { return slots_.size(); }
  transport_mode mode(std::size_t slot) const { return slots_[slot].mode; }
  const transport_caps& caps(std::size_t slot) const {
    return slots_[slot].caps;
  }
  /// True while the active transport is a degraded one.
  bool degraded() const {
    return active_ && slots_[*active_].caps.degraded;
  }
  slot_status status(std::size_t slot) const { return slots_[slot].status; }
  /// Index of a mode in the order, if configured.
  std::optional<std::size_t> slot_of(transport_mode m) const;
  /// True when nothing is active and nothing is connecting: the caller
  /// should report `reconnecting` until the earliest probe timer.
  bool all_waiting() const;
  /// The delay of the most recently scheduled probe of each slot.
  std::chrono::milliseconds last_delay(std::size_t slot) const {
    return slots_[slot].last_delay;
  }

private:
  struct slot {
    transport_mode mode;
    slot_status status = slot_status::idle;
    backoff bo;
    uint64_t gen = 0;
    int probes_ok = 0;
    bool probing = false; ///< a fail-back health probe is outstanding
    std::chrono::milliseconds last_delay{0};
    transport_caps caps;
  };

  void reconcile(actions& out);
  void schedule(std::size_t i, actions& out);
  void activate(std::size_t i, actions& out);

  std::vector<slot> slots_;
  std::optional<std::size_t> active_;
  int failback_probes_;
  bool running_ = false;
};

const char* to_string(link_policy::slot_status s);

} // namespace aico
