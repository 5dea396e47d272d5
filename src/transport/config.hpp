// aico engine: the settings of the built-in transports (CAF-free: the
// drivers in src/transport/<lib>/ take them, the registry in
// actors/transport_registry.cpp hands them over; messages/transport.hpp
// re-exports them for the supervisor's config).
#pragma once

#include <chrono>
#include <string>

#include "src/transport/tls_options.hpp"

namespace aico {

/// Durations of the transport settings (the same type as caf::timespan:
/// std::chrono::duration<int64_t, std::nano>).
using transport_duration = std::chrono::nanoseconds;

/// Settings shared by all transports.
struct transport_config {
  /// Time allowed for establishing the link.
  transport_duration connect_timeout = std::chrono::seconds(5);
  /// Interval of liveness pings (WS, IPC).
  transport_duration ping_interval = std::chrono::seconds(30);
  /// No traffic (pong or anything else) for this long = dead peer -> down.
  /// Pings go at most every half of it, so the default (twice the ping
  /// interval, as SignalR's server timeout) keeps the 30 s ping and lets one
  /// ping go unanswered; a closed connection is noticed at once anyway.
  transport_duration dead_peer_timeout = std::chrono::seconds(60);
  /// The wire profile (docs/profiles.md): "" or "gateway" = the reference
  /// gateway's wire, "aico" = the real AICO backend's (the registry spawns
  /// the profile's driver). Filled in by the engine from
  /// engine_config::profile.
  std::string profile;
  /// Where the profile keeps its own state (aico: identity.key and
  /// known_servers); the engine gives STATE_DIR/aico.
  std::string profile_state_dir;
};

/// HTTP: libcurl multi, keep-alive reuse; events via SSE (/api/v1/events).
struct http_transport_config : transport_config {
  std::string base_url = "http://127.0.0.1:8771"; ///< without /api/v1
  int max_connections = 8; ///< per host
  /// For https:// URLs: CA file/dir, SPKI pin, client certificate and key
  /// (src/transport/tls_options.hpp). The certificate is always verified
  /// unless tls.insecure_skip_verify (development only, warned about).
  transport::tls_options tls;
};

/// WebSocket: libwebsockets client.
struct ws_transport_config : transport_config {
  std::string url = "ws://127.0.0.1:8771/api/v1/ws";
  /// For wss:// URLs, as http_transport_config::tls.
  transport::tls_options tls;
};

/// IPC: cppzmq DEALER (Lazy Pirate: a lost reply closes and reopens the
/// socket).
struct ipc_transport_config : transport_config {
  std::string endpoint; ///< e.g. ipc:///path/gateway.ipc
  /// After ZeroMQ reports the connection lost, how long at most to wait for
  /// its own reconnect before the link is declared down. A reconnect that is
  /// refused (nothing listening: `ipc: down`, gateway stopped) is down at
  /// once, 30-60 ms after the loss (libzmq's reconnect interval plus its
  /// jitter).
  transport_duration reconnect_grace = std::chrono::milliseconds(500);
  /// CurveZMQ (docs/security.md): the gateway's public key (Z85, 40
  /// characters; the gateway's DATA_DIR/ipc-curve.pub). Empty = no CURVE
  /// (allowed for ipc:// only; the profile builder refuses tcp:// without).
  std::string curve_server_key;
  /// This client's key pair (Z85); its public key must be in the gateway's
  /// allow-list. Empty: taken from curve_key_file if set, else a fresh
  /// pair per socket.
  std::string curve_public_key;
  std::string curve_secret_key;
  /// File holding this client's key pair (created 0600 on first use by the
  /// transport; see ipc_link::load_or_create_client_keys).
  std::string curve_key_file;
};

} // namespace aico
