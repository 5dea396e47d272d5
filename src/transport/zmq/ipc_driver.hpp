// aico engine: the IPC (ZeroMQ DEALER + protobuf frames) driver of the
// generic transport actor (src/transport/driver.hpp; docs/protocol.md "IPC
// (ZeroMQ)").
//
// * open(gen): a fresh DEALER numbered gen (src/transport/zmq/dealer_loop)
//   and a Ping; the first frame that arrives on it is link_up.
// * send: Frame{request} with the wire id; the Frame{response} of that id is
//   the reply. A send that cannot be queued is send_failed (network).
// * subscribe: Subscribe{id "ipc-ctl-s<sub>", token, since}; its response is
//   `subscribed` (replay complete = data.replay.complete). unsubscribe:
//   Unsubscribe. Ids starting with "ipc-ctl-" are reserved.
// * heartbeat: Ping/Pong. The socket monitor's connection lost / back is
//   peer_lost / peer_back (libzmq reconnects by itself). A refused first
//   connection ("nothing is listening there") and a refused reconnect after
//   a loss are link_lost at once; a failed CURVE handshake is
//   security_failure.
// Capabilities: heartbeat, reconnects_itself, reset_on_timeout (Lazy
// Pirate), wire ids.
#pragma once

#include <memory>

#include "src/transport/config.hpp"
#include "src/transport/driver.hpp"

namespace aico::ipc_link {

/// Never throws: a driver whose socket thread or key file failed reports
/// that in unusable().
std::unique_ptr<transport::driver>
make_ipc_driver(const ipc_transport_config& cfg,
                transport::driver_events events);

} // namespace aico::ipc_link
