// aico: a scriptable command-line client over the engine.
//
//   aico [--config FILE] [--url URL] [--ipc ENDPOINT]
//        [--transports ipc,ws,http] [--state-dir DIR] [--json] [--timeout S]
//        [--tls-* ...] [--ipc-server-key* ...] COMMAND ...
//
// The connection settings come from the shared client profile
// (src/config/load_config.hpp: defaults < config file < AICO_* < flags).
// `login USER` asks for the password on the terminal (or --password-stdin,
// --password-file); `ipc-key` prints this client's CURVE public key.
//
// Exit codes: 0 ok, 2 usage, 3 authentication, 4 unreachable, 1 other.
// Errors are one line on stderr. Tokens are never printed.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <CLI/CLI.hpp>

#include "caf/all.hpp"

#include "cli_config.hpp"
#include "src/transport/zmq/dealer_loop.hpp"
#include "messages/engine.hpp"
#include "src/core/log_line.hpp"
#include "src/model/codec.hpp"

namespace json = boost::json;
using namespace aico;
using namespace std::chrono_literals;

namespace {

enum exit_code : int {
  ok = 0,
  other = 1,
  usage = 2,
  auth_failed = 3,
  unreachable = 4,
};

volatile std::sig_atomic_t interrupted = 0;

void on_signal(int) {
  interrupted = 1;
}

struct options : cli::connection_options {
  bool json_out = false;
  // commands
  std::string user, password;
  cli::password_source password_src;
  std::string conversation;
  std::string text;
  int limit = 20;
  double watch_for = 0;
  std::string message_id;
  std::string from_file;
  double wait_s = -1; ///< send: how long to wait for "sent" (-1 = --timeout)
  std::string queue_action = "list";
  int64_t queue_seq = 0;
  bool refresh = false;
};

using cli::make_config;
using cli::new_message_id;

int exit_for(const caf::error& err) {
  auto c = classify(err);
  switch (c.cls) {
    case error_class::authentication:
      return auth_failed;
    case error_class::network:
    case error_class::timeout:
      return unreachable;
    default:
      return other;
  }
}

int fail(const options& o, const std::string& what, const caf::error& err) {
  auto c = classify(err);
  if (o.json_out) {
    json::object obj{{"ok", false},
                     {"error", to_string(c.cls)},
                     {"message", c.message},
                     {"retryable", c.retryable}};
    if (c.status != 0)
      obj["status"] = c.status;
    if (!c.code.empty())
      obj["code"] = c.code;
    std::cout << json::serialize(obj) << std::endl;
  }
  log_line("aico: " + what + ": " + describe(err));
  return exit_for(err);
}

/// What a person can do about a storage failure of the state directory.
std::string storage_hint(const caf::error& err) {
  auto code = classify(err).code;
  if (code == "disk_full")
    return "the disk of the state directory is full";
  if (code == "read_only")
    return "the state directory cannot be written (read-only)";
  if (code == "busy")
    return "other processes kept the offline queue busy until --timeout";
  return {};
}

using steady = std::chrono::steady_clock;

caf::timespan left_until(steady::time_point deadline) {
  auto left = deadline - steady::now();
  if (left <= steady::duration::zero())
    return caf::timespan{0};
  return std::chrono::duration_cast<caf::timespan>(left);
}

json::value state_json(const connection_state& cs) {
  json::object obj{{"state", to_string(cs.state)}};
  if (cs.state == link_state::connected || cs.state == link_state::degraded)
    obj["mode"] = to_string(cs.mode);
  if (cs.state == link_state::reconnecting)
    obj["next_attempt_in_ms"]
      = std::chrono::duration_cast<std::chrono::milliseconds>(
          cs.next_attempt_in)
          .count();
  if (cs.state == link_state::offline)
    obj["reason"] = cs.reason;
  return obj;
}

/// Parses the envelope's data; returns null on a malformed body.
json::value envelope_data(const api_reply& r) {
  boost::system::error_code ec;
  auto jv = json::parse(r.body, ec);
  if (ec || !jv.is_object())
    return nullptr;
  if (auto d = jv.get_object().if_contains("data"))
    return *d;
  return nullptr;
}

std::string str(const json::value& v, const char* key) {
  if (!v.is_object())
    return {};
  auto p = v.get_object().if_contains(key);
  if (!p)
    return {};
  if (p->is_string())
    return std::string{p->get_string()};
  return json::serialize(*p);
}

class client {
public:
  client(caf::actor_system& sys, const options& o, engine_config cfg)
    : o_(o), eng_(sys, std::move(cfg)), self_(sys) {
  }

