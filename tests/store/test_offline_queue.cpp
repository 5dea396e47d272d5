// The durable offline queue: per-lane FIFO, backoff and Retry-After,
// parking, bounds, persistence, crash recovery (incl. a real kill -9).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/store/offline_queue.hpp"
#include "temp_dir.hpp"

using namespace aico;
using namespace aico::store;
using namespace aico::store::test;
using namespace std::chrono_literals;

namespace {

struct offline_queue_test : temp_dir_test {
  std::string path;

  void SetUp() override {
    temp_dir_test::SetUp();
    path = file("state/offline_queue.db");
  }

  /// No jitter: delays are exact.
  static queue_options exact(size_t limit = 1000) {
    queue_options opts;
    opts.limit = limit;
    opts.backoff.jitter = 0.0;
    opts.seed = 42;
    return opts;
  }

  offline_queue open_queue(queue_options opts = exact()) {
    auto q = offline_queue::open(path, opts, now);
    if (!q) {
      ADD_FAILURE() << "open failed: " << describe(q.error());
      std::abort();
    }
    return std::move(*q);
  }

  static queue_request send(const std::string& lane, const std::string& key,
                            const std::string& text = "hi") {
    queue_request r;
    r.kind = queue_kind::send_message;
    r.idempotency_key = key;
    r.lane = lane;
    r.method = "POST";
    r.path = "/conversations/" + lane + "/messages";
    r.body = R"({"content":")" + text + R"("})";
    return r;
  }

  int64_t add(offline_queue& q, const queue_request& r) {
    auto res = q.enqueue(r, now);
    EXPECT_TRUE(res) << (res ? "" : describe(res.error()));
    if (!res)
      return -1;
    EXPECT_FALSE(res->duplicate);
    return res->item.seq;
  }

  /// Keys of the items ready now.
  std::vector<std::string> ready_keys(offline_queue& q, size_t max_n = 100) {
    auto items = q.next_ready(now, max_n);
    EXPECT_TRUE(items) << (items ? "" : describe(items.error()));
    std::vector<std::string> res;
    if (items)
      for (auto& x : *items)
        res.push_back(x.idempotency_key);
    return res;
  }

  queue_item item(offline_queue& q, int64_t seq) {
    auto x = q.get(seq);
    EXPECT_TRUE(x) << (x ? "" : describe(x.error()));
    return x ? *x : queue_item{};
  }

  static stored_error net_error() {
    return stored_error{error_class::network, "connection refused"};
  }
};

using strings = std::vector<std::string>;

} // namespace

TEST_F(offline_queue_test, enqueue_stores_the_request) {
  auto q = open_queue();
  auto res = q.enqueue(send("c1", "k1", "hello"), now);
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_FALSE(res->duplicate);
  auto& x = res->item;
  EXPECT_GT(x.seq, 0);
  EXPECT_EQ(x.kind, queue_kind::send_message);
  EXPECT_EQ(x.idempotency_key, "k1");
  EXPECT_EQ(x.lane, "c1");
  EXPECT_EQ(x.method, "POST");
  EXPECT_EQ(x.path, "/conversations/c1/messages");
  EXPECT_EQ(x.body, R"({"content":"hello"})");
  EXPECT_EQ(x.created_at, now);
  EXPECT_EQ(x.attempts, 0);
  EXPECT_EQ(x.state, queue_state::pending);
  EXPECT_FALSE(x.last_error);
  // what get() reads back is what enqueue() returned
  auto y = item(q, x.seq);
  EXPECT_EQ(y.idempotency_key, "k1");
  EXPECT_EQ(y.body, x.body);
  EXPECT_EQ(y.created_at, now);
  EXPECT_EQ(y.next_attempt_at, from_unix_ms(0));
  auto s2 = add(q, send("c2", "k2"));
  EXPECT_GT(s2, x.seq);
  EXPECT_EQ(*q.size(), 2u);
}

TEST_F(offline_queue_test, lanes_kinds_and_generated_keys) {
  auto q = open_queue();
  queue_request prefs;
  prefs.kind = queue_kind::update_preferences;
  prefs.lane = "ignored";
  prefs.method = "PUT";
  prefs.path = "/users/me/preferences";
  prefs.body = "{}";
  auto p = q.enqueue(prefs, now);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->item.lane, "user");
  EXPECT_EQ(p->item.idempotency_key.size(), 32u); // generated
  auto p2 = q.enqueue(prefs, now);
  ASSERT_TRUE(p2);
  EXPECT_FALSE(p2->duplicate);
  EXPECT_NE(p2->item.idempotency_key, p->item.idempotency_key);
  // sends and marks need a conversation
  auto bad = send("", "k");
  auto r = q.enqueue(bad, now);
  ASSERT_FALSE(r);
  EXPECT_EQ(classify(r.error()).cls, error_class::validation);
  EXPECT_EQ(code_of(r.error()), "invalid_request");
  bad = send("c1", "k");
  bad.path.clear();
  r = q.enqueue(bad, now);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), "invalid_request");
  EXPECT_EQ(*q.size(), 2u);
  EXPECT_STREQ(to_string(queue_kind::mark_read), "mark_read");
  EXPECT_EQ(parse_queue_kind("update_preferences"),
            queue_kind::update_preferences);
  EXPECT_FALSE(parse_queue_kind("nope"));
}

