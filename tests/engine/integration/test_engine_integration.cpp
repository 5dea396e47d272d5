// Integration tests of the whole engine (supervisor + transports + token
// manager) against the real aico-gateway on 127.0.0.1 / ipc:// in a temp dir.
// Faults are switched through the gateway's /admin/faults; the gateway's
// stored messages are the ground truth for "nothing lost, nothing doubled".
// Every wait is bounded.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "support/clients.hpp"
#include "support/engine_harness.hpp"
#include "support/gateway_process.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::http_client;
using aico::test::jint;
using aico::test::jstr;
using aico::test::parse_json;
namespace json = boost::json;
using steady = std::chrono::steady_clock;
using aico::test::engine_harness;
using aico::test::is_connected;

namespace {

using engine_integration = engine_harness;

/// Sends messages one after another from a background thread until told to
/// stop, recording the ids the engine confirmed and any failure.
class sender {
public:
  sender(std::function<caf::expected<api_reply>(const std::string&)> send,
         std::string prefix)
    : send_(std::move(send)), prefix_(std::move(prefix)) {
    thread_ = std::thread{[this] { run(); }};
  }

  ~sender() { stop(); }

  /// Blocks until at least `n` more messages were confirmed (bounded).
  bool wait_more(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> g{mtx_};
    auto target = ok_.size() + n;
    return cv_.wait_for(g, timeout, [&] { return ok_.size() >= target; });
  }

  void stop() {
    stop_ = true;
    if (thread_.joinable())
      thread_.join();
  }

  std::vector<std::string> confirmed() const {
    std::lock_guard<std::mutex> g{mtx_};
    return ok_;
  }

  std::vector<std::string> failures() const {
    std::lock_guard<std::mutex> g{mtx_};
    return failed_;
  }

  std::map<int, int> via_counts() const {
    std::lock_guard<std::mutex> g{mtx_};
    return via_;
  }

private:
  void run() {
    for (int i = 0; !stop_; ++i) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%05d", i);
      auto id = prefix_ + buf;
      auto r = send_(id);
      std::lock_guard<std::mutex> g{mtx_};
      if (r && (r->status == 201 || r->status == 200)) {
        ok_.push_back(id);
        ++via_[static_cast<int>(r->via)];
      } else {
        failed_.push_back(id + ": "
                          + (r ? std::to_string(r->status)
                               : describe(r.error())));
        // the id may or may not be stored: record it so the integrity
        // check knows; the test fails on any failure anyway
      }
      cv_.notify_all();
    }
  }

  std::function<caf::expected<api_reply>(const std::string&)> send_;
  std::string prefix_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<std::string> ok_;
  std::vector<std::string> failed_;
  std::map<int, int> via_;
  std::thread thread_;
};

} // namespace

// -- basics ------------------------------------------------------------------------

TEST_F(engine_integration, connects_over_ipc_first_and_logs_in) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s))
    << log_->history();
  auto s = login("alice", "alice-pw");
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_EQ(s->username, "alice");
  auto r = call(api_call{"me-1", "GET", "/users/me", "", ""});
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->via, transport_mode::ipc);
  EXPECT_EQ(jstr(parse_json(r->body), "/data/username"), "alice");
}

TEST_F(engine_integration, wrong_password_is_an_authentication_error) {
  start_gateway();
  start_engine();
  auto s = login("alice", "not-the-password");
  ASSERT_FALSE(s);
  EXPECT_EQ(classify(s.error()).cls, error_class::authentication);
}

// -- failover and fail-back, with traffic flowing ------------------------------------

TEST_F(engine_integration, fails_over_ipc_ws_http_and_back_without_loss) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s))
    << log_->history();
  ASSERT_TRUE(login("alice", "alice-pw"));
  const std::string conv = "failover";
  sender s{[&](const std::string& id) { return send_message(conv, id); },
           "fo-"};
  ASSERT_TRUE(s.wait_more(20, 10s));

  // IPC down: traffic continues on WebSocket
  auto mark = log_->state_count();
  ASSERT_TRUE(fault({{"ipc", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ws), 10s, mark))
    << log_->history();
  ASSERT_TRUE(s.wait_more(20, 10s));

  // WebSocket down too: degraded, on HTTP
  mark = log_->state_count();
  ASSERT_TRUE(fault({{"ws", "down"}}));
  auto st = log_->wait_state(is_connected(transport_mode::http), 10s, mark);
  ASSERT_TRUE(st) << log_->history();
  EXPECT_EQ(st->state, link_state::degraded);
  ASSERT_TRUE(s.wait_more(20, 10s));

  // both back: the engine fails back to IPC by itself
  mark = log_->state_count();
  ASSERT_TRUE(fault({{"ipc", "up"}, {"ws", "up"}}));
  st = log_->wait_state(is_connected(transport_mode::ipc), 15s, mark);
  ASSERT_TRUE(st) << log_->history();
  EXPECT_EQ(st->state, link_state::connected);
  ASSERT_TRUE(s.wait_more(20, 10s));
  s.stop();

  EXPECT_TRUE(s.failures().empty())
    << s.failures().size() << " failed, first: " << s.failures().front();
  auto via = s.via_counts();
  EXPECT_GT(via[static_cast<int>(transport_mode::ipc)], 0);
  EXPECT_GT(via[static_cast<int>(transport_mode::ws)], 0);
  EXPECT_GT(via[static_cast<int>(transport_mode::http)], 0);
  expect_stored_exactly(conv, s.confirmed());
}

