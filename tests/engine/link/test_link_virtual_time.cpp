// The transport actor with the real WebSocket and HTTP drivers on CAF's test coordinator: their
// connect deadline comes from the link session and the actor clock, so
// virtual time decides when a silent peer is given up (no sleeps, no
// gateway). The peer is a listening TCP socket that never answers; the I/O
// threads have nothing to report meanwhile (their own timeouts are far
// longer), so nothing but the test drives the actors.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "messages/transport.hpp"
#include "support/caf_fixture.hpp"
#include "support/recorder.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

/// A TCP port on 127.0.0.1 that accepts connections (in the kernel's
/// backlog) and never says a word.
class silent_tcp_peer {
public:
  silent_tcp_peer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0
        || ::listen(fd_, 16) != 0)
      return;
    socklen_t len = sizeof(a);
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~silent_tcp_peer() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  silent_tcp_peer(const silent_tcp_peer&) = delete;
  silent_tcp_peer& operator=(const silent_tcp_peer&) = delete;

  int port() const { return port_; }

private:
  int fd_ = -1;
  int port_ = 0;
};

struct link_virtual_time_test : aico::test::caf_fixture {
  std::shared_ptr<aico::test::transport_log> log
    = std::make_shared<aico::test::transport_log>();
  transport_listener_actor listener
    = aico::test::spawn_transport_recorder(sys, log);
  silent_tcp_peer peer;
  transport_actor transport;

  ~link_virtual_time_test() override {
    if (transport)
      caf::anon_send_exit(transport, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
    sched.run();
  }

  transport_status last() const { return log->last(); }
};

} // namespace

TEST_F(link_virtual_time_test, ws_connect_deadline_is_on_the_actor_clock) {
  ASSERT_GT(peer.port(), 0);
  ws_transport_config c;
  c.url = "ws://127.0.0.1:" + std::to_string(peer.port()) + "/api/v1/ws";
  c.connect_timeout = 500ms;
  transport = spawn_ws_transport(sys, c, listener);
  caf::anon_send(transport, connect_atom_v);
  sched.run();
  ASSERT_EQ(last(), transport_status::connecting);
  advance(499ms);
  EXPECT_EQ(last(), transport_status::connecting);
  advance(1ms);
  ASSERT_EQ(last(), transport_status::down);
  EXPECT_NE(log->states.back().second.find("timed out after 500 ms"),
            std::string::npos)
    << log->states.back().second;
  // a connect again starts a new attempt with a fresh deadline
  caf::anon_send(transport, connect_atom_v);
  sched.run();
  EXPECT_EQ(last(), transport_status::connecting);
  advance(400ms);
  EXPECT_EQ(last(), transport_status::connecting);
  advance(100ms);
  EXPECT_EQ(last(), transport_status::down);
}

TEST_F(link_virtual_time_test, ws_disconnect_while_connecting_leaves_no_timer) {
  ASSERT_GT(peer.port(), 0);
  ws_transport_config c;
  c.url = "ws://127.0.0.1:" + std::to_string(peer.port()) + "/api/v1/ws";
  c.connect_timeout = 500ms;
  transport = spawn_ws_transport(sys, c, listener);
  caf::anon_send(transport, connect_atom_v);
  sched.run();
  caf::anon_send(transport, disconnect_atom_v);
  sched.run();
  ASSERT_EQ(last(), transport_status::idle);
  auto n = log->states.size();
  advance(1s); // the old connect deadline finds nothing due
  EXPECT_EQ(log->states.size(), n);
  EXPECT_EQ(last(), transport_status::idle);
}

TEST_F(link_virtual_time_test, http_health_probe_safety_net_on_the_actor_clock) {
  ASSERT_GT(peer.port(), 0);
  http_transport_config c;
  c.base_url = "http://127.0.0.1:" + std::to_string(peer.port());
  // libcurl's own timeout is this long in real time: it never fires while
  // the test runs, so only the link session's deadline (connect timeout +
  // the 250 ms safety grace) on the virtual clock can end the probe
  c.connect_timeout = 60s;
  transport = spawn_http_transport(sys, c, listener);
  caf::anon_send(transport, connect_atom_v);
  sched.run();
  ASSERT_EQ(last(), transport_status::connecting);
  advance(60s);
  EXPECT_EQ(last(), transport_status::connecting);
  advance(250ms);
  ASSERT_EQ(last(), transport_status::down);
  EXPECT_EQ(log->states.back().second, "health check timed out");
}
