// The ZeroMQ wrapper's CURVE options against the real gateway with
// CurveZMQ on (ipc:// and tcp://127.0.0.1): the right server key and an
// allow-listed client key get answers and a link-up; a wrong server key or
// a client key the gateway does not know get no answer, and the wrapper
// reports it (on_security_failure).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "src/transport/zmq/dealer_loop.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"

namespace {

using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::temp_dir;
namespace ipc = aico::ipc_link;

struct seen {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<ipc::decoded_frame> frames;
  std::vector<std::string> security;
  std::vector<std::string> socket_errors;
  bool link_up = false;

  ipc::loop_handlers handlers() {
    ipc::loop_handlers h;
    h.on_frame = [this](uint64_t, ipc::decoded_frame&& f) {
      std::lock_guard<std::mutex> g{mtx};
      frames.push_back(std::move(f));
      cv.notify_all();
    };
    h.on_link = [this](uint64_t, bool up) {
      std::lock_guard<std::mutex> g{mtx};
      link_up = up;
      cv.notify_all();
    };
    h.on_security_failure = [this](uint64_t, const std::string& why) {
      std::lock_guard<std::mutex> g{mtx};
      security.push_back(why);
      cv.notify_all();
    };
    h.on_socket_error = [this](uint64_t, const std::string& why) {
      std::lock_guard<std::mutex> g{mtx};
      socket_errors.push_back(why);
      cv.notify_all();
    };
    return h;
  }

  template <class P> bool wait(P pred, std::chrono::milliseconds t) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, t, [&] { return pred(); });
  }
};

class ipc_curve_test : public ::testing::TestWithParam<bool> {
protected:
  void SetUp() override {
    dir_ = std::make_unique<temp_dir>("aico-curve");
    client_ = aico::test::curve_keypair();
    auto allow = dir_->path() + "/allow";
    int fd = ::open(allow.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    std::string text = "# the test client\n" + client_.first + "\n";
    ASSERT_EQ(::write(fd, text.data(), text.size()),
              static_cast<ssize_t>(text.size()));
    ::close(fd);
    gateway_options o;
    o.bot = false;
    if (GetParam())
      o.ipc = "tcp://127.0.0.1:0";
    o.extra_args = {"--ipc-allow", allow};
    gw_ = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
    auto line = gw_->ready_line();
    auto at = line.find(" ipc_key=");
    ASSERT_NE(at, std::string::npos) << line;
    server_key_ = line.substr(at + 9, 40);
  }

  /// Opens a DEALER with these keys and asks GET /health.
  std::shared_ptr<seen> ask(const std::string& server_key,
                            const std::pair<std::string, std::string>& keys,
                            std::chrono::milliseconds wait) {
    auto s = std::make_shared<seen>();
    ipc::socket_options so;
    so.curve_server_key = server_key;
    so.curve_public_key = keys.first;
    so.curve_secret_key = keys.second;
    ipc::dealer_loop loop(so, s->handlers());
    loop.open(1, gw_->reported_ipc());
    ipc::wire_request rq;
    rq.id = "h1";
    rq.method = "GET";
    rq.path = "/health";
    loop.send(1, 1, ipc::encode_request(rq));
    // An answer, a reported failure, or the deadline; after a failure,
    // a little longer to see that no answer comes after all.
    s->wait(
      [&] {
        return !s->frames.empty() || !s->security.empty()
               || !s->socket_errors.empty();
      },
      wait);
    if (s->frames.empty())
      s->wait([&] { return !s->frames.empty(); }, 300ms);
    loop.stop();
    return s;
  }

  std::unique_ptr<temp_dir> dir_;
  std::unique_ptr<gateway_process> gw_;
  std::pair<std::string, std::string> client_;
  std::string server_key_;
};

TEST_P(ipc_curve_test, right_server_key_and_allowed_client_are_answered) {
  auto s = ask(server_key_, client_, 5s);
  std::lock_guard<std::mutex> g{s->mtx};
  ASSERT_EQ(s->frames.size(), 1u);
  EXPECT_EQ(s->frames[0].kind, ipc::frame_kind::response);
  EXPECT_EQ(s->frames[0].response.status, 200);
  EXPECT_TRUE(s->link_up);
  EXPECT_TRUE(s->security.empty());
}

TEST_P(ipc_curve_test, client_key_not_in_the_allow_list_is_refused) {
  auto stranger = aico::test::curve_keypair();
  auto s = ask(server_key_, stranger, 5s);
  std::lock_guard<std::mutex> g{s->mtx};
  EXPECT_TRUE(s->frames.empty());
  EXPECT_FALSE(s->link_up);
  ASSERT_EQ(s->security.size(), 1u);
  EXPECT_NE(s->security[0].find("refused this client's key"),
            std::string::npos)
    << s->security[0];
}

TEST_P(ipc_curve_test, wrong_server_key_gets_no_answer_and_is_reported) {
  auto impostor = aico::test::curve_keypair();
  auto s = ask(impostor.first, client_, 5s);
  std::lock_guard<std::mutex> g{s->mtx};
  EXPECT_TRUE(s->frames.empty());
  EXPECT_FALSE(s->link_up);
  ASSERT_FALSE(s->security.empty());
  EXPECT_NE(s->security[0].find("ipc CURVE"), std::string::npos)
    << s->security[0];
}

TEST_P(ipc_curve_test, malformed_keys_are_a_clear_socket_error) {
  auto s = ask("not-a-key", client_, 500ms);
  std::lock_guard<std::mutex> g{s->mtx};
  ASSERT_EQ(s->socket_errors.size(), 1u);
  EXPECT_NE(s->socket_errors[0].find("not a Z85 key"), std::string::npos)
    << s->socket_errors[0];
}

INSTANTIATE_TEST_SUITE_P(endpoints, ipc_curve_test, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("tcp")
                                          : std::string("ipc");
                         });

} // namespace
