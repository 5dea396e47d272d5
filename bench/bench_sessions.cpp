// aico-bench-sessions: many concurrent idle WebSocket sessions in one client
// process, against the reference gateway on loopback.
//
//   raw    : N connections held by libwebsockets alone in one context on one
//            thread (raw_lws_idle.cpp), run in a child process of its own so
//            its memory is measured from a clean start
//   engine : N whole engine sessions (supervisor, token manager, resilient
//            client, offline queue, cache, repositories, WebSocket
//            transport), each logged in, in this process's actor system
//
// Both ramp up at the same rate, then stay idle for the hold time (each
// session sends its heartbeat ping; the engines also their health checks).
// Printed per variant: sessions up after the ramp and after the hold, drops,
// ramp time, memory (RSS growth) per session, threads, fds per session and
// CPU while idle, and the engine/raw memory ratio. A benchmark, not a test:
// exit 0 whatever the figures, 1 only when something failed (the gateway
// did not start, sessions did not connect), with the reason on stderr.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <map>
#include <mutex>
#include <vector>

#include <boost/json.hpp>
#include <CLI/CLI.hpp>

#include "caf/all.hpp"

#include "bench_sessions.hpp"
#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"

extern char** environ;

using namespace aico;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

namespace aico::bench {

process_sample sample_process() {
  process_sample s;
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0)
      s.rss_kb = std::strtoll(line.c_str() + 6, nullptr, 10);
    else if (line.rfind("Threads:", 0) == 0)
      s.threads = std::strtoll(line.c_str() + 8, nullptr, 10);
  }
  if (auto* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.')
        ++s.fds;
    ::closedir(d);
    --s.fds; // the directory stream itself
  }
  rusage ru;
  if (::getrusage(RUSAGE_SELF, &ru) == 0)
    s.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
              + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)
                  / 1e6;
  return s;
}

} // namespace aico::bench

namespace {

using namespace aico::bench;

json::object to_json(const process_sample& s) {
  return {{"rss_kb", s.rss_kb},
          {"threads", s.threads},
          {"fds", s.fds},
          {"cpu_s", s.cpu_s}};
}

process_sample sample_from(const json::value& v) {
  process_sample s;
  s.rss_kb = aico::test::jint(v, "/rss_kb", 0);
  s.threads = aico::test::jint(v, "/threads", 0);
  s.fds = aico::test::jint(v, "/fds", 0);
  if (auto p = aico::test::jptr(v, "/cpu_s"); p && p->is_number())
    s.cpu_s = p->to_number<double>();
  return s;
}

json::object to_json(const idle_figures& f) {
  json::object o{{"ok", f.ok()},
                 {"error", f.error},
                 {"connected", f.connected},
                 {"still_connected", f.still_connected},
                 {"drops", f.drops},
                 {"connect_s", f.connect_s}};
  o["before"] = to_json(f.before);
  o["after"] = to_json(f.after);
  o["held"] = to_json(f.held);
  return o;
}

idle_figures figures_from(const json::value& v) {
  idle_figures f;
  f.error = aico::test::jstr(v, "/error");
  f.connected = aico::test::jint(v, "/connected", 0);
  f.still_connected = aico::test::jint(v, "/still_connected", 0);
  f.drops = aico::test::jint(v, "/drops", 0);
  if (auto p = aico::test::jptr(v, "/connect_s"); p && p->is_number())
    f.connect_s = p->to_number<double>();
  if (auto p = aico::test::jptr(v, "/before"))
    f.before = sample_from(*p);
  if (auto p = aico::test::jptr(v, "/after"))
    f.after = sample_from(*p);
  if (auto p = aico::test::jptr(v, "/held"))
    f.held = sample_from(*p);
  return f;
}

// -- the engine variant ------------------------------------------------------------

/// Counts, over all sessions, what the main thread waits for.
struct tally {
  std::atomic<int64_t> connected{0};
  std::atomic<int64_t> logins_ok{0};
  std::atomic<int64_t> logins_failed{0};
  std::atomic<int64_t> drops{0}; ///< connected -> anything else
  std::string last_error;        ///< guarded by mx
  /// Why sessions went down ("ws: health check failed"), guarded by mx.
  std::map<std::string, int64_t> down_reasons;
  std::mutex mx;

