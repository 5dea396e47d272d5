// aico reference gateway: CurveZMQ on the IPC door (docs/security.md).
//
// * The gateway's long-term CURVE key pair lives in its data directory:
//   `ipc-curve.key` (the secret key, Z85, mode 0600, refused if it is not
//   private) and `ipc-curve.pub` (the public key, Z85, for clients to pin).
//   Both are created on the first start with CURVE on.
// * Clients are authorized by a ZAP handler (RFC 27) bound in the ROUTER's
//   context: a client whose public key is not in the allow-list file is
//   refused during the handshake (ZAP status 400). The file has one Z85
//   public key (40 characters) per line, optionally followed by whitespace
//   and a `# comment`; lines starting with `#` are comments, blank lines
//   are ignored (Z85 itself uses `#`, but never as a key's first
//   character). It is re-read when it changes (a broken new version is
//   logged and the previous list kept). The ZAP user id of an authorized
//   client is its public key, so requests know which device sent them.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace zmq {
class context_t;
}

namespace aico::gateway {

struct curve_keypair {
  std::string public_z85; ///< 40 characters
  std::string secret_z85; ///< 40 characters
};

/// Loads DATA_DIR/ipc-curve.key (creating the pair on first use) and
/// (re)writes DATA_DIR/ipc-curve.pub. Throws std::runtime_error with a
/// sentence on failure (libzmq without CURVE, a key file that is not
/// private or not a key).
curve_keypair load_or_create_curve_keys(const std::string& data_dir);

/// Parses an allow-list file's text; throws std::runtime_error naming the
/// first bad line. Returns the keys (Z85, validated).
std::vector<std::string> parse_allow_list(const std::string& text,
                                          const std::string& file);

/// Reads and parses the allow-list file: it must belong to the gateway's
/// user and not be writable by group or others (whoever may change it may
/// authorize any key). Throws std::runtime_error.
std::vector<std::string> load_allow_list(const std::string& file);

/// The ZAP handler: a thread answering the ZAP requests of `ctx` (bind
/// before any CURVE server socket of that context binds).
class zap_handler {
public:
  /// Loads the allow-list (throws if it is unusable) and binds
  /// inproc://zeromq.zap.01 in `ctx`.
  zap_handler(zmq::context_t& ctx, std::string allow_file);
  ~zap_handler(); ///< stop()
  zap_handler(const zap_handler&) = delete;
  zap_handler& operator=(const zap_handler&) = delete;

  /// Starts answering (a thread).
  void start();
  /// Stops and joins (within ~100 ms); closes the ZAP socket. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::gateway
