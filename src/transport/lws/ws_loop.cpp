// aico engine: the libwebsockets client service thread (see ws_loop.hpp).
// The only translation unit of the engine that includes <libwebsockets.h>.
#include "src/transport/lws/ws_loop.hpp"

#include <libwebsockets.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace aico::ws_link {

namespace {

constexpr const char* protocol_name = "aico-ws-client";

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

enum class cmd_kind { open, close, send };

struct command {
  cmd_kind kind;
  uint64_t gen = 0;
  ws_url url;
  std::string token; ///< open
  std::string text;  ///< send
};

} // namespace

/// One client connection; its address is the wsi's `user` pointer. Owned by
/// the loop until lws destroys the wsi (or the context goes away).
struct connection {
  uint64_t gen = 0;
  ws_url url;
  std::string host_hdr;
  std::string token;
  lws* wsi = nullptr;
  bool established = false;
  bool closing = false;  ///< the owner closed it (or it failed): no more I/O
  bool reported = false; ///< on_closed delivered (or suppressed)
  unsigned http_status = 0;
  int close_code = 0;
  std::string close_text;
  std::deque<std::string> outq;
  std::size_t out_off = 0; ///< bytes of outq.front() already written
  std::string rx;          ///< fragments of the message being received
};

struct ws_loop::impl {
  loop_options opts;
  loop_handlers handlers;
  lws_protocols protocols[2];
  lws_context* ctx = nullptr;

  std::mutex mtx;          ///< guards cmds and ctx_live
  std::deque<command> cmds;
  bool ctx_live = false;   ///< ctx may be woken (false once it is destroyed)
  std::atomic<bool> stopping{false};
  bool destroying = false; ///< service thread: no handlers from now on

  // -- service thread only --------------------------------------------------
  std::map<connection*, std::unique_ptr<connection>> conns;
  connection* current = nullptr;
  std::vector<unsigned char> wbuf;

  std::thread thread; ///< last member: started after everything else exists

  impl(loop_options o, loop_handlers h)
    : opts(std::move(o)), handlers(std::move(h)) {
    if (opts.write_chunk == 0)
      opts.write_chunk = 64u * 1024u;
    std::memset(protocols, 0, sizeof(protocols));
    protocols[0].name = protocol_name;
    protocols[0].callback = &impl::callback;
    protocols[0].per_session_data_size = 0; // user = our connection object
    protocols[0].rx_buffer_size = 0;        // lws default
  }

  // -- thread ---------------------------------------------------------------

