// The offline queue actor with a fake downstream under CAF's deterministic
// test coordinator (virtual time, manual wall clock, temporary state dir).
#include <gtest/gtest.h>

#include <fstream>

#include "fixture.hpp"
#include "messages/offline_queue.hpp"
#include "messages/repositories.hpp"

using namespace aico;
using namespace aico::test;
using namespace std::chrono_literals;

namespace {

/// The gateway's answer to a send: the stored message with the same id.
std::string ok(const std::string& id) {
  return R"({"success":true,"data":{"id":")" + id
         + R"(","conversation_id":"c","content":"hi","type":"text",)"
           R"("sender_id":"u1","sender":"alice",)"
           R"("timestamp":"2023-11-14T22:13:20.000Z",)"
           R"("timestamp_ms":1700000000000,"seq":7,"status":"sent",)"
           R"("read_at":null,"metadata":{},"reply_to":null}})";
}
const std::string bad_body
  = R"({"success":false,"message":"content must not be empty","code":"validation_error"})";
const std::string busy_body
  = R"({"success":false,"message":"try later","code":"unavailable"})";

struct queue_test : actor_fixture {
  offline_queue_actor q;
  std::vector<queue_update> updates;

  offline_queue_config make_config() {
    offline_queue_config qc;
    qc.state_dir = dir;
    qc.limit = 100;
    qc.backoff = {1000ms, 2.0, 0.0, 60000ms}; // no jitter: exact delays
    qc.request_timeout = 1h; // no CAF timeouts while calls are held
    qc.max_in_flight = 8;
    qc.clock = clock();
    return qc;
  }

  void start(offline_queue_config qc) {
    q = spawn_offline_queue(sys, std::move(qc), downstream());
    self->send(q, watch_atom::value,
               caf::actor_cast<queue_listener_actor>(self));
    sched.run();
  }

  void start() { start(make_config()); }

  void stop() {
    if (q)
      self->send_exit(q, caf::exit_reason::user_shutdown);
    sched.run();
    q = nullptr;
  }

  ~queue_test() override { stop(); }

  void set_state(link_state s) {
    connection_state cs;
    cs.state = s;
    self->send(q, state_atom::value, cs);
    sched.run();
  }

  static queued_command msg(const std::string& conv, const std::string& id) {
    return queued_command{id,
                          command_kind::send_message,
                          conv,
                          "POST",
                          "/conversations/messages",
                          R"({"id":")" + id + R"(","conversation_id":")"
                            + conv + R"(","content":"hi"})"};
  }

  caf::expected<queue_entry> enqueue(queued_command cmd) {
    return ask<queue_entry>(q, enqueue_atom::value, std::move(cmd));
  }

  caf::expected<queue_entry> enqueue(const std::string& conv,
                                     const std::string& id) {
    return enqueue(msg(conv, id));
  }

  std::vector<queue_entry> list() {
    auto xs = ask<std::vector<queue_entry>>(q, list_atom::value);
    EXPECT_TRUE(xs) << describe(xs.error());
    return xs ? *xs : std::vector<queue_entry>{};
  }

  /// Collects the updates published so far.
  std::vector<queue_update>& collect() {
    bool more = true;
    while (more)
      self->receive(
        [&](queue_atom, const queue_update& up) { updates.push_back(up); },
        caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    return updates;
  }

  /// The statuses published for one key, in order.
  std::vector<queue_status> statuses(const std::string& key) {
    collect();
    std::vector<queue_status> res;
    for (auto& up : updates)
      if (up.entry.idempotency_key == key)
        res.push_back(up.status);
    return res;
  }

  const queue_update* last_update(const std::string& key) {
    collect();
    for (auto i = updates.rbegin(); i != updates.rend(); ++i)
      if (i->entry.idempotency_key == key)
        return &*i;
    return nullptr;
  }
};

} // namespace

