// aico-stress: runs the aico-gateway binary as a child process on loopback
// (a free port, IPC in the data directory), waits for its `ready` line, and
// can kill -9 and restart it on the same port, endpoint and data. With
// set_aico_peer() it runs aico-backend-peer instead (the `aico` profile's
// test peer: REST and its WebSocket on free ports, no IPC).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace aico::stress {

class gateway_launcher {
public:
  gateway_launcher(std::string binary, std::string data_dir,
                   std::vector<std::string> args);
  ~gateway_launcher(); ///< stop()s if running

  gateway_launcher(const gateway_launcher&) = delete;
  gateway_launcher& operator=(const gateway_launcher&) = delete;

  /// Runs aico-backend-peer (--listen, --ws-listen) instead of the
  /// gateway; call before start().
  void set_aico_peer() { peer_ = true; }

  /// Starts and waits (bounded) for the ready line; false + last_error().
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// SIGTERM, bounded wait, then SIGKILL.
  void stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void kill9();

  bool running() const { return pid_ > 0; }
  std::string http_url() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }
  const std::string& ipc_endpoint() const { return ipc_; }
  /// The doors' endpoints by transport name: "ipc" (the gateway's, not the
  /// peer's) and every `NAME=127.0.0.1:PORT` of the ready line, the doors
  /// opened with `--NAME 127.0.0.1:0` in the arguments ("grpc"); a restart
  /// keeps their ports.
  std::map<std::string, std::string> door_endpoints() const;
  /// The peer's WebSocket (set_aico_peer), "" for the gateway.
  std::string ws_url() const {
    return peer_ ? "ws://127.0.0.1:" + std::to_string(ws_port_) : "";
  }
  const std::string& last_error() const { return error_; }
  std::string log_path() const {
    return data_dir_ + (peer_ ? "/peer.log" : "/gateway.log");
  }

private:
  std::string binary_;
  std::string data_dir_;
  std::vector<std::string> args_;
  std::string ipc_;
  uint16_t port_ = 0;
  std::map<std::string, uint16_t> door_ports_; ///< from the ready line
  uint16_t ws_port_ = 0;
  bool peer_ = false;
  pid_t pid_ = -1;
  std::string error_;
};

/// `aico-gateway` next to the running executable (or in ../src/gateway).
std::string find_gateway_binary();

/// `aico-backend-peer` next to the running executable.
std::string find_peer_binary();

} // namespace aico::stress
