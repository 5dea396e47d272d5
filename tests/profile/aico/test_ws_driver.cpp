// Integration tests of the aico profile's WebSocket driver
// (src/transport/lws/aico_ws_driver) against aico-backend-peer's WebSocket
// adapter, started by each test on 127.0.0.1 (temp data dir, kernel-picked
// ports): welcome = link up, auth after welcome, heartbeat, a bad token
// refused, a reconnect needing a fresh token (the backend revokes the
// session on disconnect), a peer restart, the backend's heartbeat timeout,
// and the API calls going to the call driver it owns.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "aico_peer/peer_fixture.hpp"
#include "src/transport/lws/aico_ws_driver.hpp"

namespace aico::test {
namespace {

namespace tp = aico::transport;

/// Every event a driver reported, as a line ("up 1", "sub 1 7 ok", ...).
class recorder {
public:
  tp::driver_events events() {
    tp::driver_events ev;
    ev.on_link_up = [this](tp::link_up&& x) {
      add("up " + std::to_string(x.gen));
    };
    ev.on_link_lost = [this](tp::link_lost&& x) {
      add("lost " + std::to_string(x.gen) + " " + x.reason);
    };
    ev.on_peer_lost = [this](tp::peer_lost&&) { add("peer_lost"); };
    ev.on_peer_back = [this](tp::peer_back&&) { add("peer_back"); };
    ev.on_reply = [this](tp::reply&& x) {
      add("reply " + std::to_string(x.gen) + " " + std::to_string(x.key) + " "
          + std::to_string(x.status) + " " + x.body);
    };
    ev.on_send_failed = [this](tp::send_failed&& x) {
      add("failed " + std::to_string(x.key) + " " + x.reason);
    };
    ev.on_event = [this](tp::event_frame&& x) {
      add("event " + x.topic + " " + x.data);
    };
    ev.on_subscribed = [this](tp::subscribed&& x) {
      add("sub " + std::to_string(x.gen) + " " + std::to_string(x.sub) + " "
          + (x.ok ? "ok" : "refused"));
    };
    ev.on_subscription_lost = [this](tp::subscription_lost&&) {
      add("sub_lost");
    };
    ev.on_pong = [this](tp::pong&& x) {
      std::lock_guard<std::mutex> g(m_);
      ++pongs_[x.gen];
      cv_.notify_all();
    };
    ev.on_security_failure = [this](tp::security_failure&& x) {
      add("security " + x.reason);
    };
    return ev;
  }

  /// Waits for a line starting with `prefix`; the line ("" if none came).
  std::string wait(const std::string& prefix, ms timeout = 5000ms) {
    std::unique_lock<std::mutex> g(m_);
    std::string found;
    cv_.wait_for(g, timeout, [&] {
      for (auto& l : lines_)
        if (l.rfind(prefix, 0) == 0) {
          found = l;
          return true;
        }
      return false;
    });
    return found;
  }

  int pongs(uint64_t gen) {
    std::lock_guard<std::mutex> g(m_);
    return pongs_[gen];
  }

  bool wait_pongs(uint64_t gen, int n, ms timeout = 5000ms) {
    std::unique_lock<std::mutex> g(m_);
    return cv_.wait_for(g, timeout, [&] { return pongs_[gen] >= n; });
  }

  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> g(m_);
    return lines_;
  }

private:
  void add(std::string l) {
    std::lock_guard<std::mutex> g(m_);
    lines_.push_back(std::move(l));
    cv_.notify_all();
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::map<uint64_t, int> pongs_;
};

/// A call driver that records what it is asked and answers through the
/// events it was given (the profile's HTTP path in the engine).
struct fake_calls final : tp::driver {
  explicit fake_calls(tp::driver_events e) : ev(std::move(e)) {}
  const char* name() const override { return "http"; }
  tp::driver_caps capabilities() const override {
    tp::driver_caps c;
    c.uses_wire_ids = false;
    c.own_timeout_grace = std::chrono::seconds(1);
    return c;
  }
  std::string unusable() const override { return {}; }
  void open(uint64_t gen, const std::string&) override {
    opened.push_back(gen);
  }
  void close() override { ++closes; }
  tp::send_result send(uint64_t gen, tp::outgoing_call c) override {
    sent.push_back(c.path);
    if (hold)
      return tp::send_result::queued(100 + c.key);
    tp::reply r;
    r.gen = gen;
    r.key = c.key;
    r.status = 200;
    r.body = R"({"success":true,"data":{}})";
    ev.on_reply(std::move(r));
    return tp::send_result::queued(c.key);
  }
  void subscribe(uint64_t, uint64_t, const std::string&, uint64_t) override {
    ++subscribes;
  }
  void unsubscribe(uint64_t) override {}
  std::string describe(tp::timing_cause, tp::duration,
                       tp::duration) const override {
    return "fake";
  }
  void stop() override {}

