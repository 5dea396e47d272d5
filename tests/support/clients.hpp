// Test support: small synchronous clients for the gateway's front doors
// (REST, WebSocket, Server-Sent Events, ZeroMQ IPC). Every operation is
// bounded by a timeout, so a test can never hang on a misbehaving server.
// Loopback only: the clients are meant for 127.0.0.1 and ipc:// endpoints.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json.hpp>

// protobuf_generate_cpp puts the generated header at the root of the build
// directory ("ipc.pb.h"); accept a "proto/" layout too.
#if __has_include("proto/ipc.pb.h")
#include "proto/ipc.pb.h"
#else
#include "ipc.pb.h"
#endif

namespace aico::test {

namespace json = boost::json;
using ms = std::chrono::milliseconds;

/// Default bound for a single client operation.
inline constexpr ms default_timeout{5000};

// -- JSON helpers --------------------------------------------------------------

/// Parses JSON text; a null value if it is not valid JSON.
json::value parse_json(std::string_view text);

/// The value at a JSON pointer ("/data/user/id"), or nullptr if absent.
const json::value* jptr(const json::value& v, std::string_view pointer);

/// The string at a JSON pointer, or "" if absent or not a string.
std::string jstr(const json::value& v, std::string_view pointer);

/// The integer at a JSON pointer, or `dflt` if absent or not a number.
int64_t jint(const json::value& v, std::string_view pointer, int64_t dflt = -1);

/// True if the value at the pointer is the boolean `true`.
bool jtrue(const json::value& v, std::string_view pointer);

/// Serializes a JSON value.
std::string to_text(const json::value& v);

/// base64url without padding (for crafting JWTs).
std::string base64url_encode(std::string_view in);

/// Splits on a character.
std::vector<std::string> split(const std::string& s, char sep);

// -- TLS and CURVE ---------------------------------------------------------------

/// TLS for a test client. Verification is always on: the server certificate
/// must chain to `ca_file` and name the host (127.0.0.1 or localhost).
struct tls_client_options {
  bool enabled = false;
  std::string ca_file;     ///< trusted CA (PEM); empty = the system store
  std::string client_cert; ///< PEM; with client_key presented (mutual TLS)
  std::string client_key;
};

/// CurveZMQ for ipc_client (Z85 keys).
struct curve_client_options {
  std::string server_key; ///< the gateway's public key (pinned)
  std::string public_key; ///< this client's key pair
  std::string secret_key;
};

/// A fresh CURVE key pair (public, secret), Z85.
std::pair<std::string, std::string> curve_keypair();

// -- HTTP ------------------------------------------------------------------------

struct http_response {
  int status = 0;            ///< 0 when the transport failed (see error)
  std::string error;         ///< transport error text, empty on success
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string raw;           ///< raw body
  json::value body;          ///< parsed body, null if not JSON
  ms elapsed{0};             ///< wall time of the whole exchange

  std::string header(const std::string& name) const; ///< "" if absent
  std::string code() const { return jstr(body, "/code"); }
  bool success() const { return jtrue(body, "/success"); }
  const json::value& data() const; ///< body.data or a null value
};

/// A one-request-per-connection HTTP/1.1 client (Boost.Beast).
class http_client {
public:
  http_client(std::string host, uint16_t port, ms timeout = default_timeout);

  /// Sends `body` verbatim (Content-Type: application/json if not empty).
  /// `token` non-empty adds `Authorization: Bearer <token>`.
  http_response request(const std::string& method, const std::string& path,
                        const std::string& body = "",
                        const std::string& token = "",
                        const std::map<std::string, std::string>& extra = {});

  http_response get(const std::string& path, const std::string& token = "") {
    return request("GET", path, "", token);
  }
  http_response post(const std::string& path, const json::value& body,
                     const std::string& token = "") {
    return request("POST", path, to_text(body), token);
  }
  http_response put(const std::string& path, const json::value& body,
                    const std::string& token = "") {
    return request("PUT", path, to_text(body), token);
  }