TEST_F(offline_queue_test, per_lane_fifo_with_interleaved_lanes) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  auto b1 = add(q, send("B", "b1"));
  auto a2 = add(q, send("A", "a2"));
  auto b2 = add(q, send("B", "b2"));
  auto a3 = add(q, send("A", "a3"));
  // only the heads, oldest first
  EXPECT_EQ(ready_keys(q), (strings{"a1", "b1"}));
  EXPECT_EQ(ready_keys(q, 1), (strings{"a1"}));
  // never the second of a lane while the first is unresolved
  auto err = q.mark_in_flight(a2);
  ASSERT_TRUE(err);
  EXPECT_EQ(code_of(err), "not_ready");
  ASSERT_FALSE(q.mark_in_flight(a1));
  ASSERT_FALSE(q.mark_in_flight(b1));
  EXPECT_EQ(ready_keys(q), strings{});
  EXPECT_EQ(code_of(q.mark_in_flight(a1)), "not_ready"); // already in flight
  ASSERT_FALSE(q.complete(b1));
  EXPECT_EQ(ready_keys(q), (strings{"b2"}));
  ASSERT_FALSE(q.complete(a1));
  EXPECT_EQ(ready_keys(q), (strings{"a2", "b2"}));
  ASSERT_FALSE(q.mark_in_flight(a2));
  ASSERT_FALSE(q.complete(a2));
  EXPECT_EQ(ready_keys(q), (strings{"b2", "a3"}));
  ASSERT_FALSE(q.mark_in_flight(a3));
  ASSERT_FALSE(q.mark_in_flight(b2));
  ASSERT_FALSE(q.complete(a3));
  ASSERT_FALSE(q.complete(b2));
  EXPECT_EQ(*q.size(), 0u);
  EXPECT_EQ(ready_keys(q), strings{});
  EXPECT_FALSE(*q.next_wakeup());
}

TEST_F(offline_queue_test, retryable_failure_pauses_only_its_lane) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  add(q, send("A", "a2"));
  auto b1 = add(q, send("B", "b1"));
  add(q, send("B", "b2"));
  ASSERT_FALSE(q.mark_in_flight(a1));
  ASSERT_FALSE(q.fail_retryable(a1, now, net_error()));
  auto x = item(q, a1);
  EXPECT_EQ(x.state, queue_state::pending);
  EXPECT_EQ(x.attempts, 1);
  EXPECT_EQ(x.next_attempt_at, now + 1000ms);
  ASSERT_TRUE(x.last_error);
  EXPECT_EQ(x.last_error->cls, error_class::network);
  EXPECT_EQ(x.last_error->message, "connection refused");
  // lane A waits (a2 must not overtake a1), lane B goes on
  EXPECT_EQ(ready_keys(q), (strings{"b1"}));
  EXPECT_EQ(code_of(q.mark_in_flight(q.list()->at(1).seq)), "not_ready");
  ASSERT_FALSE(q.mark_in_flight(b1));
  ASSERT_FALSE(q.complete(b1));
  EXPECT_EQ(ready_keys(q), (strings{"b2"}));
  auto wake = q.next_wakeup();
  ASSERT_TRUE(wake);
  // b2 is ready now: the earliest head time is b2's (epoch)
  EXPECT_EQ(**wake, from_unix_ms(0));
  ASSERT_FALSE(q.drop(q.list()->back().seq)); // drop b2
  wake = q.next_wakeup();
  ASSERT_TRUE(wake && *wake);
  EXPECT_EQ(**wake, now + 1000ms); // only lane A waits
  advance(999ms);
  EXPECT_EQ(ready_keys(q), strings{});
  advance(1ms);
  EXPECT_EQ(ready_keys(q), (strings{"a1"}));
}

TEST_F(offline_queue_test, backoff_grows_and_is_capped) {
  auto opts = exact();
  opts.backoff.initial = 1000ms;
  opts.backoff.multiplier = 2.0;
  opts.backoff.max = 10000ms;
  auto q = open_queue(opts);
  auto s = add(q, send("A", "a1"));
  std::vector<int64_t> delays;
  for (int i = 0; i < 6; ++i) {
    ASSERT_FALSE(q.mark_in_flight(s));
    ASSERT_FALSE(q.fail_retryable(s, now, net_error()));
    auto x = item(q, s);
    EXPECT_EQ(x.attempts, i + 1);
    delays.push_back(
      std::chrono::duration_cast<std::chrono::milliseconds>(x.next_attempt_at
                                                            - now)
        .count());
    EXPECT_EQ(**q.next_wakeup(), x.next_attempt_at);
    now = x.next_attempt_at;
  }
  EXPECT_EQ(delays,
            (std::vector<int64_t>{1000, 2000, 4000, 8000, 10000, 10000}));
}