TEST_F(queue_test, sends_with_the_idempotency_key_and_completes) {
  start();
  auto e = enqueue("c1", "m-1");
  ASSERT_TRUE(e) << describe(e.error());
  EXPECT_EQ(e->idempotency_key, "m-1");
  EXPECT_EQ(e->lane, "c1");
  EXPECT_GT(e->seq, 0);
  ASSERT_EQ(net->calls.size(), 1u);
  EXPECT_EQ(net->calls[0].id, "m-1");
  EXPECT_EQ(net->calls[0].method, "POST");
  EXPECT_EQ(net->calls[0].path, "/conversations/messages");
  EXPECT_EQ(net->calls[0].body, msg("c1", "m-1").body);
  EXPECT_TRUE(net->auth[0]);
  answer("m-1", 201, ok("m-1"));
  EXPECT_EQ(statuses("m-1"),
            (std::vector<queue_status>{queue_status::queued,
                                       queue_status::sending,
                                       queue_status::sent}));
  auto up = last_update("m-1");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->reply_body, ok("m-1"));
  EXPECT_EQ(up->http_status, 201);
  EXPECT_TRUE(list().empty());
}

TEST_F(queue_test, empty_key_gets_a_generated_one_and_duplicates_are_not_requeued) {
  start();
  auto cmd = msg("c1", "");
  auto e = enqueue(cmd);
  ASSERT_TRUE(e) << describe(e.error());
  EXPECT_GE(e->idempotency_key.size(), 16u);
  ASSERT_EQ(net->calls.size(), 1u);
  EXPECT_EQ(net->calls[0].id, e->idempotency_key);
  auto again = enqueue("c1", e->idempotency_key);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->seq, e->seq);
  EXPECT_EQ(list().size(), 1u);
}

TEST_F(queue_test, per_lane_fifo_under_concurrency) {
  start();
  // interleaved enqueues over three lanes, everything held
  std::map<std::string, std::vector<std::string>> lanes;
  for (int i = 0; i < 5; ++i)
    for (std::string conv : {"a", "b", "c"}) {
      auto id = conv + "-" + std::to_string(i);
      ASSERT_TRUE(enqueue(conv, id));
      lanes[conv].push_back(id);
    }
  // only the head of each lane is in flight
  EXPECT_EQ(net->ids(), (std::vector<std::string>{"a-0", "b-0", "c-0"}));
  // answer in a scrambled order; each answer releases the next of its lane
  std::vector<std::string> order{"b", "b", "c", "a", "b", "a", "c", "c",
                                 "b", "a", "a", "c", "b", "c", "a"};
  std::map<std::string, size_t> next;
  for (auto& conv : order) {
    auto id = lanes[conv][next[conv]++];
    answer(id, 201, ok(id));
    // never two of one lane in flight
    std::map<std::string, int> open;
    for (auto& [l, ids] : lanes)
      for (size_t k = 0; k < ids.size(); ++k)
        if (net->count(ids[k]) > 0 && k >= next[l])
          ++open[l];
    for (auto& [l, n] : open)
      EXPECT_LE(n, 1) << "lane " << l;
  }
  // every item sent exactly once, lanes in order
  EXPECT_EQ(net->calls.size(), 15u);
  for (auto& [conv, ids] : lanes) {
    std::vector<std::string> seen;
    for (auto& c : net->calls)
      if (c.id.rfind(conv + "-", 0) == 0)
        seen.push_back(c.id);
    EXPECT_EQ(seen, ids) << "lane " << conv;
  }
  EXPECT_TRUE(list().empty());
}

TEST_F(queue_test, max_in_flight_bounds_concurrent_sends) {
  auto qc = make_config();
  qc.max_in_flight = 3;
  start(qc);
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(enqueue("lane" + std::to_string(i), "x" + std::to_string(i)));
  EXPECT_EQ(net->ids(), (std::vector<std::string>{"x0", "x1", "x2"}));
  answer("x1", 201, ok("x1"));
  EXPECT_EQ(net->calls.size(), 4u);
  EXPECT_EQ(net->calls.back().id, "x3");
}

