// aico engine: the gRPC client loop (see grpc_link.hpp). The only engine
// file that includes grpc++.
#include "src/transport/grpc/grpc_link.hpp"

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "gateway.grpc.pb.h"

namespace aico::grpc_link {

const char* to_string(failure f) {
  switch (f) {
    case failure::deadline:
      return "deadline";
    case failure::unavailable:
      return "unavailable";
    case failure::unauthenticated:
      return "unauthenticated";
    case failure::too_large:
      return "too_large";
    case failure::cancelled:
      return "cancelled";
    case failure::stale_generation:
      return "stale_generation";
    case failure::other:
      return "other";
  }
  return "other";
}

namespace {

failure classify(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return failure::deadline;
    case grpc::StatusCode::UNAVAILABLE:
      return failure::unavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
      return failure::unauthenticated;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return failure::too_large;
    case grpc::StatusCode::CANCELLED:
      return failure::cancelled;
    default:
      return failure::other;
  }
}

std::string status_text(const grpc::Status& s) {
  return "grpc status " + std::to_string(static_cast<int>(s.error_code()))
         + (s.error_message().empty() ? std::string()
                                      : ": " + s.error_message());
}

bool read_pem(const std::string& path, std::string& out, std::string& err,
              const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = std::string("cannot read the TLS ") + what + " " + path;
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

/// A steady_clock deadline as the system_clock time grpc++ takes.
std::chrono::system_clock::time_point
to_system(std::chrono::steady_clock::time_point d) {
  auto left = d - std::chrono::steady_clock::now();
  return std::chrono::system_clock::now()
         + std::chrono::duration_cast<std::chrono::system_clock::duration>(
           left);
}

/// grpc++'s callback API runs, on this platform's iomgr, on one
/// process-global completion queue with a thread pool
/// (CallbackAlternativeCQ): a channel takes a reference on its first
/// callback call and drops it when destroyed, and at zero the queue is shut
/// down, its threads joined and the queue deleted. Channels die here all
/// the time (every reconnect is a new channel), often in one of those very
/// threads (a call's completion drops the last reference to its channel),
/// and that teardown races: "assertion failed: prior > 0" in
/// grpc_cq_internal_unref, seen in about 1 of 40 runs of the failover test
/// (grpc/grpc#32584 describes the join of a thread by itself). So one
/// channel that has made a callback call lives as long as the process: the
/// count never reaches zero and the queue is never torn down. It points at
/// a Unix socket path that does not exist (no traffic, nothing resolved);
/// its one call has a deadline that has passed already.
void keep_callback_queue() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct keeper {
      std::shared_ptr<grpc::Channel> channel;
      std::unique_ptr<aico::rpc::Gateway::Stub> stub;
      grpc::ClientContext ctx;
      aico::rpc::CallRequest req;
      aico::rpc::CallReply rep;
      std::mutex m;
      std::condition_variable cv;
      bool done = false;
    };
    // never destroyed: reachable from this static until exit
    static keeper* k = new keeper;
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    k->channel = grpc::CreateCustomChannel(
      "unix:/nonexistent/aico-grpc-callback-queue-keeper",
      grpc::InsecureChannelCredentials(), args);
    k->stub = aico::rpc::Gateway::NewStub(k->channel);
    k->ctx.set_deadline(std::chrono::system_clock::now());
    k->stub->async()->Call(&k->ctx, &k->req, &k->rep, [](grpc::Status) {
      std::lock_guard<std::mutex> lock(k->m);
      k->done = true;
      k->cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(k->m);
    k->cv.wait_for(lock, std::chrono::seconds(5), [] { return k->done; });
  });
}

} // namespace

struct grpc_link::impl : std::enable_shared_from_this<grpc_link::impl> {
  link_options opts;
  link_handlers h;

  // The gate: handlers run under a shared lock while `stopped` is false;
  // stop() takes it exclusively, so no handler runs after stop() returned.
  std::shared_mutex gate;
  bool stopped = false;

