// aico-stress, distributed load generation over CAF's own network layer
// (caf::io middleman: publish / remote_actor, BASP; no protocol of our own).
//
//   aico-stress --controller --workers 3 [--listen HOST:PORT] [load options]
//   aico-stress --worker --connect HOST:PORT        (three times)
//
// The controller starts the gateway and the fault schedule, waits for its
// workers, gives each a slice of the users (slice.hpp), shows the combined
// progress, collects every worker's report and sent ids, merges them and
// checks the integrity against the gateway's store for all users. It runs
// no users itself. The message types are in wire.hpp.
#pragma once

#include "src/stress/setup.hpp"

namespace aico::stress {

/// Exit code: 0 integrity exact, 1 otherwise or the run failed, 2 usage.
int run_controller(options& o);

/// Exit code: 0 result delivered, 1 failure (controller lost, ...), 2 usage.
int run_worker(const options& o);

} // namespace aico::stress
