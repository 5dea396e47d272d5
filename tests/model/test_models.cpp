// Unit tests of the typed models (messages/models.hpp) and their Boost.JSON
// codecs (src/model/codec.hpp).
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "caf/all.hpp"
#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"

#include "messages/errors.hpp"
#include "messages/type_ids.hpp"
#include "src/model/codec.hpp"

using namespace aico;
namespace json = boost::json;

namespace {

// -- payloads shaped like the reference gateway's (docs/protocol.md) -----------

const char* message_json = R"({
  "id": "m-1714564800-1", "conversation_id": "default-u_alice",
  "content": "hello there, companion", "type": "text",
  "sender_id": "u_alice", "sender": "alice",
  "timestamp": "2024-05-01T12:00:00.123Z", "timestamp_ms": 1714564800123,
  "seq": 42, "status": "sent", "read_at": null, "metadata": {},
  "reply_to": null})";

const char* bot_message_json = R"({
  "id": "bot-m-1714564800-1", "conversation_id": "default-u_alice",
  "content": "You said: companion, hello", "type": "text",
  "sender_id": "companion", "sender": "companion",
  "timestamp": "2024-05-01T12:00:00.456Z", "timestamp_ms": 1714564800456,
  "seq": 43, "status": "read", "read_at": "2024-05-01T12:00:05.000Z",
  "metadata": {"lang": "en", "tags": ["a", "b"], "n": {"deep": 1}},
  "reply_to": "m-1714564800-1"})";

std::string history_json() {
  return std::string{R"({"conversation_id":"default-u_alice","messages":[)"}
         + message_json + "," + bot_message_json + "," + message_json
         + R"(],"has_more":true,"next_since":43})";
}

const char* user_json = R"({"id":"u_alice","username":"alice",
  "display_name":"Alice","role":"admin",
  "preferences":{"theme":"dark","volume":7,"ratio":0.5,"notify":true},
  "created_at":"2024-04-30T08:15:00.000Z"})";

const char* family_json = R"({"members":[
  {"id":"u_bob","username":"bob","display_name":"Bob","role":"user",
   "preferences":{},"created_at":"2024-04-30T08:15:00.000Z"},
  {"id":"u_carol","username":"carol","display_name":"Carol","role":"user",
   "preferences":{"theme":"light"},"created_at":"2024-04-30T08:16:00.000Z"}]})";

const char* health_json = R"({"is_healthy":true,"version":"0.1.0",
  "timestamp":"2024-05-01T12:00:00.000Z",
  "services":{"database":"up","http":"up","websocket":"up","ipc":"down"}})";

const char* health_detailed_json = R"({"is_healthy":true,"version":"0.1.0",
  "timestamp":"2024-05-01T12:00:00.000Z",
  "services":{"database":"up","http":"up","websocket":"up","ipc":"up"},
  "uptime_s":3600,"connections":{"http":2,"ws":1,"ipc":0},
  "counts":{"users":3,"messages":120,"subscriptions":2},
  "faults":{"ipc":"up","ws":"up","latency_ms":0,"fail_ratio":0,
            "fail_status":503,"enabled":false}})";

const char* status_json = R"({"is_healthy":false,"version":"0.1.0",
  "timestamp":"2024-05-01T12:00:00.000Z",
  "services":{"database":"down","http":"up","websocket":"up","ipc":"up"},
  "uptime_s":12})";

const char* chunk_json = R"({"conversation_id":"default-u_alice",
  "reply_to":"m-1","message_id":"bot-m-1","seq_no":2,"chunk":"hello ",
  "done":false})";

const char* update_event_json = R"({"update_id":"upd_0a1b2c3d",
  "status":"scheduled","version":"0.1.0",
  "timestamp":"2024-05-01T12:00:00.000Z"})";

// -- helpers --------------------------------------------------------------------

std::string error_message(const caf::error& err) {
  return classify(err).message;
}

template <class T>
void expect_validation_error(const caf::expected<T>& res,
                             const std::string& needle) {
  ASSERT_FALSE(res) << "decoded although " << needle << " was expected";
  auto c = classify(res.error());
  EXPECT_EQ(c.cls, error_class::validation) << c.message;
  EXPECT_FALSE(c.retryable);
  EXPECT_NE(c.message.find(needle), std::string::npos)
    << "message \"" << c.message << "\" does not contain \"" << needle
    << "\"";
}

/// json::parse with the codec's depth limit (the default is 32).
json::value parse_deep(const std::string& text) {
  json::parse_options opt;
  opt.max_depth = max_json_depth;
  return json::parse(text, {}, opt);
}

json::object parse_object(const std::string& text) {
  return parse_deep(text).as_object();
}

std::string without(const std::string& text, const char* key) {
  auto o = parse_object(text);
  o.erase(key);
  return json::serialize(o);
}

std::string with(const std::string& text, const char* key,
                 const std::string& value_json) {
  auto o = parse_object(text);
  o[key] = parse_deep(value_json);
  return json::serialize(o);
}

chat_message sample_message() {
  chat_message m;
  m.id = "m-7";
  m.conversation_id = "conv-1";
  m.content = "Grüße \"quoted\" \n newline \xF0\x9F\x98\x80";
  m.type = "image";
  m.sender_id = "u_alice";
  m.sender = "alice";
  m.timestamp = "2024-05-01T12:00:00.123Z";
  m.timestamp_ms = 1714564800123;
  m.seq = 18446744073709551615ull;
  m.status = message_status::failed;
  m.failure_reason = "validation (400 validation_error): content too long";
  m.read_at = "2024-05-01T12:01:00.000Z";
  // JSON text fields round-trip in Boost.JSON's compact form.
  m.metadata = json::serialize(
    json::parse(R"({"a":[1,2.5,"x",null,true],"b":{"c":{}}})"));
  m.reply_to = "m-6";
  return m;
}

