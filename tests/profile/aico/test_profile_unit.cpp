// Unit tests of the aico wire profile's pure pieces (src/profile/aico): the
// secure channel (against the test peer's own crypto helpers as the server
// side, an independent implementation), the error decoder for every shape of
// the wire document's section 2.8, the NDJSON reader and the call mapping.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <boost/json.hpp>

#include "aico_peer/crypto.hpp"
#include "src/profile/aico/calls.hpp"
#include "src/profile/aico/ndjson.hpp"
#include "src/profile/aico/secure_channel.hpp"
#include "src/profile/aico/wire_errors.hpp"

namespace ap = aico::aico_profile;
namespace peer = aico::peer;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct tmpdir {
  std::string path;
  tmpdir() {
    char t[] = "/tmp/aico-profile-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~tmpdir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

int mode_of(const std::string& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

ap::identity test_identity(char fill = 'k') {
  return *ap::identity_from_seed(std::string(32, fill));
}

/// The server side of a handshake, written with the peer's crypto helpers.
struct fake_server {
  peer::sign_keypair idk = peer::ed25519_from_seed(std::string(32, 's'));
  peer::box_keypair eph = peer::x25519_generate();
  std::optional<peer::nacl_box> box;

  std::string answer(const std::string& request, bool bad_sig = false) {
    auto v = json::parse(request);
    auto& hr = v.at("handshake_request").as_object();
    auto client_eph = peer::b64_decode(std::string(hr.at("public_key").as_string()));
    box = peer::nacl_box::make(*client_eph, eph.sk);
    auto challenge = peer::random_bytes(32);
    auto sig = peer::ed25519_sign(challenge, idk.sk);
    if (bad_sig)
      sig[0] ^= 1;
    json::object r{{"component", "backend"},
                   {"public_key", peer::b64_encode(eph.pk)},
                   {"identity_key", peer::b64_encode(idk.pk)},
                   {"timestamp", 1.0},
                   {"challenge", peer::b64_encode(challenge)},
                   {"signature", peer::b64_encode(sig)}};
    return json::serialize(json::object{{"status", "session_established"},
                                         {"handshake_response", r}});
  }
  std::string response_envelope(const std::string& plain) {
    return json::serialize(
      json::object{{"encrypted", true},
                   {"payload", peer::b64_encode(box->seal(plain))},
                   {"encryption", "xchacha20poly1305"}});
  }
};

} // namespace

// -- identity and pins --------------------------------------------------------------

TEST(AicoIdentity, CreatedPrivateAndStable) {
  tmpdir t;
  auto dir = t.path + "/state/aico";
  std::string err;
  auto a = ap::load_or_create_identity(dir, err);
  ASSERT_TRUE(a) << err;
  EXPECT_EQ(a->client_id.size(), 16u);
  EXPECT_EQ(a->client_id, ap::hex(a->public_key).substr(0, 16));
  EXPECT_EQ(mode_of(dir), 0700);
  EXPECT_EQ(mode_of(dir + "/identity.key"), 0600);
  auto b = ap::load_or_create_identity(dir, err);
  ASSERT_TRUE(b) << err;
  EXPECT_EQ(a->client_id, b->client_id);
  EXPECT_EQ(a->secret_key, b->secret_key);
}

TEST(AicoIdentity, RefusedWhenOthersCanReadIt) {
  tmpdir t;
  std::string err;
  ASSERT_TRUE(ap::load_or_create_identity(t.path, err)) << err;
  ::chmod((t.path + "/identity.key").c_str(), 0644);
  auto again = ap::load_or_create_identity(t.path, err);
  EXPECT_FALSE(again);
  EXPECT_NE(err.find("can be read or written by others"), std::string::npos)
    << err;
  ::chmod((t.path + "/identity.key").c_str(), 0640);
  EXPECT_FALSE(ap::load_or_create_identity(t.path, err));
}

TEST(AicoIdentity, GarbageRefusedWithASentence) {
  tmpdir t;
  {
    std::ofstream f(t.path + "/identity.key");
    f << "not base64!\n";
  }
  ::chmod((t.path + "/identity.key").c_str(), 0600);
  std::string err;
  EXPECT_FALSE(ap::load_or_create_identity(t.path, err));
  EXPECT_NE(err.find("does not hold a base64 Ed25519 seed"), std::string::npos)
    << err;
}

TEST(AicoPins, PinnedPerAuthority) {
  tmpdir t;
  ap::pin_store pins(t.path + "/known_servers");
  std::string err;
  EXPECT_EQ(pins.pinned("127.0.0.1:8771", err), "");
  EXPECT_TRUE(err.empty()) << err;
  ASSERT_TRUE(pins.pin("127.0.0.1:8771", "KEYA", err)) << err;
  ASSERT_TRUE(pins.pin("127.0.0.1:9999", "KEYB", err)) << err;
  EXPECT_EQ(pins.pinned("127.0.0.1:8771", err), "KEYA");
  EXPECT_EQ(pins.pinned("127.0.0.1:9999", err), "KEYB");
  EXPECT_EQ(pins.pinned("127.0.0.1:877", err), "");
  EXPECT_EQ(mode_of(t.path + "/known_servers"), 0600);
}

// -- the channel -----------------------------------------------------------------------

TEST(AicoChannel, HandshakeRequestIsSignedAndWellFormed) {
  ap::secure_channel ch(test_identity(), {}, {}, [] { return 1000.5; });
  auto v = json::parse(ch.begin_handshake());
  auto& hr = v.at("handshake_request").as_object();
  EXPECT_EQ(hr.at("component").as_string(), "flutter_client");
  EXPECT_EQ(hr.at("timestamp").as_double(), 1000.5);
  auto idk = peer::b64_decode(std::string(hr.at("identity_key").as_string()));
  auto chal = peer::b64_decode(std::string(hr.at("challenge").as_string()));
  auto sig = peer::b64_decode(std::string(hr.at("signature").as_string()));
  ASSERT_TRUE(idk && chal && sig);
  EXPECT_EQ(chal->size(), 32u);
  EXPECT_TRUE(peer::ed25519_verify(*chal, *sig, *idk));
  EXPECT_EQ(peer::hex(*idk).substr(0, 16), ch.client_id());
  EXPECT_EQ(hr.size(), 6u); // unknown fields make the backend answer 500
}

TEST(AicoChannel, AcceptSealOpenBothWays) {
  fake_server srv;
  ap::secure_channel ch(test_identity());
  EXPECT_TRUE(ch.needs_handshake());
  auto res = ch.accept(200, srv.answer(ch.begin_handshake()));
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_EQ(res.server_identity, peer::b64_encode(srv.idk.pk));
  EXPECT_TRUE(ch.is_open());
  EXPECT_FALSE(ch.needs_handshake());
  // client -> server
  auto env = json::parse(ch.envelope("{\"a\":1}"));
  EXPECT_EQ(env.at("client_id").as_string(), ch.client_id());
  EXPECT_TRUE(env.at("encrypted").as_bool());
  auto raw = peer::b64_decode(std::string(env.at("payload").as_string()));
  ASSERT_TRUE(raw);
  auto plain = srv.box->open(*raw);
  ASSERT_TRUE(plain);
  EXPECT_EQ(*plain, "{\"a\":1}");
  // server -> client
  auto u = ch.unwrap(srv.response_envelope("{\"detail\":\"x\"}"));
  EXPECT_EQ(u.kind, ap::body_kind::decrypted);
  EXPECT_EQ(u.text, "{\"detail\":\"x\"}");
  // clear bodies stay clear
  EXPECT_EQ(ch.unwrap("Internal Server Error").kind, ap::body_kind::clear);
  EXPECT_EQ(ch.unwrap("{\"error\":\"Encryption required\"}").kind,
            ap::body_kind::clear);
  // a foreign envelope does not open
  fake_server other;
  ap::secure_channel ch2(test_identity('z'));
  ASSERT_TRUE(ch2.accept(200, other.answer(ch2.begin_handshake())).ok);
  EXPECT_EQ(ch.unwrap(other.response_envelope("{}")).kind,
            ap::body_kind::undecryptable);
}

TEST(AicoChannel, BadSignatureAndChangedKeyRefused) {
  fake_server srv;
  ap::secure_channel ch(test_identity());
  auto bad = ch.accept(200, srv.answer(ch.begin_handshake(), true));
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.error.find("signature does not verify"), std::string::npos);
  EXPECT_FALSE(ch.is_open());
  auto changed = ch.accept(200, srv.answer(ch.begin_handshake()),
                           peer::b64_encode(std::string(32, 'x')));
  EXPECT_FALSE(changed.ok);
  EXPECT_TRUE(changed.identity_changed);
  EXPECT_NE(changed.error.find("differs from the one pinned"),
            std::string::npos);
  EXPECT_FALSE(ch.is_open());
  auto same = ch.accept(200, srv.answer(ch.begin_handshake()),
                        peer::b64_encode(srv.idk.pk));
  EXPECT_TRUE(same.ok) << same.error;
  EXPECT_FALSE(ch.accept(500, "{\"error\":\"Handshake processing failed\"}").ok);
  EXPECT_FALSE(ch.accept(200, "{\"status\":\"nope\"}").ok);
}

TEST(AicoChannel, LifetimeWithInjectedClock) {
  auto now = std::chrono::steady_clock::time_point{} + 1h;
  ap::secure_channel::options o;
  o.lifetime = 3600s;
  o.margin = 60s;
  ap::secure_channel ch(test_identity(), o, [&] { return now; });
  fake_server srv;
  ASSERT_TRUE(ch.accept(200, srv.answer(ch.begin_handshake())).ok);
  now += 3539s;
  EXPECT_FALSE(ch.needs_handshake());
  now += 1s; // 3540 s = lifetime - margin
  EXPECT_TRUE(ch.needs_handshake());
  EXPECT_TRUE(ch.is_open()); // still usable until renewed
  ASSERT_TRUE(ch.accept(200, srv.answer(ch.begin_handshake())).ok);
  EXPECT_FALSE(ch.needs_handshake());
  ch.invalidate(); // the clear 401 "Encryption required", a reconnect
  EXPECT_TRUE(ch.needs_handshake());
}

// -- errors (wire document 2.8) -----------------------------------------------------------

TEST(AicoErrors, EveryShape) {
  using ap::decode_error;
  auto e = decode_error(401, "application/json",
                        R"({"error":"Encryption required","message":"Perform handshake at /api/v1/handshake first"})",
                        false);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->rehandshake);
  EXPECT_EQ(e->code, "encryption_required");
  EXPECT_EQ(e->cls, aico::error_class::authentication);

