// aico-bench-transport: request round trip and pipelined throughput of each
// transport (ipc, ws, http, grpc), through the raw library (cppzmq,
// libwebsockets, libcurl, grpc++), through the engine's transport actor
// alone, and through the whole engine (supervisor + token manager, one
// transport), all against one reference gateway started on loopback for
// this run (with its gRPC door when `grpc` is asked for).
//
// Figures are reported as ratios against the raw baseline measured in the
// same run (machines are noisy). This is a benchmark, not a test: it exits 0
// whatever the figures; nonzero only when something failed (the gateway did
// not start, a request failed). See docs/performance.md.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "caf/all.hpp"

#include "bench_common.hpp"
#include "engine_runs.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"

namespace aico::bench {

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto rank = static_cast<std::size_t>(
    std::ceil(p / 100.0 * static_cast<double>(xs.size())));
  rank = std::clamp<std::size_t>(rank, 1, xs.size());
  return xs[rank - 1];
}

proc_usage proc_usage_now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) * 1e6
           + static_cast<double>(tv.tv_usec);
  };
  return proc_usage{us(ru.ru_utime) + us(ru.ru_stime), ru.ru_nvcsw};
}

} // namespace aico::bench

namespace {

using namespace aico;
using namespace aico::bench;
namespace json = boost::json;

// Targets of issue 11 ("One transport core for every protocol") for every
// transport, gRPC's (issue 13) being the same two figures: engine p50 round
// trip <= 1.3 x raw, pipelined throughput >= 90 % of raw, client CPU per
// call <= 1.5 x raw, threads woken per call <= 1.5.
constexpr double target_p50_ratio = 1.3;
constexpr double target_rps_ratio = 0.90;
constexpr double target_cpu_ratio = 1.5;
constexpr double target_woken = 1.5;

enum exit_code { ok = 0, failed = 1, usage = 2 };

struct options {
  std::string transports = "ipc,ws,http";
  int warmup = 200;
  int requests = 2000;
  int total = 20000;
  int window = 64;
  int rounds = 1;
  int caf_threads = 2;
  bool one_hop = true;
  bool call_lane = true;
  std::string path = "/health";
  bool auth = false;
  bool json_out = false;
  bool quick = false;
};

/// Several rounds of one variant: latencies pooled, throughput = median.
struct combined {
  std::vector<double> rtt_us;
  std::vector<double> rps;
  std::vector<double> cpu_us; ///< per call, one per round
  std::vector<double> woken;  ///< per call, one per round
  double p(double q) const { return percentile(rtt_us, q); }
  double median_rps() const { return percentile(rps, 50); }
  double median_cpu() const { return percentile(cpu_us, 50); }
  double median_woken() const { return percentile(woken, 50); }
  void add(const run_result& r) {
    rtt_us.insert(rtt_us.end(), r.rtt_us.begin(), r.rtt_us.end());
    rps.push_back(r.rps);
    if (r.cpu_us_per_call >= 0) {
      cpu_us.push_back(r.cpu_us_per_call);
      woken.push_back(r.woken_per_call);
    }
  }
};

struct transport_report {
  transport_mode mode;
  combined raw, actor, eng;
  double p50_ratio() const { return eng.p(50) / raw.p(50); }
  double rps_ratio() const { return eng.median_rps() / raw.median_rps(); }
  double cpu_ratio() const { return eng.median_cpu() / raw.median_cpu(); }
  bool p50_met() const { return p50_ratio() <= target_p50_ratio; }
  bool rps_met() const { return rps_ratio() >= target_rps_ratio; }
  bool cpu_met() const { return cpu_ratio() <= target_cpu_ratio; }
  bool woken_met() const { return eng.median_woken() <= target_woken; }
  bool all_met() const {
    return p50_met() && rps_met() && cpu_met() && woken_met();
  }
};

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

json::object variant_json(const combined& c) {
  return json::object{{"p50_us", c.p(50)},
                      {"p90_us", c.p(90)},
                      {"p99_us", c.p(99)},
                      {"samples", c.rtt_us.size()},
                      {"rps", c.median_rps()},
                      {"cpu_us_per_call", c.median_cpu()},
                      {"woken_per_call", c.median_woken()}};
}

void print_table(const options& o, const run_params& p,
                 const std::vector<transport_report>& reps) {
  std::printf("aico-bench-transport: %s %s, %d round trips (after %d "
              "warm-up), %d pipelined with %d in flight, %d round(s), CAF "
              "sharing scheduler with %d threads, %u CPUs%s\n\n",
              o.auth ? "authenticated" : "unauthenticated", o.path.c_str(),
              p.requests, p.warmup, p.total, p.window, o.rounds,
              o.caf_threads, std::thread::hardware_concurrency(),
              !o.one_hop      ? ", engine without the one-hop path"
              : o.call_lane ? ", engine one-hop path with call lanes"
                            : ", engine one-hop path without call lanes");
  std::printf("round trip (microseconds, p50)        | pipelined throughput "
              "(requests/s)\n");
  std::printf("%-9s %8s %9s %10s %10s | %8s %9s %10s %10s\n", "transport",
              "raw", "actor", "engine", "eng/raw", "raw", "actor", "engine",
              "eng/raw");
  for (auto& r : reps)
    std::printf("%-9s %8.1f %9.1f %10.1f %9.2fx | %8.0f %9.0f %10.0f %9.0f%%\n",
                to_string(r.mode), r.raw.p(50), r.actor.p(50), r.eng.p(50),
                r.p50_ratio(), r.raw.median_rps(), r.actor.median_rps(),
                r.eng.median_rps(), 100 * r.rps_ratio());
  std::printf("\nround trip percentiles (microseconds: p50 / p90 / p99)\n");
  for (auto& r : reps) {
    auto line = [](const combined& c) {
      return fmt("%.1f", c.p(50)) + " / " + fmt("%.1f", c.p(90)) + " / "
             + fmt("%.1f", c.p(99));
    };
    std::printf("%-9s raw %-24s actor %-24s engine %s\n", to_string(r.mode),
                line(r.raw).c_str(), line(r.actor).c_str(),
                line(r.eng).c_str());
  }
  std::printf("\nround trips, client process (microseconds of CPU per call "
              "/ threads woken per call)\n");
  std::printf("%-9s %15s %15s %15s %9s\n", "transport", "raw", "actor",
              "engine", "cpu e/r");
  for (auto& r : reps) {
    auto cell = [](const combined& c) {
      return fmt("%.1f", c.median_cpu()) + " / " + fmt("%.2f", c.median_woken());
    };
    std::printf("%-9s %15s %15s %15s %8.2fx\n", to_string(r.mode),
                cell(r.raw).c_str(), cell(r.actor).c_str(),
                cell(r.eng).c_str(), r.cpu_ratio());
  }
  std::printf("\ntargets: engine p50 <= %.1fx raw, throughput >= %.0f%% of "
              "raw, client CPU per call <= %.1fx raw, threads woken per call "
              "<= %.1f\n",
              target_p50_ratio, 100 * target_rps_ratio, target_cpu_ratio,
              target_woken);
  bool all = true;
  for (auto& r : reps) {
    auto met = [](bool b) { return b ? "met" : "MISSED"; };
    std::printf("%-9s round trip %.2fx: %s; throughput %.0f%%: %s; CPU "
                "%.2fx: %s; woken %.2f: %s\n",
                to_string(r.mode), r.p50_ratio(), met(r.p50_met()),
                100 * r.rps_ratio(), met(r.rps_met()), r.cpu_ratio(),
                met(r.cpu_met()), r.eng.median_woken(), met(r.woken_met()));
    all = all && r.all_met();
  }
  std::printf("%s\n", all ? "all targets met" : "some targets missed");
}

void print_json(const options& o, const run_params& p,
                const std::vector<transport_report>& reps) {
  json::array ts;
  bool all = true;
  for (auto& r : reps) {
    all = all && r.all_met();
    ts.push_back(json::object{
      {"transport", to_string(r.mode)},
      {"raw", variant_json(r.raw)},
      {"actor", variant_json(r.actor)},
      {"engine", variant_json(r.eng)},
      {"ratios",
       json::object{{"engine_p50", r.p50_ratio()},
                    {"actor_p50", r.actor.p(50) / r.raw.p(50)},
                    {"engine_rps", r.rps_ratio()},
                    {"actor_rps", r.actor.median_rps() / r.raw.median_rps()},
                    {"engine_cpu", r.cpu_ratio()}}},
      {"targets_met",
       json::object{{"p50", r.p50_met()},
                    {"rps", r.rps_met()},
                    {"cpu", r.cpu_met()},
                    {"woken", r.woken_met()}}}});
  }
  json::object out{
    {"config",
     json::object{{"path", o.path},
                  {"authenticated", o.auth},
                  {"warmup", p.warmup},
                  {"requests", p.requests},
                  {"total", p.total},
                  {"window", p.window},
                  {"rounds", o.rounds},
                  {"caf_threads", o.caf_threads},
                  {"cpus", std::thread::hardware_concurrency()}}},
    {"targets", json::object{{"p50_ratio_max", target_p50_ratio},
                             {"rps_ratio_min", target_rps_ratio},
                             {"cpu_ratio_max", target_cpu_ratio},
                             {"woken_per_call_max", target_woken}}},
    {"transports", std::move(ts)},
    {"all_targets_met", all}};
  std::cout << json::serialize(out) << std::endl;
}

/// Logs in through a plain HTTP client (not through the engine).
std::string login(const test::gateway_process& gw, std::string& err) {
  test::http_client c{gw.host(), gw.port()};
  auto r = c.post("/api/v1/users/authenticate",
                  {{"username", "alice"}, {"password", "alice-pw"}});
  auto tok = test::jstr(r.body, "/data/access_token");
  if (tok.empty())
    err = "login as alice failed: HTTP " + std::to_string(r.status) + " "
          + r.error + " " + r.raw.substr(0, 200);
  return tok;
}

int run(const options& o) {
  run_params p;
  p.warmup = o.warmup;
  p.requests = o.requests;
  p.total = o.total;
  p.window = o.window;
  p.one_hop = o.one_hop;
  p.call_lane = o.call_lane;
  p.pipe_warmup = std::min(o.total, std::max(o.window * 4, o.total / 10));
  std::vector<transport_mode> modes;
  {
    std::stringstream ss{o.transports};
    std::string item;
    while (std::getline(ss, item, ',')) {
      transport_mode m;
      if (!from_string(item, m)) {
        std::cerr << "aico-bench-transport: unknown transport '" << item
                  << "' (use ipc, ws, http, grpc)" << std::endl;
        return usage;
      }
      if (std::find(modes.begin(), modes.end(), m) == modes.end())
        modes.push_back(m);
    }
  }
  bool grpc_wanted = std::find(modes.begin(), modes.end(),
                               transport_mode::grpc)
                     != modes.end();
  if (modes.empty()) {
    std::cerr << "aico-bench-transport: no transport given" << std::endl;
    return usage;
  }
  // the gateway: loopback, temp dir, no bot, no faults
  test::gateway_options gopts;
  gopts.bot = false;
  gopts.enable_faults = false;
  if (grpc_wanted)
    gopts.extra_args = {"--grpc", "127.0.0.1:0"};
  test::gateway_process gw{gopts};
  if (!gw.start()) {
    std::cerr << "aico-bench-transport: the gateway did not start: "
              << gw.last_error() << " (binary " << test::gateway_binary()
              << ", log " << gw.log_path() << ")" << std::endl;
    return failed;
  }
  call_spec call;
  call.path = o.path;
  if (o.auth) {
    std::string err;
    call.token = login(gw, err);
    if (call.token.empty()) {
      std::cerr << "aico-bench-transport: " << err << std::endl;
      return failed;
    }
  }
  engine_target target;
  target.http_url = gw.http_url();
  target.ws_url = gw.ws_url();
  target.ipc_endpoint = gw.ipc_endpoint();
  target.grpc_endpoint = gw.reported_grpc();
  target.username = "alice";
  target.password = "alice-pw";

  std::vector<transport_report> reps;
  std::string error;
  {
    caf::actor_system_config cfg;
    cfg.set("scheduler.policy", caf::atom("sharing"));
    cfg.set("scheduler.max-threads", o.caf_threads);
    caf::actor_system sys{cfg};
    for (auto m : modes) {
      transport_report rep;
      rep.mode = m;
      target.mode = m;
      for (int round = 0; round < o.rounds && error.empty(); ++round) {
        auto check = [&](const char* what, const run_result& r) {
          if (!r.ok() && error.empty())
            error = std::string{to_string(m)} + " " + what + ": " + r.error;
          return r.ok();
        };
        if (!o.json_out)
          std::fprintf(stderr, "[%s round %d] raw...", to_string(m),
                       round + 1);
        run_result raw;
        switch (m) {
          case transport_mode::ipc:
            raw = raw_zmq_run(target.ipc_endpoint, call, p);
            break;
          case transport_mode::ws:
            raw = raw_lws_run(target.ws_url, call, p);
            break;
          case transport_mode::http:
            raw = raw_curl_run(target.http_url, call, p);
            break;
          case transport_mode::grpc:
            raw = raw_grpc_run(target.grpc_endpoint, call, p);
            break;
        }
        if (!check("raw", raw))
          break;
        rep.raw.add(raw);
        if (!o.json_out)
          std::fprintf(stderr, " transport actor...");
        auto act = transport_actor_run(sys, target, call, p);
        if (!check("transport actor", act))
          break;
        rep.actor.add(act);
        if (!o.json_out)
          std::fprintf(stderr, " engine...");
        auto eng = engine_run(sys, target, call, p);
        if (!check("engine", eng))
          break;
        rep.eng.add(eng);
        if (!o.json_out)
          std::fprintf(stderr, " done\n");
      }
      if (!error.empty())
        break;
      reps.push_back(std::move(rep));
    }
  }
  int rc = gw.stop();
  if (!error.empty()) {
    if (!o.json_out)
      std::fprintf(stderr, "\n");
    std::cerr << "aico-bench-transport: " << error << std::endl;
    return failed;
  }
  if (rc != 0)
    std::cerr << "aico-bench-transport: note: the gateway exited with " << rc
              << std::endl;
  if (o.json_out)
    print_json(o, p, reps);
  else
    print_table(o, p, reps);
  return ok;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"aico transport benchmark: engine vs raw library, per "
               "transport (figures as ratios; always exits 0 unless "
               "something failed)"};
  app.add_option("--transports", o.transports,
                 "Comma-separated list of ipc, ws, http, grpc (grpc starts "
                 "the gateway with its gRPC door)")
    ->capture_default_str();
  app.add_option("--requests", o.requests, "Sequential round trips measured")
    ->check(CLI::Range(1, 10000000))
    ->capture_default_str();
  app.add_option("--warmup", o.warmup, "Sequential round trips before that")
    ->check(CLI::Range(0, 10000000))
    ->capture_default_str();
  app.add_option("--total", o.total, "Pipelined requests measured")
    ->check(CLI::Range(1, 100000000))
    ->capture_default_str();
  app.add_option("--window", o.window, "Requests in flight while pipelining")
    ->check(CLI::Range(1, 1000))
    ->capture_default_str();
  app.add_option("--rounds", o.rounds,
                 "Repeat raw/actor/engine this often (latencies pooled, "
                 "throughput median)")
    ->check(CLI::Range(1, 100))
    ->capture_default_str();
  app.add_flag("--one-hop,!--no-one-hop", o.one_hop,
               "the engine's one-hop call path (supervisor_config::one_hop, "
               "on by default; --no-one-hop routes through the supervisor "
               "both ways)");
  app.add_flag("--call-lane,!--no-call-lane", o.call_lane,
               "with --one-hop: the supervisor sends calls straight to the "
               "driver (supervisor_config::call_lane, on by default; "
               "--no-call-lane sends them through the transport actor)");
  app.add_option("--caf-threads", o.caf_threads,
                 "scheduler.max-threads of the engine's actor system")
    ->check(CLI::Range(1, 64))
    ->capture_default_str();
  app.add_option("--path", o.path, "GET path relative to /api/v1")
    ->capture_default_str();
  app.add_flag("--auth", o.auth,
               "Send alice's access token (the engine logs in through its "
               "token manager and makes authenticated calls); use with "
               "--path /users/me");
  app.add_flag("--json", o.json_out, "Print one JSON object");
  app.add_flag("--quick", o.quick,
               "Smoke run: 20 warm-up, 200 round trips, 2000 pipelined, "
               "window 16");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto rc = app.exit(e);
    return rc == 0 ? ok : usage;
  }
  if (o.quick) {
    o.warmup = 20;
    o.requests = 200;
    o.total = 2000;
    o.window = 16;
    o.rounds = 1;
  }
  if (o.path.empty() || o.path.front() != '/')
    o.path = "/" + o.path;
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "aico-bench-transport: " << e.what() << std::endl;
    return failed;
  }
}
