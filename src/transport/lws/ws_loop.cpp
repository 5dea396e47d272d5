// aico engine: the shared libwebsockets client service (see ws_loop.hpp).
// The only translation unit of the engine that includes <libwebsockets.h>.
//
// Objects and who touches what:
// * service: one per TLS setting and process, reference-counted by the
//   ws_loops that use it (registry below). Owns the lws_context and the
//   service thread. Its command queue (mtx) is the only thing owners write.
// * loop_core: the per-loop part, shared (shared_ptr) by the ws_loop, the
//   commands it queued and its connections. Its handlers run on the service
//   thread under `gate`; stop() sets `stopped` under `gate`, so no handler
//   starts after that and none is still running when stop() returns. Then
//   stop() queues a detach command and returns without waiting for the
//   service thread: a wait would cost one service cycle per stop, blocking
//   the caller (a CAF worker) meanwhile; with the poll() loop that is a pass
//   over every connection of the process (~4 ms with 10,000 of them).
//   Whatever the service thread still does for the loop afterwards (closing
//   its connection) only touches the reference-counted loop_core.
// * connection: one per lws client wsi; its address is the wsi's `user`
//   (and opaque user data). Owned by the service until lws destroys the wsi.
//   A detached connection (its loop stopped) has no owner any more: it only
//   finishes its close.
#include "src/transport/lws/ws_loop.hpp"

#include <libwebsockets.h>

#include <ev.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace aico::ws_link {

namespace {

using steady = std::chrono::steady_clock;

constexpr const char* protocol_name = "aico-ws-client";

/// A connection whose wsi vanished without LWS_CALLBACK_WSI_DESTROY (a
/// connect that failed synchronously, a connection error) is freed this long
/// afterwards, so that no late callback can find its address reused.
constexpr auto retire_after = std::chrono::seconds(30);

/// lws' own log lines: errors only, to stderr with a prefix. lws never logs
/// request headers at this level, so no token can end up here.
void emit_lws_log(int level, const char* line) {
  if (level & LLL_ERR)
    std::fprintf(stderr, "aico ws (libwebsockets): %s", line);
}

void init_lws_logging() {
  // lws' log level is process-wide; set it once.
  static std::once_flag once;
  std::call_once(once, [] { lws_set_log_level(LLL_ERR, emit_lws_log); });
}

/// The context's pollfd and fd lookup tables are sized by this: the process'
/// fd limit (soft) when the service starts, so that one context can hold as
/// many connections as the process may open sockets.
unsigned fd_limit_for_context() {
  rlim_t n = 1024;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0)
    n = rl.rlim_cur;
  constexpr rlim_t cap = rlim_t{1} << 20;
  if (n == RLIM_INFINITY || n > cap)
    n = cap;
  if (n < 256)
    n = 256;
  return static_cast<unsigned>(n);
}

/// The context's event loop: libev (epoll) unless AICO_WS_EVENT_LOOP=poll,
/// or lws' own poll() loop if libev cannot be used. poll() costs a pass
/// over every connection of the process per wake-up (measured with 10,000
/// sessions pinging every 5 s: ~75 % of a core, ~18 % with epoll).
bool want_libev() {
  const char* v = std::getenv("AICO_WS_EVENT_LOOP");
  return !(v && std::strcmp(v, "poll") == 0);
}

/// "sha256//BASE64" of a certificate's SubjectPublicKeyInfo ("" on error).
std::string spki_pin(X509* cert) {
  if (!cert)
    return {};
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
  if (len <= 0)
    return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  bool ok = EVP_Digest(der, static_cast<std::size_t>(len), md, &md_len,
                       EVP_sha256(), nullptr)
            == 1;
  OPENSSL_free(der);
  if (!ok)
    return {};
  unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  int n = EVP_EncodeBlock(b64, md, static_cast<int>(md_len));
  return "sha256//" + std::string(reinterpret_cast<char*>(b64),
                                  static_cast<std::size_t>(n));
}

struct connection;

/// Our SSL ex_data slot: the connection an SSL object belongs to (set in
/// the verification callback; the SSL goes with the wsi, before the
/// connection object).
int connection_ex_index() {
  static int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr,
                                        nullptr);
  return idx;
}

void record_alert(const SSL* ssl, int where, int ret);

/// Whether `pin` is one of the ';'-separated `pins`.
bool pin_listed(const std::string& pins, const std::string& pin) {
  std::size_t pos = 0;
  while (pos <= pins.size()) {
    auto semi = pins.find(';', pos);
    auto one = pins.substr(pos, semi == std::string::npos ? std::string::npos
                                                          : semi - pos);
    if (!pin.empty() && one == pin)
      return true;
    if (semi == std::string::npos)
      break;
    pos = semi + 1;
  }
  return false;
}