  struct channel_state;

  /// One call in flight.
  struct call_ctx {
    grpc::ClientContext ctx;
    aico::rpc::CallRequest req;
    aico::rpc::CallReply rep;
    uint64_t id = 0;
    std::shared_ptr<channel_state> ch;
  };

  struct stream_reactor;

  /// One channel ("generation").
  struct channel_state {
    uint64_t gen = 0;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<aico::rpc::Gateway::Stub> stub;
    /// In flight (under impl::m).
    std::unordered_map<call_ctx*, std::shared_ptr<call_ctx>> calls;
    std::shared_ptr<stream_reactor> stream; ///< under impl::m
    bool up = false;                           ///< last reported (watcher)
    bool ever_up = false;                      ///< watcher
    bool failure_reported = false;             ///< on_connect_failed (watcher)
    std::string target;
    bool closed = false;
  };

  std::mutex m;
  std::condition_variable cv;
  std::shared_ptr<channel_state> cur;
  /// Calls and streams whose callbacks have not finished (any channel).
  std::size_t outstanding = 0;
  bool stopping = false;
  std::thread watcher;

  impl(link_options o, link_handlers hs) : opts(std::move(o)), h(std::move(hs)) {}

  template <class F>
  void report(F&& f) {
    std::shared_lock<std::shared_mutex> lock(gate);
    if (!stopped)
      f();
  }

  void done_one() {
    std::lock_guard<std::mutex> lock(m);
    if (outstanding > 0)
      --outstanding;
    cv.notify_all();
  }

  // -- the event stream ----------------------------------------------------

  struct stream_reactor : grpc::ClientReadReactor<aico::rpc::EventsMessage> {
    impl* owner;
    std::shared_ptr<channel_state> ch;
    std::shared_ptr<stream_reactor> self; ///< until OnDone
    grpc::ClientContext ctx;
    aico::rpc::EventsRequest req;
    aico::rpc::EventsMessage msg;
    std::atomic<bool> replaced{false}; ///< ended by the owner: no report
    uint64_t tag = 0;                  ///< the owner's (subscribe)
    bool was_open = false;             ///< `Subscribed` arrived (reader only)

    stream_reactor(impl* o, std::shared_ptr<channel_state> c)
        : owner(o), ch(std::move(c)) {}

    void OnReadDone(bool ok) override {
      if (!ok)
        return; // OnDone follows
      if (!replaced.load()) {
        uint64_t gen = ch->gen;
        if (msg.has_subscribed()) {
          auto& s = msg.subscribed();
          subscribed out;
          out.user_id = s.user_id();
          out.replay = s.replay();
          out.since = s.since();
          out.complete = s.complete();
          out.replayed = s.replayed();
          out.stream = tag;
          was_open = true;
          owner->report([&] {
            if (owner->h.on_subscribed)
              owner->h.on_subscribed(gen, std::move(out));
          });
        } else if (msg.has_event()) {
          event e;
          e.seq = msg.event().seq();
          e.topic = msg.event().topic();
          e.data = msg.event().data();
          e.stream = tag;
          owner->report([&] {
            if (owner->h.on_event)
              owner->h.on_event(gen, std::move(e));
          });
        }
      }
      StartRead(&msg);
    }