  e = decode_error(400, "", R"({"error":"Encryption error","detail":"Failed to decrypt payload: x"})", false);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "encryption_error");
  EXPECT_EQ(e->cls, aico::error_class::validation);
  EXPECT_FALSE(e->rehandshake);

  e = decode_error(500, "", R"({"error":"Internal server error"})", false);
  EXPECT_EQ(e->cls, aico::error_class::server_error);
  EXPECT_TRUE(e->retryable);

  EXPECT_EQ(decode_error(400, "", R"({"error":"Invalid handshake format"})", false)->code,
            "handshake_invalid");
  EXPECT_EQ(decode_error(405, "", R"({"error":"Method not allowed"})", false)->code,
            "method_not_allowed");
  EXPECT_EQ(decode_error(500, "", R"({"error":"Handshake processing failed"})", false)->code,
            "handshake_failed");

  e = decode_error(403, "", R"({"detail":"Not authenticated"})", true);
  EXPECT_TRUE(e->missing_token);
  EXPECT_EQ(e->cls, aico::error_class::authentication);
  EXPECT_EQ(e->code, "unauthenticated");

  e = decode_error(401, "", R"({"detail":"Token has expired"})", true);
  EXPECT_EQ(e->code, "token_expired");
  EXPECT_EQ(e->status, 401);
  EXPECT_EQ(decode_error(401, "", R"({"detail":"Invalid token"})", true)->code,
            "invalid_token");

  e = decode_error(422, "", R"({"detail":[{"type":"missing","loc":["body","pin"],"msg":"Field required","input":{}}]})", true);
  EXPECT_EQ(e->cls, aico::error_class::validation);
  EXPECT_NE(e->message.find("field 'body.pin': Field required"),
            std::string::npos)
    << e->message;

  e = decode_error(404, "", R"({"detail":"Not Found"})", true);
  EXPECT_EQ(e->code, "not_found");
  e = decode_error(401, "", R"({"detail":"This endpoint requires encrypted communication. ","hint":"h","endpoint":"/x"})", true);
  EXPECT_EQ(e->cls, aico::error_class::validation);
  e = decode_error(409, "", R"({"detail":"conflict here"})", true);
  EXPECT_EQ(e->cls, aico::error_class::validation);
  EXPECT_NE(e->message.find("conflict here"), std::string::npos);

  e = decode_error(500, "text/plain; charset=utf-8", "Internal Server Error", false);
  EXPECT_EQ(e->cls, aico::error_class::server_error);
  EXPECT_NE(e->message.find("Internal Server Error"), std::string::npos);

  e = decode_error(200, "", R"({"success":false,"user":null,"error":"Invalid PIN"})", true);
  EXPECT_EQ(e->cls, aico::error_class::authentication);
  EXPECT_EQ(e->code, "invalid_credentials");
  EXPECT_FALSE(e->retryable);
  EXPECT_EQ(decode_error(200, "", R"({"success":false,"error":"Account locked"})", true)->code,
            "account_locked");
  EXPECT_EQ(decode_error(200, "", R"({"success":false,"error":"Invalid token type - refresh token required"})", true)->code,
            "invalid_refresh_token");

  e = decode_error(200, "", R"({"encrypted":true,"payload":"AAAA"})", true, true);
  EXPECT_EQ(e->code, "undecryptable");

  EXPECT_FALSE(decode_error(200, "", R"({"success":true})", true));
  EXPECT_FALSE(decode_error(200, "", R"({"status":"healthy"})", false));

  auto s = ap::decode_stream_error(R"({"type":"error","error":"Streaming timeout"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->code, "streaming_timeout");
  EXPECT_TRUE(s->outcome_unknown);
  EXPECT_FALSE(s->retryable);
  s = ap::decode_stream_error(R"({"type":"error","error":"model exploded"})");
  EXPECT_EQ(s->code, "stream_error");
  EXPECT_FALSE(ap::decode_stream_error(R"({"type":"chunk"})"));
}