/// Why the TLS settings cannot work ("" if they can), checked before a
/// service is made for them.
std::string tls_settings_problem(const transport::tls_options& t) {
  if (!t.pinned_public_key.empty()
      && !transport::valid_pin_list(t.pinned_public_key))
    return "websocket TLS: invalid public key pin '" + t.pinned_public_key
           + "' (expected sha256//BASE64, several separated by ';')";
  if (t.client_cert.empty() != t.client_key.empty())
    return "websocket TLS: a client certificate needs its key and vice "
           "versa";
  for (auto* f : {&t.ca_file, &t.client_cert, &t.client_key})
    if (!f->empty() && ::access(f->c_str(), R_OK) != 0)
      return "websocket TLS: cannot read " + *f + ": "
             + std::strerror(errno);
  if (!t.ca_dir.empty() && ::access(t.ca_dir.c_str(), R_OK | X_OK) != 0)
    return "websocket TLS: cannot read the CA directory " + t.ca_dir + ": "
           + std::strerror(errno);
  return {};
}

struct connection;

/// The per-loop state shared by the owner and the service thread.
struct loop_core {
  loop_options opts;
  loop_handlers handlers;

  /// Held by the service thread while it runs one of the handlers, and by
  /// stop() while it sets `stopped`. Recursive so that a (forbidden) stop()
  /// from a handler of this loop cannot deadlock.
  std::recursive_mutex gate;
  bool stopped = false; ///< guarded by gate: no handler from now on

  /// stop() began: open/close/send are dropped from now on.
  std::atomic<bool> stopping{false};

  // -- service thread only --------------------------------------------------
  bool gone = false;             ///< the detach command was processed
  connection* current = nullptr; ///< the one connection open() made last
  std::vector<connection*> conns; ///< all its connections lws still holds

  loop_core(loop_options o, loop_handlers h)
    : opts(std::move(o)), handlers(std::move(h)) {
    if (opts.write_chunk == 0)
      opts.write_chunk = 64u * 1024u;
  }
};

enum class cmd_kind { open, close, send, detach };

struct command {
  cmd_kind kind = cmd_kind::close;
  std::shared_ptr<loop_core> loop;
  uint64_t gen = 0;
  ws_url url;
  std::string token; ///< open
  std::string text;  ///< send
};

/// One client connection; its address is the wsi's `user` pointer. Owned by
/// the service until lws destroys the wsi (or the context goes away).
struct connection {
  std::shared_ptr<loop_core> owner; ///< null once detached
  uint64_t gen = 0;
  std::size_t max_message = 0;
  std::size_t write_chunk = 0;
  ws_url url;
  std::string host_hdr;
  std::string token;
  lws* wsi = nullptr;
  bool established = false;
  bool closing = false;  ///< the owner closed it (or it failed): no more I/O
  bool reported = false; ///< on_closed delivered (or suppressed)
  bool retired = false;  ///< its wsi is gone without WSI_DESTROY (so far)
  steady::time_point retired_at;
  unsigned http_status = 0;
  int close_code = 0;
  std::string close_text;
  std::deque<std::string> outq;
  std::size_t out_off = 0; ///< bytes of outq.front() already written
  std::string rx;          ///< fragments of the message being received
  /// What the certificate verification found wrong (if anything).
  transport::tls_failure tls_fail = transport::tls_failure::none;
  std::string tls_detail;
};

/// One lws_context and its service thread, shared by every ws_loop of the
/// process with the same TLS setting.
struct service {
  const bool tls;
  const transport::tls_options tcfg; ///< with tls: the settings it serves
  lws_protocols protocols[2];
  lws_context* ctx = nullptr;
  /// Our libev loop (lws' "foreign loop"; epoll), or null: lws_service().
  struct ev_loop* evl = nullptr;

  std::mutex mtx; ///< guards cmds, wake_pending, ctx_live
  std::vector<command> cmds;
  bool wake_pending = false; ///< lws_cancel_service called, not drained yet
  bool ctx_live = false;     ///< ctx may be woken (false once destroyed)
  std::atomic<bool> stopping{false};

  std::size_t refs = 0; ///< guarded by the registry mutex
  bool self_delete = false; ///< released on its own thread: run() deletes

  std::atomic<std::size_t> live_conns{0}; ///< connection objects (stats)

  // -- service thread only --------------------------------------------------
  bool destroying = false; ///< no handlers from now on
  std::unordered_map<connection*, std::unique_ptr<connection>> conns;
  std::unordered_set<connection*> retired;
  steady::time_point next_sweep{};
  std::vector<unsigned char> wbuf;

