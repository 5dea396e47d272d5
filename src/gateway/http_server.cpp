// aico reference gateway: HTTP/REST + WebSocket + Server-Sent Events front
// door on one TCP port (Boost.Beast). Contract: docs/protocol.md.
//
// Threads: cfg.threads run the io_context (every connection lives on its own
// strand, so a session's handlers never run concurrently). API calls that
// may block (api::handle sleeps while a latency fault is set) run on a
// separate worker pool and post their result back to the session's strand,
// so an io thread never blocks and a slow request does not hold up others.
// `/health*` and `/admin/faults` are never delayed by the core; they run
// directly on the io thread so a test can always undo a fault even while
// every worker sleeps.
#include "gateway/http_server.hpp"

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <iostream>

#include "gateway/json_util.hpp"
#include "gateway/out_budget.hpp"
#include "gateway/tls_server.hpp"
#include "gateway/tls_stream.hpp"

namespace aico::gateway {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;

// -- limits and timings --------------------------------------------------------

/// (Outgoing bytes queued per WS/SSE connection: http_server_config,
/// ws_max_out_bytes and sse_max_out_bytes.)
/// API requests in flight per WebSocket before reading pauses.
constexpr std::size_t max_in_flight = 64;
/// A TLS handshake (the client's part of it) must complete within this.
constexpr auto tls_handshake_timeout = std::chrono::seconds(10);
/// Idle time of a keep-alive HTTP connection between requests.
constexpr auto http_idle_timeout = std::chrono::seconds(60);
/// A single write that takes longer than this kills the connection.
constexpr auto write_timeout = std::chrono::seconds(30);
/// WebSocket closing handshake (also the opening one).
constexpr auto ws_handshake_timeout = std::chrono::seconds(5);
/// Hard limit for a WebSocket close before the socket is just closed.
constexpr auto ws_close_grace = std::chrono::seconds(3);
constexpr auto ws_stop_close_grace = std::chrono::milliseconds(1000);
/// How long a fault-triggered close waits for in-flight responses.
constexpr auto fault_close_grace = std::chrono::milliseconds(1000);
/// Period of the per-connection housekeeping timer of a WebSocket: 1 s
/// while open (write and idle timeouts are tens of seconds; fault closes
/// are posted directly), 250 ms once it is closing (the close grace). At
/// 10,000 open connections a 250 ms tick alone cost the I/O threads 40,000
/// timer callbacks a second.
constexpr auto ws_tick = std::chrono::milliseconds(1000);
constexpr auto ws_closing_tick = std::chrono::milliseconds(250);
constexpr auto sse_tick = std::chrono::milliseconds(500);
/// How often an SSE stream re-checks that its token was not revoked.
constexpr auto sse_token_check = std::chrono::seconds(1);
/// How long stop() lets sessions close before the io_context is stopped.
constexpr auto stop_grace = std::chrono::milliseconds(2000);
/// After an error response that closes the connection, unread request bytes
/// are drained for at most this long (so the client sees the response
/// instead of a reset).
constexpr auto drain_timeout = std::chrono::seconds(2);
constexpr std::size_t drain_max_bytes = 16 * 1024 * 1024;

constexpr std::string_view api_prefix = "/api/v1";
constexpr std::string_view ws_path = "/api/v1/ws";
constexpr std::string_view events_path = "/api/v1/events";
constexpr const char* server_name = "aico-gateway";

// -- small helpers ---------------------------------------------------------------

void log_line(const std::string& msg) {
  std::cerr << "aico-gateway: http: " + msg + "\n" << std::flush;
}

/// "ADDRESS" of the connected peer ("" if unknown), the key of the per-peer
/// login throttle.
std::string peer_address(const tcp::socket& sock) {
  error_code ec;
  auto ep = sock.remote_endpoint(ec);
  if (ec)
    return {};
  return ep.address().to_string(ec);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i]))
        != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

std::string_view to_sv(beast::string_view s) {
  return {s.data(), s.size()};
}

/// The token of `Authorization: Bearer X` (scheme case-insensitive), or "".
template <class Fields>
std::string bearer_token(const Fields& fields, bool* present = nullptr) {
  auto it = fields.find(http::field::authorization);
  if (present)
    *present = it != fields.end();
  if (it == fields.end())
    return {};
  auto v = trim(to_sv(it->value()));
  if (v.size() < 6 || !iequals(v.substr(0, 6), "bearer"))
    return {};
  v.remove_prefix(6);
  if (!v.empty() && v.front() != ' ' && v.front() != '\t')
    return {};
  return std::string(trim(v));
}

/// A `since` seq: a decimal integer > 0 (anything else means none).
uint64_t parse_since(std::string_view v) {
  v = trim(v);
  if (v.empty() || v.size() > 20)
    return 0;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9')
      return 0;
    auto d = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10)
      return 0;
    n = n * 10 + d;
  }
  return n;
}

