// libFuzzer harness: the reference gateway's request handling
// (src/gateway/api.hpp api::handle, the core behind all three doors).
//
// Input: "METHOD TARGET\n" then one byte choosing the token (none, alice's,
// the admin's, expired, garbage) then the body. Every answer must be one
// JSON envelope with "success", a status in 100..599, and an error answer
// must carry a string "code" (docs/protocol.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <stdlib.h>

#include <boost/json.hpp>

#include "gateway/api.hpp"
#include "gateway/jwt.hpp"

using namespace aico::gateway;
namespace json = boost::json;

namespace {

struct world {
  std::string dir;
  std::unique_ptr<api> core;
  std::string alice;
  std::string root;
  uint64_t calls = 0;

  world() { restart(); }

  ~world() {
    core.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  std::string login(const std::string& user, const std::string& pw) {
    api_request r;
    r.method = "POST";
    r.target = "/api/v1/users/authenticate";
    r.body = R"({"username":")" + user + R"(","password":")" + pw + R"("})";
    auto resp = core->handle(r);
    auto v = json::parse(resp.body);
    return std::string{
      v.as_object().at("data").as_object().at("access_token").as_string()};
  }

  /// A fresh data directory now and then: the store would grow without end.
  void restart() {
    core.reset();
    std::error_code ec;
    if (!dir.empty())
      std::filesystem::remove_all(dir, ec);
    char tmpl[] = "/tmp/aico-fuzz-gw-XXXXXX";
    char* d = ::mkdtemp(tmpl);
    if (!d)
      std::abort();
    dir = d;
    gateway_config cfg;
    cfg.data_dir = dir;
    cfg.users = {{"alice", "alice-pw", "user"}, {"root", "root-pw", "admin"}};
    cfg.bot_enabled = false;
    cfg.enable_faults = false;
    core = std::make_unique<api>(cfg);
    alice = login("alice", "alice-pw");
    root = login("root", "root-pw");
  }
};

world& the_world() {
  static world w;
  return w;
}

/// Valid UTF-8 (what the WS and IPC doors can deliver in a string: the
/// JSON parser and protobuf check it; HTTP methods are tokens).
bool valid_utf8(std::string_view s) {
  // Boost.JSON's parser checks UTF-8 strictly, as it does at the WS door
  boost::system::error_code ec;
  json::parse(json::serialize(json::string{s.data(), s.size()}), ec);
  return !ec;
}

void check(const api_response& r) {
  if (r.status < 100 || r.status > 599)
    std::abort();
  boost::system::error_code ec;
  json::parse_options opt;
  opt.max_depth = 200;
  auto v = json::parse(r.body, ec, {}, opt);
  if (ec || !v.is_object())
    std::abort(); // every answer is an envelope
  auto& o = v.as_object();
  auto s = o.if_contains("success");
  if (!s || !s->is_bool())
    std::abort();
  if (r.status >= 400) {
    auto c = o.if_contains("code");
    if (s->as_bool() || !c || !c->is_string())
      std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = the_world();
  if (++w.calls % 20000 == 0)
    w.restart();
  std::string_view in{reinterpret_cast<const char*>(data), size};
  auto nl = in.find('\n');
  if (nl == std::string_view::npos || nl + 1 >= in.size())
    return 0;
  auto line = in.substr(0, nl);
  auto sp = line.find(' ');
  if (sp == std::string_view::npos)
    return 0;
  api_request r;
  r.method = std::string{line.substr(0, sp)};
  if (!valid_utf8(r.method))
    return 0; // no door delivers such a method
  r.target = std::string{line.substr(sp + 1)};
  switch (static_cast<uint8_t>(in[nl + 1]) % 5) {
    case 0:
      break;
    case 1:
      r.token = w.alice;
      break;
    case 2:
      r.token = w.root;
      break;
    case 3: {
      jwt_claims c;
      c.sub = "u_x";
      c.name = "x";
      c.role = "admin";
      c.jti = "j";
      c.iat = 1;
      c.exp = 2; // long expired, and signed with another secret
      r.token = jwt_sign(c, "not the gateway's secret");
      break;
    }
    default:
      r.token = std::string{in.substr(nl + 1, std::min<size_t>(64, in.size() - nl - 1))};
  }
  r.body = std::string{in.substr(nl + 2)};
  r.door = static_cast<front_door>(static_cast<uint8_t>(in[nl + 1]) / 5 % 3);
  r.peer = "fuzz";
  check(w.core->handle(r));
  return 0;
}