TEST_F(queue_test, retryable_failure_pauses_the_lane_and_resumes_on_reconnect) {
  start();
  set_state(link_state::connected);
  ASSERT_TRUE(enqueue("a", "a1"));
  ASSERT_TRUE(enqueue("a", "a2"));
  ASSERT_TRUE(enqueue("b", "b1"));
  answer("a1", 503, busy_body);
  auto up = last_update("a1");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->status, queue_status::retrying);
  EXPECT_EQ(up->error_cls, error_class::server_error);
  EXPECT_EQ(up->http_status, 503);
  EXPECT_EQ(up->next_attempt_in_ms, 1000);
  EXPECT_EQ(up->entry.status, "retrying");
  // the other lane is not affected, a2 waits behind a1
  answer("b1", 201, ok("b1"));
  EXPECT_EQ(net->count("a2"), 0u);
  advance(500ms);
  EXPECT_EQ(net->count("a1"), 1u);
  // the connection drops and comes back: a1 goes at once, same id
  set_state(link_state::reconnecting);
  set_state(link_state::connected);
  EXPECT_EQ(net->count("a1"), 2u);
  // fails again: backoff timer (attempts were reset by the reconnect)
  fail("a1", make_engine_error(error_class::network, "connection lost"));
  EXPECT_EQ(last_update("a1")->next_attempt_in_ms, 1000);
  advance(999ms);
  EXPECT_EQ(net->count("a1"), 2u);
  advance(1ms);
  EXPECT_EQ(net->count("a1"), 3u);
  // second consecutive failure doubles the delay
  fail("a1", make_engine_error(error_class::timeout, "no answer"));
  EXPECT_EQ(last_update("a1")->next_attempt_in_ms, 2000);
  advance(2000ms);
  EXPECT_EQ(net->count("a1"), 4u);
  answer("a1", 201, ok("a1"));
  EXPECT_EQ(net->count("a2"), 1u);
  answer("a2", 201, ok("a2"));
  EXPECT_TRUE(list().empty());
  // every attempt of a1 carried the same id
  for (auto& c : net->calls)
    if (c.body.find(R"("id":"a1")") != std::string::npos) {
      EXPECT_EQ(c.id, "a1");
    }
}

TEST_F(queue_test, retry_after_is_honoured_even_after_a_reconnect) {
  start();
  set_state(link_state::connected);
  ASSERT_TRUE(enqueue("a", "a1"));
  answer("a1",
         429, R"({"success":false,"message":"slow down","code":"rate_limited"})",
         "5");
  EXPECT_EQ(last_update("a1")->next_attempt_in_ms, 5000);
  set_state(link_state::reconnecting);
  set_state(link_state::connected);
  EXPECT_EQ(net->count("a1"), 1u);
  advance(4900ms);
  EXPECT_EQ(net->count("a1"), 1u);
  advance(100ms);
  EXPECT_EQ(net->count("a1"), 2u);
}

TEST_F(queue_test, nothing_is_sent_while_disconnected) {
  start();
  set_state(link_state::reconnecting);
  ASSERT_TRUE(enqueue("a", "a1"));
  ASSERT_TRUE(enqueue("b", "b1"));
  advance(10s);
  EXPECT_TRUE(net->calls.empty());
  EXPECT_EQ(statuses("a1"), std::vector<queue_status>{queue_status::queued});
  set_state(link_state::degraded); // HTTP only is good enough
  EXPECT_EQ(net->ids(), (std::vector<std::string>{"a1", "b1"}));
}

TEST_F(queue_test, permanent_failure_parks_without_blocking_the_lane) {
  start();
  ASSERT_TRUE(enqueue("a", "a1"));
  ASSERT_TRUE(enqueue("a", "a2"));
  answer("a1", 400, bad_body);
  auto up = last_update("a1");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->status, queue_status::failed);
  EXPECT_EQ(up->error_cls, error_class::validation);
  EXPECT_EQ(up->http_status, 400);
  EXPECT_NE(up->error_message.find("content must not be empty"),
            std::string::npos)
    << up->error_message;
  EXPECT_EQ(up->entry.state, "parked");
  // the lane goes on
  ASSERT_EQ(net->count("a2"), 1u);
  answer("a2", 201, ok("a2"));
  auto xs = list();
  ASSERT_EQ(xs.size(), 1u);
  EXPECT_EQ(xs[0].idempotency_key, "a1");
  EXPECT_EQ(xs[0].status, "failed");
  EXPECT_NE(xs[0].parked_reason.find("content must not be empty"),
            std::string::npos);
  // 403 parks too
  ASSERT_TRUE(enqueue("b", "b1"));
  answer("b1", 403,
         R"({"success":false,"message":"not yours","code":"forbidden"})");
  EXPECT_EQ(last_update("b1")->status, queue_status::failed);
  EXPECT_EQ(last_update("b1")->error_cls, error_class::authorization);
}

