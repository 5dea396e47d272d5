#include "aico_peer/backend.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "aico_peer/jwt.hpp"
#include "aico_peer/pyjson.hpp"

namespace fs = std::filesystem;

namespace aico::peer {

namespace {

constexpr std::string_view api_prefix = "/api/v1";
constexpr const char* backend_version = "1.0.0";
constexpr const char* envelope_label = "xchacha20poly1305"; // sic: wire label

// -- small helpers
// ---------------------------------------------------------------

bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(0, p.size()) == p;
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view s, bool plus_space) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0
        && hexval(s[i + 2]) >= 0) {
      out += static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (plus_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

using query_list = std::vector<std::pair<std::string, std::string>>;

query_list parse_query(std::string_view q) {
  query_list out;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty())
      continue;
    auto eq = part.find('=');
    if (eq == std::string_view::npos)
      out.emplace_back(url_decode(part, true), "");
    else
      out.emplace_back(url_decode(part.substr(0, eq), true),
                       url_decode(part.substr(eq + 1), true));
  }
  return out;
}

/// The last value of a query parameter (Starlette's QueryParams.get).
const std::string* query_get(const query_list& q, std::string_view key) {
  const std::string* out = nullptr;
  for (auto& [k, v] : q)
    if (k == key)
      out = &v;
  return out;
}

// -- time
// --------------------------------------------------------------------------

struct split_time {
  std::tm tm{};
  long micros = 0;
};

split_time split(double unix) {
  auto secs = static_cast<std::time_t>(std::floor(unix));
  long micros = std::lround((unix - static_cast<double>(secs)) * 1e6);
  if (micros >= 1000000) {
    ++secs;
    micros -= 1000000;
  }
  split_time st;
  gmtime_r(&secs, &st.tm);
  st.micros = micros;
  return st;
}

/// Python's datetime.isoformat() of a naive UTC datetime: the fraction only
/// when the microseconds are not zero.
std::string iso_naive(double unix, bool with_fraction = true) {
  auto st = split(unix);
  char buf[48];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &st.tm);
  std::string out = buf;
  if (with_fraction && st.micros != 0) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), ".%06ld", st.micros);
    out += frac;
  }
  return out;
}

/// SQLite's CURRENT_TIMESTAMP form: "YYYY-MM-DD HH:MM:SS".
std::string sqlite_time(double unix) {
  auto st = split(unix);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &st.tm);
  return buf;
}

// -- files
// ---------------------------------------------------------------------

/// Reads `path` (exactly `size` bytes) or creates it with random content,
/// mode 0600.
std::string load_or_create_key(const std::string& path, std::size_t size,
                               bool printable) {
  if (fs::exists(path)) {
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    if (data.size() != size)
      throw std::runtime_error("key file '" + path + "' has the wrong size");
    return data;
  }
  std::string data = printable ? b64url_encode(random_bytes(size * 3 / 4))
                               : random_bytes(size);
  data.resize(size, 'A');
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw std::runtime_error("cannot create key file '" + path + "'");
  auto n = ::write(fd, data.data(), data.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(data.size()))
    throw std::runtime_error("cannot write key file '" + path + "'");
  return data;
}

// -- JSON helpers
// ------------------------------------------------------------------

const json::value* member(const json::value& v, std::string_view key) {
  if (!v.is_object())
    return nullptr;
  return v.as_object().if_contains(key);
}

std::string python_type(const json::value& v) {
  switch (v.kind()) {
  case json::kind::null:
    return "NoneType";
  case json::kind::bool_:
    return "bool";
  case json::kind::int64:
  case json::kind::uint64:
    return "int";
  case json::kind::double_:
    return "float";
  case json::kind::string:
    return "str";
  case json::kind::array:
    return "list";
  case json::kind::object:
    return "dict";
  }
  return "object";
}

/// Python's str() of a JSON value (as an f-string would print it).
std::string python_str(const json::value& v) {
  if (v.is_string())
    return std::string(v.get_string());
  if (v.is_bool())
    return v.get_bool() ? "True" : "False";
  if (v.is_null())
    return "None";
  return py_dumps(v, {false, false});
}

std::vector<std::string> permissions_of(const std::string& role) {
  if (role == "admin")
    return {"admin.*", "system.*", "logs.*",      "config.*",
            "users.*", "audit.*",  "subscribe.*", "conversation.*"};
  if (role == "service")
    return {"system.health", "logs.write", "events.*"};
  if (role == "cli")
    return {"admin.*", "system.*", "debug.*"};
  return {"conversation.*", "memory.read", "personality.read", "profile.*"};
}

bool has_permission(const std::vector<std::string>& perms,
                    const std::string& wanted) {
  for (auto& p : perms) {
    if (p == "*" || p == wanted)
      return true;
    if (p.size() >= 2 && p.compare(p.size() - 2, 2, ".*") == 0
        && starts_with(wanted, std::string_view(p).substr(0, p.size() - 1)))
      return true;
  }
  return false;
}

/// Python's uuid.UUID(text) acceptance (braces, urn prefix, dashes ignored).
bool python_uuid_ok(std::string s) {
  if (starts_with(s, "urn:"))
    s.erase(0, 4);
  if (starts_with(s, "uuid:"))
    s.erase(0, 5);
  while (!s.empty() && (s.front() == '{'))
    s.erase(0, 1);
  while (!s.empty() && (s.back() == '}'))
    s.pop_back();
  std::string hexs;
  for (char c : s)
    if (c != '-')
      hexs += c;
  if (hexs.size() != 32)
    return false;
  return std::all_of(hexs.begin(), hexs.end(),
                     [](char c) { return hexval(c) >= 0; });
}

bool pin_format_ok(const std::string& pin) {
  return pin.size() >= 4 && pin.size() <= 8
         && std::all_of(pin.begin(), pin.end(),
                        [](char c) { return c >= '0' && c <= '9'; });
}

// -- the fake model
// ----------------------------------------------------------------

struct model_plan {
  std::vector<std::string> thinking;
  std::vector<std::string> response;
  std::string reply;
};

/// Splits before every space that follows a non-space, so the pieces
/// concatenate back to the text ("You", " said:", " hi").
std::vector<std::string> word_chunks(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ' ' && i > 0 && text[i - 1] != ' ' && !cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
    cur += text[i];
  }
  if (!cur.empty())
    out.push_back(cur);
  return out;
}

model_plan make_plan(const std::string& message, int thinking_chunks) {
  model_plan p;
  for (int i = 0; i < thinking_chunks; ++i)
    p.thinking.push_back((i == 0 ? "" : " ") + std::string("thought-")
                         + std::to_string(i + 1));
  p.reply = message.empty() ? std::string("I received an empty message.")
                            : "You said: " + message;
  p.response = word_chunks(p.reply);
  return p;
}

// -- faults
// --------------------------------------------------------------------------

struct fault_rule {
  std::string fault;
  std::string path;   ///< prefix of the request path; empty = any
  std::string method; ///< empty = any
  int count = 1;      ///< -1 = until cleared
  int status = 500;
  std::string detail = "Injected fault";
  int delay_ms = 0;
  int after = 0;
};

const std::set<std::string>& known_faults() {
  static const std::set<std::string> k{
    "drop",            // close without a response
    "delay",           // wait delay_ms, then handle normally
    "internal_error",  // clear 500 {"error":"Internal server error"}
    "plain_500",       // clear text/plain 500 "Internal Server Error"
    "http_error",      // encrypted {"detail":detail} with `status`
    "encrypt_fail",    // the response goes out in clear
    "model_stall",     // the model never answers
    "model_error",     // the model fails after `after` chunks
    "stream_cut",      // the connection drops after `after` NDJSON lines
    "lose_first_chunk", // the first content chunk is lost (slow joiner)
    "stored_drop"       // the message is stored, then the connection closes
                        // without a response byte (a crash after storing)
  };
  return k;
}

