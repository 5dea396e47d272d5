// aico reference gateway: the gRPC front door. Contract: docs/protocol.md,
// "gRPC door".
//
// Threads:
// - grpc++'s synchronous server runs the handlers on its own thread pool
//   (bounded by a ResourceQuota). `Call` runs api::handle on that thread;
//   `Events` holds its thread for the stream's life, waiting on the stream's
//   queue and writing (one Write in flight: HTTP/2 flow control pushes back
//   on a client that does not read, and the queue in front of it is bounded
//   by max_out_bytes);
// - the core's event dispatcher calls the sinks: they only queue and notify;
// - one control thread applies fault switches (`grpc: down` shuts the server
//   down, `up` builds a new one on the same port) and cancels streams whose
//   reader fell too far behind while a Write was blocked;
// - the fault listener (any thread) hands the switch to the control thread
//   and waits, bounded, until it was applied (not when it is called from a
//   gRPC handler: that handler would hold up the shutdown it waits for).
#include "gateway/grpc_server.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include "gateway.grpc.pb.h"

#include "gateway/json_util.hpp"
#include "gateway/secure_files.hpp"

namespace aico::gateway {

namespace {

using steady = std::chrono::steady_clock;

void log_line(const std::string& msg) {
  std::cerr << "aico-gateway: grpc: " << msg << std::endl;
}

/// Set while a gRPC handler runs on this thread.
thread_local bool in_grpc_handler = false;

struct handler_mark {
  handler_mark() { in_grpc_handler = true; }
  ~handler_mark() { in_grpc_handler = false; }
};

std::string read_file(const std::string& path, const char* what) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw std::runtime_error(std::string("cannot read ") + what + " " + path);
  std::string out;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    out.append(buf, n);
    if (out.size() > 1024 * 1024) {
      std::fclose(f);
      throw std::runtime_error(std::string(what) + " " + path
                               + " is larger than 1 MiB");
    }
  }
  std::fclose(f);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i]))
        != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

/// The token of `authorization: Bearer X` metadata (scheme
/// case-insensitive), "" without one or for another scheme -- the same rule
/// as the HTTP door.
std::string bearer_token(const grpc::ServerContext& ctx) {
  auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end())
    return {};
  auto v = trim(std::string_view(it->second.data(), it->second.size()));
  if (v.size() < 6 || !iequals(v.substr(0, 6), "bearer"))
    return {};
  v.remove_prefix(6);
  if (!v.empty() && v.front() != ' ' && v.front() != '\t')
    return {};
  return std::string(trim(v));
}

/// The client's address from grpc's peer string ("ipv4:127.0.0.1:5555",
/// "ipv6:[::1]:5555"), for the login throttle; "grpc" if unknown.
std::string peer_address(const std::string& peer) {
  std::string_view p = peer;
  for (std::string_view prefix : {"ipv4:", "ipv6:"}) {
    if (p.substr(0, prefix.size()) == prefix) {
      p.remove_prefix(prefix.size());
      auto colon = p.rfind(':');
      if (colon != std::string_view::npos)
        p = p.substr(0, colon);
      if (p.size() >= 2 && p.front() == '[' && p.back() == ']')
        p = p.substr(1, p.size() - 2);
      return std::string(p);
    }
  }
  return "grpc";
}

/// `code` and `message` of an error envelope ("" if it is none).
std::pair<std::string, std::string> envelope_code(const std::string& body) {
  auto v = parse_json(body);
  if (!v || !v->is_object())
    return {};
  auto& o = v->as_object();
  std::pair<std::string, std::string> out;
  if (auto c = o.if_contains("code"); c && c->is_string())
    out.first = std::string(c->as_string());
  if (auto m = o.if_contains("message"); m && m->is_string())
    out.second = std::string(m->as_string());
  return out;
}

/// One open Events stream.
struct stream_ctx {
  grpc::ServerContext* ctx = nullptr; ///< valid while registered
  std::mutex m;
  std::condition_variable cv;
  std::deque<aico::rpc::EventsMessage> queue;
  std::size_t queued_bytes = 0;
  bool overflow = false;
  steady::time_point overflow_at{};
  bool door_closed = false; ///< fault down or stop: end with UNAVAILABLE
  bool cancelled = false;   ///< TryCancel was called
};

} // namespace

struct grpc_server::impl : std::enable_shared_from_this<grpc_server::impl> {
  api& core;
  grpc_server_config cfg;
  std::shared_ptr<grpc::ServerCredentials> creds;
  /// Written by the control thread (rebuild after a fault), read by
  /// port() from any thread (TSan found the unguarded read).
  std::atomic<uint16_t> bound_port{0};