/// Path part of a request target (without query and fragment).
std::string_view path_of(std::string_view target) {
  auto q = target.find_first_of("?#");
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

/// Routes the core never delays or fails (docs/protocol.md, admin): they run
/// directly on the io thread.
bool is_fast_route(std::string_view target) {
  auto p = path_of(target);
  if (starts_with(p, api_prefix)
      && (p.size() == api_prefix.size() || p[api_prefix.size()] == '/'))
    p.remove_prefix(api_prefix.size());
  while (p.size() > 1 && p.back() == '/')
    p.remove_suffix(1);
  return p == "/health" || p == "/health/detailed" || p == "/admin/faults";
}

std::string json_string(std::string_view s) {
  return json::serialize(json::string(s));
}

/// The `code` and `message` of an error envelope (for WS error frames).
std::pair<std::string, std::string> envelope_code(const std::string& body) {
  std::pair<std::string, std::string> out{"internal_error", "internal error"};
  if (auto v = parse_json(body); v && v->is_object()) {
    auto& o = v->as_object();
    if (auto c = o.if_contains("code"); c && c->is_string())
      out.first = std::string(c->as_string());
    if (auto m = o.if_contains("message"); m && m->is_string())
      out.second = std::string(m->as_string());
  }
  return out;
}

/// `{"type":"error","status":S,"code":C,"message":M}` (+ "id" if known).
std::string error_frame(int status, std::string_view code,
                        std::string_view message,
                        const json::value* id = nullptr) {
  json::object o;
  o["type"] = "error";
  if (id)
    o["id"] = *id;
  o["status"] = status;
  o["code"] = code;
  o["message"] = message;
  return json::serialize(o);
}

/// Valid JSON text to embed, "null" when empty.
std::string_view json_or_null(const std::string& text) {
  return text.empty() ? std::string_view("null") : std::string_view(text);
}

std::string event_frame(const event& e) {
  std::string f;
  f.reserve(e.data.size() + e.topic.size() + 64);
  f += R"({"type":"event","topic":)";
  f += json_string(e.topic);
  f += R"(,"data":)";
  f += json_or_null(e.data);
  f += R"(,"seq":)";
  f += std::to_string(e.seq);
  f += '}';
  return f;
}

std::string sse_frame(const event& e) {
  std::string f;
  f.reserve(e.data.size() + e.topic.size() + 48);
  f += "id: ";
  f += std::to_string(e.seq);
  f += "\nevent: ";
  for (char c : e.topic)
    if (c != '\n' && c != '\r')
      f += c;
  f += '\n';
  // Serialized JSON has no raw newlines; split anyway to stay well-formed.
  std::string_view d = json_or_null(e.data);
  for (;;) {
    auto nl = d.find('\n');
    f += "data: ";
    f += d.substr(0, nl);
    f += '\n';
    if (nl == std::string_view::npos)
      break;
    d.remove_prefix(nl + 1);
  }
  f += '\n';
  return f;
}

// -- shared server state ---------------------------------------------------------

class session_base;

/// Event sinks run on the core's dispatcher thread and may still run after
/// unsubscribe: they post onto a session's strand (and may drop the last
/// reference to a session) only under a shared lock of this guard, which
/// stop() takes exclusively before the io_context goes away.
struct io_guard {
  std::shared_mutex mutex;
  bool alive = true;
};

struct server_ctx {
  server_ctx(api& c, http_server_config cf) : core(c), cfg(std::move(cf)) {}

  api& core;
  const http_server_config cfg;
  /// The TLS server context (null: plaintext).
  std::shared_ptr<asio::ssl::context> tls;
  std::atomic<bool> stopping{false};
  std::shared_ptr<io_guard> guard = std::make_shared<io_guard>();

  // Open sessions (for stop() and the WS fault switch).
  std::mutex reg_mutex;
  std::condition_variable reg_cv;
  std::unordered_map<uint64_t, std::weak_ptr<session_base>> sessions;
  uint64_t next_id = 1;

  // Runs api::handle off the io threads (it may sleep).
  std::unique_ptr<asio::thread_pool> workers;

  // Declared last: destroyed first, while the members above still exist
  // (destroying it destroys pending handlers and so the sessions).
  std::unique_ptr<asio::io_context> ioc;

  uint64_t add(std::weak_ptr<session_base> s) {
    std::lock_guard<std::mutex> lock(reg_mutex);
    auto id = next_id++;
    sessions.emplace(id, std::move(s));
    return id;
  }

  void remove(uint64_t id) {
    {
      std::lock_guard<std::mutex> lock(reg_mutex);
      sessions.erase(id);
    }
    reg_cv.notify_all();
  }

  std::vector<std::shared_ptr<session_base>> snapshot() {
    std::vector<std::shared_ptr<session_base>> out;
    std::lock_guard<std::mutex> lock(reg_mutex);
    out.reserve(sessions.size());
    for (auto& [id, w] : sessions)
      if (auto s = w.lock())
        out.push_back(std::move(s));
    return out;
  }

  /// Runs the API call and calls `done(response)` on `ex`. Fast routes run
  /// inline (done is called before this returns); the rest on the workers.
  void call_api(api_request req, asio::any_io_executor ex,
                std::function<void(api_response)> done) {
    if (is_fast_route(req.target)) {
      done(core.handle(req));
      return;
    }
    auto task = [this, req = std::move(req), ex = std::move(ex),
                 done = std::move(done)]() mutable {
      if (stopping.load())
        return;
      api_response r = core.handle(req);
      asio::post(ex, [done = std::move(done), r = std::move(r)]() mutable {
        done(std::move(r));
      });
    };
    asio::post(*workers, std::move(task));
  }
};

class session_base : public std::enable_shared_from_this<session_base> {
public:
  virtual ~session_base() = default;
  /// Closes the connection (server stopping). Any thread.
  virtual void shutdown() = 0;
  /// Closes a WebSocket because of a fault (ws down / drop_ws). Any thread.
  virtual void fault_close(bool door_down) { (void)door_down; }
};

// -- SSE session -----------------------------------------------------------------

class sse_session : public session_base {
public:
  sse_session(server_ctx& ctx, maybe_tls_stream&& stream,
              asio::any_io_executor ex, std::string token, principal who,
              uint64_t since)
    : ctx_(ctx), stream_(std::move(stream)), ex_(std::move(ex)),
      token_(std::move(token)), who_(std::move(who)), since_(since),
      tick_(ex_), budget_(ctx.cfg.sse_max_out_bytes) {}

  ~sse_session() override {
    unsubscribe();
    if (counted_)
      ctx_.core.add_connection(front_door::http, -1);
    if (reg_)
      ctx_.remove(reg_);
  }

  void start(unsigned version) {
    reg_ = ctx_.add(weak_from_this());
    if (ctx_.stopping.load()) {
      close_socket();
      return;
    }
    // Subscribe before the header goes out: an event published after the
    // client saw the header is never missed.
    // With Last-Event-ID the buffered events after it come first (they
    // wait for the header like live ones).
    std::weak_ptr<sse_session> w = self();
    replay_info ri;
    sub_ = ctx_.core.subscribe(
      who_.user_id,
      [w, g = ctx_.guard](const event& e) {
        std::shared_lock<std::shared_mutex> lock(g->mutex);
        if (!g->alive)
          return;
        if (auto s = w.lock())
          s->push(sse_frame(e));
      },
      since_, &ri);
    subscribed_ = true;

    res_.result(http::status::ok);
    res_.version(version);
    res_.set(http::field::server, server_name);
    res_.set(http::field::content_type, "text/event-stream");
    res_.set(http::field::cache_control, "no-cache");
    res_.set("X-Accel-Buffering", "no");
    if (since_ > 0) {
      res_.set("Aico-Replay", ri.complete ? "complete" : "incomplete");
      res_.set("Aico-Replayed", std::to_string(ri.replayed));
    }
    // No length, no chunking: the stream ends when the connection closes.
    res_.keep_alive(false);
    sr_.emplace(res_);
    writing_ = true; // events wait for the header
    write_started_ = steady::now();
    http::async_write_header(
      stream_, *sr_, [s = self()](error_code ec, std::size_t) {
        s->on_header(ec);
      });
    schedule_tick();
  }

  void shutdown() override {
    asio::post(ex_, [s = self()] { s->fail(); });
  }

private:
  std::shared_ptr<sse_session> self() {
    return std::static_pointer_cast<sse_session>(shared_from_this());
  }

  /// From the core's dispatcher thread: never blocks.
  void push(std::string frame) {
    if (!budget_.try_add(frame.size())) {
      if (!overflow_.exchange(true))
        asio::post(ex_, [s = self()] { s->end_slow_consumer(); });
      return;
    }
    asio::post(ex_, [s = self(), f = std::move(frame)]() mutable {
      s->enqueue(std::move(f));
    });
  }

  /// The client does not read: its stream ends (the queue is dropped).
  void end_slow_consumer() {
    if (dead_)
      return;
    log_line("event stream of user " + who_.username
             + " ended: slow consumer (" + std::to_string(budget_.queued())
             + " bytes queued, limit " + std::to_string(budget_.limit())
             + ")");
    fail();
  }

  void on_header(error_code ec) {
    writing_ = false;
    if (ec || dead_) {
      fail();
      return;
    }
    ctx_.core.add_connection(front_door::http, +1);
    counted_ = true;
    last_keepalive_ = steady::now();
    last_token_check_ = steady::now();
    do_read();
    do_write();
  }

  /// `f` is already counted in budget_.
  void enqueue(std::string f) {
    if (dead_) {
      budget_.release(f.size());
      return;
    }
    outq_.push_back(std::move(f));
    do_write();
  }

  void do_write() {
    if (writing_ || dead_ || outq_.empty())
      return;
    // Coalesce everything queued into one write.
    wbuf_.clear();
    for (auto& f : outq_)
      wbuf_ += f;
    outq_.clear();
    std::size_t n = wbuf_.size();
    writing_ = true;
    write_started_ = steady::now();
    asio::async_write(stream_, asio::buffer(wbuf_),
                      [s = self(), n](error_code ec, std::size_t) {
                        s->writing_ = false;
                        s->budget_.release(n);
                        if (ec) {
                          s->fail();
                          return;
                        }
                        s->do_write();
                      });
  }

  /// Reads (and ignores) anything the client sends, to notice it leaving.
  void do_read() {
    if (dead_)
      return;
    stream_.async_read_some(asio::buffer(rbuf_),
                            [s = self()](error_code ec, std::size_t) {
                              if (ec) {
                                s->fail();
                                return;
                              }
                              s->do_read();
                            });
  }

  void schedule_tick() {
    if (dead_)
      return;
    tick_.expires_after(sse_tick);
    tick_.async_wait([s = self()](error_code ec) {
      if (ec || s->dead_)
        return;
      try {
        s->on_tick();
      } catch (...) {
        s->fail();
        return;
      }
      s->schedule_tick();
    });
  }

  void on_tick() {
    auto now = steady::now();
    if (writing_ && now - write_started_ > write_timeout) {
      fail();
      return;
    }
    if (!counted_)
      return; // header not written yet
    // The stream ends when the token is revoked (logout) or its user is
    // gone; an expired token alone does not end it.
    if (now - last_token_check_ >= sse_token_check) {
      last_token_check_ = now;
      api_response err;
      if (!ctx_.core.authenticate(token_, &err)) {
        auto code = envelope_code(err.body).first;
        if (code == "invalid_token" || code == "unauthenticated") {
          fail();
          return;
        }
      }
    }
    if (ctx_.cfg.sse_keepalive_s > 0
        && now - last_keepalive_
             >= std::chrono::seconds(ctx_.cfg.sse_keepalive_s)) {
      last_keepalive_ = now;
      std::string comment = ": keep-alive\n\n";
      budget_.add(comment.size());
      enqueue(std::move(comment));
    }
  }

  void unsubscribe() {
    if (subscribed_) {
      subscribed_ = false;
      ctx_.core.unsubscribe(sub_);
    }
  }

  void close_socket() {
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  void fail() {
    if (dead_)
      return;
    dead_ = true;
    unsubscribe();
    tick_.cancel();
    close_socket();
    release();
    for (auto& f : outq_)
      budget_.release(f.size());
    outq_.clear();
  }

  /// Leaves the counts and the registry as soon as the connection is gone
  /// (a queued API call may keep this object alive a little longer).
  void release() {
    if (counted_) {
      counted_ = false;
      ctx_.core.add_connection(front_door::http, -1);
    }
    if (reg_) {
      ctx_.remove(reg_);
      reg_ = 0;
    }
  }

  server_ctx& ctx_;
  maybe_tls_stream stream_;
  asio::any_io_executor ex_;
  std::string token_;
  principal who_;
  uint64_t since_ = 0; ///< Last-Event-ID (0 = none)
  asio::steady_timer tick_;
  uint64_t reg_ = 0;
  uint64_t sub_ = 0;
  bool subscribed_ = false;
  bool counted_ = false;
  bool dead_ = false;
  bool writing_ = false;
  out_budget budget_; ///< bytes posted or queued, not yet written
  std::atomic<bool> overflow_{false};
  std::deque<std::string> outq_;
  std::string wbuf_;
  std::array<char, 1024> rbuf_{};
  http::response<http::empty_body> res_;
  std::optional<http::response_serializer<http::empty_body>> sr_;
  steady::time_point write_started_{};
  steady::time_point last_keepalive_{};
  steady::time_point last_token_check_{};
};

// -- WebSocket session -----------------------------------------------------------

class ws_session : public session_base {
public:
  ws_session(server_ctx& ctx, maybe_tls_stream&& stream,
             asio::any_io_executor ex, std::string peer)
    : ctx_(ctx), ws_(std::move(stream)), ex_(std::move(ex)), tick_(ex_),
      peer_(std::move(peer)), budget_(ctx.cfg.ws_max_out_bytes) {}

  ~ws_session() override {
    unsubscribe();
    if (counted_)
      ctx_.core.add_connection(front_door::ws, -1);
    if (reg_)
      ctx_.remove(reg_);
  }

  void start(http::request<http::string_body> req, std::string token,
             std::optional<principal> who) {
    reg_ = ctx_.add(weak_from_this());
    req_ = std::move(req);
    token_ = std::move(token);
    who_ = std::move(who);
    if (ctx_.stopping.load()) {
      hard_close();
      return;
    }
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout to{};
    to.handshake_timeout = ws_handshake_timeout;
    to.idle_timeout = websocket::stream_base::none(); // our own, see tick
    to.keep_alive_pings = false;
    ws_.set_option(to);
    ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) {
        res.set(http::field::server, server_name);
      }));
    ws_.read_message_max(ctx_.cfg.max_transport_bytes);
    ws_.text(true);
    // Control frames (ping/pong/close) count as activity too. The stream is
    // a member, and the callback only runs inside our own operations.
    ws_.control_callback([this](websocket::frame_type, beast::string_view) {
      last_rx_ = steady::now();
    });
    ws_.async_accept(req_, [s = self()](error_code ec) { s->on_accept(ec); });
    schedule_tick();
  }

  void shutdown() override {
    asio::post(ex_, [s = self()] {
      if (!s->open_)
        s->hard_close();
      else
        s->begin_close(websocket::close_code::going_away, "server stopping");
    });
  }

  void fault_close(bool door_down) override {
    asio::post(ex_, [s = self(), door_down] {
      if (s->dead_ || s->closing_)
        return;
      if (!s->open_) {
        s->close_on_open_ = true;
        return;
      }
      if (!s->fault_close_pending_) {
        s->fault_close_pending_ = true;
        s->fault_close_reason_ = door_down ? "websocket door down"
                                           : "dropped by fault injection";
        s->fault_close_deadline_ = steady::now() + fault_close_grace;
      }
      s->maybe_fault_close();
    });
  }

