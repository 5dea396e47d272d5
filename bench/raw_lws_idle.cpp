// Raw baseline for aico-bench-sessions: N idle WebSocket connections held
// by libwebsockets alone, in ONE context serviced on the calling thread (the
// cheapest way the library can hold them). Each connection upgrades with
// `Authorization: Bearer`, like the engine's, and sends an application ping
// frame every `ping_interval` so the gateway's idle timeout never closes it.
//
// Exception to the project rule "each C library is included in one place
// only" (src/transport/lws/): the baseline must be the raw library measured
// in the same run. Nothing outside bench/ uses this file.
#include <libwebsockets.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "src/transport/lws/ws_codec.hpp"
#include "bench_sessions.hpp"

namespace aico::bench {

namespace {

using steady = std::chrono::steady_clock;

struct idle_conn;

struct idle_pool {
  std::string host, path, host_hdr, auth_hdr;
  int port = 0;
  lws_protocols protocols[2];
  lws_context* ctx = nullptr;
  /// lws_service waits for I/O or the next timer: a periodic one makes it
  /// return so the loop can start connections and pings on time.
  lws_sorted_usec_list_t sul;
  lws_usec_t tick_us = 20 * LWS_US_PER_MS; ///< 1 s once idle
  std::vector<std::unique_ptr<idle_conn>> conns;
  int64_t established = 0;
  int64_t open = 0;
  int64_t failed = 0;
  int64_t closed = 0;
  std::string last_error;

  idle_pool() {
    std::memset(protocols, 0, sizeof(protocols));
    protocols[0].name = "aico-bench-idle";
    protocols[0].callback = &idle_pool::callback;
    std::memset(&sul, 0, sizeof(sul));
  }

  static void on_tick(lws_sorted_usec_list_t* s) {
    auto* p = lws_container_of(s, idle_pool, sul);
    lws_sul_schedule(p->ctx, 0, &p->sul, &idle_pool::on_tick, p->tick_us);
  }

  ~idle_pool() {
    if (ctx)
      lws_context_destroy(ctx);
  }

  static int callback(lws* w, lws_callback_reasons reason, void* user,
                      void* in, size_t len);
};

struct idle_conn {
  idle_pool* pool = nullptr;
  lws* wsi = nullptr;
  bool up = false;
  bool ping_due = false;
  uint64_t pings = 0;
  std::vector<unsigned char> buf;
};

int idle_pool::callback(lws* w, lws_callback_reasons reason, void* user,
                        void* in, size_t len) {
  auto* c = static_cast<idle_conn*>(user);
  try {
    switch (reason) {
      case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (!c || c->pool->auth_hdr.empty())
          return 0;
        auto** p = static_cast<unsigned char**>(in);
        auto* end = *p + len;
        auto& h = c->pool->auth_hdr;
        if (lws_add_http_header_by_name(
              w, reinterpret_cast<const unsigned char*>("authorization:"),
              reinterpret_cast<const unsigned char*>(h.data()),
              static_cast<int>(h.size()), p, end))
          return -1;
        return 0;
      }
      case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c) {
          c->up = true;
          ++c->pool->established;
          ++c->pool->open;
        }
        return 0;
      case LWS_CALLBACK_CLIENT_RECEIVE:
        return 0; // pongs and the like: nothing to do
      case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!c || !c->ping_due)
          return 0;
        c->ping_due = false;
        auto frame = std::string{R"({"type":"ping","id":"raw-hb-)"}
                     + std::to_string(++c->pings) + "\"}";
        c->buf.resize(LWS_PRE + frame.size());
        std::memcpy(c->buf.data() + LWS_PRE, frame.data(), frame.size());
        if (lws_write(w, c->buf.data() + LWS_PRE, frame.size(),
                      LWS_WRITE_TEXT)
            < static_cast<int>(frame.size()))
          return -1;
        return 0;
      }
      case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
          ++c->pool->failed;
          c->pool->last_error = in ? std::string(static_cast<const char*>(in),
                                                 len)
                                   : std::string{"connection error"};
          c->wsi = nullptr;
        }
        return 0;
      case LWS_CALLBACK_CLIENT_CLOSED:
        if (c && c->up) {
          c->up = false;
          --c->pool->open;
          ++c->pool->closed;
        }
        if (c)
          c->wsi = nullptr;
        return 0;
      default:
        return 0;
    }
  } catch (const std::exception&) {
    return -1;
  }
}

