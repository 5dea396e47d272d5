// aico engine: call_router's decisions (see call_router.hpp).
#include "src/core/call_router.hpp"

namespace aico {

call_routing::dispatch_step
call_routing::next_send(call_route& r, time_point deadline,
                        std::optional<std::size_t> active, time_point now) {
  dispatch_step res;
  if (!active) {
    res.kind = dispatch_kind::wait;
    return res;
  }
  if (deadline <= now) {
    res.kind = dispatch_kind::expired;
    return res;
  }
  res.kind = dispatch_kind::send;
  res.slot = *active;
  res.attempt = ++r.attempts;
  res.left = deadline - now;
  r.in_flight = *active;
  return res;
}

call_routing::reply_kind call_routing::reply(call_route& r, int32_t status,
                                             bool can_refresh) {
  if (status == 401 && r.auth && !r.refreshed && can_refresh) {
    r.refreshed = true;
    return reply_kind::refresh;
  }
  return reply_kind::deliver;
}

call_routing::error_kind call_routing::error(const call_route& r,
                                             error_class cls,
                                             time_point deadline,
                                             time_point now,
                                             int max_attempts) {
  if (cls == error_class::network && deadline > now
      && r.attempts < max_attempts)
    return error_kind::retry;
  return error_kind::fail;
}

} // namespace aico