private:
  std::shared_ptr<ws_session> self() {
    return std::static_pointer_cast<ws_session>(shared_from_this());
  }

  void on_accept(error_code ec) {
    req_ = {};
    if (ec || dead_) {
      fail();
      return;
    }
    open_ = true;
    ctx_.core.add_connection(front_door::ws, +1);
    counted_ = true;
    last_rx_ = steady::now();
    if (ctx_.stopping.load()) {
      begin_close(websocket::close_code::going_away, "server stopping");
      return;
    }
    if (close_on_open_ || !ctx_.core.faults().ws_up) {
      begin_close(websocket::close_code::going_away, "websocket door down");
      return;
    }
    if (who_)
      subscribe();
    do_read();
  }

  // -- events ----------------------------------------------------------------

  void subscribe(uint64_t since = 0, replay_info* info = nullptr) {
    unsubscribe();
    uint64_t g = ++gen_;
    std::weak_ptr<ws_session> w = self();
    sub_ = ctx_.core.subscribe(
      who_->user_id,
      [w, g, io = ctx_.guard](const event& e) {
        std::shared_lock<std::shared_mutex> lock(io->mutex);
        if (!io->alive)
          return;
        if (auto s = w.lock())
          s->push_event(e, g);
      },
      since, info);
    subscribed_ = true;
  }

  void unsubscribe() {
    if (subscribed_) {
      subscribed_ = false;
      ++gen_; // drop events of the old subscription still on their way
      ctx_.core.unsubscribe(sub_);
    }
  }

  /// From the core's dispatcher thread: never blocks.
  void push_event(const event& e, uint64_t g) {
    if (gen_.load() != g)
      return;
    std::string f = event_frame(e);
    if (!budget_.try_add(f.size())) {
      if (!overflow_.exchange(true))
        asio::post(ex_, [s = self()] { s->close_slow_consumer(); });
      return;
    }
    asio::post(ex_, [s = self(), f = std::move(f), g]() mutable {
      if (s->gen_.load() != g) {
        s->budget_.release(f.size());
        return;
      }
      s->enqueue(std::move(f));
    });
  }

  /// The client does not read what it asked for: 1008, the queue dropped.
  void close_slow_consumer() {
    if (dead_ || closing_)
      return;
    log_line("websocket " + peer_ + (who_ ? " of user " + who_->username : "")
             + " closed: slow consumer (" + std::to_string(budget_.queued())
             + " bytes queued, limit " + std::to_string(budget_.limit())
             + ")");
    begin_close(websocket::close_code::policy_error, "slow consumer");
  }

  // -- writing ---------------------------------------------------------------

  /// Queues a frame made on the strand (responses, errors, pongs).
  void send(std::string f) {
    if (!budget_.try_add(f.size())) {
      close_slow_consumer();
      return;
    }
    enqueue(std::move(f));
  }

  /// `f` is already counted in budget_.
  void enqueue(std::string f) {
    if (dead_ || closing_ || !open_) {
      budget_.release(f.size());
      return;
    }
    outq_.push_back(std::move(f));
    do_write();
  }

  /// Test-only (misbehave truncated): after the queued frames, the first
  /// part of a text message (a frame without FIN), then the connection is
  /// closed without a close frame.
  void send_cut(std::string part) {
    cut_ = std::move(part);
    do_write();
  }

  void do_write() {
    if (writing_ || dead_ || closing_)
      return;
    if (outq_.empty() && cut_) {
      writing_ = true;
      write_started_ = steady::now();
      auto part = std::make_shared<std::string>(std::move(*cut_));
      cut_.reset();
      ws_.text(true);
      ws_.async_write_some(false, asio::buffer(*part),
                           [s = self(), part](error_code, std::size_t) {
                             s->writing_ = false;
                             s->hard_close();
                           });
      return;
    }
    if (outq_.empty())
      return;
    writing_ = true;
    write_started_ = steady::now();
    ws_.async_write(asio::buffer(outq_.front()),
                    [s = self()](error_code ec, std::size_t) {
                      s->on_write(ec);
                    });
  }

  void on_write(error_code ec) {
    writing_ = false;
    if (!outq_.empty()) {
      budget_.release(outq_.front().size());
      outq_.pop_front();
    }
    if (ec) {
      fail();
      return;
    }
    do_write();
    if (read_paused_)
      do_read(); // resumes once the output is below the pause mark
    maybe_fault_close();
  }

  // -- reading ---------------------------------------------------------------

  void do_read() {
    if (reading_ || dead_)
      return;
    // No further requests while the client does not take the answers.
    if ((in_flight_ >= max_in_flight || budget_.reading_paused())
        && !closing_) {
      read_paused_ = true;
      return;
    }
    read_paused_ = false;
    reading_ = true;
    ws_.async_read(rbuf_, [s = self()](error_code ec, std::size_t) {
      s->on_read(ec);
    });
  }

  void on_read(error_code ec) {
    reading_ = false;
    if (ec) {
      // closed, 1009 (Beast already sent the close frame), reset, ...
      fail();
      return;
    }
    last_rx_ = steady::now();
    bool text = ws_.got_text();
    std::string frame = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    if (!closing_ && !fault_close_pending_) {
      try {
        if (!text)
          send(error_frame(400, "bad_frame",
                           "binary frames are not supported; send JSON text"));
        else
          handle_frame(frame);
      } catch (...) {
        try {
          send(error_frame(500, "internal_error", "internal error"));
        } catch (...) {
          fail();
          return;
        }
      }
    }
    do_read();
  }

  void handle_frame(const std::string& text) {
    json::parse_options opt;
    opt.max_depth = 100; // the body's own limit (64) is the core's business
    error_code jec;
    json::value v = json::parse(text, jec, {}, opt);
    if (jec) {
      send(error_frame(400, "bad_frame", "frame is not valid JSON"));
      return;
    }
    // 1e400 parses to infinity, which cannot be passed on or echoed as JSON.
    std::string where;
    if (find_non_finite(v, &where)) {
      const json::value* id = nullptr;
      if (v.is_object())
        if (auto p = v.as_object().if_contains("id"); p && p->is_string())
          id = p;
      send(error_frame(400, "validation_error",
                       (where.empty() ? std::string("frame") : where)
                         + ": must be a finite number (at most about "
                           "1.8e308)",
                       id));
      return;
    }
    if (!v.is_object()) {
      send(error_frame(400, "bad_frame", "frame must be a JSON object"));
      return;
    }
    auto& o = v.as_object();
    const json::value* id = o.if_contains("id");
    auto type = o.if_contains("type");
    if (!type || !type->is_string()) {
      send(error_frame(400, "bad_frame", "frame needs a string \"type\"", id));
      return;
    }
    auto t = type->as_string();
    if (t == "ping") {
      json::object pong;
      pong["type"] = "pong";
      if (id)
        pong["id"] = *id;
      send(json::serialize(pong));
    } else if (t == "auth") {
      handle_auth(o);
    } else if (t == "request") {
      handle_request(o);
    } else {
      send(error_frame(400, "bad_frame",
                       "unknown frame type \"" + std::string(t) + "\"", id));
    }
  }

  void handle_auth(const json::object& o) {
    auto tok = o.if_contains("token");
    if (!tok || !tok->is_string()) {
      send(error_frame(400, "bad_frame", "auth frame needs a string \"token\"",
                       o.if_contains("id")));
      return;
    }
    std::string token(tok->as_string());
    api_response err;
    auto who = ctx_.core.authenticate(token, &err);
    if (!who) {
      // The connection keeps its previous authentication (if any).
      auto [code, message] = envelope_code(err.body);
      send(error_frame(err.status ? err.status : 401, code, message,
                       o.if_contains("id")));
      return;
    }
    // `since` (the last event seq the client saw): resubscribe and replay
    // what came after it. Without it, a new user replaces the subscription
    // and the same user (a refreshed token) keeps it: no event is lost in
    // a switch-over.
    uint64_t since = 0;
    if (auto v = o.if_contains("since")) {
      if (v->is_uint64())
        since = v->get_uint64();
      else if (v->is_int64() && v->get_int64() >= 0)
        since = static_cast<uint64_t>(v->get_int64());
      else if (!v->is_null()) {
        send(error_frame(400, "bad_frame",
                         "\"since\" must be a non-negative integer",
                         o.if_contains("id")));
        return;
      }
    }
    bool same_user = who_ && subscribed_ && who_->user_id == who->user_id;
    token_ = std::move(token);
    who_ = std::move(who);
    replay_info ri;
    if (since > 0 || !same_user)
      subscribe(since, &ri);
    json::object ok;
    ok["type"] = "auth_ok";
    if (auto id = o.if_contains("id"))
      ok["id"] = *id;
    if (since > 0) {
      json::object rep;
      rep["since"] = since;
      rep["complete"] = ri.complete;
      rep["replayed"] = ri.replayed;
      ok["replay"] = std::move(rep);
    }
    json::object user;
    user["id"] = who_->user_id;
    user["username"] = who_->username;
    user["role"] = who_->role;
    ok["user"] = std::move(user);
    send(json::serialize(ok));
  }

  void handle_request(const json::object& o) {
    auto id = o.if_contains("id");
    auto method = o.if_contains("method");
    auto path = o.if_contains("path");
    if (!id || !id->is_string()) {
      send(error_frame(400, "bad_frame", "request frame needs a string \"id\"",
                       id));
      return;
    }
    if (!method || !method->is_string() || method->as_string().empty()) {
      send(error_frame(400, "bad_frame",
                       "request frame needs a string \"method\"", id));
      return;
    }
    if (!path || !path->is_string() || path->as_string().empty()) {
      send(error_frame(400, "bad_frame",
                       "request frame needs a string \"path\"", id));
      return;
    }
    api_request req;
    req.method = std::string(method->as_string());
    for (auto& c : req.method)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    req.target = std::string(path->as_string());
    req.token = token_;
    if (auto body = o.if_contains("body"))
      req.body = json::serialize(*body);
    req.door = front_door::ws;
    req.peer = peer_;
    std::string rid(id->as_string());
    ++in_flight_;
    ctx_.call_api(std::move(req), ex_,
                  [s = self(), rid = std::move(rid)](api_response r) {
                    s->on_response(rid, r);
                  });
  }

  void on_response(const std::string& id, const api_response& r) {
    if (in_flight_ > 0)
      --in_flight_;
    if (!dead_ && !closing_ && budget_.queued() > 0
        && budget_.queued() + r.body.size() > budget_.limit()) {
      close_slow_consumer(); // (without building a frame that cannot go)
      return;
    }
    if (!dead_ && !closing_ && r.misbehave != misbehave_mode::hang) {
      try {
        json::object headers;
        for (auto& [k, v] : r.headers)
          headers[k] = v;
        std::string f;
        f.reserve(r.body.size() + id.size() + 96);
        f += R"({"type":"response","id":)";
        f += json_string(id);
        f += R"(,"status":)";
        f += std::to_string(r.status);
        f += R"(,"body":)";
        // test-only (misbehave malformed_json): the body goes in as it is,
        // so the frame itself is not valid JSON
        f += r.misbehave == misbehave_mode::malformed_json
               ? r.body
               : json_or_null(r.body);
        f += R"(,"headers":)";
        f += json::serialize(headers);
        f += '}';
        if (r.misbehave == misbehave_mode::truncated)
          send_cut(f.substr(0, f.size() / 2));
        else
          send(std::move(f));
      } catch (...) {
        fail();
        return;
      }
    }
    if (read_paused_ && in_flight_ < max_in_flight)
      do_read();
    maybe_fault_close();
  }

  // -- closing ---------------------------------------------------------------

  /// A fault close waits (briefly) for in-flight responses so a client that
  /// switched the fault over this very connection still gets its answer.
  void maybe_fault_close() {
    if (!fault_close_pending_ || closing_ || dead_)
      return;
    if ((in_flight_ == 0 && outq_.empty() && !writing_)
        || steady::now() >= fault_close_deadline_)
      begin_close(websocket::close_code::going_away, fault_close_reason_);
  }

  void begin_close(websocket::close_code code, const char* reason) {
    if (dead_ || closing_)
      return;
    if (!open_) {
      hard_close();
      return;
    }
    closing_ = true;
    close_started_ = steady::now();
    unsubscribe();
    // Queued frames are dropped (a write in progress finishes first).
    while (outq_.size() > (writing_ ? 1u : 0u)) {
      budget_.release(outq_.back().size());
      outq_.pop_back();
    }
    ws_.async_close(websocket::close_reason(code, reason),
                    [s = self()](error_code) {
                      // The read loop ends with `closed`; make sure the
                      // socket goes away even if it does not.
                      s->fail();
                    });
    if (!reading_)
      do_read(); // so the client's close frame is read
  }

  void schedule_tick() {
    if (dead_)
      return;
    bool busy = closing_ || fault_close_pending_ || ctx_.stopping.load();
    tick_.expires_after(busy ? ws_closing_tick : ws_tick);
    tick_.async_wait([s = self()](error_code ec) {
      if (ec || s->dead_)
        return;
      s->on_tick();
      s->schedule_tick();
    });
  }

  void on_tick() {
    auto now = steady::now();
    if (closing_) {
      // A client that does not answer the close frame is cut off; sooner
      // while the server stops.
      auto grace = ctx_.stopping.load()
                     ? std::chrono::duration_cast<steady::duration>(
                       ws_stop_close_grace)
                     : std::chrono::duration_cast<steady::duration>(
                       ws_close_grace);
      if (now - close_started_ > grace)
        hard_close();
      return;
    }
    if (!open_)
      return; // the handshake has its own timeout
    if (writing_ && now - write_started_ > write_timeout) {
      hard_close();
      return;
    }
    maybe_fault_close();
    if (closing_)
      return;
    if (ctx_.cfg.ws_idle_timeout_s > 0 && in_flight_ == 0
        && now - last_rx_ >= std::chrono::seconds(ctx_.cfg.ws_idle_timeout_s))
      begin_close(websocket::close_code::going_away, "idle timeout");
  }

  void hard_close() {
    if (dead_)
      return;
    dead_ = true;
    unsubscribe();
    tick_.cancel();
    error_code ec;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    // Leave the counts and the registry now (a queued API call may keep
    // this object alive a little longer).
    if (counted_) {
      counted_ = false;
      ctx_.core.add_connection(front_door::ws, -1);
    }
    if (reg_) {
      ctx_.remove(reg_);
      reg_ = 0;
    }
  }

  void fail() { hard_close(); }

  server_ctx& ctx_;
  websocket::stream<maybe_tls_stream> ws_;
  asio::any_io_executor ex_;
  asio::steady_timer tick_;
  std::string peer_; ///< the client's address
  http::request<http::string_body> req_;
  beast::flat_buffer rbuf_;
  uint64_t reg_ = 0;

  std::string token_;
  std::optional<principal> who_;
  uint64_t sub_ = 0;
  bool subscribed_ = false;
  std::atomic<uint64_t> gen_{0};

  out_budget budget_; ///< bytes posted or queued, not yet written
  std::atomic<bool> overflow_{false};
  std::deque<std::string> outq_;
  std::optional<std::string> cut_; ///< misbehave truncated (test-only)
  bool writing_ = false;
  bool reading_ = false;
  bool read_paused_ = false;
  std::size_t in_flight_ = 0;

  bool open_ = false;
  bool counted_ = false;
  bool closing_ = false;
  bool dead_ = false;
  bool close_on_open_ = false;
  bool fault_close_pending_ = false;
  const char* fault_close_reason_ = "";
  steady::time_point fault_close_deadline_{};
  steady::time_point last_rx_{};
  steady::time_point write_started_{};
  steady::time_point close_started_{};
};

