// Unit tests of aico-stress's pure parts: histogram, fault schedule,
// integrity check, report, user slices, progress line, SVG plot, and the
// wire format of the distributed mode (CAF serialization).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "caf/all.hpp"

#include "src/stress/fault_schedule.hpp"
#include "src/stress/histogram.hpp"
#include "src/stress/integrity.hpp"
#include "src/stress/plot.hpp"
#include "src/stress/progress.hpp"
#include "src/stress/report.hpp"
#include "src/stress/slice.hpp"
#include "src/stress/wire.hpp"

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
  EXPECT_EQ(s.periodic[0].kind, fault_kind::door_down);
  EXPECT_EQ(s.periodic[0].door, "ws");
  EXPECT_EQ(s.periodic[0].period, 5000ms);
  EXPECT_EQ(s.periodic[0].duration, 2000ms);
  EXPECT_EQ(s.periodic[1].kind, fault_kind::door_down);
  EXPECT_EQ(s.periodic[1].door, "ipc");
  EXPECT_EQ(s.periodic[1].period, 11000ms);
  EXPECT_EQ(s.periodic[1].duration, 3000ms);
  EXPECT_DOUBLE_EQ(s.fail_ratio, 0.05);
  EXPECT_EQ(s.fail_status, 503);
  EXPECT_FALSE(s.has_kill());
}

TEST(FaultSchedule, GrpcDoorDown) {
  fault_schedule s;
  std::string err;
  ASSERT_TRUE(parse_fault_schedule("every 7s: grpc down 2s; every 5s: ws down 1s",
                                   s, err))
    << err;
  ASSERT_EQ(s.periodic.size(), 2u);
  EXPECT_EQ(s.periodic[0].kind, fault_kind::door_down);
  EXPECT_EQ(s.periodic[0].door, "grpc");
  EXPECT_EQ(s.periodic[0].period, 7000ms);
  EXPECT_EQ(s.periodic[0].duration, 2000ms);
  EXPECT_TRUE(s.switches_door("grpc"));
  EXPECT_TRUE(s.switches_door("ws"));
  EXPECT_FALSE(s.switches_door("ipc"));
  EXPECT_EQ(describe(s), "every 7000ms: grpc down 2000ms; every 5000ms: ws "
                         "down 1000ms");
  fault_schedule none;
  ASSERT_TRUE(parse_fault_schedule("every 5s: ws down 1s", none, err));
  EXPECT_FALSE(none.switches_door("grpc"));
  EXPECT_FALSE(parse_fault_schedule("every 5s: grpc down 6s", none, err));
  EXPECT_NE(err.find("shorter than the period"), std::string::npos) << err;
  // a door is a transport name, and not http (the fault endpoint is on it)
  EXPECT_FALSE(parse_fault_schedule("every 5s: http down 1s", none, err));
  EXPECT_NE(err.find("no door 'http'"), std::string::npos) << err;
  EXPECT_NE(err.find("ipc, ws, grpc"), std::string::npos) << err;
  EXPECT_FALSE(parse_fault_schedule("every 5s: sse down 1s", none, err));
  EXPECT_NE(err.find("no door 'sse'"), std::string::npos) << err;
  EXPECT_FALSE(parse_fault_schedule("every 5s: ws up 1s", none, err));
  EXPECT_NE(err.find("unknown action"), std::string::npos) << err;
}

