#include "gateway/api.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "gateway/bot.hpp"
#include "gateway/json_util.hpp"
#include "gateway/jwt.hpp"
#include "gateway/secure_files.hpp"
#include "gateway/store.hpp"

namespace aico::gateway {

const char* to_string(front_door door) {
  switch (door) {
    case front_door::http:
      return "http";
    case front_door::ws:
      return "ws";
    case front_door::ipc:
      return "ipc";
    case front_door::grpc:
      return "grpc";
  }
  return "unknown";
}

const char* to_string(misbehave_mode m) {
  switch (m) {
    case misbehave_mode::none:
      return "none";
    case misbehave_mode::malformed_json:
      return "malformed_json";
    case misbehave_mode::not_envelope:
      return "not_envelope";
    case misbehave_mode::truncated:
      return "truncated";
    case misbehave_mode::slow:
      return "slow";
    case misbehave_mode::hang:
      return "hang";
  }
  return "none";
}

namespace {

using steady = std::chrono::steady_clock;

constexpr const char* bot_user_id = "companion";
constexpr const char* bot_username = "companion";
constexpr std::size_t max_bot_pending = 10000;
constexpr std::size_t max_event_queue = 100000;
constexpr std::size_t max_preference_keys = 64;
constexpr std::size_t max_content_chars = 4000;
constexpr std::size_t max_id_chars = 128;
constexpr int default_history_limit = 50;
constexpr int max_history_limit = 500;

/// An error envelope thrown inside the request handlers.
struct api_error {
  int status;
  std::string code;
  std::string message;
  json::object details;
  std::vector<std::pair<std::string, std::string>> headers;
};

api_error validation(const std::string& field, const std::string& message) {
  json::object d;
  d["field"] = field;
  return {400, "validation_error", field + ": " + message, std::move(d), {}};
}

api_response to_response(const api_error& e) {
  api_response r;
  r.status = e.status;
  r.body = error_body(e.code, e.message, e.details);
  r.headers = e.headers;
  return r;
}

api_response ok(int status, const json::value& data) {
  api_response r;
  r.status = status;
  r.body = ok_body(data);
  return r;
}

// 1-128 characters from [A-Za-z0-9_.:-].
bool valid_id(std::string_view s) {
  if (s.empty() || s.size() > max_id_chars)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':'
           || c == '-';
  });
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// A non-negative decimal integer of at most 18 digits.
std::optional<int64_t> parse_uint(std::string_view s) {
  if (s.empty() || s.size() > 18)
    return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

json::value user_json(const user_record& u) {
  json::object o;
  o["id"] = u.id;
  o["username"] = u.username;
  o["display_name"] = u.display_name;
  o["role"] = u.role;
  o["preferences"] = parse_object_or_empty(u.preferences);
  o["created_at"] = iso8601_ms(u.created_at_ms);
  return o;
}

json::value message_json(const message_record& m) {
  json::object o;
  o["id"] = m.id;
  o["conversation_id"] = m.conversation_id;
  o["content"] = m.content;
  o["type"] = m.type;
  o["sender_id"] = m.sender_id;
  o["sender"] = m.sender;
  o["timestamp"] = iso8601_ms(m.timestamp_ms);
  o["timestamp_ms"] = m.timestamp_ms;
  o["seq"] = m.seq;
  o["status"] = m.status;
  if (m.read_at_ms)
    o["read_at"] = iso8601_ms(*m.read_at_ms);
  else
    o["read_at"] = nullptr;
  o["metadata"] = parse_object_or_empty(m.metadata);
  if (m.reply_to)
    o["reply_to"] = *m.reply_to;
  else
    o["reply_to"] = nullptr;
  return o;
}

json::value faults_json(const fault_state& f) {
  json::object o;
  o["ipc"] = f.ipc_up ? "up" : "down";
  o["ws"] = f.ws_up ? "up" : "down";
  o["grpc"] = f.grpc_up ? "up" : "down";
  o["latency_ms"] = f.latency_ms;
  o["fail_ratio"] = f.fail_ratio;
  o["fail_status"] = f.fail_status;
  if (f.misbehave) {
    auto& m = *f.misbehave;
    json::object mb;
    mb["door"] = m.door;
    mb["method"] = m.method.empty() ? json::value(nullptr) : json::value(m.method);
    mb["path"] = m.path;
    mb["mode"] = to_string(m.mode);
    mb["when"] = m.after ? "after" : "before";
    mb["delay_ms"] = m.delay_ms;
    mb["count"] = m.count;
    mb["remaining"] = m.remaining;
    o["misbehave"] = std::move(mb);
  } else {
    o["misbehave"] = nullptr;
  }
  return o;
}

/// "/a/b" from a target: /api/v1 prefix, query and fragment removed,
/// segments percent-decoded, empty segments dropped (as routes match).
std::string normalize_path(std::string_view target) {
  if (auto cut = target.find_first_of("?#"); cut != target.npos)
    target = target.substr(0, cut);
  constexpr std::string_view prefix = "/api/v1";
  if (target.substr(0, prefix.size()) == prefix
      && (target.size() == prefix.size() || target[prefix.size()] == '/'))
    target.remove_prefix(prefix.size());
  std::string out;
  while (!target.empty()) {
    auto slash = target.find('/');
    auto seg = target.substr(0, slash);
    target = slash == target.npos ? std::string_view{}
                                  : target.substr(slash + 1);
    if (!seg.empty())
      out += "/" + percent_decode(seg, false);
  }
  return out.empty() ? "/" : out;
}

/// The body of a misbehaving 200 (docs/protocol.md, "admin").
constexpr const char* malformed_body = R"({"success":true,"data":malformed})";
constexpr const char* not_envelope_body = R"({"misbehave":"not_envelope"})";
constexpr const char* unprocessed_body
  = R"({"success":true,"data":{"misbehave":"the call was not processed"}})";

enum class route {
  authenticate,
  refresh,
  logout,
  me,
  preferences,
  family,
  send,
  history,
  read,
  health,
  health_detailed,
  status,
  update,
  admin_users,
  admin_faults,
};

struct route_match {
  route r;
  std::vector<const char*> methods;
  std::string param; ///< conversation id or message id
};

std::optional<route_match> match_route(const std::vector<std::string>& s,
                                       bool faults_enabled) {
  auto is = [&](std::initializer_list<const char*> parts) {
    if (s.size() != parts.size())
      return false;
    std::size_t i = 0;
    for (auto p : parts)
      if (s[i++] != p)
        return false;
    return true;
  };
  if (is({"users", "authenticate"}))
    return route_match{route::authenticate, {"POST"}, {}};
  if (is({"users", "refresh"}))
    return route_match{route::refresh, {"POST"}, {}};
  if (is({"users", "logout"}))
    return route_match{route::logout, {"POST"}, {}};
  if (is({"users", "me"}))
    return route_match{route::me, {"GET"}, {}};
  if (is({"users", "me", "preferences"}))
    return route_match{route::preferences, {"PUT"}, {}};
  if (is({"users", "me", "family"}))
    return route_match{route::family, {"GET"}, {}};
  if (is({"conversations", "messages"}))
    return route_match{route::send, {"POST"}, {}};
  if (s.size() == 3 && s[0] == "conversations" && s[2] == "messages")
    return route_match{route::history, {"GET"}, s[1]};
  if (s.size() == 4 && s[0] == "conversations" && s[1] == "messages"
      && s[3] == "read")
    return route_match{route::read, {"POST"}, s[2]};
  if (is({"health"}))
    return route_match{route::health, {"GET"}, {}};
  if (is({"health", "detailed"}))
    return route_match{route::health_detailed, {"GET"}, {}};
  if (is({"system", "status"}))
    return route_match{route::status, {"GET"}, {}};
  if (is({"system", "update"}))
    return route_match{route::update, {"POST"}, {}};
  if (is({"admin", "users"}))
    return route_match{route::admin_users, {"GET"}, {}};
  if (faults_enabled && is({"admin", "faults"}))
    return route_match{route::admin_faults, {"GET", "POST"}, {}};
  return std::nullopt;
}

// Routes never delayed, failed or rate limited (so tests can undo faults).
bool exempt_from_faults(route r) {
  return r == route::health || r == route::health_detailed
         || r == route::admin_faults;
}

bool needs_auth(route r) {
  switch (r) {
    case route::authenticate:
    case route::refresh:
    case route::health:
    case route::health_detailed:
      return false;
    default:
      return true;
  }
}

bool needs_admin(route r) {
  return r == route::update || r == route::admin_users
         || r == route::admin_faults;
}

// A number that does not fit a double (1e400 parses to infinity) is refused
// wherever it is: it could be neither stored nor sent back as JSON.
void reject_non_finite(const json::value& v) {
  std::string where;
  if (find_non_finite(v, &where))
    throw validation(where.empty() ? "body" : where,
                     "must be a finite number (at most about 1.8e308)");
}

// Parses the request body as a JSON object. An empty body is `{}` when
// `optional`, a validation error otherwise.
json::object body_object(const std::string& body, bool optional) {
  bool blank = std::all_of(body.begin(), body.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
  });
  if (blank) {
    if (optional)
      return {};
    throw validation("body", "a JSON object is required");
  }
  auto v = parse_json(body);
  if (!v)
    throw api_error{400, "bad_json", "the body is not valid JSON", {}, {}};
  reject_non_finite(*v);
  if (!v->is_object())
    throw validation("body", "must be a JSON object");
  return std::move(v->as_object());
}

std::string required_string(const json::object& o, const char* key) {
  auto v = o.if_contains(key);
  if (!v)
    throw validation(key, "is required");
  if (!v->is_string())
    throw validation(key, "must be a string");
  return std::string(v->as_string());
}

// Absent or null -> nullopt; a string -> it; anything else -> 400.
std::optional<std::string> optional_string(const json::object& o,
                                           const char* key) {
  auto v = o.if_contains(key);
  if (!v || v->is_null())
    return std::nullopt;
  if (!v->is_string())
    throw validation(key, "must be a string");
  return std::string(v->as_string());
}

struct subscription {
  std::string user_id;
  event_sink sink;
  std::atomic<bool> active{true};
  /// Held while the sink runs: replayed events (subscribe) and live ones
  /// (dispatcher) never overlap, and each goes out once, in seq order.
  std::mutex deliver_mutex;
  uint64_t last_seq = 0; ///< the last seq given to the sink
};

/// An event kept for replay (docs/protocol.md "Events").
struct buffered_event {
  std::optional<std::string> user_id; ///< nullopt: every subscriber
  event ev;
  steady::time_point at;
};

struct queued_event {
  std::optional<std::string> user_id; ///< nullopt: every subscriber
  event ev;
};

struct bot_job {
  std::string owner_id;
  std::string conversation_id;
  std::string reply_to;
  std::string message_id;
  std::string text;
  std::vector<std::string> chunks;
  std::size_t next = 0;
};

struct bucket {
  double tokens = 0;
  steady::time_point last;
};

} // namespace