TEST_F(offline_queue_test, backoff_jitter_stays_in_bounds) {
  queue_options opts; // default jitter 0.2
  opts.seed = 7;
  auto q = open_queue(opts);
  auto s = add(q, send("A", "a1"));
  for (int i = 0; i < 10; ++i) {
    ASSERT_FALSE(q.mark_in_flight(s));
    ASSERT_FALSE(q.fail_retryable(s, now, net_error()));
    auto x = item(q, s);
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
      x.next_attempt_at - now);
    backoff ref{opts.backoff};
    auto base = ref.base_delay(static_cast<uint32_t>(i)).count();
    EXPECT_GE(d.count(), static_cast<int64_t>(base * 0.8) - 1) << i;
    EXPECT_LE(d.count(), static_cast<int64_t>(base * 1.2) + 1) << i;
    now = x.next_attempt_at;
  }
}

TEST_F(offline_queue_test, retry_after_is_honoured_when_longer) {
  auto q = open_queue();
  auto s = add(q, send("A", "a1"));
  // the gateway says 30 s, our backoff says 1 s: 30 s
  ASSERT_FALSE(q.mark_in_flight(s));
  auto busy = make_engine_error(error_class::server_error, "slow down", 429,
                                "rate_limited", 30000);
  ASSERT_FALSE(q.fail_retryable(s, now, busy));
  auto x = item(q, s);
  EXPECT_EQ(x.next_attempt_at, now + 30s);
  EXPECT_EQ(x.retry_after_until, now + 30s);
  ASSERT_TRUE(x.last_error);
  EXPECT_EQ(x.last_error->cls, error_class::server_error);
  EXPECT_NE(x.last_error->message.find("slow down"), std::string::npos);
  // a shorter Retry-After than the backoff: the backoff wins
  now = x.next_attempt_at;
  ASSERT_FALSE(q.mark_in_flight(s));
  ASSERT_FALSE(q.fail_retryable(s, now, net_error(), 100ms));
  x = item(q, s);
  EXPECT_EQ(x.next_attempt_at, now + 2000ms);
}

TEST_F(offline_queue_test, resume_lanes_resets_backoff_but_not_retry_after) {
  auto q = open_queue();
  auto a = add(q, send("A", "a1"));
  auto b = add(q, send("B", "b1"));
  auto c = add(q, send("C", "c1"));
  // a: plain network failures, 3 of them (the next wait would be 8 s)
  ASSERT_FALSE(q.mark_in_flight(a));
  ASSERT_FALSE(q.fail_retryable(a, now, net_error()));
  for (int i = 0; i < 2; ++i) {
    now = item(q, a).next_attempt_at;
    ASSERT_FALSE(q.mark_in_flight(a));
    ASSERT_FALSE(q.fail_retryable(a, now, net_error()));
  }
  EXPECT_EQ(item(q, a).next_attempt_at, now + 4000ms);
  // b: the gateway asked for 60 s
  ASSERT_FALSE(q.mark_in_flight(b));
  ASSERT_FALSE(q.fail_retryable(b, now, net_error(), 60s));
  EXPECT_EQ(ready_keys(q), (strings{"c1"}));
  auto n = q.resume_lanes(now);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u); // only a's wait was cut
  EXPECT_EQ(ready_keys(q), (strings{"a1", "c1"}));
  EXPECT_EQ(item(q, a).attempts, 0);
  EXPECT_EQ(item(q, b).next_attempt_at, now + 60s);
  // backoff starts over: the next failure waits the initial delay
  ASSERT_FALSE(q.mark_in_flight(a));
  ASSERT_FALSE(q.fail_retryable(a, now, net_error()));
  EXPECT_EQ(item(q, a).next_attempt_at, now + 1000ms);
  (void) c;
}

TEST_F(offline_queue_test, parked_item_does_not_block_its_lane) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  auto a2 = add(q, send("A", "a2"));
  ASSERT_FALSE(q.mark_in_flight(a1));
  auto denied = make_engine_error(error_class::authorization,
                                  "not a member of this conversation", 403,
                                  "forbidden");
  ASSERT_FALSE(q.fail_permanent(a1, denied));
  auto x = item(q, a1);
  EXPECT_EQ(x.state, queue_state::parked);
  EXPECT_NE(x.parked_reason.find("not a member"), std::string::npos);
  EXPECT_NE(x.parked_reason.find("403"), std::string::npos);
  ASSERT_TRUE(x.last_error);
  EXPECT_EQ(x.last_error->cls, error_class::authorization);
  EXPECT_EQ(ready_keys(q), (strings{"a2"}));
  auto counts = q.counts();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->pending, 1u);
  EXPECT_EQ(counts->parked, 1u);
  EXPECT_EQ(counts->in_flight, 0u);
  // a pending item can be parked directly too (refused before sending)
  ASSERT_FALSE(q.fail_permanent(
    a2, stored_error{error_class::validation, "message too long"}));
  EXPECT_EQ(ready_keys(q), strings{});
  EXPECT_EQ(counts->total(), 2u);
  EXPECT_FALSE(*q.next_wakeup()); // parked items never wake anything
  EXPECT_EQ(code_of(q.fail_permanent(a2, net_error())), "parked");
}

