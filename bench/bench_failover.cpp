// aico-bench-failover: failover and fail-back times of the whole engine
// against the reference gateway on loopback, over many trials.
//
//   failover  = a door is switched off (POST /admin/faults) -> the first
//               successful request on the next transport
//   fail-back = the door is switched on again -> the first successful
//               request on the better transport
//
// Scenarios: IPC -> WS (and back), WS -> HTTP (and back, IPC disabled).
// Prints p50 / p90 / max per scenario in ms, plus the engine's plain
// request round trip measured in the same run as the baseline. A
// benchmark: exits 0 whatever the figures, 1 only when something fails.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <CLI/CLI.hpp>

#include "caf/all.hpp"

#include "actors/transport_registry.hpp"
#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"

using namespace aico;
using namespace std::chrono_literals;
namespace json = boost::json;
using steady = std::chrono::steady_clock;

namespace {

struct stats {
  std::vector<double> ms;
  double pct(double p) const {
    if (ms.empty())
      return 0;
    auto xs = ms;
    std::sort(xs.begin(), xs.end());
    auto i = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
    return xs[std::min(i, xs.size() - 1)];
  }
  double max() const {
    return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end());
  }
};

class bench {
public:
  bench(aico::test::gateway_process& gw, std::vector<transport_mode> order,
        bool call_lane)
    : gw_(gw), admin_(gw.host(), gw.port()) {
    auto r = admin_.post("/api/v1/users/authenticate",
                         json::object{{"username", "root"},
                                      {"password", "root-pw"}});
    root_ = aico::test::jstr(r.body, "/data/access_token");
    engine_config cfg;
    auto& c = cfg.connection;
    c.order = std::move(order);
    c.http.base_url = gw.http_url();
    c.ws.url = gw.ws_url();
    c.ipc.endpoint = gw.ipc_endpoint();
    for_each_transport(c, [](transport_config& t) {
      t.connect_timeout = 2s;
      t.ping_interval = 500ms;
      t.dead_peer_timeout = 2s;
    });
    c.health_interval = 1s;
    c.health_timeout = 1s;
    c.failback_probes = 2;
    c.call_lane = call_lane;
    c.backoff = {std::chrono::milliseconds{100}, 1.6, 0.2,
                 std::chrono::milliseconds{1000}};
    cfg.shutdown_timeout = 5s;
    eng_ = std::make_unique<engine>(sys_, cfg);
  }

  bool fault(const json::object& body) {
    return admin_.post("/api/v1/admin/faults", body, root_).status == 200;
  }

  /// One GET /health through the supervisor; the transport that answered.
  std::optional<transport_mode> ping(caf::timespan t = 1s) {
    caf::scoped_actor self{sys_};
    std::optional<transport_mode> res;
    api_call c{"b-" + std::to_string(next_++), "GET", "/health", "", ""};
    self->request(eng_->connection(), t + 1s, request_atom::value, c, t, false)
      .receive([&](api_reply& r) { res = r.via; }, [&](caf::error&) {});
    return res;
  }

