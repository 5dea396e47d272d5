// The curl loop's TLS options against the real gateway serving TLS (and
// mutual TLS) on 127.0.0.1, with certificates made at test time: verification
// is on by default, a CA file makes a test CA trusted, a wrong SPKI pin or a
// missing client certificate fails with a classified error, and the insecure
// development switch works only with a warning.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "src/transport/curl/http_loop.hpp"
#include "support/gateway_process.hpp"
#include "support/test_pki.hpp"

namespace {

using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::temp_dir;
using aico::test::test_pki;
using aico::transport::tls_failure;
namespace http = aico::http;

struct waiter {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<http::response> done;
  std::vector<std::string> warnings;

  void add(http::response r) {
    std::lock_guard<std::mutex> g{mtx};
    done.push_back(std::move(r));
    cv.notify_all();
  }
  bool wait(std::size_t n, std::chrono::milliseconds t = 5s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, t, [&] { return done.size() >= n; });
  }
};

class http_tls_test : public ::testing::Test {
protected:
  void start(bool mutual) {
    pki_dir_ = std::make_unique<temp_dir>("aico-pki");
    pki_ = aico::test::make_test_pki(pki_dir_->path());
    gateway_options o;
    o.bot = false;
    o.extra_args = aico::test::gateway_tls_args(pki_, mutual);
    gw_ = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
    url_ = "https://127.0.0.1:" + std::to_string(gw_->port())
           + "/api/v1/health";
  }

  /// One GET /health with these TLS settings.
  http::response get(const aico::transport::tls_options& tls,
                     waiter* w = nullptr) {
    waiter local;
    waiter& res = w ? *w : local;
    http::loop_options lo;
    lo.tls = tls;
    lo.on_warning = [&res](const std::string& text) {
      std::lock_guard<std::mutex> g{res.mtx};
      res.warnings.push_back(text);
    };
    http::loop lp{lo};
    http::request rq;
    rq.url = url_;
    rq.timeout = 5s;
    auto before = res.done.size();
    lp.submit(rq, [&res](http::response r) { res.add(std::move(r)); });
    EXPECT_TRUE(res.wait(before + 1, 8s));
    lp.stop();
    std::lock_guard<std::mutex> g{res.mtx};
    return res.done.empty() ? http::response{} : res.done.back();
  }

  aico::transport::tls_options trust() const {
    aico::transport::tls_options t;
    t.ca_file = pki_.ca_cert;
    return t;
  }

  std::unique_ptr<temp_dir> pki_dir_;
  test_pki pki_;
  std::unique_ptr<gateway_process> gw_;
  std::string url_;
};

TEST_F(http_tls_test, verification_is_on_by_default) {
  start(false);
  auto r = get({});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.fail, http::failure::network);
  EXPECT_EQ(r.tls, tls_failure::untrusted) << r.error;
  EXPECT_EQ(r.error.rfind("TLS: the gateway's certificate is not trusted", 0),
            0u)
    << r.error;
}

TEST_F(http_tls_test, the_right_ca_works_another_does_not) {
  start(false);
  auto r = get(trust());
  EXPECT_EQ(r.fail, http::failure::none) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.tls, tls_failure::none);
  auto rogue = trust();
  rogue.ca_file = pki_.rogue_ca_cert;
  r = get(rogue);
  EXPECT_EQ(r.tls, tls_failure::untrusted) << r.error;
  // A CA directory (OpenSSL hashed layout) works too.
  temp_dir cadir("aico-cadir");
  auto link = cadir.path() + "/" + aico::test::subject_hash_name(pki_.ca_cert);
  ASSERT_EQ(::symlink(pki_.ca_cert.c_str(), link.c_str()), 0);
  aico::transport::tls_options dir;
  dir.ca_dir = cadir.path();
  r = get(dir);
  EXPECT_EQ(r.status, 200) << r.error;
}

TEST_F(http_tls_test, spki_pin_is_checked) {
  start(false);
  auto t = trust();
  t.pinned_public_key = pki_.wrong_pin;
  auto r = get(t);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.tls, tls_failure::pin_mismatch) << r.error;
  t.pinned_public_key = pki_.wrong_pin + ";" + pki_.server_pin;
  r = get(t);
  EXPECT_EQ(r.status, 200) << r.error;
  // A malformed pin is a clear local error, not a connection attempt.
  t.pinned_public_key = "sha256//not-base64";
  r = get(t);
  EXPECT_EQ(r.fail, http::failure::unknown);
  EXPECT_EQ(r.tls, tls_failure::local_files);
  EXPECT_NE(r.error.find("invalid public key pin"), std::string::npos)
    << r.error;
}

TEST_F(http_tls_test, mutual_tls_needs_the_client_certificate) {
  start(true);
  auto r = get(trust());
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.tls, tls_failure::client_certificate) << r.error;
  auto t = trust();
  t.client_cert = pki_.device_cert;
  t.client_key = pki_.device_key;
  r = get(t);
  EXPECT_EQ(r.status, 200) << r.error;
  // A certificate of a CA the gateway does not know is refused too.
  t.client_cert = pki_.rogue_device_cert;
  t.client_key = pki_.rogue_device_key;
  r = get(t);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.tls, tls_failure::client_certificate) << r.error;
}

TEST_F(http_tls_test, insecure_development_switch_warns_every_time) {
  start(false);
  aico::transport::tls_options t;
  t.insecure_skip_verify = true;
  waiter w;
  auto r = get(t, &w);
  EXPECT_EQ(r.status, 200) << r.error;
  r = get(t, &w);
  EXPECT_EQ(r.status, 200) << r.error;
  std::lock_guard<std::mutex> g{w.mtx};
  ASSERT_EQ(w.warnings.size(), 2u);
  EXPECT_NE(w.warnings[0].find("verification is OFF"), std::string::npos);
}

TEST(http_tls_classify, curl_codes_and_texts) {
  // CURLE_PEER_FAILED_VERIFICATION 60, CURLE_SSL_PINNEDPUBKEYNOTMATCH 90,
  // CURLE_SSL_CERTPROBLEM 58, CURLE_SSL_CONNECT_ERROR 35, CURLE_RECV_ERROR
  // 56, CURLE_COULDNT_CONNECT 7.
  EXPECT_EQ(http::classify_curl_tls(60, ""), tls_failure::untrusted);
  EXPECT_EQ(http::classify_curl_tls(90, ""), tls_failure::pin_mismatch);
  EXPECT_EQ(http::classify_curl_tls(58, ""), tls_failure::local_files);
  EXPECT_EQ(http::classify_curl_tls(35, "OpenSSL SSL_connect: SSL_ERROR_"
                                        "SYSCALL"),
            tls_failure::handshake);
  EXPECT_EQ(http::classify_curl_tls(
              56, "OpenSSL SSL_read: error:0A00045C:SSL routines::tlsv13 "
                  "alert certificate required, errno 0"),
            tls_failure::client_certificate);
  EXPECT_EQ(http::classify_curl_tls(56, "Connection reset by peer"),
            tls_failure::none);
  EXPECT_EQ(http::classify_curl_tls(7, "Failed to connect"),
            tls_failure::none);
}

} // namespace