/// Where a fault acts; a rule is used up only by a request that gets there.
enum class fault_stage {
  transport,  ///< any request: drop, delay
  middleware, ///< a protected request, before the channel lookup
  app,        ///< a request the middleware passed on to a route
  model       ///< a conversation send
};

fault_stage stage_of(const std::string& f) {
  if (f == "drop" || f == "delay")
    return fault_stage::transport;
  if (f == "internal_error")
    return fault_stage::middleware;
  if (f == "model_stall" || f == "model_error" || f == "stream_cut"
      || f == "lose_first_chunk" || f == "stored_drop")
    return fault_stage::model;
  return fault_stage::app;
}

json::object fault_json(const fault_rule& r) {
  return json::object{{"fault", r.fault},       {"path", r.path},
                      {"method", r.method},     {"count", r.count},
                      {"status", r.status},     {"detail", r.detail},
                      {"delay_ms", r.delay_ms}, {"after", r.after}};
}

// -- app results
// -------------------------------------------------------------------

/// What the FastAPI app behind the encryption middleware produces.
struct app_result {
  int status = 200;
  std::optional<json::value> body_json; ///< a JSON response (encrypted)
  std::string body_text;                ///< a non-JSON response (clear)
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  bool hang = false;
  bool drop = false; ///< close the connection without a response
  double delay_s = 0;
  bool stream = false;
  std::vector<std::pair<double, json::value>> lines;
  int cut_after_lines = -1;
  std::function<void(bool)> on_finish;
};

app_result json_result(int status, json::value v) {
  app_result r;
  r.status = status;
  r.body_json = std::move(v);
  return r;
}

app_result detail_result(int status, std::string_view detail) {
  return json_result(status, json::object{{"detail", detail}});
}

/// Starlette's ServerErrorMiddleware answer to an unhandled exception.
app_result plain_500() {
  app_result r;
  r.status = 500;
  r.body_text = "Internal Server Error";
  r.content_type = "text/plain; charset=utf-8";
  return r;
}

json::object validation_error(std::string_view type, json::array loc,
                              std::string_view msg, json::value input,
                              json::value ctx = nullptr) {
  json::object e{{"type", type},
                 {"loc", std::move(loc)},
                 {"msg", msg},
                 {"input", std::move(input)}};
  if (!ctx.is_null())
    e["ctx"] = std::move(ctx);
  return e;
}

app_result unprocessable(json::array errors) {
  return json_result(422, json::object{{"detail", std::move(errors)}});
}

http_reply clear_json(int status, const json::value& v) {
  http_reply r;
  r.status = status;
  r.headers.emplace_back("content-type", "application/json");
  r.body = py_dumps(v, {true, false});
  return r;
}

struct channel {
  nacl_box box;
  double established = 0; ///< monotonic seconds
};

} // namespace

// -- state
// ----------------------------------------------------------------------------

struct backend::impl {
  explicit impl(const peer_config& c)
    : cfg(c), db((fs::path(c.data_dir) / "peer.db").string()) {}

  const peer_config& cfg;
  store db;
  sign_keypair identity;
  std::string jwt_secret;
  std::unordered_map<std::string, channel> channels;
  std::vector<fault_rule> faults;
  std::map<std::string, int64_t> stats;
  double started_mono = 0;
  bool ws_up = true;

  // -- helpers ---------------------------------------------------------------
  bool channel_valid(const channel& ch) const {
    return mono_now() - ch.established <= cfg.channel_ttl_s;
  }

  std::string envelope(const channel& ch, const json::value& v) const {
    json::object env;
    env["encrypted"] = true;
    env["payload"] = b64_encode(ch.box.seal(py_dumps(v, {true, true})));
    env["encryption"] = envelope_label;
    return py_dumps(env, {false, true});
  }

  std::optional<fault_rule> take_fault(const std::string& path,
                                       const std::string& method,
                                       fault_stage stage) {
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (!it->path.empty() && !starts_with(path, it->path))
        continue;
      if (!it->method.empty() && lower(it->method) != lower(method))
        continue;
      if (stage_of(it->fault) != stage)
        continue;
      fault_rule r = *it;
      if (it->count > 0 && --it->count == 0)
        faults.erase(it);
      return r;
    }
    return std::nullopt;
  }

  std::string issue_access(const std::string& user_uuid,
                           const std::string& username,
                           const json::array& roles,
                           const std::vector<std::string>& perms) {
    auto now = unix_now();
    token_claims c;
    c.user_uuid = user_uuid;
    c.username = username;
    for (auto& r : roles)
      if (r.is_string())
        c.roles.emplace_back(r.get_string());
    c.permissions = perms;
    c.iat = static_cast<int64_t>(now);
    c.exp = c.iat + cfg.access_ttl_s;
    c.type = "access";
    auto token = jwt_issue(c, jwt_secret);
    db.create_session(user_uuid, "web-client", sha256_hex(token),
                      now + static_cast<double>(cfg.access_ttl_s), now);
    return token;
  }

  std::string issue_refresh(const std::string& user_uuid,
                            const std::string& username,
                            const std::vector<std::string>& roles,
                            const std::vector<std::string>& perms) {
    token_claims c;
    c.user_uuid = user_uuid;
    c.username = username;
    c.roles = roles;
    c.permissions = perms;
    c.iat = static_cast<int64_t>(unix_now());
    c.exp = c.iat + cfg.refresh_ttl_s;
    c.type = "refresh";
    return jwt_issue(c, jwt_secret);
  }

  // -- the handshake (clear)
  // ------------------------------------------------------
  http_reply handshake(const http_request& req);

  // -- the app behind the middleware
  // ----------------------------------------------
  app_result app(const http_request& req, const std::string& path,
                 const query_list& query, const json::value* body,
                 bool plaintext, std::optional<fault_rule>& fault);
  bool current_user(const http_request& req, json::object& claims,
                    app_result& err);
  app_result authenticate(const json::value& body);
  app_result refresh(const http_request& req, const json::value& body);
  app_result send_message(const http_request& req, const query_list& query,
                          const json::value& body, const json::object& claims);
  app_result history(const json::object& claims, const query_list& query);

  // -- test routes
  // ----------------------------------------------------------------
  http_reply debug(const http_request& req, const std::string& path,
                   const server_hooks& hooks);
};