  /// Polls until a request succeeds via `m`; the time it took, or -1.
  double until_via(transport_mode m, steady::time_point t0,
                   std::chrono::seconds limit = 20s) {
    while (steady::now() - t0 < limit) {
      auto via = ping();
      if (via && *via == m)
        return std::chrono::duration<double, std::milli>(steady::now() - t0)
          .count();
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

  double rtt_p50(int n) {
    stats s;
    for (int i = 0; i < n; ++i) {
      auto t0 = steady::now();
      if (ping())
        s.ms.push_back(
          std::chrono::duration<double, std::milli>(steady::now() - t0)
            .count());
    }
    return s.pct(0.5);
  }

private:
  aico::test::gateway_process& gw_;
  aico::test::http_client admin_;
  std::string root_;
  caf::actor_system_config cfg_;
  caf::actor_system sys_{cfg_};
  std::unique_ptr<engine> eng_;
  uint64_t next_ = 0;
};

struct scenario {
  const char* name;
  std::vector<transport_mode> order;
  const char* door;
  transport_mode best;
  transport_mode next;
};

} // namespace

int main(int argc, char** argv) {
  int trials = 20;
  bool as_json = false;
  CLI::App app{"aico-bench-failover: failover and fail-back times"};
  app.add_option("--trials", trials, "Trials per scenario")
    ->check(CLI::Range(1, 1000))
    ->capture_default_str();
  app.add_flag("--json", as_json, "One JSON object");
  bool quick = false;
  app.add_flag("--quick", quick, "3 trials (smoke run)");
  bool lanes = true;
  app.add_flag("--call-lane,!--no-call-lane", lanes,
               "calls and health checks through the call lane "
               "(supervisor_config::call_lane, on by default)");
  CLI11_PARSE(app, argc, argv);
  if (quick)
    trials = 3;
  aico::test::gateway_options opts;
  opts.bot = false;
  aico::test::gateway_process gw{opts};
  if (!gw.start()) {
    std::cerr << "aico-bench-failover: gateway did not start: "
              << gw.last_error() << std::endl;
    return 1;
  }
  std::vector<scenario> scenarios{
    {"ipc->ws", {transport_mode::ipc, transport_mode::ws, transport_mode::http},
     "ipc", transport_mode::ipc, transport_mode::ws},
    {"ws->http", {transport_mode::ws, transport_mode::http}, "ws",
     transport_mode::ws, transport_mode::http},
  };
  json::array out;
  std::printf("%-9s %8s | %9s %9s %9s | %9s %9s %9s\n", "scenario", "rtt p50",
              "fo p50", "fo p90", "fo max", "fb p50", "fb p90", "fb max");
  for (auto& sc : scenarios) {
    bench b{gw, sc.order, lanes};
    auto t_start = steady::now();
    if (b.until_via(sc.best, t_start) < 0) {
      std::cerr << "aico-bench-failover: " << sc.name
                << ": never connected over " << to_string(sc.best)
                << std::endl;
      return 1;
    }
    auto rtt = b.rtt_p50(200);
    stats fo, fb;
    for (int i = 0; i < trials; ++i) {
      auto t0 = steady::now();
      b.fault({{sc.door, "down"}});
      auto x = b.until_via(sc.next, t0);
      std::this_thread::sleep_for(300ms); // let the dead door settle
      auto t1 = steady::now();
      b.fault({{sc.door, "up"}});
      auto y = b.until_via(sc.best, t1);
      if (x < 0 || y < 0) {
        std::cerr << "aico-bench-failover: " << sc.name << ": trial " << i
                  << " did not " << (x < 0 ? "fail over" : "fail back")
                  << " within 20 s" << std::endl;
        return 1;
      }
      fo.ms.push_back(x);
      fb.ms.push_back(y);
    }
    std::printf("%-9s %8.2f | %9.1f %9.1f %9.1f | %9.1f %9.1f %9.1f\n",
                sc.name, rtt, fo.pct(0.5), fo.pct(0.9), fo.max(),
                fb.pct(0.5), fb.pct(0.9), fb.max());
    out.push_back(json::object{{"scenario", sc.name},
                               {"trials", trials},
                               {"rtt_p50_ms", rtt},
                               {"failover_p50_ms", fo.pct(0.5)},
                               {"failover_p90_ms", fo.pct(0.9)},
                               {"failover_max_ms", fo.max()},
                               {"failback_p50_ms", fb.pct(0.5)},
                               {"failback_p90_ms", fb.pct(0.9)},
                               {"failback_max_ms", fb.max()}});
  }
  std::printf("settings: ping 500 ms, dead peer 2 s, health 1 s, backoff "
              "100 ms x1.6 (cap 1 s), 2 fail-back probes\n");
  if (as_json)
    std::cout << json::serialize(json::object{{"failover", out}})
              << std::endl;
  gw.stop();
  return 0;
}