TEST(Progress, GrpcColumnOnlyWhenUsed) {
  progress_counters c;
  c.mix = {{1, 2, 3, 4}};
  c.mix[progress_counters::none] = 5;
  auto line = format_progress_line(1.0, c, 0);
  EXPECT_NE(line.find("mix ipc 1 ws 2 http 3 grpc 4 none 5"), std::string::npos)
    << line;
  c.mix[3] = 0;
  line = format_progress_line(1.0, c, 0);
  EXPECT_NE(line.find("mix ipc 1 ws 2 http 3 none 5"), std::string::npos)
    << line;
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

TEST(Integrity, UnknownOutcomesAreCountedSeparately) {
  // b and d: sends whose outcome was unknown; b was stored, d was not
  auto c = check_conversation({"a", "b", "c", "d"}, {"a", "b", "c"},
                              {"b", "d"});
  EXPECT_EQ(c.sent, 4u);
  EXPECT_EQ(c.stored, 3u);
  EXPECT_EQ(c.outcome_unknown, 2u);
  EXPECT_EQ(c.outcome_unknown_stored, 1u);
  EXPECT_EQ(c.lost, 0u); // d may never have reached the backend
  EXPECT_TRUE(c.exact());
  // stored twice is a duplicate whatever its outcome; a known send missing
  // is lost
  auto d = check_conversation({"a", "b", "c"}, {"b", "b"}, {"b"});
  EXPECT_EQ(d.duplicated, 1u);
  EXPECT_EQ(d.lost, 2u);
  EXPECT_FALSE(d.exact());
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

TEST(Report, WorkersOnlyInDistributedReports) {
  report r;
  EXPECT_FALSE(r.to_json().contains("workers"));
  EXPECT_EQ(r.to_text().find("workers:"), std::string::npos);
  r.workers = 3;
  EXPECT_EQ(r.to_json().at("workers").as_uint64(), 3u);
  EXPECT_NE(r.to_text().find("workers: 3"), std::string::npos);
}

// -- user slices -----------------------------------------------------------------------------

namespace {

void check_split(int users, double rate, int64_t messages, int workers) {
  SCOPED_TRACE(std::to_string(users) + " users over "
               + std::to_string(workers));
  auto s = split_users(users, rate, messages, workers);
  ASSERT_EQ(s.size(), static_cast<size_t>(workers));
  std::set<int> seen;
  double rate_sum = 0;
  int64_t msg_sum = 0;
  int next = 0, min_n = users, max_n = 0;
  for (auto& x : s) {
    EXPECT_EQ(x.first, next); // contiguous, in order
    for (int i = x.first; i < x.first + x.count; ++i)
      EXPECT_TRUE(seen.insert(i).second) << "user " << i << " twice";
    next = x.first + x.count;
    rate_sum += x.rate;
    msg_sum += x.messages;
    min_n = std::min(min_n, x.count);
    max_n = std::max(max_n, x.count);
    EXPECT_GE(x.rate, 0);
    EXPECT_GE(x.messages, 0);
    if (users > 0) {
      EXPECT_NEAR(x.rate, rate * x.count / users, 1e-9 * rate);
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(users)); // covers every user
  if (!seen.empty()) {
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), users - 1);
  }
  EXPECT_LE(max_n - min_n, 1);
  EXPECT_NEAR(rate_sum, rate, 1e-9 * rate);
  EXPECT_EQ(msg_sum, messages);
}

} // namespace

TEST(UserSlices, DisjointCoveringWithRateShares) {
  check_split(60, 60, 0, 3);
  check_split(10, 100, 1000, 3);
  check_split(200, 200, 7, 7);
  check_split(1, 5, 3, 1);
  check_split(100000, 1234.5, 999'999, 13);
  check_split(5, 10, 2, 5);
}

TEST(UserSlices, SizesAndRemainder) {
  auto s = split_users(10, 100, 0, 3);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].first, 0);
  EXPECT_EQ(s[0].count, 4);
  EXPECT_EQ(s[1].first, 4);
  EXPECT_EQ(s[1].count, 3);
  EXPECT_EQ(s[2].first, 7);
  EXPECT_EQ(s[2].count, 3);
  EXPECT_NEAR(s[0].rate, 40, 1e-9);
  EXPECT_NEAR(s[1].rate, 30, 1e-9);
  EXPECT_EQ(split_users(10, 1, 0, 1)[0].count, 10);
  EXPECT_TRUE(split_users(10, 1, 0, 0).empty());
  auto more = split_users(2, 1, 0, 3); // more workers than users
  ASSERT_EQ(more.size(), 3u);
  EXPECT_EQ(more[2].count, 0);
  EXPECT_EQ(more[2].rate, 0);
}

