// Raw baseline for the WebSocket transport: a libwebsockets client serviced
// on the calling thread (no extra thread, no queue), JSON request frames out,
// response frames in, matched by id (docs/protocol.md "WebSocket frames").
// Response frames are parsed with Boost.JSON, as any client must do to find
// the id and status.
//
// Exception to the project rule "each C library is included in one place
// only" (src/transport/lws/): the benchmark needs the raw library next to the
// engine to have a baseline measured in the same run. Nothing outside
// bench/ uses this file.
#include <libwebsockets.h>

#include <boost/json.hpp>

#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <string>
#include <vector>

#include "src/transport/lws/ws_codec.hpp"
#include "bench_common.hpp"

namespace aico::bench {

namespace {

namespace json = boost::json;
using steady = std::chrono::steady_clock;

constexpr lws_usec_t tick_us = 50 * LWS_US_PER_MS;

struct client {
  // -- configuration
  call_spec call;
  std::string host;
  int port = 0;
  std::string path;
  std::string host_hdr;

  // -- lws objects (this thread only)
  lws_protocols protocols[2];
  lws_context* ctx = nullptr;
  lws* wsi = nullptr;
  lws_sorted_usec_list_t sul; ///< periodic wake-up to check deadlines

  // -- connection state
  bool established = false;
  bool closed = false;
  bool authed = false;
  std::string error;
  std::deque<std::string> outq;
  std::string rx;
  std::vector<unsigned char> wbuf;

  // -- request accounting
  uint64_t next_id = 1;
  std::string expect_id; ///< sequential mode: the id awaited ("" = any)
  int64_t responses = 0;  ///< response frames received
  int pipe_left = 0;      ///< pipelined mode: requests still to send

  client() {
    std::memset(protocols, 0, sizeof(protocols));
    protocols[0].name = "aico-bench-raw";
    protocols[0].callback = &client::callback;
    std::memset(&sul, 0, sizeof(sul));
  }

  ~client() {
    if (ctx)
      lws_context_destroy(ctx);
  }

  std::string request_frame() {
    json::object o{{"type", "request"},
                   {"id", "raw-" + std::to_string(next_id++)},
                   {"method", call.method},
                   {"path", call.path}};
    return json::serialize(o);
  }

  /// Queues a text frame (written from the WRITEABLE callback, one per
  /// callback, as libwebsockets requires).
  void queue(std::string frame) {
    outq.push_back(std::move(frame));
    if (wsi && established)
      lws_callback_on_writable(wsi);
  }

  void send_request() {
    queue(request_frame());
  }

  static void on_tick(lws_sorted_usec_list_t* s) {
    auto* c = lws_container_of(s, client, sul);
    lws_sul_schedule(c->ctx, 0, &c->sul, &client::on_tick, tick_us);
  }

  bool start(std::string& err) {
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = this;
    info.count_threads = 1;
    info.fd_limit_per_thread = 64;
    ctx = lws_create_context(&info);
    if (!ctx) {
      err = "raw lws: cannot create a context";
      return false;
    }
    lws_sul_schedule(ctx, 0, &sul, &client::on_tick, tick_us);
    lws_client_connect_info ci;
    std::memset(&ci, 0, sizeof(ci));
    ci.context = ctx;
    ci.address = host.c_str();
    ci.port = port;
    ci.path = path.c_str();
    ci.host = host_hdr.c_str();
    ci.ietf_version_or_minus_one = -1;
    ci.local_protocol_name = protocols[0].name;
    ci.userdata = this;
    ci.pwsi = &wsi;
    if (!lws_client_connect_via_info(&ci)) {
      err = "raw lws: connect failed";
      return false;
    }
    return true;
  }

  /// Services the context until `done()` or the deadline or a failure.
  template <class Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout,
                 std::string& err, const char* what) {
    auto deadline = steady::now() + timeout;
    while (!done()) {
      if (!error.empty()) {
        err = error;
        return false;
      }
      if (closed) {
        err = "raw lws: connection closed";
        return false;
      }
      if (steady::now() > deadline) {
        err = std::string{"raw lws: timeout waiting for "} + what;
        return false;
      }
      lws_service(ctx, 0);
    }
    return true;
  }

  void on_message(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      error = "raw lws: a frame that is not a JSON object";
      return;
    }
    auto& o = v.get_object();
    auto type = o.if_contains("type");
    if (!type || !type->is_string())
      return;
    if (type->get_string() == "auth_ok") {
      authed = true;
      return;
    }
    if (type->get_string() == "error") {
      error = "raw lws: error frame " + json::serialize(v);
      return;
    }
    if (type->get_string() != "response")
      return;
    auto st = o.if_contains("status");
    auto status = st && st->is_int64() ? st->get_int64() : 0;
    if (status < 200 || status >= 300) {
      error = "raw lws: status " + std::to_string(status);
      return;
    }
    if (!expect_id.empty()) {
      auto id = o.if_contains("id");
      if (!id || !id->is_string() || id->get_string() != expect_id)
        return; // not the one awaited
    }
    ++responses;
    if (pipe_left > 0) {
      --pipe_left;
      send_request();
    }
  }