// -- HTTP session ----------------------------------------------------------------

class http_session : public session_base {
public:
  http_session(server_ctx& ctx, tcp::socket&& socket)
    : ctx_(ctx), peer_(peer_address(socket)),
      stream_(make_stream(ctx, std::move(socket))),
      ex_(stream_.get_executor()) {}

  ~http_session() override {
    if (reg_)
      ctx_.remove(reg_);
  }

  void run() {
    reg_ = ctx_.add(weak_from_this());
    asio::dispatch(ex_, [s = self()] { s->begin(); });
  }

  void shutdown() override {
    asio::post(ex_, [s = self()] {
      if (!s->handed_off_)
        s->close_socket();
    });
  }

private:
  std::shared_ptr<http_session> self() {
    return std::static_pointer_cast<http_session>(shared_from_this());
  }

  static maybe_tls_stream make_stream(server_ctx& ctx, tcp::socket&& sock) {
    if (ctx.tls)
      return maybe_tls_stream(beast::tcp_stream(std::move(sock)), *ctx.tls);
    return maybe_tls_stream(beast::tcp_stream(std::move(sock)));
  }

  /// TLS first (if configured), then requests.
  void begin() {
    if (!stream_.is_tls()) {
      read_next();
      return;
    }
    stream_.expires_after(tls_handshake_timeout);
    stream_.tls().async_handshake(
      asio::ssl::stream_base::server,
      [s = self()](error_code ec) { s->guard([&] { s->on_handshake(ec); }); });
  }