user_preferences sample_prefs() {
  user_preferences p;
  p.values["theme"] = pref_value::of("dark");
  p.values["volume"] = pref_value::of(int64_t{-3});
  p.values["ratio"] = pref_value::of(0.1);
  p.values["notify"] = pref_value::of(false);
  p.values["gone"] = pref_value::null_value();
  return p;
}

template <class T>
void expect_round_trip(const T& x) {
  auto text = encode(x);
  auto back = decode_as<T>(text);
  ASSERT_TRUE(back) << error_message(back.error()) << " in " << text;
  EXPECT_TRUE(*back == x) << text;
  EXPECT_EQ(encode(*back), text);
  // Also through a parsed value.
  auto again = decode_value<T>(to_json_value(x));
  ASSERT_TRUE(again) << error_message(again.error());
  EXPECT_TRUE(*again == x);
}

} // namespace

// -- message status -------------------------------------------------------------

TEST(MessageStatus, StringsRoundTrip) {
  const std::vector<std::pair<message_status, std::string>> all = {
    {message_status::queued, "queued"},
    {message_status::sending, "sending"},
    {message_status::sent, "sent"},
    {message_status::delivered, "delivered"},
    {message_status::read, "read"},
    {message_status::failed, "failed"},
  };
  for (auto& [st, name] : all) {
    EXPECT_EQ(to_string(st), name);
    message_status parsed = message_status::queued;
    if (st == message_status::queued)
      parsed = message_status::failed;
    ASSERT_TRUE(from_string(name, parsed)) << name;
    EXPECT_EQ(parsed, st);
  }
  message_status keep = message_status::sent;
  EXPECT_FALSE(from_string("SENT", keep));
  EXPECT_FALSE(from_string("", keep));
  EXPECT_FALSE(from_string("pending", keep));
  EXPECT_EQ(keep, message_status::sent);
}

TEST(MessageStatus, DefaultsOfANewMessage) {
  chat_message m;
  EXPECT_EQ(m.status, message_status::queued);
  EXPECT_EQ(m.type, "text");
  EXPECT_EQ(m.metadata, "{}");
  EXPECT_EQ(m.seq, 0u);
}

// -- messages -------------------------------------------------------------------

