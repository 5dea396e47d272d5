// Wire document section 2.1: the handshake, the envelope, channel lookup,
// the encryption middleware's clear-text answers and its quirks.
#include <sodium.h>

#include "peer_fixture.hpp"

namespace aico::test {
namespace {

const std::string status_path = "/api/v1/conversation/status";
const std::string health_detailed = "/api/v1/health/detailed";

TEST_F(PeerTest, HandshakeEstablishesASessionSignedByAStableServerIdentity) {
  aico_client c(peer->host(), peer->http_port());
  std::string why;
  ASSERT_TRUE(c.handshake(&why)) << why;
  auto& h = c.last_handshake();
  EXPECT_EQ(h.status, 200);
  EXPECT_FALSE(h.encrypted);
  EXPECT_EQ(h.str("/status"), "session_established");
  EXPECT_EQ(h.str("/handshake_response/component"), "backend");
  EXPECT_TRUE(jptr(h.json, "/handshake_response/timestamp")->is_double());
  // handshake() verified the server's signature over its own challenge
  // with identity_key; it is the identity the peer announced.
  EXPECT_EQ(c.pinned_identity(), peer->identity_key());
  EXPECT_EQ(c.client_id().size(), 16u);
  EXPECT_EQ(c.client_id(), to_hex(*unb64(c.identity_key_b64())).substr(0, 16));

  // The identity key is stable per data directory...
  ASSERT_EQ(peer->stop(), 0);
  ASSERT_TRUE(peer->start()) << peer->last_error();
  ASSERT_TRUE(c.handshake(&why)) << why; // still matches the pin
  // ...and differs for another installation.
  peer_process other;
  ASSERT_TRUE(other.start()) << other.last_error();
  aico_client c2(other.host(), other.http_port());
  ASSERT_TRUE(c2.handshake(&why)) << why;
  EXPECT_NE(c2.pinned_identity(), c.pinned_identity());
}

TEST_F(PeerTest, HandshakeErrorsAreClearWithTheirOwnShapes) {
  aico_client c(peer->host(), peer->http_port());
  auto http = plain();
  auto get = http.request("GET", "/api/v1/handshake");
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.raw, R"({"error":"Method not allowed"})");
  auto no_req = http.request("POST", "/api/v1/handshake", R"({"hello":1})");
  EXPECT_EQ(no_req.status, 400);
  EXPECT_EQ(no_req.raw, R"({"error":"Invalid handshake format"})");
  const std::string failed = R"({"error":"Handshake processing failed"})";
  auto not_json = http.request("POST", "/api/v1/handshake", "nope");
  EXPECT_EQ(not_json.status, 500);
  EXPECT_EQ(not_json.raw, failed);

  auto send = [&](json::object req) {
    return http.request("POST", "/api/v1/handshake", to_text(req));
  };
  // A signature by another key.
  auto req = c.handshake_request();
  aico_client other(peer->host(), peer->http_port());
  auto foreign = other.handshake_request();
  req["handshake_request"].as_object()["signature"]
    = foreign["handshake_request"].as_object()["signature"];
  EXPECT_EQ(send(req).raw, failed);
  // Outside the 30 s window, and just inside it.
  EXPECT_EQ(send(c.handshake_request(-31)).status, 500);
  EXPECT_EQ(send(c.handshake_request(+31)).status, 500);
  EXPECT_EQ(send(c.handshake_request(-28)).status, 200);
  // identity_key is required (the fallback to public_key cannot succeed).
  req = c.handshake_request();
  req["handshake_request"].as_object().erase("identity_key");
  EXPECT_EQ(send(req).status, 500);
  // Unknown fields give a 500.
  req = c.handshake_request();
  req["handshake_request"].as_object()["extra"] = 1;
  EXPECT_EQ(send(req).status, 500);
  // A missing timestamp is filled in by the server.
  req = c.handshake_request();
  req["handshake_request"].as_object().erase("timestamp");
  auto ok = send(req);
  EXPECT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(jstr(ok.body, "/status"), "session_established");
}

TEST_F(PeerTest, WithoutAChannelEveryProtectedPathSaysEncryptionRequired) {
  const std::string expected
    = R"({"error":"Encryption required","message":"Perform handshake at /api/v1/handshake first"})";
  auto http = plain();
  for (auto path :
       {status_path, health_detailed, std::string("/api/v1/no/such/route")}) {
    auto r = http.request("GET", path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.raw, expected) << path;
    EXPECT_EQ(r.header("content-type"), "application/json");
  }
  // Plain JSON (the engine's default profile) gets the same clear 401.
  auto login = http.request("POST", "/api/v1/users/authenticate",
                            R"({"user_uuid":"x","pin":"1234"})");
  EXPECT_EQ(login.status, 401);
  EXPECT_EQ(login.raw, expected);
  // An envelope for a client the server does not know.
  aico_client stranger(peer->host(), peer->http_port());
  auto r = stranger.call("GET", status_path);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.raw, expected);
}

