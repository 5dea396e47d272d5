// The call lane (actors/transport_actor.hpp) with real threads: several
// actors submit routed calls through one transport's lane while a fake
// driver answers them from its own I/O thread, loses some (their deadline
// answers them) and drops the link now and then (the actor fails what is
// in flight and a listener reconnects). Every request gets its answer
// within a bounded time: the reply, the deadline's timeout or the hand-back
// of a dropped link, never a hang. (That no call is answered twice is the
// claim flag's job, checked step by step in test_transport_actor; a second
// response would not reach a CAF requester anyway.) The sanitizer run
// (TSan) checks the lane's locking. Bounded waits only, no sleeps.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "caf/all.hpp"

#include "actors/transport_actor.hpp"
#include "messages/errors.hpp"

using namespace std::chrono_literals;
using namespace aico;
namespace tp = aico::transport;

namespace {

/// What the fake I/O thread works on.
struct io_state {
  std::mutex mx;
  std::condition_variable cv;
  struct item {
    uint64_t gen = 0;
    std::string wire_id; ///< empty: open connection `gen`
  };
  std::deque<item> q;
  bool stopping = false;
  tp::driver_events ev;
  uint64_t handled = 0;
  std::atomic<uint64_t> sends{0};
  std::thread th;

  void post(item it) {
    {
      std::lock_guard<std::mutex> g{mx};
      q.push_back(std::move(it));
    }
    cv.notify_one();
  }

  void run() {
    uint64_t n = 0;
    for (;;) {
      item it;
      {
        std::unique_lock<std::mutex> lk{mx};
        cv.wait(lk, [&] { return stopping || !q.empty(); });
        if (stopping)
          return;
        it = std::move(q.front());
        q.pop_front();
      }
      if (it.wire_id.empty()) {
        ev.on_link_up(tp::link_up{it.gen});
        continue;
      }
      ++n;
      if (n % 97 == 0 && n < 1500) {
        // the link drops under the calls in flight (the later lost replies
        // are left to the deadline sweep)
        ev.on_link_lost(tp::link_lost{it.gen, "dropped by the test"});
        continue;
      }
      if (n % 13 == 0)
        continue; // lost: its deadline answers it
      tp::reply r;
      r.gen = it.gen;
      r.wire_id = std::move(it.wire_id);
      r.status = 200;
      r.body = R"({"success":true,"data":{}})";
      ev.on_reply(std::move(r));
    }
  }
};

class threaded_driver : public tp::driver {
public:
  threaded_driver(std::shared_ptr<io_state> io, tp::driver_events ev)
    : io_(std::move(io)) {
    io_->ev = std::move(ev);
    io_->th = std::thread([io = io_] { io->run(); });
  }
  ~threaded_driver() override { stop(); }
  const char* name() const override { return "threaded"; }
  tp::driver_caps capabilities() const override {
    tp::driver_caps c;
    c.uses_wire_ids = true;
    c.concurrent_send = true;
    return c;
  }
  std::string unusable() const override { return {}; }
  void open(uint64_t gen, const std::string&) override {
    io_->post({gen, {}});
  }
  void close() override {}
  tp::send_result send(uint64_t gen, tp::outgoing_call c) override {
    io_->sends.fetch_add(1, std::memory_order_relaxed);
    io_->post({gen, std::move(c.wire_id)});
    return tp::send_result::queued(c.key);
  }
  void subscribe(uint64_t, uint64_t, const std::string&, uint64_t) override {}
  void unsubscribe(uint64_t) override {}
  std::string describe(tp::timing_cause, tp::duration,
                       tp::duration) const override {
    return "threaded link timed out";
  }
  void stop() override {
    {
      std::lock_guard<std::mutex> g{io_->mx};
      io_->stopping = true;
    }
    io_->cv.notify_one();
    if (io_->th.joinable())
      io_->th.join();
  }

private:
  std::shared_ptr<io_state> io_;
};

/// Reconnects the transport whenever it reports down or idle.
caf::behavior reconnector(caf::event_based_actor* self,
                          std::shared_ptr<caf::actor> transport) {
  return {
    [self, transport](tstate_atom, transport_mode, transport_status s,
                      const std::string&) {
      if ((s == transport_status::down || s == transport_status::idle)
          && *transport)
        self->send(*transport, connect_atom_v);
    },
    [](event_atom, const server_event&) {},
  };
}

/// The return address: a hand-back is answered with status 299.
caf::behavior back_fun(caf::event_based_actor*) {
  return {
    [](request_atom, api_call& c, uint64_t, bool, caf::error&) {
      api_reply r;
      r.id = c.id;
      r.status = 299;
      return r;
    },
    [](request_atom, api_call& c, uint64_t, bool, api_reply&) {
      api_reply r;
      r.id = c.id;
      r.status = 298;
      return r;
    },
  };
}

/// Like the supervisor's one-hop path: the lane if it takes the call, else
/// the transport actor.
caf::behavior submitter(caf::event_based_actor* self,
                        std::shared_ptr<call_lane> lane, caf::actor transport,
                        caf::actor back,
                        std::shared_ptr<std::atomic<int>> taken) {
  return {
    [=](request_atom, api_call& c) -> caf::result<api_reply> {
      c.deadline = self->clock().now() + 150ms;
      auto rp = self->make_response_promise();
      if (lane->submit(c, rp, back, uint64_t{0}, false)) {
        taken->fetch_add(1, std::memory_order_relaxed);
        return rp;
      }
      return rp.delegate(caf::actor_cast<transport_actor>(transport),
                         request_atom_v, std::move(c), back, uint64_t{0},
                         false);
    },
  };
}

struct tally {
  std::mutex mx;
  std::condition_variable cv;
  std::map<std::string, int> answers; ///< call id -> answers
  int ok = 0, timeout = 0, handed_back = 0, other = 0;

