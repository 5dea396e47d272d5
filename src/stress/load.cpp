// aico-stress: the simulated users and the load loop of one slice (see
// load.hpp). Moved here from main.cpp unchanged in behaviour, so that the
// single-process mode and the workers of the distributed mode share it.
#include "src/stress/load.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "caf/all.hpp"

#include "actors/transport_registry.hpp"
#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "src/config/load_config.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace aico::stress {

namespace {

/// The error code of a send whose outcome is unknown (the aico profile,
/// docs/profiles.md "A send whose outcome is unknown").
constexpr const char* outcome_unknown_code = "outcome_unknown";

using tick_a = caf::atom_constant<caf::atom("st_tick")>;
using stop_a = caf::atom_constant<caf::atom("st_stop")>;
using login_a = caf::atom_constant<caf::atom("st_login")>;

enum class op { send, history, read, health };
const char* op_name(op o) {
  switch (o) {
    case op::send:
      return "send";
    case op::history:
      return "history";
    case op::read:
      return "read";
    default:
      return "health";
  }
}

// -- state shared by the user actors and the main thread ----------------------------

struct shared_state {
  std::mutex mx;
  report rep;                                            // guarded by mx
  std::map<std::string, std::vector<std::string>> sent;  // guarded by mx
  std::set<std::string> unknown; // outcome unknown (guarded by mx)
  std::atomic<uint64_t> ops_ok{0}, ops_err{0}, sends{0}, outstanding{0};
  std::atomic<uint64_t> logged_in{0};
  // by transport_mode value, none last (progress_counters::mix)
  std::atomic<int64_t> mix[progress_counters::none + 1] = {};
  std::atomic<bool> stopping{false};
  bool limited = false;            // --messages given
  std::atomic<int64_t> budget{0};  // messages left if limited
  std::vector<std::pair<op, double>> weights; // cumulative
  caf::timespan interval{0};                  // between ops of one user
  int conversations = 1;
  std::string password;
  bool aico = false; // load_params::aico

  void ok(op o, const std::string& transport, int64_t ns) {
    ops_ok++;
    std::lock_guard<std::mutex> g{mx};
    auto& s = rep.operations[op_name(o)];
    s.ok++;
    s.by_transport[transport].record(ns);
  }
  void failed(op o, const caf::error& e) {
    ops_err++;
    auto cls = to_string(classify(e).cls);
    std::lock_guard<std::mutex> g{mx};
    rep.operations[op_name(o)].errors++;
    rep.errors[cls]++;
  }
  void failed(op o, const std::string& cls) {
    ops_err++;
    std::lock_guard<std::mutex> g{mx};
    rep.operations[op_name(o)].errors++;
    rep.errors[cls]++;
  }
  void error_seen(const std::string& cls) {
    std::lock_guard<std::mutex> g{mx};
    rep.errors[cls]++;
  }
};

/// The mix slot of no transport (after the transport_mode values).
constexpr int none_index = static_cast<int>(progress_counters::none);

int mode_index(const connection_state& cs) {
  if (cs.state == link_state::connected || cs.state == link_state::degraded)
    return static_cast<int>(cs.mode);
  return none_index;
}

// -- one simulated user ----------------------------------------------------------------

struct pending_op {
  op kind;
  steady::time_point start;
  std::string conv;
};

struct user_state {
  static inline const char* name = "stress_user";
  shared_state* sh = nullptr;
  engine* eng = nullptr;
  std::string username;
  std::vector<std::string> convs;
  std::mt19937_64 rng;
  uint64_t next_id = 0;
  int mode = none_index;
  int last_active_mode = -1;
  bool logged_in = false;
  bool was_logged_in = false;
  int login_attempts = 0;
  std::unordered_map<std::string, pending_op> pending;     // queue key -> op
  std::unordered_map<std::string, steady::time_point> early; // sent before reply
  std::map<std::string, std::vector<std::string>> confirmed; // conv -> unread ids
  std::string transport() const {
    return mode == none_index ? "none"
                              : to_string(static_cast<transport_mode>(mode));
  }
};

using user_actor = caf::stateful_actor<user_state>;

caf::timespan jittered(user_actor* self, caf::timespan base) {
  std::uniform_real_distribution<double> d{0.5, 1.5};
  return caf::timespan{
    static_cast<int64_t>(static_cast<double>(base.count()) * d(self->state.rng))};
}

void complete(user_actor* self, const std::string& key, pending_op& p,
              bool ok, const std::string& cls) {
  auto& st = self->state;
  if (ok) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                steady::now() - p.start)
                .count();
    st.sh->ok(p.kind, st.transport(), ns);
    if (p.kind == op::send)
      st.confirmed[p.conv].push_back(key);
  } else {
    st.sh->failed(p.kind, "failed:" + cls);
  }
  st.sh->outstanding--;
}

