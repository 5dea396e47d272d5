// aico reference gateway: ZeroMQ IPC front door. Contract: docs/protocol.md,
// "IPC (ZeroMQ)".
//
// Threads:
// - one socket thread owns the ROUTER socket (and is the only thread that ever
//   touches it). It polls the socket and an eventfd used as a wakeup;
// - `cfg.workers` worker threads run api::handle for Requests, so a slow
//   request (latency fault) never blocks the socket;
// - the core's event dispatcher calls our sinks, and the fault listener is
//   called from whatever thread changed the faults.
// Everything that is not the socket thread talks to it through `shared_state`
// (a mutex-protected outbox plus control flags) and the eventfd wakeup.
#include "gateway/ipc_server.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <zmq.hpp>
#include <zmq_addon.hpp>

// The generated header lives in the build directory ("ipc.pb.h"); accept a
// "proto/" layout too.
#if __has_include("proto/ipc.pb.h")
#include "proto/ipc.pb.h"
#else
#include "ipc.pb.h"
#endif

#include "gateway/ipc_curve.hpp"
#include "gateway/json_util.hpp"
#include "gateway/secure_files.hpp"

namespace aico::gateway {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

/// Events queued for one subscribed peer beyond this are dropped (counted).
constexpr std::size_t max_peer_queue = 10000;
/// A peer's send backlog never grows beyond this; replies (responses, pongs)
/// may use the room above max_peer_queue, so they are not crowded out by
/// events.
constexpr std::size_t max_peer_backlog = 2 * max_peer_queue;
/// Requests waiting for a worker beyond this are answered 503 at once.
constexpr std::size_t max_pending_jobs = 1024;
/// Messages read from the socket per poll round (fairness with the outbox).
constexpr int max_recv_per_round = 256;

void log_line(const std::string& msg) {
  std::cerr << "aico-gateway: ipc: " << msg << std::endl;
}

/// One event subscription of one peer. The sink keeps it alive (shared
/// ownership), because api::unsubscribe does not wait for a running delivery.
struct sub_ctx {
  std::string identity;
  uint64_t local_id = 0;
  std::atomic<bool> active{true};
  /// Events of this subscription in the outbox, not yet taken by the socket
  /// thread.
  std::atomic<std::size_t> queued{0};
};

/// Something for the socket thread to send.
struct outgoing {
  std::string identity;
  std::string payload;        ///< a serialized aico::ipc::Frame
  bool delim = false;         ///< replies: mirror an empty delimiter frame
  uint64_t generation = 0;    ///< replies: the socket generation asked on
  std::shared_ptr<sub_ctx> sub; ///< events: the subscription it belongs to
};

/// State shared with threads other than the socket thread. Held through
/// shared_ptr/weak_ptr by sinks and the fault listener, which may outlive the
/// server (the core keeps fault listeners forever).
struct shared_state {
  std::mutex m;
  std::deque<outgoing> outbox;
  std::optional<bool> fault_up; ///< latest ipc_up seen by the listener
  /// Up->down transitions seen by the listener, so that a quick down+up pair
  /// still closes the socket once.
  uint64_t downs = 0;
  /// Changes of ipc_up announced by the listener / applied by the socket
  /// thread: the listener waits (bounded) until its change was applied, so an
  /// `ipc: down` fault request returns only once the socket is closed.
  uint64_t fault_version = 0;
  uint64_t applied_version = 0;
  std::condition_variable applied_cv;
  bool running = false; ///< the socket thread is running
  bool stop = false;
  std::string bound_endpoint;
  int efd = -1;
  std::atomic<uint64_t> dropped_events{0};

  ~shared_state() {
    if (efd >= 0)
      ::close(efd);
  }

  void wake() {
    uint64_t one = 1;
    // EAGAIN (counter saturated) still leaves the fd readable: fine.
    ssize_t r = ::write(efd, &one, sizeof one);
    (void)r;
  }

  void drain_wakeups() {
    uint64_t v = 0;
    ssize_t r = ::read(efd, &v, sizeof v);
    (void)r;
  }