TEST_F(offline_queue_test, retry_and_drop_parked_items) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  auto a2 = add(q, send("A", "a2"));
  auto a3 = add(q, send("A", "a3"));
  ASSERT_FALSE(q.mark_in_flight(a1));
  ASSERT_FALSE(q.fail_retryable(a1, now, net_error()));
  now += 1s;
  ASSERT_FALSE(q.mark_in_flight(a1));
  ASSERT_FALSE(q.fail_permanent(
    a1, stored_error{error_class::validation, "bad payload"}));
  ASSERT_FALSE(q.mark_in_flight(a2)); // the lane went on
  // retry a1 while a2 is in flight: a1 is the head again but waits for a2
  ASSERT_FALSE(q.retry(a1));
  auto x = item(q, a1);
  EXPECT_EQ(x.state, queue_state::pending);
  EXPECT_EQ(x.attempts, 0);
  EXPECT_TRUE(x.parked_reason.empty());
  EXPECT_EQ(x.idempotency_key, "a1");
  EXPECT_EQ(ready_keys(q), strings{});
  ASSERT_FALSE(q.complete(a2));
  // a1 keeps its seq: it goes before a3
  EXPECT_EQ(ready_keys(q), (strings{"a1"}));
  EXPECT_EQ(code_of(q.retry(a1)), "not_parked");
  // park again and drop it: a3 is next
  ASSERT_FALSE(q.mark_in_flight(a1));
  ASSERT_FALSE(q.fail_permanent(a1, net_error()));
  ASSERT_FALSE(q.drop(a1));
  EXPECT_EQ(code_of(q.get(a1).error()), "not_found");
  EXPECT_EQ(ready_keys(q), (strings{"a3"}));
  // a pending item may be dropped as well
  ASSERT_FALSE(q.drop(a3));
  EXPECT_EQ(*q.size(), 0u);
  EXPECT_EQ(code_of(q.drop(a3)), "not_found");
}

TEST_F(offline_queue_test, drop_of_in_flight_is_refused) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  ASSERT_FALSE(q.mark_in_flight(a1));
  auto err = q.drop(a1);
  ASSERT_TRUE(err);
  EXPECT_EQ(classify(err).cls, error_class::validation);
  EXPECT_EQ(code_of(err), "in_flight");
  EXPECT_EQ(item(q, a1).state, queue_state::in_flight);
  EXPECT_EQ(*q.size(), 1u);
}

TEST_F(offline_queue_test, state_machine_refuses_wrong_transitions) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  EXPECT_EQ(code_of(q.complete(a1)), "not_in_flight");
  EXPECT_EQ(code_of(q.fail_retryable(a1, now, net_error())), "not_in_flight");
  EXPECT_EQ(code_of(q.retry(a1)), "not_parked");
  EXPECT_EQ(code_of(q.mark_in_flight(999)), "not_found");
  EXPECT_EQ(code_of(q.complete(999)), "not_found");
  EXPECT_EQ(code_of(q.fail_permanent(999, net_error())), "not_found");
  EXPECT_EQ(item(q, a1).state, queue_state::pending);
}

TEST_F(offline_queue_test, duplicate_idempotency_key_returns_the_existing_item) {
  auto q = open_queue(exact(2));
  auto first = q.enqueue(send("A", "same", "one"), now);
  ASSERT_TRUE(first);
  advance(5s);
  auto again = q.enqueue(send("B", "same", "two"), now);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->item.seq, first->item.seq);
  EXPECT_EQ(again->item.lane, "A");
  EXPECT_EQ(again->item.body, first->item.body);
  EXPECT_EQ(again->item.created_at, first->item.created_at);
  EXPECT_EQ(*q.size(), 1u);
  // also while in flight and when the queue is full
  add(q, send("A", "other"));
  ASSERT_FALSE(q.mark_in_flight(first->item.seq));
  again = q.enqueue(send("A", "same"), now);
  ASSERT_TRUE(again) << describe(again.error());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->item.state, queue_state::in_flight);
  EXPECT_EQ(*q.size(), 2u);
}

TEST_F(offline_queue_test, full_queue_refuses_with_a_clear_error) {
  auto q = open_queue(exact(3));
  auto s1 = add(q, send("A", "k1"));
  add(q, send("A", "k2"));
  add(q, send("B", "k3"));
  ASSERT_FALSE(q.mark_in_flight(s1));
  ASSERT_FALSE(q.fail_permanent(s1, net_error())); // parked items count too
  auto r = q.enqueue(send("C", "k4"), now);
  ASSERT_FALSE(r);
  auto c = classify(r.error());
  EXPECT_EQ(c.cls, error_class::validation);
  EXPECT_FALSE(c.retryable);
  EXPECT_EQ(c.code, "queue_full");
  EXPECT_NE(c.message.find("full"), std::string::npos) << c.message;
  EXPECT_NE(c.message.find("limit 3"), std::string::npos) << c.message;
  EXPECT_NE(c.message.find("not queued"), std::string::npos) << c.message;
  // nothing was dropped to make room
  auto items = q.list();
  ASSERT_TRUE(items);
  strings keys;
  for (auto& x : *items)
    keys.push_back(x.idempotency_key);
  EXPECT_EQ(keys, (strings{"k1", "k2", "k3"}));
  // room again once an item leaves
  ASSERT_FALSE(q.drop(s1));
  add(q, send("C", "k4"));
  EXPECT_EQ(*q.size(), 3u);
}