    void OnDone(const grpc::Status& s) override {
      impl* o = owner;
      bool closed = false;
      {
        std::lock_guard<std::mutex> lock(o->m);
        if (ch->stream.get() == this)
          ch->stream.reset();
        closed = ch->closed;
      }
      if (!replaced.load() && !closed) {
        std::string code;
        int32_t status = 0;
        auto& md = ctx.GetServerTrailingMetadata();
        if (auto it = md.find("aico-code"); it != md.end())
          code.assign(it->second.data(), it->second.size());
        if (auto it = md.find("aico-status"); it != md.end()) {
          std::string v(it->second.data(), it->second.size());
          try {
            status = static_cast<int32_t>(std::stoi(v));
          } catch (...) {
            status = 0;
          }
        }
        uint64_t gen = ch->gen;
        auto f = s.ok() ? failure::other : classify(s.error_code());
        auto why = s.ok() ? std::string("the gateway ended the event stream")
                          : status_text(s);
        o->report([&] {
          if (o->h.on_stream_ended) {
            stream_end e;
            e.stream = tag;
            e.was_open = was_open;
            e.ok = s.ok();
            e.f = f;
            e.status = status;
            e.code = code;
            e.why = why;
            o->h.on_stream_ended(gen, std::move(e));
          } else if (o->h.on_stream_end) {
            o->h.on_stream_end(gen, f, code, why);
          }
        });
      }
      auto keep = std::move(self); // may be the last reference
      o->done_one();
    }
  };

  // -- owner calls -----------------------------------------------------------

  /// What to cancel once m is released (grpc++ may run a callback inline,
  /// and callbacks take m).
  struct to_cancel {
    std::vector<std::shared_ptr<call_ctx>> calls;
    std::shared_ptr<stream_reactor> stream;
    void run() {
      for (auto& c : calls)
        c->ctx.TryCancel();
      if (stream)
        stream->ctx.TryCancel();
    }
  };

  /// Takes the current channel out; what was in flight on it goes into
  /// `out`. Called with m held.
  void drop_current(to_cancel& out) {
    if (!cur)
      return;
    cur->closed = true;
    for (auto& [_, c] : cur->calls)
      out.calls.push_back(c);
    if (cur->stream) {
      cur->stream->replaced = true;
      out.stream = cur->stream;
    }
    cur.reset();
    cv.notify_all();
  }