struct api::impl {
  gateway_config cfg;
  std::string secret;
  std::unique_ptr<store> db;
  steady::time_point started = steady::now();

  // Revoked access-token ids -> exp (mirrors the revoked_jti table).
  std::mutex revoked_mutex;
  std::unordered_map<std::string, int64_t> revoked;

  // Subscriptions.
  std::mutex subs_mutex;
  std::unordered_map<uint64_t, std::shared_ptr<subscription>> subs;
  uint64_t next_sub = 1;

  // Replay buffer (guarded by subs_mutex): the most recent dispatched
  // events, in seq order. Events with seq <= replay_floor may be gone.
  std::deque<buffered_event> replay;
  uint64_t replay_floor = 0;
  /// The last seq handed out (for `since` values from elsewhere).
  std::atomic<uint64_t> last_issued{0};

  // Event dispatch: queue + one thread calling sinks without any lock held.
  std::mutex ev_mutex;
  std::condition_variable ev_cv;
  std::deque<queued_event> ev_queue;
  uint64_t ev_seq = 0;
  bool ev_stop = false;
  std::thread ev_thread;

  // Bot: jobs keyed by (due time, order), run by one thread.
  std::mutex bot_mutex;
  std::condition_variable bot_cv;
  std::map<std::pair<steady::time_point, uint64_t>, bot_job> bot_jobs;
  uint64_t bot_order = 0;
  bool bot_stop = false;
  std::thread bot_thread;

  std::mutex stop_mutex;

  // Faults.
  mutable std::mutex fault_mutex;
  fault_state faults;
  double fail_acc = 0;
  std::vector<fault_listener> listeners;

  // Doors.
  std::atomic<bool> door_up[4] = {false, false, false, false};
  /// http and ws always exist; ipc and grpc only when configured
  std::atomic<bool> door_configured[4] = {true, true, false, false};
  std::atomic<int64_t> connections[4] = {0, 0, 0, 0};

  // Rate limiting.
  std::mutex rl_mutex;
  std::unordered_map<std::string, bucket> buckets;

  // Failed-login throttling (per user name and per peer).
  login_throttle throttle;

  explicit impl(gateway_config c) : cfg(std::move(c)), throttle(cfg.login) {}

