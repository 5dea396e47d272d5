// aico engine: the transport registry (see transport_registry.hpp) and the
// spawn functions of the built-in transports (messages/transport.hpp).
#include "actors/transport_registry.hpp"

#include <utility>

#include "actors/transport_actor.hpp"
#include "src/core/url_host.hpp"
#include "src/profile/aico/http_driver.hpp"
#include "src/transport/curl/http_driver.hpp"
#include "src/transport/grpc/grpc_driver.hpp"
#include "src/transport/lws/aico_ws_driver.hpp"
#include "src/transport/lws/ws_driver.hpp"
#include "src/transport/zmq/ipc_driver.hpp"

namespace aico {

namespace {

transport_host_config host_config(transport_mode m, const transport_config& c,
                                  transport_duration reconnect_grace = {}) {
  transport_host_config h;
  h.mode = m;
  h.timing = c;
  h.reconnect_grace = reconnect_grace;
  return h;
}

transport_caps caps(bool pushes_events, bool degraded) {
  transport_caps c;
  c.pushes_events = pushes_events;
  c.degraded = degraded;
  return c;
}

// -- endpoints (transport_endpoint) -------------------------------------------

const transport_endpoint ipc_endpoint{
  [](supervisor_config& c) -> std::string& { return c.ipc.endpoint; },
  "Gateway IPC endpoint (ipc://PATH, or tcp://HOST:PORT with "
  "--ipc-server-key); IPC is skipped without it",
  [](const supervisor_config& c) -> std::string {
    auto& ep = c.ipc.endpoint;
    bool tcp = ep.rfind("tcp://", 0) == 0;
    if (tcp && c.ipc.curve_server_key.empty())
      return "the IPC endpoint " + ep
             + " is reached over TCP, which needs CurveZMQ: give the "
               "gateway's public key (--ipc-server-key KEY, "
               "--ipc-server-key-file FILE, AICO_IPC_SERVER_KEY or "
               "curve.server_key; the gateway prints it at start and keeps "
               "it in DATA_DIR/ipc-curve.pub)";
    if (!tcp && ep.rfind("ipc://", 0) != 0)
      return "expected an ipc:// or tcp:// endpoint, got '" + ep + "'";
    return {};
  },
  nullptr,
};

/// grpcs:// (the driver's parser decides; a bad endpoint is refused by the
/// check).
bool grpc_tls(const supervisor_config& c) {
  std::string target;
  std::string why;
  bool tls = false;
  return grpc_link::parse_grpc_endpoint(c.grpc.endpoint, target, tls, why)
         && tls;
}

const transport_endpoint grpc_endpoint{
  [](supervisor_config& c) -> std::string& { return c.grpc.endpoint; },
  "Gateway gRPC door, HOST:PORT (or grpcs://HOST:PORT for TLS); used where "
  "--transports names grpc",
  [](const supervisor_config& c) -> std::string {
    auto& ep = c.grpc.endpoint;
    std::string target;
    std::string why;
    bool tls = false;
    if (!grpc_link::parse_grpc_endpoint(ep, target, tls, why))
      return why;
    if (!tls && !is_loopback_url("grpc://" + target))
      return "the gRPC endpoint " + ep
             + " is not on this machine and not encrypted: passwords, "
               "tokens and messages would cross the network in clear "
               "text; use grpcs://HOST:PORT (TLS, the gateway's "
               "--tls-cert)";
    return {};
  },
  grpc_tls,
};

/// gRPC is spawned only from its entry (no spawn_grpc_transport in
/// messages/transport.hpp: tests spawn it through find_transport("grpc")).
transport_actor spawn_grpc_transport(caf::actor_system& sys,
                                     grpc_transport_config cfg,
                                     transport_listener_actor listener) {
  auto h = host_config(transport_mode::grpc, cfg);
  return spawn_transport_actor(
    sys, std::move(h),
    [cfg](transport::driver_events ev) {
      return grpc_link::make_grpc_driver(cfg, std::move(ev));
    },
    std::move(listener));
}

} // namespace

transport_actor spawn_ipc_transport(caf::actor_system& sys,
                                    ipc_transport_config cfg,
                                    transport_listener_actor listener) {
  auto h = host_config(transport_mode::ipc, cfg, cfg.reconnect_grace);
  return spawn_transport_actor(
    sys, std::move(h),
    [cfg](transport::driver_events ev) {
      return ipc_link::make_ipc_driver(cfg, std::move(ev));
    },
    std::move(listener));
}

transport_actor spawn_ws_transport(caf::actor_system& sys,
                                   ws_transport_config cfg,
                                   transport_listener_actor listener) {
  auto h = host_config(transport_mode::ws, cfg);
  return spawn_transport_actor(
    sys, std::move(h),
    [cfg](transport::driver_events ev) {
      return ws_link::make_ws_driver(cfg, std::move(ev));
    },
    std::move(listener));
}

/// The aico profile's `ws`: the backend's WebSocket for liveness, the
/// profile's HTTP driver (with the http section's base URL and TLS) for the
/// calls (src/transport/lws/aico_ws_driver.hpp).
transport_actor spawn_aico_ws_transport(caf::actor_system& sys,
                                        ws_transport_config cfg,
                                        http_transport_config calls,
                                        transport_listener_actor listener) {
  auto h = host_config(transport_mode::ws, cfg);
  return spawn_transport_actor(
    sys, std::move(h),
    [cfg, calls](transport::driver_events ev) {
      return ws_link::make_aico_ws_driver(
        cfg, std::move(ev), [calls](transport::driver_events cev) {
          return aico_profile::make_aico_http_driver(calls, std::move(cev));
        });
    },
    std::move(listener));
}

transport_actor spawn_http_transport(caf::actor_system& sys,
                                     http_transport_config cfg,
                                     transport_listener_actor listener) {
  auto h = host_config(transport_mode::http, cfg);
  return spawn_transport_actor(
    sys, std::move(h),
    [cfg](transport::driver_events ev) {
      // the wire profile picks the driver (docs/profiles.md)
      if (cfg.profile == "aico")
        return aico_profile::make_aico_http_driver(cfg, std::move(ev));
      return http::make_http_driver(cfg, std::move(ev));
    },
    std::move(listener));
}

const std::vector<transport_entry>& transport_registry() {
  static const std::vector<transport_entry> entries{
    {"ipc", transport_mode::ipc, caps(true, false), true,
     [](caf::actor_system& sys, const supervisor_config& cfg,
        transport_listener_actor l) {
       return spawn_ipc_transport(sys, cfg.ipc, std::move(l));
     },
     "IPC", "client-facing ZeroMQ", &ipc_endpoint,
     [](supervisor_config& c) -> transport_config& { return c.ipc; },
     nullptr},
    {"ws", transport_mode::ws, caps(true, false), true,
     [](caf::actor_system& sys, const supervisor_config& cfg,
        transport_listener_actor l) {
       // the wire profile picks the driver (docs/profiles.md)
       if (cfg.ws.profile == "aico")
         return spawn_aico_ws_transport(sys, cfg.ws, cfg.http, std::move(l));
       return spawn_ws_transport(sys, cfg.ws, std::move(l));
     },
     "WebSocket", "WebSocket server", nullptr,
     [](supervisor_config& c) -> transport_config& { return c.ws; },
     [](supervisor_config& c) { return &c.ws.tls; }},
    // requests on pooled connections, events on a separate SSE stream
    {"http", transport_mode::http, caps(false, true), false,
     [](caf::actor_system& sys, const supervisor_config& cfg,
        transport_listener_actor l) {
       return spawn_http_transport(sys, cfg.http, std::move(l));
     },
     "HTTP", "HTTP server", nullptr,
     [](supervisor_config& c) -> transport_config& { return c.http; },
     [](supervisor_config& c) { return &c.http.tls; }},
    // not in the default order; calls and an Events stream on one HTTP/2
    // connection, HTTP/2 keepalive pings instead of the owner's heartbeat
    {"grpc", transport_mode::grpc, caps(true, false), false,
     [](caf::actor_system& sys, const supervisor_config& cfg,
        transport_listener_actor l) {
       return spawn_grpc_transport(sys, cfg.grpc, std::move(l));
     },
     "gRPC", "gRPC door", &grpc_endpoint,
     [](supervisor_config& c) -> transport_config& { return c.grpc; },
     [](supervisor_config& c) { return &c.grpc.tls; }},
  };
  return entries;
}

const transport_entry* find_transport(const std::string& name) {
  for (auto& e : transport_registry())
    if (name == e.name)
      return &e;
  return nullptr;
}

const transport_entry* find_transport(transport_mode mode) {
  for (auto& e : transport_registry())
    if (e.mode == mode)
      return &e;
  return nullptr;
}

std::string endpoint_variable(const transport_entry& e) {
  std::string res = "AICO_";
  for (const char* p = e.name; *p != 0; ++p)
    res += (*p >= 'a' && *p <= 'z') ? static_cast<char>(*p - 'a' + 'A') : *p;
  return res;
}

std::string known_transport_names() {
  std::string res;
  for (auto& e : transport_registry()) {
    if (!res.empty())
      res += ", ";
    res += e.name;
  }
  return res;
}

} // namespace aico