  void add(const std::string& id, int kind) {
    {
      std::lock_guard<std::mutex> g{mx};
      ++answers[id];
      (kind == 0 ? ok : kind == 1 ? timeout : kind == 2 ? handed_back : other)
        += 1;
    }
    cv.notify_all();
  }
};

/// Sends `n` calls to `dst`, `window` at a time, and tallies the answers.
void client(caf::event_based_actor* self, caf::actor dst, std::string name,
            int n, int window, std::shared_ptr<tally> t) {
  auto next = std::make_shared<int>(0);
  auto send_one = std::make_shared<std::function<void()>>();
  *send_one = [=] {
    if (*next >= n)
      return;
    api_call c;
    c.id = name + "-" + std::to_string((*next)++);
    c.method = "GET";
    c.path = "/health";
    auto id = c.id;
    self->request(dst, caf::infinite, request_atom_v, std::move(c))
      .then(
        [=](api_reply& r) {
          t->add(id, r.status == 200 ? 0 : r.status == 299 ? 2 : 3);
          (*send_one)();
        },
        [=](caf::error& e) {
          t->add(id, classify(e).cls == error_class::timeout ? 1 : 3);
          (*send_one)();
        });
  };
  // send_one's handlers hold send_one: break the cycle when the client ends
  self->attach_functor([send_one] { *send_one = nullptr; });
  for (int i = 0; i < window; ++i)
    (*send_one)();
}

TEST(call_lane_threads, every_call_is_answered_under_drops_and_losses) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  auto io = std::make_shared<io_state>();
  auto holder = std::make_shared<caf::actor>();
  auto listener = caf::actor_cast<transport_listener_actor>(
    sys.spawn(reconnector, holder));
  transport_host_config hc;
  hc.mode = transport_mode::ws;
  hc.timing.connect_timeout = 1s;
  auto t = spawn_transport_actor(
    sys, hc,
    [io](tp::driver_events ev) {
      return std::make_unique<threaded_driver>(io, std::move(ev));
    },
    listener);
  *holder = caf::actor_cast<caf::actor>(t);
  auto lane = call_lane_of(t.address());
  ASSERT_TRUE(lane);
  auto back = sys.spawn(back_fun);
  caf::anon_send(t, connect_atom_v);
  constexpr int clients = 4;
  constexpr int per_client = 1500;
  // shared with the actors, which may still run while this test ends
  auto tp_ = std::make_shared<tally>();
  auto& tl = *tp_;
  auto taken_ = std::make_shared<std::atomic<int>>(0);
  auto& taken = *taken_;
  std::vector<caf::actor> subs;
  for (int i = 0; i < clients; ++i) {
    auto s = sys.spawn(submitter, lane, caf::actor_cast<caf::actor>(t), back,
                       taken_);
    subs.push_back(s);
    sys.spawn(client, s, "c" + std::to_string(i), per_client, 16, tp_);
  }
  {
    std::unique_lock<std::mutex> lk{tl.mx};
    ASSERT_TRUE(tl.cv.wait_for(lk, 60s, [&] {
      return tl.answers.size() == std::size_t{clients * per_client};
    })) << tl.answers.size() << " calls answered";
  }
  {
    std::lock_guard<std::mutex> g{tl.mx};
    std::printf("%d ok, %d timed out, %d handed back; %llu sends, %d of "
                "them through the lane\n",
                tl.ok, tl.timeout, tl.handed_back,
                static_cast<unsigned long long>(io->sends.load()),
                taken.load());
    EXPECT_GT(tl.ok, 0);
    EXPECT_GT(tl.timeout, 0);     // the lost replies
    EXPECT_GT(tl.handed_back, 0); // the link drops
    EXPECT_EQ(tl.other, 0);
  }
  // the lane took calls (the others found it closed: link down)
  EXPECT_GT(taken.load(), 0);
  *holder = nullptr;
  for (auto& s : subs)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(back, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
}

} // namespace