  void push(outgoing o) {
    {
      std::lock_guard<std::mutex> lock(m);
      outbox.push_back(std::move(o));
    }
    wake();
  }
};

struct job {
  api_request req;
  std::string id;
  std::string identity;
  bool delim = false;
  uint64_t generation = 0;
};

/// What the socket thread knows about one peer (only subscribed peers and
/// peers with a send backlog have an entry).
struct peer {
  steady::time_point last_seen;
  bool delim = false;
  std::shared_ptr<sub_ctx> sub;
  uint64_t api_handle = 0;
  std::string user_id;
  struct pending {
    std::string payload;
    bool delim = false;
    bool is_event = false;
  };
  std::deque<pending> backlog;
  std::size_t backlog_events = 0;
};

std::string serialize(const aico::ipc::Frame& f) {
  std::string bytes;
  if (!f.SerializeToString(&bytes))
    bytes.clear();
  return bytes;
}

std::string response_frame(const std::string& id, int status,
                           const std::string& body,
                           const std::vector<std::pair<std::string,
                                                       std::string>>& headers
                           = {}) {
  aico::ipc::Frame f;
  auto* r = f.mutable_response();
  r->set_id(id);
  r->set_status(status);
  r->set_body(body);
  for (auto& [k, v] : headers)
    (*r->mutable_headers())[k] = v;
  return serialize(f);
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

/// The file system path of an ipc:// endpoint that names a file, if any
/// (not for tcp://, the ipc://* wildcard or abstract ipc://@names).
std::optional<std::string> ipc_file_of(const std::string& endpoint) {
  if (!starts_with(endpoint, "ipc://"))
    return std::nullopt;
  std::string path = endpoint.substr(6);
  if (path.empty() || path == "*" || path[0] == '@')
    return std::nullopt;
  return path;
}

/// Whether some process accepts connections on the Unix socket at `path`.
bool unix_socket_is_live(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path)
    return false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::close(fd);
  if (rc == 0)
    return true;
  // EAGAIN: the listener's backlog is full, so it exists.
  return err == EAGAIN || err == EINPROGRESS;
}

/// Checks an endpoint before binding; returns an error message or "".
/// libzmq silently unlinks whatever exists at an ipc:// path before binding,
/// so refuse to replace a file that is not a socket or a live socket.
std::string check_endpoint(const std::string& endpoint) {
  if (endpoint.empty())
    return "no IPC endpoint configured";
  if (endpoint == "ipc://")
    return "IPC endpoint " + endpoint + " has no path";
  auto file = ipc_file_of(endpoint);
  if (!file)
    return {};
  sockaddr_un addr{};
  if (file->size() >= sizeof addr.sun_path)
    return "cannot bind IPC endpoint " + endpoint + ": path longer than "
           + std::to_string(sizeof addr.sun_path - 1) + " bytes";
  fs::path p{*file};
  fs::path dir = p.parent_path();
  if (dir.empty())
    dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return "cannot bind IPC endpoint " + endpoint + ": directory "
           + dir.string() + " does not exist";
  auto st = fs::symlink_status(p, ec);
  if (!ec && fs::exists(st)) {
    if (!fs::is_socket(st))
      return "cannot bind IPC endpoint " + endpoint + ": " + *file
             + " exists and is not a socket";
    if (unix_socket_is_live(*file))
      return "cannot bind IPC endpoint " + endpoint
             + ": another process is listening on it";
  }
  return {};
}

} // namespace

struct ipc_server::impl {
  api& core;
  ipc_server_config cfg;
  std::shared_ptr<shared_state> st = std::make_shared<shared_state>();

  // Lifecycle (start/stop from the owner's threads).
  std::mutex life_mutex;
  bool started = false;
  bool stopped = false;
  bool listener_added = false;
  std::thread socket_thread;
  std::vector<std::thread> workers;

  // Worker pool.
  std::mutex job_mutex;
  std::condition_variable job_cv;
  std::deque<job> jobs;
  bool jobs_stop = false;
  /// Socket generation: bumped whenever the ROUTER is closed, so replies
  /// computed for an older socket are discarded.
  std::atomic<uint64_t> generation{1};

  // Socket thread only.
  zmq::context_t ctx{1};
  /// CURVE client authorization (with CURVE on); after ctx: goes first.
  std::unique_ptr<zap_handler> zap;
  std::unique_ptr<zmq::socket_t> sock;
  /// Who sent the message being handled ("ipc:" + CURVE key, or "ipc").
  std::string msg_peer = "ipc";
  std::string bind_endpoint; ///< where to (re)bind
  std::unordered_map<std::string, peer> peers;
  std::unordered_set<std::string> backlogged;
  uint64_t next_local_id = 1;
  uint64_t dropped_backlog = 0;
  uint64_t reported_drops = 0;