  std::thread thread; ///< last member: started after everything else exists

  service(bool with_tls, transport::tls_options t)
    : tls(with_tls), tcfg(std::move(t)) {
    std::memset(protocols, 0, sizeof(protocols));
    protocols[0].name = protocol_name;
    protocols[0].callback = &service::callback;
    protocols[0].per_session_data_size = 0; // user = our connection object
    protocols[0].rx_buffer_size = 0;        // lws default
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = this; // lws_context_user() in the callback
    info.count_threads = 1;
    // Many connections in one context: pollfd and lookup tables as big as
    // the process' fd limit (256 was enough for one connection per context).
    info.fd_limit_per_thread = fd_limit_for_context();
    info.options = tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
    if (tls) {
      // Client certificate (mutual TLS); the CAs to trust are set in the
      // LOAD_EXTRA_CLIENT_VERIFY_CERTS callback (only those, if given).
      if (!tcfg.client_cert.empty()) {
        info.client_ssl_cert_filepath = tcfg.client_cert.c_str();
        info.client_ssl_private_key_filepath = tcfg.client_key.c_str();
      }
    }
    if (want_libev()) {
      // a loop of our own (not libev's default one: no signal handling)
      evl = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
      if (evl) {
        lws_context_creation_info ev_info = info;
        ev_info.options |= LWS_SERVER_OPTION_LIBEV;
        ev_info.foreign_loops = reinterpret_cast<void**>(&evl);
        ctx = lws_create_context(&ev_info);
        if (!ctx) { // e.g. lws' libev plugin missing: poll() instead
          ev_loop_destroy(evl);
          evl = nullptr;
        }
      }
    }
    if (!ctx)
      ctx = lws_create_context(&info);
    if (!ctx)
      throw std::runtime_error(
        tls && !tcfg.client_cert.empty()
          ? "cannot create the libwebsockets context: the TLS client "
            "certificate " + tcfg.client_cert + " or its key "
            + tcfg.client_key + " could not be used"
          : std::string("cannot create the libwebsockets context"));
    ctx_live = true;
    try {
      thread = std::thread([this] { run(); });
    } catch (...) {
      destroy_context();
      ctx_live = false;
      throw std::runtime_error("cannot start the websocket service thread");
    }
  }

  const char* backend() const { return evl ? "libev" : "poll"; }

  void destroy_context() {
    lws_context_destroy(ctx); // closes every connection, on this thread
    ctx = nullptr;
    if (evl) {
      ev_loop_destroy(evl);
      evl = nullptr;
    }
  }

  service(const service&) = delete;
  service& operator=(const service&) = delete;

  bool on_service_thread() const {
    return std::this_thread::get_id() == thread.get_id();
  }

  /// Stops the thread (it destroys the context) and frees this object: now
  /// after joining, or from run() when called on the service thread itself.
  void shutdown() {
    {
      std::lock_guard<std::mutex> g{mtx};
      stopping = true;
      if (ctx_live)
        lws_cancel_service(ctx);
    }
    if (on_service_thread()) {
      self_delete = true;
      thread.detach();
      return;
    }
    if (thread.joinable())
      thread.join();
    delete this;
  }

  // -- thread ---------------------------------------------------------------