TEST_F(offline_queue_test, survives_close_and_reopen) {
  int64_t a1, a2, b1, p1;
  {
    auto q = open_queue();
    a1 = add(q, send("A", "a1", "first"));
    a2 = add(q, send("A", "a2", "second"));
    b1 = add(q, send("B", "b1"));
    p1 = add(q, send("P", "p1"));
    ASSERT_FALSE(q.mark_in_flight(a1));
    ASSERT_FALSE(q.fail_retryable(a1, now, net_error(), 5s));
    ASSERT_FALSE(q.mark_in_flight(p1));
    ASSERT_FALSE(q.fail_permanent(
      p1, stored_error{error_class::validation, "too long"}));
    ASSERT_FALSE(q.mark_in_flight(b1));
    ASSERT_FALSE(q.complete(b1));
  }
  auto q = open_queue();
  EXPECT_EQ(q.recovered_on_open(), 0u);
  auto items = q.list();
  ASSERT_TRUE(items);
  ASSERT_EQ(items->size(), 3u);
  auto& x = items->at(0);
  EXPECT_EQ(x.seq, a1);
  EXPECT_EQ(x.idempotency_key, "a1");
  EXPECT_EQ(x.body, R"({"content":"first"})");
  EXPECT_EQ(x.attempts, 1);
  EXPECT_EQ(x.next_attempt_at, now + 5s);
  EXPECT_EQ(x.retry_after_until, now + 5s);
  ASSERT_TRUE(x.last_error);
  EXPECT_EQ(x.last_error->cls, error_class::network);
  EXPECT_EQ(items->at(1).seq, a2);
  EXPECT_EQ(items->at(2).seq, p1);
  EXPECT_EQ(items->at(2).state, queue_state::parked);
  EXPECT_EQ(items->at(2).parked_reason, "too long");
  // the lane is still paused after the restart, and resumes on time
  EXPECT_EQ(ready_keys(q), strings{});
  advance(5s);
  EXPECT_EQ(ready_keys(q), (strings{"a1"}));
  // seqs are never reused, even after the newest item was deleted
  ASSERT_FALSE(q.drop(p1));
  auto s = add(q, send("C", "c1"));
  EXPECT_GT(s, p1);
}

TEST_F(offline_queue_test, crash_with_item_in_flight_makes_it_pending_again) {
  int64_t a1 = 0;
  {
    auto q = open_queue();
    a1 = add(q, send("A", "a1"));
    add(q, send("A", "a2"));
  } // closed cleanly: the items belong to nobody now
  // a process claims a1 and dies without complete() or a failure
  auto pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto q = offline_queue::open(path, exact(), now);
    if (!q || q->mark_in_flight(a1, now))
      ::_exit(1);
    ::_exit(0); // no destructor: the claim stays in the file
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto q = open_queue();
  EXPECT_EQ(q.recovered_on_open(), 1u);
  auto x = item(q, a1);
  EXPECT_EQ(x.state, queue_state::pending);
  EXPECT_EQ(x.idempotency_key, "a1"); // the resend reuses the key
  EXPECT_EQ(x.attempts, 1);
  // and it is still first in its lane
  EXPECT_EQ(ready_keys(q), (strings{"a1"}));
}

TEST_F(offline_queue_test, closing_gives_claims_and_items_back) {
  int64_t a1 = 0;
  {
    auto q = open_queue();
    a1 = add(q, send("A", "a1"));
    add(q, send("B", "b1"));
    ASSERT_FALSE(q.mark_in_flight(a1, now));
  }
  auto q = open_queue();
  EXPECT_EQ(q.recovered_on_open(), 0u); // nothing was left in flight
  auto items = q.list();
  ASSERT_TRUE(items);
  for (auto& x : *items) {
    EXPECT_EQ(x.state, queue_state::pending) << x.idempotency_key;
    EXPECT_EQ(x.owner, "") << x.idempotency_key;
  }
  EXPECT_EQ(ready_keys(q), (strings{"a1", "b1"}));
}