  // -- startup and shutdown --------------------------------------------------

  void open() {
    if (cfg.data_dir.empty())
      throw std::runtime_error("data_dir must not be empty");
    ensure_private_dir(cfg.data_dir); // 0700 whatever the umask
    secret = load_or_create_secret(cfg.data_dir + "/jwt.secret");
    for (const char* f : {"/gateway.db", "/gateway.db-wal", "/gateway.db-shm"})
      claim_private_file(cfg.data_dir + f, "the database file");
    db = std::make_unique<store>(cfg.data_dir + "/gateway.db");
    db->ensure_user(bot_user_id, bot_username, "bot", "Companion");
    for (auto& u : cfg.users) {
      if (u.username.empty() || u.username.size() > 64)
        throw std::runtime_error("user name must have 1-64 characters");
      if (u.username == bot_username)
        throw std::runtime_error("user name 'companion' is reserved");
      if (u.password.empty())
        throw std::runtime_error("user " + u.username + " has no password");
      if (u.role != "user" && u.role != "admin")
        throw std::runtime_error("user " + u.username
                                 + ": role must be user or admin");
      db->upsert_user(u.username, hash_password(u.password), u.role);
    }
    for (auto& [jti, exp] : db->revoked_jtis(now_s()))
      revoked.emplace(jti, exp);
    // Event numbers keep increasing across restarts.
    ev_seq = static_cast<uint64_t>(now_ms()) * 1000;
    // nothing before this start can be replayed
    replay_floor = ev_seq;
    last_issued = ev_seq;
    ev_thread = std::thread([this] { event_loop(); });
    bot_thread = std::thread([this] { bot_loop(); });
  }

  void stop() {
    std::lock_guard<std::mutex> guard(stop_mutex);
    {
      std::lock_guard<std::mutex> lock(bot_mutex);
      bot_stop = true;
      bot_jobs.clear();
    }
    bot_cv.notify_all();
    join(bot_thread);
    {
      std::lock_guard<std::mutex> lock(ev_mutex);
      ev_stop = true;
      ev_queue.clear();
    }
    ev_cv.notify_all();
    join(ev_thread);
  }

  static void join(std::thread& t) {
    if (!t.joinable())
      return;
    if (t.get_id() == std::this_thread::get_id())
      t.detach(); // stop() called from a sink or listener on that thread
    else
      t.join();
  }

  // -- events ----------------------------------------------------------------

  void publish(std::optional<std::string> user_id, std::string topic,
               std::string data) {
    {
      std::lock_guard<std::mutex> lock(ev_mutex);
      if (ev_stop || ev_queue.size() >= max_event_queue)
        return;
      queued_event q;
      q.user_id = std::move(user_id);
      q.ev.topic = std::move(topic);
      q.ev.data = std::move(data);
      q.ev.seq = ++ev_seq;
      last_issued = ev_seq;
      ev_queue.push_back(std::move(q));
    }
    ev_cv.notify_one();
  }

  void event_loop() {
    std::unique_lock<std::mutex> lock(ev_mutex);
    for (;;) {
      ev_cv.wait(lock, [this] { return ev_stop || !ev_queue.empty(); });
      if (ev_stop)
        return;
      queued_event q = std::move(ev_queue.front());
      ev_queue.pop_front();
      lock.unlock();
      deliver(q);
      lock.lock();
    }
  }

  /// Drops buffered events beyond the size and age limits (subs_mutex
  /// held).
  void trim_replay(steady::time_point now) {
    auto max_age = std::chrono::seconds(std::max(cfg.replay_seconds, 0));
    while (!replay.empty()
           && (replay.size() > cfg.replay_events
               || now - replay.front().at > max_age)) {
      replay_floor = replay.front().ev.seq;
      replay.pop_front();
    }
  }

  void deliver(const queued_event& q) {
    std::vector<std::shared_ptr<subscription>> targets;
    {
      // Buffering and choosing the targets happen under one lock, so a
      // subscribe() sees each event either in the buffer or as a live one.
      std::lock_guard<std::mutex> lock(subs_mutex);
      auto now = steady::now();
      if (cfg.replay_events > 0) {
        try {
          replay.push_back(buffered_event{q.user_id, q.ev, now});
        } catch (...) {
          replay_floor = q.ev.seq; // could not keep it: it is a gap
        }
      } else {
        replay_floor = q.ev.seq;
      }
      trim_replay(now);
      for (auto& [id, s] : subs)
        if (!q.user_id || s->user_id == *q.user_id)
          targets.push_back(s);
    }
    for (auto& s : targets) {
      if (!s->active.load())
        continue;
      try {
        std::lock_guard<std::mutex> guard(s->deliver_mutex);
        if (q.ev.seq <= s->last_seq)
          continue; // replayed already
        s->last_seq = q.ev.seq;
        s->sink(q.ev);
      } catch (...) {
        // A failing sink must not stop delivery to the others.
      }
    }
  }

  // -- bot -------------------------------------------------------------------

  void enqueue_bot(const message_record& m, const std::string& owner_id) {
    if (!cfg.bot_enabled)
      return;
    bot_job job;
    job.owner_id = owner_id;
    job.conversation_id = m.conversation_id;
    job.reply_to = m.id;
    job.message_id = "bot-" + m.id;
    job.text = bot_reply_text(m.content);
    job.chunks = bot_chunks(job.text);
    {
      std::lock_guard<std::mutex> lock(bot_mutex);
      if (bot_stop || bot_jobs.size() >= max_bot_pending)
        return; // dropped: never block a request
      auto due = steady::now()
                 + std::chrono::milliseconds(cfg.bot_chunk_delay_ms);
      bot_jobs.emplace(std::make_pair(due, ++bot_order), std::move(job));
    }
    bot_cv.notify_one();
  }

  void bot_loop() {
    std::unique_lock<std::mutex> lock(bot_mutex);
    while (!bot_stop) {
      if (bot_jobs.empty()) {
        bot_cv.wait(lock);
        continue;
      }
      auto due = bot_jobs.begin()->first.first;
      if (steady::now() < due) {
        bot_cv.wait_until(lock, due);
        continue;
      }
      auto node = bot_jobs.extract(bot_jobs.begin());
      lock.unlock();
      bool more = false;
      try {
        more = bot_step(node.mapped());
      } catch (...) {
        more = false; // e.g. a database error: drop this reply
      }
      lock.lock();
      if (more && !bot_stop) {
        node.key() = std::make_pair(
          steady::now() + std::chrono::milliseconds(cfg.bot_chunk_delay_ms),
          ++bot_order);
        bot_jobs.insert(std::move(node));
      }
    }
  }