double backend::mono_now() {
  return std::chrono::duration<double>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

double backend::unix_now() {
  return std::chrono::duration<double>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

backend::backend(peer_config cfg) : cfg_(std::move(cfg)) {
  crypto_init();
  impl_ = std::make_unique<impl>(cfg_);
  impl_->started_mono = mono_now();
  auto dir = fs::path(cfg_.data_dir);
  impl_->identity = ed25519_from_seed(
    load_or_create_key((dir / "identity.key").string(), 32, false));
  impl_->jwt_secret
    = load_or_create_key((dir / "jwt.secret").string(), 43, true);
  auto now_iso = iso_naive(unix_now(), false);
  for (auto& u : cfg_.users)
    impl_->db.upsert_user(u.uuid, u.name, u.pin.empty() ? "" : pin_hash(u.pin),
                          u.role, now_iso);
}

backend::~backend() = default;

std::string backend::identity_key_b64() const {
  return b64_encode(impl_->identity.pk);
}

// -- handshake
// ---------------------------------------------------------------------

http_reply backend::impl::handshake(const http_request& req) {
  static const json::object failed{{"error", "Handshake processing failed"}};
  if (req.method != "POST")
    return clear_json(405, json::object{{"error", "Method not allowed"}});
  auto body = parse_json(req.body);
  if (!body)
    return clear_json(500, failed);
  // `"handshake_request" in data`: a substring test on a JSON string.
  if (body->is_string()) {
    if (std::string_view(body->get_string()).find("handshake_request")
        != std::string_view::npos)
      return clear_json(500, failed);
    return clear_json(400, json::object{{"error", "Invalid handshake format"}});
  }
  auto hr_v = member(*body, "handshake_request");
  if (!hr_v)
    return clear_json(400, json::object{{"error", "Invalid handshake format"}});
  if (!hr_v->is_object())
    return clear_json(500, failed);
  auto hr = hr_v->as_object();
  static const std::set<std::string> fields{"component", "public_key",
                                            "timestamp", "challenge",
                                            "signature", "identity_key"};
  for (auto& kv : hr)
    if (!fields.count(std::string(kv.key())))
      return clear_json(500, failed); // HandshakeMessage(**data): TypeError
  auto str = [&](const char* k) -> std::optional<std::string> {
    auto v = hr.if_contains(k);
    if (!v || !v->is_string())
      return std::nullopt;
    return std::string(v->get_string());
  };
  if (!hr.if_contains("component") || !str("public_key") || !str("challenge")
      || !str("signature"))
    return clear_json(500, failed);
  double now = unix_now();
  double ts = now; // added by the server when absent
  if (auto t = hr.if_contains("timestamp")) {
    if (t->is_int64())
      ts = static_cast<double>(t->get_int64());
    else if (t->is_uint64())
      ts = static_cast<double>(t->get_uint64());
    else if (t->is_double())
      ts = t->get_double();
    else if (t->is_bool())
      ts = t->get_bool() ? 1 : 0;
    else
      return clear_json(500, failed);
  }
  if (std::fabs(now - ts) > cfg.handshake_window_s)
    return clear_json(500, failed);
  auto public_key = b64_decode(*str("public_key"));
  auto challenge = b64_decode(*str("challenge"));
  auto signature = b64_decode(*str("signature"));
  if (!public_key || !challenge || !signature)
    return clear_json(500, failed);
  // Without identity_key the signature is checked against public_key, and
  // the channel creation then fails anyway.
  auto identity_b64 = str("identity_key");
  auto verify_key = identity_b64 ? b64_decode(*identity_b64) : public_key;
  if (!verify_key || verify_key->size() != 32
      || !ed25519_verify(*challenge, *signature, *verify_key))
    return clear_json(500, failed);
  auto eph = x25519_generate();
  auto box = nacl_box::make(*public_key, eph.sk);
  if (!box || !identity_b64)
    return clear_json(500, failed);
  auto client_id = hex(*verify_key).substr(0, 16);
  channels.insert_or_assign(client_id, channel{*box, mono_now()});
  ++stats["handshakes"];

  auto server_challenge = random_bytes(32);
  json::object resp{
    {"component", "backend"},
    {"public_key", b64_encode(eph.pk)},
    {"identity_key", b64_encode(identity.pk)},
    {"timestamp", unix_now()},
    {"challenge", b64_encode(server_challenge)},
    {"signature", b64_encode(ed25519_sign(server_challenge, identity.sk))}};
  return clear_json(200, json::object{{"status", "session_established"},
                                      {"handshake_response", std::move(resp)}});
}

// -- the request pipeline
// ------------------------------------------------------------

http_reply backend::handle(const http_request& req) {
  auto& I = *impl_;
  auto qpos = req.target.find('?');
  std::string path
    = url_decode(std::string_view(req.target).substr(0, qpos), false);
  auto query = parse_query(qpos == std::string::npos
                             ? std::string_view{}
                             : std::string_view(req.target).substr(qpos + 1));

  if (cfg_.enable_faults && starts_with(path, "/_peer/"))
    return I.debug(req, path, hooks_);

  // Transport faults: drop and delay apply to every path.
  double delay_s = 0;
  std::optional<fault_rule> fault
    = I.take_fault(path, req.method, fault_stage::transport);
  if (fault && fault->fault == "drop") {
    http_reply r;
    r.what = http_reply::kind::drop;
    return r;
  }
  if (fault && fault->fault == "delay") {
    delay_s = fault->delay_ms / 1000.0;
    fault.reset();
  }
  auto with_delay = [&](http_reply r) {
    r.delay_s += delay_s;
    return r;
  };

  if (path == "/api/v1/handshake")
    return with_delay(I.handshake(req));
  if (path == "/api/v1/health") {
    if (req.method != "GET")
      return with_delay(
        clear_json(405, json::object{{"detail", "Method Not Allowed"}}));
    json::object h{{"status", "healthy"},
                   {"service", "aico-backend"},
                   {"version", backend_version},
                   {"timestamp", iso_naive(unix_now()) + "+00:00"},
                   {"uptime_seconds",
                    std::round((mono_now() - I.started_mono) * 100) / 100}};
    return with_delay(clear_json(200, h));
  }
  if (path == "/api/v1/health/") {
    http_reply r;
    r.status = 307;
    auto host = req.headers.count("host") ? req.headers.at("host")
                                          : std::string("127.0.0.1");
    r.headers.emplace_back("location", "http://" + host + "/api/v1/health");
    return with_delay(r);
  }
  if (!starts_with(path, api_prefix))
    return with_delay(clear_json(404, json::object{{"detail", "Not Found"}}));

  // ---- the encryption middleware ----
  fault = I.take_fault(path, req.method, fault_stage::middleware);
  if (fault)
    return with_delay(
      clear_json(500, json::object{{"error", "Internal server error"}}));
  ++I.stats["protected_requests"];
  std::optional<json::value> body_json;
  if (!req.body.empty())
    body_json = parse_json(req.body);
  const channel* ch = nullptr;
  if (body_json && body_json->is_object()) {
    auto cid = body_json->as_object().if_contains("client_id");
    if (cid && cid->is_string()) {
      auto it = I.channels.find(std::string(cid->get_string()));
      if (it != I.channels.end())
        ch = &it->second;
    }
  }
  if (!ch && req.method == "GET") {
    std::string cid;
    if (auto h = req.headers.find("x-client-id"); h != req.headers.end())
      cid = h->second;
    else if (auto q = query_get(query, "client_id"))
      cid = *q;
    if (auto it = I.channels.find(cid); !cid.empty() && it != I.channels.end())
      ch = &it->second;
  }
  if (!ch || !I.channel_valid(*ch)) {
    ++I.stats["encryption_required"];
    return with_delay(clear_json(
      401, json::object{
             {"error", "Encryption required"},
             {"message", "Perform handshake at /api/v1/handshake first"}}));
  }
  // Copy: the app may replace the channel (it never does today, but a
  // handshake in between must not invalidate what this request uses).
  channel chan = *ch;

  bool plaintext = false;
  std::optional<json::value> app_body;
  if (!req.body.empty()) {
    if (!body_json) {
      plaintext = true; // not JSON: passed on as it is
    } else if (!body_json->is_object()) {
      // request_data.get(...) on a list/str/number: AttributeError
      return with_delay(
        clear_json(500, json::object{{"error", "Internal server error"}}));
    } else {
      auto& o = body_json->as_object();
      auto enc = o.if_contains("encrypted");
      auto payload = o.if_contains("payload");
      if (enc && py_truthy(*enc) && payload) {
        std::string why = "Decryption failed. Ciphertext failed verification";
        std::optional<std::string> plain;
        if (!payload->is_string()) {
          why = "argument should be a bytes-like object or ASCII string, not '"
                + python_type(*payload) + "'";
        } else if (auto raw = b64_decode(payload->get_string()); !raw) {
          why = "Incorrect padding";
        } else {
          plain = chan.box.open(*raw);
          if (plain && !parse_json(*plain)) {
            why = "Expecting value: line 1 column 1 (char 0)";
            plain.reset();
          }
        }
        if (!plain) {
          ++I.stats["decrypt_failures"];
          return with_delay(clear_json(
            400,
            json::object{{"error", "Encryption error"},
                         {"detail", "Failed to decrypt payload: " + why}}));
        }
        app_body = parse_json(*plain);
      } else {
        plaintext = true;
      }
    }
  }

  app_result res;
  try {
    res = I.app(req, path.substr(api_prefix.size()), query,
                app_body ? &*app_body : nullptr, plaintext, fault);
  } catch (const std::exception&) {
    res = plain_500();
  }
  if (res.hang) {
    ++I.stats["plaintext_hangs"];
    http_reply r;
    r.what = http_reply::kind::hang;
    return r;
  }
  if (res.drop) {
    http_reply r;
    r.what = http_reply::kind::drop;
    return r;
  }
  bool encrypt = !(fault && fault->fault == "encrypt_fail");
  http_reply r;
  r.status = res.status;
  r.headers = res.headers;
  r.delay_s = res.delay_s + delay_s;
  r.on_finish = std::move(res.on_finish);
  if (res.stream) {
    r.what = http_reply::kind::stream;
    r.headers.emplace_back("content-type", "application/x-ndjson");
    r.cut_after_lines = res.cut_after_lines;
    for (auto& [at, line] : res.lines)
      r.lines.push_back(
        {at, (encrypt ? I.envelope(chan, line) : py_dumps(line, {false, true}))
               + "\n"});
    return r;
  }
  if (res.body_json) {
    r.headers.emplace_back("content-type", "application/json");
    r.body = encrypt ? I.envelope(chan, *res.body_json)
                     : py_dumps(*res.body_json, {true, false});
  } else {
    if (!res.content_type.empty()
        && !(res.body_text.empty() && res.status == 307))
      r.headers.emplace_back("content-type", res.content_type);
    r.body = res.body_text;
  }
  return r;
}

// -- the app
// ---------------------------------------------------------------------------

bool backend::impl::current_user(const http_request& req, json::object& claims,
                                 app_result& err) {
  auto it = req.headers.find("authorization");
  std::string value = it == req.headers.end() ? "" : it->second;
  auto sp = value.find(' ');
  std::string scheme = value.substr(0, sp);
  std::string cred = sp == std::string::npos ? "" : value.substr(sp + 1);
  if (value.empty() || scheme.empty() || cred.empty()) {
    err = detail_result(403, "Not authenticated");
    return false;
  }
  if (lower(scheme) != "bearer") {
    err = detail_result(403, "Invalid authentication credentials");
    return false;
  }
  auto rc = jwt_check(cred, jwt_secret, unix_now(), &claims);
  if (rc != jwt_result::ok) {
    err = detail_result(401, rc == jwt_result::expired ? "Token has expired"
                                                       : "Invalid token");
    err.headers.emplace_back("www-authenticate", "Bearer");
    return false;
  }
  auto uid = claims.if_contains("user_uuid");
  if (!uid || !uid->is_string()) {
    err = plain_500(); // current_user["user_uuid"]: KeyError
    return false;
  }
  return true;
}

namespace {

enum class route {
  none,
  authenticate,
  refresh,
  logout,
  users_root,
  user_item,
  messages,
  status,
  conv_health,
  health_detailed,
  gateway_status
};

struct route_info {
  route r = route::none;
  std::vector<std::string> methods;
  std::vector<std::string> body_methods; ///< methods whose handler reads a body
};

route_info match_route(const std::string& rel) {
  static const std::vector<std::pair<std::string, route_info>> exact{
    {"/users/authenticate", {route::authenticate, {"POST"}, {"POST"}}},
    {"/users/refresh", {route::refresh, {"POST"}, {"POST"}}},
    {"/users/logout", {route::logout, {"POST"}, {}}},
    {"/users/", {route::users_root, {"GET", "POST"}, {"POST"}}},
    {"/conversation/messages", {route::messages, {"GET", "POST"}, {"POST"}}},
    {"/conversation/status", {route::status, {"GET"}, {}}},
    {"/conversation/health", {route::conv_health, {"POST"}, {}}},
    {"/health/detailed", {route::health_detailed, {"GET"}, {}}},
    {"/gateway/status", {route::gateway_status, {"GET"}, {}}},
  };
  for (auto& [p, info] : exact)
    if (p == rel)
      return info;
  // /users/{user_uuid}: one non-empty segment
  if (starts_with(rel, "/users/") && rel.size() > 7
      && rel.find('/', 7) == std::string::npos)
    return {route::user_item, {"GET", "PUT", "DELETE"}, {"PUT"}};
  return {};
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

/// FastAPI's JSON body reading and model validation for a body with the
/// given string fields. Returns false with a 422 in `err`.
bool body_object(const http_request& req, const json::value* body,
                 app_result& err) {
  auto ct = req.headers.find("content-type");
  if (ct != req.headers.end()) {
    auto media = lower(ct->second.substr(0, ct->second.find(';')));
    while (!media.empty() && media.back() == ' ')
      media.pop_back();
    bool is_json = media == "application/json"
                   || (media.size() > 5
                       && media.compare(media.size() - 5, 5, "+json") == 0);
    if (!is_json) {
      err = unprocessable(json::array{validation_error(
        "model_attributes_type", json::array{"body"},
        "Input should be a valid dictionary or object to extract fields from",
        body ? json::value(py_dumps(*body, {false, true})) : json::value(""))});
      return false;
    }
  }
  if (!body) {
    err = unprocessable(json::array{validation_error(
      "missing", json::array{"body"}, "Field required", nullptr)});
    return false;
  }
  if (!body->is_object()) {
    err = unprocessable(json::array{validation_error(
      "model_attributes_type", json::array{"body"},
      "Input should be a valid dictionary or object to extract fields from",
      *body)});
    return false;
  }
  return true;
}

/// Validates one field; appends to `errors`.
void check_field(const json::object& o, const char* name, bool required,
                 json::kind want, json::array& errors) {
  auto v = o.if_contains(name);
  if (!v) {
    if (required)
      errors.push_back(validation_error("missing", json::array{"body", name},
                                        "Field required", o));
    return;
  }
  if (v->is_null() && !required)
    return;
  if (want == json::kind::string && !v->is_string())
    errors.push_back(validation_error("string_type", json::array{"body", name},
                                      "Input should be a valid string", *v));
  if (want == json::kind::object && !v->is_object())
    errors.push_back(validation_error("dict_type", json::array{"body", name},
                                      "Input should be a valid dictionary",
                                      *v));
}

/// An integer query parameter with bounds; nullopt with an error appended.
std::optional<int64_t> int_query(const query_list& q, const char* name,
                                 int64_t dflt, int64_t ge, int64_t le,
                                 json::array& errors) {
  auto v = query_get(q, name);
  if (!v)
    return dflt;
  static const std::regex int_re{R"(^\s*[-+]?\d+\s*$)"};
  if (!std::regex_match(*v, int_re)) {
    errors.push_back(validation_error(
      "int_parsing", json::array{"query", name},
      "Input should be a valid integer, unable to parse string as an integer",
      json::value(*v)));
    return std::nullopt;
  }
  int64_t n = 0;
  try {
    n = std::stoll(*v);
  } catch (...) {
    errors.push_back(validation_error(
      "int_parsing", json::array{"query", name},
      "Input should be a valid integer, unable to parse string as an integer",
      json::value(*v)));
    return std::nullopt;
  }
  if (n < ge) {
    errors.push_back(validation_error(
      "greater_than_equal", json::array{"query", name},
      "Input should be greater than or equal to " + std::to_string(ge),
      json::value(*v), json::object{{"ge", ge}}));
    return std::nullopt;
  }
  if (n > le) {
    errors.push_back(validation_error(
      "less_than_equal", json::array{"query", name},
      "Input should be less than or equal to " + std::to_string(le),
      json::value(*v), json::object{{"le", le}}));
    return std::nullopt;
  }
  return n;
}

/// timegm of a broken-down UTC time.
double utc_seconds(int y, int mo, int d, int h, int mi, double s) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = 0;
  return static_cast<double>(timegm(&tm)) + s;
}

} // namespace

app_result backend::impl::app(const http_request& req, const std::string& path,
                              const query_list& query, const json::value* body,
                              bool plaintext,
                              std::optional<fault_rule>& fault) {
  auto info = match_route(path);
  if (info.r != route::none && contains(info.body_methods, req.method)
      && plaintext) {
    // The middleware consumed the body and passed the original receive on:
    // the handler waits for a body that never comes.
    app_result r;
    r.hang = true;
    return r;
  }
  fault
    = take_fault(std::string(api_prefix) + path, req.method, fault_stage::app);
  if (fault && fault->fault == "plain_500")
    return plain_500();
  if (fault && fault->fault == "http_error")
    return detail_result(fault->status, fault->detail);

  if (info.r == route::none) {
    // redirect_slashes: the other spelling of a known route.
    std::string alt = !path.empty() && path.back() == '/'
                        ? path.substr(0, path.size() - 1)
                        : path + "/";
    if (match_route(alt).r != route::none) {
      app_result r;
      r.status = 307;
      auto host = req.headers.count("host") ? req.headers.at("host")
                                            : std::string("127.0.0.1");
      auto q = req.target.find('?');
      r.headers.emplace_back(
        "location", "http://" + host + std::string(api_prefix) + alt
                      + (q == std::string::npos ? "" : req.target.substr(q)));
      r.content_type.clear();
      return r;
    }
    // log_requests turns 404s under these prefixes into a 401.
    if (starts_with(path, "/users/") || starts_with(path, "/admin/")
        || starts_with(path, "/logs/") || starts_with(path, "/echo")) {
      return json_result(
        401,
        json::object{{"detail",
                      "This endpoint requires encrypted communication. Please "
                      "complete the encryption handshake and send encrypted "
                      "requests."},
                     {"hint", "Perform handshake at /api/v1/handshake first"},
                     {"endpoint", std::string(api_prefix) + path}});
    }
    return detail_result(404, "Not Found");
  }
  if (!contains(info.methods, req.method)) {
    auto r = detail_result(405, "Method Not Allowed");
    std::string allow;
    for (auto& m : info.methods)
      allow += (allow.empty() ? "" : ", ") + m;
    r.headers.emplace_back("allow", allow);
    return r;
  }

  json::object claims;
  app_result err;
  switch (info.r) {
  case route::authenticate: {
    if (!body_object(req, body, err))
      return err;
    return authenticate(*body);
  }
  case route::refresh: {
    if (!body_object(req, body, err))
      return err;
    return refresh(req, *body);
  }
  case route::logout: {
    auto it = req.headers.find("authorization");
    if (it == req.headers.end() || !starts_with(it->second, "Bearer "))
      return detail_result(401, "No valid token provided");
    return plain_500(); // NameError: auth_manager
  }
  case route::users_root: {
    if (req.method == "GET")
      return detail_result(500, "User service error: UserService.list_users() "
                                "got an unexpected keyword argument "
                                "'is_active'");
    [[fallthrough]];
  }
  case route::user_item: {
    // Every admin-guarded user route: HTTPBearer, then a verify_admin_token
    // that does not exist.
    auto it = req.headers.find("authorization");
    if (it == req.headers.end() || it->second.find(' ') == std::string::npos)
      return detail_result(403, "Not authenticated");
    return detail_result(401, "Invalid admin credentials");
  }
  case route::messages: {
    if (!current_user(req, claims, err))
      return err;
    if (req.method == "POST") {
      if (!body_object(req, body, err))
        return err;
      return send_message(req, query, *body, claims);
    }
    return history(claims, query);
  }
  case route::status: {
    if (!current_user(req, claims, err))
      return err;
    return json_result(200, json::object{{"success", true},
                                         {"user_id", claims.at("user_uuid")},
                                         {"active_conversations", 0},
                                         {"total_messages", 0},
                                         {"last_activity", nullptr},
                                         {"status", "ready"}});
  }
  case route::conv_health: {
    if (!current_user(req, claims, err))
      return err;
    return json_result(200, json::object{{"status", "healthy"},
                                         {"timestamp", iso_naive(unix_now())},
                                         {"version", backend_version}});
  }
  case route::health_detailed: {
    json::object svc{
      {"name", "api_gateway"}, {"state", "running"}, {"healthy", true}};
    json::object bus{
      {"name", "message_bus"}, {"state", "running"}, {"healthy", true}};
    json::object model{
      {"name", "modelservice"}, {"state", "running"}, {"healthy", true}};
    return json_result(
      200,
      json::object{
        {"container", "healthy"},
        {"services", json::object{{"api_gateway", svc},
                                  {"message_bus", bus},
                                  {"modelservice", model}}},
        {"process",
         json::object{{"pid", static_cast<int64_t>(::getpid())},
                      {"memory_mb", 0.0},
                      {"threads", 1},
                      {"uptime_seconds",
                       std::round((mono_now() - started_mono) * 100) / 100}}},
        {"system",
         json::object{{"platform", "Linux"},
                      {"cpu_count", static_cast<int64_t>(
                                      std::thread::hardware_concurrency())}}},
        {"environment",
         json::object{{"implementation", "aico-backend-peer"}}}});
  }
  case route::gateway_status:
    return json_result(
      200, json::object{{"status", "healthy"},
                        {"service", "aico-api-gateway"},
                        {"adapters", json::array{"rest", "websocket"}},
                        {"version", backend_version}});
  case route::none:
    break;
  }
  return detail_result(404, "Not Found");
}

// -- /users/authenticate and /users/refresh
// -------------------------------------------

namespace {

json::object auth_response(bool success, json::value user, json::value access,
                           json::value refresh, json::value error,
                           json::value last_login) {
  return json::object{{"success", success},
                      {"user", std::move(user)},
                      {"jwt_token", std::move(access)},
                      {"refresh_token", std::move(refresh)},
                      {"error", std::move(error)},
                      {"last_login", std::move(last_login)}};
}

app_result auth_failure(const std::string& error) {
  return json_result(200, auth_response(false, nullptr, nullptr, nullptr,
                                        json::value(error), nullptr));
}

} // namespace

app_result backend::impl::authenticate(const json::value& body) {
  auto& o = body.as_object();
  json::array errors;
  check_field(o, "user_uuid", true, json::kind::string, errors);
  check_field(o, "pin", true, json::kind::string, errors);
  if (!errors.empty())
    return unprocessable(std::move(errors));
  std::string uuid(o.at("user_uuid").get_string());
  std::string pin(o.at("pin").get_string());
  // validate_uuid / validate_pin raise with an undefined `status`: NameError.
  if (!python_uuid_ok(uuid) || !pin_format_ok(pin))
    return plain_500();

  auto user = db.find_user(uuid);
  if (!user) {
    ++stats["logins_failed"];
    return auth_failure("User not found");
  }
  if (user->pin_hash.empty()) {
    ++stats["logins_failed"];
    return auth_failure("No authentication configured");
  }
  double now = unix_now();
  if (user->locked_until > now) {
    ++stats["logins_failed"];
    return auth_failure("Account locked");
  }
  if (!pin_verify(pin, user->pin_hash)) {
    db.record_failure(uuid, cfg.lockout_attempts, now + cfg.lockout_s);
    ++stats["logins_failed"];
    return auth_failure("Invalid PIN");
  }
  auto previous_login = user->last_login;
  db.record_login(uuid, sqlite_time(now));
  ++stats["logins_ok"];

  auto perms = permissions_of(user->role);
  json::array roles{json::value(user->role)};
  auto access = issue_access(uuid, user->full_name, roles, perms);
  auto refresh_tok = issue_refresh(uuid, user->full_name, {user->role}, perms);
  json::object u{{"uuid", user->uuid},
                 {"full_name", user->full_name},
                 {"nickname", user->nickname},
                 {"user_type", user->user_type},
                 {"is_active", user->is_active},
                 {"created_at", user->created_at},
                 {"updated_at", user->updated_at}};
  return json_result(200,
                     auth_response(true, std::move(u), json::value(access),
                                   json::value(refresh_tok), nullptr,
                                   previous_login ? json::value(*previous_login)
                                                  : json::value(nullptr)));
}

app_result backend::impl::refresh(const http_request& req,
                                  const json::value& body) {
  auto& o = body.as_object();
  json::array errors;
  check_field(o, "refresh_token", false, json::kind::string, errors);
  if (!errors.empty())
    return unprocessable(std::move(errors));
  std::string token;
  if (auto t = o.if_contains("refresh_token"); t && t->is_string())
    token = std::string(t->get_string());
  if (token.empty()) {
    auto it = req.headers.find("authorization");
    if (it != req.headers.end() && starts_with(it->second, "Bearer "))
      token = it->second.substr(7);
  }
  if (token.empty())
    return auth_failure("Refresh token required");
  json::object claims;
  auto rc = jwt_check(token, jwt_secret, unix_now(), &claims);
  if (rc == jwt_result::expired)
    return auth_failure("Refresh token expired - please login again");
  if (rc != jwt_result::ok)
    return auth_failure("Invalid refresh token");
  auto type = claims.if_contains("type");
  if (!type || !type->is_string() || type->get_string() != "refresh")
    return auth_failure("Invalid token type - refresh token required");
  auto uid = claims.if_contains("user_uuid");
  if (!uid || !uid->is_string())
    return auth_failure("Invalid refresh token");
  std::string username = uid->get_string().c_str();
  if (auto n = claims.if_contains("username"); n && n->is_string())
    username = std::string(n->get_string());
  json::array roles;
  if (auto r = claims.if_contains("roles"); r && r->is_array())
    roles = r->get_array();
  std::vector<std::string> perms;
  if (auto p = claims.if_contains("permissions"); p && p->is_array())
    for (auto& e : p->get_array())
      if (e.is_string())
        perms.emplace_back(e.get_string());
  auto access
    = issue_access(std::string(uid->get_string()), username, roles, perms);
  ++stats["refreshes"];
  return json_result(200, auth_response(true, nullptr, json::value(access),
                                        json::value(token), nullptr, nullptr));
}

// -- /conversation/messages
// ------------------------------------------------------------

app_result backend::impl::send_message(const http_request& req,
                                       const query_list& query,
                                       const json::value& body,
                                       const json::object& claims) {
  auto& o = body.as_object();
  json::array errors;
  check_field(o, "message", true, json::kind::string, errors);
  check_field(o, "message_type", false, json::kind::string, errors);
  check_field(o, "conversation_id", false, json::kind::string, errors);
  check_field(o, "context", false, json::kind::object, errors);
  check_field(o, "metadata", false, json::kind::object, errors);
  bool stream = false;
  if (auto s = query_get(query, "stream")) {
    auto v = lower(*s);
    if (v == "true" || v == "1" || v == "yes" || v == "on" || v == "t"
        || v == "y")
      stream = true;
    else if (v == "false" || v == "0" || v == "no" || v == "off" || v == "f"
             || v == "n")
      stream = false;
    else
      errors.push_back(validation_error(
        "bool_parsing", json::array{"query", "stream"},
        "Input should be a valid boolean, unable to interpret input",
        json::value(*s)));
  }
  if (!errors.empty())
    return unprocessable(std::move(errors));

  std::string user_uuid(claims.at("user_uuid").get_string());
  std::string message(o.at("message").get_string());
  double now = unix_now();
  std::string conversation_id;
  if (auto c = o.if_contains("conversation_id"); c && c->is_string()) {
    std::string cid(c->get_string());
    if (!cid.empty() && cid != "default" && cid.find('_') != std::string::npos)
      conversation_id = cid;
  }
  if (conversation_id.empty())
    conversation_id
      = user_uuid + "_" + std::to_string(static_cast<int64_t>(now));
  std::string message_id = uuid4();
  ++stats["sends"];

  message_row um;
  um.id = uuid4();
  um.send_message_id = message_id;
  um.conversation_id = conversation_id;
  um.user_id = user_uuid;
  um.role = "user";
  um.message_type = "user_input";
  um.content = message;
  um.timestamp = iso_naive(now);
  um.ts = now;
  db.add_message(um);

  auto fault = take_fault(std::string(api_prefix) + "/conversation/messages",
                          req.method, fault_stage::model);
  auto plan = make_plan(message, cfg.thinking_chunks);
  if (fault && fault->fault == "stored_drop") {
    app_result r;
    r.drop = true; // stored above; the client sees no byte of an answer
    return r;
  }
  bool stall = fault && fault->fault == "model_stall";
  bool model_error = fault && fault->fault == "model_error";
  double step = cfg.model_delay_ms / 1000.0;
  auto total_chunks = plan.thinking.size() + plan.response.size();
  double model_time = static_cast<double>(total_chunks) * step;

  store* dbp = &db;
  auto store_reply = [dbp, plan, message_id, conversation_id, user_uuid](bool) {
    double t = unix_now();
    message_row am;
    am.id = uuid4();
    am.send_message_id = message_id;
    am.conversation_id = conversation_id;
    am.user_id = user_uuid;
    am.role = "assistant";
    am.message_type = "assistant_response";
    am.content = plan.reply;
    am.timestamp = iso_naive(t);
    am.ts = t;
    try {
      dbp->add_message(am);
    } catch (const std::exception&) {
      // the reply is lost, as a crashed model would lose it
    }
  };

  if (!stream) {
    app_result r;
    if (model_error) {
      r = detail_result(500, "Error processing message: " + fault->detail);
      r.delay_s = step * (fault->after + 1);
      return r;
    }
    std::string ai = plan.reply;
    if (stall || model_time > cfg.reply_timeout_s) {
      r.delay_s = cfg.reply_timeout_s;
      ai = "Request timed out - please try again";
    } else {
      r.delay_s = model_time;
    }
    if (!stall)
      r.on_finish = store_reply;
    r.body_json = json::object{
      {"success", true},
      {"message_id", message_id},
      {"conversation_id", conversation_id},
      {"conversation_action", "conversation_started"},
      {"conversation_reasoning", "Direct message to the conversation engine"},
      {"status", "completed"},
      {"timestamp", iso_naive(unix_now())},
      {"ai_response", ai}};
    return r;
  }

  ++stats["streams"];
  app_result r;
  r.stream = true;
  r.headers.emplace_back("x-request-id", message_id);
  r.headers.emplace_back("x-conversation-id", conversation_id);
  r.lines.emplace_back(0.0, json::object{{"type", "metadata"},
                                         {"message_id", message_id},
                                         {"conversation_id", conversation_id},
                                         {"timestamp", iso_naive(now)}});
  if (stall) {
    r.lines.emplace_back(
      cfg.stream_timeout_s,
      json::object{{"type", "error"}, {"error", "Streaming timeout"}});
    return r;
  }
  bool lose_first = fault && fault->fault == "lose_first_chunk";
  std::size_t k = 0;
  std::string acc_thinking, acc_response;
  bool errored = false;
  auto push_chunk = [&](const std::string& content, bool thinking) {
    std::string& acc = thinking ? acc_thinking : acc_response;
    acc += content;
    ++k;
    if (model_error && static_cast<int>(k) > fault->after) {
      if (!errored)
        r.lines.emplace_back(
          static_cast<double>(k) * step,
          json::object{{"type", "error"}, {"error", fault->detail}});
      errored = true;
      return;
    }
    if (lose_first && k == 1)
      return;
    r.lines.emplace_back(
      static_cast<double>(k) * step,
      json::object{{"type", "chunk"},
                   {"content", content},
                   {"accumulated", acc},
                   {"done", false},
                   {"content_type", thinking ? "thinking" : "response"}});
  };
  for (auto& c : plan.thinking)
    push_chunk(c, true);
  for (auto& c : plan.response)
    push_chunk(c, false);
  if (model_error && !errored)
    r.lines.emplace_back(
      static_cast<double>(k + 1) * step,
      json::object{{"type", "error"}, {"error", fault->detail}});
  if (!model_error)
    r.lines.emplace_back(model_time,
                         json::object{{"type", "chunk"},
                                      {"content", ""},
                                      {"accumulated", plan.reply},
                                      {"done", true},
                                      {"content_type", "response"},
                                      {"conversation_id", conversation_id},
                                      {"message_id", message_id}});
  // The stream gives up 30 s after it started.
  auto late = std::find_if(r.lines.begin(), r.lines.end(), [&](auto& l) {
    return l.first > cfg.stream_timeout_s;
  });
  if (late != r.lines.end()) {
    r.lines.erase(late, r.lines.end());
    r.lines.emplace_back(
      cfg.stream_timeout_s,
      json::object{{"type", "error"}, {"error", "Streaming timeout"}});
  }
  if (fault && fault->fault == "stream_cut")
    r.cut_after_lines = fault->after;
  if (!model_error)
    r.on_finish = store_reply;
  return r;
}

app_result backend::impl::history(const json::object& claims,
                                  const query_list& query) {
  json::array errors;
  auto page = int_query(query, "page", 1, 1, INT64_MAX, errors);
  auto page_size = int_query(query, "page_size", 50, 1, 100, errors);
  const std::string* conversation_id = query_get(query, "conversation_id");
  std::optional<double> since;
  bool since_aware = false;
  if (auto s = query_get(query, "since")) {
    static const std::regex iso_re{
      R"(^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$)"};
    static const std::regex num_re{R"(^[-+]?\d+(\.\d+)?$)"};
    std::smatch m;
    if (std::regex_match(*s, num_re)) {
      since_aware = true; // a unix number parses as an aware UTC datetime
    } else if (std::regex_match(*s, m, iso_re)) {
      if (m[8].matched)
        since_aware = true;
      double secs = m[6].matched ? std::stod(m[6].str()) : 0;
      if (m[7].matched)
        secs += std::stod("0" + m[7].str());
      since = utc_seconds(std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3]),
                          m[4].matched ? std::stoi(m[4]) : 0,
                          m[5].matched ? std::stoi(m[5]) : 0, secs);
    } else {
      errors.push_back(validation_error(
        "datetime_from_date_parsing", json::array{"query", "since"},
        "Input should be a valid datetime or date, invalid character in year",
        json::value(*s)));
    }
  }
  if (!errors.empty())
    return unprocessable(std::move(errors));
  if (since_aware)
    return detail_result(500, "Failed to retrieve messages: can't compare "
                              "offset-naive and offset-aware datetimes");
  std::string user_uuid(claims.at("user_uuid").get_string());
  // total_count is what was fetched: at most page * page_size.
  int64_t limit
    = *page > INT64_MAX / *page_size ? INT64_MAX : *page * *page_size;
  auto rows
    = db.recent_messages(user_uuid, conversation_id, since ? &*since : nullptr,
                         unix_now() - cfg.history_ttl_s, limit);
  json::array msgs;
  std::size_t first = rows.size();
  if (*page - 1 <= static_cast<int64_t>(rows.size()) / *page_size)
    first = static_cast<std::size_t>((*page - 1) * *page_size);
  for (std::size_t i = first;
       i < rows.size() && i < first + static_cast<std::size_t>(*page_size);
       ++i) {
    auto& m = rows[i];
    msgs.push_back(json::object{{"id", m.id},
                                {"conversation_id", m.conversation_id},
                                {"user_id", m.user_id},
                                {"content", m.content},
                                {"role", m.role},
                                {"timestamp", m.timestamp},
                                {"message_type", m.message_type}});
  }
  return json_result(
    200,
    json::object{{"success", true},
                 {"conversation_id",
                  conversation_id ? *conversation_id : "user_" + user_uuid},
                 {"messages", std::move(msgs)},
                 {"total_count", static_cast<int64_t>(rows.size())},
                 {"page", *page},
                 {"page_size", *page_size}});
}