  void run() {
    while (!stopping.load()) {
      if (evl) {
        // returns on ev_break (stopping, see dispatch) or, should it ever
        // happen, when lws has no watcher left
        ev_run(evl, 0);
        if (!stopping.load())
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      int n = lws_service(ctx, 0);
      if (n < 0 && !stopping.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::vector<command> dropped;
    {
      std::lock_guard<std::mutex> g{mtx};
      ctx_live = false;
      dropped.swap(cmds);
    }
    dropped.clear();
    destroying = true;
    destroy_context();
    conns.clear();
    retired.clear();
    live_conns = 0;
    if (self_delete)
      delete this;
  }

  /// Queues a command; one lws_cancel_service per batch. False if the
  /// context is gone.
  bool post(command&& cmd) {
    std::lock_guard<std::mutex> g{mtx};
    if (!ctx_live)
      return false;
    cmds.push_back(std::move(cmd));
    if (!wake_pending) {
      wake_pending = true;
      lws_cancel_service(ctx); // -> LWS_CALLBACK_EVENT_WAIT_CANCELLED
    }
    return true;
  }

  // -- service thread helpers -----------------------------------------------

  /// Runs one handler of `c`'s loop unless it was stopped (or detached).
  template <class F>
  void call_handler(connection* c, F&& f) {
    if (destroying)
      return;
    std::shared_ptr<loop_core> core = c->owner;
    if (!core)
      return;
    std::lock_guard<std::recursive_mutex> g{core->gate};
    if (core->stopped)
      return;
    try {
      f(core->handlers);
    } catch (...) {
      // a handler must not take the service thread down
    }
  }

  void report_closed(connection* c, const std::string& reason) {
    if (c->reported)
      return;
    c->reported = true;
    c->closing = true;
    if (c->owner && c->owner->current == c)
      c->owner->current = nullptr;
    call_handler(c, [&](loop_handlers& h) {
      if (h.on_closed)
        h.on_closed(c->gen, reason);
    });
  }

  /// Our connection for a callback: `user` or the wsi's opaque user data if
  /// it is one of ours, else (only where it matters) the one whose wsi this
  /// is; nullptr for lws' own wsis (e.g. the wake-up pipe).
  connection* lookup(void* user, lws* wsi, bool scan) {
    if (user) {
      auto i = conns.find(static_cast<connection*>(user));
      if (i != conns.end())
        return i->first;
    }
    if (wsi) {
      if (void* o = lws_get_opaque_user_data(wsi)) {
        auto i = conns.find(static_cast<connection*>(o));
        if (i != conns.end())
          return i->first;
      }
    }
    if (scan && wsi)
      for (auto& kv : conns)
        if (kv.first->wsi == wsi)
          return kv.first;
    return nullptr;
  }

  /// The wsi of `c` is gone but lws may not tell (no WSI_DESTROY): freed by
  /// sweep() after retire_after unless WSI_DESTROY comes first.
  void retire(connection* c) {
    c->wsi = nullptr;
    if (c->retired)
      return;
    c->retired = true;
    c->retired_at = steady::now();
    retired.insert(c);
  }

  /// Forgets `c` (its wsi is destroyed); frees it.
  void erase(connection* c) {
    if (auto& core = c->owner) {
      if (core->current == c)
        core->current = nullptr;
      auto& v = core->conns;
      v.erase(std::remove(v.begin(), v.end(), c), v.end());
    }
    retired.erase(c);
    if (conns.erase(c) > 0)
      --live_conns;
  }

  void sweep() {
    if (retired.empty())
      return;
    auto now = steady::now();
    if (now < next_sweep)
      return;
    next_sweep = now + std::chrono::seconds(1);
    std::vector<connection*> old;
    for (auto* c : retired)
      if (now - c->retired_at > retire_after)
        old.push_back(c);
    for (auto* c : old)
      erase(c);
  }

  /// Closes `c` at the owner's request (nothing is reported for it).
  void close_conn(connection* c) {
    c->reported = true;
    c->closing = true;
    c->outq.clear();
    if (c->owner && c->owner->current == c)
      c->owner->current = nullptr;
    lws* w = c->wsi;
    if (!w)
      return;
    if (c->established) {
      // A close frame from the WRITEABLE callback; bounded in case the
      // socket never becomes writable again.
      lws_set_timeout(w, PENDING_TIMEOUT_USER_OK, 3);
      lws_callback_on_writable(w);
    } else {
      // Abandon the attempt now. This may destroy the wsi (and `c`) before
      // it returns: `c` is not touched afterwards.
      lws_set_timeout(w, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
  }

  void do_open(const std::shared_ptr<loop_core>& core, command& cmd) {
    if (core->gone || core->stopping.load())
      return;
    if (core->current)
      close_conn(core->current);
    auto owned = std::make_unique<connection>();
    connection* c = owned.get();
    c->owner = core;
    c->gen = cmd.gen;
    c->max_message = core->opts.max_message;
    c->write_chunk = core->opts.write_chunk;
    c->url = std::move(cmd.url);
    c->token = std::move(cmd.token);
    c->host_hdr = host_header(c->url);
    core->conns.reserve(core->conns.size() + 1);
    conns.emplace(c, std::move(owned));
    ++live_conns;
    core->conns.push_back(c);
    core->current = c;
    lws_client_connect_info ci;
    std::memset(&ci, 0, sizeof(ci));
    ci.context = ctx;
    ci.address = c->url.host.c_str();
    ci.port = c->url.port;
    ci.ssl_connection = c->url.tls ? LCCSCF_USE_SSL : 0;
    if (c->url.tls && tcfg.insecure_skip_verify) {
      ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE
                           | LCCSCF_ALLOW_EXPIRED
                           | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
      call_handler(c, [&](loop_handlers& h) {
        if (h.on_warning)
          h.on_warning(c->gen, transport::insecure_warning());
      });
    }
    ci.path = c->url.path.c_str();
    ci.host = c->host_hdr.c_str();
    ci.origin = nullptr;
    ci.protocol = nullptr; // no Sec-WebSocket-Protocol header
    ci.local_protocol_name = protocol_name;
    ci.ietf_version_or_minus_one = -1;
    ci.userdata = c;
    ci.opaque_user_data = c;
    // (no pwsi: nothing may write into `c` after it is freed; callbacks
    // carry the wsi, and c->wsi is set from them and from the result)
    lws* w = lws_client_connect_via_info(&ci);
    if (conns.count(c) == 0)
      return; // already destroyed (WSI_DESTROY during the call)
    if (w) {
      if (!c->retired)
        c->wsi = w;
      return;
    }
    // Failed synchronously; the wsi is gone.
    report_closed(c, "websocket connect to " + c->host_hdr + " failed");
    retire(c);
  }

  void do_send(const std::shared_ptr<loop_core>& core, command& cmd) {
    connection* c = core->current;
    if (core->gone || !c || c->gen != cmd.gen || c->closing)
      return;
    bool idle = c->outq.empty();
    c->outq.push_back(std::move(cmd.text));
    if (!c->established || !c->wsi)
      return;
    // Nothing queued and nothing left over from a partial write: write the
    // (first chunk of the) frame now, from this service-thread callback,
    // instead of waiting one more loop round for WRITEABLE. What does not
    // fit is buffered by lws, and WRITEABLE carries on as usual.
    if (idle && !lws_partial_buffered(c->wsi)) {
      if (on_writeable(c->wsi, c) < 0)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
      return;
    }
    lws_callback_on_writable(c->wsi);
  }

  /// The owner stopped: close its connections (nothing reported) and let
  /// go of them.
  void do_detach(const std::shared_ptr<loop_core>& core) {
    if (core->gone)
      return;
    core->gone = true;
    core->current = nullptr;
    std::vector<connection*> list = core->conns;
    for (auto* c : list)
      if (conns.count(c) > 0 && !c->closing)
        close_conn(c); // may destroy it (and take it out of core->conns)
    for (auto* c : core->conns)
      if (conns.count(c) > 0)
        c->owner.reset(); // ours until lws destroys the wsi
    core->conns.clear();
  }

  void drain_commands() {
    std::vector<command> batch;
    {
      std::lock_guard<std::mutex> g{mtx};
      batch.swap(cmds);
      wake_pending = false;
    }
    sweep();
    for (auto& cmd : batch) {
      if (stopping.load())
        return;
      const auto& core = cmd.loop;
      if (!core)
        continue;
      try {
        switch (cmd.kind) {
          case cmd_kind::open:
            do_open(core, cmd);
            break;
          case cmd_kind::close:
            if (!core->gone && core->current)
              close_conn(core->current);
            break;
          case cmd_kind::send:
            do_send(core, cmd);
            break;
          case cmd_kind::detach:
            do_detach(core);
            break;
        }
      } catch (const std::exception& e) {
        // (a detach that failed half-way: the gate keeps the handlers
        // quiet, and what is left finishes on lws' timeouts)
        if (!core->gone && core->current)
          report_closed(core->current,
                        std::string{"websocket loop: "} + e.what());
      } catch (...) {
        if (!core->gone && core->current)
          report_closed(core->current, "websocket loop: internal error");
      }
    }
  }

  int on_writeable(lws* wsi, connection* c) {
    if (c->closing) {
      unsigned char bye[] = "client closing";
      lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, bye, sizeof(bye) - 1);
      return -1;
    }
    if (c->outq.empty())
      return 0;
    const std::string& msg = c->outq.front();
    std::size_t off = c->out_off;
    std::size_t n = std::min(c->write_chunk, msg.size() - off);
    bool first = off == 0;
    bool last = off + n == msg.size();
    wbuf.resize(LWS_PRE + n);
    if (n > 0)
      std::memcpy(wbuf.data() + LWS_PRE, msg.data() + off, n);
    int flags = lws_write_ws_flags(LWS_WRITE_TEXT, first ? 1 : 0, last ? 1 : 0);
    // lws buffers whatever the socket does not take now and only calls
    // WRITEABLE again once that is out (lws_partial_buffered).
    int w = lws_write(wsi, wbuf.data() + LWS_PRE, n,
                      static_cast<lws_write_protocol>(flags));
    if (w < 0) {
      report_closed(c, "websocket write failed");
      return -1;
    }
    if (last) {
      c->outq.pop_front();
      c->out_off = 0;
    } else {
      c->out_off += n;
    }
    if (!c->outq.empty())
      lws_callback_on_writable(wsi);
    return 0;
  }

  int on_receive(lws* wsi, connection* c, const void* in, std::size_t len) {
    if (c->closing)
      return 0;
    if (c->rx.size() + len > c->max_message) {
      report_closed(c, "websocket message from peer exceeds "
                         + std::to_string(c->max_message) + " bytes");
      lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, nullptr, 0);
      return -1;
    }
    if (len > 0)
      c->rx.append(static_cast<const char*>(in), len);
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
      std::string msg;
      msg.swap(c->rx);
      call_handler(c, [&](loop_handlers& h) {
        if (h.on_message)
          h.on_message(c->gen, std::move(msg));
      });
    }
    return 0;
  }

  static std::string closed_reason(const connection* c) {
    if (c->close_code == 0)
      return "websocket closed by peer";
    std::string r = "websocket closed by peer ("
                    + std::to_string(c->close_code);
    if (!c->close_text.empty())
      r += " " + c->close_text;
    return r + ")";
  }

  /// The CAs the client trusts: with ca_file/ca_dir only those (a fresh
  /// store), else the system store lws loaded.
  int load_trust(SSL_CTX* sctx) {
    if (!sctx || (tcfg.ca_file.empty() && tcfg.ca_dir.empty()))
      return 0;
    X509_STORE* store = X509_STORE_new();
    if (!store)
      return 1;
    SSL_CTX_set_cert_store(sctx, store); // takes ownership
    if (SSL_CTX_load_verify_locations(
          sctx, tcfg.ca_file.empty() ? nullptr : tcfg.ca_file.c_str(),
          tcfg.ca_dir.empty() ? nullptr : tcfg.ca_dir.c_str())
        != 1)
      std::fprintf(stderr,
                   "aico ws: cannot load the TLS CA file/dir '%s' '%s'\n",
                   tcfg.ca_file.c_str(), tcfg.ca_dir.c_str());
    return 0;
  }

  /// OpenSSL's verdict on each certificate of the gateway's chain (plus the
  /// pin on the leaf). lws convention: 0 = accept, 1 = fail.
  int verify_server(lws* wsi, X509_STORE_CTX* x, int preverify_ok) {
    if (!x)
      return 1;
    connection* c = lookup(nullptr, wsi, true);
    if (c) {
      // Alerts the gateway sends later (e.g. TLS 1.3: "certificate
      // required" after the handshake) are recorded for the close reason.
      SSL* ssl = static_cast<SSL*>(
        X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx()));
      if (ssl && connection_ex_index() >= 0) {
        SSL_set_ex_data(ssl, connection_ex_index(), c);
        SSL_set_info_callback(ssl, &record_alert);
      }
    }
    auto record = [&](transport::tls_failure f, std::string detail) {
      if (c && c->tls_fail == transport::tls_failure::none) {
        c->tls_fail = f;
        c->tls_detail = std::move(detail);
      }
    };
    if (tcfg.insecure_skip_verify) {
      X509_STORE_CTX_set_error(x, X509_V_OK); // (warned about on open)
    } else if (!preverify_ok) {
      int err = X509_STORE_CTX_get_error(x);
      record(transport::tls_failure::untrusted,
             std::string("certificate verify failed: ")
               + X509_verify_cert_error_string(err));
      return 1;
    }
    if (X509_STORE_CTX_get_error_depth(x) == 0
        && !tcfg.pinned_public_key.empty()) {
      auto pin = spki_pin(X509_STORE_CTX_get_current_cert(x));
      if (!pin_listed(tcfg.pinned_public_key, pin)) {
        record(transport::tls_failure::pin_mismatch,
               "the gateway's key is " + pin);
        X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
        return 1;
      }
    }
    return 0;
  }

  static int callback(lws* wsi, lws_callback_reasons reason, void* user,
                      void* in, size_t len) {
    lws_context* cx = lws_get_context(wsi);
    auto self = cx ? static_cast<service*>(lws_context_user(cx)) : nullptr;
    if (!self)
      return 0;
    try {
      return self->dispatch(wsi, reason, user, in, len);
    } catch (...) {
      // Never let an exception into C code. Only one of our connections
      // may be closed for it (-1), never lws' own wake-up pipe.
      return reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED ? 0 : -1;
    }
  }

  int dispatch(lws* wsi, lws_callback_reasons reason, void* user, void* in,
               size_t len) {
    bool scan = false;
    switch (reason) {
      case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        return load_trust(static_cast<SSL_CTX*>(user));
      case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        return verify_server(wsi, static_cast<X509_STORE_CTX*>(user),
                             static_cast<int>(len));
      case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (stopping.load() && evl)
          ev_break(evl, EVBREAK_ALL); // run() goes on to destroy the context
        if (!destroying)
          drain_commands();
        return 0;
      case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
      case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
      case LWS_CALLBACK_CLIENT_ESTABLISHED:
      case LWS_CALLBACK_CLIENT_RECEIVE:
      case LWS_CALLBACK_CLIENT_WRITEABLE:
      case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        break;
      case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      case LWS_CALLBACK_CLIENT_CLOSED:
      case LWS_CALLBACK_WSI_DESTROY:
        scan = true; // rare: worth the fallback search
        break;
      default:
        // poll-fd changes, locks, protocol init, ...: not per connection
        return 0;
    }
    connection* c = lookup(user, wsi, scan);
    if (!c)
      return 0;
    if (reason != LWS_CALLBACK_WSI_DESTROY && !c->retired)
      c->wsi = wsi;
    switch (reason) {
      case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (c->token.empty())
          return 0;
        auto p = static_cast<unsigned char**>(in);
        unsigned char* end = *p + len;
        std::string value = "Bearer " + c->token;
        if (lws_add_http_header_by_name(
              wsi, reinterpret_cast<const unsigned char*>("authorization:"),
              reinterpret_cast<const unsigned char*>(value.data()),
              static_cast<int>(value.size()), p, end)) {
          report_closed(c, "websocket upgrade: no room for the "
                           "Authorization header");
          return -1;
        }
        return 0;
      }
      case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        // the upgrade's HTTP status (lws frees the headers afterwards)
        c->http_status = lws_http_client_http_response(wsi);
        return 0;
      case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->established = true;
        c->http_status = 101;
        if (c->closing) {
          lws_callback_on_writable(wsi); // sends the close frame
          return 0;
        }
        call_handler(c, [&](loop_handlers& h) {
          if (h.on_open)
            h.on_open(c->gen);
        });
        if (!c->outq.empty())
          lws_callback_on_writable(wsi);
        return 0;
      case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(wsi, c, in, len);
      case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(wsi, c);
      case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        auto b = static_cast<const unsigned char*>(in);
        if (b && len >= 2) {
          c->close_code = (b[0] << 8) | b[1];
          std::string text(reinterpret_cast<const char*>(b + 2), len - 2);
          // keep it printable and short
          for (auto& ch : text)
            if (static_cast<unsigned char>(ch) < 0x20)
              ch = ' ';
          if (text.size() > 120)
            text.resize(120);
          c->close_text = std::move(text);
        }
        return 0; // lws echoes the close and closes
      }
      case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        std::string why = (in && len > 0)
                            ? std::string(static_cast<const char*>(in), len)
                            : std::string{"connection failed"};
        while (!why.empty() && (why.back() == '\n' || why.back() == '\r'))
          why.pop_back();
        unsigned status = c->http_status;
        if (status == 0)
          status = lws_http_client_http_response(wsi);
        std::string reason_text;
        auto tls_fail = c->tls_fail;
        if (tls_fail == transport::tls_failure::none && c->url.tls
            && (status == 0 || status == 101))
          tls_fail = transport::classify_tls_error_text(why);
        if (tls_fail != transport::tls_failure::none) {
          reason_text = std::string("websocket TLS: ")
                        + transport::explain(tls_fail) + " ("
                        + (c->tls_detail.empty() ? why : c->tls_detail)
                        + ")";
          call_handler(c, [&](loop_handlers& h) {
            if (h.on_tls_failure)
              h.on_tls_failure(c->gen, tls_fail);
          });
        } else if (status != 0 && status != 101)
          reason_text = "websocket upgrade refused: HTTP "
                        + std::to_string(status) + " (" + why + ")";
        else
          reason_text = "websocket connect to " + c->host_hdr
                        + " failed: " + why;
        report_closed(c, reason_text);
        retire(c); // WSI_DESTROY normally follows and frees it
        return 0;
      }
      case LWS_CALLBACK_CLIENT_CLOSED:
        report_closed(c, closed_reason(c));
        return 0;
      case LWS_CALLBACK_WSI_DESTROY: {
        // the last callback of this wsi: the connection object goes too
        report_closed(c, c->established ? closed_reason(c)
                                        : "websocket connect to "
                                            + c->host_hdr + " failed");
        c->wsi = nullptr;
        if (!destroying)
          erase(c);
        return 0;
      }
      default:
        return 0;
    }
  }
};