  void on_handshake(error_code ec) {
    if (ec) {
      // E.g. no or an untrusted client certificate (mutual TLS), plaintext
      // spoken to the TLS port, a client that rejected our certificate.
      if (ec != asio::error::operation_aborted && !ctx_.stopping.load())
        log_line("tls handshake with " + peer_ + " failed: " + ec.message());
      close_socket();
      return;
    }
    if (!ctx_.cfg.tls.client_ca_file.empty())
      log_line("tls client " + peer_ + " device \""
               + peer_certificate_subject(stream_.tls().native_handle())
               + "\"");
    read_next();
  }

  void read_next() {
    if (ctx_.stopping.load()) {
      close_socket();
      return;
    }
    parser_.emplace();
    parser_->body_limit(ctx_.cfg.max_transport_bytes);
    stream_.expires_after(http_idle_timeout);
    http::async_read_header(stream_, buf_, *parser_,
                            [s = self()](error_code ec, std::size_t) {
                              s->guard([&] { s->on_header(ec); });
                            });
  }

  template <class F> void guard(F&& f) {
    try {
      f();
    } catch (...) {
      close_socket();
    }
  }

  void on_header(error_code ec) {
    if (ec) {
      on_read_error(ec);
      return;
    }
    if (parser_->is_done()) {
      on_request();
      return;
    }
    auto& req = parser_->get();
    auto expect = req.find(http::field::expect);
    if (expect != req.end() && iequals(to_sv(expect->value()), "100-continue")
        && req.version() >= 11) {
      static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(cont),
                        [s = self()](error_code wec, std::size_t) {
                          if (wec) {
                            s->close_socket();
                            return;
                          }
                          s->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buf_, *parser_,
                     [s = self()](error_code ec, std::size_t) {
                       s->guard([&] {
                         if (ec)
                           s->on_read_error(ec);
                         else
                           s->on_request();
                       });
                     });
  }

  void on_read_error(error_code ec) {
    if (ec == http::error::body_limit) {
      // Report the core's limit (the one clients must honour); the
      // transport cap is only a backstop above it.
      auto limit = std::min(ctx_.cfg.max_transport_bytes,
                            ctx_.core.config().max_body_bytes);
      json::object details;
      details["max_bytes"] = limit;
      api_response r;
      r.status = 413;
      r.body = error_body("payload_too_large", "the body is too large",
                          details);
      write_response(r, 11, false);
      return;
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category()
        && ec != http::error::end_of_stream
        && ec != http::error::partial_message) {
      api_response r;
      r.status = 400;
      r.body = error_body("validation_error", "malformed HTTP request: "
                                                + ec.message());
      write_response(r, 11, false);
      return;
    }
    // EOF, reset, timeout, abort: just close.
    close_socket();
  }

  void on_request() {
    auto& req = parser_->get();
    std::string target(to_sv(req.target()));
    auto path = path_of(target);
    bool keep = req.keep_alive() && !ctx_.stopping.load();
    unsigned version = req.version();

    if (path == ws_path) {
      if (websocket::is_upgrade(req)) {
        upgrade_websocket();
        return;
      }
      api_response r;
      r.status = 400;
      r.body = error_body("validation_error",
                          "this path needs a WebSocket upgrade");
      write_response(r, version, keep);
      return;
    }
    if (path == events_path) {
      if (req.method() != http::verb::get) {
        api_response r = api::error_response(405, "method_not_allowed",
                                             "use GET for the event stream");
        r.headers.emplace_back("Allow", "GET");
        write_response(r, version, keep);
        return;
      }
      start_sse();
      return;
    }
    if (path == api_prefix
        || starts_with(path, std::string(api_prefix) + "/")) {
      api_request ar;
      ar.method = std::string(to_sv(req.method_string()));
      ar.target = std::move(target);
      ar.token = bearer_token(req);
      ar.body = std::move(req.body());
      ar.door = front_door::http;
      ar.peer = peer_;
      ctx_.call_api(std::move(ar), ex_,
                    [s = self(), version, keep](api_response r) {
                      s->guard([&] { s->write_response(r, version, keep); });
                    });
      return;
    }
    write_response(api::error_response(404, "not_found", "no such route"),
                   version, keep);
  }

  void upgrade_websocket() {
    auto& req = parser_->get();
    unsigned version = req.version();
    if (!ctx_.core.faults().ws_up) {
      api_response r = api::error_response(
        503, "unavailable", "the WebSocket door is switched off");
      r.headers.emplace_back("Retry-After", "1");
      write_response(r, version, false);
      return;
    }
    bool has_auth = false;
    std::string token = bearer_token(req, &has_auth);
    std::optional<principal> who;
    if (has_auth) {
      api_response err;
      who = ctx_.core.authenticate(token, &err);
      if (!who) {
        if (err.body.empty())
          err = api::error_response(401, "invalid_token",
                                    "the access token is invalid");
        write_response(err, version, false);
        return;
      }
    }
    hand_off();
    auto ws = std::make_shared<ws_session>(ctx_, std::move(stream_), ex_,
                                           peer_);
    ws->start(parser_->release(), std::move(token), std::move(who));
  }

  void start_sse() {
    auto& req = parser_->get();
    unsigned version = req.version();
    std::string token = bearer_token(req);
    api_response err;
    auto who = ctx_.core.authenticate(token, &err);
    if (!who) {
      if (err.body.empty())
        err = api::error_response(401, "unauthenticated",
                                  "an access token is required");
      write_response(err, version, req.keep_alive() && !ctx_.stopping.load());
      return;
    }
    uint64_t since = 0;
    if (auto it = req.find("Last-Event-ID"); it != req.end())
      since = parse_since(to_sv(it->value()));
    hand_off();
    auto sse = std::make_shared<sse_session>(ctx_, std::move(stream_), ex_,
                                             std::move(token), std::move(*who),
                                             since);
    sse->start(version);
  }

  /// The connection now belongs to a WS/SSE session.
  void hand_off() {
    handed_off_ = true;
    stream_.expires_never();
    if (reg_) {
      ctx_.remove(reg_);
      reg_ = 0;
    }
  }

  void write_response(const api_response& r, unsigned version, bool keep) {
    if (r.misbehave == misbehave_mode::hang) {
      hang();
      return;
    }
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(static_cast<unsigned>(r.status > 0 ? r.status : 500));
    res->version(version == 10 ? 10 : 11);
    res->set(http::field::server, server_name);
    res->set(http::field::content_type, "application/json");
    for (auto& [k, v] : r.headers)
      res->set(k, v);
    res->body() = r.body;
    res->keep_alive(keep);
    res->prepare_payload();
    stream_.expires_after(write_timeout);
    if (r.misbehave == misbehave_mode::truncated) {
      // test-only: Content-Length promises the whole body, half of it is
      // sent, then the connection is closed
      std::ostringstream os;
      os << res->base();
      auto wire = std::make_shared<std::string>(os.str());
      *wire += r.body.substr(0, r.body.size() / 2);
      asio::async_write(stream_, asio::buffer(*wire),
                        [s = self(), wire](error_code, std::size_t) {
                          s->close_socket();
                        });
      return;
    }
    http::async_write(stream_, *res,
                      [s = self(), res](error_code ec, std::size_t) {
                        if (ec) {
                          s->close_socket();
                          return;
                        }
                        if (res->keep_alive())
                          s->read_next();
                        else
                          s->finish();
                      });
  }

  /// Ends a connection after a final response: half-close, then drain what
  /// the client still sends (bounded), so it reads the response instead of
  /// a reset.
  void finish() {
    if (stream_.is_tls()) {
      // close_notify (bounded), then the socket goes.
      stream_.expires_after(drain_timeout);
      stream_.tls().async_shutdown(
        [s = self()](error_code) { s->close_socket(); });
      return;
    }
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) {
      close_socket();
      return;
    }
    stream_.expires_after(drain_timeout);
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(scratch_),
                            [s = self()](error_code ec, std::size_t n) {
                              s->drained_ += n;
                              if (ec || s->drained_ > drain_max_bytes) {
                                s->close_socket();
                                return;
                              }
                              s->drain();
                            });
  }

  /// Test-only (misbehave hang): no answer; the connection stays open,
  /// and whatever the client sends is read and ignored until it closes (or
  /// the idle timeout passes).
  void hang() {
    stream_.expires_after(http_idle_timeout);
    stream_.async_read_some(asio::buffer(scratch_),
                            [s = self()](error_code ec, std::size_t) {
                              if (ec) {
                                s->close_socket();
                                return;
                              }
                              s->hang();
                            });
  }

  void close_socket() {
    if (handed_off_)
      return;
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    if (reg_) {
      ctx_.remove(reg_);
      reg_ = 0;
    }
  }

  server_ctx& ctx_;
  std::string peer_; ///< the client's address
  maybe_tls_stream stream_;
  asio::any_io_executor ex_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  uint64_t reg_ = 0;
  bool handed_off_ = false;
  std::size_t drained_ = 0;
  std::array<char, 4096> scratch_{};
};