TEST_F(queue_test, parked_items_can_be_retried_or_dropped) {
  start();
  auto a1 = enqueue("a", "a1");
  auto b1 = enqueue("b", "b1");
  ASSERT_TRUE(a1 && b1);
  answer("a1", 400, bad_body);
  answer("b1", 422, bad_body);
  // retry: back in its lane, sent again with the same key
  auto r = ask<queue_entry>(q, retry_atom::value, a1->seq);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->seq, a1->seq);
  EXPECT_EQ(net->count("a1"), 2u);
  answer("a1", 201, ok("a1"));
  EXPECT_EQ(statuses("a1").back(), queue_status::sent);
  // drop
  auto d = ask<bool>(q, drop_atom::value, b1->seq);
  ASSERT_TRUE(d) << describe(d.error());
  EXPECT_TRUE(*d);
  EXPECT_EQ(statuses("b1").back(), queue_status::dropped);
  EXPECT_TRUE(list().empty());
  // an unknown seq, retrying a non-parked item and dropping one in flight
  // are refused
  EXPECT_FALSE(ask<bool>(q, drop_atom::value, int64_t{12345}));
  auto c1 = enqueue("c", "c1");
  ASSERT_TRUE(c1);
  auto refused = ask<bool>(q, drop_atom::value, c1->seq);
  ASSERT_FALSE(refused);
  EXPECT_EQ(classify(refused.error()).cls, error_class::validation);
  EXPECT_FALSE(ask<queue_entry>(q, retry_atom::value, c1->seq));
}

TEST_F(queue_test, dropping_a_waiting_head_releases_the_lane) {
  start();
  auto a1 = enqueue("a", "a1");
  ASSERT_TRUE(a1 && enqueue("a", "a2"));
  answer("a1", 503, busy_body); // a1 pending with backoff, lane waits
  EXPECT_EQ(net->count("a2"), 0u);
  auto d = ask<bool>(q, drop_atom::value, a1->seq);
  ASSERT_TRUE(d && *d);
  EXPECT_EQ(net->count("a2"), 1u);
}

TEST_F(queue_test, conflict_and_already_stored_count_as_done) {
  start();
  ASSERT_TRUE(enqueue("a", "a1"));
  ASSERT_TRUE(enqueue("b", "b1"));
  answer("a1", 409,
         R"({"success":false,"message":"id used","code":"conflict"})");
  answer("b1", 200, ok("b1")); // "already stored"
  auto a = last_update("a1");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->status, queue_status::sent);
  EXPECT_EQ(a->http_status, 409);
  EXPECT_EQ(last_update("b1")->status, queue_status::sent);
  EXPECT_EQ(last_update("b1")->http_status, 200);
  EXPECT_TRUE(list().empty());
}

TEST_F(queue_test, a_2xx_that_is_not_the_stored_message_is_an_unknown_outcome) {
  // Issue 15, defect 1: a 2xx is "sent" only with a valid envelope whose
  // data is the stored message with the same id; anything else is resent
  // with the same id (the gateway applies it once), and after
  // max_bad_answers it is parked with a reason that says the outcome is
  // unknown.
  start();
  ASSERT_TRUE(enqueue("a", "a1"));
  ASSERT_TRUE(enqueue("a", "a2"));
  const std::vector<std::string> bad = {
    R"({"success":true,"data":malformed})",                 // not JSON
    R"({"misbehave":"not_envelope"})",                      // not an envelope
    R"({"success":false,"message":"hmm"})",                 // success false
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    ASSERT_EQ(net->count("a1"), i + 1);
    answer("a1", 200, bad[i]);
    auto up = last_update("a1");
    ASSERT_NE(up, nullptr);
    EXPECT_EQ(up->error_code, "bad_reply") << bad[i];
    if (i + 1 < bad.size()) {
      EXPECT_EQ(up->status, queue_status::retrying) << bad[i];
      EXPECT_EQ(net->count("a2"), 0u); // FIFO: a2 waits behind a1
      advance(std::chrono::milliseconds{up->next_attempt_in_ms});
    } else {
      // parked: the reason says the outcome is unknown; the lane goes on
      EXPECT_EQ(up->status, queue_status::failed);
      EXPECT_NE(up->error_message.find("outcome is unknown"),
                std::string::npos)
        << up->error_message;
    }
  }
  EXPECT_EQ(net->count("a1"), 3u);
  for (auto& c : net->calls)
    if (c.body.find(R"("id":"a1")") != std::string::npos) {
      EXPECT_EQ(c.id, "a1");
    }
  auto xs = list();
  ASSERT_EQ(xs.size(), 2u);
  EXPECT_EQ(xs[0].state, "parked");
  EXPECT_NE(xs[0].parked_reason.find("may or may not have been applied"),
            std::string::npos)
    << xs[0].parked_reason;
  // a wrong id is not "sent" either
  ASSERT_EQ(net->count("a2"), 1u);
  answer("a2", 201, ok("someone-else"));
  EXPECT_EQ(last_update("a2")->status, queue_status::retrying);
  EXPECT_EQ(last_update("a2")->error_code, "bad_reply");
  advance(std::chrono::milliseconds{last_update("a2")->next_attempt_in_ms});
  ASSERT_EQ(net->count("a2"), 2u);
  answer("a2", 200, ok("a2")); // already stored: now it is sent
  EXPECT_EQ(last_update("a2")->status, queue_status::sent);
  // a retried item starts counting again
  auto r = ask<queue_entry>(q, retry_atom::value, xs[0].seq);
  ASSERT_TRUE(r) << describe(r.error());
  ASSERT_EQ(net->count("a1"), 4u);
  answer("a1", 200, bad[1]);
  EXPECT_EQ(last_update("a1")->status, queue_status::retrying);
}