void do_login(user_actor* self) {
  auto& st = self->state;
  ++st.login_attempts;
  self->request(st.eng->tokens(), 30s, login_atom::value, st.username,
                st.sh->password)
    .then(
      [self](const session_info&) {
        auto& st = self->state;
        st.login_attempts = 0;
        {
          std::lock_guard<std::mutex> g{st.sh->mx};
          st.sh->rep.logins++;
        }
        if (st.logged_in)
          return; // a new login after auth_expired: ticks are running
        st.logged_in = true;
        st.sh->logged_in++;
        self->delayed_send(self, jittered(self, st.sh->interval),
                           tick_a::value);
      },
      [self](const caf::error& e) {
        auto& st = self->state;
        st.sh->error_seen("login:" + std::string{to_string(classify(e).cls)});
        if (st.login_attempts < 20) {
          self->delayed_send(self, 500ms, login_a::value);
        } else {
          std::lock_guard<std::mutex> g{st.sh->mx};
          st.sh->rep.login_failures++;
        }
      });
}

op pick(user_actor* self) {
  auto& w = self->state.sh->weights;
  std::uniform_real_distribution<double> d{0.0, w.back().second};
  auto x = d(self->state.rng);
  for (auto& [o, c] : w)
    if (x < c)
      return o;
  return w.back().first;
}

void do_op(user_actor* self) {
  auto& st = self->state;
  auto o = pick(self);
  auto conv = st.convs[st.rng() % st.convs.size()];
  auto start = steady::now();
  if (o == op::read) {
    auto& ids = st.confirmed[conv];
    if (ids.empty())
      o = op::send; // nothing to read yet
  }
  switch (o) {
    case op::send: {
      if (st.sh->limited) {
        auto left = st.sh->budget.load();
        do {
          if (left <= 0)
            return; // --messages reached
        } while (!st.sh->budget.compare_exchange_weak(left, left - 1));
      }
      outgoing_message m;
      char buf[32];
      std::snprintf(buf, sizeof buf, "-%06llu",
                    static_cast<unsigned long long>(++st.next_id));
      m.id = st.username + buf;
      m.conversation_id = conv;
      m.content = "stress message " + m.id;
      st.pending[m.id] = {op::send, start, conv};
      st.sh->outstanding++;
      st.sh->sends++;
      {
        std::lock_guard<std::mutex> g{st.sh->mx};
        st.sh->sent[conv].push_back(m.id);
      }
      self->request(st.eng->chat(), 30s, send_atom::value, m)
        .then([](const chat_message&) {},
              [self, id = m.id, conv](const caf::error& e) {
                auto& st = self->state;
                if (st.pending.erase(id) == 0)
                  return;
                st.sh->outstanding--;
                st.sh->failed(op::send, e);
                std::lock_guard<std::mutex> g{st.sh->mx};
                if (classify(e).code == outcome_unknown_code) {
                  st.sh->unknown.insert(id); // stays sent: 0 or 1 copies
                  return;
                }
                auto& v = st.sh->sent[conv];
                v.erase(std::remove(v.begin(), v.end(), id), v.end());
              });
      break;
    }
    case op::read: {
      // each message is marked read once (a second mark of the same id
      // could share the queue entry of the first and never complete here)
      auto& ids = st.confirmed[conv];
      auto k = st.rng() % ids.size();
      auto id = ids[k];
      ids[k] = ids.back();
      ids.pop_back();
      st.sh->outstanding++;
      self->request(st.eng->chat(), 30s, mark_read_atom::value, conv, id)
        .then(
          [self, start, conv](const queue_entry& e) {
            auto& st = self->state;
            auto key = e.idempotency_key;
            pending_op p{op::read, start, conv};
            if (auto i = st.early.find(key); i != st.early.end()) {
              st.early.erase(i);
              complete(self, key, p, true, "");
            } else if (st.pending.count(key) > 0) {
              st.sh->outstanding--; // same key already queued: one completion
            } else {
              st.pending.emplace(key, p);
            }
          },
          [self](const caf::error& e) {
            self->state.sh->outstanding--;
            self->state.sh->failed(op::read, e);
          });
      break;
    }
    case op::history: {
      history_query q;
      q.conversation_id = conv;
      q.limit = 20;
      q.read.max_age = caf::timespan{0};
      q.read.force_refresh = true;
      self->request(st.eng->chat(), 30s, history_atom::value, q)
        .then(
          [self, start](const history_result&) {
            auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        steady::now() - start)
                        .count();
            self->state.sh->ok(op::history, self->state.transport(), ns);
          },
          [self](const caf::error& e) {
            self->state.sh->failed(op::history, e);
          });
      break;
    }
    case op::health: {
      read_options ro;
      ro.max_age = caf::timespan{0};
      ro.force_refresh = true;
      self->request(st.eng->system(), 30s, health_atom::value, ro)
        .then(
          [self, start](const health_result&) {
            auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        steady::now() - start)
                        .count();
            self->state.sh->ok(op::health, self->state.transport(), ns);
          },
          [self](const caf::error& e) {
            self->state.sh->failed(op::health, e);
          });
      break;
    }
  }
}

