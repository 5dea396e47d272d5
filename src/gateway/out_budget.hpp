// aico reference gateway: the output budget of one WebSocket or SSE
// connection, in bytes (docs/configuration.md, --ws-max-out-bytes and
// --sse-max-out-bytes). Frames are counted from the moment they are made
// (on the event dispatcher or on the connection's strand) until the write
// that carries them completed, so a peer that does not read cannot make the
// gateway hold more than about `limit` bytes for it.
#pragma once

#include <atomic>
#include <cstddef>

namespace aico::gateway {

class out_budget {
public:
  explicit out_budget(std::size_t limit) : limit_(limit) {}

  /// Reserves `n` bytes for a frame. Refused (nothing reserved) when that
  /// would take the queued bytes over the limit -- unless nothing is queued:
  /// one frame larger than the limit still goes out to a reader that keeps
  /// up. Any thread.
  bool try_add(std::size_t n) {
    auto cur = queued_.load(std::memory_order_relaxed);
    for (;;) {
      if (cur > 0 && (cur + n > limit_ || cur + n < cur))
        return false;
      if (queued_.compare_exchange_weak(cur, cur + n,
                                        std::memory_order_relaxed))
        return true;
    }
  }

  /// Adds `n` bytes without a check (a keep-alive comment).
  void add(std::size_t n) { queued_.fetch_add(n, std::memory_order_relaxed); }

  /// The frame's bytes were written (or dropped). Any thread.
  void release(std::size_t n) {
    queued_.fetch_sub(n, std::memory_order_relaxed);
  }

  std::size_t queued() const { return queued_.load(std::memory_order_relaxed); }
  std::size_t limit() const { return limit_; }

  /// Reading further requests pauses while more than this is queued (half
  /// the limit): responses to requests already read may still come.
  bool reading_paused() const { return queued() > limit_ / 2; }

private:
  const std::size_t limit_;
  std::atomic<std::size_t> queued_{0};
};

} // namespace aico::gateway
