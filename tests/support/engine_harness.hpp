// Test support: the whole engine against the real gateway. A fixture that
// starts aico-gateway (loopback, temp dir, faults on, no bot), an engine
// with short timings and a watcher that records every connection state and
// event, plus helpers to log in, send, switch faults and read the gateway's
// store (the ground truth for lost/duplicated/reordered messages).
// Header-only: link aico_actors and aico_test_support.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "support/wait_first.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"

namespace aico::test {

using namespace std::chrono_literals;

// -- what the engine publishes -------------------------------------------------

/// Thread-safe record of the connection states and events the engine sends
/// to its watcher.
class engine_log {
public:
  void add(connection_state cs) {
    std::lock_guard<std::mutex> g{mtx_};
    states_.push_back(std::move(cs));
    cv_.notify_all();
  }

  void add(server_event ev) {
    std::lock_guard<std::mutex> g{mtx_};
    events_.push_back(std::move(ev));
    cv_.notify_all();
  }

  std::size_t state_count() const {
    std::lock_guard<std::mutex> g{mtx_};
    return states_.size();
  }

  std::size_t event_count() const {
    std::lock_guard<std::mutex> g{mtx_};
    return events_.size();
  }

  /// The first state at index >= from satisfying `pred`.
  std::optional<connection_state>
  wait_state(const std::function<bool(const connection_state&)>& pred,
             std::chrono::milliseconds timeout, std::size_t from = 0) {
    std::unique_lock<std::mutex> g{mtx_};
    return wait_first(g, cv_, states_, from, timeout, pred);
  }

  /// The first event at index >= from satisfying `pred`.
  std::optional<server_event>
  wait_event(const std::function<bool(const server_event&)>& pred,
             std::chrono::milliseconds timeout, std::size_t from = 0) {
    std::unique_lock<std::mutex> g{mtx_};
    return wait_first(g, cv_, events_, from, timeout, pred);
  }

  std::string history() const {
    std::lock_guard<std::mutex> g{mtx_};
    std::string res;
    for (auto& s : states_) {
      if (!res.empty())
        res += " -> ";
      res += to_string(s);
    }
    return res;
  }

private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<connection_state> states_;
  std::vector<server_event> events_;
};

inline engine_listener_actor spawn_watcher(caf::actor_system& sys,
                                    std::shared_ptr<engine_log> log) {
  return sys.spawn([log]() -> engine_listener_actor::behavior_type {
    return {
      [log](state_atom, const connection_state& cs) { log->add(cs); },
      [log](event_atom, const server_event& ev) { log->add(ev); },
    };
  });
}

inline auto is_connected(transport_mode m) {
  return [m](const connection_state& cs) {
    return (cs.state == link_state::connected
            || cs.state == link_state::degraded)
           && cs.mode == m;
  };
}

// -- the fixture -----------------------------------------------------------------

class engine_harness : public ::testing::Test {
protected:
  /// Starts the gateway; without `bot` the stored conversations hold only
  /// what the test sent.
  void start_gateway(gateway_options opts = {}, bool bot = false) {
    opts.bot = bot;
    gw_ = std::make_unique<gateway_process>(std::move(opts));
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
    admin_ = std::make_unique<http_client>(gw_->host(), gw_->port());
    root_token_ = login_raw("root", "root-pw");
    ASSERT_FALSE(root_token_.empty());
  }

  /// Engine configuration with short timings so the scenarios run in
  /// seconds (the defaults are tens of seconds).
  engine_config make_config() {
    auto cfg = base_config();
    tune(cfg);
    return cfg;
  }

  /// A test's own settings on top of base_config().
  virtual void tune(engine_config&) {
  }

  engine_config base_config() {
    engine_config cfg;
    auto& c = cfg.connection;
    c.http.base_url = gw_->http_url();
    c.ws.url = gw_->ws_url();
    c.ipc.endpoint = gw_->ipc_endpoint();
    c.http.connect_timeout = c.ws.connect_timeout = c.ipc.connect_timeout
      = 2s;
    c.ws.ping_interval = c.ipc.ping_interval = 500ms;
    c.ws.dead_peer_timeout = c.ipc.dead_peer_timeout = 2s;
    c.health_interval = 1s;
    c.health_timeout = 1s;
    c.failback_probes = 2;
    c.backoff = {std::chrono::milliseconds{100}, 1.6, 0.2,
                 std::chrono::milliseconds{1000}};
    cfg.tokens.state_dir = state_dir_.path();
    cfg.tokens.request_timeout = 5s;
    cfg.request_timeout = 10s;
    cfg.shutdown_timeout = 5s;
    return cfg;
  }