  // Sends the next chunk; after the last one stores and pushes the final
  // message. True if the job has more to do.
  bool bot_step(bot_job& job) {
    bool last = job.next + 1 >= job.chunks.size();
    json::object chunk;
    chunk["conversation_id"] = job.conversation_id;
    chunk["reply_to"] = job.reply_to;
    chunk["message_id"] = job.message_id;
    chunk["seq_no"] = job.next;
    chunk["chunk"] = job.chunks[job.next];
    chunk["done"] = last;
    publish(job.owner_id, "message.stream", json::serialize(chunk));
    ++job.next;
    if (!last)
      return true;
    message_record m;
    m.id = job.message_id;
    m.conversation_id = job.conversation_id;
    m.sender_id = bot_user_id;
    m.content = job.text;
    m.type = "text";
    m.timestamp_ms = now_ms();
    m.reply_to = job.reply_to;
    if (db->insert_message(m, job.owner_id) == insert_result::created)
      publish(job.owner_id, "message", json::serialize(message_json(m)));
    return false;
  }

  // -- authentication --------------------------------------------------------

  std::string make_access_token(const user_record& u) {
    jwt_claims c;
    c.sub = u.id;
    c.name = u.username;
    c.role = u.role;
    c.iat = now_s();
    c.exp = c.iat + cfg.access_ttl_s;
    c.jti = random_hex(16);
    return jwt_sign(c, secret);
  }

  json::value token_pair(const user_record& u,
                         const std::string& refresh_token) {
    json::object o;
    o["access_token"] = make_access_token(u);
    o["refresh_token"] = refresh_token;
    o["token_type"] = "Bearer";
    o["expires_in"] = cfg.access_ttl_s;
    o["refresh_expires_in"] = cfg.refresh_ttl_s;
    o["user"] = user_json(u);
    return o;
  }

  bool is_revoked(const std::string& jti) {
    std::lock_guard<std::mutex> lock(revoked_mutex);
    return revoked.count(jti) > 0;
  }

  void revoke(const std::string& jti, int64_t exp) {
    db->revoke_jti(jti, exp);
    std::lock_guard<std::mutex> lock(revoked_mutex);
    revoked[jti] = exp;
    if (revoked.size() > 1024) {
      auto now = now_s();
      for (auto it = revoked.begin(); it != revoked.end();)
        it = it->second <= now ? revoked.erase(it) : std::next(it);
    }
  }

  // Verifies a token and loads its user; throws a 401 api_error.
  std::pair<jwt_claims, user_record> verify(const std::string& token) {
    if (token.empty())
      throw api_error{401, "unauthenticated", "an access token is required",
                      {}, {}};
    jwt_claims c;
    switch (jwt_verify(token, secret, now_s(), &c)) {
      case jwt_error::none:
        break;
      case jwt_error::expired:
        throw api_error{401, "token_expired", "the access token has expired",
                        {}, {}};
      default:
        throw api_error{401, "invalid_token", "the access token is invalid",
                        {}, {}};
    }
    if (is_revoked(c.jti))
      throw api_error{401, "invalid_token", "the access token was revoked",
                      {}, {}};
    auto u = db->user_by_id(c.sub);
    if (!u || u->role == "bot")
      throw api_error{401, "invalid_token", "the access token is invalid",
                      {}, {}};
    return {std::move(c), std::move(*u)};
  }

  static principal to_principal(const jwt_claims& c, const user_record& u) {
    principal p;
    p.user_id = u.id;
    p.username = u.username;
    p.role = u.role; // the current role, not the one at login
    p.exp = c.exp;
    return p;
  }

  // -- faults, rate limit ----------------------------------------------------

  // Applies latency and fail_ratio; returns an error to send, if any.
  std::optional<api_error> inject_faults(front_door door) {
    fault_state f;
    bool fail = false;
    {
      std::lock_guard<std::mutex> lock(fault_mutex);
      f = faults;
      if (f.fail_ratio > 0) {
        fail_acc += f.fail_ratio;
        if (fail_acc >= 1.0 - 1e-9) {
          fail_acc -= 1.0;
          fail = true;
        }
      }
    }
    std::vector<std::pair<std::string, std::string>> retry{{"Retry-After",
                                                            "1"}};
    if ((door == front_door::ws && !f.ws_up)
        || (door == front_door::ipc && !f.ipc_up)
        || (door == front_door::grpc && !f.grpc_up))
      return api_error{503, "unavailable",
                       std::string("the ") + to_string(door)
                         + " door is switched off",
                       {}, retry};
    if (f.latency_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(f.latency_ms));
    if (fail)
      return api_error{f.fail_status, "unavailable", "injected fault", {},
                       retry};
    return std::nullopt;
  }