  std::string top_reasons(size_t n) {
    std::lock_guard<std::mutex> g{mx};
    std::vector<std::pair<int64_t, std::string>> xs;
    for (auto& [k, v] : down_reasons)
      xs.emplace_back(v, k);
    std::sort(xs.rbegin(), xs.rend());
    std::string res;
    for (size_t i = 0; i < xs.size() && i < n; ++i)
      res += (i ? "; " : "") + std::to_string(xs[i].first) + "x " + xs[i].second;
    return res;
  }
};

using login_a = caf::atom_constant<caf::atom("bs_login")>;

struct tracker_state {
  static inline const char* name = "bench.tracker";
  tally* t = nullptr;
  std::string user, password;
  /// supervisor address -> currently connected over WS
  std::map<caf::actor_addr, bool> up;
};

caf::behavior tracker(caf::stateful_actor<tracker_state>* self, tally* t,
                      std::string user, std::string password) {
  self->state.t = t;
  self->state.user = std::move(user);
  self->state.password = std::move(password);
  return {
    [=](state_atom, const connection_state& cs) {
      auto& st = self->state;
      bool now_up = cs.state == link_state::connected
                    && cs.mode == transport_mode::ws;
      auto& was
        = st.up[caf::actor_cast<caf::actor_addr>(self->current_sender())];
      if (now_up && !was)
        ++st.t->connected;
      if (!now_up && was) {
        --st.t->connected;
        ++st.t->drops;
      }
      if (cs.state == link_state::reconnecting && !cs.reason.empty()) {
        std::lock_guard<std::mutex> g{st.t->mx};
        ++st.t->down_reasons[cs.reason.substr(0, 80)];
      }
      was = now_up;
    },
    [=](event_atom, const server_event&) {},
    [=](login_a, token_manager_actor tm, int attempt) {
      auto& st = self->state;
      self->request(tm, 60s, login_atom::value, st.user, st.password)
        .then([=](const session_info&) { ++self->state.t->logins_ok; },
              [=](const caf::error& e) {
                if (attempt < 5) {
                  self->delayed_send(self, 500ms, login_a::value, tm,
                                     attempt + 1);
                  return;
                }
                ++self->state.t->logins_failed;
                std::lock_guard<std::mutex> g{self->state.t->mx};
                self->state.t->last_error = describe(e);
              });
    },
  };
}

struct engine_run_options {
  std::string http_url, ws_url;
  bool login = true;
  /// supervisor_config::call_lane (health checks through the lane).
  bool call_lane = true;
  std::string user, password;
  int threads = 2;
};

idle_figures run_engines(const idle_params& prm, const engine_run_options& o,
                         double& shutdown_s) {
  idle_figures res;
  aico::test::temp_dir root{"aico-bench-sessions"};
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", o.threads);
  caf::actor_system sys{cfg};
  tally t;
  auto trk = sys.spawn(tracker, &t, o.user, o.password);
  auto listener = caf::actor_cast<engine_listener_actor>(trk);
  std::vector<std::unique_ptr<engine>> engines;
  engines.reserve(static_cast<size_t>(prm.sessions));
  res.before = sample_process();
  auto t0 = steady::now();
  auto deadline = t0 + prm.connect_timeout;
  auto interval = std::chrono::duration<double>(1.0 / prm.rate);
  auto all_up = [&] {
    return t.connected.load() >= prm.sessions
           && (!o.login || t.logins_ok.load() >= prm.sessions);
  };
  auto last_print = t0;
  while (!all_up()) {
    auto now = steady::now();
    if (now - last_print >= 5s) {
      last_print = now;
      std::fprintf(stderr,
                   "aico-bench-sessions: %.0f s: %zu sessions, %lld "
                   "connected, %lld logged in\n",
                   std::chrono::duration<double>(now - t0).count(),
                   engines.size(), static_cast<long long>(t.connected.load()),
                   static_cast<long long>(t.logins_ok.load()));
      if (auto r = t.top_reasons(3); !r.empty())
        std::fprintf(stderr, "aico-bench-sessions: went down: %s\n",
                     r.c_str());
    }
    if (now > deadline || t.logins_failed.load() > 0) {
      std::lock_guard<std::mutex> g{t.mx};
      res.error = "engine: " + std::to_string(t.connected.load()) + " of "
                  + std::to_string(prm.sessions) + " sessions connected, "
                  + std::to_string(t.logins_ok.load()) + " logged in"
                  + (t.last_error.empty() ? "" : ": " + t.last_error);
      break;
    }
    auto due = std::min<int>(
      prm.sessions,
      static_cast<int>(std::chrono::duration<double>(now - t0) / interval)
        + 1);
    while (static_cast<int>(engines.size()) < due) {
      engine_config ec;
      ec.state_dir = root.path() + "/s" + std::to_string(engines.size());
      auto& c = ec.connection;
      c.order = {transport_mode::ws};
      c.ws.url = o.ws_url;
      c.http.base_url = o.http_url;
      c.ws.ping_interval = prm.ping_interval;
      c.ws.connect_timeout = 30s;
      c.call_lane = o.call_lane;
      ec.tokens.request_timeout = 60s;
      engines.push_back(std::make_unique<engine>(sys, ec));
      auto& e = *engines.back();
      caf::anon_send(e.connection(), watch_atom::value, listener);
      if (o.login)
        caf::anon_send(trk, login_a::value, e.tokens(), 0);
    }
    std::this_thread::sleep_for(5ms);
  }
  if (res.ok()) {
    res.connect_s = std::chrono::duration<double>(steady::now() - t0).count();
    res.connected = t.connected.load();
    res.after = sample_process();
    auto drops0 = t.drops.load();
    std::this_thread::sleep_for(prm.hold);
    res.held = sample_process();
    res.still_connected = t.connected.load();
    res.drops = t.drops.load() - drops0;
  }
  // stop the engines in parallel (each bounded by its shutdown_timeout)
  auto s0 = steady::now();
  std::atomic<size_t> next{0};
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 8; ++i)
    stoppers.emplace_back([&] {
      for (size_t k; (k = next++) < engines.size();)
        engines[k].reset();
    });
  for (auto& th : stoppers)
    th.join();
  engines.clear();
  shutdown_s = std::chrono::duration<double>(steady::now() - s0).count();
  caf::anon_send_exit(trk, caf::exit_reason::user_shutdown);
  return res;
}