/// ws://host:port/path -> parts (the engine's own URL parser, which names
/// no libwebsockets type); false if it is not that shape.
bool split(const std::string& url, idle_pool& p) {
  ws_link::ws_url u;
  std::string why;
  if (!ws_link::parse_url(url, u, why) || u.tls)
    return false;
  p.host = u.host;
  p.port = u.port;
  p.path = u.path;
  p.host_hdr = ws_link::host_header(u);
  return true;
}

} // namespace

idle_figures raw_lws_idle(const std::string& ws_url, const std::string& token,
                          const idle_params& prm) {
  idle_figures res;
  try {
    lws_set_log_level(LLL_ERR, nullptr);
    idle_pool pool;
    if (!split(ws_url, pool)) {
      res.error = "raw lws: cannot parse " + ws_url;
      return res;
    }
    if (!token.empty())
      pool.auth_hdr = "Bearer " + token;
    res.before = sample_process();
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = pool.protocols;
    info.gid = -1;
    info.uid = -1;
    info.count_threads = 1;
    info.fd_limit_per_thread = static_cast<unsigned>(prm.sessions + 64);
    pool.ctx = lws_create_context(&info);
    if (!pool.ctx) {
      res.error = "raw lws: cannot create a context";
      return res;
    }
    lws_sul_schedule(pool.ctx, 0, &pool.sul, &idle_pool::on_tick,
                     20 * LWS_US_PER_MS);
    auto t0 = steady::now();
    auto deadline = t0 + prm.connect_timeout;
    int started = 0;
    auto interval = std::chrono::duration<double>(1.0 / prm.rate);
    while (pool.established + pool.failed < prm.sessions) {
      auto now = steady::now();
      if (now > deadline) {
        res.error = "raw lws: " + std::to_string(pool.established) + " of "
                    + std::to_string(prm.sessions)
                    + " connections established in time";
        return res;
      }
      // start the connections that are due (same ramp as the engine)
      auto due = std::min<int>(
        prm.sessions,
        static_cast<int>(std::chrono::duration<double>(now - t0) / interval)
          + 1);
      for (; started < due; ++started) {
        auto c = std::make_unique<idle_conn>();
        c->pool = &pool;
        lws_client_connect_info ci;
        std::memset(&ci, 0, sizeof(ci));
        ci.context = pool.ctx;
        ci.address = pool.host.c_str();
        ci.port = pool.port;
        ci.path = pool.path.c_str();
        ci.host = pool.host_hdr.c_str();
        ci.origin = pool.host_hdr.c_str();
        ci.ietf_version_or_minus_one = -1;
        ci.local_protocol_name = pool.protocols[0].name;
        ci.userdata = c.get();
        ci.pwsi = &c->wsi;
        if (!lws_client_connect_via_info(&ci))
          ++pool.failed;
        pool.conns.push_back(std::move(c));
      }
      lws_service(pool.ctx, 0);
    }
    if (pool.failed > 0) {
      res.error = "raw lws: " + std::to_string(pool.failed)
                  + " connections failed: " + pool.last_error;
      return res;
    }
    res.connect_s = std::chrono::duration<double>(steady::now() - t0).count();
    res.connected = pool.open;
    res.after = sample_process();
    // hold: idle, one ping frame per connection per ping interval; the
    // loop only needs to look at the clock once a second now
    pool.tick_us = LWS_US_PER_SEC;
    auto hold_end = steady::now() + prm.hold;
    auto next_ping = steady::now() + prm.ping_interval;
    while (steady::now() < hold_end) {
      if (steady::now() >= next_ping) {
        for (auto& c : pool.conns)
          if (c->up && c->wsi) {
            c->ping_due = true;
            lws_callback_on_writable(c->wsi);
          }
        next_ping += prm.ping_interval;
      }
      lws_service(pool.ctx, 0);
    }
    res.held = sample_process();
    res.still_connected = pool.open;
    res.drops = pool.closed;
  } catch (const std::exception& e) {
    res.error = std::string{"raw lws: "} + e.what();
  }
  return res;
}

} // namespace aico::bench
