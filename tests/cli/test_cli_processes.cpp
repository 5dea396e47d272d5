// The aico CLI as separate processes against the real gateway (issue 15):
// logout really reaches the gateway (and says so when it cannot), messages
// for people are sentences, and processes sharing one state directory
// (`aico watch` plus many `aico send`) never revoke each other's session
// while their 3 s access tokens rotate.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "src/core/token_store.hpp"
#include "support/child_process.hpp"
#include "support/engine_harness.hpp"

using namespace aico;
using namespace std::chrono_literals;
using aico::test::child_process;
using aico::test::gateway_options;
using aico::test::jstr;
using aico::test::read_text_file;
namespace json = boost::json;

namespace {

/// The CLI under test (AICO_TEST_CLI_BIN overrides it, e.g. to check that
/// a test fails with an older build).
std::string cli_bin() {
  auto env = std::getenv("AICO_TEST_CLI_BIN");
  return env && *env ? env : AICO_CLI_BIN;
}

class cli_test : public aico::test::engine_harness {
protected:
  aico::test::temp_dir work_{"aico-cli"};

  std::string state() const { return work_.path() + "/state"; }

  std::vector<std::string> base(const std::string& transports = {},
                                double timeout_s = 10) const {
    std::vector<std::string> args{cli_bin(),    "--url",
                                  gw_->http_url(), "--ipc",
                                  gw_->ipc_endpoint(), "--state-dir",
                                  state(),       "--timeout",
                                  std::to_string(timeout_s)};
    if (!transports.empty()) {
      args.push_back("--transports");
      args.push_back(transports);
    }
    return args;
  }

  static std::vector<std::string> with(std::vector<std::string> args,
                                       std::vector<std::string> more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }

  struct run_result {
    int rc = -100;
    std::string out;
    std::string err;
  };

  run_result run(std::vector<std::string> args,
                 std::chrono::milliseconds timeout = 30s) {
    static int n = 0;
    auto prefix = work_.path() + "/run-" + std::to_string(++n);
    run_result res;
    {
      child_process c{std::move(args), prefix + ".out", prefix + ".err"};
      if (!c.started())
        return res;
      res.rc = c.wait(timeout);
    }
    res.out = read_text_file(prefix + ".out");
    res.err = read_text_file(prefix + ".err");
    return res;
  }

  stored_tokens tokens_on_disk() {
    auto t = token_store{state()}.load();
    if (!t || !*t)
      return {};
    return **t;
  }
};

/// A message for people: one sentence, no raw caf::error rendering.
void expect_sentence(const std::string& text) {
  EXPECT_EQ(text.find("error("), std::string::npos) << text;
  EXPECT_EQ(text.find("'aico'"), std::string::npos) << text;
}

// -- logout (defect 2) ------------------------------------------------------------

TEST_F(cli_test, logout_reaches_the_gateway_and_revokes_the_session) {
  start_gateway();
  ASSERT_EQ(run(with(base(), {"login", "alice", "alice-pw"})).rc, 0);
  auto before = tokens_on_disk();
  ASSERT_FALSE(before.refresh_token.empty());
  auto r = run(with(base(), {"logout"}));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("logged out"), std::string::npos) << r.out;
  EXPECT_TRUE(tokens_on_disk().refresh_token.empty()) << "still on disk";
  // the gateway got it: the old refresh token no longer refreshes, the old
  // access token is revoked
  auto refresh = admin_->post("/api/v1/users/refresh",
                              json::object{{"refresh_token",
                                            before.refresh_token}});
  EXPECT_EQ(refresh.status, 401) << refresh.raw;
  EXPECT_EQ(refresh.code(), "invalid_refresh_token");
  auto me = admin_->get("/api/v1/users/me", before.access_token);
  EXPECT_EQ(me.status, 401) << me.raw;
}

TEST_F(cli_test, logout_with_the_gateway_unreachable_forgets_and_says_so) {
  start_gateway();
  ASSERT_EQ(run(with(base(), {"login", "alice", "alice-pw"})).rc, 0);
  ASSERT_FALSE(tokens_on_disk().refresh_token.empty());
  gw_->stop();
  auto started = std::chrono::steady_clock::now();
  auto r = run(with(base({}, 3), {"logout"}));
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.rc, 4) << r.out << r.err;
  EXPECT_TRUE(tokens_on_disk().refresh_token.empty()) << "still on disk";
  EXPECT_NE(r.err.find("aico: logged out here, but the gateway could not be "
                       "told"),
            std::string::npos)
    << r.err;
  EXPECT_NE(r.err.find("gateway unreachable ("), std::string::npos) << r.err;
  expect_sentence(r.err);
  EXPECT_LT(took, 8s);
  // --json keeps the machine-readable detail
  auto j = run(with(base({}, 1), {"--json", "logout"}));
  EXPECT_EQ(j.rc, 0) << "nothing left to log out: " << j.err;
}

// -- sentences (defect 8) -------------------------------------------------------

TEST_F(cli_test, errors_are_sentences_and_json_keeps_the_detail) {
  start_gateway();
  gw_->stop();
  auto r = run(with(base({}, 2), {"login", "alice", "alice-pw"}));
  EXPECT_EQ(r.rc, 4);
  EXPECT_NE(r.err.find("aico: login failed: gateway unreachable ("),
            std::string::npos)
    << r.err;
  expect_sentence(r.err);
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  auto bad = run(with(base(), {"--json", "login", "alice", "wrong"}));
  EXPECT_EQ(bad.rc, 3);
  EXPECT_NE(bad.err.find("aico: login failed: authentication failed ("),
            std::string::npos)
    << bad.err;
  expect_sentence(bad.err);
  auto obj = aico::test::parse_json(bad.out);
  EXPECT_EQ(jstr(obj, "/error"), "authentication");
  EXPECT_EQ(jstr(obj, "/code"), "invalid_credentials");
}