TEST_F(engine_integration, dropped_websocket_fails_over_to_http) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  ASSERT_TRUE(login("alice", "alice-pw"));
  // start on WebSocket: IPC off
  ASSERT_TRUE(fault({{"ipc", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ws), 10s))
    << log_->history();
  auto mark = log_->state_count();
  ASSERT_TRUE(fault({{"ws", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::http), 10s, mark))
    << log_->history();
  auto r = send_message("drop", "drop-1");
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->via, transport_mode::http);
  expect_stored_exactly("drop", {"drop-1"});
}

TEST_F(engine_integration, events_keep_flowing_on_every_transport) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  ASSERT_TRUE(login("alice", "alice-pw"));
  auto expect_event_via = [&](const std::string& id, transport_mode m) {
    auto from = log_->event_count();
    // the subscription follows the login and each failover: allow a moment
    std::optional<server_event> ev;
    for (int attempt = 0; attempt < 3 && !ev; ++attempt) {
      auto msg_id = id + "-" + std::to_string(attempt);
      auto r = send_message("events", msg_id);
      ASSERT_TRUE(r) << describe(r.error());
      ev = log_->wait_event(
        [&](const server_event& e) {
          return e.topic == "message"
                 && jstr(parse_json(e.data), "/id") == msg_id;
        },
        3s, from);
    }
    ASSERT_TRUE(ev) << "no message event for " << id;
    EXPECT_EQ(ev->via, m);
  };
  expect_event_via("ev-ipc", transport_mode::ipc);
  ASSERT_TRUE(fault({{"ipc", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ws), 10s));
  expect_event_via("ev-ws", transport_mode::ws);
  ASSERT_TRUE(fault({{"ws", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::http), 10s));
  expect_event_via("ev-http", transport_mode::http);
}

// -- gRPC: grpc -> http and back (transports grpc,http) ---------------------------

namespace {

/// The engine with `transports grpc,http` against a gateway with its gRPC
/// door on 127.0.0.1:0.
class engine_integration_grpc : public engine_harness {
protected:
  void start_with_grpc() {
    gateway_options o;
    o.extra_args = {"--grpc", "127.0.0.1:0"};
    start_gateway(o);
    ASSERT_FALSE(gw_->reported_grpc().empty()) << gw_->ready_line();
  }

  void tune(engine_config& cfg) override {
    auto& c = cfg.connection;
    c.order = {transport_mode::grpc, transport_mode::http};
    c.grpc.endpoint = gw_->reported_grpc();
    c.grpc.connect_timeout = 2s;
    c.grpc.ping_interval = 1s;
    c.grpc.dead_peer_timeout = 3s;
  }
};

} // namespace

TEST_F(engine_integration_grpc, fails_over_grpc_to_http_and_back_without_loss) {
  start_with_grpc();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::grpc), 10s))
    << log_->history();
  ASSERT_TRUE(login("alice", "alice-pw"));
  auto expect_event_via = [&](const std::string& id, transport_mode m) {
    auto from = log_->event_count();
    std::optional<server_event> ev;
    for (int attempt = 0; attempt < 3 && !ev; ++attempt) {
      auto msg_id = id + "-" + std::to_string(attempt);
      auto r = send_message("grpc-events", msg_id);
      ASSERT_TRUE(r) << describe(r.error());
      ev = log_->wait_event(
        [&](const server_event& e) {
          return e.topic == "message"
                 && jstr(parse_json(e.data), "/id") == msg_id;
        },
        3s, from);
    }
    ASSERT_TRUE(ev) << "no message event for " << id;
    EXPECT_EQ(ev->via, m);
  };
  expect_event_via("ev-grpc", transport_mode::grpc);
  const std::string conv = "grpc-failover";
  sender s{[&](const std::string& id) { return send_message(conv, id); },
           "gfo-"};
  ASSERT_TRUE(s.wait_more(20, 10s));

  // the gRPC door down: traffic continues on HTTP (degraded)
  auto mark = log_->state_count();
  ASSERT_TRUE(fault({{"grpc", "down"}}));
  auto st = log_->wait_state(is_connected(transport_mode::http), 10s, mark);
  ASSERT_TRUE(st) << log_->history();
  EXPECT_EQ(st->state, link_state::degraded);
  ASSERT_TRUE(s.wait_more(20, 10s));

  // back: the engine fails back to gRPC by itself
  mark = log_->state_count();
  ASSERT_TRUE(fault({{"grpc", "up"}}));
  st = log_->wait_state(is_connected(transport_mode::grpc), 15s, mark);
  ASSERT_TRUE(st) << log_->history();
  EXPECT_EQ(st->state, link_state::connected);
  ASSERT_TRUE(s.wait_more(20, 10s));
  s.stop();

  EXPECT_TRUE(s.failures().empty())
    << s.failures().size() << " failed, first: " << s.failures().front();
  auto via = s.via_counts();
  EXPECT_GT(via[static_cast<int>(transport_mode::grpc)], 0);
  EXPECT_GT(via[static_cast<int>(transport_mode::http)], 0);
  expect_stored_exactly(conv, s.confirmed());
  expect_event_via("ev-grpc-back", transport_mode::grpc);
}