TEST_F(offline_queue_test, two_owners_share_the_file_without_sending_an_item_twice) {
  auto o1 = exact();
  o1.owner = "test:1:one";
  auto o2 = exact();
  o2.owner = "test:2:two";
  auto q1 = open_queue(o1);
  auto q2 = open_queue(o2); // no lock held between calls: both open
  auto a1 = add(q1, send("A", "a1"));
  auto a2 = add(q1, send("A", "a2"));
  add(q2, send("A", "b1")); // same lane, after q1's items
  add(q2, send("C", "c1"));
  // each owner sends its own items; a lane's order holds across owners
  EXPECT_EQ(ready_keys(q1), (strings{"a1"}));
  EXPECT_EQ(ready_keys(q2), (strings{"c1"}));
  EXPECT_EQ(*q2.foreign_items(), 2u);
  auto c1 = q1.claim_ready(now, 8);
  ASSERT_TRUE(c1) << describe(c1.error());
  ASSERT_EQ(c1->size(), 1u);
  EXPECT_EQ(c1->front().idempotency_key, "a1");
  EXPECT_EQ(c1->front().state, queue_state::in_flight);
  EXPECT_EQ(c1->front().owner, "test:1:one");
  auto c2 = q2.claim_ready(now, 8);
  ASSERT_TRUE(c2);
  ASSERT_EQ(c2->size(), 1u);
  EXPECT_EQ(c2->front().idempotency_key, "c1");
  // the other owner can neither claim nor finish a1
  EXPECT_EQ(code_of(q2.mark_in_flight(a1, now)), "not_ready");
  EXPECT_EQ(code_of(q2.complete(a1)), "lease_lost");
  EXPECT_EQ(code_of(q2.fail_retryable(a1, now, net_error())), "lease_lost");
  EXPECT_EQ(code_of(q2.drop(a1)), "in_flight");
  ASSERT_FALSE(q1.complete(a1));
  EXPECT_EQ(ready_keys(q2), strings{}); // a2 (q1's) is the lane's head now
  ASSERT_FALSE(q1.mark_in_flight(a2, now));
  ASSERT_FALSE(q1.complete(a2));
  EXPECT_EQ(ready_keys(q2), (strings{"b1"}));
  EXPECT_EQ(*q2.foreign_items(), 0u);
  // what an owner leaves behind when it closes is anyone's
  add(q1, send("D", "d1"));
  EXPECT_EQ(ready_keys(q2), (strings{"b1"}));
  { auto gone = std::move(q1); }
  EXPECT_EQ(ready_keys(q2), (strings{"b1", "d1"}));
}

TEST_F(offline_queue_test, items_of_a_dead_owner_and_expired_claims_are_taken_over) {
  auto o1 = exact();
  o1.owner = "test:1:one";
  o1.lease = 10s;
  auto o2 = exact();
  o2.owner = "test:2:two";
  std::set<std::string> dead;
  o2.owner_alive = [&](const std::string& id, int64_t) {
    return dead.count(id) == 0;
  };
  auto q1 = open_queue(o1);
  auto q2 = open_queue(o2);
  auto a1 = add(q1, send("A", "a1"));
  auto b1 = add(q1, send("B", "b1"));
  ASSERT_FALSE(q1.mark_in_flight(a1, now));
  EXPECT_EQ(ready_keys(q2), strings{});
  // the lease runs out: a1 is given back and q2 may claim it
  advance(10s);
  auto c = q2.claim_ready(now, 8);
  ASSERT_TRUE(c) << describe(c.error());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ(c->front().idempotency_key, "a1");
  EXPECT_EQ(c->front().attempts, 2); // sent again, same key
  EXPECT_EQ(code_of(q1.complete(a1)), "lease_lost");
  // q1 dies: its pending item b1 is q2's to send
  dead.insert("test:1:one");
  c = q2.claim_ready(now, 8);
  ASSERT_TRUE(c);
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ(c->front().seq, b1);
  ASSERT_FALSE(q2.complete(a1));
  ASSERT_FALSE(q2.complete(b1));
  EXPECT_EQ(*q2.size(), 0u);
}