/// SSL info callback: an alert from the gateway that refuses our client
/// certificate (or wanted one) classifies the failure of the connection.
void record_alert(const SSL* ssl, int where, int ret) {
  if (!(where & SSL_CB_READ_ALERT) || connection_ex_index() < 0)
    return;
  auto* c = static_cast<connection*>(
    SSL_get_ex_data(ssl, connection_ex_index()));
  if (!c || c->tls_fail != transport::tls_failure::none)
    return;
  int desc = ret & 0xff;
  switch (desc) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_CERTIFICATE_REQUIRED:
      c->tls_fail = desc == SSL_AD_HANDSHAKE_FAILURE
                      ? transport::tls_failure::handshake
                      : transport::tls_failure::client_certificate;
      c->tls_detail = std::string("the gateway sent the TLS alert \"")
                      + SSL_alert_desc_string_long(ret) + "\"";
      break;
    default:
      break;
  }
}

// -- registry: one service per TLS setting ------------------------------------

std::mutex& registry_mutex() {
  static auto* m = new std::mutex; // never destroyed: loops may outlive main
  return *m;
}

/// The running services (guarded by the registry mutex).
std::vector<service*>& registry() {
  static auto* v = new std::vector<service*>;
  return *v;
}

service* acquire_service(bool tls, const transport::tls_options& t) {
  transport::tls_options key = tls ? t : transport::tls_options{};
  if (tls) {
    auto problem = tls_settings_problem(key);
    if (!problem.empty())
      throw std::runtime_error(problem);
  }
  std::lock_guard<std::mutex> g{registry_mutex()};
  auto& all = registry();
  for (auto* s : all)
    if (s->tls == tls && s->tcfg == key) {
      ++s->refs;
      return s;
    }
  all.reserve(all.size() + 1);
  auto* s = new service(tls, key); // throws: nothing changed
  all.push_back(s);
  ++s->refs;
  return s;
}

