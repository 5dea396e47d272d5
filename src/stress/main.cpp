// aico-stress: N simulated users (each a full engine session) against a
// gateway on loopback, with an optional fault schedule; ends with a report
// and an integrity check against the gateway's store.
//
// Modes:
//   single process (default)  one process, one actor system, every user
//   --controller --workers N  the gateway, faults, integrity and report;
//                             the users run in N worker processes
//   --worker --connect H:P    one slice of the users, for a controller
// (distributed.hpp; the load of a slice: load.hpp).
//
// Exit codes: 0 integrity exact, 1 integrity violated (or the run failed),
// 2 usage.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "caf/all.hpp"

#include "actors/transport_registry.hpp"
#include "cli_config.hpp"
#include "src/stress/distributed.hpp"
#include "src/stress/load.hpp"
#include "src/stress/setup.hpp"

using namespace aico::stress;

namespace {

int run_single(options& o) {
  std::string err;
  // -- validate, temp root, gateway -------------------------------------------------------
  temp_root root;
  gateway_setup g;
  if (auto rc = prepare_run(o, root, g))
    return rc;
  // -- the load: one slice with every user ----------------------------------------------
  load_params p;
  p.url = g.url;
  p.endpoints = g.endpoints;
  p.aico = aico_profile(o);
  p.ws_url = g.ws_url;
  p.password = o.password;
  p.transports = o.transports;
  p.mix = o.mix;
  p.first = 0;
  p.count = o.users;
  p.rate = o.rate;
  p.limited = o.messages > 0;
  p.messages = o.messages;
  p.duration = o.duration;
  p.ramp = o.ramp;
  p.drain_timeout = o.drain_timeout;
  p.conversations = o.conversations;
  p.seed = o.seed;
  p.state_root = root.path;
  p.flags = o.client;
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", scheduler_threads(o));
  int rc = 1;
  uint64_t fault_actions = 0, kills = 0;
  std::unique_ptr<fault_driver> fd;
  std::unique_ptr<ws_flapper> flap;
  {
    caf::actor_system sys{cfg};
    load_runner lr{sys, p};
    if (!g.faults.empty()) {
      fd = std::make_unique<fault_driver>(g.faults, g.url, g.admin_user,
                                          g.admin_pw, g.gw.get());
      if (!fd->start(err)) {
        std::cerr << "aico-stress: " << err << std::endl;
        return 1;
      }
    }
    if (o.peer_ws_flap > 0) {
      flap = std::make_unique<ws_flapper>(g.url, o.peer_ws_flap);
      flap->start();
    }
    progress_printer pp{o.duration, o.messages};
    load_hooks hooks;
    hooks.tick = [&](double e, const progress_counters& c) { pp.update(e, c); };
    hooks.load_stopped = [&](double load_s, uint64_t) {
      // restore the gateway, then drain
      if (fd) {
        fd->stop();
        fault_actions = fd->actions();
        kills = fd->kills();
      }
      if (flap) {
        flap->stop(); // the WebSocket is on again for the drain
        fault_actions += flap->actions();
      }
      pp.end_line();
      std::cerr << "aico-stress: load stopped after " << load_s
                << " s, draining " << lr.counters().outstanding << " queued"
                << std::endl;
    };
    hooks.stop = [] { return interrupted(); };
    lr.run(hooks);
    // -- integrity ---------------------------------------------------------------------------
    auto sent = lr.sent_ids();
    std::vector<int> users;
    for (int i = 0; i < static_cast<int>(lr.counters().created); ++i)
      users.push_back(i);
    integrity_result integ;
    std::string ierr;
    bool checked = p.aico ? check_peer_store(g.url, sent, lr.unknown_ids(),
                                             integ, ierr)
                          : check_store(g.url, o.password, o.conversations,
                                        users, sent, integ, ierr);
    if (!checked)
      std::cerr << "aico-stress: integrity check failed: " << ierr
                << std::endl;
    // -- report ----------------------------------------------------------------------------
    report rep = lr.measurements();
    rep.users = static_cast<uint64_t>(o.users);
    rep.rate = o.rate;
    rep.duration_s = o.duration;
    rep.transports = o.transports;
    rep.mix = o.mix;
    rep.faults = o.faults.empty() ? "none" : describe(g.faults);
    if (o.peer_ws_flap > 0) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "peer ws off %g s every %g s",
                    o.peer_ws_flap, 2 * o.peer_ws_flap);
      rep.faults = (rep.faults == "none" ? std::string{} : rep.faults + "; ")
                   + buf;
    }
    for (auto& rule : o.peer_faults)
      rep.faults = (rep.faults == "none" ? std::string{"peer "}
                                         : rep.faults + "; peer ")
                   + rule;
    rep.seed = o.seed;
    rep.fault_actions = fault_actions;
    rep.gateway_kills = kills;
    rep.integrity_checked = checked;
    if (checked)
      rep.integrity = integ;
    rc = emit_report(rep, o);
    lr.shutdown();
  }
  if (g.gw)
    g.gw->stop();
  if (fd)
    fd->finish();
  return rc;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
         && std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                       [](char a, char b) {
                         return std::tolower(static_cast<unsigned char>(a))
                                == b;
                       });
}