  // Guarded by m.
  std::mutex m;
  std::condition_variable cv;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<aico::rpc::Gateway::Service> service;
  std::set<std::shared_ptr<stream_ctx>> streams;
  bool want_up = true;
  bool is_up = false;
  bool stopping = false;
  uint64_t fault_version = 0;
  uint64_t applied_version = 0;
  std::condition_variable applied_cv;
  std::thread control;
  bool started = false;

  impl(api& c, grpc_server_config conf) : core(c), cfg(std::move(conf)) {}

  // -- handlers ------------------------------------------------------------

  grpc::Status call(grpc::ServerContext* ctx,
                    const aico::rpc::CallRequest* req,
                    aico::rpc::CallReply* reply) {
    handler_mark mark;
    api_request r;
    r.method = req->method();
    r.target = req->path();
    r.token = bearer_token(*ctx);
    r.body = req->body();
    r.door = front_door::grpc;
    r.peer = peer_address(ctx->peer());
    api_response resp = core.handle(r);
    switch (resp.misbehave) {
      case misbehave_mode::hang: {
        // No answer: wait until the client gives up (its deadline or a
        // cancel), the door closes or the gateway stops.
        std::unique_lock<std::mutex> lock(m);
        while (!ctx->IsCancelled() && !stopping && want_up)
          cv.wait_for(lock, std::chrono::milliseconds(50));
        return grpc::Status(grpc::StatusCode::CANCELLED, "no answer");
      }
      case misbehave_mode::truncated:
        resp.body.resize(resp.body.size() / 2);
        break;
      default:
        break;
    }
    reply->set_status(resp.status);
    reply->set_body(std::move(resp.body));
    for (auto& [k, v] : resp.headers)
      (*reply->mutable_headers())[k] = v;
    return grpc::Status::OK;
  }

