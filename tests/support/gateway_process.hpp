// Test support: runs the real aico-gateway binary as a child process on
// loopback with a temporary data directory, waits for its ready line, and
// stops it (SIGTERM, then SIGKILL after a bounded wait).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace aico::test {

/// A temporary directory (mkdtemp under $TMPDIR or /tmp), removed with all
/// its content on destruction unless `keep` is set.
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix = "aico-test");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  bool keep = false;

private:
  std::string path_;
};

struct gateway_options {
  /// --user arguments.
  std::vector<std::string> users = {"alice:alice-pw", "bob:bob-pw",
                                    "root:root-pw:admin"};
  /// --access-ttl in seconds, 0 = gateway default.
  int access_ttl_s = 0;
  bool enable_faults = true;
  bool bot = true;
  /// Data directory; empty = a fresh temp dir owned by the process object.
  std::string data_dir;
  /// Port to listen on; 0 = pick a free one (kept for restarts).
  uint16_t port = 0;
  /// --ipc endpoint; empty = ipc://DATA_DIR/gateway.ipc.
  std::string ipc;
  /// Further command-line arguments.
  std::vector<std::string> extra_args;
};

class gateway_process {
public:
  explicit gateway_process(gateway_options opts = {});
  ~gateway_process(); ///< stop()s if running; removes its temp dir

  gateway_process(const gateway_process&) = delete;
  gateway_process& operator=(const gateway_process&) = delete;

  /// Starts the gateway and waits for its `ready` line. On a restart the
  /// same port, IPC endpoint and data directory are used. Returns false
  /// (and fills last_error()) on failure or timeout.
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(15));

  /// SIGTERM and wait (bounded); returns the exit status (-1 if it had to
  /// be killed, or the signal number negated).
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// SIGKILL and reap.
  void kill9();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string http_url() const; ///< http://127.0.0.1:PORT
  std::string ws_url() const;   ///< ws://127.0.0.1:PORT/api/v1/ws
  /// The endpoint the gateway reported in its ready line (a tcp:// port 0
  /// becomes the real port), or the configured one before start.
  std::string reported_ipc() const;
  /// HOST:PORT of the gRPC door from the ready line ("" when the gateway
  /// runs without --grpc).
  std::string reported_grpc() const;
  const std::string& ipc_endpoint() const { return ipc_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& ready_line() const { return ready_line_; }
  const std::string& last_error() const { return error_; }
  /// Path of the file that collects the gateway's stderr.
  std::string log_path() const { return data_dir_ + "/gateway.log"; }

private:
  gateway_options opts_;
  temp_dir* own_dir_ = nullptr;
  std::string data_dir_;
  std::string ipc_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::string ready_line_;
  std::string error_;
};

/// Path of the aico-gateway binary under test.
std::string gateway_binary();

} // namespace aico::test