// -- progress line -----------------------------------------------------------------------------

namespace {

progress_counters sample_counters() {
  progress_counters c;
  c.created = 200;
  c.users = 200;
  c.logged_in = 198;
  c.ops_ok = 1234;
  c.ops_err = 3;
  c.sends = 900;
  c.outstanding = 12;
  c.mix = {{150, 40, 10, 0}};
  return c;
}

} // namespace

TEST(Progress, PlainLineKeepsItsFormat) {
  EXPECT_EQ(format_progress_line(12.34, sample_counters(), 180.4),
            "[  12.3s] users 200/200 (198 in)  ops 1234 (180/s)  sent 900  "
            "errors 3  queued 12  mix ipc 150 ws 40 http 10 none 0");
}

TEST(Progress, BarByTime) {
  auto line = format_progress_bar(7.0, 20, 0, sample_counters(), 180);
  EXPECT_EQ(line.rfind("[#######.............]  35%  7.0/20s  users 198/200"
                       "  ops 1234 (180/s)  sent 900  err 3  queued 12  ",
                       0),
            0u)
    << line;
  EXPECT_NE(line.find("ipc 150 ws 40 http 10 none 0"), std::string::npos)
    << line;
  // the ends
  auto start = format_progress_bar(0, 20, 0, sample_counters(), 0);
  EXPECT_EQ(start.substr(0, 27), "[....................]   0%");
  auto over = format_progress_bar(25, 20, 0, sample_counters(), 0);
  EXPECT_EQ(over.substr(0, 27), "[####################] 100%");
}

TEST(Progress, BarByMessageBudget) {
  auto c = sample_counters(); // 900 sent
  // 900 of 1000 messages after 1 s of 600: the budget decides
  auto line = format_progress_bar(1.0, 600, 1000, c, 0);
  EXPECT_EQ(line.substr(0, 27), "[##################..]  90%") << line;
}

TEST(Progress, BarIsCutToTheTerminal) {
  auto line = format_progress_bar(7.0, 20, 0, sample_counters(), 180, 10, 40);
  EXPECT_EQ(line.size(), 40u);
  EXPECT_EQ(line.substr(0, 12), "[###.......]");
  auto c = sample_counters();
  progress_counters sum = c;
  sum.add(c);
  EXPECT_EQ(sum.users, 400u);
  EXPECT_EQ(sum.sends, 1800u);
  EXPECT_EQ(sum.mix[1], 80);
}

// -- SVG plot --------------------------------------------------------------------------------------

namespace {

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1))
    ++n;
  return n;
}

} // namespace

TEST(Plot, OnePolylinePerOperation) {
  std::map<std::string, latency_histogram> ops;
  std::mt19937_64 rng{3};
  std::lognormal_distribution<double> d{15, 1}; // a few ms
  for (auto name : {"send", "history", "read", "health"})
    for (int i = 0; i < 500; ++i)
      ops[name].record(static_cast<int64_t>(d(rng)));
  ops["empty"]; // no samples: legend only
  auto svg = latency_svg(ops, "t <&> \"q\"");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_EQ(count_of(svg, "<svg"), 1u);
  EXPECT_EQ(count_of(svg, "<polyline"), 4u);
  for (auto name : {"send", "history", "read", "health"})
    EXPECT_NE(svg.find("data-series=\"" + std::string{name} + "\""),
              std::string::npos)
      << name;
  EXPECT_NE(svg.find(">no samples</text>"), std::string::npos);
  EXPECT_NE(svg.find("t &lt;&amp;&gt; &quot;q&quot;"), std::string::npos);
  EXPECT_EQ(svg.find("t <&>"), std::string::npos); // escaped
  EXPECT_NE(svg.find("99.99%"), std::string::npos);
  // every element that opens is closed or self-closing
  EXPECT_EQ(count_of(svg, "<text"), count_of(svg, "</text>"));
  EXPECT_EQ(count_of(svg, "<g "), count_of(svg, "</g>"));
  // points: 201 per line, coordinates inside the view box
  auto p = svg.find("points=\"");
  ASSERT_NE(p, std::string::npos);
  auto q = svg.find('"', p + 8);
  std::istringstream pts{svg.substr(p + 8, q - p - 8)};
  std::string xy;
  int n = 0;
  double prev_y = 1e9;
  while (pts >> xy) {
    auto comma = xy.find(',');
    ASSERT_NE(comma, std::string::npos) << xy;
    auto x = std::stod(xy.substr(0, comma));
    auto y = std::stod(xy.substr(comma + 1));
    EXPECT_GE(x, 0);
    EXPECT_LE(x, 960);
    EXPECT_GE(y, 0);
    EXPECT_LE(y, 520);
    EXPECT_LE(y, prev_y + 1e-9); // latency grows with the percentile (y down)
    prev_y = y;
    ++n;
  }
  EXPECT_EQ(n, 201);
}