/// Lets the core's fault listener (which cannot be removed) reach the
/// server only while it runs.
struct fault_hook {
  std::mutex mutex;
  server_ctx* ctx = nullptr;
};

} // namespace

// -- http_server -----------------------------------------------------------------

struct http_server::impl {
  impl(api& core, http_server_config cfg)
    : ctx(std::make_unique<server_ctx>(core, std::move(cfg))) {}

  std::unique_ptr<server_ctx> ctx;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<asio::steady_timer> accept_retry;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
    work;
  std::vector<std::thread> threads;
  std::shared_ptr<fault_hook> hook;
  std::mutex state_mutex;
  bool started = false;
  bool stopped = false;
  uint16_t bound_port = 0;

  void start() {
    std::lock_guard<std::mutex> lock(state_mutex);
    if (started)
      return;
    auto& cfg = ctx->cfg;
    if (cfg.tls.enabled())
      ctx->tls = make_tls_server_context(cfg.tls); // throws: clear message
    ctx->ioc = std::make_unique<asio::io_context>(std::max(1, cfg.threads));
    auto where = cfg.host + ":" + std::to_string(cfg.port);
    tcp::endpoint ep;
    error_code ec;
    auto addr = asio::ip::make_address(cfg.host, ec);
    if (!ec) {
      ep = tcp::endpoint(addr, cfg.port);
    } else {
      tcp::resolver resolver(*ctx->ioc);
      auto results = resolver.resolve(cfg.host, std::to_string(cfg.port), ec);
      if (ec || results.empty())
        throw std::runtime_error("cannot listen on " + where
                                 + ": cannot resolve host: " + ec.message());
      ep = results.begin()->endpoint();
    }
    auto acc = std::make_unique<tcp::acceptor>(asio::make_strand(*ctx->ioc));
    auto check = [&](const char* what) {
      if (ec)
        throw std::runtime_error("cannot listen on " + where + ": " + what
                                 + ": " + ec.message());
    };
    acc->open(ep.protocol(), ec);
    check("open");
    acc->set_option(asio::socket_base::reuse_address(true), ec);
    check("setsockopt");
    acc->bind(ep, ec);
    check("bind");
    acc->listen(asio::socket_base::max_listen_connections, ec);
    check("listen");
    bound_port = acc->local_endpoint(ec).port();
    check("local_endpoint");
    acceptor = std::move(acc);
    accept_retry = std::make_unique<asio::steady_timer>(acceptor->get_executor());

    ctx->workers = std::make_unique<asio::thread_pool>(
      static_cast<std::size_t>(std::max(8, 4 * std::max(1, cfg.threads))));

    hook = std::make_shared<fault_hook>();
    hook->ctx = ctx.get();
    ctx->core.add_fault_listener(
      [h = hook](const fault_state& f, bool drop_ws) {
        if (f.ws_up && !drop_ws)
          return;
        std::lock_guard<std::mutex> lock(h->mutex);
        if (!h->ctx)
          return;
        for (auto& s : h->ctx->snapshot())
          s->fault_close(!f.ws_up);
      });

    work.emplace(ctx->ioc->get_executor());
    asio::post(acceptor->get_executor(), [this] { do_accept(); });
    for (int i = 0; i < std::max(1, cfg.threads); ++i)
      threads.emplace_back([this] { run_io(); });
    started = true;
    ctx->core.set_door_status(front_door::http, true);
    ctx->core.set_door_status(front_door::ws, true);
  }