caf::behavior user_behavior(user_actor* self, shared_state* sh, engine* eng,
                            std::string username, uint64_t seed) {
  auto& st = self->state;
  st.sh = sh;
  st.eng = eng;
  st.username = std::move(username);
  st.rng.seed(seed);
  for (int k = 1; k <= sh->conversations; ++k)
    st.convs.push_back(st.username + (sh->aico ? "_" : "-")
                       + std::to_string(k));
  self->send(eng->connection(), watch_atom::value,
             caf::actor_cast<engine_listener_actor>(self));
  self->send(eng->queue(), watch_atom::value,
             caf::actor_cast<queue_listener_actor>(self));
  self->send(eng->tokens(), watch_atom::value,
             caf::actor_cast<auth_listener_actor>(self));
  sh->mix[none_index]++;
  do_login(self);
  self->attach_functor([sh, self] { sh->mix[self->state.mode]--; });
  return {
    [self](login_a) { do_login(self); },
    [self](tick_a) {
      auto& st = self->state;
      if (st.sh->stopping)
        return;
      do_op(self);
      self->delayed_send(self, jittered(self, st.sh->interval), tick_a::value);
    },
    [self](stop_a) { self->state.sh->stopping = true; },
    [self](state_atom, const connection_state& cs) {
      auto& st = self->state;
      if (std::getenv("AICO_STRESS_DEBUG_STATES"))
        std::cerr << st.username << ": " << describe(cs) << std::endl;
      auto m = mode_index(cs);
      if (m != st.mode) {
        st.sh->mix[st.mode]--;
        st.sh->mix[m]++;
        st.mode = m;
      }
      if (m != none_index) {
        if (st.last_active_mode >= 0 && st.last_active_mode != m) {
          std::lock_guard<std::mutex> g{st.sh->mx};
          st.sh->rep.failovers++;
        }
        st.last_active_mode = m;
      }
    },
    [](event_atom, const server_event&) {},
    [self](auth_atom, auth_state a) {
      auto& st = self->state;
      if (a == auth_state::logged_in) {
        if (st.was_logged_in) {
          std::lock_guard<std::mutex> g{st.sh->mx};
          st.sh->rep.refreshes++;
        }
        st.was_logged_in = true;
      } else {
        st.was_logged_in = false;
        if (a == auth_state::auth_expired && st.logged_in) {
          // the refresh token was rejected (e.g. its rotation was lost in a
          // gateway crash): the user logs in again, as an app would ask
          st.sh->error_seen("auth_expired");
          self->delayed_send(self, 200ms, login_a::value);
        }
      }
    },
    [self](queue_atom, const queue_update& u) {
      auto& st = self->state;
      auto& key = u.entry.idempotency_key;
      auto i = st.pending.find(key);
      if (i == st.pending.end()) {
        if (u.status == queue_status::sent && st.early.size() < 1000)
          st.early.emplace(key, steady::now());
        return;
      }
      switch (u.status) {
        case queue_status::sent:
          if (u.reply_body.find("found_in_history") != std::string::npos) {
            // the aico profile: the outcome was unknown, the history showed
            // it stored (aico_outcome "found_in_history"): counted with the
            // unknown outcomes, whose store check it passes
            std::lock_guard<std::mutex> g{st.sh->mx};
            st.sh->unknown.insert(key);
          }
          complete(self, key, i->second, true, "");
          st.pending.erase(i);
          break;
        case queue_status::failed:
        case queue_status::dropped:
          if (u.error_code == outcome_unknown_code) {
            std::lock_guard<std::mutex> g{st.sh->mx};
            st.sh->unknown.insert(key);
          }
          complete(self, key, i->second, false, to_string(u.error_cls));
          st.pending.erase(i);
          break;
        case queue_status::retrying:
          st.sh->error_seen(to_string(u.error_cls));
          break;
        default:
          break;
      }
    },
  };
}