  // Token bucket per user; returns the Retry-After seconds when empty.
  std::optional<int64_t> rate_limited(const std::string& user_id) {
    double rate = cfg.rate_limit_per_s;
    if (!(rate > 0))
      return std::nullopt;
    double burst = cfg.rate_limit_burst > 0
                     ? cfg.rate_limit_burst
                     : std::max(1.0, std::ceil(rate));
    auto now = steady::now();
    std::lock_guard<std::mutex> lock(rl_mutex);
    auto [it, inserted] = buckets.try_emplace(user_id);
    auto& b = it->second;
    if (inserted) {
      b.tokens = burst;
    } else {
      double dt = std::chrono::duration<double>(now - b.last).count();
      b.tokens = std::min(burst, b.tokens + dt * rate);
    }
    b.last = now;
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return std::nullopt;
    }
    auto wait = static_cast<int64_t>(std::ceil((1.0 - b.tokens) / rate));
    return std::max<int64_t>(1, wait);
  }

  // -- request handling ------------------------------------------------------

  api_response handle(const api_request& req) {
    std::optional<misbehave_rule> mb;
    api_response r;
    try {
      r = dispatch(req, mb);
    } catch (const api_error& e) {
      r = to_response(e);
    }
    if (mb && mb->after)
      misbehave_after(*mb, r);
    return r;
  }

  // -- misbehave (test-only) -------------------------------------------------

  /// Takes one call of the misbehave rule if this call matches it.
  std::optional<misbehave_rule> claim_misbehave(const api_request& req,
                                                const std::string& path) {
    std::lock_guard<std::mutex> lock(fault_mutex);
    if (!faults.misbehave || faults.misbehave->remaining <= 0)
      return std::nullopt;
    auto& m = *faults.misbehave;
    if (m.door != "any" && m.door != to_string(req.door))
      return std::nullopt;
    if (!m.method.empty() && m.method != req.method)
      return std::nullopt;
    if (m.path != path)
      return std::nullopt;
    --m.remaining;
    return m;
  }

  /// `when: before`: the answer of a call that is not processed.
  static api_response misbehave_before(const misbehave_rule& m) {
    api_response r;
    r.status = 200;
    r.misbehave = m.mode;
    switch (m.mode) {
      case misbehave_mode::malformed_json:
        r.body = malformed_body;
        break;
      case misbehave_mode::not_envelope:
        r.body = not_envelope_body;
        break;
      default: // truncated (cut by the door), hang (never sent)
        r.body = unprocessed_body;
        break;
    }
    return r;
  }

  /// `when: after`: the processed call's answer goes wrong.
  static void misbehave_after(const misbehave_rule& m, api_response& r) {
    switch (m.mode) {
      case misbehave_mode::malformed_json:
        r.status = 200;
        r.body = malformed_body;
        r.headers.clear();
        break;
      case misbehave_mode::not_envelope:
        r.status = 200;
        r.body = not_envelope_body;
        r.headers.clear();
        break;
      case misbehave_mode::slow:
        std::this_thread::sleep_for(std::chrono::milliseconds(m.delay_ms));
        return;
      default:
        break;
    }
    r.misbehave = m.mode;
  }

  api_response dispatch(const api_request& req,
                        std::optional<misbehave_rule>& mb) {
    // Target: strip /api/v1, split off query and fragment.
    std::string_view target = req.target;
    if (auto hash = target.find('#'); hash != target.npos)
      target = target.substr(0, hash);
    constexpr std::string_view prefix = "/api/v1";
    if (starts_with(target, prefix)
        && (target.size() == prefix.size() || target[prefix.size()] == '/'
            || target[prefix.size()] == '?'))
      target.remove_prefix(prefix.size());
    std::string_view path = target;
    std::string_view query;
    if (auto q = target.find('?'); q != target.npos) {
      path = target.substr(0, q);
      query = target.substr(q + 1);
    }
    std::vector<std::string> segs;
    while (!path.empty()) {
      auto slash = path.find('/');
      auto seg = path.substr(0, slash);
      path = slash == path.npos ? std::string_view{} : path.substr(slash + 1);
      if (!seg.empty())
        segs.push_back(percent_decode(seg, false));
    }

    auto m = match_route(segs, cfg.enable_faults);
    if (!m)
      throw api_error{404, "not_found", "no such route", {}, {}};
    if (std::find(m->methods.begin(), m->methods.end(), req.method)
        == m->methods.end()) {
      std::string allow;
      for (auto meth : m->methods)
        allow += (allow.empty() ? "" : ", ") + std::string(meth);
      throw api_error{405, "method_not_allowed",
                      "method " + req.method + " is not allowed here",
                      {},
                      {{"Allow", allow}}};
    }
    if (req.body.size() > cfg.max_body_bytes) {
      json::object d;
      d["max_bytes"] = cfg.max_body_bytes;
      throw api_error{413, "payload_too_large", "the body is too large",
                      std::move(d), {}};
    }
    bool exempt = exempt_from_faults(m->r);
    if (!exempt)
      if (auto e = inject_faults(req.door))
        throw *e;
    if (!exempt && cfg.enable_faults) {
      std::string norm = "/";
      for (auto& seg : segs)
        norm += (norm.size() > 1 ? "/" : "") + seg;
      mb = claim_misbehave(req, norm);
      if (mb && !mb->after) {
        if (mb->mode == misbehave_mode::slow)
          std::this_thread::sleep_for(std::chrono::milliseconds(mb->delay_ms));
        else
          return misbehave_before(*mb);
      }
    }

    std::optional<std::pair<jwt_claims, user_record>> who;
    if (needs_auth(m->r)) {
      who = verify(req.token);
      if (needs_admin(m->r) && who->second.role != "admin")
        throw api_error{403, "forbidden", "admin role required", {}, {}};
      if (!exempt)
        if (auto wait = rate_limited(who->second.id))
          throw api_error{429, "rate_limited", "too many requests",
                          {},
                          {{"Retry-After", std::to_string(*wait)}}};
    }

    auto q = parse_query(query);
    switch (m->r) {
      case route::authenticate:
        return do_authenticate(req);
      case route::refresh:
        return do_refresh(req);
      case route::logout:
        return do_logout(req, who->first, who->second);
      case route::me:
        return ok(200, user_json(who->second));
      case route::preferences:
        return do_preferences(req, who->second);
      case route::family:
        return do_family(who->second);
      case route::send:
        return do_send(req, who->second);
      case route::history:
        return do_history(m->param, q, who->second);
      case route::read:
        return do_read(m->param, who->second);
      case route::health:
        return ok(200, health_json(false));
      case route::health_detailed:
        return ok(200, health_json(true));
      case route::status: {
        auto h = health_json(false);
        h.as_object()["uptime_s"] = uptime_s();
        return ok(200, h);
      }
      case route::update:
        return do_update(req);
      case route::admin_users: {
        json::array a;
        for (auto& u : db->users())
          a.push_back(user_json(u));
        json::object o;
        o["users"] = std::move(a);
        return ok(200, o);
      }
      case route::admin_faults:
        return req.method == "GET" ? ok(200, faults_json(get_faults()))
                                   : do_faults(req);
    }
    throw api_error{404, "not_found", "no such route", {}, {}};
  }

  api_response do_authenticate(const api_request& req) {
    auto body = body_object(req.body, false);
    auto username = required_string(body, "username");
    auto password = required_string(body, "password");
    if (auto wait = throttle.check(username, req.peer, steady::now());
        wait.count() > 0) {
      auto secs = std::max<int64_t>(1, (wait.count() + 999) / 1000);
      json::object d;
      d["retry_after_s"] = secs;
      throw api_error{429, "rate_limited",
                      "too many failed logins; try again in "
                        + std::to_string(secs) + " s",
                      std::move(d),
                      {{"Retry-After", std::to_string(secs)}}};
    }
    auto u = db->user_by_name(username);
    bool good = false;
    if (u && u->role != "bot")
      good = verify_password(password, u->password_hash);
    else // same work for unknown users (no timing oracle)
      verify_password(password, dummy_hash());
    if (!good) {
      throttle.failed(username, req.peer, steady::now());
      throw api_error{401, "invalid_credentials",
                      "wrong user name or password", {}, {}};
    }
    throttle.succeeded(username, steady::now());
    auto refresh = random_token(32);
    db->add_refresh(sha256_hex(refresh), u->id, random_hex(16),
                    now_s() + cfg.refresh_ttl_s);
    return ok(200, token_pair(*u, refresh));
  }

  static const std::string& dummy_hash() {
    static const std::string h = hash_password("dummy password");
    return h;
  }

  api_response do_refresh(const api_request& req) {
    auto body = body_object(req.body, false);
    auto old_token = required_string(body, "refresh_token");
    auto fresh = random_token(32);
    std::string user_id;
    auto now = now_s();
    auto r = db->rotate_refresh(sha256_hex(old_token), sha256_hex(fresh),
                                now + cfg.refresh_ttl_s, now, user_id);
    if (r == refresh_result::reused)
      throw api_error{401, "invalid_refresh_token",
                      "refresh token already used; its session is revoked",
                      {}, {}};
    if (r != refresh_result::ok)
      throw api_error{401, "invalid_refresh_token",
                      "unknown or expired refresh token", {}, {}};
    auto u = db->user_by_id(user_id);
    if (!u || u->role == "bot")
      throw api_error{401, "invalid_refresh_token",
                      "unknown or expired refresh token", {}, {}};
    return ok(200, token_pair(*u, fresh));
  }

  api_response do_logout(const api_request& req, const jwt_claims& c,
                         const user_record& u) {
    auto body = body_object(req.body, true);
    auto refresh = optional_string(body, "refresh_token");
    revoke(c.jti, c.exp);
    if (refresh) {
      auto owner = db->refresh_owner(sha256_hex(*refresh));
      if (owner && owner->first == u.id)
        db->revoke_family(owner->second);
    } else {
      db->revoke_user_refresh(u.id);
    }
    json::object o;
    o["logged_out"] = true;
    return ok(200, o);
  }

  api_response do_preferences(const api_request& req, user_record u) {
    auto body = body_object(req.body, false);
    auto prefs = parse_object_or_empty(u.preferences);
    for (auto& [key, value] : body) {
      std::string field = "preferences." + std::string(key);
      if (key.empty() || key.size() > 128)
        throw validation(field, "keys must have 1-128 characters");
      if (value.is_null())
        prefs.erase(key);
      else if (value.is_string() || value.is_number() || value.is_bool())
        prefs[key] = value;
      else
        throw validation(field,
                         "values must be strings, numbers, booleans or null");
    }
    if (prefs.size() > max_preference_keys)
      throw validation("preferences", "at most 64 keys");
    u.preferences = json::serialize(prefs);
    db->set_preferences(u.id, u.preferences);
    return ok(200, user_json(u));
  }

  api_response do_family(const user_record& me) {
    json::array a;
    for (auto& u : db->users())
      if (u.id != me.id && u.role != "bot")
        a.push_back(user_json(u));
    json::object o;
    o["members"] = std::move(a);
    return ok(200, o);
  }

  std::string current_conversation(const std::string& user_id) {
    if (auto c = db->last_conversation_of(user_id))
      return *c;
    return "default-" + user_id;
  }

  // 403 unless the conversation is (or may become) the user's.
  void check_owner(const std::string& conversation_id, const std::string& uid,
                   bool must_exist_check) {
    if (starts_with(conversation_id, "default-")
        && conversation_id != "default-" + uid)
      throw api_error{403, "forbidden",
                      "this conversation belongs to another user", {}, {}};
    if (must_exist_check) {
      auto owner = db->conversation_owner(conversation_id);
      if (owner && *owner != uid)
        throw api_error{403, "forbidden",
                        "this conversation belongs to another user", {}, {}};
    }
  }

  api_response do_send(const api_request& req, const user_record& u) {
    auto body = body_object(req.body, false);
    message_record m;
    m.id = required_string(body, "id");
    if (!valid_id(m.id))
      throw validation("id", "must have 1-128 characters from [A-Za-z0-9_.:-]");
    if (starts_with(m.id, "bot-"))
      throw validation("id", "the prefix bot- is reserved");
    auto conv = optional_string(body, "conversation_id");
    if (conv && !valid_id(*conv))
      throw validation("conversation_id",
                       "must have 1-128 characters from [A-Za-z0-9_.:-]");
    m.content = required_string(body, "content");
    if (m.content.empty())
      throw validation("content", "must not be empty");
    if (utf8_length(m.content) > max_content_chars)
      throw validation("content", "at most 4000 characters");
    m.type = optional_string(body, "type").value_or("text");
    if (m.type != "text" && m.type != "image" && m.type != "audio"
        && m.type != "system")
      throw validation("type", "must be text, image, audio or system");
    if (auto md = body.if_contains("metadata"); md && !md->is_null()) {
      if (!md->is_object())
        throw validation("metadata", "must be an object");
      m.metadata = json::serialize(*md);
    }
    m.conversation_id = !conv || *conv == "current"
                          ? current_conversation(u.id)
                          : *conv;
    check_owner(m.conversation_id, u.id, false);
    m.sender_id = u.id;
    m.timestamp_ms = now_ms();
    switch (db->insert_message(m, u.id)) {
      case insert_result::created:
        publish(u.id, "message", json::serialize(message_json(m)));
        if (m.type == "text")
          enqueue_bot(m, u.id);
        return ok(201, message_json(m));
      case insert_result::exists:
        return ok(200, message_json(m));
      case insert_result::conflict: {
        json::object d;
        d["field"] = "id";
        throw api_error{409, "conflict",
                        "this message id is already used by another user",
                        std::move(d), {}};
      }
      case insert_result::forbidden:
        break;
    }
    throw api_error{403, "forbidden",
                    "this conversation belongs to another user", {}, {}};
  }

  api_response
  do_history(const std::string& param,
             const std::vector<std::pair<std::string, std::string>>& query,
             const user_record& u) {
    std::string conv = param == "current" ? current_conversation(u.id) : param;
    if (!valid_id(conv))
      throw api_error{404, "not_found", "no such conversation", {}, {}};
    std::optional<int64_t> since;
    int limit = default_history_limit;
    for (auto& [key, value] : query) {
      if (key == "since") {
        since = parse_uint(value);
        if (!since)
          throw validation("since", "must be a non-negative integer");
      } else if (key == "limit") {
        auto l = parse_uint(value);
        if (!l || *l < 1 || *l > max_history_limit)
          throw validation("limit", "must be an integer from 1 to 500");
        limit = static_cast<int>(*l);
      }
    }
    check_owner(conv, u.id, true);
    bool has_more = false;
    auto msgs = db->history(conv, since, limit, has_more);
    json::array a;
    for (auto& msg : msgs)
      a.push_back(message_json(msg));
    json::object o;
    o["conversation_id"] = conv;
    o["messages"] = std::move(a);
    o["has_more"] = has_more;
    o["next_since"] = msgs.empty() ? since.value_or(0) : msgs.back().seq;
    return ok(200, o);
  }

  api_response do_read(const std::string& id, const user_record& u) {
    auto msg = valid_id(id) ? db->message_by_id(id) : std::nullopt;
    if (!msg)
      throw api_error{404, "not_found", "no such message", {}, {}};
    auto owner = db->conversation_owner(msg->conversation_id);
    if (!owner || *owner != u.id)
      throw api_error{403, "forbidden",
                      "this message belongs to another user", {}, {}};
    bool changed = false;
    auto updated = db->mark_read(id, now_ms(), changed);
    if (!updated)
      throw api_error{404, "not_found", "no such message", {}, {}};
    auto data = message_json(*updated);
    if (changed)
      publish(u.id, "message.read", json::serialize(data));
    return ok(200, data);
  }

  api_response do_update(const api_request& req) {
    // The body is optional; when given it must be valid JSON.
    bool blank = std::all_of(req.body.begin(), req.body.end(), [](char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\n';
    });
    if (!blank) {
      auto v = parse_json(req.body);
      if (!v)
        throw api_error{400, "bad_json", "the body is not valid JSON", {},
                        {}};
      reject_non_finite(*v);
    }
    json::object o;
    o["update_id"] = "upd_" + random_hex(8);
    o["status"] = "scheduled";
    json::object ev = o;
    ev["version"] = cfg.version;
    ev["timestamp"] = iso8601_ms(now_ms());
    publish(std::nullopt, "system.update", json::serialize(ev));
    return ok(202, o);
  }

  fault_state get_faults() const {
    std::lock_guard<std::mutex> lock(fault_mutex);
    return faults;
  }

  /// The `misbehave` object of POST /admin/faults (docs/protocol.md).
  static misbehave_rule parse_misbehave(const json::value& v) {
    if (!v.is_object())
      throw validation("misbehave", "must be an object or null");
    auto& o = v.as_object();
    for (auto& [k, x] : o) {
      (void) x;
      if (k != "door" && k != "method" && k != "path" && k != "count"
          && k != "mode" && k != "delay_ms" && k != "when")
        throw validation("misbehave." + std::string(k), "unknown field");
    }
    auto str = [&](const char* key) -> std::optional<std::string> {
      auto p = o.if_contains(key);
      if (!p)
        return std::nullopt;
      if (!p->is_string())
        throw validation(std::string("misbehave.") + key, "must be a string");
      return std::string(p->as_string());
    };
    auto num = [&](const char* key, int64_t lo,
                   int64_t hi) -> std::optional<int> {
      auto p = o.if_contains(key);
      if (!p)
        return std::nullopt;
      auto i = as_int64(*p);
      if (!i || *i < lo || *i > hi)
        throw validation(std::string("misbehave.") + key,
                         "must be an integer from " + std::to_string(lo)
                           + " to " + std::to_string(hi));
      return static_cast<int>(*i);
    };
    misbehave_rule m;
    m.door = str("door").value_or("any");
    if (m.door != "http" && m.door != "ws" && m.door != "ipc"
        && m.door != "grpc" && m.door != "any")
      throw validation("misbehave.door", "must be \"http\", \"ws\", "
                                         "\"ipc\", \"grpc\" or \"any\"");
    if (auto meth = str("method")) {
      for (auto& c : *meth)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (*meth != "GET" && *meth != "POST" && *meth != "PUT"
          && *meth != "DELETE")
        throw validation("misbehave.method",
                         "must be GET, POST, PUT or DELETE");
      m.method = *meth;
    }
    auto path = str("path");
    if (!path || path->empty() || path->front() != '/')
      throw validation("misbehave.path",
                       "is required: a route path such as "
                       "\"/conversations/messages\"");
    m.path = normalize_path(*path);
    if (m.path == "/health" || m.path == "/health/detailed"
        || m.path == "/admin/faults")
      throw validation("misbehave.path",
                       "/health, /health/detailed and /admin/faults never "
                       "misbehave");
    auto mode = str("mode");
    if (!mode)
      throw validation("misbehave.mode", "is required");
    for (auto x : {misbehave_mode::malformed_json, misbehave_mode::not_envelope,
                   misbehave_mode::truncated, misbehave_mode::slow,
                   misbehave_mode::hang})
      if (*mode == to_string(x))
        m.mode = x;
    if (m.mode == misbehave_mode::none)
      throw validation("misbehave.mode",
                       "must be malformed_json, not_envelope, truncated, "
                       "slow or hang");
    m.count = num("count", 1, 100000).value_or(1);
    m.remaining = m.count;
    auto delay = num("delay_ms", 0, 60000);
    if (m.mode == misbehave_mode::slow && (!delay || *delay < 1))
      throw validation("misbehave.delay_ms",
                       "is required for mode slow: an integer from 1 to 60000");
    m.delay_ms = delay.value_or(0);
    auto when = str("when").value_or("before");
    if (when != "before" && when != "after")
      throw validation("misbehave.when", "must be \"before\" or \"after\"");
    m.after = when == "after";
    return m;
  }

  api_response do_faults(const api_request& req) {
    auto body = body_object(req.body, true);
    // Validate everything first, then apply atomically.
    auto get_bool = [&](const char* key) -> std::optional<bool> {
      auto v = body.if_contains(key);
      if (!v)
        return std::nullopt;
      if (!v->is_bool())
        throw validation(key, "must be a boolean");
      return v->as_bool();
    };
    auto get_up = [&](const char* key) -> std::optional<bool> {
      auto v = body.if_contains(key);
      if (!v)
        return std::nullopt;
      if (!v->is_string()
          || (v->as_string() != "up" && v->as_string() != "down"))
        throw validation(key, "must be \"up\" or \"down\"");
      return v->as_string() == "up";
    };
    auto get_int = [&](const char* key, int64_t lo,
                       int64_t hi) -> std::optional<int> {
      auto v = body.if_contains(key);
      if (!v)
        return std::nullopt;
      auto i = as_int64(*v);
      if (!i || *i < lo || *i > hi)
        throw validation(key, "must be an integer from " + std::to_string(lo)
                                + " to " + std::to_string(hi));
      return static_cast<int>(*i);
    };
    auto reset = get_bool("reset");
    auto drop_ws = get_bool("drop_ws");
    auto ipc = get_up("ipc");
    auto ws = get_up("ws");
    auto grpc = get_up("grpc");
    auto latency = get_int("latency_ms", 0, 60000);
    auto status = get_int("fail_status", 500, 599);
    std::optional<double> ratio;
    if (auto v = body.if_contains("fail_ratio")) {
      if (!v->is_number() || !(v->to_number<double>() >= 0.0)
          || !(v->to_number<double>() <= 1.0))
        throw validation("fail_ratio", "must be a number from 0 to 1");
      ratio = v->to_number<double>();
    }
    // misbehave: null clears the rule, an object replaces it
    bool set_misbehave = false;
    std::optional<misbehave_rule> misbehave;
    if (auto v = body.if_contains("misbehave")) {
      set_misbehave = true;
      if (!v->is_null())
        misbehave = parse_misbehave(*v);
    }
    fault_state state;
    std::vector<fault_listener> ls;
    {
      std::lock_guard<std::mutex> lock(fault_mutex);
      if (reset.value_or(false)) {
        faults = fault_state{};
        fail_acc = 0;
      }
      if (ipc)
        faults.ipc_up = *ipc;
      if (ws)
        faults.ws_up = *ws;
      if (grpc)
        faults.grpc_up = *grpc;
      if (latency)
        faults.latency_ms = *latency;
      if (ratio) {
        faults.fail_ratio = *ratio;
        fail_acc = 0;
      }
      if (status)
        faults.fail_status = *status;
      if (set_misbehave)
        faults.misbehave = misbehave;
      state = faults;
      ls = listeners;
    }
    for (auto& l : ls) {
      try {
        l(state, drop_ws.value_or(false));
      } catch (...) {
        // A listener's failure does not undo the change.
      }
    }
    return ok(200, faults_json(state));
  }

  int64_t uptime_s() const {
    return std::chrono::duration_cast<std::chrono::seconds>(steady::now()
                                                            - started)
      .count();
  }

  json::value health_json(bool detailed) {
    auto f = get_faults();
    bool db_up = db->ping();
    json::object services;
    services["database"] = db_up ? "up" : "down";
    services["http"] = door_up[0].load() ? "up" : "down";
    services["websocket"] = door_up[1].load() && f.ws_up ? "up" : "down";
    auto optional_door = [&](int i, bool fault_up) {
      if (!door_configured[i].load())
        return "off"; // the gateway was started without this door
      return door_up[i].load() && fault_up ? "up" : "down";
    };
    services["ipc"] = optional_door(2, f.ipc_up);
    services["grpc"] = optional_door(3, f.grpc_up);
    json::object o;
    o["is_healthy"] = db_up;
    o["version"] = cfg.version;
    o["timestamp"] = iso8601_ms(now_ms());
    o["services"] = std::move(services);
    if (detailed) {
      o["uptime_s"] = uptime_s();
      json::object conns;
      conns["http"] = connections[0].load();
      conns["ws"] = connections[1].load();
      conns["ipc"] = connections[2].load();
      conns["grpc"] = connections[3].load();
      o["connections"] = std::move(conns);
      json::object counts;
      counts["users"] = db_up ? db->count_users() : 0;
      counts["messages"] = db_up ? db->count_messages() : 0;
      {
        std::lock_guard<std::mutex> lock(subs_mutex);
        counts["subscriptions"] = subs.size();
      }
      o["counts"] = std::move(counts);
      auto fj = faults_json(f);
      fj.as_object()["enabled"] = cfg.enable_faults;
      o["faults"] = std::move(fj);
    }
    return o;
  }
};