  impl(api& c, ipc_server_config conf) : core(c), cfg(std::move(conf)) {
    if (cfg.workers < 1)
      cfg.workers = 1;
  }

  // -- worker pool -------------------------------------------------------------

  void worker_loop() {
    for (;;) {
      job j;
      {
        std::unique_lock<std::mutex> lock(job_mutex);
        job_cv.wait(lock, [&] { return jobs_stop || !jobs.empty(); });
        if (jobs_stop)
          return;
        j = std::move(jobs.front());
        jobs.pop_front();
      }
      if (j.generation != generation.load())
        continue; // the socket it came from is gone
      try {
        api_response resp = core.handle(j.req);
        if (resp.misbehave == misbehave_mode::hang)
          continue; // test-only: no answer at all
        if (resp.misbehave == misbehave_mode::truncated)
          resp.body.resize(resp.body.size() / 2); // test-only: cut off
        outgoing o;
        o.identity = std::move(j.identity);
        o.payload = response_frame(j.id, resp.status, resp.body, resp.headers);
        o.delim = j.delim;
        o.generation = j.generation;
        st->push(std::move(o));
      } catch (const std::exception& e) {
        log_line(std::string("worker: ") + e.what());
      } catch (...) {
        log_line("worker: unknown exception");
      }
    }
  }

  // -- binding -----------------------------------------------------------------

