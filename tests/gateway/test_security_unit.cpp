// Unit tests (no sockets, injected clock) of the gateway's security logic:
// the failed-login throttle, the per-connection output budget, the
// non-finite number check, the CURVE allow-list parser and the private-file
// checks.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <zmq.h>

#include "gateway/ipc_curve.hpp"
#include "gateway/json_util.hpp"
#include "gateway/login_throttle.hpp"
#include "gateway/out_budget.hpp"
#include "gateway/secure_files.hpp"

using namespace aico::gateway;
using namespace std::chrono_literals;
using tp = login_throttle::clock::time_point;

namespace {

login_limits small_limits() {
  login_limits l;
  l.user_free_failures = 3;
  l.peer_free_failures = 5;
  l.base_delay = 1000ms;
  l.max_delay = 8000ms;
  l.decay = 10000ms;
  return l;
}

} // namespace

TEST(login_throttle, free_failures_then_doubling_lockouts_up_to_the_cap) {
  login_throttle t(small_limits());
  tp now{};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.check("alice", "", now).count(), 0);
    t.failed("alice", "", now);
  }
  EXPECT_EQ(t.check("alice", "", now).count(), 0); // three were free
  t.failed("alice", "", now);                       // the fourth locks: 1 s
  EXPECT_EQ(t.check("alice", "", now).count(), 1000);
  EXPECT_EQ(t.check("alice", "", now + 400ms).count(), 600);
  now += 1000ms;
  EXPECT_EQ(t.check("alice", "", now).count(), 0);
  t.failed("alice", "", now); // fifth: 2 s
  EXPECT_EQ(t.check("alice", "", now).count(), 2000);
  now += 2000ms;
  t.failed("alice", "", now); // sixth: 4 s
  EXPECT_EQ(t.check("alice", "", now).count(), 4000);
  now += 4000ms;
  t.failed("alice", "", now); // seventh: 8 s (the cap)
  EXPECT_EQ(t.check("alice", "", now).count(), 8000);
  now += 8000ms;
  t.failed("alice", "", now); // eighth: still the cap
  EXPECT_EQ(t.check("alice", "", now).count(), 8000);
  // Other users are not affected.
  EXPECT_EQ(t.check("bob", "", now).count(), 0);
}

TEST(login_throttle, failures_decay_one_per_interval) {
  login_throttle t(small_limits());
  tp now{};
  for (int i = 0; i < 4; ++i)
    t.failed("alice", "", now); // locked 1 s, 4 failures counted
  now += 1000ms;
  t.failed("alice", "", now); // 5 -> 2 s
  EXPECT_EQ(t.check("alice", "", now).count(), 2000);
  // 30 s without a failure: three failures forgotten (5 -> 2).
  now += 30000ms;
  EXPECT_EQ(t.check("alice", "", now).count(), 0);
  t.failed("alice", "", now); // 3: still free
  EXPECT_EQ(t.check("alice", "", now).count(), 0);
  t.failed("alice", "", now); // 4: locked again, 1 s
  EXPECT_EQ(t.check("alice", "", now).count(), 1000);
  // Long enough: everything forgotten, the entry goes away.
  now += 3600s;
  EXPECT_EQ(t.check("alice", "", now).count(), 0);
  EXPECT_EQ(t.size(), 0u);
}

TEST(login_throttle, per_peer_and_success_clears_only_the_user) {
  login_throttle t(small_limits());
  tp now{};
  for (int i = 0; i < 6; ++i) // six users, one failure each, one peer
    t.failed("u" + std::to_string(i), "10.0.0.9", now);
  EXPECT_EQ(t.check("carol", "10.0.0.9", now).count(), 1000);
  EXPECT_EQ(t.check("carol", "10.0.0.8", now).count(), 0);
  EXPECT_EQ(t.check("carol", "", now).count(), 0); // unknown peer
  // A success of one user does not reset the peer.
  t.succeeded("u0", now);
  EXPECT_EQ(t.check("carol", "10.0.0.9", now).count(), 1000);
  // ...but does reset that user.
  for (int i = 0; i < 4; ++i)
    t.failed("dave", "", now);
  EXPECT_GT(t.check("dave", "", now).count(), 0);
  t.succeeded("dave", now);
  EXPECT_EQ(t.check("dave", "", now).count(), 0);
}

TEST(login_throttle, table_is_bounded_and_can_be_off) {
  auto l = small_limits();
  l.max_entries = 100;
  login_throttle t(l);
  tp now{};
  for (int i = 0; i < 1000; ++i) {
    t.failed("user" + std::to_string(i), "", now);
    now += 1ms;
  }
  EXPECT_LE(t.size(), 101u);
  l.enabled = false;
  login_throttle off(l);
  for (int i = 0; i < 100; ++i)
    off.failed("alice", "p", now);
  EXPECT_EQ(off.check("alice", "p", now).count(), 0);
}

