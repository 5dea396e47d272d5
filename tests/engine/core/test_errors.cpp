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
  EXPECT_EQ(describe(err), "the gateway failed (injected; 503 unavailable)");
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

// -- describe: what people see ------------------------------------------------

namespace {

/// A sentence for people: not empty, one line, no raw caf::error rendering.
void expect_sentence(const std::string& text, const std::string& what) {
  EXPECT_FALSE(text.empty()) << what;
  EXPECT_EQ(text.find("error("), std::string::npos) << what << ": " << text;
  EXPECT_EQ(text.find('\n'), std::string::npos) << what << ": " << text;
  EXPECT_EQ(text.find("'aico'"), std::string::npos) << what << ": " << text;
}

} // namespace

TEST(describe, is_a_sentence_for_every_error_class) {
  const error_class all[] = {error_class::network,
                             error_class::authentication,
                             error_class::authorization,
                             error_class::validation,
                             error_class::server_error,
                             error_class::timeout,
                             error_class::unknown};
  for (auto c : all) {
    auto with_detail = describe(make_engine_error(c, "some detail", 400, "x"));
    expect_sentence(with_detail, to_string(c));
    EXPECT_EQ(with_detail.rfind(lead_of(c), 0), 0u) << with_detail;
    EXPECT_NE(with_detail.find("some detail; 400 x"), std::string::npos)
      << with_detail;
    auto bare = describe(make_engine_error(c, ""));
    EXPECT_EQ(bare, lead_of(c));
  }
  // an aico error without the usual context, or with a code out of range
  expect_sentence(describe(caf::make_error(error_class::network)), "bare");
  expect_sentence(describe(caf::error{static_cast<uint8_t>(99),
                                      caf::atom("aico")}),
                  "out of range");
}

TEST(describe, words_the_chat_login_failure_as_the_issue_asks) {
  EXPECT_EQ(describe(make_engine_error(error_class::network,
                                       "no transport available")),
            "gateway unreachable (no transport available)");
  EXPECT_EQ(describe(make_status_error(
              401, R"({"success":false,"message":"invalid username or )"
                   R"(password","code":"invalid_credentials"})")),
            "authentication failed (invalid username or password; 401 "
            "invalid_credentials)");
}

TEST(describe, is_a_sentence_for_every_caf_system_error) {
  for (int i = 0; i <= static_cast<int>(caf::sec::connection_timeout); ++i) {
    auto code = static_cast<caf::sec>(i);
    auto err = caf::make_error(code);
    auto text = describe(err);
    expect_sentence(text, caf::to_string(code));
    // the class is still machine readable
    auto c = classify(err);
    if (code == caf::sec::request_timeout) {
      EXPECT_EQ(c.cls, error_class::timeout);
    } else if (code == caf::sec::request_receiver_down) {
      EXPECT_EQ(c.cls, error_class::network);
    } else if (code != caf::sec::none) {
      EXPECT_EQ(c.cls, error_class::unknown) << text;
    }
  }
  EXPECT_EQ(describe(caf::make_error(caf::sec::unexpected_message)),
            "unexpected error (internal error of the engine (unexpected "
            "message))");
}

TEST(describe, is_a_sentence_for_exit_reasons_and_foreign_categories) {
  for (int i = 0; i <= 7; ++i) {
    auto r = static_cast<caf::exit_reason>(i);
    expect_sentence(describe(caf::make_error(r)), caf::to_string(r));
  }
  EXPECT_EQ(describe(caf::make_error(caf::exit_reason::user_shutdown)),
            "unexpected error (an engine component stopped (user shutdown))");
  expect_sentence(describe(caf::error{static_cast<uint8_t>(3),
                                      caf::atom("other")}),
                  "foreign");
  EXPECT_EQ(describe(caf::error{}), "no error");
}