  void open(uint64_t gen, std::string target) {
    std::shared_ptr<grpc::ChannelCredentials> creds;
    grpc::ChannelArguments args;
    std::string err;
    if (opts.use_tls) {
      if (!opts.tls.ca_dir.empty())
        err = "a CA directory (ca_dir) is not supported by the gRPC "
              "transport; give a CA file";
      else if (!opts.tls.pinned_public_key.empty())
        err = "public key pinning is not supported by the gRPC transport";
      else if (opts.tls.insecure_skip_verify)
        err = "insecure_skip_verify is not supported by the gRPC transport";
      grpc::SslCredentialsOptions so;
      if (err.empty() && !opts.tls.ca_file.empty())
        read_pem(opts.tls.ca_file, so.pem_root_certs, err, "CA file");
      if (err.empty() && !opts.tls.client_cert.empty()) {
        if (opts.tls.client_key.empty())
          err = "a client certificate needs its key";
        else if (read_pem(opts.tls.client_cert, so.pem_cert_chain, err,
                          "client certificate"))
          read_pem(opts.tls.client_key, so.pem_private_key, err,
                   "client key");
      }
      if (err.empty())
        creds = grpc::SslCredentials(so);
      if (!opts.tls_server_name.empty())
        args.SetSslTargetNameOverride(opts.tls_server_name);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    if (!err.empty()) {
      to_cancel tc;
      {
        std::lock_guard<std::mutex> lock(m);
        drop_current(tc);
      }
      tc.run();
      report([&] {
        if (h.on_open_failed)
          h.on_open_failed(gen, err);
      });
      return;
    }
    // Each link its own connection (the default pool would share one
    // subchannel between all links of the process to the same target).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(opts.reconnect_initial.count()));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                static_cast<int>(opts.reconnect_min.count()));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(opts.reconnect_max.count()));
    // A lost connection makes the channel re-resolve its target; the DNS
    // resolver's cooldown (30 s by default, even for an IP literal) would
    // otherwise hold the reconnect back far beyond the bounded backoff.
    args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS,
                static_cast<int>(opts.reconnect_min.count()));
    if (opts.keepalive_interval.count() > 0) {
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                  static_cast<int>(opts.keepalive_interval.count()));
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                  static_cast<int>(opts.keepalive_timeout.count()));
      args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
      args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    }
    args.SetMaxReceiveMessageSize(static_cast<int>(opts.max_message_bytes));
    auto ch = std::make_shared<channel_state>();
    ch->gen = gen;
    ch->target = target;
    ch->channel = grpc::CreateCustomChannel(target, creds, args);
    ch->stub = aico::rpc::Gateway::NewStub(ch->channel);
    ch->channel->GetState(true); // connect now
    to_cancel tc;
    {
      std::lock_guard<std::mutex> lock(m);
      if (stopping)
        return;
      drop_current(tc);
      cur = std::move(ch);
      cv.notify_all();
    }
    tc.run();
  }

  void close() {
    to_cancel tc;
    {
      std::lock_guard<std::mutex> lock(m);
      drop_current(tc);
    }
    tc.run();
  }

  void send(uint64_t gen, uint64_t id, request req,
            std::chrono::steady_clock::time_point deadline) {
    std::shared_ptr<channel_state> ch;
    auto c = std::make_shared<call_ctx>();
    {
      std::lock_guard<std::mutex> lock(m);
      if (!stopping && cur && cur->gen == gen) {
        ch = cur;
        c->ch = ch;
        c->id = id;
        ch->calls.emplace(c.get(), c);
        ++outstanding;
      }
    }
    if (!ch) {
      report([&] {
        if (h.on_send_failed)
          h.on_send_failed(gen, id, failure::stale_generation,
                           "channel " + std::to_string(gen)
                             + " is not the current one");
      });
      return;
    }
    if (deadline != std::chrono::steady_clock::time_point{})
      c->ctx.set_deadline(to_system(deadline));
    if (!req.token.empty())
      c->ctx.AddMetadata("authorization", "Bearer " + req.token);
    c->req.set_method(std::move(req.method));
    c->req.set_path(std::move(req.path));
    c->req.set_body(std::move(req.body));
    ch->stub->async()->Call(&c->ctx, &c->req, &c->rep,
                            [this, c](grpc::Status s) { finish_call(c, s); });
  }

  void finish_call(const std::shared_ptr<call_ctx>& c, const grpc::Status& s) {
    {
      std::lock_guard<std::mutex> lock(m);
      c->ch->calls.erase(c.get());
    }
    uint64_t gen = c->ch->gen;
    if (s.ok()) {
      reply r;
      r.status = c->rep.status();
      r.body = std::move(*c->rep.mutable_body());
      for (auto& [k, v] : c->rep.headers())
        r.headers.emplace_back(k, v);
      report([&] {
        if (h.on_reply)
          h.on_reply(gen, c->id, std::move(r));
      });
    } else {
      auto f = classify(s.error_code());
      auto why = status_text(s);
      report([&] {
        if (h.on_send_failed)
          h.on_send_failed(gen, c->id, f, why);
      });
    }
    done_one();
  }

  void subscribe(uint64_t gen, std::string token, uint64_t since,
                 uint64_t tag) {
    std::shared_ptr<stream_reactor> r;
    std::shared_ptr<stream_reactor> old;
    {
      std::lock_guard<std::mutex> lock(m);
      if (!stopping && cur && cur->gen == gen) {
        if (cur->stream) {
          cur->stream->replaced = true;
          old = cur->stream;
        }
        r = std::make_shared<stream_reactor>(this, cur);
        r->tag = tag;
        r->self = r;
        cur->stream = r;
        ++outstanding;
      }
    }
    if (old)
      old->ctx.TryCancel();
    if (!r) {
      auto why = "channel " + std::to_string(gen) + " is not the current one";
      report([&] {
        if (h.on_stream_ended) {
          stream_end e;
          e.stream = tag;
          e.f = failure::stale_generation;
          e.why = why;
          h.on_stream_ended(gen, std::move(e));
        } else if (h.on_stream_end) {
          h.on_stream_end(gen, failure::stale_generation, "", why);
        }
      });
      return;
    }
    if (!token.empty())
      r->ctx.AddMetadata("authorization", "Bearer " + token);
    r->req.set_since(since);
    r->ch->stub->async()->Events(&r->ctx, &r->req, r.get());
    r->StartRead(&r->msg);
    r->StartCall();
  }

  void cancel(uint64_t id) {
    std::shared_ptr<call_ctx> c;
    {
      std::lock_guard<std::mutex> lock(m);
      if (!cur)
        return;
      for (auto& [_, x] : cur->calls)
        if (x->id == id) {
          c = x;
          break;
        }
    }
    if (c)
      c->ctx.TryCancel();
  }

  void unsubscribe() {
    std::shared_ptr<stream_reactor> old;
    {
      std::lock_guard<std::mutex> lock(m);
      if (cur && cur->stream) {
        cur->stream->replaced = true;
        old = cur->stream;
      }
    }
    if (old)
      old->ctx.TryCancel();
  }

  // -- channel state -----------------------------------------------------------

  void watch() {
    std::unique_lock<std::mutex> lock(m);
    while (!stopping) {
      auto ch = cur;
      if (!ch) {
        cv.wait(lock);
        continue;
      }
      lock.unlock();
      auto state = ch->channel->GetState(true);
      bool up = state == GRPC_CHANNEL_READY;
      if (up)
        ch->ever_up = true;
      if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && !ch->ever_up
          && !ch->failure_reported && !ch->closed) {
        ch->failure_reported = true;
        uint64_t gen = ch->gen;
        auto why = "cannot connect to the grpc door at " + ch->target;
        report([&] {
          if (h.on_connect_failed)
            h.on_connect_failed(gen, why);
        });
      }
      if (up != ch->up) {
        ch->up = up;
        if (!ch->closed) {
          uint64_t gen = ch->gen;
          report([&] {
            if (h.on_link)
              h.on_link(gen, up);
          });
        }
      }
      // Wakes on a change or after 100 ms (then looks at stop/open).
      ch->channel->WaitForStateChange(
        state, std::chrono::system_clock::now()
                 + std::chrono::milliseconds(100));
      lock.lock();
    }
  }

  void start() {
    watcher = std::thread([this] { watch(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(m);
      if (stopping)
        return;
      stopping = true;
    }
    // Close the gate first: the cancellations below report nothing.
    {
      std::unique_lock<std::shared_mutex> lock(gate);
      stopped = true;
    }
    to_cancel tc;
    {
      std::lock_guard<std::mutex> lock(m);
      drop_current(tc);
      cv.notify_all();
    }
    tc.run();
    if (watcher.joinable())
      watcher.join();
    // Cancelled calls complete quickly; their memory is ours until then.
    std::unique_lock<std::mutex> lock(m);
    cv.wait_for(lock, std::chrono::seconds(5), [&] { return outstanding == 0; });
  }
};

grpc_link::grpc_link(link_options opts, link_handlers handlers)
    : impl_(std::make_shared<impl>(std::move(opts), std::move(handlers))) {
  keep_callback_queue();
  impl_->start();
}

grpc_link::~grpc_link() { stop(); }

void grpc_link::open(uint64_t gen, std::string target) {
  impl_->open(gen, std::move(target));
}

void grpc_link::close() { impl_->close(); }

void grpc_link::send(uint64_t gen, uint64_t id, request req,
                     std::chrono::steady_clock::time_point deadline) {
  impl_->send(gen, id, std::move(req), deadline);
}

void grpc_link::subscribe(uint64_t gen, std::string token, uint64_t since,
                          uint64_t stream) {
  impl_->subscribe(gen, std::move(token), since, stream);
}

void grpc_link::cancel(uint64_t id) { impl_->cancel(id); }

void grpc_link::unsubscribe() { impl_->unsubscribe(); }

void grpc_link::stop() {
  if (impl_)
    impl_->stop();
}

} // namespace aico::grpc_link
