// Unit tests of aico-stress's pure parts: histogram, fault schedule,
// integrity check, report.
#include <gtest/gtest.h>

#include <random>

#include "src/stress/fault_schedule.hpp"
#include "src/stress/histogram.hpp"
#include "src/stress/integrity.hpp"
#include "src/stress/report.hpp"

using namespace aico::stress;
using namespace std::chrono_literals;
namespace json = boost::json;

// -- histogram ------------------------------------------------------------------------

TEST(LatencyHistogram, EmptyIsZero) {
  latency_histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0);
  EXPECT_EQ(h.max(), 0);
}

TEST(LatencyHistogram, BucketsAreMonotonicAndTight) {
  size_t prev = 0;
  for (uint64_t us = 1; us < 600'000'000; us = us * 11 / 10 + 1) {
    auto i = latency_histogram::index_of(us);
    EXPECT_GE(i, prev);
    prev = i;
    auto hi = latency_histogram::highest_equivalent(i);
    EXPECT_GE(hi, us);
    // two significant digits: the bucket is at most ~1.6 % wide
    EXPECT_LE(static_cast<double>(hi - us), 0.016 * us + 1) << us;
  }
}

TEST(LatencyHistogram, PercentilesOfUniformValues) {
  latency_histogram h;
  for (int ms = 1; ms <= 1000; ++ms)
    h.record(int64_t{ms} * 1'000'000);
  EXPECT_EQ(h.count(), 1000u);
  auto near = [](int64_t got, double want_ms) {
    EXPECT_NEAR(static_cast<double>(got) / 1e6, want_ms, want_ms * 0.02);
  };
  near(h.percentile(50), 500);
  near(h.percentile(90), 900);
  near(h.percentile(99), 990);
  near(h.percentile(99.9), 999);
  EXPECT_EQ(h.percentile(100), h.max());
  EXPECT_EQ(h.max(), 1'000'000'000);
  EXPECT_EQ(h.min(), 1'000'000);
  EXPECT_NEAR(h.mean() / 1e6, 500.5, 0.01);
}

TEST(LatencyHistogram, HugeValuesAreClampedButMaxIsExact) {
  latency_histogram h;
  h.record(3'600'000'000'000); // an hour
  h.record(-5);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.max(), 3'600'000'000'000);
  EXPECT_EQ(h.min(), 0);
  EXPECT_LE(h.percentile(100), h.max());
}