  static grpc::Status unauthenticated(grpc::ServerContext* ctx,
                                      const api_response& err) {
    auto [code, message] = envelope_code(err.body);
    if (code.empty())
      code = "unauthenticated";
    if (message.empty())
      message = "an access token is required";
    ctx->AddTrailingMetadata("aico-status", std::to_string(err.status));
    ctx->AddTrailingMetadata("aico-code", code);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, message);
  }

  static grpc::Status door_unavailable(grpc::ServerContext* ctx) {
    ctx->AddTrailingMetadata("aico-status", "503");
    ctx->AddTrailingMetadata("aico-code", "unavailable");
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the grpc door is switched off");
  }

  void log_device(grpc::ServerContext* ctx) {
    if (cfg.tls.client_ca_file.empty())
      return;
    auto auth = ctx->auth_context();
    if (!auth)
      return;
    auto subj = auth->FindPropertyValues("x509_subject");
    if (!subj.empty())
      log_line("tls client " + peer_address(ctx->peer()) + " device \""
               + std::string(subj.front().data(), subj.front().size())
               + "\"");
  }

  grpc::Status events(grpc::ServerContext* ctx,
                      const aico::rpc::EventsRequest* req,
                      grpc::ServerWriter<aico::rpc::EventsMessage>* writer) {
    handler_mark mark;
    std::string token = bearer_token(*ctx);
    api_response err;
    auto who = core.authenticate(token, &err);
    if (!who) {
      if (err.body.empty())
        err = api::error_response(401, "unauthenticated",
                                  "an access token is required");
      return unauthenticated(ctx, err);
    }
    auto sc = std::make_shared<stream_ctx>();
    sc->ctx = ctx;
    {
      std::lock_guard<std::mutex> lock(m);
      if (stopping || !want_up || !core.faults().grpc_up)
        return door_unavailable(ctx);
      streams.insert(sc);
    }
    log_device(ctx);
    const std::size_t limit = cfg.max_out_bytes;
    std::weak_ptr<stream_ctx> weak = sc;
    auto sink = [weak, limit](const event& e) {
      auto s = weak.lock();
      if (!s)
        return;
      aico::rpc::EventsMessage msg;
      auto* ev = msg.mutable_event();
      ev->set_seq(e.seq);
      ev->set_topic(e.topic);
      ev->set_data(e.data);
      std::size_t n = msg.ByteSizeLong();
      {
        std::lock_guard<std::mutex> lock(s->m);
        if (s->overflow || s->door_closed)
          return;
        // One event larger than the limit still goes to a reader that
        // keeps up (nothing queued), as on the WebSocket door.
        if (s->queued_bytes > 0 && s->queued_bytes + n > limit) {
          s->overflow = true;
          s->overflow_at = steady::now();
          s->queue.clear();
          s->queued_bytes = 0;
        } else {
          s->queue.push_back(std::move(msg));
          s->queued_bytes += n;
        }
      }
      s->cv.notify_one();
    };
    replay_info ri;
    uint64_t since = req->since();
    uint64_t handle = core.subscribe(who->user_id, sink, since, &ri);
    core.add_connection(front_door::grpc, +1);
    grpc::Status status = grpc::Status::OK;
    {
      aico::rpc::EventsMessage ack;
      auto* s = ack.mutable_subscribed();
      s->set_user_id(who->user_id);
      if (since > 0) {
        s->set_replay(true);
        s->set_since(since);
        s->set_complete(ri.complete);
        s->set_replayed(ri.replayed);
      }
      bool ok = writer->Write(ack);
      auto next_check = steady::now() + std::chrono::seconds(1);
      while (ok) {
        std::deque<aico::rpc::EventsMessage> batch;
        {
          std::unique_lock<std::mutex> lock(sc->m);
          sc->cv.wait_until(lock, next_check, [&] {
            return !sc->queue.empty() || sc->overflow || sc->door_closed;
          });
          if (sc->door_closed) {
            status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "the grpc door is switched off");
            break;
          }
          if (sc->overflow) {
            status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                  "slow consumer: more than "
                                    + std::to_string(limit)
                                    + " bytes of events queued");
            break;
          }
          batch.swap(sc->queue);
          sc->queued_bytes = 0;
        }
        if (ctx->IsCancelled())
          break;
        for (auto& msg : batch) {
          if (!writer->Write(msg)) {
            ok = false;
            break;
          }
        }
        if (steady::now() >= next_check) {
          next_check = steady::now() + std::chrono::seconds(1);
          // Revoked (logout) or deleted: the stream ends, as SSE does. A
          // token that merely expired does not end it.
          api_response again;
          if (!core.authenticate(token, &again)) {
            auto [code, message] = envelope_code(again.body);
            if (code != "token_expired") {
              status = unauthenticated(ctx, again);
              break;
            }
          }
        }
      }
    }
    core.unsubscribe(handle);
    core.add_connection(front_door::grpc, -1);
    {
      std::lock_guard<std::mutex> lock(m);
      streams.erase(sc);
      sc->ctx = nullptr;
    }
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      ctx->AddTrailingMetadata("aico-status", "503");
      ctx->AddTrailingMetadata("aico-code", "unavailable");
    }
    return status;
  }

  // -- the server ----------------------------------------------------------

  class service_impl final : public aico::rpc::Gateway::Service {
  public:
    explicit service_impl(impl* owner) : owner_(owner) {}
    grpc::Status Call(grpc::ServerContext* ctx,
                      const aico::rpc::CallRequest* req,
                      aico::rpc::CallReply* reply) override {
      return owner_->call(ctx, req, reply);
    }
    grpc::Status
    Events(grpc::ServerContext* ctx, const aico::rpc::EventsRequest* req,
           grpc::ServerWriter<aico::rpc::EventsMessage>* writer) override {
      return owner_->events(ctx, req, writer);
    }

  private:
    impl* owner_;
  };

  void make_credentials() {
    if (!cfg.tls.enabled()) {
      creds = grpc::InsecureServerCredentials();
      return;
    }
    if (cfg.tls.key_file.empty())
      throw std::runtime_error("TLS needs both --tls-cert and --tls-key");
    grpc::SslServerCredentialsOptions o(
      cfg.tls.client_ca_file.empty()
        ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    // The key is a secret: refused unless only we can read it.
    pair.private_key = read_private_file(cfg.tls.key_file,
                                         "the TLS private key", 1024 * 1024);
    pair.cert_chain = read_file(cfg.tls.cert_file, "the TLS certificate");
    o.pem_key_cert_pairs.push_back(std::move(pair));
    if (!cfg.tls.client_ca_file.empty())
      o.pem_root_certs = read_file(cfg.tls.client_ca_file,
                                   "the client CA file");
    creds = grpc::SslServerCredentials(o);
  }

  /// Builds and starts a server on cfg.host:port (bound_port once known).
  /// Called with m held. Throws std::runtime_error.
  void build() {
    auto svc = std::make_unique<service_impl>(this);
    grpc::ServerBuilder b;
    int selected = 0;
    uint16_t port = bound_port.load() ? bound_port.load() : cfg.port;
    std::string host = cfg.host;
    if (host.find(':') != std::string::npos && host.front() != '[')
      host = "[" + host + "]";
    b.AddListeningPort(host + ":" + std::to_string(port), creds, &selected);
    b.RegisterService(svc.get());
    b.SetMaxReceiveMessageSize(static_cast<int>(cfg.max_message_bytes));
    b.SetMaxSendMessageSize(4 * 1024 * 1024);
    grpc::ResourceQuota quota("aico-gateway-grpc");
    quota.SetMaxThreads(cfg.max_threads);
    b.SetResourceQuota(quota);
    // Clients may keep the connection alive with pings (the engine's link
    // does, to notice a lost gateway within seconds).
    b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                         1000);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    auto s = b.BuildAndStart();
    if (!s || selected == 0)
      throw std::runtime_error("grpc: cannot listen on " + host + ":"
                               + std::to_string(port)
                               + " (address in use or not local?)");
    bound_port = static_cast<uint16_t>(selected);
    server = std::move(s);
    service = std::move(svc);
    is_up = true;
    core.set_door_status(front_door::grpc, true);
  }

  /// Ends every stream and shuts the server down. Called without m held;
  /// the server object is taken out under m first.
  void shut_down(std::unique_lock<std::mutex>& lock) {
    for (auto& s : streams) {
      {
        std::lock_guard<std::mutex> sl(s->m);
        s->door_closed = true;
      }
      s->cv.notify_one();
    }
    auto srv = std::move(server);
    auto svc = std::move(service);
    is_up = false;
    core.set_door_status(front_door::grpc, false);
    cv.notify_all(); // hanging calls look at want_up / stopping
    lock.unlock();
    if (srv) {
      // Streams end at once (UNAVAILABLE); unary calls in flight get up to
      // 250 ms, then they are cancelled (as `ipc: down` loses pending
      // replies).
      srv->Shutdown(std::chrono::system_clock::now()
                    + std::chrono::milliseconds(250));
      srv->Wait();
    }
    srv.reset();
    svc.reset();
    lock.lock();
  }

  void control_loop() {
    std::unique_lock<std::mutex> lock(m);
    while (!stopping) {
      if (want_up != is_up) {
        if (want_up) {
          try {
            build();
            log_line("listening again on port "
                     + std::to_string(bound_port.load()) + " (fault grpc up)");
          } catch (const std::exception& e) {
            log_line(std::string(e.what()) + "; retrying");
          }
        } else {
          shut_down(lock);
          log_line("closed port " + std::to_string(bound_port.load())
                   + " (fault grpc down)");
        }
      }
      if (want_up == is_up || !want_up) {
        applied_version = fault_version;
        applied_cv.notify_all();
      }
      // A reader that stopped reading while a Write is blocked: its queue
      // overflowed; cancel the call after 2 s (the handler cannot notice
      // while it waits in Write).
      auto now = steady::now();
      for (auto& s : streams) {
        std::lock_guard<std::mutex> sl(s->m);
        if (s->overflow && !s->cancelled
            && now - s->overflow_at > std::chrono::seconds(2) && s->ctx) {
          s->cancelled = true;
          s->ctx->TryCancel();
        }
      }
      cv.wait_for(lock, std::chrono::milliseconds(250));
    }
  }

  void on_faults(const fault_state& f) {
    std::unique_lock<std::mutex> lock(m);
    if (stopping || f.grpc_up == want_up)
      return;
    want_up = f.grpc_up;
    uint64_t version = ++fault_version;
    cv.notify_all();
    if (in_grpc_handler)
      return;
    applied_cv.wait_for(lock, std::chrono::seconds(5),
                        [&] { return applied_version >= version || stopping; });
  }

  void start() {
    make_credentials();
    {
      std::lock_guard<std::mutex> lock(m);
      want_up = core.faults().grpc_up;
      build(); // even when switched off already: the port is chosen now
    }
    std::weak_ptr<impl> weak = shared_from_this();
    core.add_fault_listener([weak](const fault_state& f, bool) {
      if (auto s = weak.lock())
        s->on_faults(f);
    });
    started = true;
    control = std::thread([this] { control_loop(); });
  }

  void stop() {
    std::unique_lock<std::mutex> lock(m);
    if (stopping)
      return;
    stopping = true;
    cv.notify_all();
    applied_cv.notify_all();
    lock.unlock();
    if (control.joinable())
      control.join();
    lock.lock();
    shut_down(lock);
  }
};

grpc_server::grpc_server(api& core, grpc_server_config cfg)
    : impl_(std::make_shared<impl>(core, std::move(cfg))) {
  core.set_door_configured(front_door::grpc);
}

grpc_server::~grpc_server() { stop(); }

void grpc_server::start() { impl_->start(); }

uint16_t grpc_server::port() const { return impl_->bound_port.load(); }

void grpc_server::stop() {
  if (impl_)
    impl_->stop();
}

} // namespace aico::gateway
