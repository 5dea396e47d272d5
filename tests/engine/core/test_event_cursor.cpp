// The engine's position in the event stream (src/core/event_cursor.hpp).
#include <gtest/gtest.h>

#include "src/core/event_cursor.hpp"

using namespace aico;

namespace {

server_event ev(uint64_t seq, std::string topic, std::string data) {
  server_event e;
  e.seq = seq;
  e.topic = std::move(topic);
  e.data = std::move(data);
  return e;
}

using verdict = event_cursor::verdict;

} // namespace

TEST(event_cursor, lets_each_seq_through_once) {
  event_cursor c;
  EXPECT_EQ(c.on_event(ev(10, "system.update", "{}")), verdict::deliver);
  EXPECT_EQ(c.on_event(ev(10, "system.update", "{}")), verdict::duplicate);
  EXPECT_EQ(c.on_event(ev(9, "system.update", "{}")), verdict::duplicate);
  EXPECT_EQ(c.on_event(ev(11, "system.update", "{}")), verdict::deliver);
  EXPECT_EQ(c.last_seq(), 11u);
  // seq 0: not from the stream (nothing to compare), always delivered
  EXPECT_EQ(c.on_event(ev(0, "system.update", "{}")), verdict::deliver);
  EXPECT_EQ(c.stats().duplicates, 2u);
  EXPECT_EQ(c.stats().delivered, 3u);
}

TEST(event_cursor, drops_and_counts_data_that_is_not_an_object) {
  event_cursor c;
  for (auto topic : {"message", "message.read", "message.stream",
                     "system.update"}) {
    EXPECT_EQ(c.on_event(ev(1, topic, R"("not-an-object")")),
              verdict::malformed)
      << topic;
    EXPECT_EQ(c.on_event(ev(1, topic, "{broken")), verdict::malformed);
  }
  EXPECT_EQ(c.stats().malformed, 8u);
  EXPECT_EQ(c.last_seq(), 0u) << "a dropped event moves nothing";
  // a topic of a newer gateway is not judged
  EXPECT_EQ(c.on_event(ev(2, "new.topic", "7")), verdict::deliver);
}

TEST(event_cursor, knows_the_last_message_of_each_conversation) {
  event_cursor c;
  c.on_event(ev(5, "message", R"({"id":"a","conversation_id":"c1","seq":3})"));
  c.on_event(ev(6, "message", R"({"id":"b","conversation_id":"c2","seq":4})"));
  c.on_event(ev(7, "message.read",
                R"({"id":"a","conversation_id":"c1","seq":3})"));
  c.on_recovered("c1", 8);
  EXPECT_EQ(c.conversations().at("c1"), 8);
  EXPECT_EQ(c.conversations().at("c2"), 4);
  EXPECT_EQ(c.last_message_seq(), 8);
  EXPECT_EQ(c.stats().recovered, 1u);
  c.reset();
  EXPECT_TRUE(c.conversations().empty());
  EXPECT_EQ(c.last_seq(), 0u);
}

TEST(event_cursor, an_incomplete_replay_asks_for_a_catch_up_and_restarts_the_filter) {
  event_cursor c;
  c.on_event(ev(100, "system.update", "{}"));
  EXPECT_FALSE(c.on_replay(true));
  EXPECT_TRUE(c.on_replay(false));
  // a restarted gateway whose counter is lower: its events are not repeats
  EXPECT_EQ(c.on_event(ev(50, "system.update", "{}")), verdict::deliver);
  EXPECT_EQ(c.stats().resumes, 2u);
  EXPECT_EQ(c.stats().gaps, 1u);
}

TEST(event_cursor, replay_outcomes_round_trip) {
  uint64_t since = 0;
  bool complete = true;
  ASSERT_TRUE(decode_replay_outcome(encode_replay_outcome(42, false), since,
                                    complete));
  EXPECT_EQ(since, 42u);
  EXPECT_FALSE(complete);
  EXPECT_FALSE(decode_replay_outcome("[]", since, complete));
  auto e = replay_outcome_event(7, true, transport_mode::ws);
  EXPECT_EQ(e.topic, replay_topic);
  EXPECT_EQ(e.seq, 0u);
  EXPECT_EQ(e.via, transport_mode::ws);
}