  ~client() = default;

  caf::expected<api_reply> call(const std::string& method,
                                const std::string& path, std::string body,
                                bool auth) {
    api_call c{new_message_id(), method, path, std::move(body), ""};
    caf::expected<api_reply> res{caf::error{}};
    auto t = eng_.config().request_timeout;
    self_
      // no CAF timeout: the engine answers every call by its deadline `t`
      ->request(eng_.connection(), caf::infinite, request_atom::value, c, t,
                auth)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<session_info> login(const std::string& u,
                                    const std::string& p) {
    caf::expected<session_info> res{caf::error{}};
    auto t = eng_.config().request_timeout;
    self_->request(eng_.tokens(), t + 2s, login_atom::value, u, p)
      .receive([&](session_info& s) { res = std::move(s); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<session_info> session(caf::timespan t = 5s) {
    caf::expected<session_info> res{caf::error{}};
    self_->request(eng_.tokens(), std::max<caf::timespan>(t, 100ms),
                   session_atom::value)
      .receive([&](session_info& s) { res = std::move(s); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// Forgets the tokens here and tells the gateway within `t` (0 = not at
  /// all); an error says why the gateway could not be told.
  caf::expected<bool> logout(caf::timespan t) {
    caf::expected<bool> res{caf::error{}};
    self_->request(eng_.tokens(), t + 2s, logout_atom::value, t)
      .receive([&](bool b) { res = b; },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// Waits until the state is anything but connecting (connected,
  /// degraded, reconnecting after every transport failed, offline, auth
  /// expired) or the time is up; returns the last state seen.
  connection_state settle(caf::timespan max) {
    self_->send(eng_.connection(), watch_atom::value,
                caf::actor_cast<engine_listener_actor>(self_));
    connection_state last;
    auto deadline = std::chrono::steady_clock::now() + max;
    bool done = false;
    while (!done && !interrupted) {
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= decltype(left)::zero())
        break;
      self_->receive(
        [&](state_atom, const connection_state& cs) {
          last = cs;
          // reconnecting/offline: every transport was tried and failed
          if (cs.state != link_state::connecting)
            done = true;
        },
        [&](event_atom, const server_event&) {},
        caf::after(std::chrono::duration_cast<caf::timespan>(left)) >> [] {});
    }
    return last;
  }

  /// Prints events and state changes until interrupted or `seconds` pass.
  void watch(double seconds) {
    self_->send(eng_.connection(), watch_atom::value,
                caf::actor_cast<engine_listener_actor>(self_));
    auto deadline = std::chrono::steady_clock::now()
                    + std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::duration<double>(seconds));
    while (!interrupted) {
      if (seconds > 0 && std::chrono::steady_clock::now() >= deadline)
        break;
      self_->receive(
        [&](state_atom, const connection_state& cs) {
          if (o_.json_out) {
            json::object obj{{"kind", "state"}};
            obj["state"] = state_json(cs);
            std::cout << json::serialize(obj) << std::endl;
          } else {
            std::cout << "[state] " << describe(cs) << std::endl;
          }
        },
        [&](event_atom, const server_event& ev) {
          boost::system::error_code ec;
          auto data = json::parse(ev.data, ec);
          if (o_.json_out) {
            json::object obj{{"kind", "event"},
                             {"topic", ev.topic},
                             {"seq", ev.seq},
                             {"via", to_string(ev.via)}};
            obj["data"] = ec ? json::value(ev.data) : data;
            std::cout << json::serialize(obj) << std::endl;
          } else if (ev.topic == "message" && !ec) {
            std::cout << "[" << to_string(ev.via) << "] "
                      << str(data, "sender") << ": " << str(data, "content")
                      << std::endl;
          } else if (ev.topic == "message.stream" && !ec) {
            std::cout << "[" << to_string(ev.via) << "] (streaming) "
                      << str(data, "chunk") << std::endl;
          } else {
            std::cout << "[" << to_string(ev.via) << "] " << ev.topic << " "
                      << ev.data << std::endl;
          }
        },
        caf::after(std::chrono::milliseconds(200)) >> [] {});
    }
  }

  /// How a send_messages() ended.
  enum class send_end { settled, waited, offline, auth_expired, interrupted };

  struct send_report {
    /// The messages handed to the durable queue (in order), with the last
    /// status seen; `done` when the gateway has it or it failed for good.
    std::vector<chat_message> msgs;
    std::vector<bool> done;
    /// Why queueing stopped before the last message (none: all queued).
    caf::error stop_error;
    /// The stop_error's message may or may not be in the queue.
    bool stop_unknown = false;
    std::string stop_id;
    send_end end = send_end::settled;
    connection_state last_state;
  };

  /// Queues messages through the chat repository (durable queue), each
  /// within what is left of `deadline` (carried down to the queue file),
  /// then waits until each is sent or failed. Stops waiting early once the
  /// connection is known to be gone (every transport failed) or the session
  /// expired: the messages stay in the durable queue. Queueing stops at the
  /// first message that could not be queued.
  send_report send_messages(std::vector<outgoing_message> msgs,
                            steady::time_point deadline,
                            steady::time_point wait_deadline) {
    // the chat stream gives the message as the app sees it; the queue says
    // when the gateway has it for sure (the item is gone from the queue)
    self_->send(eng_.chat(), watch_atom::value,
                caf::actor_cast<chat_listener_actor>(self_));
    self_->send(eng_.queue(), watch_atom::value,
                caf::actor_cast<queue_listener_actor>(self_));
    self_->send(eng_.connection(), watch_atom::value,
                caf::actor_cast<engine_listener_actor>(self_));
    send_report rep;
    std::map<std::string, size_t> index;
    for (auto& m : msgs) {
      auto left = left_until(deadline);
      if (left <= caf::timespan{0}) {
        rep.stop_error = make_engine_error(
          error_class::timeout, "--timeout passed before it could be queued");
        rep.stop_id = m.id;
        break;
      }
      m.timeout = left;
      caf::error err;
      // the repository answers within `left` (plus its grace)
      self_->request(eng_.chat(), left + 3s, send_atom::value, m)
        .receive(
          [&](chat_message& cm) {
            index[cm.id] = rep.msgs.size();
            rep.msgs.push_back(std::move(cm));
            rep.done.push_back(false);
          },
          [&](caf::error& e) { err = std::move(e); });
      if (err) {
        auto c = classify(err);
        rep.stop_unknown = c.code == "outcome_unknown"
                           || c.cls == error_class::timeout;
        rep.stop_error = std::move(err);
        rep.stop_id = m.id;
        break;
      }
    }
    auto open = [&] {
      return std::count(rep.done.begin(), rep.done.end(), false);
    };
    bool offline = false;
    bool expired = false;
    auto on_state = [&](const connection_state& cs) {
      rep.last_state = cs;
      // reconnecting/offline: every transport was tried and failed
      offline = cs.state == link_state::reconnecting
                || cs.state == link_state::offline;
      expired = cs.state == link_state::auth_expired;
    };
    auto settle_end = [&]() -> bool {
      if (open() == 0) {
        rep.end = send_end::settled;
        return true;
      }
      if (expired) {
        rep.end = send_end::auth_expired;
        return true;
      }
      if (offline) {
        rep.end = send_end::offline;
        return true;
      }
      if (interrupted) {
        rep.end = send_end::interrupted;
        return true;
      }
      return false;
    };
    rep.end = send_end::waited;
    while (!settle_end()) {
      auto left = left_until(wait_deadline);
      if (left <= caf::timespan{0}) {
        rep.end = send_end::waited;
        break;
      }
      self_->receive(
        [&](message_atom, chat_message& m) {
          auto i = index.find(m.id);
          if (i != index.end()) {
            auto& cur = rep.msgs[i->second];
            auto keep_failed = cur.status == message_status::failed;
            auto seq = cur.seq;
            cur = std::move(m);
            if (cur.seq == 0)
              cur.seq = seq;
            if (keep_failed)
              rep.done[i->second] = true;
          }
        },
        [&](queue_atom, const queue_update& u) {
          auto i = index.find(u.entry.idempotency_key);
          if (i == index.end())
            return;
          auto& m = rep.msgs[i->second];
          if (u.status == queue_status::sent) {
            rep.done[i->second] = true;
            if (m.status == message_status::queued
                || m.status == message_status::sending)
              m.status = message_status::sent;
            // the stored message in the answer: its seq, whatever the
            // chat stream has shown so far
            if (auto srv = decode_reply<chat_message>(
                  u.http_status ? u.http_status : 200, u.reply_body)) {
              m.seq = srv->seq;
              m.conversation_id = srv->conversation_id;
            }
          } else if (u.status == queue_status::failed
                     || u.status == queue_status::dropped) {
            rep.done[i->second] = true;
            m.status = message_status::failed;
            m.failure_reason = u.error_message;
          } else if (u.status == queue_status::retrying
                     && u.error_cls == error_class::authentication) {
            // the token was refused and could not be refreshed
            expired = true;
          }
        },
        [&](state_atom, const connection_state& cs) { on_state(cs); },
        [&](event_atom, const stream_chunk&) {},
        [&](event_atom, const server_event&) {},
        caf::after(std::min<caf::timespan>(left, 200ms)) >> [] {});
    }
    // not confirmed: still in the durable queue
    for (size_t i = 0; i < rep.msgs.size(); ++i)
      if (!rep.done[i] && rep.msgs[i].status != message_status::failed)
        rep.msgs[i].status = message_status::queued;
    return rep;
  }

  caf::expected<history_result> history(const std::string& conv, int limit,
                                        bool refresh) {
    history_query q;
    q.conversation_id = conv;
    q.limit = limit;
    q.read.max_age = refresh ? caf::timespan{0} : caf::timespan{5s};
    q.read.force_refresh = refresh;
    q.read.allow_stale = !refresh; // --refresh: never from the cache
    caf::expected<history_result> res{caf::error{}};
    auto t = eng_.config().request_timeout;
    self_->request(eng_.chat(), t + 4s, history_atom::value, q)
      .receive([&](history_result& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<std::vector<queue_entry>> queue_list() {
    caf::expected<std::vector<queue_entry>> res{caf::error{}};
    self_->request(eng_.queue(), queue_wait(), list_atom::value)
      .receive([&](std::vector<queue_entry>& xs) { res = std::move(xs); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<queue_entry> queue_retry(int64_t seq) {
    caf::expected<queue_entry> res{caf::error{}};
    self_->request(eng_.queue(), queue_wait(), retry_atom::value, seq)
      .receive([&](queue_entry& e) { res = std::move(e); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<bool> queue_drop(int64_t seq) {
    caf::expected<bool> res{caf::error{}};
    self_->request(eng_.queue(), queue_wait(), drop_atom::value, seq)
      .receive([&](bool b) { res = b; },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  const engine& eng() const { return eng_; }

private:
  /// The queue answers within its lock_timeout (--timeout for `queue`).
  caf::timespan queue_wait() const {
    return std::chrono::duration_cast<caf::timespan>(
             eng_.config().queue.lock_timeout)
           + 3s;
  }

  const options& o_;
  engine eng_;
  caf::scoped_actor self_;
};

void print(const options& o, const json::object& obj,
           const std::string& human) {
  if (o.json_out)
    std::cout << json::serialize(obj) << std::endl;
  else
    std::cout << human << std::endl;
}

int run(const std::string& cmd, const options& o, client& c) {
  // Commands that need the gateway fail fast once every transport was
  // tried and failed (like gRPC's default, not wait-for-ready): the user
  // learns at once that it is unreachable instead of after --timeout.
  auto unreachable_now = [&](const char* what) -> std::optional<int> {
    auto st = c.settle(std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(o.timeout_s)));
    if (st.state == link_state::reconnecting
        || st.state == link_state::offline)
      return fail(o, what,
                  make_engine_error(error_class::network,
                                    st.reason.empty()
                                      ? "every transport failed"
                                      : "every transport failed, the last: "
                                          + st.reason));
    return std::nullopt;
  };
  if (cmd == "login") {
    if (auto rc = unreachable_now("login failed"))
      return *rc;
    auto s = c.login(o.user, o.password);
    if (!s)
      return fail(o, "login failed", s.error());
    auto st = c.settle(2s);
    print(o,
          {{"ok", true},
           {"user_id", s->user_id},
           {"username", s->username},
           {"role", s->role},
           {"connection", state_json(st)}},
          "logged in as " + s->username + " (" + s->role + "), "
            + to_string(st));
    return ok;
  }
  if (cmd == "logout") {
    // The tokens are forgotten here in any case; the gateway is told (it
    // revokes them) and its answer awaited within --timeout, unless every
    // transport has failed already.
    auto timeout = std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(o.timeout_s));
    auto st = c.settle(timeout);
    bool unreachable_already = st.state == link_state::reconnecting
                               || st.state == link_state::offline;
    auto r = c.logout(unreachable_already ? caf::timespan{0} : timeout);
    if (r) {
      print(o, {{"ok", true}, {"gateway_told", true}}, "logged out");
      return ok;
    }
    auto err = r.error();
    if (unreachable_already)
      err = make_engine_error(error_class::network,
                              st.reason.empty()
                                ? "every transport failed"
                                : "every transport failed, the last: "
                                    + st.reason);
    auto cl = classify(err);
    if (o.json_out) {
      json::object obj{{"ok", false},
                       {"logged_out_locally", true},
                       {"gateway_told", false},
                       {"error", to_string(cl.cls)},
                       {"message", cl.message}};
      if (cl.status != 0)
        obj["status"] = cl.status;
      if (!cl.code.empty())
        obj["code"] = cl.code;
      std::cout << json::serialize(obj) << std::endl;
    }
    std::cerr << "aico: logged out here, but the gateway could not be told "
                 "(the session stays valid there until it expires): "
              << describe(err) << std::endl;
    return unreachable;
  }
  if (cmd == "status") {
    auto st = c.settle(std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(std::min(o.timeout_s, 5.0))));
    auto s = c.session();
    json::object obj{{"ok", true}, {"connection", state_json(st)}};
    std::string human = "connection: " + to_string(st);
    if (s) {
      obj["user"] = s->username;
      human += "\nuser: " + s->username + " (" + s->role + ")";
    } else {
      obj["user"] = nullptr;
      human += "\nuser: not logged in";
    }
    print(o, obj, human);
    bool up = st.state == link_state::connected
              || st.state == link_state::degraded;
    return up ? ok : unreachable;
  }
  if (cmd == "health") {
    if (auto rc = unreachable_now("health check failed"))
      return *rc;
    auto r = c.call("GET", "/health", "", false);
    if (!r)
      return fail(o, "health check failed", r.error());
    auto data = envelope_data(*r);
    json::object obj{{"ok", true}, {"via", to_string(r->via)}};
    obj["health"] = data;
    print(o, obj,
          "healthy: " + str(data, "is_healthy") + ", version "
            + str(data, "version") + ", services " + str(data, "services")
            + " (via " + to_string(r->via) + ")");
    return ok;
  }
  if (cmd == "send") {
    // One deadline (--timeout) for everything the command waits for:
    // the session, queueing each message durably (carried down to the
    // queue file, shared with other processes), and the gateway's answers
    // (--wait, by default the rest of --timeout).
    const auto start = steady::now();
    const auto deadline = start
                          + std::chrono::duration_cast<steady::duration>(
                            std::chrono::duration<double>(o.timeout_s));
    const auto wait_deadline
      = o.wait_s >= 0 ? start
                          + std::chrono::duration_cast<steady::duration>(
                            std::chrono::duration<double>(o.wait_s))
                      : deadline;
    // queued offline is fine, but only for someone who is logged in: a
    // message of nobody would wait in the queue forever
    if (auto s = c.session(left_until(deadline)); !s)
      return fail(o, "send failed", s.error());
    std::vector<outgoing_message> msgs;
    std::vector<size_t> line_of; // file line number of each message
    auto add = [&](const std::string& text, const std::string& id,
                   size_t line) {
      outgoing_message m;
      m.id = id.empty() ? new_message_id() : id;
      m.conversation_id = o.conversation;
      m.content = text;
      msgs.push_back(std::move(m));
      line_of.push_back(line);
    };
    const bool from_file = !o.from_file.empty();
    if (from_file) {
      std::ifstream in{o.from_file};
      if (!in) {
        log_line("aico: send: cannot read " + o.from_file);
        return usage;
      }
      std::string line;
      size_t n = 0;
      while (std::getline(in, line)) {
        ++n;
        if (!line.empty())
          add(line, "", n);
      }
      if (msgs.empty()) {
        log_line("aico: send: " + o.from_file + " has no message");
        return usage;
      }
    } else {
      add(o.text, o.message_id, 0);
    }
    auto where = [&](size_t i) {
      return from_file ? "line " + std::to_string(line_of[i]) + " ("
                           + msgs[i].id + ")"
                       : msgs[i].id;
    };
    auto rep = c.send_messages(msgs, deadline, wait_deadline);
    int failed = 0;
    std::string offline_why
      = rep.last_state.reason.empty()
          ? std::string{"no transport could connect"}
          : "last failure: " + rep.last_state.reason;
    for (size_t i = 0; i < rep.msgs.size(); ++i) {
      auto& m = rep.msgs[i];
      json::object obj{{"ok", m.status != message_status::failed},
                       {"id", m.id},
                       {"status", to_string(m.status)}};
      if (from_file)
        obj["line"] = line_of[i];
      std::string human;
      switch (m.status) {
        case message_status::queued:
        case message_status::sending:
          if (rep.end == client::send_end::auth_expired) {
            obj["ok"] = false; // queued, but nothing is sent until a login
            obj["reason"] = "auth_expired";
            human = "queued " + where(i)
                    + ": the session has expired; it stays in the durable "
                      "queue and is sent after the next `aico login`";
          } else if (rep.end == client::send_end::offline) {
            obj["reason"] = "offline";
            human = "queued " + where(i) + " offline: the gateway is "
                    + "unreachable (" + offline_why
                    + "); it stays in the durable queue and is sent by the "
                      "next `aico send`, `aico queue drain` or aico-chat";
          } else {
            obj["reason"] = "not_confirmed";
            human = "queued " + where(i)
                    + ": not confirmed by the gateway in time; it stays in "
                      "the durable queue and is sent when the gateway is "
                      "reachable (see `aico queue`)";
          }
          break;
        case message_status::failed:
          ++failed;
          obj["error"] = m.failure_reason;
          human = "failed " + where(i) + ": " + m.failure_reason;
          break;
        default:
          obj["conversation_id"] = m.conversation_id;
          obj["seq"] = m.seq;
          human = "sent " + where(i) + " to " + m.conversation_id;
          if (m.seq > 0)
            human += " (seq " + std::to_string(m.seq) + ")";
      }
      if (m.status == message_status::failed)
        log_line("aico: " + human);
      if (o.json_out || m.status != message_status::failed)
        print(o, obj, human);
    }
    if (rep.stop_error) {
      // the message at which queueing stopped, and the ones after it
      auto k = rep.msgs.size();
      auto c2 = classify(rep.stop_error);
      auto hint = storage_hint(rep.stop_error);
      std::string human
        = rep.stop_unknown
            ? "unknown " + where(k)
                + ": it may or may not have been queued ("
                + describe(rep.stop_error)
                + "); `aico queue` shows whether it is there"
            : "not queued " + where(k) + ": "
                + (hint.empty() ? std::string{} : hint + ": ")
                + describe(rep.stop_error);
      if (from_file && k + 1 < msgs.size())
        human += "; lines " + std::to_string(line_of[k + 1]) + "-"
                 + std::to_string(line_of.back()) + " were not queued";
      if (o.json_out) {
        json::object obj{{"ok", false},
                         {"id", msgs[k].id},
                         {"status", rep.stop_unknown ? "unknown"
                                                     : "not_queued"},
                         {"error", to_string(c2.cls)},
                         {"message", c2.message}};
        if (!c2.code.empty())
          obj["code"] = c2.code;
        if (from_file) {
          obj["line"] = line_of[k];
          if (k + 1 < msgs.size())
            obj["not_queued_lines"] = json::array{line_of[k + 1],
                                                  line_of.back()};
        }
        std::cout << json::serialize(obj) << std::endl;
      }
      log_line("aico: send: " + human);
      return c2.cls == error_class::authentication ? auth_failed : other;
    }
    if (rep.end == client::send_end::auth_expired) {
      log_line("aico: send: the session has expired: log in again (aico "
               "login); the queued message(s) are sent after that");
      return auth_failed;
    }
    // queued offline is a success: the queue is durable
    return failed > 0 ? other : ok;
  }
  if (cmd == "history") {
    auto r = c.history(o.conversation, o.limit, o.refresh);
    if (!r)
      return fail(o, "history failed", r.error());
    auto& page = r->page;
    if (o.json_out) {
      json::object obj{{"ok", true},
                       {"conversation_id", page.conversation_id},
                       {"from_cache", r->origin.from_cache},
                       {"stale", r->origin.stale}};
      json::array ms;
      for (auto& m : page.messages)
        ms.push_back(json::object{{"id", m.id},
                                  {"seq", m.seq},
                                  {"sender", m.sender},
                                  {"content", m.content},
                                  {"timestamp", m.timestamp},
                                  {"status", to_string(m.status)}});
      obj["messages"] = std::move(ms);
      obj["has_more"] = page.has_more;
      std::cout << json::serialize(obj) << std::endl;
      return ok;
    }
    std::cout << "conversation " << page.conversation_id;
    if (r->origin.stale)
      std::cout << " (offline: cached copy, "
                << std::chrono::duration_cast<std::chrono::seconds>(
                     r->origin.age)
                     .count()
                << " s old)";
    std::cout << std::endl;
    for (auto& m : page.messages)
      std::cout << "  #" << m.seq << " " << m.timestamp << " " << m.sender
                << ": " << m.content << std::endl;
    return ok;
  }
  if (cmd == "queue") {
    if (o.queue_action == "retry" || o.queue_action == "drop") {
      if (o.queue_seq <= 0) {
        log_line("aico: queue " + o.queue_action
                 + ": give the item's number (see `aico queue list`)");
        return usage;
      }
      if (o.queue_action == "retry") {
        auto e = c.queue_retry(o.queue_seq);
        if (!e)
          return fail(o, "queue retry failed", e.error());
        print(o, {{"ok", true}, {"seq", e->seq}, {"status", e->status}},
              "item " + std::to_string(e->seq) + " is queued again");
      } else {
        auto b = c.queue_drop(o.queue_seq);
        if (!b)
          return fail(o, "queue drop failed", b.error());
        print(o, {{"ok", true}, {"seq", o.queue_seq}, {"dropped", *b}},
              *b ? "item " + std::to_string(o.queue_seq) + " dropped"
                 : "item " + std::to_string(o.queue_seq) + " not found");
        return *b ? ok : other;
      }
      return ok;
    }
    if (o.queue_action == "drain") {
      // the engine drains by itself once connected: wait until nothing is
      // pending any more (parked items stay until retried or dropped)
      auto deadline = std::chrono::steady_clock::now()
                      + std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::duration<double>(o.timeout_s));
      size_t left = 0;
      for (;;) {
        auto xs = c.queue_list();
        if (!xs)
          return fail(o, "queue drain failed", xs.error());
        left = std::count_if(xs->begin(), xs->end(), [](auto& e) {
          return e.state != "parked";
        });
        if (left == 0 || interrupted
            || std::chrono::steady_clock::now() >= deadline)
          break;
        std::this_thread::sleep_for(200ms);
      }
      print(o, {{"ok", left == 0}, {"pending", left}},
            left == 0 ? "queue drained"
                      : std::to_string(left) + " item(s) still pending");
      return left == 0 ? ok : unreachable;
    }
    auto xs = c.queue_list();
    if (!xs)
      return fail(o, "queue list failed", xs.error());
    if (xs->empty() && !o.json_out)
      std::cout << "queue is empty" << std::endl;
    for (auto& e : *xs) {
      json::object obj{{"seq", e.seq},
                       {"key", e.idempotency_key},
                       {"kind", to_string(e.kind)},
                       {"lane", e.lane},
                       {"status", e.status},
                       {"attempts", e.attempts}};
      std::string human = "#" + std::to_string(e.seq) + " " + e.status + " "
                          + to_string(e.kind) + " " + e.lane + " "
                          + e.idempotency_key;
      if (!e.parked_reason.empty()) {
        obj["reason"] = e.parked_reason;
        human += ": " + e.parked_reason;
      } else if (!e.last_error.empty()) {
        obj["last_error"] = e.last_error;
        human += " (last error: " + e.last_error + ")";
      }
      print(o, obj, human);
    }
    return ok;
  }
  if (cmd == "watch") {
    c.watch(o.watch_for);
    return ok;
  }
  log_line("aico: unknown command " + cmd);
  return usage;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"aico: command-line client of the aico engine"};
  app.require_subcommand(1);
  app.fallthrough(); // global options may also follow the command
  cli::add_connection_options(app, o);
  app.add_flag("--json", o.json_out, "One JSON object per line");
  auto login = app.add_subcommand("login", "Log in and keep the tokens");
  login->add_option("user", o.user)->required();
  login->add_option("password", o.password_src.argv_value,
                    "The password (for tests only: other users can read "
                    "it; by default it is asked for on the terminal)");
  cli::add_password_options(*login, o.password_src);
  app.add_subcommand("ipc-key",
                     "Print this client's CURVE public key (made on first "
                     "use) for the gateway's --ipc-allow list");
  app.add_subcommand("logout", "Log out and forget the tokens");
  app.add_subcommand("status", "Connection state and active transport");
  app.add_subcommand("health", "The gateway's health");
  auto send = app.add_subcommand(
    "send", "Send a chat message (queued durably while offline)");
  send->add_option("--conversation", o.conversation, "Conversation id");
  send->add_option("--id", o.message_id,
                   "Idempotency key (default: a random one)");
  send->add_option("--from-file", o.from_file,
                   "Send each non-empty line of FILE, in order");
  send->add_option("--wait", o.wait_s,
                   "Seconds to wait for the gateway to accept (default "
                   "--timeout); then it stays queued")
    ->check(CLI::Range(0.0, 1e6));
  send->add_option("text", o.text);
  auto history = app.add_subcommand("history", "Show a conversation");
  history->add_option("--conversation", o.conversation, "Conversation id");
  history->add_option("--limit", o.limit, "How many messages")
    ->check(CLI::Range(1, 500));
  history->add_flag("--refresh", o.refresh, "Never answer from the cache");
  auto queue = app.add_subcommand(
    "queue", "Offline queue: list | retry N | drop N | drain");
  queue->add_option("action", o.queue_action, "list, retry, drop or drain")
    ->check(CLI::IsMember({"list", "retry", "drop", "drain"}));
  queue->add_option("seq", o.queue_seq, "Item number (retry, drop)");
  auto watch = app.add_subcommand("watch", "Print events and state changes");
  watch->add_option("--for", o.watch_for, "Stop after this many seconds")
    ->check(CLI::Range(0.0, 1e6));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto rc = app.exit(e);
    return rc == 0 ? ok : usage;
  }
  if (send->parsed() && o.text.empty() && o.from_file.empty()) {
    std::cerr << "aico: send: empty message (give TEXT or --from-file)"
              << std::endl;
    return usage;
  }
  if (send->parsed() && !o.text.empty() && !o.from_file.empty()) {
    std::cerr << "aico: send: give TEXT or --from-file, not both"
              << std::endl;
    return usage;
  }
  std::string err;
  auto cfg = make_config(o, err);
  if (!cfg) {
    std::cerr << "aico: " << err << std::endl;
    return usage;
  }
  auto cmd = app.get_subcommands().front()->get_name();
  if (cmd == "ipc-key") {
    auto path = cli::client_key_file(*cfg);
    ipc_link::curve_keys keys;
    std::string kerr;
    if (path.empty() || !ipc_link::load_or_create_client_keys(path, keys, kerr)) {
      std::cerr << "aico: ipc-key: "
                << (path.empty() ? "no state directory for the key file"
                                 : kerr)
                << std::endl;
      return other;
    }
    if (o.json_out)
      std::cout << json::serialize(json::object{{"public_key", keys.public_key},
                                                {"key_file", path}})
                << std::endl;
    else
      std::cout << keys.public_key << std::endl;
    return ok;
  }
  if (cmd == "login") {
    std::string perr;
    // the aico profile logs in with the backend's user UUID and PIN
    auto what = cfg->profile == wire_profile::aico ? "PIN for " : "password for ";
    if (!cli::read_password("aico", o.password_src, what + o.user + ": ",
                            o.password, perr)) {
      std::cerr << "aico: login: " << perr << std::endl;
      return usage;
    }
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  // Only `send` and `queue` use the durable queue; other commands do not
  // open it. Processes of one state directory share the queue file (each
  // write is one short transaction; they take turns): `aico watch` in one
  // terminal, aico-chat in another and several `aico send` at once all
  // work. A send carries its --timeout down to the queue file; `queue`
  // list/retry/drop wait at most --timeout for other processes' commits.
  if (cmd == "queue")
    cfg->queue.lock_timeout = std::chrono::milliseconds{
      static_cast<int64_t>(o.timeout_s * 1000)};
  else if (cmd != "send")
    cfg->queue.enabled = false;
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.policy", caf::atom("sharing"));
  sys_cfg.set("scheduler.max-threads", 2);
  int rc = other;
  {
    caf::actor_system sys{sys_cfg};
    client c{sys, o, std::move(*cfg)};
    rc = run(cmd, o, c);
  }
  return rc;
}
