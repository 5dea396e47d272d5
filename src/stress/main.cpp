// aico-stress: N simulated users (each a full engine session) in one
// process and one actor system, against a gateway on loopback, with an
// optional fault schedule; ends with a report and an integrity check
// against the gateway's store.
//
// Exit codes: 0 integrity exact, 1 integrity violated (or the run failed),
// 2 usage.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <curl/curl.h>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "src/stress/fault_schedule.hpp"
#include "src/stress/gateway_launcher.hpp"
#include "src/stress/http_client.hpp"
#include "src/stress/integrity.hpp"
#include "src/stress/report.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace aico;
using namespace aico::stress;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

using tick_a = caf::atom_constant<caf::atom("st_tick")>;
using stop_a = caf::atom_constant<caf::atom("st_stop")>;
using login_a = caf::atom_constant<caf::atom("st_login")>;

volatile std::sig_atomic_t interrupted = 0;
void on_signal(int) {
  interrupted = 1;
}

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

struct options {
  std::string url;
  std::string ipc;
  bool start_gateway = false;
  bool bot = false;
  int users = 10;
  double rate = 50;
  double duration = 20;
  int64_t messages = 0;
  double ramp = 0;
  std::string transports = "ipc,ws,http";
  std::string mix = "send=70,history=20,read=5,health=5";
  std::string faults;
  bool json_out = false;
  uint64_t seed = 1;
  int conversations = 1;
  std::string password = "stress-pw";
  std::string admin; ///< USER:PASSWORD for /admin/faults (external gateway)
  double drain_timeout = 60;
  int threads = 0;
  int access_ttl = 0;
  std::string gateway_bin;
  bool keep = false;
};

// -- state shared by the user actors and the main thread ----------------------------

