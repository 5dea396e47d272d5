// aico-bench-transport: what the raw-library baselines and the engine runs
// share. This header names no C library type (no zmq, lws, curl or grpc): each
// raw baseline lives in its own file (raw_zmq.cpp, raw_lws.cpp, raw_curl.cpp,
// raw_grpc.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace aico::bench {

/// The logical call measured on every transport (docs/protocol.md).
struct call_spec {
  std::string method = "GET";
  std::string path = "/health"; ///< relative to /api/v1
  std::string token;            ///< bearer access token, empty = none
};

/// How much to measure.
struct run_params {
  int warmup = 200;     ///< sequential requests before measuring
  int requests = 2000;  ///< sequential requests measured (round trip)
  int total = 20000;    ///< pipelined requests measured (throughput)
  int window = 64;      ///< requests kept in flight while pipelining
  int pipe_warmup = 0;  ///< pipelined requests before the measured ones
  std::chrono::milliseconds timeout{10000}; ///< per request (sequential)
  /// HTTP only: connections per host (the engine's default is 8).
  int http_connections = 8;
  /// The engine's one-hop call path (supervisor_config::one_hop).
  bool one_hop = true;
  /// Its call lane (supervisor_config::call_lane).
  bool call_lane = true;
};

/// What the whole process has used so far (getrusage(RUSAGE_SELF): every
/// thread, the ones that have exited included).
struct proc_usage {
  double cpu_us = 0; ///< user + system CPU time
  long switches = 0; ///< voluntary context switches: a thread blocked and
                     ///< was later woken (one per wake-up)
};

/// Reads the process's usage now.
proc_usage proc_usage_now();

/// The outcome of one variant (raw, transport actor or engine) on one
/// transport.
struct run_result {
  std::vector<double> rtt_us; ///< one per sequential request
  double rps = 0;             ///< pipelined throughput
  double pipe_seconds = 0;    ///< wall time of the pipelined phase
  /// Sequential round trips: client CPU per call (microseconds) and threads
  /// woken per call (voluntary context switches of the client process per
  /// call; the gateway is another process and not counted). -1: not measured.
  double cpu_us_per_call = -1;
  double woken_per_call = -1;
  std::string error; ///< non-empty: the run failed (and why)
  bool ok() const { return error.empty(); }
  /// Sets the two per-call figures from the usage at the start of the
  /// measured round trips and their number.
  void usage_since(const proc_usage& start, int calls) {
    auto now = proc_usage_now();
    if (calls <= 0)
      return;
    cpu_us_per_call = (now.cpu_us - start.cpu_us) / calls;
    woken_per_call = static_cast<double>(now.switches - start.switches) / calls;
  }
};

/// The p-th percentile (0..100) of `xs` (nearest rank); 0 if empty.
double percentile(std::vector<double> xs, double p);

/// Microseconds between two steady_clock points.
inline double micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// -- raw-library baselines (one file each) -------------------------------------

/// cppzmq DEALER sending protobuf Frame{request} to `endpoint`.
run_result raw_zmq_run(const std::string& endpoint, const call_spec& call,
                       const run_params& p);

/// libwebsockets client sending JSON request frames to `ws_url`
/// (ws://127.0.0.1:PORT/api/v1/ws), matching response frames by id.
run_result raw_lws_run(const std::string& ws_url, const call_spec& call,
                       const run_params& p);

/// libcurl against `http_url` (http://127.0.0.1:PORT): one reused easy
/// handle for round trips, a multi handle with kept-alive connections for
/// throughput.
run_result raw_curl_run(const std::string& http_url, const call_spec& call,
                        const run_params& p);

/// grpc++ against the gateway's gRPC door at `target` (127.0.0.1:PORT):
/// the synchronous stub for round trips, the asynchronous one with `window`
/// calls in flight for throughput.
run_result raw_grpc_run(const std::string& target, const call_spec& call,
                        const run_params& p);

} // namespace aico::bench