/// The last loop of a service stops and joins its thread. Under the registry
/// mutex, so a loop created meanwhile starts a fresh service afterwards.
void release_service(service* s) {
  std::lock_guard<std::mutex> g{registry_mutex()};
  if (--s->refs > 0)
    return;
  auto& all = registry();
  all.erase(std::remove(all.begin(), all.end(), s), all.end());
  s->shutdown(); // frees s
}

} // namespace

struct ws_loop::impl {
  std::shared_ptr<loop_core> core;
  service* svc = nullptr;
  std::mutex stop_mtx;
  bool stopped = false; ///< guarded by stop_mtx

  void post(command&& cmd) {
    if (core->stopping.load())
      return;
    cmd.loop = core;
    svc->post(std::move(cmd));
  }
};

ws_loop::ws_loop(loop_options opts, loop_handlers handlers)
  : impl_(std::make_unique<impl>()) {
  init_lws_logging();
  impl_->core = std::make_shared<loop_core>(std::move(opts),
                                            std::move(handlers));
  impl_->svc = acquire_service(impl_->core->opts.tls,
                               impl_->core->opts.tls_config);
}

ws_loop::~ws_loop() {
  try {
    stop();
  } catch (...) {
    // never throw from a destructor
  }
  if (impl_ && impl_->svc) {
    release_service(impl_->svc);
    impl_->svc = nullptr;
  }
}