bool parse_mix(const std::string& text, std::vector<std::pair<op, double>>& out,
               std::string& err) {
  out.clear();
  std::map<std::string, op> names{{"send", op::send},
                                  {"history", op::history},
                                  {"read", op::read},
                                  {"health", op::health}};
  std::stringstream ss{text};
  std::string item;
  double sum = 0;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) {
      err = "--mix: expected NAME=WEIGHT, got '" + item + "'";
      return false;
    }
    auto name = item.substr(0, eq);
    auto i = names.find(name);
    if (i == names.end()) {
      err = "--mix: unknown operation '" + name
            + "' (send, history, read, health)";
      return false;
    }
    char* end = nullptr;
    auto w = std::strtod(item.c_str() + eq + 1, &end);
    if (end == item.c_str() + eq + 1 || *end != '\0' || w < 0) {
      err = "--mix: bad weight in '" + item + "'";
      return false;
    }
    if (w == 0)
      continue;
    sum += w;
    out.emplace_back(i->second, sum);
  }
  if (out.empty()) {
    err = "--mix: no operation with a positive weight";
    return false;
  }
  return true;
}

double send_share(const std::vector<std::pair<op, double>>& w) {
  double prev = 0, share = 0;
  for (auto& [o, c] : w) {
    if (o == op::send)
      share += c - prev;
    prev = c;
  }
  return share / w.back().second;
}

/// The engine configuration of every user (the state dir is set per user):
/// the shared client profile (src/config/load_config.hpp) with the
/// environment and a config file, and the stress run's own defaults.
engine_config make_engine_template(const load_params& p) {
  client_profile_inputs in;
  auto& d = in.defaults;
  d.connection.backoff.max = std::chrono::milliseconds{3000};
  d.queue.limit = 100000;
  // one process per state directory: nobody else adds to its queue file
  d.queue.idle_poll_interval = std::chrono::milliseconds{0};
  in.env = process_environment();
  in.flags = p.flags;
  in.flags.url = p.url;
  // the run's doors only: an endpoint it does not have is "" (not taken
  // from the environment)
  for (auto& e : transport_registry())
    if (e.endpoint) {
      auto i = p.endpoints.find(e.name);
      in.flags.endpoints[e.name] = i == p.endpoints.end() ? "" : i->second;
    }
  in.flags.transports = p.transports;
  in.flags.state_dir = p.state_root;
  auto prof = build_client_profile(in);
  if (!prof)
    throw std::invalid_argument(classify(prof.error()).message);
  if (!p.ws_url.empty())
    prof->config.connection.ws.url = p.ws_url; // the peer's own port
  return std::move(prof->config);
}

} // namespace

int64_t rss_kb() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::strtoll(line.c_str() + 6, nullptr, 10);
  return 0;
}

bool check_mix(const std::string& text, std::string& err) {
  std::vector<std::pair<op, double>> w;
  return parse_mix(text, w, err);
}

std::string aico_user_uuid(int i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "5eed0000-0000-4000-8000-%012d", i + 1);
  return std::string{buf};
}

std::string user_name(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "stress-%04d", i + 1);
  return std::string{buf};
}

struct load_runner::impl {
  impl(caf::actor_system& s, load_params params)
    : sys(s), p(std::move(params)) {
  }
  caf::actor_system& sys;
  load_params p;
  shared_state sh;
  std::vector<std::unique_ptr<engine>> engines;
  std::vector<caf::actor> actors;
  engine_config engine_template;
  double load_s = 0;
  double drain_s = 0;
  int64_t rss_before = 0;
  int64_t rss_after = 0;
};

load_runner::load_runner(caf::actor_system& sys, load_params p)
  : d_(std::make_unique<impl>(sys, std::move(p))) {
  auto& o = d_->p;
  auto& sh = d_->sh;
  std::string err;
  if (!parse_mix(o.mix, sh.weights, err))
    throw std::invalid_argument(err);
  auto ops_rate = o.rate / std::max(send_share(sh.weights), 0.01);
  if (send_share(sh.weights) == 0)
    ops_rate = o.rate;
  sh.interval = std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(o.count / std::max(ops_rate, 0.001)));
  d_->engine_template = make_engine_template(o);
  sh.conversations = o.conversations;
  sh.password = o.password;
  sh.aico = o.aico;
  if (o.limited) {
    sh.limited = true;
    sh.budget = o.messages;
  }
  d_->engines.reserve(static_cast<size_t>(std::max(o.count, 0)));
}