  /// Binds a new ROUTER at `endpoint`; returns an error message or "".
  std::string bind_socket(const std::string& endpoint) {
    if (auto err = check_endpoint(endpoint); !err.empty())
      return err;
    try {
      auto s = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::router);
      s->set(zmq::sockopt::linger, 0);
      // Report unroutable peers (EHOSTUNREACH) and full pipes (EAGAIN with
      // dontwait) instead of dropping silently; both are handled in send_now.
      s->set(zmq::sockopt::router_mandatory, true);
      // A reconnecting peer with an explicit routing id takes over its id.
      s->set(zmq::sockopt::router_handover, true);
      s->set(zmq::sockopt::maxmsgsize,
             cfg.max_frame_bytes > 0 ? static_cast<int64_t>(cfg.max_frame_bytes)
                                     : int64_t{-1});
      if (!cfg.curve_secret_key.empty()) {
        s->set(zmq::sockopt::curve_server, true);
        s->set(zmq::sockopt::curve_secretkey, cfg.curve_secret_key);
        s->set(zmq::sockopt::zap_domain, "aico");
      }
      s->bind(endpoint);
      std::string bound = s->get(zmq::sockopt::last_endpoint);
      if (bound.empty())
        bound = endpoint;
      // The socket file: ours alone, whatever the umask.
      if (auto file = ipc_file_of(endpoint)) {
        try {
          set_mode(*file, 0600);
        } catch (const std::exception& e) {
          s->close();
          return "cannot bind IPC endpoint " + endpoint + ": " + e.what();
        }
      }
      sock = std::move(s);
      // tcp: keep the port a wildcard bind got; ipc: the configured path.
      bind_endpoint = starts_with(bound, "tcp://") ? bound : endpoint;
      {
        std::lock_guard<std::mutex> lock(st->m);
        st->bound_endpoint = bound;
      }
      core.set_door_status(front_door::ipc, true);
      return {};
    } catch (const zmq::error_t& e) {
      return "cannot bind IPC endpoint " + endpoint + ": " + e.what();
    } catch (const std::exception& e) {
      return "cannot bind IPC endpoint " + endpoint + ": " + e.what();
    }
  }

  /// Closes the ROUTER: every subscription ends, queued and in-flight replies
  /// for it are discarded.
  void close_socket() {
    if (!sock)
      return;
    drop_all_peers();
    generation.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(job_mutex);
      jobs.clear();
    }
    std::string bound;
    {
      std::lock_guard<std::mutex> lock(st->m);
      bound = st->bound_endpoint;
    }
    try {
      sock->set(zmq::sockopt::linger, 0);
      sock->close();
    } catch (const zmq::error_t& e) {
      log_line(std::string("close: ") + e.what());
    }
    sock.reset();
    core.set_door_status(front_door::ipc, false);
    // libzmq leaves the socket file behind; remove it so the endpoint really
    // disappears (a rebind creates it again).
    if (auto file = ipc_file_of(bound)) {
      std::error_code ec;
      if (fs::is_socket(fs::symlink_status(*file, ec)))
        ::unlink(file->c_str());
    }
  }

  // -- peers and subscriptions ---------------------------------------------------

  void end_subscription(peer& p) {
    if (!p.sub)
      return;
    p.sub->active = false;
    core.unsubscribe(p.api_handle);
    core.add_connection(front_door::ipc, -1);
    p.sub.reset();
    p.api_handle = 0;
    p.user_id.clear();
  }

  void drop_peer(const std::string& identity) {
    auto it = peers.find(identity);
    if (it == peers.end())
      return;
    end_subscription(it->second);
    peers.erase(it);
    backlogged.erase(identity);
  }

  void drop_all_peers() {
    for (auto& [id, p] : peers)
      end_subscription(p);
    peers.clear();
    backlogged.clear();
  }

  /// Erases a peer entry that no longer serves a purpose.
  void maybe_forget(const std::string& identity) {
    auto it = peers.find(identity);
    if (it != peers.end() && !it->second.sub && it->second.backlog.empty()) {
      peers.erase(it);
      backlogged.erase(identity);
    }
  }

  // -- sending -----------------------------------------------------------------

  enum class send_result { sent, would_block, unreachable, failed };

  send_result send_now(const std::string& identity, bool delim,
                       const std::string& payload) {
    if (!sock)
      return send_result::failed;
    try {
      auto r = sock->send(zmq::buffer(identity),
                          zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      if (!r)
        return send_result::would_block;
      if (delim)
        sock->send(zmq::message_t{},
                   zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      sock->send(zmq::buffer(payload), zmq::send_flags::dontwait);
      return send_result::sent;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH)
        return send_result::unreachable;
      log_line(std::string("send: ") + e.what());
      return send_result::failed;
    }
  }

  /// Sends to a peer now, or appends to its backlog if its pipe is full (or
  /// a backlog already exists, to keep the order).
  void deliver(const std::string& identity, bool delim, std::string payload,
               bool is_event) {
    if (payload.empty() || !sock)
      return;
    auto it = peers.find(identity);
    if (it == peers.end() || it->second.backlog.empty()) {
      switch (send_now(identity, delim, payload)) {
        case send_result::sent:
        case send_result::failed:
          return;
        case send_result::unreachable:
          // The peer disconnected: its routing id is gone for good.
          drop_peer(identity);
          return;
        case send_result::would_block:
          break;
      }
      if (it == peers.end()) {
        it = peers.emplace(identity, peer{}).first;
        it->second.last_seen = steady::now();
        it->second.delim = delim;
      }
    }
    auto& p = it->second;
    if (p.backlog.size() >= max_peer_backlog
        || (is_event && p.backlog_events >= max_peer_queue)) {
      ++dropped_backlog;
      return;
    }
    p.backlog.push_back({std::move(payload), delim, is_event});
    if (is_event)
      ++p.backlog_events;
    backlogged.insert(identity);
  }

  void flush_backlogs() {
    if (backlogged.empty())
      return;
    std::vector<std::string> gone;
    for (auto bit = backlogged.begin(); bit != backlogged.end();) {
      auto it = peers.find(*bit);
      if (it == peers.end()) {
        bit = backlogged.erase(bit);
        continue;
      }
      auto& q = it->second.backlog;
      bool unreachable = false;
      while (!q.empty()) {
        auto r = send_now(it->first, q.front().delim, q.front().payload);
        if (r == send_result::would_block)
          break;
        if (r == send_result::unreachable) {
          unreachable = true;
          break;
        }
        if (q.front().is_event)
          --it->second.backlog_events;
        q.pop_front();
      }
      if (unreachable) {
        gone.push_back(it->first);
        ++bit;
      } else if (q.empty()) {
        bool keep = static_cast<bool>(it->second.sub);
        if (!keep)
          peers.erase(it);
        bit = backlogged.erase(bit);
      } else {
        ++bit;
      }
    }
    for (auto& id : gone)
      drop_peer(id);
  }

  void reply(const std::string& identity, bool delim, std::string payload) {
    deliver(identity, delim, std::move(payload), false);
  }

  void bad_frame(const std::string& identity, bool delim,
                 const std::string& message) {
    reply(identity, delim,
          response_frame("", 400, error_body("bad_frame", message)));
  }

  void process_outbox(std::deque<outgoing>& items) {
    uint64_t gen = generation.load();
    for (auto& o : items) {
      if (o.sub) {
        o.sub->queued.fetch_sub(1);
        auto it = peers.find(o.sub->identity);
        // Only the peer's current subscription delivers (a replaced or ended
        // one may still get an event from the dispatcher).
        if (!sock || it == peers.end() || it->second.sub != o.sub)
          continue;
        bool delim = it->second.delim;
        deliver(o.sub->identity, delim, std::move(o.payload), true);
      } else {
        if (!sock || o.generation != gen)
          continue;
        deliver(o.identity, o.delim, std::move(o.payload), false);
      }
    }
  }

  // -- receiving ---------------------------------------------------------------

  event_sink make_sink(const std::shared_ptr<sub_ctx>& ctx) {
    std::weak_ptr<shared_state> weak = st;
    return [ctx, weak](const event& e) {
      try {
        if (!ctx->active.load())
          return;
        auto s = weak.lock();
        if (!s)
          return;
        if (ctx->queued.load() >= max_peer_queue) {
          s->dropped_events.fetch_add(1);
          return;
        }
        aico::ipc::Frame f;
        auto* ev = f.mutable_event();
        ev->set_topic(e.topic);
        ev->set_data(e.data);
        ev->set_seq(e.seq);
        outgoing o;
        o.payload = serialize(f);
        if (o.payload.empty())
          return;
        o.sub = ctx;
        ctx->queued.fetch_add(1);
        s->push(std::move(o));
      } catch (...) {
        // Never throw into the dispatcher.
      }
    };
  }

  void on_subscribe(const std::string& identity, bool delim,
                    const aico::ipc::Subscribe& sub) {
    api_response err;
    auto who = core.authenticate(sub.token(), &err);
    if (!who) {
      if (err.body.empty())
        err = api::error_response(401, "unauthenticated",
                                  "a valid access token is required");
      // A failed (re-)authentication ends any earlier subscription.
      auto it = peers.find(identity);
      if (it != peers.end()) {
        end_subscription(it->second);
        maybe_forget(identity);
      }
      reply(identity, delim,
            response_frame(sub.id(), err.status, err.body, err.headers));
      return;
    }
    auto [it, inserted] = peers.try_emplace(identity);
    auto& p = it->second;
    p.last_seen = steady::now();
    p.delim = delim;
    json::object data;
    data["subscribed"] = true;
    data["user_id"] = who->user_id;
    if (p.sub && p.user_id == who->user_id && sub.since() == 0) {
      // the same user again (a refreshed token) without `since`: the
      // subscription stays as it is, so no event is lost in a switch-over
      reply(identity, delim, response_frame(sub.id(), 200, ok_body(data)));
      return;
    }
    auto ctx = std::make_shared<sub_ctx>();
    ctx->identity = identity;
    ctx->local_id = next_local_id++;
    // With `since`, the replayed events go to the outbox now; the response
    // below is sent at once, so it reaches the peer first.
    replay_info ri;
    uint64_t handle
      = core.subscribe(who->user_id, make_sink(ctx), sub.since(), &ri);
    if (p.sub) {
      // Replace: the new subscription is live before the old one ends, and
      // events of the old one are discarded (process_outbox), so nothing is
      // lost or duplicated.
      p.sub->active = false;
      core.unsubscribe(p.api_handle);
    } else {
      core.add_connection(front_door::ipc, +1);
    }
    p.sub = ctx;
    p.api_handle = handle;
    p.user_id = who->user_id;
    if (sub.since() > 0) {
      json::object rep;
      rep["since"] = sub.since();
      rep["complete"] = ri.complete;
      rep["replayed"] = ri.replayed;
      data["replay"] = std::move(rep);
    }
    reply(identity, delim, response_frame(sub.id(), 200, ok_body(data)));
  }

  void on_unsubscribe(const std::string& identity, bool delim,
                      const aico::ipc::Unsubscribe& u) {
    auto it = peers.find(identity);
    if (it != peers.end()) {
      end_subscription(it->second);
      maybe_forget(identity);
    }
    json::object data;
    data["subscribed"] = false;
    reply(identity, delim, response_frame(u.id(), 200, ok_body(data)));
  }

  void on_request(const std::string& identity, bool delim,
                  aico::ipc::Request& r) {
    job j;
    j.req.method = std::move(*r.mutable_method());
    j.req.target = std::move(*r.mutable_path());
    j.req.token = std::move(*r.mutable_token());
    j.req.body = std::move(*r.mutable_body());
    j.req.door = front_door::ipc;
    j.req.peer = msg_peer;
    j.id = r.id();
    j.identity = identity;
    j.delim = delim;
    j.generation = generation.load();
    {
      std::lock_guard<std::mutex> lock(job_mutex);
      if (jobs.size() < max_pending_jobs) {
        jobs.push_back(std::move(j));
        job_cv.notify_one();
        return;
      }
    }
    auto busy = api::error_response(503, "unavailable",
                                    "too many IPC requests in progress");
    busy.headers.emplace_back("Retry-After", "1");
    reply(identity, delim,
          response_frame(r.id(), busy.status, busy.body, busy.headers));
  }

  void on_message(std::vector<zmq::message_t>& parts) {
    if (parts.empty())
      return;
    std::string identity = parts[0].to_string();
    // [identity][payload] or [identity][empty delimiter][payload].
    std::size_t idx = 1;
    bool delim = false;
    if (parts.size() >= 3 && parts[1].size() == 0) {
      delim = true;
      idx = 2;
    }
    auto pit = peers.find(identity);
    if (pit != peers.end()) {
      pit->second.last_seen = steady::now();
      pit->second.delim = delim;
    }
    if (parts.size() <= idx) {
      bad_frame(identity, delim, "missing payload frame");
      return;
    }
    if (parts.size() != idx + 1) {
      bad_frame(identity, delim, "expected one payload frame per message");
      return;
    }
    auto& payload = parts[idx];
    msg_peer = "ipc";
    if (!cfg.curve_secret_key.empty()) {
      // The ZAP handler's user id: the client's CURVE public key.
      const char* uid = zmq_msg_gets(payload.handle(), "User-Id");
      if (uid && *uid)
        msg_peer = std::string("ipc:") + uid;
    }
    if (payload.size() == 0) {
      bad_frame(identity, delim, "empty frame");
      return;
    }
    if (cfg.max_frame_bytes > 0 && payload.size() > cfg.max_frame_bytes) {
      bad_frame(identity, delim, "frame too large");
      return;
    }
    if (payload.size() > static_cast<std::size_t>(INT32_MAX)) {
      bad_frame(identity, delim, "frame too large");
      return;
    }
    aico::ipc::Frame f;
    if (!f.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      bad_frame(identity, delim, "not a valid aico.ipc.Frame");
      return;
    }
    switch (f.kind_case()) {
      case aico::ipc::Frame::kRequest:
        on_request(identity, delim, *f.mutable_request());
        break;
      case aico::ipc::Frame::kSubscribe:
        on_subscribe(identity, delim, f.subscribe());
        break;
      case aico::ipc::Frame::kUnsubscribe:
        on_unsubscribe(identity, delim, f.unsubscribe());
        break;
      case aico::ipc::Frame::kPing: {
        aico::ipc::Frame pong;
        pong.mutable_pong()->set_nonce(f.ping().nonce());
        pong.mutable_pong()->set_sent_at_ms(f.ping().sent_at_ms());
        reply(identity, delim, serialize(pong));
        break;
      }
      case aico::ipc::Frame::kResponse:
      case aico::ipc::Frame::kEvent:
      case aico::ipc::Frame::kPong:
        break; // server-to-client kinds: ignored (they still count as alive)
      case aico::ipc::Frame::KIND_NOT_SET:
      default:
        bad_frame(identity, delim, "frame has no known kind");
        break;
    }
  }

  void receive_some() {
    for (int n = 0; sock && n < max_recv_per_round; ++n) {
      std::vector<zmq::message_t> parts;
      try {
        auto r = zmq::recv_multipart(*sock, std::back_inserter(parts),
                                     zmq::recv_flags::dontwait);
        if (!r)
          return;
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR)
          continue;
        log_line(std::string("receive: ") + e.what());
        return;
      }
      try {
        on_message(parts);
      } catch (const std::exception& e) {
        log_line(std::string("message: ") + e.what());
        try {
          if (!parts.empty())
            reply(parts[0].to_string(), false,
                  response_frame("", 500,
                                 error_body("internal_error",
                                            "internal error")));
        } catch (...) {
        }
      }
    }
  }

  // -- timeouts ----------------------------------------------------------------

  void expire_peers() {
    auto now = steady::now();
    if (cfg.peer_timeout_s > 0) {
      auto limit = std::chrono::seconds(cfg.peer_timeout_s);
      std::vector<std::string> expired;
      for (auto& [id, p] : peers)
        if (now - p.last_seen > limit)
          expired.push_back(id);
      for (auto& id : expired)
        drop_peer(id);
    }
    uint64_t drops = st->dropped_events.load() + dropped_backlog;
    if (drops != reported_drops) {
      log_line("dropped " + std::to_string(drops - reported_drops)
               + " frames for slow peers");
      reported_drops = drops;
    }
  }

  // -- the socket thread -------------------------------------------------------

  void socket_loop(std::promise<std::string> started_promise) {
    bool desired_up = true;
    uint64_t downs_seen = 0;
    {
      bool initial = core.faults().ipc_up;
      std::lock_guard<std::mutex> lock(st->m);
      if (!st->fault_up)
        st->fault_up = initial;
      desired_up = *st->fault_up;
      downs_seen = st->downs;
      st->applied_version = st->fault_version;
      st->running = true;
    }
    bind_endpoint = cfg.endpoint;
    if (desired_up) {
      auto err = bind_socket(bind_endpoint);
      if (!err.empty()) {
        set_not_running();
        started_promise.set_value(err);
        return;
      }
    } else {
      core.set_door_status(front_door::ipc, false);
    }
    started_promise.set_value({});

    auto next_check = steady::now() + std::chrono::seconds(1);
    auto next_bind_try = steady::now();
    // A closed listener goes away asynchronously (tcp: EADDRINUSE for a
    // moment), so retry soon at first, then every second.
    auto bind_backoff = std::chrono::milliseconds(50);
    std::string last_bind_error;
    for (;;) {
      try {
        auto now = steady::now();
        auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_check - now);
        if (!backlogged.empty())
          timeout = std::min(timeout, std::chrono::milliseconds(10));
        if (desired_up && !sock)
          timeout = std::min(timeout,
                             std::chrono::duration_cast<
                               std::chrono::milliseconds>(next_bind_try - now));
        timeout = std::max(timeout, std::chrono::milliseconds(0));

        zmq::pollitem_t items[2] = {
          {nullptr, st->efd, ZMQ_POLLIN, 0},
          {sock ? sock->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
        try {
          zmq::poll(items, sock ? 2 : 1, timeout);
        } catch (const zmq::error_t& e) {
          if (e.num() == ETERM)
            break;
          if (e.num() != EINTR)
            log_line(std::string("poll: ") + e.what());
          items[0].revents = ZMQ_POLLIN; // look at the control state anyway
          items[1].revents = 0;
        }
        if (items[0].revents & ZMQ_POLLIN)
          st->drain_wakeups();

        std::deque<outgoing> out;
        bool went_down = false;
        uint64_t version = 0;
        {
          std::lock_guard<std::mutex> lock(st->m);
          if (st->stop)
            break;
          desired_up = st->fault_up.value_or(true);
          went_down = st->downs != downs_seen;
          downs_seen = st->downs;
          version = st->fault_version;
          out.swap(st->outbox);
        }

        if ((!desired_up || went_down) && sock) {
          close_socket();
          log_line("closed " + bind_endpoint + " (fault ipc down)");
        }
        if (desired_up && !sock && steady::now() >= next_bind_try) {
          auto err = bind_socket(bind_endpoint);
          if (err.empty()) {
            log_line("bound " + bind_endpoint + " again");
            last_bind_error.clear();
            bind_backoff = std::chrono::milliseconds(50);
          } else {
            if (err != last_bind_error && bind_backoff.count() >= 400)
              log_line(err + " (retrying)");
            if (bind_backoff.count() >= 400)
              last_bind_error = err;
            next_bind_try = steady::now() + bind_backoff;
            bind_backoff = std::min(bind_backoff * 2,
                                    std::chrono::milliseconds(1000));
          }
        }
        {
          std::lock_guard<std::mutex> lock(st->m);
          if (st->applied_version != version) {
            st->applied_version = version;
            st->applied_cv.notify_all();
          }
        }

        if (sock && (items[1].revents & ZMQ_POLLIN))
          receive_some();
        process_outbox(out);
        flush_backlogs();
        if (steady::now() >= next_check) {
          expire_peers();
          next_check = steady::now() + std::chrono::seconds(1);
        }
      } catch (const std::exception& e) {
        log_line(std::string("socket loop: ") + e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    try {
      close_socket();
    } catch (const std::exception& e) {
      log_line(std::string("close: ") + e.what());
    }
    set_not_running();
  }

  void set_not_running() {
    std::lock_guard<std::mutex> lock(st->m);
    st->running = false;
    st->applied_cv.notify_all();
  }

  // -- lifecycle ---------------------------------------------------------------

  void start() {
    std::lock_guard<std::mutex> lock(life_mutex);
    if (stopped)
      throw std::runtime_error("ipc_server: cannot start after stop");
    if (started)
      return;
    if (cfg.endpoint.empty())
      throw std::runtime_error("ipc_server: no IPC endpoint configured");
    if (cfg.curve_secret_key.empty() && !starts_with(cfg.endpoint, "ipc://")
        && !starts_with(cfg.endpoint, "inproc://"))
      throw std::runtime_error(
        "refusing to serve IPC on " + cfg.endpoint
        + " without CurveZMQ: anyone who can reach it could talk to the "
          "gateway unencrypted; give --ipc-allow FILE (turns CURVE on) or "
          "use an ipc:// endpoint");
    if (!cfg.curve_secret_key.empty() && !zap) {
      if (cfg.allow_file.empty())
        throw std::runtime_error("CURVE on the IPC door needs an allow-list "
                                 "(--ipc-allow FILE)");
      zap = std::make_unique<zap_handler>(ctx, cfg.allow_file);
      zap->start();
    }
    if (st->efd < 0) {
      st->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (st->efd < 0)
        throw std::runtime_error(std::string("ipc_server: eventfd: ")
                                 + std::strerror(errno));
    }
    if (!listener_added) {
      std::weak_ptr<shared_state> weak = st;
      core.add_fault_listener([weak](const fault_state& f, bool) {
        auto s = weak.lock();
        if (!s)
          return;
        std::unique_lock<std::mutex> l(s->m);
        bool was_up = s->fault_up.value_or(true);
        s->fault_up = f.ipc_up;
        if (was_up == f.ipc_up)
          return; // another switch changed
        if (!f.ipc_up)
          ++s->downs;
        uint64_t version = ++s->fault_version;
        l.unlock();
        s->wake();
        l.lock();
        // Never called on the socket thread, which never waits for us.
        s->applied_cv.wait_for(l, std::chrono::seconds(2), [&] {
          return !s->running || s->applied_version >= version;
        });
      });
      listener_added = true;
    }
    std::promise<std::string> p;
    auto result = p.get_future();
    socket_thread = std::thread([this, pr = std::move(p)]() mutable {
      socket_loop(std::move(pr));
    });
    std::string err = result.get();
    if (!err.empty()) {
      socket_thread.join();
      stopped = true;
      if (zap)
        zap->stop();
      try {
        ctx.close();
      } catch (...) {
      }
      throw std::runtime_error(err);
    }
    for (int i = 0; i < cfg.workers; ++i)
      workers.emplace_back([this] { worker_loop(); });
    started = true;
  }

  void stop() {
    std::lock_guard<std::mutex> lock(life_mutex);
    if (stopped)
      return;
    stopped = true;
    if (started) {
      {
        std::lock_guard<std::mutex> l(st->m);
        st->stop = true;
      }
      st->wake();
      if (socket_thread.joinable())
        socket_thread.join(); // closes the socket, ends the subscriptions
      {
        std::lock_guard<std::mutex> l(job_mutex);
        jobs_stop = true;
        jobs.clear();
      }
      job_cv.notify_all();
      // Bounded by a request in progress (at most the latency fault).
      for (auto& w : workers)
        if (w.joinable())
          w.join();
      workers.clear();
      {
        std::lock_guard<std::mutex> l(st->m);
        st->outbox.clear();
      }
    }
    if (zap)
      zap->stop();
    try {
      ctx.close(); // after every socket of it was closed
    } catch (const zmq::error_t& e) {
      log_line(std::string("context: ") + e.what());
    }
  }

  std::string endpoint() {
    std::lock_guard<std::mutex> lock(st->m);
    return st->bound_endpoint.empty() ? cfg.endpoint : st->bound_endpoint;
  }
};

ipc_server::ipc_server(api& core, ipc_server_config cfg)
  : impl_(std::make_unique<impl>(core, std::move(cfg))) {
  core.set_door_configured(front_door::ipc);
}

ipc_server::~ipc_server() {
  try {
    stop();
  } catch (...) {
  }
}

void ipc_server::start() {
  impl_->start();
}

std::string ipc_server::endpoint() const {
  return impl_->endpoint();
}

void ipc_server::stop() {
  impl_->stop();
}

} // namespace aico::gateway