TEST(DecodeMessage, GatewayShape) {
  auto m = decode_message(message_json);
  ASSERT_TRUE(m) << error_message(m.error());
  EXPECT_EQ(m->id, "m-1714564800-1");
  EXPECT_EQ(m->conversation_id, "default-u_alice");
  EXPECT_EQ(m->content, "hello there, companion");
  EXPECT_EQ(m->type, "text");
  EXPECT_EQ(m->sender_id, "u_alice");
  EXPECT_EQ(m->sender, "alice");
  EXPECT_EQ(m->timestamp, "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(m->timestamp_ms, 1714564800123);
  EXPECT_EQ(m->seq, 42u);
  EXPECT_EQ(m->status, message_status::sent);
  EXPECT_EQ(m->read_at, "");
  EXPECT_EQ(m->metadata, "{}");
  EXPECT_EQ(m->reply_to, "");
  EXPECT_EQ(m->failure_reason, "");
}

TEST(DecodeMessage, BotReplyReadWithMetadata) {
  auto m = decode_message(bot_message_json);
  ASSERT_TRUE(m) << error_message(m.error());
  EXPECT_EQ(m->status, message_status::read);
  EXPECT_EQ(m->read_at, "2024-05-01T12:00:05.000Z");
  EXPECT_EQ(m->reply_to, "m-1714564800-1");
  EXPECT_EQ(m->sender, "companion");
  EXPECT_EQ(json::parse(m->metadata),
            json::parse(R"({"lang":"en","tags":["a","b"],"n":{"deep":1}})"));
}

TEST(DecodeMessage, OptionalFieldsGetDefaults) {
  std::string text = message_json;
  for (auto key : {"type", "read_at", "metadata", "reply_to"})
    text = without(text, key);
  auto m = decode_message(text);
  ASSERT_TRUE(m) << error_message(m.error());
  EXPECT_EQ(m->type, "text");
  EXPECT_EQ(m->read_at, "");
  EXPECT_EQ(m->metadata, "{}");
  EXPECT_EQ(m->reply_to, "");
  auto n = decode_message(with(message_json, "metadata", "null"));
  ASSERT_TRUE(n);
  EXPECT_EQ(n->metadata, "{}");
}

TEST(DecodeMessage, UnknownFieldsAreIgnored) {
  auto m = decode_message(
    with(message_json, "future_field", R"({"x":[1,2,{"y":null}]})"));
  ASSERT_TRUE(m) << error_message(m.error());
  EXPECT_EQ(m->id, "m-1714564800-1");
}

TEST(DecodeMessage, EachRequiredFieldMissingIsNamed) {
  for (auto key : {"id", "conversation_id", "content", "sender_id", "sender",
                   "timestamp", "timestamp_ms", "seq", "status"}) {
    SCOPED_TRACE(key);
    auto res = decode_message(without(message_json, key));
    expect_validation_error(res, std::string{"field '"} + key + "': missing");
    EXPECT_EQ(classify(res.error()).code, "bad_field");
  }
}

TEST(DecodeMessage, WrongTypesAndRanges) {
  struct probe {
    const char* key;
    const char* value;
    const char* expected;
  };
  const probe probes[] = {
    {"id", "7", "field 'id': expected string, got integer"},
    {"id", R"("")", "field 'id': must not be empty"},
    {"content", "null", "field 'content': expected string, got null"},
    {"content", "[]", "field 'content': expected string, got array"},
    {"type", "1", "field 'type': expected string, got integer"},
    {"seq", R"("42")", "field 'seq': expected integer, got string"},
    {"seq", "-1", "field 'seq': must not be negative"},
    {"seq", "42.0", "field 'seq': expected integer, got number"},
    {"seq", "4e1", "field 'seq': expected integer, got number"},
    {"timestamp_ms", "1.5", "field 'timestamp_ms': expected integer, got number"},
    {"timestamp_ms", "-5", "field 'timestamp_ms': must not be negative"},
    {"timestamp_ms", "18446744073709551615", "field 'timestamp_ms': out of range"},
    {"timestamp_ms", "true", "field 'timestamp_ms': expected integer, got boolean"},
    {"status", R"("bogus")", "field 'status': unknown value \"bogus\""},
    {"status", "1", "field 'status': expected string, got integer"},
    {"read_at", "0", "field 'read_at': expected string, got integer"},
    {"reply_to", "{}", "field 'reply_to': expected string, got object"},
    {"metadata", "[]", "field 'metadata': expected object, got array"},
    {"metadata", R"("{}")", "field 'metadata': expected object, got string"},
    {"failure_reason", "false",
     "field 'failure_reason': expected string, got boolean"},
  };
  for (auto& p : probes) {
    SCOPED_TRACE(std::string{p.key} + " = " + p.value);
    expect_validation_error(decode_message(with(message_json, p.key, p.value)),
                            p.expected);
  }
}

TEST(DecodeMessage, LargestSeqIsAccepted) {
  auto m = decode_message(with(message_json, "seq", "18446744073709551615"));
  ASSERT_TRUE(m) << error_message(m.error());
  EXPECT_EQ(m->seq, 18446744073709551615ull);
}

TEST(DecodeMessage, LongKeysAndValuesAreClippedInErrors) {
  std::string status(1000, 'x');
  auto res = decode_message(with(message_json, "status", '"' + status + '"'));
  ASSERT_FALSE(res);
  EXPECT_LT(error_message(res.error()).size(), 200u);
}

TEST(DecodeMessage, NotAnObject) {
  expect_validation_error(decode_message("[]"),
                          "field '(root)': expected object, got array");
  expect_validation_error(decode_message("null"),
                          "field '(root)': expected object, got null");
}

// -- history --------------------------------------------------------------------

TEST(DecodeHistory, GatewayShape) {
  auto h = decode_history_page(history_json());
  ASSERT_TRUE(h) << error_message(h.error());
  EXPECT_EQ(h->conversation_id, "default-u_alice");
  ASSERT_EQ(h->messages.size(), 3u);
  EXPECT_EQ(h->messages[1].id, "bot-m-1714564800-1");
  EXPECT_EQ(h->messages[1].seq, 43u);
  EXPECT_TRUE(h->has_more);
  EXPECT_EQ(h->next_since, 43u);
}

TEST(DecodeHistory, EmptyHistory) {
  auto h = decode_history_page(
    R"({"conversation_id":"c","messages":[],"has_more":false,"next_since":0})");
  ASSERT_TRUE(h) << error_message(h.error());
  EXPECT_TRUE(h->messages.empty());
  EXPECT_FALSE(h->has_more);
}

TEST(DecodeHistory, NestedErrorsNameThePath) {
  auto o = parse_object(history_json());
  o["messages"].as_array()[2].as_object()["seq"] = -3;
  expect_validation_error(decode_history_page(json::serialize(o)),
                          "field 'messages[2].seq': must not be negative");
  o = parse_object(history_json());
  o["messages"].as_array()[1].as_object()["timestamp_ms"] = 1.25;
  expect_validation_error(
    decode_history_page(json::serialize(o)),
    "field 'messages[1].timestamp_ms': expected integer, got number");
  o = parse_object(history_json());
  o["messages"].as_array()[0].as_object().erase("content");
  expect_validation_error(decode_history_page(json::serialize(o)),
                          "field 'messages[0].content': missing");
  o = parse_object(history_json());
  o["messages"].as_array()[1] = "not a message";
  expect_validation_error(
    decode_history_page(json::serialize(o)),
    "field 'messages[1]': expected object, got string");
}

TEST(DecodeHistory, RequiredFields) {
  for (auto key : {"conversation_id", "messages", "has_more", "next_since"}) {
    SCOPED_TRACE(key);
    expect_validation_error(decode_history_page(without(history_json(), key)),
                            std::string{"field '"} + key + "': missing");
  }
  expect_validation_error(
    decode_history_page(with(history_json(), "messages", "{}")),
    "field 'messages': expected array, got object");
  expect_validation_error(
    decode_history_page(with(history_json(), "has_more", "1")),
    "field 'has_more': expected boolean, got integer");
  expect_validation_error(
    decode_history_page(with(history_json(), "next_since", "-1")),
    "field 'next_since': must not be negative");
}

// -- users ----------------------------------------------------------------------

TEST(DecodeUser, GatewayShape) {
  auto u = decode_user(user_json);
  ASSERT_TRUE(u) << error_message(u.error());
  EXPECT_EQ(u->id, "u_alice");
  EXPECT_EQ(u->username, "alice");
  EXPECT_EQ(u->display_name, "Alice");
  EXPECT_EQ(u->role, "admin");
  EXPECT_EQ(u->created_at, "2024-04-30T08:15:00.000Z");
  auto p = preferences_of(*u);
  ASSERT_TRUE(p) << error_message(p.error());
  ASSERT_EQ(p->values.size(), 4u);
  EXPECT_EQ(p->values["theme"], pref_value::of("dark"));
  EXPECT_EQ(p->values["volume"], pref_value::of(int64_t{7}));
  EXPECT_EQ(p->values["ratio"], pref_value::of(0.5));
  EXPECT_EQ(p->values["notify"], pref_value::of(true));
}

TEST(DecodeUser, RequiredAndOptionalFields) {
  for (auto key : {"id", "username", "display_name", "role", "created_at"}) {
    SCOPED_TRACE(key);
    expect_validation_error(decode_user(without(user_json, key)),
                            std::string{"field '"} + key + "': missing");
  }
  auto u = decode_user(without(user_json, "preferences"));
  ASSERT_TRUE(u) << error_message(u.error());
  EXPECT_EQ(u->preferences, "{}");
}

TEST(DecodeUser, PreferencesMustBeFlat) {
  expect_validation_error(
    decode_user(with(user_json, "preferences", R"({"theme":{"a":1}})")),
    "field 'preferences.theme': expected string, number, boolean or null, "
    "got object");
  expect_validation_error(
    decode_user(with(user_json, "preferences", R"({"list":[1]})")),
    "field 'preferences.list'");
  expect_validation_error(decode_user(with(user_json, "preferences", "[]")),
                          "field 'preferences': expected object, got array");
}

TEST(DecodePreferences, AllScalarKinds) {
  auto p = decode_preferences(
    R"({"s":"x","i":-4,"big":18446744073709551615,"d":2.5,"b":true,"n":null})");
  ASSERT_TRUE(p) << error_message(p.error());
  EXPECT_EQ(p->values["s"].kind, pref_kind::string);
  EXPECT_EQ(p->values["i"], pref_value::of(int64_t{-4}));
  EXPECT_EQ(p->values["big"].kind, pref_kind::number);
  EXPECT_EQ(p->values["d"], pref_value::of(2.5));
  EXPECT_EQ(p->values["b"], pref_value::of(true));
  EXPECT_EQ(p->values["n"].kind, pref_kind::null);
}

TEST(DecodeFamily, GatewayShape) {
  auto f = decode_family(family_json);
  ASSERT_TRUE(f) << error_message(f.error());
  ASSERT_EQ(f->members.size(), 2u);
  EXPECT_EQ(f->members[0].username, "bob");
  EXPECT_EQ(f->members[1].display_name, "Carol");
  EXPECT_EQ(f->members[1].role, "user");
}

TEST(DecodeFamily, NestedErrors) {
  auto o = parse_object(family_json);
  o["members"].as_array()[1].as_object().erase("username");
  expect_validation_error(decode_family(json::serialize(o)),
                          "field 'members[1].username': missing");
  expect_validation_error(decode_family("{}"), "field 'members': missing");
  expect_validation_error(decode_family(R"({"members":[1]})"),
                          "field 'members[0]': expected object, got integer");
}

// -- health and system ----------------------------------------------------------

TEST(DecodeHealth, PlainAndDetailed) {
  auto h = decode_system_health(health_json);
  ASSERT_TRUE(h) << error_message(h.error());
  EXPECT_TRUE(h->is_healthy);
  EXPECT_EQ(h->version, "0.1.0");
  EXPECT_EQ(h->services.size(), 4u);
  EXPECT_EQ(h->services["ipc"], "down");
  EXPECT_EQ(h->uptime_s, -1);
  EXPECT_TRUE(h->connections.empty());
  EXPECT_TRUE(h->faults.empty());

  auto d = decode_system_health(health_detailed_json);
  ASSERT_TRUE(d) << error_message(d.error());
  EXPECT_EQ(d->uptime_s, 3600);
  EXPECT_EQ(d->connections["http"], 2);
  EXPECT_EQ(d->counts["messages"], 120);
  EXPECT_EQ(d->counts["subscriptions"], 2);
  EXPECT_EQ(json::parse(d->faults).at("fail_status"), 503);
}

TEST(DecodeHealth, Errors) {
  for (auto key : {"is_healthy", "version", "timestamp", "services"}) {
    SCOPED_TRACE(key);
    expect_validation_error(decode_system_health(without(health_json, key)),
                            std::string{"field '"} + key + "': missing");
  }
  expect_validation_error(
    decode_system_health(with(health_json, "services", R"({"database":1})")),
    "field 'services.database': expected string, got integer");
  expect_validation_error(
    decode_system_health(
      with(health_detailed_json, "counts", R"({"users":-1})")),
    "field 'counts.users': must not be negative");
  expect_validation_error(
    decode_system_health(with(health_json, "is_healthy", R"("yes")")),
    "field 'is_healthy': expected boolean, got string");
}

TEST(DecodeSystemStatus, GatewayShapeAndErrors) {
  auto s = decode_system_status(status_json);
  ASSERT_TRUE(s) << error_message(s.error());
  EXPECT_FALSE(s->is_healthy);
  EXPECT_EQ(s->uptime_s, 12);
  EXPECT_EQ(s->services["database"], "down");
  expect_validation_error(decode_system_status(without(status_json, "uptime_s")),
                          "field 'uptime_s': missing");
  expect_validation_error(
    decode_system_status(with(status_json, "uptime_s", "1.5")),
    "field 'uptime_s': expected integer, got number");
}

TEST(DecodeSystem, UpdateTicketAndEvent) {
  auto t = decode_update_ticket(R"({"update_id":"upd_1","status":"scheduled"})");
  ASSERT_TRUE(t) << error_message(t.error());
  EXPECT_EQ(t->update_id, "upd_1");
  EXPECT_EQ(t->status, "scheduled");
  expect_validation_error(decode_update_ticket(R"({"status":"scheduled"})"),
                          "field 'update_id': missing");

  auto e = decode_system_update_event(update_event_json);
  ASSERT_TRUE(e) << error_message(e.error());
  EXPECT_EQ(e->update_id, "upd_0a1b2c3d");
  EXPECT_EQ(e->version, "0.1.0");
  for (auto key : {"update_id", "status", "version", "timestamp"}) {
    SCOPED_TRACE(key);
    expect_validation_error(
      decode_system_update_event(without(update_event_json, key)),
      std::string{"field '"} + key + "': missing");
  }
}

TEST(DecodeStreamChunk, GatewayShapeAndErrors) {
  auto c = decode_stream_chunk(chunk_json);
  ASSERT_TRUE(c) << error_message(c.error());
  EXPECT_EQ(c->message_id, "bot-m-1");
  EXPECT_EQ(c->reply_to, "m-1");
  EXPECT_EQ(c->seq_no, 2u);
  EXPECT_EQ(c->chunk, "hello ");
  EXPECT_FALSE(c->done);
  for (auto key :
       {"conversation_id", "reply_to", "message_id", "seq_no", "chunk", "done"}) {
    SCOPED_TRACE(key);
    expect_validation_error(decode_stream_chunk(without(chunk_json, key)),
                            std::string{"field '"} + key + "': missing");
  }
  expect_validation_error(decode_stream_chunk(with(chunk_json, "seq_no", "-1")),
                          "field 'seq_no': must not be negative");
  expect_validation_error(decode_stream_chunk(with(chunk_json, "done", "0")),
                          "field 'done': expected boolean, got integer");
}

// -- envelope -------------------------------------------------------------------

TEST(DecodeEnvelope, Success) {
  auto e = decode_envelope(200, std::string{R"({"success":true,"data":)"}
                                  + user_json + R"(,"message":"ok"})");
  ASSERT_TRUE(e) << error_message(e.error());
  EXPECT_EQ(e->status, 200);
  EXPECT_TRUE(e->success);
  EXPECT_EQ(e->message, "ok");
  EXPECT_EQ(json::parse(e->data), json::parse(user_json));
  EXPECT_EQ(e->code, "");
  EXPECT_EQ(e->details, "{}");

  auto bare = decode_envelope(200, R"({"success":true})");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->data, "null");
}