  void set_timeout(ms t) { timeout_ = t; }
  /// Speak TLS (https).
  void set_tls(tls_client_options t) { tls_ = std::move(t); }
  /// Connect from this local address (e.g. 127.0.0.2: another loopback
  /// peer as far as the gateway can tell).
  void set_local_address(std::string a) { local_ = std::move(a); }

private:
  std::string host_;
  uint16_t port_;
  ms timeout_;
  tls_client_options tls_;
  std::string local_;
};

/// One persistent HTTP/1.1 connection (keep-alive): every request goes over
/// the same TCP connection as long as the server keeps it open.
class http_connection {
public:
  http_connection(std::string host, uint16_t port, ms timeout = default_timeout);
  ~http_connection();
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  bool connect();
  /// Sends one request on the open connection (no reconnect): status 0 and
  /// `error` set if the connection is gone.
  http_response request(const std::string& method, const std::string& path,
                        const std::string& body = "",
                        const std::string& token = "");
  /// Whether the server has closed the connection (seen on the last read).
  bool server_closed() const { return server_closed_; }

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::string host_;
  uint16_t port_;
  ms timeout_;
  bool server_closed_ = false;
};

// -- WebSocket -------------------------------------------------------------------

/// A WebSocket client with a background reader thread. Received text frames
/// are parsed and queued; `receive*` take frames from that queue.
class ws_client {
public:
  ws_client(std::string host, uint16_t port, ms timeout = default_timeout);
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  /// Opens the connection; `token` non-empty adds an Authorization header to
  /// the upgrade request. Returns false on failure; then
  /// handshake_status() is the HTTP status of a declined upgrade (or 0).
  bool connect(const std::string& token = "",
               const std::string& path = "/api/v1/ws");
  /// Speak TLS (wss); call before connect().
  void set_tls(tls_client_options t) { tls_ = std::move(t); }
  int handshake_status() const { return handshake_status_; }
  const std::string& handshake_body() const { return handshake_body_; }
  const std::string& error() const { return error_; }

  bool send_text(const std::string& text);
  bool send(const json::value& frame) { return send_text(to_text(frame)); }

  /// The next queued frame (any type).
  std::optional<json::value> receive(ms timeout = default_timeout);
  /// The first queued frame for which `pred` is true (others stay queued).
  std::optional<json::value>
  receive_if(const std::function<bool(const json::value&)>& pred,
             ms timeout = default_timeout);
  /// The first frame with `"type": type`.
  std::optional<json::value> receive_type(const std::string& type,
                                          ms timeout = default_timeout);
  /// The first event frame with `"topic": topic` (and, if given, a match).
  std::optional<json::value>
  receive_event(const std::string& topic,
                const std::function<bool(const json::value&)>& pred = {},
                ms timeout = default_timeout);

  /// Sends a request frame with a fresh id and waits for the response frame
  /// with that id.
  std::optional<json::value> request(const std::string& method,
                                     const std::string& path,
                                     const json::value& body = nullptr,
                                     ms timeout = default_timeout);

  /// Waits until the server closes the connection.
  bool wait_closed(ms timeout = default_timeout);
  bool is_open() const { return open_ && !closed_; }
  /// The close code the server sent (0 if none was received).
  int close_code() const { return close_code_; }
  /// Frames currently queued.
  std::size_t queued() const;
  void clear();
  /// Closes the connection (bounded) and joins the reader.
  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::string host_;
  uint16_t port_;
  ms timeout_;
  tls_client_options tls_;
  int handshake_status_ = 0;
  std::string handshake_body_;
  std::string error_;
  std::atomic<bool> open_{false};
  std::atomic<bool> closed_{false};
  std::atomic<int> close_code_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<json::value> frames_;
  std::thread reader_;
  uint64_t next_id_ = 1;
};

// -- Server-Sent Events ----------------------------------------------------------

struct sse_event {
  std::string id;
  std::string event;
  std::string data; ///< the data lines joined with '\n'
  json::value json; ///< data parsed (null if not JSON)
};

/// Reads a `text/event-stream` response with a background thread.
class sse_client {
public:
  sse_client(std::string host, uint16_t port, ms timeout = default_timeout);
  ~sse_client();
  sse_client(const sse_client&) = delete;
  sse_client& operator=(const sse_client&) = delete;