// -- the raw variant, in a child process ------------------------------------------------

/// Runs this binary with `args`; returns its stdout (exit code in `rc`).
std::string run_child(const std::vector<std::string>& args, int& rc) {
  int fds[2];
  rc = -1;
  if (::pipe(fds) != 0)
    return {};
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  ::posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (auto& a : copy)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  auto err = ::posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(),
                           environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  std::string out;
  if (err == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
      out.append(buf, static_cast<size_t>(n));
    int st = 0;
    ::waitpid(pid, &st, 0);
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  ::close(fds[0]);
  return out;
}

void print_row(const char* name, const idle_figures& f, double hold_s) {
  auto per = [&](int64_t a, int64_t b) {
    return f.connected > 0
             ? static_cast<double>(b - a) / static_cast<double>(f.connected)
             : 0.0;
  };
  std::printf("%-8s %10lld %10lld %7lld %10.1f %12.1f %9lld %12.2f %10.1f\n",
              name, static_cast<long long>(f.connected),
              static_cast<long long>(f.still_connected),
              static_cast<long long>(f.drops), f.connect_s,
              f.kb_per_session(),
              static_cast<long long>(f.after.threads - f.before.threads),
              per(f.before.fds, f.after.fds), f.idle_cpu_pct(hold_s));
}

} // namespace