  void start_engine() {
    eng_ = std::make_unique<engine>(sys_, make_config());
    caf::anon_send(eng_->connection(), watch_atom::value,
                   spawn_watcher(sys_, log_));
  }

  void TearDown() override {
    eng_.reset();
    if (gw_)
      gw_->stop();
  }

  std::string login_raw(const std::string& user, const std::string& pw) {
    auto r = admin_->post("/api/v1/users/authenticate",
                          json::object{{"username", user}, {"password", pw}});
    return jstr(r.body, "/data/access_token");
  }

  bool fault(const json::object& body) {
    auto r = admin_->post("/api/v1/admin/faults", body, root_token_);
    return r.status == 200;
  }

  caf::expected<session_info> login(const std::string& u,
                                    const std::string& p) {
    caf::scoped_actor self{sys_};
    caf::expected<session_info> res{caf::error{}};
    self->request(eng_->tokens(), 12s, login_atom::value, u, p)
      .receive([&](session_info& s) { res = std::move(s); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  caf::expected<session_info> session() {
    caf::scoped_actor self{sys_};
    caf::expected<session_info> res{caf::error{}};
    self->request(eng_->tokens(), 5s, session_atom::value)
      .receive([&](session_info& s) { res = std::move(s); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// One API call the way the repositories make it: through the resilient
  /// client (breakers, retries of 503/429/network) and the supervisor. A
  /// door switched off by a fault answers 503 for a moment before it
  /// closes; the retry covers that, as it does for applications.
  caf::expected<api_reply> call(api_call c, caf::timespan t = 10s) {
    caf::scoped_actor self{sys_};
    caf::expected<api_reply> res{caf::error{}};
    self->request(eng_->api(), t + 2s, request_atom::value, c, t, true)
      .receive([&](api_reply& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    return res;
  }

  /// Sends one chat message through the engine (id = idempotency key).
  caf::expected<api_reply> send_message(const std::string& conv,
                                        const std::string& id,
                                        caf::timespan t = 10s) {
    json::object body{{"id", id},
                      {"conversation_id", conv},
                      {"content", "message " + id}};
    return call(api_call{id, "POST", "/conversations/messages",
                         json::serialize(body), ""},
                t);
  }

  /// The ids of a conversation as stored by the gateway, in seq order
  /// (read directly over REST with the owner's own token).
  std::vector<std::string> stored_ids(const std::string& user,
                                      const std::string& pw,
                                      const std::string& conv) {
    auto token = login_raw(user, pw);
    std::vector<std::string> ids;
    int64_t since = 0;
    for (int page = 0; page < 100; ++page) {
      auto r = admin_->get("/api/v1/conversations/" + conv
                             + "/messages?limit=500&since="
                             + std::to_string(since),
                           token);
      EXPECT_EQ(r.status, 200) << r.raw;
      if (r.status != 200)
        break;
      auto* msgs = jptr(r.body, "/data/messages");
      if (!msgs || !msgs->is_array())
        break;
      for (auto& m : msgs->get_array())
        ids.push_back(jstr(m, "/id"));
      since = jint(r.body, "/data/next_since", since);
      if (!jtrue(r.body, "/data/has_more"))
        break;
    }
    return ids;
  }

  /// Checks that the gateway stored exactly `sent`, once each, in order.
  void expect_stored_exactly(const std::string& conv,
                             const std::vector<std::string>& sent) {
    auto ids = stored_ids("alice", "alice-pw", conv);
    std::map<std::string, int> count;
    for (auto& id : ids)
      ++count[id];
    int dup = 0, lost = 0;
    for (auto& [id, n] : count)
      if (n > 1)
        dup += n - 1;
    for (auto& id : sent)
      if (count.count(id) == 0)
        ++lost;
    EXPECT_EQ(dup, 0) << "duplicated messages in the store";
    EXPECT_EQ(lost, 0) << "lost messages";
    EXPECT_EQ(ids.size(), sent.size());
    EXPECT_EQ(ids, sent) << "stored order differs from send order";
  }

  caf::actor_system_config sys_cfg_;
  caf::actor_system sys_{sys_cfg_};
  temp_dir state_dir_{"aico-engine-it"};
  std::unique_ptr<gateway_process> gw_;
  std::unique_ptr<http_client> admin_;
  std::string root_token_;
  std::shared_ptr<engine_log> log_ = std::make_shared<engine_log>();
  std::unique_ptr<engine> eng_;
};

} // namespace aico::test
