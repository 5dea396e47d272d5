// The classification table: every failure maps to one class + retryability.
#include <gtest/gtest.h>

#include "messages/errors.hpp"

using namespace aico;

namespace {

struct status_case {
  int32_t status;
  error_class cls;
  bool retryable;
};

} // namespace

TEST(classify, maps_every_http_status_class) {
  const status_case table[] = {
    {400, error_class::validation, false},
    {401, error_class::authentication, false},
    {403, error_class::authorization, false},
    {404, error_class::validation, false},
    {405, error_class::validation, false},
    {408, error_class::timeout, true},
    {409, error_class::validation, false},
    {413, error_class::validation, false},
    {422, error_class::validation, false},
    {429, error_class::server_error, true},
    {500, error_class::server_error, true},
    {501, error_class::server_error, false},
    {502, error_class::server_error, true},
    {503, error_class::server_error, true},
    {504, error_class::server_error, true},
    {302, error_class::unknown, false},
    {418, error_class::unknown, false},
  };
  for (auto& c : table) {
    auto err = make_status_error(c.status, "{}");
    auto res = classify(err);
    EXPECT_EQ(res.cls, c.cls) << "status " << c.status;
    EXPECT_EQ(res.retryable, c.retryable) << "status " << c.status;
    EXPECT_EQ(res.status, c.status);
  }
}

TEST(classify, reads_code_message_and_retry_after_from_the_envelope) {
  auto err = make_status_error(
    503, R"({"success":false,"message":"injected","code":"unavailable"})",
    "2");
  auto res = classify(err);
  EXPECT_EQ(res.cls, error_class::server_error);
  EXPECT_EQ(res.code, "unavailable");
  EXPECT_EQ(res.message, "injected");
  EXPECT_EQ(res.retry_after_ms, 2000);
  EXPECT_EQ(describe(err), "server_error (503 unavailable): injected");
}

TEST(classify, survives_garbage_bodies_and_headers) {
  auto res = classify(make_status_error(500, "not json at all", "soon"));
  EXPECT_EQ(res.cls, error_class::server_error);
  EXPECT_EQ(res.retry_after_ms, -1);
  EXPECT_FALSE(res.message.empty());
  res = classify(make_status_error(400, "[1,2]", "-5"));
  EXPECT_EQ(res.cls, error_class::validation);
  EXPECT_EQ(res.retry_after_ms, -1);
}

TEST(classify, maps_engine_errors) {
  EXPECT_TRUE(classify(make_engine_error(error_class::network, "x")).retryable);
  EXPECT_TRUE(classify(make_engine_error(error_class::timeout, "x")).retryable);
  EXPECT_FALSE(
    classify(make_engine_error(error_class::validation, "x")).retryable);
  EXPECT_FALSE(
    classify(make_engine_error(error_class::authentication, "x")).retryable);
  EXPECT_FALSE(classify(make_engine_error(error_class::unknown, "x")).retryable);
  auto res = classify(make_engine_error(error_class::network, "refused"));
  EXPECT_EQ(res.cls, error_class::network);
  EXPECT_EQ(res.message, "refused");
}

TEST(classify, maps_caf_system_errors) {
  auto t = classify(caf::make_error(caf::sec::request_timeout));
  EXPECT_EQ(t.cls, error_class::timeout);
  EXPECT_TRUE(t.retryable);
  auto d = classify(caf::make_error(caf::sec::request_receiver_down));
  EXPECT_EQ(d.cls, error_class::network);
  EXPECT_TRUE(d.retryable);
  auto u = classify(caf::make_error(caf::sec::unexpected_message));
  EXPECT_EQ(u.cls, error_class::unknown);
  EXPECT_FALSE(u.retryable);
}

TEST(classify, error_code_is_the_class) {
  auto err = make_engine_error(error_class::authorization, "nope", 403);
  EXPECT_EQ(err, error_class::authorization);
  EXPECT_NE(err, error_class::authentication);
}