// -- NDJSON ------------------------------------------------------------------------------

TEST(AicoNdjson, LinesAcrossAnyChunking) {
  std::string body = "{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":3}";
  for (std::size_t step = 1; step <= body.size(); ++step) {
    ap::ndjson_reader r;
    std::vector<std::string> lines;
    auto on = [&](std::string_view l) { lines.emplace_back(l); };
    for (std::size_t i = 0; i < body.size(); i += step)
      ASSERT_TRUE(r.feed(std::string_view(body).substr(i, step), on));
    ASSERT_TRUE(r.finish(on));
    ASSERT_EQ(lines.size(), 3u) << step;
    EXPECT_EQ(lines[1], "{\"b\":2}");
    EXPECT_EQ(lines[2], "{\"c\":3}");
  }
}

TEST(AicoNdjson, LineCap) {
  ap::ndjson_reader r(8);
  int n = 0;
  auto on = [&](std::string_view) { ++n; };
  EXPECT_TRUE(r.feed("12345678\n", on));
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(r.feed("123456789", on));
  EXPECT_TRUE(r.failed());
  EXPECT_FALSE(r.feed("\n", on));
  EXPECT_EQ(n, 1);
}

TEST(AicoNdjson, ReplyStreamRoutesChunks) {
  ap::reply_stream s;
  EXPECT_EQ(s.add(R"({"type":"metadata","message_id":"m1","conversation_id":"u_1","timestamp":"2026-11-24T11:19:49.957719"})").kind,
            ap::line_kind::metadata);
  EXPECT_EQ(s.add(R"({"type":"chunk","content":"hm","accumulated":"hm","done":false,"content_type":"thinking"})").kind,
            ap::line_kind::thinking);
  EXPECT_EQ(s.add(R"({"type":"chunk","content":"Hello","accumulated":"Hello","done":false,"content_type":"response"})").kind,
            ap::line_kind::response);
  EXPECT_EQ(s.add("not json").kind, ap::line_kind::other);
  EXPECT_FALSE(s.done());
  EXPECT_EQ(s.add(R"({"type":"chunk","content":"","accumulated":"Hello world","done":true,"content_type":"response","conversation_id":"u_1","message_id":"m1"})").kind,
            ap::line_kind::final);
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.response(), "Hello world"); // accumulated wins (lost chunks)
  EXPECT_EQ(s.thinking(), "hm");
  EXPECT_EQ(s.message_id(), "m1");
  EXPECT_EQ(s.conversation_id(), "u_1");
  EXPECT_EQ(s.chunks(), 2u);
  ap::reply_stream e;
  e.add(R"({"type":"error","error":"Streaming timeout"})");
  ASSERT_TRUE(e.error());
  EXPECT_EQ(e.error()->code, "streaming_timeout");
}