  void run_io() {
    for (;;) {
      try {
        ctx->ioc->run();
        return;
      } catch (...) {
        // A handler threw: keep serving (the session in question is gone).
      }
    }
  }

  void do_accept() {
    if (ctx->stopping.load() || !acceptor->is_open())
      return;
    acceptor->async_accept(
      asio::make_strand(*ctx->ioc), [this](error_code ec, tcp::socket sock) {
        if (ctx->stopping.load() || ec == asio::error::operation_aborted
            || !acceptor->is_open())
          return;
        if (ec) {
          // E.g. too many open files: back off a little.
          accept_retry->expires_after(std::chrono::milliseconds(50));
          accept_retry->async_wait([this](error_code) { do_accept(); });
          return;
        }
        try {
          error_code nec;
          sock.set_option(tcp::no_delay(true), nec);
          std::make_shared<http_session>(*ctx, std::move(sock))->run();
        } catch (...) {
        }
        do_accept();
      });
  }

  void stop() {
    std::lock_guard<std::mutex> lock(state_mutex);
    if (!started || stopped)
      return;
    stopped = true;
    ctx->stopping = true;
    if (hook) {
      std::lock_guard<std::mutex> hl(hook->mutex);
      hook->ctx = nullptr;
    }
    ctx->core.set_door_status(front_door::http, false);
    ctx->core.set_door_status(front_door::ws, false);

    asio::post(acceptor->get_executor(), [this] {
      error_code ec;
      acceptor->close(ec);
      accept_retry->cancel();
    });
    for (auto& s : ctx->snapshot())
      s->shutdown();
    {
      // Let sessions send their close frames (bounded).
      std::unique_lock<std::mutex> rl(ctx->reg_mutex);
      ctx->reg_cv.wait_for(rl, stop_grace,
                           [this] { return ctx->sessions.empty(); });
    }
    work.reset();
    ctx->ioc->stop();
    for (auto& t : threads)
      if (t.joinable())
        t.join();
    threads.clear();
    // API calls already running finish (bounded by the latency fault);
    // queued ones are dropped.
    ctx->workers->stop();
    ctx->workers->join();
    // Destroys what is left (queued API calls, pending handlers, sessions):
    // unsubscribes and updates the connection counts while the core is
    // still there. The workers go first: their tasks may hold sessions,
    // whose sockets need the io_context.
    ctx->workers.reset();
    {
      std::unique_lock<std::shared_mutex> gl(ctx->guard->mutex);
      ctx->guard->alive = false;
    }
    accept_retry.reset();
    acceptor.reset();
    ctx->ioc.reset();
  }
};

http_server::http_server(api& core, http_server_config cfg)
  : impl_(std::make_unique<impl>(core, std::move(cfg))) {}

http_server::~http_server() {
  try {
    stop();
  } catch (...) {
  }
}

void http_server::start() {
  impl_->start();
}

uint16_t http_server::port() const {
  return impl_->bound_port;
}

void http_server::stop() {
  impl_->stop();
}

} // namespace aico::gateway