TEST(Plot, WritesTheReportsOperations) {
  report r;
  r.users = 3;
  r.operations["send"].by_transport["ipc"].record(2'000'000);
  r.operations["send"].by_transport["ws"].record(4'000'000);
  r.operations["history"].by_transport["ws"].record(1'000'000);
  auto path = ::testing::TempDir() + "/aico-plot-"
              + std::to_string(getpid()) + ".svg";
  std::string err;
  ASSERT_TRUE(write_latency_plot(r, path, err)) << err;
  std::ifstream in{path};
  std::stringstream buf;
  buf << in.rdbuf();
  auto svg = buf.str();
  std::remove(path.c_str());
  EXPECT_EQ(count_of(svg, "<polyline"), 2u);
  EXPECT_NE(svg.find(">send</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">n=2 p50 "), std::string::npos) << svg;
  EXPECT_FALSE(write_latency_plot(r, "/nonexistent-dir/x.svg", err));
  EXPECT_NE(err.find("cannot write"), std::string::npos);
}

// -- wire format (distributed mode) --------------------------------------------------------

namespace {

struct StressWire : ::testing::Test {
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    add_wire_types(cfg);
    return cfg;
  }
  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};

  template <class T>
  caf::error round_trip(T& in, T& out) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    if (auto err = sink(in))
      return err;
    caf::binary_deserializer source{sys, buf};
    return source(out);
  }
};

report sample_report() {
  report r;
  r.users = 60;
  r.rate = 60;
  r.duration_s = 12;
  r.transports = "ipc,ws,http";
  r.faults = "every 5000ms: ws down 2000ms";
  r.seed = 9;
  r.elapsed_s = 12.5;
  r.drain_s = 0.5;
  std::mt19937_64 rng{11};
  std::lognormal_distribution<double> d{14, 1.2};
  for (int i = 0; i < 3000; ++i)
    r.operations[i % 3 ? "send" : "history"]
      .by_transport[i % 5 ? "ipc" : "ws"]
      .record(static_cast<int64_t>(d(rng)));
  r.operations["send"].ok = 2000;
  r.operations["send"].errors = 2;
  r.operations["history"].ok = 1000;
  r.errors["failed:timeout"] = 2;
  r.failovers = 17;
  r.logins = 60;
  r.rss_before_kb = 1000;
  r.rss_after_kb = 31000;
  r.sessions = 60;
  r.integrity = check_integrity({{"c", {"a", "b", "c"}}}, {{"c", {"b", "a"}}});
  r.integrity_checked = true;
  return r;
}

} // namespace

TEST_F(StressWire, HistogramRoundTripKeepsPercentiles) {
  latency_histogram h, back;
  std::mt19937_64 rng{5};
  std::lognormal_distribution<double> d{13, 2};
  for (int i = 0; i < 10000; ++i)
    h.record(static_cast<int64_t>(d(rng)));
  ASSERT_FALSE(round_trip(h, back));
  EXPECT_EQ(back.count(), h.count());
  EXPECT_EQ(back.max(), h.max());
  EXPECT_EQ(back.min(), h.min());
  EXPECT_DOUBLE_EQ(back.mean(), h.mean());
  for (double p : {0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0})
    EXPECT_EQ(back.percentile(p), h.percentile(p)) << p;
  // a merged copy equals recording twice
  back.merge(h);
  EXPECT_EQ(back.count(), 2 * h.count());
  EXPECT_EQ(back.percentile(99), h.percentile(99));
}