// -- call mapping -----------------------------------------------------------------------------

namespace {

ap::wire_request wire(const ap::logical_call& c) {
  auto r = ap::map_call(c);
  if (auto* e = std::get_if<ap::wire_error>(&r))
    ADD_FAILURE() << e->message;
  if (auto* w = std::get_if<ap::wire_request>(&r))
    return *w;
  return {};
}

/// An unsigned JWT-shaped token with these claims (the profile only reads).
std::string token_with(const json::object& claims) {
  auto enc = [](const std::string& s) {
    auto b = peer::b64url_encode(s);
    return b;
  };
  return enc("{\"alg\":\"HS256\"}") + "." + enc(json::serialize(claims)) + ".sig";
}

} // namespace

TEST(AicoCalls, LoginAndRefresh) {
  auto w = wire({"POST", "/users/authenticate",
                 R"({"username":"a11ce000-0000-4000-8000-000000000001","password":"1234"})",
                 ""});
  EXPECT_EQ(w.path, "/api/v1/users/authenticate");
  EXPECT_TRUE(w.encrypted);
  EXPECT_EQ(json::parse(w.body),
            json::parse(R"({"user_uuid":"a11ce000-0000-4000-8000-000000000001","pin":"1234"})"));
  auto r = wire({"POST", "/users/refresh", R"({"refresh_token":"RT"})", "ACCESS"});
  EXPECT_EQ(r.path, "/api/v1/users/refresh");
  EXPECT_EQ(r.token, ""); // no Bearer on refresh
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"refresh_token":"RT"})"));

  auto at = token_with({{"sub", "u1"}, {"user_uuid", "u1"}, {"username", "Alice"},
                        {"roles", json::array{"user"}}, {"iat", 100}, {"exp", 1000},
                        {"type", "access"}});
  auto rt = token_with({{"iat", 100}, {"exp", 604900}, {"type", "refresh"}});
  auto plain = json::serialize(json::object{
    {"success", true},
    {"user", json::object{{"uuid", "u1"}, {"full_name", "Alice Test"},
                          {"created_at", "2026-11-24T11:15:09"}}},
    {"jwt_token", at}, {"refresh_token", rt}, {"error", nullptr}});
  auto m = ap::map_reply(w, 200, plain);
  auto* a = std::get_if<ap::engine_answer>(&m);
  ASSERT_TRUE(a);
  auto v = json::parse(a->body);
  EXPECT_TRUE(v.at("success").as_bool());
  auto& d = v.at("data").as_object();
  EXPECT_EQ(d.at("access_token").as_string(), at);
  EXPECT_EQ(d.at("refresh_token").as_string(), rt);
  EXPECT_EQ(d.at("expires_in").as_int64(), 900);
  EXPECT_EQ(d.at("refresh_expires_in").as_int64(), 604800);
  EXPECT_EQ(d.at("user").at("id").as_string(), "u1");
  EXPECT_EQ(d.at("user").at("display_name").as_string(), "Alice Test");
  EXPECT_EQ(d.at("user").at("role").as_string(), "user");
}

