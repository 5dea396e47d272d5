// aico: a scriptable command-line client over the engine.
//
//   aico [--url URL] [--ipc ENDPOINT] [--transports ipc,ws,http]
//        [--state-dir DIR] [--json] [--timeout S] COMMAND ...
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
#include "messages/engine.hpp"

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
  std::cerr << "aico: " << what << ": " << describe(err) << std::endl;
  return exit_for(err);
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
      ->request(eng_.connection(), t + 2s, request_atom::value, c, t, auth)
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

  caf::expected<session_info> session() {
    caf::expected<session_info> res{caf::error{}};
    self_->request(eng_.tokens(), 5s, session_atom::value)
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
            std::cout << "[state] " << to_string(cs) << std::endl;
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

  /// Sends messages through the chat repository (durable queue) and waits
  /// until each is sent or failed, or `wait` passes. Returns the last
  /// version of each message seen.
  caf::expected<std::vector<chat_message>>
  send_messages(std::vector<outgoing_message> msgs, caf::timespan wait) {
    // the chat stream gives the message as the app sees it; the queue says
    // when the gateway has it for sure (the item is gone from the queue)
    self_->send(eng_.chat(), watch_atom::value,
                caf::actor_cast<chat_listener_actor>(self_));
    self_->send(eng_.queue(), watch_atom::value,
                caf::actor_cast<queue_listener_actor>(self_));
    std::vector<chat_message> res;
    std::map<std::string, size_t> index;
    std::vector<bool> done;
    for (auto& m : msgs) {
      caf::error err;
      self_->request(eng_.chat(), 15s, send_atom::value, m)
        .receive(
          [&](chat_message& cm) {
            index[cm.id] = res.size();
            res.push_back(std::move(cm));
            done.push_back(false);
          },
          [&](caf::error& e) { err = std::move(e); });
      if (err)
        return err;
    }
    auto open = [&] { return std::count(done.begin(), done.end(), false); };
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (open() > 0 && !interrupted) {
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= decltype(left)::zero())
        break;
      self_->receive(
        [&](message_atom, chat_message& m) {
          auto i = index.find(m.id);
          if (i != index.end()) {
            auto keep_failed = res[i->second].status == message_status::failed;
            res[i->second] = std::move(m);
            if (keep_failed)
              done[i->second] = true;
          }
        },
        [&](queue_atom, const queue_update& u) {
          auto i = index.find(u.entry.idempotency_key);
          if (i == index.end())
            return;
          if (u.status == queue_status::sent) {
            done[i->second] = true;
            auto& m = res[i->second];
            if (m.status == message_status::queued
                || m.status == message_status::sending)
              m.status = message_status::sent;
          } else if (u.status == queue_status::failed
                     || u.status == queue_status::dropped) {
            done[i->second] = true;
            res[i->second].status = message_status::failed;
            res[i->second].failure_reason = u.error_message;
          }
        },
        [&](event_atom, const stream_chunk&) {},
        [&](state_atom, const connection_state&) {},
        [&](event_atom, const server_event&) {},
        caf::after(std::min<caf::timespan>(
          std::chrono::duration_cast<caf::timespan>(left), 200ms))
          >> [] {});
    }
    // not confirmed in time: still in the durable queue
    for (size_t i = 0; i < res.size(); ++i)
      if (!done[i] && res[i].status != message_status::failed)
        res[i].status = message_status::queued;
    return res;
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
    self_->request(eng_.queue(), 10s, list_atom::value)
      .receive([&](std::vector<queue_entry>& xs) { res = std::move(xs); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<queue_entry> queue_retry(int64_t seq) {
    caf::expected<queue_entry> res{caf::error{}};
    self_->request(eng_.queue(), 10s, retry_atom::value, seq)
      .receive([&](queue_entry& e) { res = std::move(e); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<bool> queue_drop(int64_t seq) {
    caf::expected<bool> res{caf::error{}};
    self_->request(eng_.queue(), 10s, drop_atom::value, seq)
      .receive([&](bool b) { res = b; },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  const engine& eng() const { return eng_; }

private:
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
    // queued offline is fine, but only for someone who is logged in: a
    // message of nobody would wait in the queue forever
    if (auto s = c.session(); !s)
      return fail(o, "send failed", s.error());
    std::vector<outgoing_message> msgs;
    auto add = [&](const std::string& text, const std::string& id) {
      outgoing_message m;
      m.id = id.empty() ? new_message_id() : id;
      m.conversation_id = o.conversation;
      m.content = text;
      msgs.push_back(std::move(m));
    };
    if (!o.from_file.empty()) {
      std::ifstream in{o.from_file};
      if (!in) {
        std::cerr << "aico: send: cannot read " << o.from_file << std::endl;
        return usage;
      }
      std::string line;
      while (std::getline(in, line))
        if (!line.empty())
          add(line, "");
      if (msgs.empty()) {
        std::cerr << "aico: send: " << o.from_file << " has no message"
                  << std::endl;
        return usage;
      }
    } else {
      add(o.text, o.message_id);
    }
    auto wait = std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(o.wait_s >= 0 ? o.wait_s : o.timeout_s));
    auto res = c.send_messages(std::move(msgs), wait);
    if (!res)
      return fail(o, "send failed", res.error());
    int failed = 0, queued = 0;
    for (auto& m : *res) {
      json::object obj{{"ok", m.status != message_status::failed},
                       {"id", m.id},
                       {"status", to_string(m.status)}};
      std::string human;
      switch (m.status) {
        case message_status::queued:
        case message_status::sending:
          ++queued;
          human = "queued " + m.id
                  + ": not confirmed by the gateway yet (offline?); it stays "
                    "in the durable queue and is sent when the gateway is "
                    "reachable (see `aico queue`)";
          break;
        case message_status::failed:
          ++failed;
          obj["error"] = m.failure_reason;
          human = "failed " + m.id + ": " + m.failure_reason;
          break;
        default:
          obj["conversation_id"] = m.conversation_id;
          obj["seq"] = m.seq;
          human = "sent " + m.id + " to " + m.conversation_id + " (seq "
                  + std::to_string(m.seq) + ")";
      }
      if (m.status == message_status::failed)
        std::cerr << "aico: " << human << std::endl;
      if (o.json_out || m.status != message_status::failed)
        print(o, obj, human);
    }
    (void) queued; // queued offline is a success: the queue is durable
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
        std::cerr << "aico: queue " << o.queue_action << ": give the item's "
                  << "number (see `aico queue list`)" << std::endl;
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
  std::cerr << "aico: unknown command " << cmd << std::endl;
  return usage;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  cli::apply_environment(o);
  CLI::App app{"aico: command-line client of the aico engine"};
  app.require_subcommand(1);
  app.fallthrough(); // global options may also follow the command
  cli::add_connection_options(app, o);
  app.add_flag("--json", o.json_out, "One JSON object per line");
  auto login = app.add_subcommand("login", "Log in and keep the tokens");
  login->add_option("user", o.user)->required();
  login->add_option("password", o.password)->required();
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
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  auto cmd = app.get_subcommands().front()->get_name();
  // Only `send` and `queue` use the durable queue. The queue file is locked
  // by the one process that has it open, so every other command leaves it
  // alone: `aico watch` in one terminal and `aico send` in another work on
  // the same state directory. `send`/`queue` wait up to --timeout for
  // another process (a second `aico send`, aico-chat) to let go of it.
  if (cmd == "send" || cmd == "queue")
    cfg->queue.lock_timeout = std::chrono::milliseconds{
      static_cast<int64_t>(o.timeout_s * 1000)};
  else
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