// -- test routes (--enable-faults)
// -----------------------------------------------------

http_reply backend::impl::debug(const http_request& req,
                                const std::string& path,
                                const server_hooks& hooks) {
  auto bad = [](std::string msg) {
    return clear_json(400, json::object{{"error", std::move(msg)}});
  };
  if (path == "/_peer/messages" && req.method == "GET") {
    json::array out;
    for (auto& m : db.all_messages())
      out.push_back(json::object{{"id", m.id},
                                 {"send_message_id", m.send_message_id},
                                 {"conversation_id", m.conversation_id},
                                 {"user_id", m.user_id},
                                 {"role", m.role},
                                 {"message_type", m.message_type},
                                 {"content", m.content},
                                 {"timestamp", m.timestamp}});
    return clear_json(200, json::object{{"messages", std::move(out)}});
  }
  if (path == "/_peer/stats" && req.method == "GET") {
    json::object o;
    for (auto& [k, v] : stats)
      o[k] = v;
    o["channels"] = static_cast<int64_t>(channels.size());
    return clear_json(200, o);
  }
  if (path == "/_peer/faults") {
    if (req.method == "DELETE") {
      faults.clear();
      return clear_json(200, json::object{{"faults", json::array{}}});
    }
    if (req.method == "POST") {
      auto b = parse_json(req.body);
      if (!b || !b->is_object())
        return bad("body must be a JSON object");
      auto& o = b->as_object();
      fault_rule r;
      auto s = [&](const char* k, std::string& out) {
        if (auto v = o.if_contains(k); v && v->is_string())
          out = std::string(v->get_string());
      };
      auto n = [&](const char* k, int& out) {
        if (auto v = o.if_contains(k); v && v->is_int64())
          out = static_cast<int>(v->get_int64());
      };
      s("fault", r.fault);
      s("path", r.path);
      s("method", r.method);
      s("detail", r.detail);
      n("count", r.count);
      n("status", r.status);
      n("delay_ms", r.delay_ms);
      n("after", r.after);
      if (!known_faults().count(r.fault))
        return bad("unknown fault '" + r.fault + "'");
      if (r.count == 0 || r.count < -1)
        return bad("count must be positive or -1 (until cleared)");
      if (r.status < 100 || r.status > 599)
        return bad("status must be an HTTP status code");
      faults.push_back(r);
    }
    if (req.method == "POST" || req.method == "GET") {
      json::array a;
      for (auto& f : faults)
        a.push_back(fault_json(f));
      return clear_json(200, json::object{{"faults", std::move(a)}});
    }
  }
  if (path == "/_peer/channels/clear" && req.method == "POST") {
    auto n = static_cast<int64_t>(channels.size());
    channels.clear();
    return clear_json(200, json::object{{"cleared", n}});
  }
  if (path == "/_peer/ws/drop" && req.method == "POST")
    return clear_json(
      200, json::object{{"closed", hooks.drop_ws ? hooks.drop_ws() : 0}});
  if ((path == "/_peer/ws/down" || path == "/_peer/ws/up")
      && req.method == "POST") {
    bool up = path == "/_peer/ws/up";
    ws_up = up;
    int closed = 0;
    if (hooks.set_ws_up)
      hooks.set_ws_up(up);
    if (!up && hooks.drop_ws)
      closed = hooks.drop_ws();
    return clear_json(
      200, json::object{{"ws", up ? "up" : "down"}, {"closed", closed}});
  }
  return clear_json(404, json::object{{"detail", "Not Found"}});
}