TEST_F(queue_test, authentication_error_keeps_the_item_pending) {
  start();
  self->send(q, auth_atom::value, auth_state::logged_in);
  sched.run();
  ASSERT_TRUE(enqueue("a", "a1"));
  fail("a1", make_engine_error(error_class::authentication, "not logged in"));
  auto up = last_update("a1");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->status, queue_status::retrying);
  EXPECT_EQ(up->error_cls, error_class::authentication);
  auto xs = list();
  ASSERT_EQ(xs.size(), 1u);
  EXPECT_EQ(xs[0].state, "pending");
  EXPECT_TRUE(xs[0].parked_reason.empty());
  // a login resumes at once
  self->send(q, auth_atom::value, auth_state::auth_expired);
  sched.run();
  EXPECT_EQ(net->count("a1"), 1u);
  self->send(q, auth_atom::value, auth_state::logged_in);
  sched.run();
  EXPECT_EQ(net->count("a1"), 2u);
  answer("a1", 201, ok("a1"));
  EXPECT_TRUE(list().empty());
}

TEST_F(queue_test, enqueue_is_refused_when_full_and_nothing_is_dropped) {
  auto qc = make_config();
  qc.limit = 3;
  start(qc);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(enqueue("a", "a" + std::to_string(i)));
  auto e = enqueue("a", "a3");
  ASSERT_FALSE(e);
  auto c = classify(e.error());
  EXPECT_EQ(c.cls, error_class::validation);
  EXPECT_FALSE(c.retryable);
  EXPECT_EQ(c.code, "queue_full");
  EXPECT_NE(describe(e.error()).find("full"), std::string::npos)
    << describe(e.error());
  EXPECT_EQ(list().size(), 3u);
  EXPECT_TRUE(statuses("a3").empty());
  // a known key is still answered
  auto dup = enqueue("a", "a1");
  ASSERT_TRUE(dup);
  // once one is sent there is room again
  answer("a0", 201, ok("a0"));
  EXPECT_TRUE(enqueue("a", "a3"));
}

TEST_F(queue_test, invalid_commands_are_refused) {
  start();
  auto e = enqueue(queued_command{"k", command_kind::send_message, "", "POST",
                                  "/conversations/messages", "{}"});
  ASSERT_FALSE(e);
  EXPECT_EQ(classify(e.error()).cls, error_class::validation);
  EXPECT_TRUE(net->calls.empty());
}

TEST_F(queue_test, crash_recovery_resends_in_flight_items_with_the_same_id) {
  start();
  ASSERT_TRUE(enqueue("a", "a1"));
  ASSERT_TRUE(enqueue("a", "a2"));
  ASSERT_TRUE(enqueue("b", "b1"));
  answer("b1", 201, ok("b1"));
  ASSERT_EQ(net->count("a1"), 1u);
  // the process dies with a1 in flight (its answer never arrives)
  stop();
  net->calls.clear();
  // a new engine on the same state directory
  start();
  EXPECT_EQ(net->ids(), std::vector<std::string>{"a1"});
  auto xs = list();
  ASSERT_EQ(xs.size(), 2u);
  EXPECT_EQ(xs[0].idempotency_key, "a1");
  EXPECT_EQ(xs[0].state, "in_flight");
  answer("a1", 200, ok("a1")); // the gateway had it already
  answer("a2", 201, ok("a2"));
  EXPECT_EQ(net->ids(), (std::vector<std::string>{"a1", "a2"}));
  EXPECT_TRUE(list().empty());
}

