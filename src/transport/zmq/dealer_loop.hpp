// aico engine: the ZeroMQ DEALER socket thread of the IPC transport.
//
//   owner (actor) ──open/close/send (mutex queue + eventfd wakeup)──▶ socket thread
//   owner ◀──────── handlers: frame / send failed / socket error ─── (zmq::poll)
//
// One zmq::context_t per loop (it outlives its sockets), one thread that is
// the only one ever touching the socket. Every socket gets LINGER 0 (closing
// never blocks), explicit reconnect intervals, send/receive high-water marks
// and ZMQ_IMMEDIATE=1 (messages are only queued to a connected peer; until
// the peer is there they wait in this loop's own bounded outbox). A socket
// monitor (inproc PAIR in the same context) reports connects/disconnects.
//
// Sockets are numbered by the owner ("generation"): open(gen) closes the
// current DEALER and connects a fresh one (the Lazy Pirate reset); whatever
// arrives is reported with the generation of the socket it came from, and a
// send for another generation than the current socket's is dropped.
//
// This header names no ZeroMQ or protobuf type; every zmq::error_t is caught
// on the thread and reported as a value. Handlers run on the socket thread:
// keep them short and non-blocking (e.g. caf::anon_send).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "src/transport/zmq/ipc_codec.hpp"

namespace aico::ipc_link {

struct socket_options {
  std::chrono::milliseconds reconnect_ivl{100};
  std::chrono::milliseconds reconnect_ivl_max{1000};
  int sndhwm = 1000;
  int rcvhwm = 10000;
  /// Messages waiting in the loop for a connected peer (ZMQ_IMMEDIATE) per
  /// socket; beyond this, sends fail at once.
  std::size_t max_queued = 10000;
  /// ZMQ_MAXMSGSIZE: the largest message accepted from the peer. libzmq
  /// reads a message's size before its body and drops the connection when
  /// it is larger, so an oversized message is never allocated; libzmq then
  /// does not reconnect (a protocol error), and the loop reports the drop
  /// (on_socket_error) and closes the socket. 16 MiB, like the engine's
  /// WebSocket message and HTTP body limits (docs/configuration.md): the
  /// gateway's answers (history pages) may exceed the 1 MiB it accepts.
  std::size_t max_message = 16u * 1024u * 1024u;
  /// CurveZMQ (docs/security.md): the gateway's public key (Z85, 40
  /// characters; DATA_DIR/ipc-curve.pub) -- only a server holding its secret
  /// key completes the handshake. Empty = no CURVE (plain ipc://).
  std::string curve_server_key;
  /// This client's key pair (Z85); its public key must be in the gateway's
  /// allow-list. Empty = a fresh pair per socket (encrypted, but a gateway
  /// with an allow-list refuses it).
  std::string curve_public_key;
  std::string curve_secret_key;
};

/// A CurveZMQ key pair (Z85, 40 characters each).
struct curve_keys {
  std::string public_key;
  std::string secret_key;
};

/// This client's CURVE key pair from `path`: the file holds the secret key
/// (Z85, one line). Created with a fresh pair (mode 0600, its directory
/// 0700) if it does not exist; refused if it is not a regular file owned by
/// this user with no access for group or others. False and a sentence in
/// `err` otherwise.
bool load_or_create_client_keys(const std::string& path, curve_keys& out,
                                std::string& err);

struct loop_handlers {
  /// A message arrived on socket `gen` (kind invalid: not understood, but
  /// the peer is alive).
  std::function<void(uint64_t gen, decoded_frame&&)> on_frame;
  /// The send tagged `tag` on socket `gen` could not be queued/sent.
  std::function<void(uint64_t gen, uint64_t tag, const std::string& why)>
    on_send_failed;
  /// Socket `gen` could not be opened or failed for good (including an
  /// established connection that libzmq dropped without reconnecting: an
  /// oversized message, socket_options::max_message; the socket is closed).
  std::function<void(uint64_t gen, const std::string& why)> on_socket_error;
  /// Socket `gen` connected to (true) or lost (false) its peer (from a
  /// socket monitor). libzmq reconnects by itself after a loss; messages
  /// that were on the lost connection are gone (their replies too), and the
  /// gateway forgets a lost peer's subscription.
  std::function<void(uint64_t gen, bool connected)> on_link;
  /// A connection attempt of socket `gen` failed at once (no socket file,
  /// connection refused: nobody is bound to the endpoint). libzmq retries by
  /// itself; this only tells the owner that nothing is listening now.
  std::function<void(uint64_t gen)> on_connect_failed;
  /// With CURVE: the handshake of socket `gen` failed -- the gateway refused
  /// this client's key (not in its allow-list), or the peer is not the
  /// gateway whose key is pinned. Reported once until a handshake succeeds
  /// again; libzmq keeps retrying, and no message goes out meanwhile. With
  /// CURVE, on_link(gen, true) means a completed handshake.
  std::function<void(uint64_t gen, const std::string& why)>
    on_security_failure;
};

class dealer_loop {
public:
  /// Creates the context and starts the socket thread (no socket yet).
  /// Throws std::runtime_error if that fails.
  dealer_loop(socket_options opts, loop_handlers handlers);

  /// stop()s.
  ~dealer_loop();

  dealer_loop(const dealer_loop&) = delete;
  dealer_loop& operator=(const dealer_loop&) = delete;

  /// Closes the current socket (dropping what it still had to send) and
  /// connects a new DEALER numbered `gen` to `endpoint`. Thread-safe.
  void open(uint64_t gen, std::string endpoint);

  /// Closes the current socket (no-op without one). Thread-safe.
  void close();

  /// Queues one message (a serialized Frame) for socket `gen`; dropped if
  /// that socket is no longer the current one. `tag` identifies it in
  /// on_send_failed. Thread-safe.
  void send(uint64_t gen, uint64_t tag, std::string bytes);

  /// Stops and joins the thread (promptly: it wakes up on the eventfd),
  /// closes the socket and the context. Idempotent. Never call it from a
  /// handler (the socket thread cannot join itself).
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::ipc_link