TEST(DecodeEnvelope, Failure) {
  auto e = decode_envelope(400, R"({"success":false,"message":"bad seq",
    "code":"validation_error","details":{"field":"since"}})");
  ASSERT_TRUE(e) << error_message(e.error());
  EXPECT_FALSE(e->success);
  EXPECT_EQ(e->status, 400);
  EXPECT_EQ(e->code, "validation_error");
  EXPECT_EQ(e->message, "bad seq");
  EXPECT_EQ(json::parse(e->details), json::parse(R"({"field":"since"})"));
}

TEST(DecodeEnvelope, NonEnvelopeBodiesOfErrorStatuses) {
  auto e = decode_envelope(502, "<html>Bad Gateway</html>");
  ASSERT_TRUE(e) << error_message(e.error());
  EXPECT_FALSE(e->success);
  EXPECT_EQ(e->status, 502);
  EXPECT_EQ(e->message, "gateway answered with status 502");
  // A non-2xx status is never a success, whatever the body says.
  auto odd = decode_envelope(500, R"({"success":true,"data":1})");
  ASSERT_TRUE(odd);
  EXPECT_FALSE(odd->success);
}

TEST(DecodeEnvelope, MalformedSuccessBodies) {
  auto garbage = decode_envelope(200, "<html>");
  expect_validation_error(garbage, "invalid JSON at offset 0");
  EXPECT_EQ(classify(garbage.error()).code, "bad_json");
  expect_validation_error(decode_envelope(200, R"({"data":{}})"),
                          "field 'success': missing");
  expect_validation_error(decode_envelope(200, R"({"success":"true"})"),
                          "field 'success': expected boolean, got string");
  expect_validation_error(decode_envelope(200, "[1]"),
                          "field '(root)': expected object, got array");
}