void ws_loop::open(uint64_t gen, ws_url url, std::string bearer_token) {
  command c;
  c.kind = cmd_kind::open;
  c.gen = gen;
  c.url = std::move(url);
  c.token = std::move(bearer_token);
  impl_->post(std::move(c));
}

void ws_loop::close() {
  command c;
  c.kind = cmd_kind::close;
  impl_->post(std::move(c));
}

void ws_loop::send(uint64_t gen, std::string text) {
  command c;
  c.kind = cmd_kind::send;
  c.gen = gen;
  c.text = std::move(text);
  impl_->post(std::move(c));
}

void ws_loop::stop() {
  if (!impl_ || !impl_->svc)
    return;
  std::lock_guard<std::mutex> sg{impl_->stop_mtx};
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  auto& core = impl_->core;
  core->stopping = true;
  {
    // Waits for a handler of this loop that is running right now; none
    // starts afterwards.
    std::lock_guard<std::recursive_mutex> g{core->gate};
    core->stopped = true;
  }
  // The service thread closes the connection and lets go of the loop when
  // it gets there; no need to wait for it (see the top of this file).
  command c;
  c.kind = cmd_kind::detach;
  c.loop = core;
  impl_->svc->post(std::move(c));
}

ws_loop::service_stats ws_loop::stats() {
  service_stats st;
  std::lock_guard<std::mutex> g{registry_mutex()};
  for (auto* s : registry()) {
    ++st.services;
    st.backend = s->backend();
    st.loops += s->refs;
    st.connections += s->live_conns.load();
  }
  return st;
}

} // namespace aico::ws_link