struct shared_state {
  std::mutex mx;
  report rep;                                            // guarded by mx
  std::map<std::string, std::vector<std::string>> sent;  // guarded by mx
  std::atomic<uint64_t> ops_ok{0}, ops_err{0}, sends{0}, outstanding{0};
  std::atomic<uint64_t> logged_in{0};
  std::atomic<int64_t> mix[4] = {{0}, {0}, {0}, {0}}; // ipc ws http none
  std::atomic<bool> stopping{false};
  bool limited = false;            // --messages given
  std::atomic<int64_t> budget{0};  // messages left if limited
  std::vector<std::pair<op, double>> weights; // cumulative
  caf::timespan interval{0};                  // between ops of one user
  int conversations = 1;
  std::string password;

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

int mode_index(const connection_state& cs) {
  if (cs.state == link_state::connected || cs.state == link_state::degraded)
    return static_cast<int>(cs.mode);
  return 3;
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
  int mode = 3;
  int last_active_mode = -1;
  bool logged_in = false;
  bool was_logged_in = false;
  int login_attempts = 0;
  std::unordered_map<std::string, pending_op> pending;     // queue key -> op
  std::unordered_map<std::string, steady::time_point> early; // sent before reply
  std::map<std::string, std::vector<std::string>> confirmed; // conv -> unread ids
  std::string transport() const {
    return mode == 3 ? "none" : to_string(static_cast<transport_mode>(mode));
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
    st.convs.push_back(st.username + "-" + std::to_string(k));
  self->send(eng->connection(), watch_atom::value,
             caf::actor_cast<engine_listener_actor>(self));
  self->send(eng->queue(), watch_atom::value,
             caf::actor_cast<queue_listener_actor>(self));
  self->send(eng->tokens(), watch_atom::value,
             caf::actor_cast<auth_listener_actor>(self));
  sh->mix[3]++;
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
      auto m = mode_index(cs);
      if (m != st.mode) {
        st.sh->mix[st.mode]--;
        st.sh->mix[m]++;
        st.mode = m;
      }
      if (m != 3) {
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
          complete(self, key, i->second, true, "");
          st.pending.erase(i);
          break;
        case queue_status::failed:
        case queue_status::dropped:
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

// -- fault driver ------------------------------------------------------------------------

class fault_driver {
public:
  fault_driver(fault_schedule s, std::string base, std::string admin_user,
               std::string admin_pw, gateway_launcher* gw)
    : s_(std::move(s)),
      base_(std::move(base)),
      user_(std::move(admin_user)),
      pw_(std::move(admin_pw)),
      gw_(gw) {
  }

  ~fault_driver() { finish(); }

  bool start(std::string& err) {
    token_ = rest_login(base_, user_, pw_, err);
    if (token_.empty()) {
      err = "admin login for /admin/faults failed: " + err;
      return false;
    }
    if (!post(base_settings())) {
      err = "POST /admin/faults failed (is the gateway started with "
            "--enable-faults?)";
      return false;
    }
    thread_ = std::thread([this] { run(); });
    return true;
  }

  /// Stops the schedule and restores the gateway (reset). The thread stays
  /// until finish(): a gateway it restarted dies with it (PDEATHSIG is
  /// bound to the forking thread).
  void stop() {
    if (!thread_.joinable())
      return;
    done_ = true;
    auto until = steady::now() + 15s;
    while (!quiesced_ && steady::now() < until)
      std::this_thread::sleep_for(10ms);
  }

  /// Ends the thread; call after the gateway was stopped.
  void finish() {
    if (!thread_.joinable())
      return;
    done_ = true;
    exit_ = true;
    thread_.join();
  }

  uint64_t actions() const { return actions_; }
  uint64_t kills() const { return kills_; }

private:
  json::object base_settings() const {
    json::object o{{"latency_ms", s_.latency_ms}};
    o["fail_ratio"] = s_.fail_ratio;
    o["fail_status"] = s_.fail_status;
    return o;
  }

  bool post(const json::object& body) {
    auto text = json::serialize(body);
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto r = http_call("POST", base_ + "/api/v1/admin/faults", text, token_,
                         3s);
      if (r.status == 200)
        return true;
      if (r.status == 401) {
        std::string err;
        token_ = rest_login(base_, user_, pw_, err);
      } else if (r.status == 0 && attempt == 2) {
        return false;
      }
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }

  void run() {
    struct timer {
      periodic_fault f;
      steady::time_point next;
    };
    auto t0 = steady::now();
    std::vector<timer> timers;
    for (auto& f : s_.periodic)
      timers.push_back({f, t0 + f.period});
    std::vector<std::pair<steady::time_point, json::object>> restores;
    while (!done_) {
      std::this_thread::sleep_for(20ms);
      auto now = steady::now();
      for (auto i = restores.begin(); i != restores.end();) {
        if (i->first <= now) {
          post(i->second);
          i = restores.erase(i);
        } else {
          ++i;
        }
      }
      for (auto& t : timers) {
        if (t.next > now)
          continue;
        t.next += t.f.period;
        ++actions_;
        switch (t.f.kind) {
          case fault_kind::ws_down:
            post(json::object{{"ws", "down"}});
            restores.emplace_back(now + t.f.duration, json::object{{"ws", "up"}});
            break;
          case fault_kind::ipc_down:
            post(json::object{{"ipc", "down"}});
            restores.emplace_back(now + t.f.duration,
                                  json::object{{"ipc", "up"}});
            break;
          case fault_kind::drop_ws:
            post(json::object{{"drop_ws", true}});
            break;
          case fault_kind::kill:
            if (gw_ && !done_) {
              ++kills_;
              gw_->kill9();
              if (!gw_->start())
                std::cerr << "aico-stress: gateway restart failed: "
                          << gw_->last_error() << std::endl;
              std::string err;
              token_ = rest_login(base_, user_, pw_, err);
              post(base_settings());
            }
            break;
        }
      }
    }
    if (!exit_)
      post(json::object{{"reset", true}});
    quiesced_ = true;
    while (!exit_)
      std::this_thread::sleep_for(20ms);
  }

  fault_schedule s_;
  std::string base_, user_, pw_, token_;
  gateway_launcher* gw_;
  std::thread thread_;
  std::atomic<bool> done_{false}, exit_{false}, quiesced_{false};
  std::atomic<uint64_t> actions_{0}, kills_{0};
};

// -- helpers -------------------------------------------------------------------------------

int64_t rss_kb() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::strtoll(line.c_str() + 6, nullptr, 10);
  return 0;
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

/// Every stored message id of a conversation (ascending seq), by REST with
/// the user's token; false on failure.
bool fetch_conversation(const std::string& base, const std::string& token,
                        const std::string& conv, const std::string& sender,
                        std::vector<std::string>& ids, std::string& err) {
  uint64_t since = 0;
  for (int page = 0; page < 10000; ++page) {
    http_result r;
    for (int attempt = 0; attempt < 5; ++attempt) {
      r = http_call("GET",
                    base + "/api/v1/conversations/" + conv
                      + "/messages?since=" + std::to_string(since)
                      + "&limit=500",
                    "", token, 10s);
      if (r.status == 200)
        break;
      std::this_thread::sleep_for(300ms);
    }
    if (r.status != 200 || !r.body.is_object()) {
      err = conv + ": HTTP " + std::to_string(r.status) + " " + r.error;
      return false;
    }
    auto d = r.body.get_object().if_contains("data");
    if (!d || !d->is_object()) {
      err = conv + ": no data";
      return false;
    }
    auto& data = d->get_object();
    if (auto ms = data.if_contains("messages"); ms && ms->is_array())
      for (auto& m : ms->get_array()) {
        if (!m.is_object())
          continue;
        auto& mo = m.get_object();
        auto s = mo.if_contains("sender");
        if (s && s->is_string() && s->get_string() != sender)
          continue; // the bot's replies
        if (auto id = mo.if_contains("id"); id && id->is_string())
          ids.emplace_back(id->get_string());
      }
    bool more = false;
    if (auto hm = data.if_contains("has_more"); hm && hm->is_bool())
      more = hm->get_bool();
    if (auto ns = data.if_contains("next_since"); ns && ns->is_number())
      since = ns->to_number<uint64_t>();
    if (!more)
      return true;
  }
  err = conv + ": too many pages";
  return false;
}

engine_config make_engine_config(const options& o, const std::string& url,
                                 const std::string& ipc,
                                 const std::string& state_dir) {
  engine_config cfg;
  auto& c = cfg.connection;
  c.http.base_url = url;
  c.ws.url = "ws://" + url.substr(7) + "/api/v1/ws";
  c.ipc.endpoint = ipc;
  c.order.clear();
  std::stringstream ss{o.transports};
  std::string item;
  while (std::getline(ss, item, ',')) {
    transport_mode m;
    if (!from_string(item, m))
      continue;
    if (m == transport_mode::ipc && ipc.empty())
      continue;
    if (std::find(c.order.begin(), c.order.end(), m) == c.order.end())
      c.order.push_back(m);
  }
  cfg.request_timeout = 10s;
  c.http.connect_timeout = c.ws.connect_timeout = c.ipc.connect_timeout = 3s;
  c.ws.ping_interval = c.ipc.ping_interval = 5s;
  c.ws.dead_peer_timeout = c.ipc.dead_peer_timeout = 15s;
  c.health_interval = 10s;
  c.backoff = {std::chrono::milliseconds{250}, 1.6, 0.2,
               std::chrono::milliseconds{3000}};
  cfg.state_dir = state_dir;
  cfg.tokens.state_dir = state_dir;
  cfg.tokens.request_timeout = 10s;
  cfg.shutdown_timeout = 3s;
  cfg.queue.limit = 100000;
  return cfg;
}

std::string fmt_progress(double elapsed, const shared_state& sh, int created,
                         int total, double rate) {
  char buf[256];
  std::snprintf(
    buf, sizeof buf,
    "[%6.1fs] users %d/%d (%llu in)  ops %llu (%.0f/s)  sent %llu  "
    "errors %llu  queued %llu  mix ipc %lld ws %lld http %lld none %lld",
    elapsed, created, total, static_cast<unsigned long long>(sh.logged_in.load()),
    static_cast<unsigned long long>(sh.ops_ok.load()), rate,
    static_cast<unsigned long long>(sh.sends.load()),
    static_cast<unsigned long long>(sh.ops_err.load()),
    static_cast<unsigned long long>(sh.outstanding.load()),
    static_cast<long long>(sh.mix[0].load()),
    static_cast<long long>(sh.mix[1].load()),
    static_cast<long long>(sh.mix[2].load()),
    static_cast<long long>(sh.mix[3].load()));
  return buf;
}

struct temp_root {
  std::string path;
  bool keep = false;
  ~temp_root() {
    if (!path.empty() && !keep) {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  }
};

int run(options& o) {
  std::string err;
  // -- validate -------------------------------------------------------------------------
  shared_state sh;
  if (!parse_mix(o.mix, sh.weights, err)) {
    std::cerr << "aico-stress: " << err << std::endl;
    return 2;
  }
  fault_schedule faults;
  if (!o.faults.empty()) {
    auto text = o.faults;
    if (text[0] == '@') {
      std::ifstream in{text.substr(1)};
      if (!in) {
        std::cerr << "aico-stress: --faults: cannot read " << text.substr(1)
                  << std::endl;
        return 2;
      }
      std::stringstream buf;
      buf << in.rdbuf();
      text = buf.str();
    }
    if (!parse_fault_schedule(text, faults, err)) {
      std::cerr << "aico-stress: --faults: " << err << std::endl;
      return 2;
    }
  }
  if (!o.url.empty())
    while (o.url.size() > 7 && o.url.back() == '/')
      o.url.pop_back();
  bool self_started = o.start_gateway || o.url.empty();
  if (!self_started && !is_loopback_url(o.url)) {
    std::cerr << "aico-stress: --url must be a loopback http:// URL"
              << std::endl;
    return 2;
  }
  if (faults.has_kill() && !self_started) {
    std::cerr << "aico-stress: --faults: 'kill' needs a gateway started by "
                 "aico-stress (no --url)"
              << std::endl;
    return 2;
  }
  if (!faults.empty() && !self_started && o.admin.find(':') == std::string::npos) {
    std::cerr << "aico-stress: --faults with --url needs --admin USER:PASSWORD"
              << std::endl;
    return 2;
  }
  // -- temp root, gateway ---------------------------------------------------------------
  temp_root root;
  root.keep = o.keep;
  {
    std::string base = "/tmp";
    if (auto env = std::getenv("TMPDIR"); env && std::strlen(env) < 40)
      base = env;
    std::string tmpl = base + "/aico-stress-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
      std::cerr << "aico-stress: mkdtemp failed" << std::endl;
      return 1;
    }
    root.path = buf.data();
  }
  auto user_name = [](int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "stress-%04d", i + 1);
    return std::string{buf};
  };
  std::string admin_user = "stress-admin", admin_pw;
  if (auto c = o.admin.find(':'); c != std::string::npos) {
    admin_user = o.admin.substr(0, c);
    admin_pw = o.admin.substr(c + 1);
  }
  std::unique_ptr<gateway_launcher> gw;
  std::string url = o.url, ipc = o.ipc;
  if (self_started) {
    if (admin_pw.empty()) {
      std::random_device rd;
      admin_pw = "adm-" + std::to_string(rd()) + std::to_string(rd());
    }
    std::vector<std::string> args{"--enable-faults", "--user",
                                  admin_user + ":" + admin_pw + ":admin"};
    for (int i = 0; i < o.users; ++i) {
      args.push_back("--user");
      args.push_back(user_name(i) + ":" + o.password);
    }
    if (!o.bot)
      args.push_back("--no-bot");
    if (o.access_ttl > 0) {
      args.push_back("--access-ttl");
      args.push_back(std::to_string(o.access_ttl));
    }
    fs::create_directories(root.path + "/gateway");
    auto bin = o.gateway_bin.empty() ? find_gateway_binary() : o.gateway_bin;
    gw = std::make_unique<gateway_launcher>(bin, root.path + "/gateway", args);
    if (!gw->start()) {
      std::cerr << "aico-stress: " << gw->last_error() << std::endl;
      return 1;
    }
    url = gw->http_url();
    ipc = gw->ipc_endpoint();
  }
  // -- actor system --------------------------------------------------------------------
  auto ops_rate = o.rate / std::max(send_share(sh.weights), 0.01);
  if (send_share(sh.weights) == 0)
    ops_rate = o.rate;
  sh.interval = std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(o.users / std::max(ops_rate, 0.001)));
  sh.conversations = o.conversations;
  sh.password = o.password;
  if (o.messages > 0) {
    sh.limited = true;
    sh.budget = o.messages;
  }
  {
    std::lock_guard<std::mutex> g{sh.mx};
    auto& r = sh.rep;
    r.users = static_cast<uint64_t>(o.users);
    r.rate = o.rate;
    r.duration_s = o.duration;
    r.transports = o.transports;
    r.mix = o.mix;
    r.faults = o.faults.empty() ? "none" : describe(faults);
    r.seed = o.seed;
  }
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads",
          o.threads > 0 ? o.threads
                        : static_cast<int>(std::max(
                            2u, std::thread::hardware_concurrency())));
  bool tty = isatty(STDERR_FILENO) != 0;
  int rc = 1;
  uint64_t fault_actions = 0, kills = 0;
  std::unique_ptr<fault_driver> fd;
  {
    caf::actor_system sys{cfg};
    std::vector<std::unique_ptr<engine>> engines;
    std::vector<caf::actor> actors;
    engines.reserve(static_cast<size_t>(o.users));
    if (!faults.empty()) {
      fd = std::make_unique<fault_driver>(faults, url, admin_user, admin_pw,
                                          gw.get());
      if (!fd->start(err)) {
        std::cerr << "aico-stress: " << err << std::endl;
        return 1;
      }
    }
    auto rss_before = rss_kb();
    int64_t rss_after = 0;
    auto t0 = steady::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(steady::now() - t0).count();
    };
    auto last_print = t0;
    uint64_t last_ops = 0;
    auto print_every = tty ? 250ms : 5000ms;
    while (!interrupted) {
      auto e = elapsed();
      // ramp: create the sessions that are due
      auto due = o.ramp <= 0 ? o.users
                             : std::min<int>(o.users, static_cast<int>(
                                 o.users * std::min(1.0, e / o.ramp)) + 1);
      while (static_cast<int>(engines.size()) < due) {
        auto i = static_cast<int>(engines.size());
        auto dir = root.path + "/u" + std::to_string(i + 1);
        fs::create_directories(dir);
        engines.push_back(std::make_unique<engine>(
          sys, make_engine_config(o, url, ipc, dir)));
        actors.push_back(sys.spawn(user_behavior, &sh, engines.back().get(),
                                   user_name(i), o.seed * 1000003u + i));
      }
      if (rss_after == 0 && static_cast<int>(engines.size()) == o.users)
        rss_after = rss_kb();
      auto now = steady::now();
      if (now - last_print >= print_every) {
        auto dt = std::chrono::duration<double>(now - last_print).count();
        auto ops = sh.ops_ok.load();
        auto line = fmt_progress(e, sh, static_cast<int>(engines.size()),
                                 o.users, (ops - last_ops) / dt);
        if (tty)
          std::cerr << "\r" << line << "\x1b[K" << std::flush;
        else
          std::cerr << line << std::endl;
        last_ops = ops;
        last_print = now;
      }
      if (e >= o.duration)
        break;
      if (o.messages > 0 && sh.budget.load() <= 0)
        break;
      std::this_thread::sleep_for(50ms);
    }
    // -- stop the load, restore the gateway, drain ---------------------------------------
    sh.stopping = true;
    auto load_s = elapsed();
    if (fd) {
      fd->stop();
      fault_actions = fd->actions();
      kills = fd->kills();
    }
    if (tty)
      std::cerr << "\n";
    std::cerr << "aico-stress: load stopped after " << load_s
              << " s, draining " << sh.outstanding.load() << " queued"
              << std::endl;
    auto d0 = steady::now();
    auto drain_limit = std::chrono::duration<double>(o.drain_timeout);
    while (sh.outstanding.load() > 0 && !interrupted
           && steady::now() - d0 < drain_limit)
      std::this_thread::sleep_for(50ms);
    auto drain_s = std::chrono::duration<double>(steady::now() - d0).count();
    // -- integrity ---------------------------------------------------------------------------
    std::map<std::string, std::vector<std::string>> sent, stored;
    {
      std::lock_guard<std::mutex> g{sh.mx};
      sent = sh.sent;
    }
    bool checked = true;
    std::string ierr;
    for (int i = 0; i < static_cast<int>(engines.size()) && checked; ++i) {
      auto name = user_name(i);
      std::string lerr;
      auto token = rest_login(url, name, o.password, lerr);
      if (token.empty()) {
        ierr = name + ": login failed: " + lerr;
        checked = false;
        break;
      }
      for (int k = 1; k <= o.conversations; ++k) {
        auto conv = name + "-" + std::to_string(k);
        auto& ids = stored[conv];
        if (!fetch_conversation(url, token, conv, name, ids, ierr)) {
          checked = false;
          break;
        }
      }
    }
    if (!checked)
      std::cerr << "aico-stress: integrity check failed: " << ierr
                << std::endl;
    // -- report ----------------------------------------------------------------------------
    report rep;
    {
      std::lock_guard<std::mutex> g{sh.mx};
      rep = sh.rep;
    }
    rep.elapsed_s = load_s;
    rep.drain_s = drain_s;
    rep.undrained = sh.outstanding.load();
    rep.fault_actions = fault_actions;
    rep.gateway_kills = kills;
    rep.rss_before_kb = rss_before;
    rep.rss_after_kb = rss_after > 0 ? rss_after : rss_kb();
    rep.sessions = engines.size();
    rep.integrity_checked = checked;
    if (checked)
      rep.integrity = check_integrity(sent, stored);
    if (o.json_out)
      std::cout << json::serialize(rep.to_json()) << std::endl;
    else
      std::cout << rep.to_text() << std::flush;
    rc = rep.exact() ? 0 : 1;
    // -- shutdown ---------------------------------------------------------------------------
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    actors.clear();
    // engines stop in parallel (each bounded by its shutdown_timeout)
    std::vector<std::thread> stoppers;
    std::atomic<size_t> next{0};
    for (int t = 0; t < 8; ++t)
      stoppers.emplace_back([&] {
        for (size_t i; (i = next++) < engines.size();)
          engines[i].reset();
      });
    for (auto& t : stoppers)
      t.join();
    engines.clear();
  }
  if (gw)
    gw->stop();
  if (fd)
    fd->finish();
  return rc;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"aico-stress: many simulated users against an aico gateway "
               "(loopback only)"};
  app.add_option("--url", o.url,
                 "gateway base URL (loopback); default: start one");
  app.add_option("--ipc", o.ipc, "gateway IPC endpoint (with --url)");
  app.add_flag("--start-gateway", o.start_gateway,
               "start the build's aico-gateway (default without --url)");
  app.add_option("--gateway-bin", o.gateway_bin, "aico-gateway binary");
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
  app.add_option("--transports", o.transports, "ipc,ws,http in order");
  app.add_option("--mix", o.mix, "operation weights");
  app.add_option("--faults", o.faults, "fault schedule or @file");
  app.add_option("--conversations", o.conversations,
                 "conversations per user")
    ->check(CLI::Range(1, 100));
  app.add_option("--password", o.password, "password of the stress users");
  app.add_option("--admin", o.admin,
                 "USER:PASSWORD of an admin (faults with --url)");
  app.add_option("--drain-timeout", o.drain_timeout,
                 "max seconds to wait for the queues after the load");
  app.add_option("--threads", o.threads, "scheduler threads (0 = cores)");
  app.add_option("--seed", o.seed, "random seed");
  app.add_flag("--json", o.json_out, "print the report as JSON");
  app.add_flag("--keep", o.keep, "keep the temporary directory");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto r = app.exit(e);
    return r == 0 ? 0 : 2;
  }
  if (o.messages > 0 && o.duration == 20 && app.count("--duration") == 0)
    o.duration = 600; // --messages alone: still bounded
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = 1;
  try {
    rc = run(o);
  } catch (const std::exception& e) {
    std::cerr << "aico-stress: " << e.what() << std::endl;
    rc = 1;
  }
  curl_global_cleanup();
  return rc;
}