// -- WebSocket adapter
// -----------------------------------------------------------------

namespace {

std::string ws_json(const json::object& o) {
  return py_dumps(o, {false, true}); // json.dumps defaults
}

std::string ws_error(std::string_view error, std::string_view detail = {}) {
  json::object o{{"type", "error"}, {"error", error}};
  if (!detail.empty())
    o["detail"] = detail;
  return ws_json(o);
}

} // namespace

ws_action backend::ws_open(ws_state& s, std::size_t open_connections) {
  ws_action a;
  if (static_cast<int>(open_connections) >= cfg_.ws_max_connections) {
    a.close = true;
    a.close_code = 1013;
    a.close_reason = "Server overloaded";
    return a;
  }
  s.last_heartbeat = mono_now();
  ++impl_->stats["ws_connections"];
  a.frames.push_back(ws_json(json::object{{"type", "welcome"},
                                          {"client_id", s.client_id},
                                          {"server", "aico-api-gateway"},
                                          {"version", backend_version}}));
  return a;
}

bool backend::ws_stale(const ws_state& s, double now) const {
  return s.last_heartbeat < now - 3 * cfg_.ws_heartbeat_interval_s;
}

void backend::ws_closed(ws_state& s) {
  if (!s.session_id.empty()) {
    try {
      impl_->db.revoke_session(s.session_id);
    } catch (const std::exception&) {
      // "Failed to revoke WebSocket session on disconnect" (logged only)
    }
  }
}