TEST_F(PeerTest, EveryBodyIsAnEnvelopeAndTheResponsePlaintextIsPythonCompact) {
  auto c = connected();
  auto [access, refresh] = login(c);
  auto r = c.call("GET", "/api/v1/gateway/status");
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(r.encrypted);
  // json.dumps defaults for the envelope, with the wrong cipher label.
  EXPECT_EQ(r.raw.rfind(R"({"encrypted": true, "payload": ")", 0), 0u) << r.raw;
  EXPECT_NE(r.raw.find(R"(", "encryption": "xchacha20poly1305"})"),
            std::string::npos)
    << r.raw;
  EXPECT_EQ(
    r.plain,
    R"({"status":"healthy","service":"aico-api-gateway","adapters":["rest","websocket"],"version":"1.0.0"})");
  // Non-ASCII is escaped in the plaintext (ensure_ascii).
  auto s = c.call("POST", "/api/v1/conversation/messages",
                  json::object{{"message", "h\xC3\xA9llo \xF0\x9F\x98\x80"}},
                  access);
  ASSERT_EQ(s.status, 200) << s.raw;
  EXPECT_NE(s.plain.find(R"(You said: h\u00e9llo \ud83d\ude00)"),
            std::string::npos)
    << s.plain;
  EXPECT_EQ(s.str("/ai_response"), "You said: h\xC3\xA9llo \xF0\x9F\x98\x80");
}

TEST_F(PeerTest, ChannelLookupUsesTheBodyThenForGetTheHeaderAndQuery) {
  auto c = connected();
  auto http = plain();
  // GET without a body: X-Client-ID header, then ?client_id=.
  auto by_header = c.send_raw("GET", health_detailed, "", "",
                              {{"X-Client-ID", c.client_id()}});
  EXPECT_EQ(by_header.status, 200);
  EXPECT_TRUE(by_header.encrypted);
  EXPECT_EQ(by_header.str("/container"), "healthy");
  auto by_query
    = c.send_raw("GET", health_detailed + "?client_id=" + c.client_id(), "");
  EXPECT_EQ(by_query.status, 200);
  EXPECT_TRUE(by_query.encrypted);
  // A body naming an unknown client falls back to the header for GET.
  aico_client stranger(peer->host(), peer->http_port());
  auto fallback
    = c.send_raw("GET", health_detailed,
                 to_text(json::object{{"client_id", "0000000000000000"}}), "",
                 {{"X-Client-ID", c.client_id()}});
  EXPECT_EQ(fallback.status, 200);
  // The header is not read for other methods.
  auto post = c.send_raw("POST", "/api/v1/conversation/health", "", "",
                         {{"X-Client-ID", c.client_id()}});
  EXPECT_EQ(post.status, 401);
  EXPECT_EQ(post.str("/error"), "Encryption required");
}

TEST_F(PeerTest, ADecryptFailureIsAClear400) {
  auto c = connected();
  auto check = [&](const std::string& body) {
    auto r = c.send_raw("POST", "/api/v1/users/authenticate", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_FALSE(r.encrypted);
    EXPECT_EQ(r.str("/error"), "Encryption error") << r.raw;
    EXPECT_EQ(r.str("/detail").rfind("Failed to decrypt payload: ", 0), 0u)
      << r.raw;
  };
  // A ciphertext with one bit flipped.
  auto payload = *unb64(c.seal(R"({"user_uuid":"x","pin":"1234"})"));
  payload.back() = static_cast<char>(payload.back() ^ 1);
  check(to_text(json::object{{"encrypted", true},
                             {"payload", b64(payload)},
                             {"client_id", c.client_id()}}));
  // Not base64, too short, not a string.
  check(to_text(json::object{
    {"encrypted", true}, {"payload", "%%%"}, {"client_id", c.client_id()}}));
  check(to_text(json::object{
    {"encrypted", true}, {"payload", "AAAA"}, {"client_id", c.client_id()}}));
  check(to_text(json::object{
    {"encrypted", true}, {"payload", 5}, {"client_id", c.client_id()}}));
  // Plaintext that is not JSON.
  check(to_text(json::object{{"encrypted", true},
                             {"payload", c.seal("not json")},
                             {"client_id", c.client_id()}}));
}

TEST_F(PeerTest, ANewHandshakeReplacesTheChannelOfThatClient) {
  auto c = connected();
  auto old = c; // same identity, old session key
  std::string why;
  ASSERT_TRUE(c.handshake(&why)) << why;
  EXPECT_EQ(c.call("GET", "/api/v1/gateway/status").status, 200);
  auto r = old.call(
    "POST", "/api/v1/users/authenticate",
    json::object{{"user_uuid", pu::alice_uuid}, {"pin", pu::alice_pin}});
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.str("/error"), "Encryption error");
}

class ShortChannelTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--channel-ttl", "0.3"};
    return o;
  }
};

TEST_F(ShortChannelTest, AChannelExpiresAfterItsLifetimeAndAHandshakeRenewsIt) {
  auto c = connected();
  ASSERT_EQ(c.call("GET", "/api/v1/gateway/status").status, 200);
  ASSERT_TRUE(eventually(
    [&] { return c.call("GET", "/api/v1/gateway/status").status == 401; }));
  auto r = c.call("GET", "/api/v1/gateway/status");
  EXPECT_EQ(r.str("/error"), "Encryption required");
  std::string why;
  ASSERT_TRUE(c.handshake(&why)) << why;
  EXPECT_EQ(c.call("GET", "/api/v1/gateway/status").status, 200);
}

TEST_F(PeerTest, ChannelsDoNotSurviveARestart) {
  auto c = connected();
  ASSERT_EQ(c.call("GET", "/api/v1/gateway/status").status, 200);
  peer->kill9();
  ASSERT_TRUE(peer->start()) << peer->last_error();
  auto r = c.call("GET", "/api/v1/gateway/status");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.str("/error"), "Encryption required");
  std::string why;
  ASSERT_TRUE(c.handshake(&why)) << why;
  EXPECT_EQ(c.call("GET", "/api/v1/gateway/status").status, 200);
}

TEST_F(PeerTest, PlaintextToABodyReadingProtectedPathHangs) {
  auto c = connected();
  // Plaintext JSON that names a valid channel: the client waits in vain.
  aico_client impatient = c;
  impatient.set_timeout(600ms);
  auto plaintext = to_text(json::object{{"user_uuid", pu::alice_uuid},
                                        {"pin", pu::alice_pin},
                                        {"client_id", c.client_id()}});
  auto r = impatient.send_raw("POST", "/api/v1/users/authenticate", plaintext);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error.rfind("timeout", 0), 0u) << r.error;
  // A JSON body without "payload" counts as plaintext too.
  auto no_payload
    = to_text(json::object{{"encrypted", true}, {"client_id", c.client_id()}});
  auto r2
    = impatient.send_raw("POST", "/api/v1/conversation/messages", no_payload);
  EXPECT_EQ(r2.error.rfind("timeout", 0), 0u) << r2.error;
  EXPECT_EQ(stat("plaintext_hangs"), 2);
  // Routes that do not read a body answer (encrypted) despite plaintext.
  auto ok = c.send_raw("POST", "/api/v1/users/logout",
                       to_text(json::object{{"client_id", c.client_id()}}));
  EXPECT_EQ(ok.status, 401);
  EXPECT_TRUE(ok.encrypted);
  EXPECT_EQ(ok.str("/detail"), "No valid token provided");
}

class ShortHangTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--hang-timeout", "0.3"};
    return o;
  }
};

TEST_F(ShortHangTest, TheServerEndsAHangAfterItsBoundWithoutAnswering) {
  auto c = connected(5000ms);
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.send_raw("POST", "/api/v1/users/refresh",
                      to_text(json::object{{"refresh_token", "x"},
                                           {"client_id", c.client_id()}}));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.status, 0); // closed without a response
  EXPECT_EQ(r.error.rfind("timeout", 0), std::string::npos) << r.error;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3000ms);
}

TEST_F(PeerTest, ANonObjectJsonBodyWithAValidChannelIsAClear500) {
  auto c = connected();
  auto r = c.send_raw("GET", status_path, "[1,2]", "",
                      {{"X-Client-ID", c.client_id()}});
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.raw, R"({"error":"Internal server error"})");
}

TEST_F(PeerTest, AnEncryptedBodyWithANonJsonContentTypeIs422) {
  auto c = connected();
  auto r = c.call(
    "POST", "/api/v1/users/authenticate",
    json::object{{"user_uuid", pu::alice_uuid}, {"pin", pu::alice_pin}}, "",
    {{"Content-Type", "text/plain"}});
  EXPECT_EQ(r.status, 422) << r.raw;
  ASSERT_TRUE(r.encrypted);
  EXPECT_EQ(r.str("/detail/0/type"), "model_attributes_type");
}

} // namespace
} // namespace aico::test