api::api(gateway_config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {
  impl_->open();
}

api::~api() {
  stop();
}

api_response api::handle(const api_request& req) {
  try {
    return impl_->handle(req);
  } catch (...) {
    // Never leak internals.
  }
  try {
    return error_response(500, "internal_error", "internal error");
  } catch (...) {
    api_response r;
    r.status = 500;
    return r;
  }
}

std::optional<principal> api::authenticate(const std::string& token,
                                           api_response* err) {
  try {
    auto [claims, user] = impl_->verify(token);
    return impl::to_principal(claims, user);
  } catch (const api_error& e) {
    if (err)
      *err = to_response(e);
  } catch (...) {
    if (err)
      *err = error_response(500, "internal_error", "internal error");
  }
  return std::nullopt;
}

uint64_t api::subscribe(const std::string& user_id, event_sink sink,
                        uint64_t since, replay_info* info) {
  auto s = std::make_shared<subscription>();
  s->user_id = user_id;
  s->sink = std::move(sink);
  s->last_seq = since;
  replay_info ri;
  ri.since = since;
  std::vector<event> backlog;
  // Held until the replay is out: the dispatcher waits for it before it
  // gives this subscription its first live event.
  std::unique_lock<std::mutex> guard(s->deliver_mutex);
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->subs_mutex);
    if (since > 0) {
      auto& d = *impl_;
      d.trim_replay(steady::now());
      // complete: nothing of this user after `since` was dropped, and
      // `since` is a seq of this gateway (not from the future)
      ri.complete = since >= d.replay_floor && since <= d.last_issued.load();
      for (auto& b : d.replay)
        if (b.ev.seq > since && (!b.user_id || *b.user_id == user_id))
          backlog.push_back(b.ev);
      ri.replayed = backlog.size();
    }
    id = impl_->next_sub++;
    impl_->subs.emplace(id, s);
  }
  if (info)
    *info = ri;
  for (auto& e : backlog) {
    if (!s->active.load())
      break;
    try {
      s->last_seq = e.seq;
      s->sink(e);
    } catch (...) {
      // like a live delivery: the sink's failure is its own business
    }
  }
  return id;
}