TEST(DecodeReply, SuccessDecodesData) {
  auto u = decode_reply<user>(
    200, std::string{R"({"success":true,"data":)"} + user_json + "}");
  ASSERT_TRUE(u) << error_message(u.error());
  EXPECT_EQ(u->username, "alice");
  auto h = decode_reply<history_page>(
    200, R"({"success":true,"data":)" + history_json() + "}");
  ASSERT_TRUE(h) << error_message(h.error());
  EXPECT_EQ(h->messages.size(), 3u);
  auto t = decode_reply<update_ticket>(
    202, R"({"success":true,"data":{"update_id":"upd_9","status":"scheduled"}})");
  ASSERT_TRUE(t) << error_message(t.error());
  EXPECT_EQ(t->update_id, "upd_9");
}

TEST(DecodeReply, FailuresAreClassified) {
  auto r = decode_reply<user>(401, R"({"success":false,"message":"expired",
    "code":"token_expired","details":{}})");
  ASSERT_FALSE(r);
  auto c = classify(r.error());
  EXPECT_EQ(c.cls, error_class::authentication);
  EXPECT_EQ(c.status, 401);
  EXPECT_EQ(c.code, "token_expired");
  EXPECT_EQ(c.message, "expired");

  auto s = decode_reply<system_status>(503, "Service Unavailable");
  ASSERT_FALSE(s);
  EXPECT_EQ(classify(s.error()).cls, error_class::server_error);
  EXPECT_TRUE(is_retryable(s.error()));
}

