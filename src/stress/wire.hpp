// aico-stress, distributed mode: what crosses the network between the
// controller and its workers (CAF io middleman, BASP). Every type has an
// inspect() overload and is registered under a stable name with
// add_wire_types() on both sides.
//
//   worker     -> controller  (reg_atom, name, agent)      "I am here"
//   controller -> worker      (reject_atom, reason)        too many workers
//   controller -> worker      wire_job                     its slice
//   worker     -> controller  wire_progress                every second
//   worker     -> controller  request: wire_result -> ok   the end
//   controller -> worker      (abort_atom, reason)         run failed: stop
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "src/stress/histogram.hpp"
#include "src/stress/integrity.hpp"
#include "src/stress/progress.hpp"
#include "src/stress/report.hpp"

namespace aico::stress {

// -- inspect() of the report's parts ---------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, latency_histogram& x) {
  // counts as sent: the bucket layout is fixed (1,600 buckets), a histogram
  // from a build with another layout is rejected instead of misread
  return f(caf::meta::type_name("aico.stress.latency_histogram"), x.counts_,
           x.count_, x.max_ns_, x.min_ns_, x.sum_ns_,
           caf::meta::load_callback([&]() -> caf::error {
             if (!x.consistent())
               return caf::make_error(caf::sec::invalid_argument,
                                      "latency_histogram: foreign layout");
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op_stats& x) {
  return f(caf::meta::type_name("aico.stress.op_stats"), x.ok, x.errors,
           x.by_transport);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, integrity_counts& x) {
  return f(caf::meta::type_name("aico.stress.integrity_counts"), x.sent,
           x.stored, x.lost, x.duplicated, x.out_of_order, x.unexpected);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, integrity_result& x) {
  return f(caf::meta::type_name("aico.stress.integrity_result"), x.total,
           x.bad_conversations, x.conversations);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, report& x) {
  return f(caf::meta::type_name("aico.stress.report"), x.users, x.rate,
           x.duration_s, x.transports, x.mix, x.faults, x.seed, x.workers,
           x.elapsed_s, x.drain_s, x.operations, x.errors, x.failovers,
           x.refreshes, x.logins, x.login_failures, x.undrained,
           x.fault_actions, x.gateway_kills, x.rss_before_kb, x.rss_after_kb,
           x.sessions, x.integrity, x.integrity_checked);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, progress_counters& x) {
  return f(caf::meta::type_name("aico.stress.progress_counters"), x.created,
           x.users, x.logged_in, x.ops_ok, x.ops_err, x.sends, x.outstanding,
           x.mix);
}

// -- messages ---------------------------------------------------------------------------

/// The controller's order to one worker: its slice and everything it needs
/// to reach the gateway (loopback only, the worker checks).
struct wire_job {
  uint32_t index = 0;   ///< 0-based worker number
  uint32_t workers = 0; ///< how many workers run this test
  int32_t first = 0;    ///< users [first, first + count)
  int32_t count = 0;
  double rate = 0;      ///< messages/s of this slice
  bool limited = false; ///< --messages given
  int64_t messages = 0; ///< this slice's share of the budget
  double duration = 0;
  double ramp = 0;
  double drain_timeout = 0;
  std::string url;
  std::map<std::string, std::string> endpoints; ///< by transport name
  std::string password;
  std::string transports;
  std::string mix;
  int32_t conversations = 1;
  uint64_t seed = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_job& x) {
  return f(caf::meta::type_name("aico.stress.wire_job"), x.index, x.workers,
           x.first, x.count, x.rate, x.limited, x.messages, x.duration,
           x.ramp, x.drain_timeout, x.url, x.endpoints, x.password, x.transports,
           x.mix, x.conversations, x.seed);
}

enum class load_phase : uint8_t { loading = 0, draining = 1, done = 2 };

struct wire_progress {
  uint32_t index = 0;
  uint8_t phase = 0; ///< load_phase
  double elapsed_s = 0;
  progress_counters counters;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_progress& x) {
  return f(caf::meta::type_name("aico.stress.wire_progress"), x.index,
           x.phase, x.elapsed_s, x.counters);
}

/// The worker's measurements (no integrity: the controller checks the store
/// for every user) and, per conversation, the ids in the order they were
/// sent. `error` non-empty: the worker could not run its slice.
struct wire_result {
  uint32_t index = 0;
  report rep;
  std::map<std::string, std::vector<std::string>> sent;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_result& x) {
  return f(caf::meta::type_name("aico.stress.wire_result"), x.index, x.rep,
           x.sent, x.error);
}

using reg_atom = caf::atom_constant<caf::atom("st_reg")>;
using reject_atom = caf::atom_constant<caf::atom("st_reject")>;
using abort_atom = caf::atom_constant<caf::atom("st_abort")>;

/// Registers the wire types (both sides, before the actor system exists).
inline void add_wire_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<latency_histogram>("aico.stress.latency_histogram");
  cfg.add_message_type<op_stats>("aico.stress.op_stats");
  cfg.add_message_type<integrity_counts>("aico.stress.integrity_counts");
  cfg.add_message_type<integrity_result>("aico.stress.integrity_result");
  cfg.add_message_type<report>("aico.stress.report");
  cfg.add_message_type<progress_counters>("aico.stress.progress_counters");
  cfg.add_message_type<wire_job>("aico.stress.wire_job");
  cfg.add_message_type<wire_progress>("aico.stress.wire_progress");
  cfg.add_message_type<wire_result>("aico.stress.wire_result");
}

} // namespace aico::stress