  tp::driver_events ev;
  std::vector<uint64_t> opened;
  std::vector<std::string> sent;
  int closes = 0;
  int subscribes = 0;
  bool hold = false; ///< answer nothing (the test answers through ev)
};

class AicoWsDriver : public PeerTest {
protected:
  std::unique_ptr<tp::driver> make(const std::string& url = "") {
    ws_transport_config cfg;
    cfg.url = url.empty() ? peer->ws_url() : url;
    return ws_link::make_aico_ws_driver(
      cfg, rec.events(), [this](tp::driver_events ev) {
        auto f = std::make_unique<fake_calls>(std::move(ev));
        calls = f.get();
        return f;
      });
  }

  /// A fresh access token of alice (a new login; tokens issued in the same
  /// second are byte-identical, so wait for the next second first).
  std::string fresh_token() {
    auto c = connected();
    return login(c).first;
  }

  recorder rec;
  fake_calls* calls = nullptr;
};

TEST_F(AicoWsDriver, CapabilitiesFollowTheBackend) {
  auto d = make();
  ASSERT_EQ(d->unusable(), "");
  auto c = d->capabilities();
  EXPECT_TRUE(c.heartbeat);
  EXPECT_TRUE(c.token_per_connection);
  EXPECT_FALSE(c.subscribes_on_open);
  EXPECT_EQ(c.max_ping_interval, std::chrono::seconds(30));
  // how calls are matched and timed comes from the call driver
  EXPECT_FALSE(c.uses_wire_ids);
  EXPECT_EQ(c.own_timeout_grace, std::chrono::seconds(1));
  EXPECT_STREQ(d->name(), "ws");
}

TEST_F(AicoWsDriver, BadUrlIsUnusableWithASentence) {
  auto d = make("http://127.0.0.1:1");
  EXPECT_NE(d->unusable(), "");
}

TEST_F(AicoWsDriver, WelcomeIsLinkUpAndHeartbeatsAreAnswered) {
  auto d = make();
  d->open(1, "");
  ASSERT_EQ(rec.wait("up "), "up 1");
  ASSERT_NE(calls, nullptr);
  EXPECT_EQ(calls->opened, std::vector<uint64_t>{1});
  auto before = rec.pongs(1);
  d->ping(1);
  d->ping(1);
  EXPECT_TRUE(rec.wait_pongs(1, before + 2));
  EXPECT_EQ(stat("ws_connections"), 1);
  EXPECT_EQ(stat("ws_auth_ok"), 0); // liveness needs no auth
}

TEST_F(AicoWsDriver, AuthAfterWelcome) {
  auto token = fresh_token();
  auto d = make();
  d->open(1, token);
  ASSERT_EQ(rec.wait("up "), "up 1");
  d->subscribe(1, 7, token, 42);
  // live at once (the events are the call path's), the auth follows
  EXPECT_EQ(rec.wait("sub "), "sub 1 7 ok");
  EXPECT_TRUE(eventually([&] { return stat("ws_auth_ok") == 1; }));
  EXPECT_EQ(rec.wait("sub 1 7 refused", 200ms), "");
}

TEST_F(AicoWsDriver, BadTokenIsRefusedAndTheLinkStaysUp) {
  auto d = make();
  d->open(1, "");
  ASSERT_EQ(rec.wait("up "), "up 1");
  d->subscribe(1, 3, "not-a-token", 0);
  EXPECT_EQ(rec.wait("sub 1 3 refused"), "sub 1 3 refused");
  EXPECT_EQ(stat("ws_auth_failed"), 1);
  auto before = rec.pongs(1);
  d->ping(1);
  EXPECT_TRUE(rec.wait_pongs(1, before + 1));
  EXPECT_EQ(rec.wait("lost ", 200ms), "");
}

TEST_F(AicoWsDriver, AuthAnswersMatchTheirFramesInOrder) {
  auto token = fresh_token();
  auto d = make();
  d->open(1, "");
  ASSERT_EQ(rec.wait("up "), "up 1");
  d->subscribe(1, 1, "bad", 0);
  d->subscribe(1, 2, token, 0);
  d->subscribe(1, 3, "worse", 0);
  EXPECT_EQ(rec.wait("sub 1 1 refused"), "sub 1 1 refused");
  EXPECT_EQ(rec.wait("sub 1 3 refused"), "sub 1 3 refused");
  EXPECT_EQ(rec.wait("sub 1 2 refused", 200ms), "");
  EXPECT_EQ(stat("ws_auth_ok"), 1);
}

TEST_F(AicoWsDriver, AReconnectNeedsAFreshToken) {
  auto token = fresh_token();
  auto d = make();
  d->open(1, token);
  ASSERT_EQ(rec.wait("up "), "up 1");
  d->subscribe(1, 1, token, 0);
  ASSERT_TRUE(eventually([&] { return stat("ws_auth_ok") == 1; }));
  // the connection ends: the backend revokes the token's session
  debug("POST", "/_peer/ws/drop");
  EXPECT_NE(rec.wait("lost 1"), "");
  d->open(2, token);
  ASSERT_EQ(rec.wait("up 2"), "up 2");
  d->subscribe(2, 2, token, 0);
  EXPECT_EQ(rec.wait("sub 2 2 refused"), "sub 2 2 refused");
  // a fresh token (the engine refreshes: /users/refresh gives a new access
  // token with its own session row) authenticates the same connection
  std::this_thread::sleep_for(1100ms);
  auto c = connected();
  auto [access, refresh] = login(c);
  std::this_thread::sleep_for(1100ms);
  auto r = c.call("POST", "/api/v1/users/refresh",
                  json::object{{"refresh_token", refresh}});
  ASSERT_TRUE(r.success()) << r.plain;
  auto renewed = r.str("/jwt_token");
  ASSERT_NE(renewed, token);
  d->subscribe(2, 3, renewed, 0);
  EXPECT_TRUE(eventually([&] { return stat("ws_auth_ok") == 2; }));
  EXPECT_EQ(rec.wait("sub 2 3 refused", 200ms), "");
}

TEST_F(AicoWsDriver, APeerRestartIsLinkLostThenAReopenWorks) {
  auto d = make();
  d->open(1, "");
  ASSERT_EQ(rec.wait("up "), "up 1");
  peer->stop();
  EXPECT_NE(rec.wait("lost 1"), "");
  ASSERT_TRUE(peer->start()) << peer->last_error();
  d->open(2, "");
  EXPECT_EQ(rec.wait("up 2", 10000ms), "up 2");
}

TEST_F(AicoWsDriver, WsDownIsARefusedConnect) {
  debug("POST", "/_peer/ws/down");
  auto d = make();
  d->open(1, "");
  auto l = rec.wait("lost 1");
  EXPECT_NE(l, "");
  EXPECT_EQ(rec.wait("up ", 100ms), "");
}

TEST_F(AicoWsDriver, CallsGoToTheCallDriverAndComeBackFromIt) {
  auto d = make();
  d->open(5, "");
  ASSERT_EQ(rec.wait("up "), "up 5");
  tp::outgoing_call c;
  c.key = 9;
  c.method = "GET";
  c.path = "/health";
  c.time_left = std::chrono::seconds(1);
  auto r = d->send(5, c);
  EXPECT_EQ(r.what, tp::send_result::kind::queued);
  EXPECT_EQ(rec.wait("reply "), R"(reply 5 9 200 {"success":true,"data":{}})");
  ASSERT_NE(calls, nullptr);
  EXPECT_EQ(calls->sent, std::vector<std::string>{"/health"});
  // the call driver's link is part of this link
  calls->ev.on_link_lost(tp::link_lost{5, "connection refused"});
  EXPECT_EQ(rec.wait("lost "), "lost 5 REST: connection refused");
  // its subscription is never used: auth is the WebSocket's
  EXPECT_EQ(calls->subscribes, 0);
}

TEST_F(AicoWsDriver, ASocketLossWaitsForTheCallsInFlight) {
  auto d = make();
  d->open(3, "");
  ASSERT_EQ(rec.wait("up "), "up 3");
  ASSERT_NE(calls, nullptr);
  calls->hold = true;
  tp::outgoing_call c;
  c.key = 7;
  c.method = "POST";
  c.path = "/conversations/messages";
  c.time_left = std::chrono::seconds(5);
  EXPECT_FALSE(d->resend_safe(c)); // the backend has no idempotency keys
  ASSERT_EQ(d->send(3, c).what, tp::send_result::kind::queued);
  debug("POST", "/_peer/ws/drop");
  // the send travels over REST: it is answered before the link is lost
  EXPECT_EQ(rec.wait("lost ", 300ms), "");
  tp::outgoing_call h;
  h.key = 8;
  h.path = "/health";
  h.time_left = std::chrono::seconds(5);
  EXPECT_TRUE(d->resend_safe(h));
  auto r = d->send(3, h); // a new call is refused: it never left
  EXPECT_EQ(r.what, tp::send_result::kind::failed);
  EXPECT_EQ(r.failure, tp::call_failure::network);
  tp::reply rep;
  rep.gen = 3;
  rep.key = 7;
  rep.status = 201;
  rep.body = "{}";
  calls->ev.on_reply(std::move(rep));
  EXPECT_EQ(rec.wait("reply "), "reply 3 7 201 {}");
  EXPECT_NE(rec.wait("lost 3"), "");
  auto lines = rec.lines();
  auto reply_at = std::find_if(lines.begin(), lines.end(), [](auto& l) {
    return l.rfind("reply ", 0) == 0;
  });
  auto lost_at = std::find_if(lines.begin(), lines.end(), [](auto& l) {
    return l.rfind("lost ", 0) == 0;
  });
  EXPECT_LT(reply_at - lines.begin(), lost_at - lines.begin());
}

TEST_F(AicoWsDriver, ACancelledCallReleasesTheSocketLoss) {
  auto d = make();
  d->open(4, "");
  ASSERT_EQ(rec.wait("up "), "up 4");
  calls->hold = true;
  tp::outgoing_call c;
  c.key = 1;
  c.path = "/health";
  c.time_left = std::chrono::seconds(5);
  auto r = d->send(4, c);
  ASSERT_EQ(r.what, tp::send_result::kind::queued);
  debug("POST", "/_peer/ws/drop");
  EXPECT_EQ(rec.wait("lost ", 300ms), "");
  d->cancel(r.handle); // its deadline passed
  EXPECT_NE(rec.wait("lost 4"), "");
}

class AicoWsHeartbeat : public AicoWsDriver {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--ws-heartbeat-interval", "0.2"};
    return o;
  }
};

TEST_F(AicoWsHeartbeat, WithoutHeartbeatsTheBackendCloses) {
  auto d = make();
  d->open(1, "");
  ASSERT_EQ(rec.wait("up "), "up 1");
  auto l = rec.wait("lost 1", 5000ms);
  EXPECT_NE(l.find("Heartbeat timeout"), std::string::npos) << l;
}

TEST_F(AicoWsHeartbeat, HeartbeatsKeepTheSocketOpen) {
  auto d = make();
  d->open(1, "");
  ASSERT_EQ(rec.wait("up "), "up 1");
  for (int i = 0; i < 15; ++i) { // 1.5 s: more than the 0.6-0.8 s limit
    d->ping(1);
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(rec.wait("lost ", 10ms), "");
  EXPECT_GE(rec.pongs(1), 15);
}

} // namespace
} // namespace aico::test