  int on_writeable(lws* w) {
    if (outq.empty())
      return 0;
    auto& msg = outq.front();
    wbuf.resize(LWS_PRE + msg.size());
    std::memcpy(wbuf.data() + LWS_PRE, msg.data(), msg.size());
    if (lws_write(w, wbuf.data() + LWS_PRE, msg.size(), LWS_WRITE_TEXT)
        < static_cast<int>(msg.size())) {
      error = "raw lws: write failed";
      return -1;
    }
    outq.pop_front();
    if (!outq.empty())
      lws_callback_on_writable(w);
    return 0;
  }

  static int callback(lws* w, lws_callback_reasons reason, void*, void* in,
                      size_t len) {
    auto* cx = lws_get_context(w);
    auto* c = cx ? static_cast<client*>(lws_context_user(cx)) : nullptr;
    if (!c)
      return 0;
    try {
      switch (reason) {
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
          c->established = true;
          if (!c->outq.empty())
            lws_callback_on_writable(w);
          return 0;
        case LWS_CALLBACK_CLIENT_RECEIVE:
          c->rx.append(static_cast<const char*>(in), len);
          if (lws_is_final_fragment(w)
              && lws_remaining_packet_payload(w) == 0) {
            std::string msg;
            msg.swap(c->rx);
            c->on_message(msg);
          }
          return 0;
        case LWS_CALLBACK_CLIENT_WRITEABLE:
          return c->on_writeable(w);
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
          c->error = std::string{"raw lws: connection error: "}
                     + (in ? std::string(static_cast<const char*>(in), len)
                           : std::string{"?"});
          c->wsi = nullptr;
          c->closed = true;
          return 0;
        case LWS_CALLBACK_CLIENT_CLOSED:
        case LWS_CALLBACK_WSI_DESTROY:
          c->closed = true;
          c->wsi = nullptr;
          return 0;
        default:
          return 0;
      }
    } catch (const std::exception& e) {
      c->error = std::string{"raw lws: "} + e.what();
      return -1;
    }
  }
};

/// ws://host:port/path -> parts (the engine's own URL parser, which names
/// no libwebsockets type); false if it is not that shape.
bool split_url(const std::string& url, client& c) {
  ws_link::ws_url u;
  std::string why;
  if (!ws_link::parse_url(url, u, why) || u.tls)
    return false;
  c.host = u.host;
  c.port = u.port;
  c.path = u.path;
  c.host_hdr = ws_link::host_header(u);
  return true;
}

} // namespace

run_result raw_lws_run(const std::string& ws_url, const call_spec& call,
                       const run_params& p) {
  run_result res;
  try {
    lws_set_log_level(LLL_ERR, nullptr);
    client c;
    c.call = call;
    if (!split_url(ws_url, c)) {
      res.error = "raw lws: cannot parse " + ws_url;
      return res;
    }
    std::string err;
    if (!c.start(err)
        || !c.run_until([&] { return c.established; }, p.timeout, err,
                        "the handshake")) {
      res.error = err;
      return res;
    }
    if (!call.token.empty()) {
      json::object o{{"type", "auth"}, {"id", "raw-auth"},
                     {"token", call.token}};
      c.queue(json::serialize(o));
      if (!c.run_until([&] { return c.authed; }, p.timeout, err, "auth_ok")) {
        res.error = err;
        return res;
      }
    }
    // round trip
    proc_usage usage0;
    for (int i = 0; i < p.warmup + p.requests; ++i) {
      if (i == p.warmup)
        usage0 = proc_usage_now();
      auto t0 = steady::now();
      c.expect_id = "raw-" + std::to_string(c.next_id);
      auto before = c.responses;
      c.send_request();
      if (!c.run_until([&] { return c.responses > before; }, p.timeout, err,
                       "a response")) {
        res.error = err;
        return res;
      }
      if (i >= p.warmup)
        res.rtt_us.push_back(micros(steady::now() - t0));
    }
    res.usage_since(usage0, p.requests);
    // pipelined: the receive callback sends the next request
    c.expect_id.clear();
    auto pipelined = [&](int total) {
      auto target = c.responses + total;
      int first = std::min(total, p.window);
      c.pipe_left = total - first;
      for (int i = 0; i < first; ++i)
        c.send_request();
      auto limit = p.timeout * (1 + total / std::max(1, p.window));
      return c.run_until([&] { return c.responses >= target; }, limit, err,
                         "pipelined responses");
    };
    if (p.pipe_warmup > 0 && !pipelined(p.pipe_warmup)) {
      res.error = err;
      return res;
    }
    auto t0 = steady::now();
    if (!pipelined(p.total)) {
      res.error = err;
      return res;
    }
    res.pipe_seconds = std::chrono::duration<double>(steady::now() - t0)
                         .count();
    res.rps = p.total / res.pipe_seconds;
  } catch (const std::exception& e) {
    res.error = std::string{"raw lws: "} + e.what();
  }
  return res;
}

} // namespace aico::bench