TEST_F(queue_test, unusable_storage_is_a_clear_error_not_a_crash) {
  auto file = dir + "/not-a-dir";
  std::ofstream{file} << "x";
  auto qc = make_config();
  qc.state_dir = file; // a file where the directory should be
  start(qc);
  auto e = enqueue("a", "a1");
  ASSERT_FALSE(e);
  EXPECT_EQ(classify(e.error()).cls, error_class::unknown);
  EXPECT_NE(describe(e.error()).find("not-a-dir"), std::string::npos)
    << describe(e.error());
  EXPECT_FALSE(ask<std::vector<queue_entry>>(q, list_atom::value));
  EXPECT_TRUE(net->calls.empty());
}

TEST_F(queue_test, a_second_queue_on_the_same_directory_shares_it) {
  start();
  set_state(link_state::connected);
  ASSERT_TRUE(enqueue("a", "a0")); // in flight, held
  ASSERT_EQ(net->count("a0"), 1u);
  // another engine of the same state directory: it queues at once (no
  // lock is held between calls) ...
  auto qc = make_config();
  qc.poll_interval = 50ms;
  auto other = spawn_offline_queue(sys, qc, downstream());
  connection_state cs;
  cs.state = link_state::connected;
  self->send(other, state_atom::value, cs);
  sched.run();
  auto e = ask<queue_entry>(other, enqueue_atom::value, msg("a", "a1"));
  ASSERT_TRUE(e) << describe(e.error());
  auto b = ask<queue_entry>(other, enqueue_atom::value, msg("b", "b1"));
  ASSERT_TRUE(b) << describe(b.error());
  // ... sends its own item of another lane, but never a0 (the first
  // queue's, in flight) and not a1 before a0 is done (one lane, FIFO)
  EXPECT_EQ(net->count("b1"), 1u);
  EXPECT_EQ(net->count("a1"), 0u);
  advance(200ms);
  EXPECT_EQ(net->count("a0"), 1u);
  EXPECT_EQ(net->count("a1"), 0u);
  answer("a0", 201, ok("a0"));
  // the other queue notices the change at its next poll
  advance(50ms);
  EXPECT_EQ(net->count("a1"), 1u);
  answer("a1", 201, ok("a1"));
  answer("b1", 201, ok("b1"));
  EXPECT_TRUE(list().empty());
  EXPECT_EQ(net->count("a0"), 1u);
  self->send_exit(other, caf::exit_reason::user_shutdown);
  sched.run();
}

TEST_F(queue_test, events_are_ignored_and_watchers_that_die_are_forgotten) {
  start();
  self->send(q, event_atom::value, server_event{"message", "{}", 1, {}});
  auto w = sys.spawn([]() -> queue_listener_actor::behavior_type {
    return {[](queue_atom, const queue_update&) {}};
  });
  self->send(q, watch_atom::value, w);
  sched.run();
  self->send_exit(w, caf::exit_reason::user_shutdown);
  sched.run();
  ASSERT_TRUE(enqueue("a", "a1"));
  answer("a1", 201, ok("a1"));
  EXPECT_EQ(statuses("a1").back(), queue_status::sent);
}

TEST_F(queue_test, no_file_and_no_lock_until_something_is_queued) {
  auto path = dir + "/offline_queue.db";
  start();
  EXPECT_FALSE(std::ifstream{path}.good()) << "created at spawn";
  EXPECT_TRUE(list().empty());
  set_state(link_state::connected);
  EXPECT_FALSE(std::ifstream{path}.good()) << "created by list or a drain";
  // a second engine on the same directory lists it too
  auto other = spawn_offline_queue(sys, make_config(), downstream());
  sched.run();
  auto xs = ask<std::vector<queue_entry>>(other, list_atom::value);
  ASSERT_TRUE(xs) << describe(xs.error());
  self->send_exit(other, caf::exit_reason::user_shutdown);
  sched.run();
  // the first enqueue creates it
  ASSERT_TRUE(enqueue("a", "a1"));
  EXPECT_TRUE(std::ifstream{path}.good());
  answer("a1", 201, ok("a1"));
  EXPECT_EQ(statuses("a1").back(), queue_status::sent);
}

