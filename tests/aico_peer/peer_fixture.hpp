// Shared fixture of the aico-backend-peer conformance tests: each test runs
// its own peer child process on 127.0.0.1 (temp data dir, ports picked by
// the kernel). The contract checked is the wire document
// (../shared/design/aico-backend-wire.md) as summarised in docs/profiles.md.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/clients.hpp"
#include "support/peer_client.hpp"
#include "support/peer_process.hpp"

namespace aico::test {

using namespace std::chrono_literals;
namespace pu = peer_users;

class PeerTest : public ::testing::Test {
protected:
  /// Override to start the peer with other options.
  virtual peer_options options() { return {}; }

  void SetUp() override {
    peer = std::make_unique<peer_process>(options());
    ASSERT_TRUE(peer->start()) << peer->last_error();
  }

  /// A client with a fresh identity, handshake done.
  aico_client connected(ms timeout = default_timeout) {
    aico_client c(peer->host(), peer->http_port(), timeout);
    std::string why;
    EXPECT_TRUE(c.handshake(&why)) << why;
    return c;
  }

  /// A plain HTTP client (no encryption).
  http_client plain(ms timeout = default_timeout) {
    return http_client(peer->host(), peer->http_port(), timeout);
  }

  /// Logs in; the access and refresh tokens.
  std::pair<std::string, std::string>
  login(aico_client& c, const std::string& uuid = pu::alice_uuid,
        const std::string& pin = pu::alice_pin) {
    auto r = c.login(uuid, pin);
    EXPECT_EQ(r.status, 200) << r.raw;
    EXPECT_TRUE(r.success()) << r.plain;
    return {r.str("/jwt_token"), r.str("/refresh_token")};
  }

  /// A clear JSON call to the test-only /_peer/* routes.
  json::value debug(const std::string& method, const std::string& path,
                    const json::value& body = nullptr) {
    auto r = plain().request(method, path, body.is_null() ? "" : to_text(body));
    EXPECT_EQ(r.status, 200) << path << " " << r.raw;
    return r.body;
  }

  void add_fault(const json::object& rule) {
    debug("POST", "/_peer/faults", rule);
  }

  int64_t stat(const std::string& name) {
    return jint(debug("GET", "/_peer/stats"), "/" + name, 0);
  }

  std::unique_ptr<peer_process> peer;
};

/// Waits until `pred` holds or `timeout` passes; whether it held.
template <class Pred>
bool eventually(Pred pred, ms timeout = 3000ms, ms step = 10ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

/// Seconds as double since the epoch.
inline double unix_seconds() {
  return std::chrono::duration<double>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace aico::test