void api::unsubscribe(uint64_t handle) {
  std::shared_ptr<subscription> s;
  {
    std::lock_guard<std::mutex> lock(impl_->subs_mutex);
    auto it = impl_->subs.find(handle);
    if (it == impl_->subs.end())
      return;
    s = std::move(it->second);
    impl_->subs.erase(it);
  }
  s->active = false;
}

fault_state api::faults() const {
  return impl_->get_faults();
}

void api::add_fault_listener(fault_listener f) {
  std::lock_guard<std::mutex> lock(impl_->fault_mutex);
  impl_->listeners.push_back(std::move(f));
}

void api::set_door_status(front_door door, bool up) {
  impl_->door_up[static_cast<int>(door)] = up;
}

void api::set_door_configured(front_door door) {
  impl_->door_configured[static_cast<int>(door)] = true;
}

void api::add_connection(front_door door, int delta) {
  impl_->connections[static_cast<int>(door)] += delta;
}

void api::stop() {
  if (impl_)
    impl_->stop();
}

api_response api::error_response(int status, const std::string& code,
                                  const std::string& message) {
  api_response r;
  r.status = status;
  r.body = error_body(code, message);
  return r;
}

const gateway_config& api::config() const {
  return impl_->cfg;
}

} // namespace aico::gateway