TEST(AicoCalls, LogoutAndMeAreLocal) {
  auto r = ap::map_call({"POST", "/users/logout", "{}", "T"});
  auto* l = std::get_if<ap::local_answer>(&r);
  ASSERT_TRUE(l);
  EXPECT_EQ(json::parse(l->body).at("data").at("logged_out").as_bool(), true);
  auto at = token_with({{"user_uuid", "u1"}, {"username", "Alice"},
                        {"roles", json::array{"admin"}}});
  r = ap::map_call({"GET", "/users/me", "", at});
  l = std::get_if<ap::local_answer>(&r);
  ASSERT_TRUE(l);
  auto v = json::parse(l->body);
  EXPECT_EQ(v.at("data").at("role").as_string(), "admin");
  r = ap::map_call({"GET", "/users/me", "", ""});
  ASSERT_TRUE(std::get_if<ap::wire_error>(&r));
  EXPECT_TRUE(std::get<ap::wire_error>(r).missing_token);
}

TEST(AicoCalls, SendKeepsOnlyReusableConversations) {
  auto w = wire({"POST", "/conversations/messages",
                 R"({"id":"k1","conversation_id":"current","content":"hi","type":"text","metadata":{"x":1}})",
                 "TOK"});
  EXPECT_EQ(w.path, "/api/v1/conversation/messages?stream=true");
  EXPECT_TRUE(w.stream);
  EXPECT_EQ(w.token, "TOK");
  auto b = json::parse(w.body).as_object();
  EXPECT_EQ(b.at("message").as_string(), "hi");
  EXPECT_FALSE(b.if_contains("conversation_id"));
  w = wire({"POST", "/conversations/messages",
            R"({"id":"k2","conversation_id":"u1_1764000000","content":"again"})", "TOK"});
  EXPECT_EQ(json::parse(w.body).at("conversation_id").as_string(),
            "u1_1764000000");

  ap::reply_stream s;
  s.add(R"({"type":"metadata","message_id":"m9","conversation_id":"u1_5","timestamp":"2026-11-24T11:19:49.957719"})");
  s.add(R"({"type":"chunk","content":"ok","accumulated":"ok","done":false,"content_type":"response"})");
  s.add(R"({"type":"chunk","content":"","accumulated":"ok","done":true,"content_type":"response","conversation_id":"u1_5","message_id":"m9"})");
  auto o = ap::map_send(w, s, "u1_5");
  auto* out = std::get_if<ap::send_outcome>(&o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->sent.id, "k2");
  EXPECT_EQ(out->sent.conversation_id, "u1_5");
  EXPECT_EQ(out->sent.timestamp, "2026-11-24T11:19:49.957Z");
  EXPECT_EQ(out->reply.id, "m9");
  EXPECT_EQ(out->reply.reply_to, "k2");
  EXPECT_EQ(out->reply.content, "ok");
  auto ans = ap::send_answer(*out);
  EXPECT_EQ(ans.status, 201);
  EXPECT_EQ(json::parse(ans.body).at("data").at("id").as_string(), "k2");

  ap::reply_stream cut;
  cut.add(R"({"type":"metadata","message_id":"m9"})");
  auto c = ap::map_send(w, cut, "");
  ASSERT_TRUE(std::get_if<ap::wire_error>(&c));
  EXPECT_TRUE(std::get<ap::wire_error>(c).outcome_unknown);
}