// -- processes sharing a state directory (defect 3) -------------------------------

class cli_shared_state : public cli_test,
                         public ::testing::WithParamInterface<std::string> {};

TEST_P(cli_shared_state, watch_and_twenty_sends_keep_one_session) {
  const auto transport = GetParam();
  gateway_options opts;
  opts.access_ttl_s = 3;
  start_gateway(opts);
  ASSERT_EQ(run(with(base(transport), {"login", "alice", "alice-pw"})).rc, 0);
  auto watch_out = work_.path() + "/watch.out";
  child_process watcher{with(base(transport), {"--json", "watch", "--for",
                                               "120"}),
                        watch_out, work_.path() + "/watch.err"};
  ASSERT_TRUE(watcher.started());
  auto until = std::chrono::steady_clock::now() + 15s;
  while (read_text_file(watch_out).find("\"connected\"") == std::string::npos
         && read_text_file(watch_out).find("\"degraded\"") == std::string::npos
         && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
  const std::string conv = "share-" + transport;
  std::vector<std::string> ids;
  // 20 sends from separate processes, one after the other, spread over
  // several token lifetimes: each may refresh, and so may the watcher.
  // (Not two at once: two `aico send` opening the queue file together can
  // block each other for --timeout, a separate problem of the queue store.)
  for (int i = 0; i < 20; ++i) {
    auto id = conv + "-" + std::to_string(i);
    ids.push_back(id);
    auto err = work_.path() + "/" + id + ".err";
    child_process kid{with(base(transport), {"send", "--conversation", conv,
                                             "--id", id, "text " + id}),
                      work_.path() + "/" + id + ".out", err};
    EXPECT_EQ(kid.wait(30s), 0) << id << ": " << read_text_file(err);
    std::this_thread::sleep_for(300ms);
  }
  // every message stored once; the watcher saw each and never lost the
  // session; the state directory is still logged in
  auto stored = stored_ids("alice", "alice-pw", conv);
  std::sort(stored.begin(), stored.end());
  auto want = ids;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(stored, want);
  auto seen = [&] {
    std::set<std::string> got;
    auto text = read_text_file(watch_out);
    for (auto& id : ids)
      if (text.find("\"id\":\"" + id + "\"") != std::string::npos)
        got.insert(id);
    return got.size();
  };
  until = std::chrono::steady_clock::now() + 10s;
  while (seen() < ids.size() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(seen(), ids.size()) << read_text_file(watch_out);
  EXPECT_EQ(read_text_file(watch_out).find("auth_expired"), std::string::npos)
    << read_text_file(watch_out);
  watcher.terminate(10s);
  auto status = run(with(base(transport), {"--json", "status"}));
  EXPECT_NE(status.out.find("\"user\":\"alice\""), std::string::npos)
    << status.out << status.err;
}

INSTANTIATE_TEST_SUITE_P(transports, cli_shared_state,
                         ::testing::Values("ipc", "ws", "http"),
                         [](const auto& info) { return info.param; });

} // namespace

// -- the response cache (defect 4) -------------------------------------------------

namespace {

class cli_cache_test : public cli_test {};

TEST_F(cli_cache_test, a_malformed_200_is_not_cached_and_refresh_never_reads_the_cache) {
  start_gateway();
  ASSERT_EQ(run(with(base(), {"login", "alice", "alice-pw"})).rc, 0);
  ASSERT_EQ(run(with(base(), {"send", "--conversation", "cc", "--id", "cc-1",
                              "hello cache"}))
              .rc,
            0);
  // the gateway answers the next history read with a 200 that is not an
  // envelope
  ASSERT_TRUE(fault({{"misbehave",
                      {{"path", "/conversations/cc/messages"},
                       {"method", "GET"},
                       {"mode", "not_envelope"},
                       {"count", 1}}}}));
  auto bad = run(with(base(), {"--json", "history", "--conversation", "cc"}));
  EXPECT_EQ(bad.rc, 1) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("aico: history failed: the gateway failed (the "
                         "gateway's answer to GET /conversations/cc/messages "
                         "is not a valid history page"),
            std::string::npos)
    << bad.err;
  expect_sentence(bad.err);
  EXPECT_EQ(jstr(aico::test::parse_json(bad.out), "/code"), "malformed_reply");
  // within the CLI's max age (5 s) the next read asks the gateway again
  // instead of answering the cached garbage
  auto good = run(with(base(), {"--json", "history", "--conversation", "cc"}));
  ASSERT_EQ(good.rc, 0) << good.err;
  auto page = aico::test::parse_json(good.out);
  EXPECT_FALSE(aico::test::jtrue(page, "/from_cache")) << good.out;
  EXPECT_NE(good.out.find("hello cache"), std::string::npos) << good.out;
  // offline: a forced refresh is never answered from the cache; a plain
  // read is (fresh within its 5 s, flagged stale after that)
  gw_->stop();
  auto refresh = run(with(base({}, 2), {"--json", "history", "--refresh",
                                        "--conversation", "cc"}));
  EXPECT_EQ(refresh.rc, 4) << refresh.out << refresh.err;
  EXPECT_EQ(refresh.out.find("hello cache"), std::string::npos)
    << refresh.out;
  expect_sentence(refresh.err);
  auto stale = run(with(base({}, 2), {"--json", "history", "--conversation",
                                      "cc"}));
  ASSERT_EQ(stale.rc, 0) << stale.err;
  auto sp = aico::test::parse_json(stale.out);
  EXPECT_TRUE(aico::test::jtrue(sp, "/from_cache")) << stale.out;
  EXPECT_NE(stale.out.find("hello cache"), std::string::npos);
}

} // namespace
