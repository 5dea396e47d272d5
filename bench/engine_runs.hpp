// aico-bench-transport: the same call through the engine, at two depths:
// the transport actor alone (spawned from its transport registry entry) and
// the full engine (the
// supervisor with only that transport in `order`, plus the token manager).
#pragma once

#include <string>

#include "caf/all.hpp"

#include "bench_common.hpp"
#include "messages/types.hpp"

namespace aico::bench {

struct engine_target {
  transport_mode mode = transport_mode::ipc;
  std::string http_url;     ///< http://127.0.0.1:PORT
  std::string ws_url;       ///< ws://127.0.0.1:PORT/api/v1/ws
  std::string ipc_endpoint; ///< ipc://DIR/gateway.ipc
  std::string grpc_endpoint; ///< 127.0.0.1:PORT ("" = no gRPC door)
  /// For authenticated calls through the full engine: the token manager
  /// logs in with these (call_spec::token is used by the other variants).
  std::string username;
  std::string password;
};

/// Requests from a caf::scoped_actor (round trip) and from an event-based
/// actor keeping `window` requests in flight (throughput) to a transport
/// actor spawned for this run.
run_result transport_actor_run(caf::actor_system& sys, const engine_target& t,
                               const call_spec& call, const run_params& p);

/// The same through a whole aico::engine restricted to one transport.
run_result engine_run(caf::actor_system& sys, const engine_target& t,
                      const call_spec& call, const run_params& p);

} // namespace aico::bench