TEST(AicoCalls, HistoryPaging) {
  auto w = wire({"GET", "/conversations/current/messages?since=2&limit=3", "", "T"});
  EXPECT_EQ(w.path, "/api/v1/conversation/messages?page=2&page_size=3");
  EXPECT_EQ(w.body, "{}");
  w = wire({"GET", "/conversations/u1_5/messages?limit=500", "", "T"});
  EXPECT_EQ(w.path,
            "/api/v1/conversation/messages?page=1&page_size=100&conversation_id=u1_5");
  w = wire({"GET", "/conversations/u1_5/messages?limit=2", "", "T"});
  std::string page = R"({"success":true,"conversation_id":"u1_5","messages":[
    {"id":"h2","conversation_id":"u1_5","user_id":"u1","content":"You said: hi","role":"assistant","timestamp":"2026-11-24T11:19:50.000001","message_type":"assistant_response"},
    {"id":"h1","conversation_id":"u1_5","user_id":"u1","content":"hi","role":"user","timestamp":"2026-11-24T11:19:49.5","message_type":"user_input"}],
    "total_count":2,"page":1,"page_size":2})";
  bool ok = false;
  auto h = ap::history_from_wire(w, page, ok);
  ASSERT_TRUE(ok);
  ASSERT_EQ(h.messages.size(), 2u);
  EXPECT_EQ(h.messages[0].id, "h1"); // ascending
  EXPECT_EQ(h.messages[1].sender, "companion");
  EXPECT_LT(h.messages[0].seq, h.messages[1].seq);
  EXPECT_TRUE(h.has_more); // a full page: older ones may follow
  EXPECT_EQ(h.next_since, 2u);
  auto m = ap::map_reply(w, 200, page);
  ASSERT_TRUE(std::get_if<ap::engine_answer>(&m));
}