  void run() {
    while (!stopping.load()) {
      int n = lws_service(ctx, 0);
      if (n < 0 && !stopping.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    lws_context* c;
    {
      std::lock_guard<std::mutex> g{mtx};
      ctx_live = false;
      c = ctx;
      ctx = nullptr;
      cmds.clear();
    }
    destroying = true;
    current = nullptr;
    lws_context_destroy(c); // closes every connection, on this thread
    conns.clear();
  }

  void post(command cmd) {
    std::lock_guard<std::mutex> g{mtx};
    if (!ctx_live)
      return;
    cmds.push_back(std::move(cmd));
    lws_cancel_service(ctx); // -> LWS_CALLBACK_EVENT_WAIT_CANCELLED
  }

  // -- service thread helpers -----------------------------------------------

  void report_closed(connection* c, const std::string& reason) {
    if (c->reported)
      return;
    c->reported = true;
    c->closing = true;
    if (current == c)
      current = nullptr;
    if (destroying || !handlers.on_closed)
      return;
    try {
      handlers.on_closed(c->gen, reason);
    } catch (...) {
      // a handler must not take the service thread down
    }
  }

  /// Our connection for a callback: `user` if it is one of ours, else the
  /// one whose wsi this is (nullptr for lws' own wsis, e.g. the wake pipe).
  connection* lookup(void* user, lws* wsi) {
    if (user) {
      auto i = conns.find(static_cast<connection*>(user));
      if (i != conns.end())
        return i->first;
    }
    for (auto& kv : conns)
      if (kv.first->wsi == wsi)
        return kv.first;
    return nullptr;
  }

  /// Closes `c` at the owner's request (nothing is reported for it).
  void close_conn(connection* c) {
    c->reported = true;
    c->closing = true;
    c->outq.clear();
    if (current == c)
      current = nullptr;
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

  void do_open(command& cmd) {
    if (current)
      close_conn(current);
    auto owned = std::make_unique<connection>();
    connection* c = owned.get();
    c->gen = cmd.gen;
    c->url = std::move(cmd.url);
    c->token = std::move(cmd.token);
    c->host_hdr = host_header(c->url);
    conns.emplace(c, std::move(owned));
    current = c;
    lws_client_connect_info ci;
    std::memset(&ci, 0, sizeof(ci));
    ci.context = ctx;
    ci.address = c->url.host.c_str();
    ci.port = c->url.port;
    ci.ssl_connection = c->url.tls ? LCCSCF_USE_SSL : 0;
    ci.path = c->url.path.c_str();
    ci.host = c->host_hdr.c_str();
    ci.origin = nullptr;
    ci.protocol = nullptr; // no Sec-WebSocket-Protocol header
    ci.local_protocol_name = protocol_name;
    ci.ietf_version_or_minus_one = -1;
    ci.userdata = c;
    ci.pwsi = &c->wsi;
    lws* w = lws_client_connect_via_info(&ci);
    if (!w && conns.count(c) > 0) {
      // Failed synchronously; the wsi is gone (the object stays until the
      // context goes away in case lws still names it).
      c->wsi = nullptr;
      report_closed(c, "websocket connect to " + c->host_hdr + " failed");
    }
  }

  void do_send(command& cmd) {
    connection* c = current;
    if (!c || c->gen != cmd.gen || c->closing)
      return;
    c->outq.push_back(std::move(cmd.text));
    if (c->established && c->wsi)
      lws_callback_on_writable(c->wsi);
  }

  void drain_commands() {
    std::deque<command> batch;
    {
      std::lock_guard<std::mutex> g{mtx};
      batch.swap(cmds);
    }
    for (auto& cmd : batch) {
      if (stopping.load())
        return;
      try {
        switch (cmd.kind) {
          case cmd_kind::open:
            do_open(cmd);
            break;
          case cmd_kind::close:
            if (current)
              close_conn(current);
            break;
          case cmd_kind::send:
            do_send(cmd);
            break;
        }
      } catch (const std::exception& e) {
        if (current)
          report_closed(current, std::string{"websocket loop: "} + e.what());
      } catch (...) {
        if (current)
          report_closed(current, "websocket loop: internal error");
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
    std::size_t n = std::min(opts.write_chunk, msg.size() - off);
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
    if (c->rx.size() + len > opts.max_message) {
      report_closed(c, "websocket message from peer exceeds "
                         + std::to_string(opts.max_message) + " bytes");
      lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, nullptr, 0);
      return -1;
    }
    if (len > 0)
      c->rx.append(static_cast<const char*>(in), len);
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
      std::string msg;
      msg.swap(c->rx);
      if (!destroying && handlers.on_message) {
        try {
          handlers.on_message(c->gen, std::move(msg));
        } catch (...) {
        }
      }
    }
    return 0;
  }

  std::string closed_reason(const connection* c) const {
    if (c->close_code == 0)
      return "websocket closed by peer";
    std::string r = "websocket closed by peer ("
                    + std::to_string(c->close_code);
    if (!c->close_text.empty())
      r += " " + c->close_text;
    return r + ")";
  }

  static int callback(lws* wsi, lws_callback_reasons reason, void* user,
                      void* in, size_t len) {
    lws_context* cx = lws_get_context(wsi);
    auto self = cx ? static_cast<impl*>(lws_context_user(cx)) : nullptr;
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
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
      if (!destroying)
        drain_commands();
      return 0;
    }
    connection* c = lookup(user, wsi);
    if (!c)
      return 0;
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
        if (!destroying && handlers.on_open) {
          try {
            handlers.on_open(c->gen);
          } catch (...) {
          }
        }
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
        unsigned status = c->http_status;
        if (status == 0)
          status = lws_http_client_http_response(wsi);
        std::string reason_text;
        if (status != 0 && status != 101)
          reason_text = "websocket upgrade refused: HTTP "
                        + std::to_string(status) + " (" + why + ")";
        else
          reason_text = "websocket connect to " + c->host_hdr
                        + " failed: " + why;
        report_closed(c, reason_text);
        c->wsi = nullptr;
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
        if (current == c)
          current = nullptr;
        c->wsi = nullptr;
        if (!destroying)
          conns.erase(c);
        return 0;
      }
      default:
        return 0;
    }
  }
};

ws_loop::ws_loop(loop_options opts, loop_handlers handlers)
  : impl_(std::make_unique<impl>(std::move(opts), std::move(handlers))) {
  init_lws_logging();
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof(info));
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = impl_->protocols;
  info.gid = -1;
  info.uid = -1;
  info.user = impl_.get(); // lws_context_user() in the callback
  info.count_threads = 1;
  // pollfd tables are sized by this (not by RLIMIT_NOFILE)
  info.fd_limit_per_thread = 256;
  info.options = impl_->opts.tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
  impl_->ctx = lws_create_context(&info);
  if (!impl_->ctx)
    throw std::runtime_error("cannot create the libwebsockets context");
  impl_->ctx_live = true;
  try {
    impl_->thread = std::thread([p = impl_.get()] { p->run(); });
  } catch (...) {
    lws_context_destroy(impl_->ctx);
    impl_->ctx = nullptr;
    impl_->ctx_live = false;
    throw std::runtime_error("cannot start the websocket service thread");
  }
}

ws_loop::~ws_loop() {
  stop();
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
  if (!impl_)
    return;
  {
    std::lock_guard<std::mutex> g{impl_->mtx};
    impl_->stopping = true;
    if (impl_->ctx_live)
      lws_cancel_service(impl_->ctx);
  }
  if (impl_->thread.joinable())
    impl_->thread.join();
}

} // namespace aico::ws_link