TEST_F(queue_test, a_file_left_by_an_earlier_engine_is_opened_at_spawn) {
  start();
  ASSERT_TRUE(enqueue("a", "left-1")); // in flight, never answered
  stop();
  net->calls.clear();
  start(); // the file exists: opened (and recovered) at once
  ASSERT_EQ(net->calls.size(), 1u);
  EXPECT_EQ(net->calls[0].id, "left-1");
  // another queue of the directory sees it (not locked out)
  auto other = spawn_offline_queue(sys, make_config(), downstream());
  sched.run();
  auto xs = ask<std::vector<queue_entry>>(other, list_atom::value);
  ASSERT_TRUE(xs) << describe(xs.error());
  ASSERT_EQ(xs->size(), 1u);
  EXPECT_EQ(xs->front().state, "in_flight");
  self->send_exit(other, caf::exit_reason::user_shutdown);
  sched.run();
  EXPECT_EQ(net->calls.size(), 1u); // the other did not send it too
}

TEST_F(queue_test, a_disabled_queue_opens_nothing_and_says_so) {
  auto qc = make_config();
  qc.enabled = false;
  start(std::move(qc));
  auto e = enqueue("a", "a1");
  ASSERT_FALSE(e);
  EXPECT_EQ(classify(e.error()).cls, error_class::unknown);
  EXPECT_NE(describe(e.error()).find("not opened"), std::string::npos)
    << describe(e.error());
  EXPECT_FALSE(ask<std::vector<queue_entry>>(q, list_atom::value));
  EXPECT_FALSE(std::ifstream{dir + "/offline_queue.db"}.good());
  EXPECT_TRUE(net->calls.empty());
}

TEST_F(queue_test, a_send_whose_enqueue_is_not_answered_in_time_is_an_unknown_outcome) {
  // Issue 17: the chat repository waited a fixed 10 s while the queue
  // waited up to --timeout; a late commit then followed a printed failure.
  // Now the send's own deadline is carried down to the queue, and a queue
  // that does not answer by then yields "outcome unknown" naming the id,
  // never "not queued".
  auto held = std::make_shared<std::vector<queued_command>>();
  auto promises
    = std::make_shared<std::vector<caf::typed_response_promise<queue_entry>>>();
  auto silent = sys.spawn(
    [held, promises](offline_queue_actor::pointer self)
      -> offline_queue_actor::behavior_type {
      return {
        [=](enqueue_atom, const queued_command& c) -> caf::result<queue_entry> {
          held->push_back(c);
          promises->push_back(self->make_response_promise<queue_entry>());
          return promises->back();
        },
        [](list_atom) -> caf::result<std::vector<queue_entry>> {
          return std::vector<queue_entry>{};
        },
        [](retry_atom, int64_t) -> caf::result<queue_entry> {
          return queue_entry{};
        },
        [](drop_atom, int64_t) -> caf::result<bool> { return false; },
        [](drain_atom) {},
        [](watch_atom, queue_listener_actor) {},
        [](state_atom, const connection_state&) {},
        [](event_atom, const server_event&) {},
        [](auth_atom, auth_state) {},
      };
    });
  repository_deps deps;
  deps.api = downstream();
  deps.queue = silent;
  deps.request_timeout = 30s;
  auto chat = spawn_chat_repository(sys, deps);
  outgoing_message m;
  m.id = "late-1";
  m.content = "hello";
  m.timeout = 2s; // what is left of the caller's deadline
  auto rh = self->request(chat, caf::infinite, send_atom::value, m);
  sched.run();
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ(held->front().timeout, caf::timespan{2s}); // carried down
  sched.advance_time(2s + 1s); // the deadline plus the repository's grace
  sched.run();
  caf::error err;
  rh.receive([](chat_message&) { ADD_FAILURE() << "answered a message"; },
             [&](caf::error& e) { err = std::move(e); });
  ASSERT_TRUE(err);
  auto c = classify(err);
  EXPECT_EQ(c.code, "outcome_unknown") << describe(err);
  EXPECT_NE(c.message.find("late-1"), std::string::npos) << describe(err);
  self->send_exit(chat, caf::exit_reason::user_shutdown);
  self->send_exit(silent, caf::exit_reason::user_shutdown);
  sched.run();
}