TEST(DecodeReply, BadDataIsAValidationErrorNamingTheField) {
  auto o = parse_object(history_json());
  o["messages"].as_array()[2].as_object()["seq"] = "x";
  auto body = R"({"success":true,"data":)" + json::serialize(o) + "}";
  expect_validation_error(decode_reply<history_page>(200, body),
                          "field 'messages[2].seq': expected integer");
  expect_validation_error(decode_reply<user>(200, R"({"success":true})"),
                          "field '(root)': expected object, got null");
}

// -- garbage --------------------------------------------------------------------

TEST(Garbage, ClearErrorsNoCrash) {
  const std::vector<std::string> inputs = {
    "",
    " ",
    "{",
    "}",
    "nul",
    "{\"id\":}",
    "{\"id\":\"m-1\"",
    "[1,2",
    "{\"a\":1}{\"b\":2}",
    "\"unterminated",
    "{'single':'quotes'}",
    "{\"id\":\"\xff\xfe\"}",          // invalid UTF-8
    "{\"id\":\"\xed\xa0\x80\"}",      // UTF-8 encoded surrogate
    "{\"id\":\"\\ud800\"}",           // lone surrogate escape
    std::string("{\"id\":\"a\0b\"}", 12), // raw NUL in a string
    "1e999999",
    "-",
    "tru",
    std::string(std::string(message_json).substr(0, 50)),
  };
  for (auto& in : inputs) {
    SCOPED_TRACE(in);
    auto m = decode_message(in);
    ASSERT_FALSE(m);
    auto c = classify(m.error());
    EXPECT_EQ(c.cls, error_class::validation);
    EXPECT_FALSE(c.message.empty());
  }
  auto empty = decode_message("");
  EXPECT_EQ(classify(empty.error()).code, "bad_json");
}

TEST(Garbage, DeepNestingIsRejected) {
  for (size_t depth : {101ul, 1000ul, 100000ul}) {
    SCOPED_TRACE(depth);
    std::string deep(depth, '[');
    deep += std::string(depth, ']');
    expect_validation_error(decode_message(deep), "invalid JSON");
    std::string deep_obj;
    for (size_t i = 0; i < depth; ++i)
      deep_obj += "{\"a\":";
    deep_obj += "1" + std::string(depth, '}');
    expect_validation_error(decode_history_page(deep_obj), "invalid JSON");
    expect_validation_error(decode_envelope(200, deep_obj), "invalid JSON");
  }
}

TEST(Garbage, MetadataNestedLikeTheGatewayAllowsIsAccepted) {
  // The gateway accepts bodies nested 64 deep; such metadata comes back
  // inside message, messages[] and the envelope.
  std::string meta;
  for (int i = 0; i < 62; ++i)
    meta += "{\"a\":";
  meta += "1" + std::string(62, '}');
  auto page = with(history_json(), "messages",
                   "[" + with(message_json, "metadata", meta) + "]");
  auto r = decode_reply<history_page>(200, R"({"success":true,"data":)" + page
                                             + "}");
  ASSERT_TRUE(r) << error_message(r.error());
  EXPECT_EQ(r->messages.at(0).metadata, meta);
}

// -- round trips ----------------------------------------------------------------

TEST(RoundTrip, ChatMessage) {
  expect_round_trip(sample_message());
  chat_message queued; // a fresh offline message
  queued.id = "m-q";
  queued.content = "later";
  expect_round_trip(queued);
  for (auto st : {message_status::queued, message_status::sending,
                  message_status::sent, message_status::delivered,
                  message_status::read, message_status::failed}) {
    auto m = sample_message();
    m.status = st;
    expect_round_trip(m);
  }
  // Gateway payloads re-encode to the same JSON.
  auto m = decode_message(bot_message_json);
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(encode(*m)), json::parse(bot_message_json));
}

TEST(RoundTrip, HistoryPage) {
  history_page h;
  h.conversation_id = "conv-1";
  h.messages = {sample_message(), sample_message()};
  h.messages[1].id = "m-8";
  h.messages[1].read_at.clear();
  h.messages[1].reply_to.clear();
  h.has_more = true;
  h.next_since = 99;
  expect_round_trip(h);
  expect_round_trip(history_page{});
  auto g = decode_history_page(history_json());
  ASSERT_TRUE(g);
  EXPECT_EQ(json::parse(encode_history_page(*g)), json::parse(history_json()));
}

TEST(RoundTrip, UsersAndPreferences) {
  user u;
  u.id = "u1";
  u.username = "alice";
  u.display_name = "Alice A.";
  u.role = "user";
  u.preferences = R"({"theme":"dark","v":3})";
  u.created_at = "2024-04-30T08:15:00.000Z";
  expect_round_trip(u);
  expect_round_trip(sample_prefs());
  expect_round_trip(user_preferences{});
  family f;
  f.members = {{"u2", "bob", "Bob", "user"}, {"u3", "carol", "", "admin"}};
  expect_round_trip(f);
  expect_round_trip(family{});
  expect_round_trip(family_member{"u2", "bob", "Bob", "user"});
}