TEST(out_budget, counts_bytes_refuses_over_the_limit_lets_one_big_frame_out) {
  out_budget b(1000);
  EXPECT_TRUE(b.try_add(5000)); // nothing queued: one large frame goes
  EXPECT_FALSE(b.try_add(1));   // over the limit now
  b.release(5000);
  EXPECT_TRUE(b.try_add(400));
  EXPECT_FALSE(b.reading_paused());
  EXPECT_TRUE(b.try_add(400));
  EXPECT_TRUE(b.reading_paused()); // > half
  EXPECT_FALSE(b.try_add(201));
  EXPECT_TRUE(b.try_add(200));
  EXPECT_EQ(b.queued(), 1000u);
  b.release(1000);
  EXPECT_EQ(b.queued(), 0u);
}

TEST(json_numbers, non_finite_numbers_are_found_with_their_path) {
  std::string where;
  auto v = parse_json(R"({"a":1,"big":1e400})");
  ASSERT_TRUE(v);
  EXPECT_TRUE(find_non_finite(*v, &where));
  EXPECT_EQ(where, "big");
  v = parse_json(R"({"m":{"list":[0,1.5,-1e309]}})");
  ASSERT_TRUE(v);
  EXPECT_TRUE(find_non_finite(*v, &where));
  EXPECT_EQ(where, "m.list[2]");
  v = parse_json(R"([1e400])");
  EXPECT_TRUE(find_non_finite(*v, &where));
  EXPECT_EQ(where, "[0]");
  v = parse_json(R"({"max":1.7976931348623157e308,"i":-9223372036854775808,)"
                 R"("u":18446744073709551615,"tiny":1e-400})");
  ASSERT_TRUE(v);
  EXPECT_FALSE(find_non_finite(*v, &where)); // large but finite; underflow
}

TEST(curve_allow_list, keys_comments_and_errors) {
  // Z85 uses '#' (never as the first character of a 32-byte key): a
  // comment may follow a key after whitespace.
  char pub[41], sec[41];
  ASSERT_EQ(zmq_curve_keypair(pub, sec), 0);
  std::string k1 = pub;
  ASSERT_EQ(zmq_curve_keypair(pub, sec), 0);
  std::string k2 = pub;
  auto keys = parse_allow_list("# devices\n\n  " + k1 + "   # kitchen\n" + k2
                                 + "\n#" + "\n",
                               "allow");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], k1);
  EXPECT_EQ(keys[1], k2);
  try {
    parse_allow_list(k1 + "\nnot-a-key\n", "allow");
    FAIL() << "accepted a bad line";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("allow line 2"), std::string::npos)
      << e.what();
  }
  EXPECT_THROW(parse_allow_list(k1 + " trailing words\n", "allow"),
               std::runtime_error);
  EXPECT_TRUE(parse_allow_list("", "allow").empty());
}

TEST(secure_files, private_file_checks_and_creation) {
  char tmpl[] = "/tmp/aico-sf-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string f = dir + "/secret";
  mode_t old = ::umask(0);
  EXPECT_TRUE(create_private_file(f, "s3cr3t"));
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u); // whatever the umask
  EXPECT_FALSE(create_private_file(f, "other")); // never replaced
  EXPECT_EQ(read_private_file(f, "the secret", 100), "s3cr3t");
  EXPECT_THROW(read_private_file(f, "the secret", 3), std::runtime_error);
  ASSERT_EQ(::chmod(f.c_str(), 0604), 0);
  auto p = private_file_problem(f, "the secret");
  EXPECT_NE(p.find("mode is 0604"), std::string::npos) << p;
  EXPECT_NE(p.find("chmod 600 " + f), std::string::npos) << p;
  EXPECT_THROW(read_private_file(f, "the secret", 100), std::runtime_error);
  ASSERT_EQ(::chmod(f.c_str(), 0400), 0);
  EXPECT_TRUE(private_file_problem(f, "the secret").empty());
  // claim_private_file: tightens an own file, absent is fine.
  std::string db = dir + "/db";
  std::ofstream(db) << "x";
  ASSERT_EQ(::chmod(db.c_str(), 0644), 0);
  claim_private_file(db, "the database");
  ASSERT_EQ(::stat(db.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  claim_private_file(dir + "/absent", "the database");
  // ensure_private_dir: creates and tightens.
  std::string sub = dir + "/a/b";
  ensure_private_dir(sub);
  ASSERT_EQ(::stat(sub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::chmod(sub.c_str(), 0755), 0);
  ensure_private_dir(sub);
  ASSERT_EQ(::stat(sub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_THROW(ensure_private_dir(f), std::runtime_error); // a file
  std::filesystem::remove_all(dir);
}