int main(int argc, char** argv) {
  idle_params prm;
  int sessions = 10000;
  double hold_s = 30, ping_s = 30, rate = 500;
  bool no_login = false, json_out = false, quick = false, no_lane = false;
  std::string variant = "both";
  // internal: the raw child
  bool raw_child = false;
  std::string child_url, child_token;
  int threads = 2;
  CLI::App app{"aico-bench-sessions: many idle WebSocket sessions in one "
               "client process (engine vs raw libwebsockets), loopback"};
  app.add_option("--sessions", sessions, "concurrent sessions")
    ->check(CLI::Range(1, 100000));
  app.add_option("--rate", rate, "new sessions per second")
    ->check(CLI::PositiveNumber);
  app.add_option("--hold", hold_s, "seconds idle after the ramp")
    ->check(CLI::NonNegativeNumber);
  app.add_option("--ping", ping_s, "heartbeat interval in seconds")
    ->check(CLI::PositiveNumber);
  app.add_option("--variant", variant, "raw, engine or both")
    ->check(CLI::IsMember({"raw", "engine", "both"}));
  app.add_option("--caf-threads", threads, "engine scheduler threads")
    ->check(CLI::Range(1, 64));
  app.add_flag("--no-login", no_login, "engine sessions do not log in");
  app.add_flag("--no-call-lane", no_lane,
               "engine health checks through the transport actor "
               "(supervisor_config::call_lane off)");
  app.add_flag("--quick", quick, "smoke run: 100 sessions, 2 s hold");
  app.add_flag("--json", json_out, "one JSON object");
  app.add_flag("--raw-child", raw_child)->group("");
  app.add_option("--child-url", child_url)->group("");
  app.add_option("--child-token", child_token)->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (quick) {
    sessions = std::min(sessions, 100);
    hold_s = std::min(hold_s, 2.0);
  }
  prm.sessions = sessions;
  prm.rate = rate;
  prm.hold = std::chrono::milliseconds{static_cast<int64_t>(hold_s * 1000)};
  prm.ping_interval
    = std::chrono::milliseconds{static_cast<int64_t>(ping_s * 1000)};
  if (raw_child) {
    auto f = raw_lws_idle(child_url, child_token, prm);
    std::cout << json::serialize(to_json(f)) << std::endl;
    return f.ok() ? 0 : 1;
  }
  // one fd per session (plus the gateway's): say so up front
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl); // children (gateway, raw) inherit it
  }
  if (static_cast<int64_t>(rl.rlim_cur) < sessions + 256) {
    std::cerr << "aico-bench-sessions: " << sessions
              << " sessions need about " << sessions + 256
              << " file descriptors; RLIMIT_NOFILE is " << rl.rlim_cur
              << std::endl;
    return 1;
  }
  aico::test::gateway_options gopts;
  gopts.users = {"idle:idle-pw"};
  gopts.bot = false;
  gopts.enable_faults = false;
  aico::test::gateway_process gw{gopts};
  if (!gw.start()) {
    std::cerr << "aico-bench-sessions: gateway: " << gw.last_error()
              << std::endl;
    return 1;
  }
  aico::test::http_client rest{gw.host(), gw.port()};
  auto r = rest.post("/api/v1/users/authenticate",
                     json::object{{"username", "idle"},
                                  {"password", "idle-pw"}});
  auto token = aico::test::jstr(r.body, "/data/access_token");
  if (token.empty()) {
    std::cerr << "aico-bench-sessions: login failed: HTTP " << r.status
              << std::endl;
    return 1;
  }
  idle_figures raw, eng;
  bool have_raw = false, have_eng = false;
  double shutdown_s = 0;
  if (variant != "engine") {
    int rc = 0;
    auto out = run_child({"aico-bench-sessions", "--raw-child", "--child-url",
                          gw.ws_url(), "--child-token", token, "--sessions",
                          std::to_string(sessions), "--rate",
                          std::to_string(rate), "--hold",
                          std::to_string(hold_s), "--ping",
                          std::to_string(ping_s)},
                         rc);
    auto v = aico::test::parse_json(out);
    if (!v.is_object()) {
      std::cerr << "aico-bench-sessions: raw run failed (exit " << rc
                << "): " << out << std::endl;
      return 1;
    }
    raw = figures_from(v);
    have_raw = true;
    // let the gateway close the raw connections before the engines come
    std::this_thread::sleep_for(2s);
  }
  if (variant != "raw") {
    engine_run_options eo;
    eo.http_url = gw.http_url();
    eo.ws_url = gw.ws_url();
    eo.login = !no_login;
    eo.call_lane = !no_lane;
    eo.user = "idle";
    eo.password = "idle-pw";
    eo.threads = threads;
    eng = run_engines(prm, eo, shutdown_s);
    have_eng = true;
  }
  gw.stop();
  bool failed = (have_raw && !raw.ok()) || (have_eng && !eng.ok());
  if (json_out) {
    json::object o{{"sessions", sessions},
                   {"rate", rate},
                   {"hold_s", hold_s},
                   {"ping_s", ping_s},
                   {"login", !no_login}};
    if (have_raw)
      o["raw"] = to_json(raw);
    if (have_eng) {
      o["engine"] = to_json(eng);
      o["engine"].as_object()["shutdown_s"] = shutdown_s;
    }
    if (have_raw && have_eng && raw.kb_per_session() > 0)
      o["memory_ratio"] = eng.kb_per_session() / raw.kb_per_session();
    std::cout << json::serialize(o) << std::endl;
  } else {
    std::printf("aico-bench-sessions: %d sessions, ramp %.0f/s, hold %.0f s, "
                "ping every %.0f s, engine sessions %s\n\n",
                sessions, rate, hold_s, ping_s,
                no_login ? "not logged in" : "logged in");
    std::printf("%-8s %10s %10s %7s %10s %12s %9s %12s %10s\n", "variant",
                "connected", "after hold", "drops", "ramp s", "kB/session",
                "+threads", "fds/session", "idle CPU%");
    if (have_raw)
      print_row("raw", raw, hold_s);
    if (have_eng)
      print_row("engine", eng, hold_s);
    if (have_raw && have_eng && raw.kb_per_session() > 0)
      std::printf("\nengine/raw memory per session: %.1fx\n",
                  eng.kb_per_session() / raw.kb_per_session());
    if (have_eng)
      std::printf("engine shutdown of all sessions: %.1f s\n", shutdown_s);
    if (have_raw && !raw.ok())
      std::cerr << "aico-bench-sessions: " << raw.error << std::endl;
    if (have_eng && !eng.ok())
      std::cerr << "aico-bench-sessions: " << eng.error << std::endl;
  }
  return failed ? 1 : 0;
}