TEST_F(offline_queue_test, a_schema_1_file_is_upgraded) {
  {
    sqlite_db::options o;
    o.what = "offline queue";
    auto db = sqlite_db::open(path, o);
    ASSERT_TRUE(db) << describe(db.error());
    ASSERT_FALSE(db->ensure_schema(0x61696371, 1, R"sql(
CREATE TABLE IF NOT EXISTS queue(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  idempotency_key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL, lane TEXT NOT NULL, method TEXT NOT NULL,
  path TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  retry_after_until INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'pending',
  error_class INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  parked_reason TEXT NOT NULL DEFAULT '');
INSERT INTO queue(idempotency_key, kind, lane, method, path, body,
  created_at, state) VALUES('old-1', 'send_message', 'A', 'POST',
  '/conversations/messages', '{}', 1, 'in_flight');
)sql"));
  }
  auto q = open_queue();
  auto items = q.list();
  ASSERT_TRUE(items) << describe(items.error());
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ(items->front().idempotency_key, "old-1");
  EXPECT_EQ(items->front().state, queue_state::pending);
  EXPECT_EQ(ready_keys(q), (strings{"old-1"}));
}

TEST_F(offline_queue_test, processes_take_turns_on_one_file) {
  // 4 processes enqueue into shared lanes and send (claim, complete) until
  // the queue is empty: each item is sent once, by the process that queued
  // it, and the lanes' order holds across processes.
  constexpr int kids = 4;
  constexpr int per_kid = 25;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  struct claim {
    int64_t seq;
    int kid;
    int lane;
    int owner_kid;
  };
  std::vector<pid_t> pids;
  for (int k = 0; k < kids; ++k) {
    auto pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto opts = exact();
      opts.lock_timeout = 10s;
      auto q = offline_queue::open(path, opts, now);
      if (!q)
        ::_exit(2);
      for (int i = 0; i < per_kid; ++i) {
        auto r = send("L" + std::to_string(i % 3),
                      "k" + std::to_string(k) + "-" + std::to_string(i));
        if (!q->enqueue(r, now))
          ::_exit(3);
      }
      auto deadline = std::chrono::steady_clock::now() + 60s;
      for (;;) {
        if (std::chrono::steady_clock::now() > deadline)
          ::_exit(4);
        auto c = q->claim_ready(now, 4);
        if (!c) {
          std::fprintf(stderr, "claim: %s\n", describe(c.error()).c_str());
          ::_exit(5);
        }
        for (auto& x : *c) {
          claim rec{x.seq, k, x.lane.back() - '0',
                    x.idempotency_key[1] - '0'};
          if (::write(fds[1], &rec, sizeof(rec))
              != static_cast<ssize_t>(sizeof(rec)))
            ::_exit(6);
          if (auto err = q->complete(x.seq)) {
            std::fprintf(stderr, "complete: %s\n", describe(err).c_str());
            ::_exit(7);
          }
        }
        auto n = q->size();
        if (!n)
          ::_exit(8);
        if (*n == 0)
          break;
        if (c->empty())
          std::this_thread::sleep_for(1ms);
      }
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  ::close(fds[1]);
  std::vector<claim> claims;
  for (;;) {
    claim rec;
    auto n = ::read(fds[0], &rec, sizeof(rec));
    if (n != static_cast<ssize_t>(sizeof(rec)))
      break;
    claims.push_back(rec);
  }
  ::close(fds[0]);
  for (auto pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  ASSERT_EQ(claims.size(), static_cast<size_t>(kids * per_kid));
  std::set<int64_t> seqs;
  std::map<int, int64_t> last_in_lane;
  for (auto& c : claims) {
    EXPECT_TRUE(seqs.insert(c.seq).second) << "sent twice: " << c.seq;
    EXPECT_EQ(c.kid, c.owner_kid) << "item " << c.seq;
    EXPECT_GT(c.seq, last_in_lane[c.lane]) << "lane " << c.lane;
    last_in_lane[c.lane] = c.seq;
  }
  auto q = open_queue();
  EXPECT_EQ(*q.size(), 0u);
}

TEST_F(offline_queue_test, two_processes_creating_the_queue_at_once_take_turns) {
  // Two `aico send` on a fresh state directory: the one that does not get
  // the lock first waits for it (lock_timeout) instead of failing with
  // "database is locked" (SQLite does not call its busy handler while a new
  // file is switched to WAL). Several rounds, as the race is a matter of
  // microseconds.
  for (int round = 0; round < 12; ++round) {
    auto p = file("race-" + std::to_string(round) + "/offline_queue.db");
    std::vector<pid_t> kids;
    for (int k = 0; k < 2; ++k) {
      auto pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        auto opts = exact();
        opts.lock_timeout = 5s;
        auto q = offline_queue::open(p, opts);
        if (!q)
          ::_exit(1);
        auto r = q->enqueue(send("A", "k" + std::to_string(k)), now);
        if (!r)
          ::_exit(2);
        std::this_thread::sleep_for(20ms); // keep the file open a little
        ::_exit(0);
      }
      kids.push_back(pid);
    }
    for (auto pid : kids) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), 0) << "round " << round;
    }
    auto q = offline_queue::open(p, exact());
    ASSERT_TRUE(q) << describe(q.error());
    EXPECT_EQ(*q->size(), 2u) << "round " << round;
  }
}

TEST_F(offline_queue_test, reset_in_flight_on_transport_loss) {
  auto q = open_queue();
  auto a1 = add(q, send("A", "a1"));
  auto b1 = add(q, send("B", "b1"));
  ASSERT_FALSE(q.mark_in_flight(a1));
  ASSERT_FALSE(q.mark_in_flight(b1));
  auto n = q.reset_in_flight();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(ready_keys(q), (strings{"a1", "b1"}));
  EXPECT_EQ(*q.reset_in_flight(), 0u);
}

TEST_F(offline_queue_test, files_are_private) {
  {
    auto q = open_queue();
    add(q, send("A", "a1"));
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_EQ(mode_of(root + "/state"), 0700u); // created by open()
    if (exists(path + "-wal")) {
      EXPECT_EQ(mode_of(path + "-wal"), 0600u);
    }
  }
  // a file left with a wider mode is tightened on open
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto q = open_queue();
  EXPECT_EQ(mode_of(path), 0600u);
}

TEST_F(offline_queue_test, non_sqlite_file_is_a_clear_error) {
  ::mkdir((root + "/state").c_str(), 0700);
  std::string junk(4096, 'x');
  write_file(path, "this is not a database\n" + junk);
  auto q = offline_queue::open(path, exact());
  ASSERT_FALSE(q);
  auto msg = describe(q.error());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a database"), std::string::npos) << msg;
  EXPECT_NE(msg.find("offline queue"), std::string::npos) << msg;
  // the file was left alone
  EXPECT_EQ(std::filesystem::file_size(path), 23 + junk.size());
}