TEST(AicoCalls, HealthAndUnsupported) {
  auto w = wire({"GET", "/health", "", ""});
  EXPECT_FALSE(w.encrypted);
  EXPECT_EQ(w.path, "/api/v1/health");
  auto m = ap::map_reply(w, 200, R"({"status":"healthy","service":"aico-backend","version":"1.0.0","timestamp":"t","uptime_seconds":1.9})");
  auto v = json::parse(std::get<ap::engine_answer>(m).body);
  EXPECT_TRUE(v.at("data").at("is_healthy").as_bool());
  auto r = ap::map_call({"PUT", "/users/me/preferences", "{}", "T"});
  ASSERT_TRUE(std::get_if<ap::wire_error>(&r));
  EXPECT_EQ(std::get<ap::wire_error>(r).cls, aico::error_class::validation);
  EXPECT_NE(std::get<ap::wire_error>(r).message.find("no equivalent"),
            std::string::npos);
  for (auto& row : ap::call_table())
    EXPECT_NE(std::string(row.engine_path), "");
}

TEST(AicoCalls, Times) {
  EXPECT_EQ(ap::parse_aico_time("1970-01-01T00:00:01.5"), 1500);
  EXPECT_EQ(ap::parse_aico_time("bad"), -1);
  EXPECT_EQ(ap::iso_ms(1500), "1970-01-01T00:00:01.500Z");
}