/// Checks the combination of modes and options; "" if fine.
std::string check_modes(const CLI::App& app, const options& o) {
  auto given = [&](const char* name) { return app.count(name) > 0; };
  if (o.controller && o.worker)
    return "--controller and --worker exclude each other";
  if (o.worker) {
    if (o.connect.empty())
      return "--worker needs --connect HOST:PORT (the controller's)";
    // the controller decides the load; a worker only connects
    if (!o.client.endpoints.empty())
      return "--worker takes its load from the controller: --"
             + o.client.endpoints.begin()->first + " belongs on the controller";
    for (auto name : {"--url", "--start-gateway", "--gateway-bin",
                      "--bot", "--access-ttl", "--users", "--rate",
                      "--duration", "--messages", "--ramp", "--transports",
                      "--mix", "--faults", "--peer-fault", "--peer-ws-flap",
                      "--conversations",
                      "--password",
                      "--admin", "--password-file", "--admin-file",
                      "--drain-timeout", "--seed", "--json",
                      "--plot", "--workers", "--listen", "--port-file",
                      "--worker-timeout"})
      if (given(name))
        return std::string{"--worker takes its load from the controller: "}
               + name + " belongs on the controller";
  } else {
    for (auto name : {"--connect", "--connect-timeout"})
      if (given(name))
        return std::string{name} + " needs --worker";
  }
  if (o.controller) {
    if (!given("--workers") || o.workers < 1)
      return "--controller needs --workers N (N >= 1)";
    if (o.workers > o.users)
      return "--workers " + std::to_string(o.workers) + " exceeds --users "
             + std::to_string(o.users) + " (every worker needs a user)";
  } else {
    for (auto name : {"--workers", "--listen", "--port-file",
                      "--worker-timeout"})
      if (given(name))
        return std::string{name} + " needs --controller";
  }
  if (!o.plot.empty() && !ends_with(o.plot, ".svg"))
    return "--plot: only SVG is written (FILE.svg), got '" + o.plot + "'";
  return {};
}