  /// Sends the GET and reads the response header. Returns the HTTP status
  /// (0 on transport failure). For non-200 answers the body is read too.
  int connect(const std::string& token,
              const std::string& path = "/api/v1/events",
              const std::map<std::string, std::string>& extra = {});
  /// Speak TLS (https); call before connect().
  void set_tls(tls_client_options t) { tls_ = std::move(t); }
  /// Why connect() returned 0.
  const std::string& error() const { return error_; }
  const std::map<std::string, std::string>& headers() const {
    return headers_;
  }
  const std::string& body() const { return body_; } ///< non-200 body

  /// The first queued event with `event: topic` (empty = any) that
  /// satisfies `pred` (if given).
  std::optional<sse_event>
  receive(const std::string& topic = "",
          const std::function<bool(const sse_event&)>& pred = {},
          ms timeout = default_timeout);
  /// Number of `:` comment lines seen.
  int comments() const { return comments_; }
  bool wait_closed(ms timeout = default_timeout);
  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::string host_;
  uint16_t port_;
  ms timeout_;
  tls_client_options tls_;
  std::string error_;
  std::map<std::string, std::string> headers_;
  std::string body_;
  std::atomic<int> comments_{0};
  std::atomic<bool> closed_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<sse_event> events_;
  std::thread reader_;
};

// -- IPC (ZeroMQ DEALER + protobuf) ---------------------------------------------

/// A DEALER connected to the gateway's ROUTER. Single-threaded: use it from
/// one thread only.
class ipc_client {
public:
  explicit ipc_client(const std::string& endpoint);
  /// With CurveZMQ (the gateway's key pinned, this client's pair).
  ipc_client(const std::string& endpoint, const curve_client_options& curve);
  ~ipc_client();
  ipc_client(const ipc_client&) = delete;
  ipc_client& operator=(const ipc_client&) = delete;

  /// Sends one serialized frame (optionally preceded by an empty delimiter).
  bool send(const aico::ipc::Frame& f, bool with_delimiter = false);
  /// Sends arbitrary bytes as one message.
  bool send_raw(const std::string& bytes);
  /// Sends one multi-part message with these parts.
  bool send_parts(const std::vector<std::string>& parts);

  /// The next frame (queued or newly received), nullopt on timeout or if a
  /// message could not be parsed (then last_error() says so).
  std::optional<aico::ipc::Frame> receive(ms timeout = default_timeout);
  /// The first frame for which `pred` is true; others stay queued.
  std::optional<aico::ipc::Frame>
  receive_if(const std::function<bool(const aico::ipc::Frame&)>& pred,
             ms timeout = default_timeout);
  /// The response frame with this id.
  std::optional<aico::ipc::Response> receive_response(const std::string& id,
                                                      ms timeout =
                                                        default_timeout);
  /// The first event with this topic satisfying `pred` (if given).
  std::optional<aico::ipc::Event>
  receive_event(const std::string& topic,
                const std::function<bool(const json::value&)>& pred = {},
                ms timeout = default_timeout);

  /// Sends a Request with a fresh id and waits for its response.
  std::optional<aico::ipc::Response>
  request(const std::string& method, const std::string& path,
          const std::string& body = "", const std::string& token = "",
          ms timeout = default_timeout);
  /// Subscribe with a fresh id; the response.
  std::optional<aico::ipc::Response> subscribe(const std::string& token,
                                               ms timeout = default_timeout);

  /// Whether the last received message had an empty delimiter frame.
  bool last_had_delimiter() const { return last_delim_; }
  const std::string& last_error() const { return error_; }
  std::string next_id();
  void clear() { queue_.clear(); }

private:
  bool recv_one(ms timeout); ///< receives one message into queue_
  struct impl;
  std::unique_ptr<impl> impl_;
  std::deque<aico::ipc::Frame> queue_;
  std::string error_;
  bool last_delim_ = false;
  uint64_t next_id_ = 1;
};

/// A ROUTER bound to `endpoint` that never answers: a peer that accepts the
/// connection and then says nothing (unlike a missing endpoint, which
/// refuses it).
class silent_ipc_peer {
public:
  explicit silent_ipc_peer(const std::string& endpoint);
  ~silent_ipc_peer();
  silent_ipc_peer(const silent_ipc_peer&) = delete;
  silent_ipc_peer& operator=(const silent_ipc_peer&) = delete;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::test