TEST_F(StressWire, ForeignHistogramLayoutIsRejected) {
  // same fields, but 10 buckets instead of this build's layout
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  std::vector<uint64_t> counts(10, 1);
  uint64_t count = 10;
  int64_t max = 5000, min = 1000;
  long double sum = 30000;
  ASSERT_FALSE(sink(counts, count, max, min, sum));
  caf::binary_deserializer source{sys, buf};
  latency_histogram h;
  EXPECT_TRUE(static_cast<bool>(source(h)));
}

TEST_F(StressWire, ReportRoundTripKeepsEverything) {
  auto r = sample_report();
  report back;
  ASSERT_FALSE(round_trip(r, back));
  EXPECT_EQ(back.users, 60u);
  EXPECT_EQ(back.transports, r.transports);
  EXPECT_EQ(back.faults, r.faults);
  EXPECT_EQ(back.failovers, 17u);
  EXPECT_EQ(back.sessions, 60u);
  EXPECT_EQ(back.errors, r.errors);
  EXPECT_EQ(back.integrity.total.lost, 1u);
  EXPECT_EQ(back.integrity.total.out_of_order, 1u);
  EXPECT_EQ(back.integrity.bad_conversations.size(), 1u);
  EXPECT_TRUE(back.integrity_checked);
  ASSERT_EQ(back.operations.size(), 2u);
  for (auto& [name, s] : r.operations) {
    auto& b = back.operations.at(name);
    EXPECT_EQ(b.ok, s.ok);
    EXPECT_EQ(b.errors, s.errors);
    EXPECT_EQ(b.total().count(), s.total().count());
    for (double p : {50.0, 99.0, 99.9})
      EXPECT_EQ(b.total().percentile(p), s.total().percentile(p));
  }
  // the JSON of the copy is the JSON of the original
  EXPECT_EQ(boost::json::serialize(back.to_json()),
            boost::json::serialize(r.to_json()));
}

TEST_F(StressWire, ResultAsMessageCarriesSentIdsInOrder) {
  // what BASP does with a message: the registered type name + inspect()
  wire_result res;
  res.index = 2;
  res.rep = sample_report();
  res.sent["stress-0041-1"] = {"stress-0041-000001", "stress-0041-000002",
                               "stress-0041-000003"};
  res.sent["stress-0042-1"] = {"stress-0042-000002", "stress-0042-000001"};
  auto msg = caf::make_message(res);
  caf::message back;
  ASSERT_FALSE(round_trip(msg, back));
  ASSERT_TRUE(back.match_elements<wire_result>());
  auto& got = back.get_as<wire_result>(0);
  EXPECT_EQ(got.index, 2u);
  EXPECT_EQ(got.sent, res.sent);
  EXPECT_EQ(got.rep.operations.at("send").total().percentile(99),
            res.rep.operations.at("send").total().percentile(99));
  // job and progress too
  wire_job j;
  j.index = 1;
  j.workers = 3;
  j.first = 20;
  j.count = 20;
  j.rate = 20;
  j.url = "http://127.0.0.1:8080";
  j.mix = "send=1";
  wire_progress p;
  p.index = 1;
  p.phase = static_cast<uint8_t>(load_phase::draining);
  p.counters = sample_counters();
  auto m2 = caf::make_message(j, p);
  caf::message b2;
  ASSERT_FALSE(round_trip(m2, b2));
  ASSERT_TRUE((b2.match_elements<wire_job, wire_progress>()));
  EXPECT_EQ(b2.get_as<wire_job>(0).first, 20);
  EXPECT_EQ(b2.get_as<wire_job>(0).url, j.url);
  EXPECT_EQ(b2.get_as<wire_progress>(1).counters.sends, 900u);
  EXPECT_EQ(b2.get_as<wire_progress>(1).counters.mix[0], 150);
}