ws_action backend::ws_message(ws_state& s, std::string_view text) {
  auto& I = *impl_;
  ws_action a;
  auto v = parse_json(text);
  if (!v) {
    a.frames.push_back(
      ws_error("Invalid JSON", "Expecting value: line 1 column 1 (char 0)"));
    return a;
  }
  if (!v->is_object()) {
    a.frames.push_back(
      ws_error("Internal server error",
               "'" + python_type(*v) + "' object has no attribute 'get'"));
    return a;
  }
  auto& msg = v->as_object();
  auto type_v = msg.if_contains("type");
  if (!type_v || !py_truthy(*type_v)) {
    a.frames.push_back(ws_error("Missing message type"));
    return a;
  }
  std::string type = python_str(*type_v);
  bool is_auth = type_v->is_string() && type == "auth";
  try {
    if (!is_auth && s.authenticated && !s.session_id.empty()
        && !I.db.active_session(sha256_hex(s.token), unix_now())) {
      a.frames.push_back(
        ws_error("Session expired or revoked. Please re-authenticate."));
      a.close = true;
      a.close_reason = "Session invalid";
      return a;
    }
  } catch (const std::exception& e) {
    a.frames.push_back(ws_error("Internal server error", e.what()));
    return a;
  }
  if (!type_v->is_string()) {
    a.frames.push_back(ws_error("Unknown message type: " + type));
    return a;
  }

  if (type == "auth") {
    auto tok = msg.if_contains("token");
    if (!tok || !py_truthy(*tok)) {
      ++I.stats["ws_auth_failed"];
      a.frames.push_back(
        ws_error("Authentication failed", "No authentication provided"));
      return a;
    }
    std::string token = python_str(*tok);
    json::object claims;
    std::optional<session_row> session;
    try {
      session = I.db.active_session(sha256_hex(token), unix_now());
    } catch (const std::exception& e) {
      a.frames.push_back(ws_error("Authentication error", e.what()));
      return a;
    }
    bool ok = session
              && jwt_check(token, I.jwt_secret, unix_now(), &claims)
                   == jwt_result::ok;
    auto uid = claims.if_contains("user_uuid");
    if (!ok || !uid || !uid->is_string()) {
      ++I.stats["ws_auth_failed"];
      a.frames.push_back(
        ws_error("Authentication failed", "Authentication failed"));
      return a;
    }
    ++I.stats["ws_auth_ok"];
    s.authenticated = true;
    s.token = token;
    s.user_uuid = std::string(uid->get_string());
    s.session_id = session->uuid;
    s.roles = json::array{"user"};
    if (auto r = claims.if_contains("roles"); r && r->is_array())
      s.roles = r->get_array();
    s.permissions.clear();
    if (auto p = claims.if_contains("permissions"); p && p->is_array())
      for (auto& e : p->get_array())
        if (e.is_string())
          s.permissions.emplace_back(e.get_string());
    a.frames.push_back(ws_json(json::object{{"type", "auth_success"},
                                            {"user_uuid", s.user_uuid},
                                            {"roles", s.roles},
                                            {"session_id", s.session_id}}));
    return a;
  }
  if (type == "heartbeat") {
    s.last_heartbeat = mono_now();
    a.frames.push_back(ws_json(json::object{{"type", "heartbeat_ack"},
                                            {"timestamp", s.last_heartbeat}}));
    return a;
  }
  if (type == "subscribe" || type == "unsubscribe") {
    bool sub = type == "subscribe";
    if (sub && !s.authenticated) {
      a.frames.push_back(ws_error("Authentication required for subscriptions"));
      return a;
    }
    auto topic_v = msg.if_contains("topic");
    if (!topic_v || !py_truthy(*topic_v)) {
      a.frames.push_back(ws_error(sub ? "Missing topic for subscription"
                                      : "Missing topic for unsubscription"));
      return a;
    }
    std::string topic = python_str(*topic_v);
    if (sub) {
      if (!has_permission(s.permissions, "subscribe." + topic)) {
        a.frames.push_back(ws_error("Subscription not authorized",
                                    "Permission denied: subscribe." + topic));
        return a;
      }
      s.subscriptions.insert(topic);
    } else {
      s.subscriptions.erase(topic);
    }
    a.frames.push_back(ws_json(json::object{
      {"type", sub ? "subscribed" : "unsubscribed"}, {"topic", *topic_v}}));
    return a;
  }
  if (type == "request") {
    if (!s.authenticated) {
      a.frames.push_back(ws_error("Authentication required for requests"));
      return a;
    }
    auto mt = msg.if_contains("message_type");
    if (!mt || !py_truthy(*mt)) {
      a.frames.push_back(ws_error("Missing message_type for request"));
      return a;
    }
    a.frames.push_back(ws_error(
      "Request error", "Parameter to MergeFrom() must be instance of same "
                       "class: expected google.protobuf.Timestamp got "
                       "datetime.datetime."));
    return a;
  }
  a.frames.push_back(ws_error("Unknown message type: " + type));
  return a;
}

} // namespace aico::peer