load_runner::~load_runner() {
  shutdown();
}

void load_runner::run(const load_hooks& hooks) {
  auto& d = *d_;
  auto& o = d.p;
  auto& sh = d.sh;
  auto stop = [&] { return hooks.stop && hooks.stop(); };
  d.rss_before = rss_kb();
  auto t0 = steady::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(steady::now() - t0).count();
  };
  while (!stop()) {
    auto e = elapsed();
    // ramp: create the sessions that are due
    auto due = o.ramp <= 0 ? o.count
                           : std::min<int>(o.count, static_cast<int>(
                               o.count * std::min(1.0, e / o.ramp)) + 1);
    while (static_cast<int>(d.engines.size()) < due) {
      auto i = o.first + static_cast<int>(d.engines.size());
      auto dir = o.state_root + "/u" + std::to_string(i + 1);
      fs::create_directories(dir);
      auto cfg = d.engine_template;
      set_state_dir(cfg, dir);
      d.engines.push_back(std::make_unique<engine>(d.sys, std::move(cfg)));
      d.actors.push_back(d.sys.spawn(user_behavior, &sh,
                                     d.engines.back().get(),
                                     o.aico ? aico_user_uuid(i) : user_name(i),
                                     o.seed * 1000003u + i));
    }
    if (d.rss_after == 0 && static_cast<int>(d.engines.size()) == o.count)
      d.rss_after = rss_kb();
    if (hooks.tick)
      hooks.tick(e, counters());
    if (e >= o.duration)
      break;
    if (sh.limited && sh.budget.load() <= 0)
      break;
    std::this_thread::sleep_for(50ms);
  }
  // -- stop the load, drain -------------------------------------------------------------
  sh.stopping = true;
  d.load_s = elapsed();
  if (hooks.load_stopped)
    hooks.load_stopped(d.load_s, sh.outstanding.load());
  auto d0 = steady::now();
  auto drain_limit = std::chrono::duration<double>(o.drain_timeout);
  while (sh.outstanding.load() > 0 && !stop()
         && steady::now() - d0 < drain_limit)
    std::this_thread::sleep_for(50ms);
  d.drain_s = std::chrono::duration<double>(steady::now() - d0).count();
}

progress_counters load_runner::counters() const {
  auto& sh = d_->sh;
  progress_counters c;
  c.created = d_->engines.size();
  c.users = static_cast<uint64_t>(std::max(d_->p.count, 0));
  c.logged_in = sh.logged_in.load();
  c.ops_ok = sh.ops_ok.load();
  c.ops_err = sh.ops_err.load();
  c.sends = sh.sends.load();
  c.outstanding = sh.outstanding.load();
  for (size_t i = 0; i < c.mix.size(); ++i)
    c.mix[i] = sh.mix[i].load();
  return c;
}

std::map<std::string, std::vector<std::string>> load_runner::sent_ids() const {
  std::lock_guard<std::mutex> g{d_->sh.mx};
  return d_->sh.sent;
}

std::set<std::string> load_runner::unknown_ids() const {
  std::lock_guard<std::mutex> g{d_->sh.mx};
  return d_->sh.unknown;
}

report load_runner::measurements() const {
  auto& d = *d_;
  report rep;
  {
    std::lock_guard<std::mutex> g{d.sh.mx};
    rep = d.sh.rep;
  }
  rep.elapsed_s = d.load_s;
  rep.drain_s = d.drain_s;
  rep.undrained = d.sh.outstanding.load();
  rep.rss_before_kb = d.rss_before;
  rep.rss_after_kb = d.rss_after > 0 ? d.rss_after : rss_kb();
  rep.sessions = d.engines.size();
  return rep;
}

void load_runner::shutdown() {
  auto& d = *d_;
  d.sh.stopping = true;
  for (auto& a : d.actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  d.actors.clear();
  // engines stop in parallel (each bounded by its shutdown_timeout)
  std::vector<std::thread> stoppers;
  std::atomic<size_t> next{0};
  for (int t = 0; t < 8; ++t)
    stoppers.emplace_back([&] {
      for (size_t i; (i = next++) < d.engines.size();)
        d.engines[i].reset();
    });
  for (auto& t : stoppers)
    t.join();
  d.engines.clear();
}

} // namespace aico::stress
