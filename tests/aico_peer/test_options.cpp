// The peer's own surface: users from options and files (the real backend
// creates users with its CLI, outside the API), refused options, and the
// uvicorn keep-alive behaviour of its REST port.
#include <poll.h>

#include <fstream>

#include <boost/asio.hpp>

#include "peer_fixture.hpp"

namespace aico::test {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

TEST(PeerOptions, UsersComeFromAFileAndBadSpecsAreRefusedClearly) {
  temp_dir dir("aico-peer-users");
  auto file = dir.path() + "/users.txt";
  {
    std::ofstream out(file);
    out << "# id:pin:name[:role]\n\n"
        << "  d0d00000-0000-4000-8000-000000000004:4321:Dora File\n"
        << "E0E00000-0000-4000-8000-000000000005:8765:Eve Admin:admin\n";
  }
  peer_options o;
  o.users.clear();
  o.extra_args = {"--users-file", file};
  peer_process p(o);
  ASSERT_TRUE(p.start()) << p.last_error();
  aico_client c(p.host(), p.http_port());
  ASSERT_TRUE(c.handshake());
  EXPECT_TRUE(
    c.login("d0d00000-0000-4000-8000-000000000004", "4321").success());
  auto eve = c.login("e0e00000-0000-4000-8000-000000000005", "8765");
  ASSERT_TRUE(eve.success()) << eve.plain; // stored lower case
  EXPECT_EQ(jstr(jwt_payload(eve.str("/jwt_token")), "/roles/0"), "admin");
  p.stop();

  for (std::string bad :
       {std::string("not-a-uuid:1234:X"), pu::alice_uuid + ":12:Short Pin",
        pu::alice_uuid + ":1234", pu::alice_uuid + ":1234:X:boss"}) {
    peer_options b;
    b.users = {bad};
    peer_process q(b);
    EXPECT_FALSE(q.start(std::chrono::seconds(5))) << bad;
    auto log = read_file(q.log_path());
    EXPECT_NE(log.find("aico-backend-peer: "), std::string::npos) << log;
  }
}

TEST(PeerOptions, AnUpdatedPinReplacesTheOldOneOnRestart) {
  temp_dir dir("aico-peer-pin");
  peer_options o;
  o.data_dir = dir.path();
  o.users = {pu::alice_uuid + ":1111:Alice"};
  {
    peer_process p(o);
    ASSERT_TRUE(p.start()) << p.last_error();
  }
  o.users = {pu::alice_uuid + ":2222:Alice"};
  peer_process p(o);
  ASSERT_TRUE(p.start()) << p.last_error();
  aico_client c(p.host(), p.http_port());
  ASSERT_TRUE(c.handshake());
  EXPECT_EQ(c.login(pu::alice_uuid, "1111").str("/error"), "Invalid PIN");
  EXPECT_TRUE(c.login(pu::alice_uuid, "2222").success());
}

class KeepAliveTest : public PeerTest {
protected:
  peer_options options() override {
    peer_options o;
    o.extra_args = {"--keep-alive-timeout", "0.3"};
    return o;
  }
};

TEST_F(KeepAliveTest, AnIdleKeepAliveConnectionIsClosedByTheServer) {
  namespace net = boost::asio;
  net::io_context ioc;
  net::ip::tcp::socket sock(ioc);
  sock.connect({net::ip::make_address("127.0.0.1"), peer->http_port()});
  std::string req = "GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n";
  // Two requests on one connection...
  for (int i = 0; i < 2; ++i) {
    net::write(sock, net::buffer(req));
    std::string got;
    char buf[1024];
    while (got.find("\"uptime_seconds\"") == std::string::npos) {
      auto n = sock.read_some(net::buffer(buf));
      got.append(buf, n);
    }
    EXPECT_EQ(got.rfind("HTTP/1.1 200 OK", 0), 0u);
  }
  // ...then silence: the server closes it after the keep-alive timeout.
  auto t0 = std::chrono::steady_clock::now();
  pollfd pfd{sock.native_handle(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 3000), 1);
  char b;
  boost::system::error_code ec;
  sock.read_some(net::buffer(&b, 1), ec);
  EXPECT_EQ(ec, net::error::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
}

} // namespace
} // namespace aico::test
