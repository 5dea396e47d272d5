// Test support: runs the aico-backend-peer binary (the test peer that
// reproduces the real AICO backend's wire, docs/profiles.md) as a child
// process on loopback with a temporary data directory, waits for its ready
// line, and stops it (SIGTERM, then SIGKILL after a bounded wait). A restart
// keeps the ports and the data directory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/gateway_process.hpp" // temp_dir

namespace aico::test {

/// The users every peer test starts with (UUID:PIN:NAME[:ROLE]).
namespace peer_users {
inline const std::string alice_uuid = "a11ce000-0000-4000-8000-000000000001";
inline const std::string alice_pin = "1234";
inline const std::string alice_name = "Alice Test";
inline const std::string bob_uuid = "b0b00000-0000-4000-8000-000000000002";
inline const std::string bob_pin = "567890";
inline const std::string root_uuid = "00000000-0000-4000-8000-0000000000ad";
inline const std::string root_pin = "0000";
/// A user created without a PIN ("No authentication configured").
inline const std::string nopin_uuid = "c0ffee00-0000-4000-8000-000000000003";
} // namespace peer_users

struct peer_options {
  std::vector<std::string> users
    = {peer_users::alice_uuid + ":" + peer_users::alice_pin + ":"
         + peer_users::alice_name,
       peer_users::bob_uuid + ":" + peer_users::bob_pin + ":Bob Test",
       peer_users::root_uuid + ":" + peer_users::root_pin + ":Root Admin:admin",
       peer_users::nopin_uuid + "::No Pin"};
  bool enable_faults = true;
  /// --model-delay-ms (small by default so tests are quick).
  int model_delay_ms = 5;
  /// Data directory; empty = a fresh temp dir owned by the process object.
  std::string data_dir;
  /// Further command-line arguments (e.g. {"--channel-ttl", "0.3"}).
  std::vector<std::string> extra_args;
};

class peer_process {
public:
  explicit peer_process(peer_options opts = {});
  ~peer_process(); ///< stop()s if running; removes its temp dir

  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;

  /// Starts the peer and waits for its `ready` line. A restart reuses the
  /// ports and the data directory. False (see last_error()) on failure.
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  /// SIGTERM and wait (bounded); the exit status (-1 if it had to be killed).
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void kill9();

  bool running() const { return pid_ > 0; }
  std::string host() const { return "127.0.0.1"; }
  uint16_t http_port() const { return http_port_; }
  uint16_t ws_port() const { return ws_port_; }
  std::string http_url() const; ///< http://127.0.0.1:PORT
  std::string ws_url() const;   ///< ws://127.0.0.1:PORT
  /// The server's Ed25519 identity key (base64) from the ready line.
  const std::string& identity_key() const { return identity_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& ready_line() const { return ready_line_; }
  const std::string& last_error() const { return error_; }
  std::string log_path() const { return data_dir_ + "/peer.log"; }

private:
  peer_options opts_;
  std::unique_ptr<temp_dir> own_dir_;
  std::string data_dir_;
  uint16_t http_port_ = 0;
  uint16_t ws_port_ = 0;
  pid_t pid_ = -1;
  std::string ready_line_;
  std::string identity_;
  std::string error_;
};

/// Path of the aico-backend-peer binary under test ($AICO_PEER_BIN or the
/// build's).
std::string peer_binary();

} // namespace aico::test