TEST(RoundTrip, HealthAndSystem) {
  system_status s;
  s.is_healthy = true;
  s.version = "1.2.3";
  s.timestamp = "2024-05-01T12:00:00.000Z";
  s.services = {{"database", "up"}, {"ipc", "down"}};
  s.uptime_s = 77;
  expect_round_trip(s);

  system_health h;
  h.is_healthy = true;
  h.version = "1.2.3";
  h.services = {{"http", "up"}};
  expect_round_trip(h); // not detailed
  h.uptime_s = 5;
  h.connections = {{"http", 1}, {"ws", 0}};
  h.counts = {{"users", 2}};
  h.faults = R"({"enabled":true,"ipc":"up"})";
  expect_round_trip(h);
  auto d = decode_system_health(health_detailed_json);
  ASSERT_TRUE(d);
  EXPECT_EQ(json::parse(encode(*d)), json::parse(health_detailed_json));

  expect_round_trip(update_ticket{"upd_1", "scheduled"});
  expect_round_trip(
    system_update_event{"upd_1", "scheduled", "1.2.3", "2024-05-01T00:00:00Z"});
  expect_round_trip(
    stream_chunk{"conv", "m-1", "bot-m-1", 3, "chunk \"text\"", true});
}

TEST(RoundTrip, Envelope) {
  envelope ok;
  ok.success = true;
  ok.data = R"({"members":[]})";
  ok.message = "fine";
  expect_round_trip(ok);
  envelope err;
  err.success = false;
  err.message = "nope";
  err.code = "conflict";
  err.details = R"({"field":"id"})";
  expect_round_trip(err);
  auto e = decode_envelope(0, encode(err));
  ASSERT_TRUE(e);
  EXPECT_TRUE(*e == err);
}

// -- request bodies -------------------------------------------------------------

TEST(RequestBodies, SendMessage) {
  auto m = sample_message();
  auto body = json::parse(encode_send_message_body(m)).as_object();
  EXPECT_EQ(body.size(), 5u);
  EXPECT_EQ(body.at("id"), "m-7");
  EXPECT_EQ(body.at("conversation_id"), "conv-1");
  EXPECT_EQ(body.at("content"), json::value(m.content));
  EXPECT_EQ(body.at("type"), "image");
  EXPECT_EQ(body.at("metadata"), json::parse(m.metadata));

  chat_message plain;
  plain.id = "m-9";
  plain.content = "hi";
  plain.metadata = "not json";
  auto b2 = json::parse(encode_send_message_body(plain)).as_object();
  EXPECT_FALSE(b2.contains("conversation_id"));
  EXPECT_EQ(b2.at("type"), "text");
  EXPECT_EQ(b2.at("metadata"), json::object{});
}

TEST(RequestBodies, PreferencesUpdate) {
  auto body = json::parse(encode_preferences_update_body(sample_prefs()));
  EXPECT_EQ(body, json::parse(R"({"theme":"dark","volume":-3,"ratio":0.1,
                                  "notify":false,"gone":null})"));
  user_preferences weird;
  weird.values["inf"] = pref_value::of(1.0 / 0.0);
  EXPECT_EQ(json::parse(encode_preferences_update_body(weird)),
            json::parse(R"({"inf":null})"));
}

// -- issue 12: numbers beyond the double range ------------------------------------

TEST(Numbers, NonFiniteNumbersAreRejectedNotStored) {
  // Boost.JSON reads 1e400 as an infinity; it used to be kept and written
  // back as "Infinity" (not JSON)
  auto p = decode_preferences(R"({"big":1e400})");
  ASSERT_FALSE(p);
  EXPECT_NE(error_message(p.error()).find("out of range"), std::string::npos)
    << error_message(p.error());
  auto raw = [](std::string text, const std::string& from,
                const std::string& to) {
    auto at = text.find(from);
    EXPECT_NE(at, std::string::npos);
    return text.replace(at, from.size(), to);
  };
  auto u = decode_user(raw(user_json, R"("ratio":0.5)", R"("ratio":-1e400)"));
  ASSERT_FALSE(u);
  auto m = decode_message(
    raw(message_json, R"("metadata": {})", R"("metadata": {"x":[1e999]})"));
  ASSERT_FALSE(m);
  EXPECT_NE(error_message(m.error()).find("out of range"), std::string::npos);
  // also through decode_value of an already parsed value
  json::object o = parse_object(message_json);
  o["metadata"] = json::object{{"x", std::numeric_limits<double>::infinity()}};
  EXPECT_FALSE(decode_value<chat_message>(o));
  auto r = decode_reply<user_preferences>(
    200, R"({"success":true,"data":{"a":1e400}})");
  EXPECT_FALSE(r);
}

TEST(Numbers, EncodersNeverEmitInfinityOrNaN) {
  auto m = sample_message();
  m.metadata = R"({"x":1e400})"; // text that parses to an infinity
  auto text = encode_message(m);
  EXPECT_EQ(text.find("Infinity"), std::string::npos) << text;
  EXPECT_NO_THROW(json::parse(text));
  user_preferences p;
  p.values["nan"] = pref_value::of(std::numeric_limits<double>::quiet_NaN());
  p.values["inf"] = pref_value::of(-std::numeric_limits<double>::infinity());
  for (auto& t : {encode_preferences(p), encode_preferences_update_body(p)}) {
    EXPECT_EQ(t.find("Infinity"), std::string::npos) << t;
    EXPECT_EQ(t.find("NaN"), std::string::npos) << t;
    EXPECT_NO_THROW(json::parse(t));
  }
}