TEST(LatencyHistogram, MergeEqualsRecordingEverything) {
  latency_histogram a, b, all;
  std::mt19937_64 rng{7};
  std::lognormal_distribution<double> d{13, 1.5}; // around 0.5 ms
  for (int i = 0; i < 20000; ++i) {
    auto v = static_cast<int64_t>(d(rng));
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  for (double p : {50.0, 90.0, 99.0, 99.9})
    EXPECT_EQ(a.percentile(p), all.percentile(p)) << p;
}

// -- fault schedule --------------------------------------------------------------------

TEST(FaultSchedule, ParsesTheIssueExample) {
  fault_schedule s;
  std::string err;
  ASSERT_TRUE(parse_fault_schedule(
    "every 5s: ws down 2s; every 11s: ipc down 3s; 5% 503", s, err))
    << err;
  ASSERT_EQ(s.periodic.size(), 2u);
  EXPECT_EQ(s.periodic[0].kind, fault_kind::ws_down);
  EXPECT_EQ(s.periodic[0].period, 5000ms);
  EXPECT_EQ(s.periodic[0].duration, 2000ms);
  EXPECT_EQ(s.periodic[1].kind, fault_kind::ipc_down);
  EXPECT_EQ(s.periodic[1].period, 11000ms);
  EXPECT_EQ(s.periodic[1].duration, 3000ms);
  EXPECT_DOUBLE_EQ(s.fail_ratio, 0.05);
  EXPECT_EQ(s.fail_status, 503);
  EXPECT_FALSE(s.has_kill());
}

TEST(FaultSchedule, KillDropLatencyFileSyntax) {
  fault_schedule s;
  std::string err;
  ASSERT_TRUE(parse_fault_schedule("# chaos\nkill every 30s\n"
                                   "every 500ms: drop ws\n"
                                   "every 1m: kill ; latency 20ms\n"
                                   "2.5% 502\n",
                                   s, err))
    << err;
  ASSERT_EQ(s.periodic.size(), 3u);
  EXPECT_EQ(s.periodic[0].kind, fault_kind::kill);
  EXPECT_EQ(s.periodic[0].period, 30000ms);
  EXPECT_EQ(s.periodic[1].kind, fault_kind::drop_ws);
  EXPECT_EQ(s.periodic[1].period, 500ms);
  EXPECT_EQ(s.periodic[2].period, 60000ms);
  EXPECT_TRUE(s.has_kill());
  EXPECT_EQ(s.latency_ms, 20);
  EXPECT_DOUBLE_EQ(s.fail_ratio, 0.025);
  EXPECT_EQ(s.fail_status, 502);
}

TEST(FaultSchedule, EmptyIsEmpty) {
  fault_schedule s;
  std::string err;
  ASSERT_TRUE(parse_fault_schedule("  ;  ", s, err));
  EXPECT_TRUE(s.empty());
}

TEST(FaultSchedule, ErrorsNameTheClause) {
  struct bad {
    const char* text;
    const char* needle;
  };
  for (auto& b : {bad{"every 5s: ws down 2s; every 11s: ipc dwn 3s",
                      "clause 2 ('every 11s: ipc dwn 3s')"},
                  bad{"every 5s: ws down 6s", "shorter than the period"},
                  bad{"every xs: ws down 1s", "bad period 'xs'"},
                  bad{"every 5s ws down 1s", "every PERIOD"},
                  bad{"150% 503", "0..100"},
                  bad{"5% 404", "500..599"},
                  bad{"5% 503; 1%", "only one"},
                  bad{"explode", "clause 1 ('explode')"},
                  bad{"kill every -3s", "bad period"}}) {
    fault_schedule s;
    std::string err;
    EXPECT_FALSE(parse_fault_schedule(b.text, s, err)) << b.text;
    EXPECT_NE(err.find(b.needle), std::string::npos)
      << b.text << " -> " << err;
  }
}

TEST(FaultSchedule, Durations) {
  std::chrono::milliseconds d{0};
  EXPECT_TRUE(parse_duration("250ms", d));
  EXPECT_EQ(d, 250ms);
  EXPECT_TRUE(parse_duration("1.5s", d));
  EXPECT_EQ(d, 1500ms);
  EXPECT_TRUE(parse_duration("3", d));
  EXPECT_EQ(d, 3000ms);
  EXPECT_TRUE(parse_duration("2m", d));
  EXPECT_EQ(d, 120000ms);
  EXPECT_FALSE(parse_duration("", d));
  EXPECT_FALSE(parse_duration("s", d));
  EXPECT_FALSE(parse_duration("5h", d));
}

// -- integrity -----------------------------------------------------------------------------

TEST(Integrity, ExactRun) {
  auto c = check_conversation({"a", "b", "c"}, {"a", "b", "c"});
  EXPECT_EQ(c.sent, 3u);
  EXPECT_EQ(c.stored, 3u);
  EXPECT_TRUE(c.exact());
}

TEST(Integrity, LostDuplicatedOutOfOrderUnexpected) {
  auto c = check_conversation({"a", "b", "c", "d", "e"},
                              {"a", "c", "b", "c", "e", "x"});
  EXPECT_EQ(c.sent, 5u);
  EXPECT_EQ(c.stored, 4u);      // a c b e
  EXPECT_EQ(c.lost, 1u);        // d
  EXPECT_EQ(c.duplicated, 1u);  // second c
  EXPECT_EQ(c.out_of_order, 1u); // b after c
  EXPECT_EQ(c.unexpected, 1u);  // x
  EXPECT_FALSE(c.exact());
}

TEST(Integrity, PerConversationAndTotals) {
  std::map<std::string, std::vector<std::string>> sent{
    {"c1", {"1", "2"}}, {"c2", {"3"}}, {"c3", {"4"}}};
  std::map<std::string, std::vector<std::string>> stored{
    {"c1", {"1", "2"}}, {"c2", {}}, {"c4", {"9"}}};
  auto r = check_integrity(sent, stored);
  EXPECT_EQ(r.conversations, 4u);
  EXPECT_EQ(r.total.sent, 4u);
  EXPECT_EQ(r.total.stored, 2u);
  EXPECT_EQ(r.total.lost, 2u);
  EXPECT_EQ(r.total.unexpected, 1u);
  EXPECT_EQ(r.bad_conversations.size(), 2u); // c2, c3
  EXPECT_EQ(r.bad_conversations.count("c1"), 0u);
}

// -- report ----------------------------------------------------------------------------------

TEST(Report, JsonAndTextCarryTheFigures) {
  report r;
  r.users = 2;
  r.rate = 10;
  r.elapsed_s = 2;
  r.faults = "every 5000ms: ws down 2000ms";
  for (int i = 1; i <= 100; ++i)
    r.operations["send"].by_transport["ws"].record(i * 1'000'000);
  r.operations["send"].ok = 100;
  r.operations["send"].errors = 1;
  r.errors["server"] = 3;
  r.failovers = 4;
  r.sessions = 2;
  r.rss_before_kb = 1000;
  r.rss_after_kb = 3000;
  r.integrity_checked = true;
  r.integrity = check_integrity({{"c", {"a", "b"}}}, {{"c", {"a", "b"}}});
  auto j = r.to_json();
  auto& integ = j.at("integrity").as_object();
  EXPECT_EQ(integ.at("sent").as_uint64(), 2u);
  EXPECT_EQ(integ.at("stored").as_uint64(), 2u);
  EXPECT_EQ(integ.at("lost").as_uint64(), 0u);
  EXPECT_TRUE(integ.at("exact").as_bool());
  auto& send = j.at("operations").as_object().at("send").as_object();
  EXPECT_EQ(send.at("ok").as_uint64(), 100u);
  auto p50 = send.at("latency").as_object().at("p50_ms").to_number<double>();
  EXPECT_NEAR(p50, 50, 1);
  EXPECT_TRUE(send.at("by_transport").as_object().contains("ws"));
  EXPECT_DOUBLE_EQ(
    j.at("memory").as_object().at("per_session_kb").to_number<double>(), 1000);
  EXPECT_DOUBLE_EQ(
    j.at("throughput").as_object().at("messages_per_s").to_number<double>(),
    50);
  auto text = r.to_text();
  EXPECT_NE(text.find("EXACT"), std::string::npos) << text;
  EXPECT_NE(text.find("via ws"), std::string::npos) << text;
  EXPECT_NE(text.find("server=3"), std::string::npos) << text;
  EXPECT_TRUE(r.exact());
}

TEST(Report, MergeAddsUp) {
  report a, b;
  a.operations["send"].ok = 1;
  a.operations["send"].by_transport["ipc"].record(1'000'000);
  b.operations["send"].ok = 2;
  b.operations["send"].by_transport["ipc"].record(3'000'000);
  b.operations["send"].by_transport["http"].record(5'000'000);
  b.failovers = 2;
  b.errors["timeout"] = 1;
  b.integrity_checked = true;
  b.integrity = check_integrity({{"c", {"a"}}}, {{"c", {}}});
  a.merge(b);
  EXPECT_EQ(a.operations["send"].ok, 3u);
  EXPECT_EQ(a.operations["send"].total().count(), 3u);
  EXPECT_EQ(a.operations["send"].by_transport["ipc"].count(), 2u);
  EXPECT_EQ(a.failovers, 2u);
  EXPECT_EQ(a.errors["timeout"], 1u);
  EXPECT_EQ(a.integrity.total.lost, 1u);
  EXPECT_FALSE(a.exact());
}
