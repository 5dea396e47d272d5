// JWT claim decoding (no signature check) and base64url.
#include <gtest/gtest.h>

#include <string>

#include "src/core/jwt_claims.hpp"

using namespace aico;

namespace {

std::string make_token(const std::string& payload_json) {
  return base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "."
         + base64url_encode(payload_json) + ".c2lnbmF0dXJl";
}

std::string message_of(const caf::error& err) {
  return classify(err).message;
}

} // namespace

TEST(base64url, known_vectors_round_trip) {
  // RFC 4648 test vectors (url alphabet, no padding)
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("foob"), "Zm9vYg");
  EXPECT_EQ(base64url_encode("fooba"), "Zm9vYmE");
  EXPECT_EQ(base64url_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  std::string out;
  ASSERT_TRUE(base64url_decode("Zm9vYmE", out));
  EXPECT_EQ(out, "fooba");
  ASSERT_TRUE(base64url_decode("Zm9vYmE=", out)); // padding accepted
  EXPECT_EQ(out, "fooba");
  ASSERT_TRUE(base64url_decode("-_8", out));
  EXPECT_EQ(out, "\xfb\xff");
  ASSERT_TRUE(base64url_decode("+/8", out)); // standard alphabet too
  EXPECT_EQ(out, "\xfb\xff");
  std::string all;
  for (int i = 0; i < 256; ++i)
    all.push_back(static_cast<char>(i));
  ASSERT_TRUE(base64url_decode(base64url_encode(all), out));
  EXPECT_EQ(out, all);
}

TEST(base64url, rejects_bad_input) {
  std::string out;
  EXPECT_FALSE(base64url_decode("Zm9v!", out));
  EXPECT_FALSE(base64url_decode("Zm 9v", out));
  EXPECT_FALSE(base64url_decode("Z", out)); // 6 bits cannot make a byte
  EXPECT_FALSE(base64url_decode("Zm9vY", out));
  EXPECT_TRUE(out.empty());
}

TEST(jwt_claims, valid_token) {
  auto tok = make_token(
    R"({"sub":"u-42","name":"alice","role":"admin","iat":1700000000,)"
    R"("exp":1700000900,"jti":"abc"})");
  auto c = decode_jwt_claims(tok);
  ASSERT_TRUE(c) << to_string(c.error());
  EXPECT_EQ(c->sub, "u-42");
  EXPECT_EQ(c->name, "alice");
  EXPECT_EQ(c->role, "admin");
  EXPECT_EQ(c->iat, 1700000000);
  EXPECT_EQ(c->exp, 1700000900);
}

TEST(jwt_claims, numeric_sub_float_exp_and_missing_claims) {
  auto c = decode_jwt_claims(make_token(R"({"sub":7,"exp":1700000900.0})"));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->sub, "7");
  EXPECT_EQ(c->exp, 1700000900);
  EXPECT_EQ(c->iat, 0);
  EXPECT_EQ(c->name, "");
  EXPECT_EQ(c->role, "");
  auto empty = decode_jwt_claims(make_token("{}"));
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->exp, 0);
}

TEST(jwt_claims, payload_with_padding_is_accepted) {
  auto payload = base64url_encode(R"({"exp":5})") + "==";
  auto c = decode_jwt_claims("aGVhZGVy." + payload + ".sig");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->exp, 5);
}

TEST(jwt_claims, malformed_structure) {
  for (std::string tok : {"", "abc", "a.b", "a.b.c.d", "a..c", ".", "..",
                          "a.b.c.d.e"}) {
    auto c = decode_jwt_claims(tok);
    ASSERT_FALSE(c) << tok;
    EXPECT_EQ(classify(c.error()).cls, error_class::validation);
  }
}

TEST(jwt_claims, bad_base64) {
  auto c = decode_jwt_claims("eyJhbGciOiJIUzI1NiJ9.e$J!.sig");
  ASSERT_FALSE(c);
  EXPECT_NE(message_of(c.error()).find("base64url"), std::string::npos);
  EXPECT_FALSE(decode_jwt_claims("h.Z.sig")); // impossible length
}

TEST(jwt_claims, payload_not_json) {
  auto c = decode_jwt_claims("h." + base64url_encode("not json {") + ".s");
  ASSERT_FALSE(c);
  EXPECT_NE(message_of(c.error()).find("JSON"), std::string::npos);
}

TEST(jwt_claims, non_object_payload) {
  for (std::string payload : {"[1,2,3]", "42", "\"text\"", "null", "true"}) {
    auto c = decode_jwt_claims(make_token(payload));
    ASSERT_FALSE(c) << payload;
    EXPECT_NE(message_of(c.error()).find("not a JSON object"),
              std::string::npos);
  }
}

TEST(jwt_claims, wrong_claim_types) {
  EXPECT_FALSE(decode_jwt_claims(make_token(R"({"exp":"soon"})")));
  EXPECT_FALSE(decode_jwt_claims(make_token(R"({"iat":[1]})")));
  EXPECT_FALSE(decode_jwt_claims(make_token(R"({"sub":{"id":1}})")));
  EXPECT_FALSE(decode_jwt_claims(make_token(R"({"exp":1e300})")));
  EXPECT_FALSE(
    decode_jwt_claims(make_token(R"({"exp":18446744073709551615})")));
}

TEST(jwt_claims, error_never_contains_the_token) {
  const std::string secretish = "SECRETPART";
  for (std::string tok : {secretish, secretish + ".x$y.z",
                          "h." + base64url_encode("[\"" + secretish + "\"]")
                            + ".s",
                          "h." + base64url_encode(secretish) + ".s"}) {
    auto c = decode_jwt_claims(tok);
    ASSERT_FALSE(c);
    EXPECT_EQ(to_string(c.error()).find(secretish), std::string::npos)
      << to_string(c.error());
  }
}