TEST_F(offline_queue_test, damaged_database_is_a_clear_error) {
  {
    auto q = open_queue();
    for (int i = 0; i < 200; ++i)
      add(q, send("A", "k" + std::to_string(i), std::string(500, 'x')));
  }
  // overwrite the middle of the file (B-tree pages) with garbage
  auto size = std::filesystem::file_size(path);
  ASSERT_GT(size, 16384u);
  {
    std::fstream f{path, std::ios::in | std::ios::out | std::ios::binary};
    f.seekp(static_cast<std::streamoff>(size / 2));
    std::string junk(8192, '\xAB');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto q = offline_queue::open(path, exact());
  ASSERT_FALSE(q);
  auto msg = describe(q.error());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST_F(offline_queue_test, another_store_file_is_refused) {
  {
    auto db = sqlite_db::open(path, sqlite_db::options{});
    ASSERT_TRUE(db);
    ASSERT_FALSE(db->exec("CREATE TABLE other(x INTEGER)"));
  }
  auto q = offline_queue::open(path, exact());
  ASSERT_FALSE(q);
  auto msg = describe(q.error());
  EXPECT_NE(msg.find("belongs to something else"), std::string::npos) << msg;
}

// A real crash: a child process enqueues (and sends) in a loop, reporting
// every enqueue that returned through a pipe; the parent kills it with
// SIGKILL at an arbitrary point. Every reported item must be there, intact,
// once; at most one more (committed but not yet reported). Draining then
// sends every key exactly once.
TEST_F(offline_queue_test, kill_9_loses_nothing_and_duplicates_nothing) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto body_of = [](int i) {
    return R"({"content":"message )" + std::to_string(i) + R"("})";
  };
  auto pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // child: no gtest macros, leave with _exit only
    ::close(fds[0]);
    queue_options opts;
    opts.limit = 1'000'000;
    auto q = offline_queue::open(path, opts);
    if (!q)
      ::_exit(2);
    auto t = now;
    for (int i = 0;; ++i) {
      queue_request r;
      r.kind = queue_kind::send_message;
      r.idempotency_key = "key-" + std::to_string(i);
      r.lane = "c" + std::to_string(i % 3);
      r.method = "POST";
      r.path = "/conversations/" + r.lane + "/messages";
      r.body = body_of(i);
      if (!q->enqueue(r, t))
        ::_exit(3);
      // keep some sends in flight so the kill can hit them
      if (i % 4 == 0)
        if (auto ready = q->next_ready(t, 1); ready && !ready->empty())
          if (q->mark_in_flight(ready->front().seq))
            ::_exit(4);
      if (::write(fds[1], &i, sizeof(i)) != static_cast<ssize_t>(sizeof(i)))
        ::_exit(5);
    }
  }
  ::close(fds[1]);
  struct reaper {
    pid_t pid;
    ~reaper() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
      }
    }
  } guard{pid};
  // wait (bounded) until the child has committed a few dozen items
  int acked = -1;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (acked < 40 && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{fds[0], POLLIN, 0};
    if (::poll(&pfd, 1, 1000) <= 0)
      continue;
    int i;
    auto n = ::read(fds[0], &i, sizeof(i));
    if (n != static_cast<ssize_t>(sizeof(i)))
      break;
    acked = i;
  }
  ASSERT_GE(acked, 40) << "the child did not make progress";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  guard.pid = -1;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
    << "child exited early with status " << status;
  // acknowledgements written before the kill
  for (;;) {
    int i;
    if (::read(fds[0], &i, sizeof(i)) != static_cast<ssize_t>(sizeof(i)))
      break;
    acked = i;
  }
  ::close(fds[0]);
  auto q = open_queue();
  auto items = q.list();
  ASSERT_TRUE(items) << describe(items.error());
  ASSERT_GE(items->size(), static_cast<size_t>(acked + 1));
  ASSERT_LE(items->size(), static_cast<size_t>(acked + 2));
  std::set<std::string> keys;
  std::set<int64_t> seqs;
  for (size_t i = 0; i < items->size(); ++i) {
    auto& x = items->at(i);
    EXPECT_EQ(x.idempotency_key, "key-" + std::to_string(i));
    EXPECT_EQ(x.body, body_of(static_cast<int>(i)));
    EXPECT_EQ(x.lane, "c" + std::to_string(i % 3));
    EXPECT_NE(x.state, queue_state::in_flight);
    keys.insert(x.idempotency_key);
    seqs.insert(x.seq);
  }
  EXPECT_EQ(keys.size(), items->size());
  EXPECT_EQ(seqs.size(), items->size());
  EXPECT_GE(q.recovered_on_open(), 1u);
  // drain: every key is sent exactly once, in order within its lane
  std::map<std::string, int> sent;
  std::map<std::string, std::vector<int64_t>> lane_order;
  for (int round = 0; round < 10000; ++round) {
    auto ready = q.next_ready(now, 16);
    ASSERT_TRUE(ready);
    if (ready->empty())
      break;
    for (auto& x : *ready) {
      ASSERT_FALSE(q.mark_in_flight(x.seq));
      ++sent[x.idempotency_key];
      lane_order[x.lane].push_back(x.seq);
      ASSERT_FALSE(q.complete(x.seq));
    }
  }
  EXPECT_EQ(*q.size(), 0u);
  EXPECT_EQ(sent.size(), keys.size());
  for (auto& [key, n] : sent)
    EXPECT_EQ(n, 1) << key;
  for (auto& [lane, order] : lane_order)
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << lane;
}
