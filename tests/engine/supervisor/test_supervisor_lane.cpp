// The supervisor with a real transport actor hosting a fake driver, on
// CAF's test coordinator: on the one-hop path a call goes from the
// supervisor straight into the driver through the transport's call lane
// (actors/transport_actor.hpp), and so does the health check; the
// transport actor runs for neither. Without lanes (supervisor_config::
// call_lane off) the call goes through the transport actor's mailbox.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "caf/all.hpp"

#include "actors/transport_actor.hpp"
#include "messages/errors.hpp"
#include "messages/supervisor.hpp"
#include "support/caf_fixture.hpp"
#include "support/fake_driver.hpp"
#include "support/recorder.hpp"

using namespace aico;
using namespace std::chrono_literals;
namespace tp = aico::transport;
using aico::test::driver_log;
using aico::test::fake_driver;

namespace {

using reply_box = std::shared_ptr<aico::test::call_box<api_reply>>;

constexpr const char* ok_body = R"({"success":true,"data":{"status":"ok"}})";

struct supervisor_lane_test : aico::test::caf_fixture {
  std::shared_ptr<driver_log> drv = std::make_shared<driver_log>();
  std::shared_ptr<transport_actor> transport
    = std::make_shared<transport_actor>();
  supervisor_actor sup;

  ~supervisor_lane_test() override {
    if (sup)
      caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    run();
  }

  void start(bool lanes) {
    drv->caps.concurrent_send = true;
    supervisor_config sc;
    sc.order = {transport_mode::ws};
    sc.health_interval = 30s;
    sc.health_timeout = 2s;
    sc.call_lane = lanes;
    sc.backoff = {100ms, 2.0, 0.0, 1000ms};
    auto d = drv;
    auto slot = transport;
    sc.factory = [d, slot](caf::actor_system& s, transport_mode m,
                           transport_listener_actor l) {
      transport_host_config hc;
      hc.mode = m;
      hc.timer_slack = false;
      *slot = spawn_transport_actor(
        s, hc,
        [d](tp::driver_events ev) {
          return std::make_unique<fake_driver>(d, std::move(ev));
        },
        l);
      return *slot;
    };
    sup = spawn_supervisor(sys, sc);
    run();
    caf::anon_send(sup, connect_atom_v);
    run();
    ASSERT_FALSE(drv->opened.empty());
    drv->ev.on_link_up(tp::link_up{drv->opened.back()});
    run();
  }

  uint64_t gen() const { return drv->opened.back(); }

  /// The supervisor's connection state, in words.
  std::string state() {
    auto box = aico::test::call_into<connection_state>(sys, sup, state_atom_v);
    run();
    if (!box->done || !box->res)
      return "(no state)";
    return to_string(*box->res) + " / " + describe(*box->res);
  }

  /// Runs every job but the transport actor's; true if it was left one.
  bool run_without_transport() {
    auto me = caf::actor_cast<caf::abstract_actor*>(*transport);
    sched.run_jobs_filtered([me](caf::resumable* job) {
      return dynamic_cast<caf::abstract_actor*>(job) != me;
    });
    for (auto* job : sched.jobs)
      if (dynamic_cast<caf::abstract_actor*>(job) == me)
        return true;
    return false;
  }

  /// Moves time in 100 ms steps (at most 5 s) until the driver sent `n`
  /// calls, running everything but the transport actor; true if the
  /// transport actor was needed meanwhile.
  bool until_sent(std::size_t n) {
    bool needed = false;
    for (int i = 0; i < 50 && drv->count("send") < n; ++i) {
      sched.advance_time(100ms);
      needed = run_without_transport() || needed;
    }
    EXPECT_EQ(drv->count("send"), n);
    return needed;
  }

  reply_box call(const std::string& id, bool& needed_transport) {
    api_call c;
    c.id = id;
    c.method = "GET";
    c.path = "/health";
    auto box = aico::test::call_into<api_reply>(sys, sup, request_atom_v,
                                                std::move(c),
                                                caf::timespan{5s}, false);
    needed_transport = run_without_transport();
    run();
    return box;
  }

  void io_reply(const std::string& wire_id, int32_t status = 200) {
    tp::reply r;
    r.gen = gen();
    r.wire_id = wire_id;
    r.status = status;
    r.body = ok_body;
    drv->ev.on_reply(std::move(r));
  }
};

} // namespace

TEST_F(supervisor_lane_test, a_call_goes_from_the_supervisor_into_the_driver) {
  start(true);
  bool needed = true;
  auto box = call("c1", needed);
  EXPECT_FALSE(needed);
  ASSERT_EQ(drv->count("send"), 1u);
  EXPECT_EQ(drv->calls.back(), "send " + std::to_string(gen()) + " k1 id c1");
  io_reply("c1");
  EXPECT_FALSE(run_without_transport());
  ASSERT_TRUE(box->done);
  ASSERT_TRUE(box->res) << to_string(box->res.error());
  EXPECT_EQ(box->res->status, 200);
  EXPECT_EQ(box->res->via, transport_mode::ws);
}

TEST_F(supervisor_lane_test, without_lanes_the_call_goes_through_the_actor) {
  start(false);
  bool needed = false;
  auto box = call("c1", needed);
  EXPECT_TRUE(needed);
  ASSERT_EQ(drv->count("send"), 1u);
  io_reply("c1");
  run();
  ASSERT_TRUE(box->done);
  ASSERT_TRUE(box->res) << to_string(box->res.error());
}

TEST_F(supervisor_lane_test, a_dropped_link_sends_the_call_again_by_its_id) {
  start(true);
  bool needed = true;
  auto box = call("c1", needed);
  ASSERT_EQ(drv->count("send"), 1u);
  // the link goes down under the call: the lane hands it back, the
  // supervisor waits for a link and sends it again with the same id
  drv->ev.on_link_lost(tp::link_lost{gen(), "closed by peer"});
  run();
  EXPECT_FALSE(box->done);
  advance(150ms); // the reconnect backoff (100 ms by default)
  drv->ev.on_link_up(tp::link_up{gen()});
  run();
  ASSERT_EQ(drv->count("send"), 2u);
  EXPECT_EQ(drv->calls.back(), "send " + std::to_string(gen()) + " k2 id c1");
  io_reply("c1");
  run();
  ASSERT_TRUE(box->done);
  ASSERT_TRUE(box->res) << to_string(box->res.error());
}

TEST_F(supervisor_lane_test, the_health_check_goes_through_the_lane_too) {
  start(true);
  // the health check's timer (30 s, on the timer grid: up to 1.024 s late)
  advance(29s); // (the transport's own timers: the connect deadline)
  EXPECT_FALSE(until_sent(1));
  auto& sent = drv->calls.back();
  auto at = sent.find(" id health-");
  ASSERT_NE(at, std::string::npos) << sent;
  io_reply(sent.substr(at + 4));
  run();
  advance(3s); // its deadline passes: the sweep finds it answered
  // answered: still up, nothing closed; the next check, again through the
  // lane, gets no answer and fails the link over at its timeout
  EXPECT_EQ(drv->count("close"), 0u);
  sched.advance_time(25s);
  EXPECT_FALSE(run_without_transport());
  EXPECT_FALSE(until_sent(2));
  EXPECT_EQ(drv->count("close"), 0u);
  auto before = state();
  advance(2s); // the health timeout: the lane's sweep answers it
  auto after = state();
  EXPECT_EQ(before.find("health check failed"), std::string::npos) << before;
  EXPECT_NE(after.find("health check failed"), std::string::npos) << after;
}