TEST(Numbers, IntegerFieldsAreRangeChecked) {
  expect_validation_error(
    decode_message(with(message_json, "seq", "-1")), "field 'seq'");
  expect_validation_error(
    decode_message(with(message_json, "timestamp_ms", "1e30")),
    "field 'timestamp_ms'");
  expect_validation_error(
    decode_message(with(message_json, "seq", "4.5")), "field 'seq'");
  expect_validation_error(
    decode_message(with(message_json, "timestamp_ms", "18446744073709551615")),
    "field 'timestamp_ms'");
}

// -- CAF ------------------------------------------------------------------------

TEST(Caf, ModelsAreMessageTypes) {
  EXPECT_GE(caf::type_id<chat_message>::value, caf::first_custom_type_id);
  EXPECT_LT(caf::type_id<envelope>::value, caf::id_block::aico::end);
  EXPECT_STREQ(caf::type_name<std::vector<chat_message>>::value,
               "std::vector<aico::chat_message>");
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::aico>();

  auto msg = caf::make_message(sample_message(),
                               std::vector<chat_message>{sample_message()},
                               history_page{}, user{}, sample_prefs(),
                               family{}, system_status{}, system_health{},
                               update_ticket{}, system_update_event{},
                               stream_chunk{}, envelope{},
                               message_status::delivered);
  EXPECT_EQ(msg.size(), 13u);
  auto text = caf::to_string(msg);
  EXPECT_NE(text.find("delivered"), std::string::npos) << text;
  EXPECT_NE(text.find("m-7"), std::string::npos) << text;
}

TEST(Caf, BinarySerializationRoundTrip) {
  history_page h;
  h.conversation_id = "conv";
  h.messages = {sample_message()};
  h.has_more = true;
  h.next_since = 5;
  auto prefs = sample_prefs();
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  ASSERT_FALSE(sink(h, prefs));
  history_page h2;
  user_preferences prefs2;
  caf::binary_deserializer source{nullptr, buf};
  ASSERT_FALSE(source(h2, prefs2));
  EXPECT_TRUE(h2 == h);
  EXPECT_TRUE(prefs2 == prefs);
}

// -- fuzz-ish -------------------------------------------------------------------

namespace {

std::string mutate(std::string s, std::mt19937& rng) {
  static const std::string alphabet = "{}[]\":,\\-+.0123456789eEtrufalsn \x80\xff";
  auto pick = [&](size_t n) {
    return n == 0 ? size_t{0} : std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  int rounds = 1 + static_cast<int>(pick(4));
  for (int r = 0; r < rounds; ++r) {
    switch (pick(6)) {
      case 0: // flip a byte
        if (!s.empty())
          s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1: // delete a range
        if (!s.empty()) {
          auto at = pick(s.size());
          s.erase(at, pick(8) + 1);
        }
        break;
      case 2: // insert a JSON-significant character
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
                 alphabet[pick(alphabet.size())]);
        break;
      case 3: // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 4: { // duplicate a range
        if (!s.empty()) {
          auto at = pick(s.size());
          auto part = s.substr(at, pick(16) + 1);
          s.insert(pick(s.size() + 1), part);
        }
        break;
      }
      default: // replace a value with another type
        if (!s.empty()) {
          static const char* values[] = {"null", "-1", "1.5", "\"x\"", "[]",
                                         "{}", "true", "18446744073709551616"};
          auto colon = s.find(':', pick(s.size()));
          if (colon != std::string::npos) {
            auto end = s.find_first_of(",}", colon);
            if (end != std::string::npos)
              s.replace(colon + 1, end - colon - 1, values[pick(8)]);
          }
        }
        break;
    }
  }
  return s;
}

template <class T>
void check_outcome(const caf::expected<T>& res, int& ok, int& bad) {
  if (res) {
    ++ok;
    // Whatever decoded must encode and decode again to the same value.
    auto again = decode_as<T>(encode(*res));
    ASSERT_TRUE(again);
    EXPECT_TRUE(*again == *res);
    return;
  }
  ++bad;
  auto c = classify(res.error());
  ASSERT_EQ(c.cls, error_class::validation) << c.message;
  ASSERT_TRUE(c.code == "bad_json" || c.code == "bad_field") << c.code;
  ASSERT_FALSE(c.message.empty());
}

} // namespace

TEST(Fuzz, RandomMutationsNeverCrash) {
  std::mt19937 rng{20240501};
  const std::string page = history_json();
  const std::string user_text = user_json;
  const std::string reply = R"({"success":true,"data":)" + page + "}";
  int ok = 0;
  int bad = 0;
  for (int i = 0; i < 2000; ++i) {
    switch (i % 4) {
      case 0:
        check_outcome(decode_history_page(mutate(page, rng)), ok, bad);
        break;
      case 1:
        check_outcome(decode_message(mutate(message_json, rng)), ok, bad);
        break;
      case 2:
        check_outcome(decode_user(mutate(user_text, rng)), ok, bad);
        break;
      default: {
        auto body = mutate(reply, rng);
        auto res = decode_reply<history_page>(200, body);
        if (res) {
          ++ok;
        } else if (classify(res.error()).cls == error_class::validation) {
          ++bad;
        } else {
          // Only an envelope that says success = false is not a
          // validation error: it is classified like a gateway error.
          ++bad;
          auto env = decode_envelope(200, body);
          ASSERT_TRUE(env);
          EXPECT_FALSE(env->success);
        }
        break;
      }
    }
    if (HasFatalFailure())
      return;
  }
  EXPECT_EQ(ok + bad, 2000);
  EXPECT_GT(ok, 0);
  EXPECT_GT(bad, 0);
}
