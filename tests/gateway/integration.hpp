// Shared fixture and helpers of the gateway integration tests: each test runs
// against its own aico-gateway child process on 127.0.0.1 (temp data dir,
// ipc:// endpoint inside it). The contract checked is docs/protocol.md.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/clients.hpp"
#include "support/gateway_process.hpp"

namespace aico::test {

/// Decodes base64url (no padding); "" on invalid input.
inline std::string base64url_decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    if (c == '-')
      return 62;
    if (c == '_')
      return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = val(c);
    if (v < 0)
      return {};
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

/// A logged-in user.
struct session {
  std::string access;
  std::string refresh;
  std::string user_id;
  std::string username;
  json::value user;
};

/// Options of a fast test gateway: bot chunks 1 ms apart.
inline gateway_options fast_options() {
  gateway_options o;
  o.extra_args = {"--bot-delay-ms", "1"};
  return o;
}

/// A fresh gateway per test.
class GatewayTest : public ::testing::Test {
protected:
  virtual gateway_options options() { return fast_options(); }

  void SetUp() override {
    gw_ = std::make_unique<gateway_process>(options());
    ASSERT_TRUE(gw_->start()) << gw_->last_error() << "\n" << log_tail();
  }

  void TearDown() override {
    if (!gw_)
      return;
    if (HasFailure())
      std::cerr << "---- gateway log (tail) ----\n"
                << log_tail() << "----------------------------\n";
    if (gw_->running())
      gw_->stop();
  }

  std::string log_tail(std::size_t max_lines = 40) const {
    if (!gw_)
      return {};
    std::ifstream in(gw_->log_path());
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line))
      lines.push_back(line);
    std::string out;
    for (auto i = lines.size() > max_lines ? lines.size() - max_lines : 0;
         i < lines.size(); ++i)
      out += lines[i] + "\n";
    return out;
  }

  http_client http(ms timeout = default_timeout) const {
    return http_client("127.0.0.1", gw_->port(), timeout);
  }

  std::unique_ptr<ws_client> ws(const std::string& token = "") const {
    auto c = std::make_unique<ws_client>("127.0.0.1", gw_->port());
    if (!c->connect(token))
      ADD_FAILURE() << "ws connect failed: status " << c->handshake_status()
                    << " " << c->error();
    return c;
  }

  std::unique_ptr<ipc_client> ipc() const {
    return std::make_unique<ipc_client>(gw_->ipc_endpoint());
  }

  /// Logs in; fails the test (non-fatally) and returns empty tokens on error.
  session login(const std::string& user, const std::string& password) const {
    auto r = http().post("/api/v1/users/authenticate",
                         {{"username", user}, {"password", password}});
    session s;
    EXPECT_EQ(r.status, 200) << "login " << user << ": " << r.raw << r.error;
    s.access = jstr(r.body, "/data/access_token");
    s.refresh = jstr(r.body, "/data/refresh_token");
    s.user_id = jstr(r.body, "/data/user/id");
    s.username = jstr(r.body, "/data/user/username");
    if (auto p = jptr(r.body, "/data/user"))
      s.user = *p;
    return s;
  }
  session alice() const { return login("alice", "alice-pw"); }
  session bob() const { return login("bob", "bob-pw"); }
  session root() const { return login("root", "root-pw"); }

  /// POST /conversations/messages.
  http_response send_message(const std::string& token, const std::string& id,
                             const std::string& content,
                             const std::string& conversation = "",
                             const std::string& type = "") const {
    json::object b{{"id", id}, {"content", content}};
    if (!conversation.empty())
      b["conversation_id"] = conversation;
    if (!type.empty())
      b["type"] = type;
    return http().post("/api/v1/conversations/messages", b, token);
  }

  /// GET /conversations/{conv}/messages?query.
  http_response history(const std::string& token, const std::string& conv,
                        const std::string& query = "") const {
    return http().get("/api/v1/conversations/" + conv + "/messages"
                        + (query.empty() ? "" : "?" + query),
                      token);
  }

  /// Ids of the messages in a history response, in order.
  static std::vector<std::string> ids_of(const http_response& r) {
    std::vector<std::string> out;
    if (auto p = jptr(r.body, "/data/messages"); p && p->is_array())
      for (auto& m : p->as_array())
        out.push_back(jstr(m, "/id"));
    return out;
  }

  /// Polls the history of `conv` until a message with `id` shows up.
  bool wait_for_message(const std::string& token, const std::string& conv,
                        const std::string& id, ms timeout = ms(3000)) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto ids = ids_of(history(token, conv, "limit=500"));
      if (std::find(ids.begin(), ids.end(), id) != ids.end())
        return true;
      std::this_thread::sleep_for(ms(50));
    }
    return false;
  }

  /// POST /admin/faults as root.
  http_response faults(const std::string& admin_token,
                       const json::value& body) const {
    return http().post("/api/v1/admin/faults", body, admin_token);
  }

  /// A message id unique within this process.
  static std::string uid(const std::string& prefix = "m") {
    static std::atomic<int> n{0};
    return prefix + "-" + std::to_string(++n);
  }

  std::unique_ptr<gateway_process> gw_;
};

/// Asserts the envelope of an error response: status, success false,
/// the code and a message.
#define EXPECT_ERROR(resp, st, cd)                                            \
  do {                                                                        \
    const auto& r_ = (resp);                                                  \
    EXPECT_EQ(r_.status, (st)) << r_.raw << r_.error;                         \
    EXPECT_TRUE(r_.body.is_object()) << "body: " << r_.raw;                   \
    EXPECT_FALSE(aico::test::jtrue(r_.body, "/success")) << r_.raw;           \
    EXPECT_EQ(aico::test::jstr(r_.body, "/code"), std::string(cd)) << r_.raw; \
    EXPECT_NE(aico::test::jptr(r_.body, "/message"), nullptr) << r_.raw;      \
  } while (0)

/// Asserts a successful envelope with this status.
#define EXPECT_OK(resp, st)                                                   \
  do {                                                                        \
    const auto& r_ = (resp);                                                  \
    EXPECT_EQ(r_.status, (st)) << r_.raw << r_.error;                         \
    EXPECT_TRUE(aico::test::jtrue(r_.body, "/success")) << r_.raw;            \
    EXPECT_NE(aico::test::jptr(r_.body, "/data"), nullptr) << r_.raw;         \
  } while (0)

} // namespace aico::test