// -- gateway crash ----------------------------------------------------------------

TEST_F(engine_integration, reconnects_by_itself_after_sigkill_and_restart) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  ASSERT_TRUE(login("alice", "alice-pw"));
  ASSERT_TRUE(send_message("crash", "crash-1"));

  auto mark = log_->state_count();
  gw_->kill9();
  ASSERT_TRUE(log_->wait_state(
    [](const connection_state& cs) {
      return cs.state == link_state::reconnecting;
    },
    10s, mark))
    << log_->history();

  // a message sent while the gateway is dead waits for a transport and is
  // delivered once the gateway is back (within its deadline)
  std::optional<caf::expected<api_reply>> during;
  std::thread t{[&] { during = send_message("crash", "crash-2", 20s); }};
  std::this_thread::sleep_for(1s);
  auto restarted = gw_->start();
  t.join();
  ASSERT_TRUE(restarted) << gw_->last_error();
  ASSERT_TRUE(during.has_value());
  ASSERT_TRUE(*during) << describe(during->error());

  mark = log_->state_count();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 15s))
    << log_->history();
  auto r = send_message("crash", "crash-3");
  ASSERT_TRUE(r) << describe(r.error());
  expect_stored_exactly("crash", {"crash-1", "crash-2", "crash-3"});
}

// -- expiring tokens ---------------------------------------------------------------

TEST_F(engine_integration, short_access_ttl_keeps_requests_succeeding) {
  gateway_options opts;
  opts.access_ttl_s = 2;
  start_gateway(opts);
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  auto first = login("alice", "alice-pw");
  ASSERT_TRUE(first);
  std::vector<std::string> sent;
  auto until = steady::now() + 6s;
  int i = 0;
  while (steady::now() < until) {
    auto id = "ttl-" + std::to_string(1000 + i++);
    auto r = send_message("ttl", id);
    ASSERT_TRUE(r) << id << ": " << describe(r.error());
    sent.push_back(id);
    std::this_thread::sleep_for(150ms);
  }
  auto now = session();
  ASSERT_TRUE(now);
  EXPECT_GT(now->access_expires_at, first->access_expires_at)
    << "the access token was never refreshed";
  expect_stored_exactly("ttl", sent);
}

TEST_F(engine_integration, expired_access_token_on_the_wire_is_refreshed) {
  // Traffic pauses longer than the access TTL: the next request is made
  // with a fresh token (proactive refresh or refresh on 401) and succeeds.
  gateway_options opts;
  opts.access_ttl_s = 2;
  start_gateway(opts);
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  ASSERT_TRUE(login("alice", "alice-pw"));
  ASSERT_TRUE(send_message("pause", "pause-1"));
  std::this_thread::sleep_for(3s);
  auto r = send_message("pause", "pause-2");
  ASSERT_TRUE(r) << describe(r.error());
  expect_stored_exactly("pause", {"pause-1", "pause-2"});
}

TEST_F(engine_integration, fails_back_to_ipc_when_it_returns) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  ASSERT_TRUE(login("alice", "alice-pw"));
  ASSERT_TRUE(fault({{"ipc", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ws), 10s))
    << log_->history();
  auto mark = log_->state_count();
  ASSERT_TRUE(fault({{"ipc", "up"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 15s, mark))
    << log_->history();
  auto r = send_message("back", "back-1");
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->via, transport_mode::ipc);
}

TEST_F(engine_integration, fails_back_from_http_to_ipc) {
  start_gateway();
  start_engine();
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 10s));
  ASSERT_TRUE(login("alice", "alice-pw"));
  ASSERT_TRUE(fault({{"ipc", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ws), 10s))
    << log_->history();
  ASSERT_TRUE(fault({{"ws", "down"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::http), 10s))
    << log_->history();
  auto mark = log_->state_count();
  ASSERT_TRUE(fault({{"ipc", "up"}, {"ws", "up"}}));
  ASSERT_TRUE(log_->wait_state(is_connected(transport_mode::ipc), 15s, mark))
    << log_->history();
}
