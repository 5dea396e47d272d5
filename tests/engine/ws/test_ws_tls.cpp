// The libwebsockets wrapper's TLS options against the real gateway serving
// wss:// (and mutual TLS) on 127.0.0.1, with certificates made at test time:
// verification is on by default, a CA file makes a test CA trusted, the SPKI
// pin is checked in the verification callback, mutual TLS needs the client
// certificate, and the insecure development switch warns on every
// connection. Failures are classified (on_tls_failure) and explained in the
// close reason.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/transport/lws/ws_loop.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"
#include "support/test_pki.hpp"

namespace {

using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::temp_dir;
using aico::test::test_pki;
using aico::transport::tls_failure;
using aico::transport::tls_options;
namespace ws = aico::ws_link;

struct outcome {
  std::mutex mtx;
  std::condition_variable cv;
  bool opened = false;
  bool closed = false;
  std::string reason;
  tls_failure kind = tls_failure::none;
  std::vector<std::string> warnings;
  std::vector<std::string> messages;

  ws::loop_handlers handlers() {
    ws::loop_handlers h;
    h.on_open = [this](uint64_t) {
      std::lock_guard<std::mutex> g{mtx};
      opened = true;
      cv.notify_all();
    };
    h.on_message = [this](uint64_t, std::string&& text) {
      std::lock_guard<std::mutex> g{mtx};
      messages.push_back(std::move(text));
      cv.notify_all();
    };
    h.on_closed = [this](uint64_t, const std::string& why) {
      std::lock_guard<std::mutex> g{mtx};
      closed = true;
      reason = why;
      cv.notify_all();
    };
    h.on_tls_failure = [this](uint64_t, tls_failure k) {
      std::lock_guard<std::mutex> g{mtx};
      kind = k;
    };
    h.on_warning = [this](uint64_t, const std::string& w) {
      std::lock_guard<std::mutex> g{mtx};
      warnings.push_back(w);
    };
    return h;
  }

  bool settle(std::chrono::milliseconds t = 8s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, t, [&] { return opened || closed; });
  }
};

class ws_tls_test : public ::testing::Test {
protected:
  void start(bool mutual) {
    pki_dir_ = std::make_unique<temp_dir>("aico-pki");
    pki_ = aico::test::make_test_pki(pki_dir_->path());
    gateway_options o;
    o.bot = false;
    o.extra_args = aico::test::gateway_tls_args(pki_, mutual);
    gw_ = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
    std::string why;
    ASSERT_TRUE(ws::parse_url("wss://127.0.0.1:" + std::to_string(gw_->port())
                                + "/api/v1/ws",
                              url_, why))
      << why;
  }

  /// Opens one connection with these settings; the outcome.
  std::shared_ptr<outcome> open(const tls_options& t) {
    auto out = std::make_shared<outcome>();
    ws::loop_options lo;
    lo.tls = true;
    lo.tls_config = t;
    ws::ws_loop loop(lo, out->handlers());
    loop.open(1, url_, "");
    EXPECT_TRUE(out->settle());
    if (out->opened) {
      loop.send(1, R"({"type":"ping","id":"p1"})");
      std::unique_lock<std::mutex> g{out->mtx};
      out->cv.wait_for(g, 5s, [&] { return !out->messages.empty(); });
    }
    loop.stop();
    return out;
  }

  tls_options trust() const {
    tls_options t;
    t.ca_file = pki_.ca_cert;
    return t;
  }

  std::unique_ptr<temp_dir> pki_dir_;
  test_pki pki_;
  std::unique_ptr<gateway_process> gw_;
  ws::ws_url url_;
};

TEST_F(ws_tls_test, verification_is_on_by_default) {
  start(false);
  auto o = open({});
  EXPECT_FALSE(o->opened);
  EXPECT_TRUE(o->closed);
  EXPECT_EQ(o->kind, tls_failure::untrusted) << o->reason;
  EXPECT_EQ(o->reason.rfind("websocket TLS: the gateway's certificate is not "
                            "trusted",
                            0),
            0u)
    << o->reason;
}

TEST_F(ws_tls_test, the_right_ca_works) {
  start(false);
  auto o = open(trust());
  EXPECT_TRUE(o->opened) << o->reason;
  ASSERT_FALSE(o->messages.empty());
  EXPECT_NE(o->messages[0].find("pong"), std::string::npos);
  auto rogue = trust();
  rogue.ca_file = pki_.rogue_ca_cert;
  o = open(rogue);
  EXPECT_FALSE(o->opened);
  EXPECT_EQ(o->kind, tls_failure::untrusted) << o->reason;
}

TEST_F(ws_tls_test, spki_pin_is_checked_in_the_verification_callback) {
  start(false);
  auto t = trust();
  t.pinned_public_key = pki_.wrong_pin;
  auto o = open(t);
  EXPECT_FALSE(o->opened);
  EXPECT_EQ(o->kind, tls_failure::pin_mismatch) << o->reason;
  EXPECT_NE(o->reason.find(pki_.server_pin), std::string::npos) << o->reason;
  t.pinned_public_key = pki_.server_pin;
  o = open(t);
  EXPECT_TRUE(o->opened) << o->reason;
  // An invalid pin is refused when the loop is made.
  t.pinned_public_key = "sha256//short";
  ws::loop_options bad;
  bad.tls = true;
  bad.tls_config = t;
  EXPECT_THROW(ws::ws_loop(bad, ws::loop_handlers{}), std::runtime_error);
}

TEST_F(ws_tls_test, mutual_tls_needs_the_client_certificate) {
  start(true);
  auto o = open(trust());
  EXPECT_FALSE(o->opened);
  EXPECT_TRUE(o->closed);
  EXPECT_EQ(o->kind, tls_failure::client_certificate) << o->reason;
  auto t = trust();
  t.client_cert = pki_.device_cert;
  t.client_key = pki_.device_key;
  o = open(t);
  EXPECT_TRUE(o->opened) << o->reason;
}

TEST_F(ws_tls_test, insecure_development_switch_warns_on_every_connection) {
  start(false);
  tls_options t;
  t.insecure_skip_verify = true;
  auto o = open(t);
  EXPECT_TRUE(o->opened) << o->reason;
  ASSERT_EQ(o->warnings.size(), 1u);
  EXPECT_NE(o->warnings[0].find("verification is OFF"), std::string::npos);
  o = open(t);
  EXPECT_EQ(o->warnings.size(), 1u);
}

} // namespace