/// --password-file / --admin-file, and the warnings about secrets on the
/// command line; "" or why the options cannot be used.
std::string read_secrets(const CLI::App& app, options& o) {
  auto first_line = [](const std::string& path, std::string& out) {
    std::ifstream in{path};
    if (!in)
      return false;
    std::getline(in, out);
    while (!out.empty() && (out.back() == '\r' || out.back() == '\n'))
      out.pop_back();
    return true;
  };
  if (app.count("--password") > 0 && !o.password_file.empty())
    return "give --password or --password-file, not both";
  if (app.count("--admin") > 0 && !o.admin_file.empty())
    return "give --admin or --admin-file, not both";
  if (!o.password_file.empty() && !first_line(o.password_file, o.password))
    return "--password-file: cannot read '" + o.password_file + "'";
  if (!o.admin_file.empty() && !first_line(o.admin_file, o.admin))
    return "--admin-file: cannot read '" + o.admin_file + "'";
  if (app.count("--password") > 0 && o.url.empty())
    ; // the gateway is our own, with throw-away users
  else if (app.count("--password") > 0)
    std::cerr << "aico-stress: warning: --password on the command line can "
                 "be read by other local users (/proc/PID/cmdline); use "
                 "--password-file"
              << std::endl;
  if (app.count("--admin") > 0)
    std::cerr << "aico-stress: warning: --admin on the command line can be "
                 "read by other local users (/proc/PID/cmdline); use "
                 "--admin-file"
              << std::endl;
  return {};
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"aico-stress: many simulated users against an aico gateway "
               "(loopback only). Distributed: one --controller (gateway, "
               "faults, integrity check, report; it runs no users itself) "
               "and --workers N processes started with --worker --connect "
               "HOST:PORT, which run the users"};
  app.add_option("--url", o.url,
                 "gateway base URL (loopback); default: start one");
  // --ipc, --grpc (with --url; a self-started gateway opens the doors
  // --transports and --faults name)
  aico::cli::add_endpoint_options(app, o.client);
  app.add_flag("--start-gateway", o.start_gateway,
               "start the build's aico-gateway (default without --url)");
  app.add_option("--gateway-bin", o.gateway_bin,
                 "aico-gateway binary (aico-backend-peer with --profile aico)");
  app.add_flag("--bot", o.bot, "enable the gateway's bot (self-started)");
  app.add_option("--access-ttl", o.access_ttl,
                 "access token TTL in s of the self-started gateway");
  app.add_option("--users", o.users, "simulated users")
    ->check(CLI::Range(1, 100000));
  app.add_option("--rate", o.rate, "messages per second, all users")
    ->check(CLI::PositiveNumber);
  app.add_option("--duration", o.duration, "load phase in seconds (upper bound)")
    ->check(CLI::PositiveNumber);
  app.add_option("--messages", o.messages,
                 "stop after this many messages (bounded by --duration)");
  app.add_option("--ramp", o.ramp, "seconds to start all users")
    ->check(CLI::NonNegativeNumber);
  app.add_option("--transports", o.transports,
                 "transports to use, best first (default ipc,ws,http; known: "
                   + aico::known_transport_names() + ")");
  app.add_option("--mix", o.mix, "operation weights");
  app.add_option("--faults", o.faults, "fault schedule or @file");
  app.add_option("--peer-ws-flap", o.peer_ws_flap,
                 "--profile aico: switch the peer's WebSocket off for S "
                 "seconds every 2*S seconds during the load (failover WS <-> "
                 "HTTP)");
  app.add_option("--peer-fault", o.peer_faults,
                 "--profile aico: a rule for the peer's /_peer/faults, e.g. "
                 "'{\"fault\":\"stream_cut\",\"path\":\"/api/v1/"
                 "conversation/messages\",\"after\":1,\"count\":3}' "
                 "(repeatable)");
  app.add_option("--conversations", o.conversations,
                 "conversations per user")
    ->check(CLI::Range(1, 100));
  app.add_option("--password", o.password,
                 "password of the stress users (other local users can read "
                 "it; prefer --password-file with --url)");
  app.add_option("--password-file", o.password_file,
                 "read the stress users' password from this file's first "
                 "line");
  app.add_option("--admin", o.admin,
                 "USER:PASSWORD of an admin (faults with --url; other local "
                 "users can read it, prefer --admin-file)");
  app.add_option("--admin-file", o.admin_file,
                 "read USER:PASSWORD of --admin from this file's first line");
  aico::cli::add_profile_option(app, o.client);
  aico::cli::add_security_options(app, o.client);
  app.add_option("--drain-timeout", o.drain_timeout,
                 "max seconds to wait for the queues after the load");
  app.add_option("--threads", o.threads, "scheduler threads (0 = cores)");
  app.add_option("--seed", o.seed, "random seed");
  app.add_flag("--json", o.json_out, "print the report as JSON");
  app.add_option("--plot", o.plot,
                 "write an SVG latency plot (percentile distribution per "
                 "operation) to FILE.svg");
  app.add_flag("--keep", o.keep, "keep the temporary directory");
  // distributed mode
  app.add_flag("--controller", o.controller,
               "distributed: coordinate --workers worker processes (runs no "
               "users itself)");
  app.add_option("--workers", o.workers,
                 "distributed: number of worker processes to wait for");
  app.add_option("--listen", o.listen,
                 "distributed: HOST:PORT the controller listens on (port 0 = "
                 "any free one)")
    ->capture_default_str();
  app.add_option("--port-file", o.port_file,
                 "distributed: write the controller's port to this file");
  app.add_option("--worker-timeout", o.worker_timeout,
                 "distributed: seconds to wait for all workers")
    ->check(CLI::PositiveNumber)
    ->capture_default_str();
  app.add_flag("--worker", o.worker,
               "distributed: run the users a controller assigns");
  app.add_option("--connect", o.connect,
                 "distributed: HOST:PORT of the controller (with --worker)");
  app.add_option("--connect-timeout", o.connect_timeout,
                 "distributed: seconds to keep trying to reach the controller")
    ->check(CLI::PositiveNumber)
    ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto r = app.exit(e);
    return r == 0 ? 0 : 2;
  }
  if (auto why = check_modes(app, o); !why.empty()) {
    std::cerr << "aico-stress: " << why << std::endl;
    return 2;
  }
  if (auto why = read_secrets(app, o); !why.empty()) {
    std::cerr << "aico-stress: " << why << std::endl;
    return 2;
  }
  if (app.count("--transports") == 0) {
    // the aico profile has no IPC: its default transports are ws,http
    const char* env_profile = std::getenv("AICO_PROFILE");
    auto profile = o.client.profile ? *o.client.profile
                                    : std::string{env_profile ? env_profile : ""};
    if (profile == "aico")
      o.transports = "ws,http";
  }
  if (aico_profile(o)) {
    // the aico profile has no read receipts (refused by the profile); its
    // users log in with a PIN
    if (app.count("--mix") == 0)
      o.mix = "send=80,history=15,health=5";
    if (app.count("--password") == 0 && o.password_file.empty())
      o.password = "1234";
  }
  if (o.messages > 0 && o.duration == 20 && app.count("--duration") == 0)
    o.duration = 600; // --messages alone: still bounded
  install_signal_handlers();
  int rc = 1;
  try {
    if (o.worker)
      rc = run_worker(o);
    else if (o.controller)
      rc = run_controller(o);
    else
      rc = run_single(o);
  } catch (const std::exception& e) {
    std::cerr << "aico-stress: " << e.what() << std::endl;
    rc = 1;
  }
  return rc;
}
