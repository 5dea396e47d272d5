#include "support/peer_client.hpp"

#include <cctype>
#include <chrono>
#include <future>
#include <limits>
#include <stdexcept>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <sodium.h>

namespace aico::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;

namespace {

const unsigned char* u8(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* u8w(std::string& s) {
  return reinterpret_cast<unsigned char*>(s.data());
}

void ensure_sodium() {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium could not be initialised");
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

double unix_now() {
  return std::chrono::duration<double>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Runs `ioc` until `done` or the deadline; false on timeout.
bool run_until(net::io_context& ioc, const bool& done, steady::time_point dl) {
  while (!done) {
    if (steady::now() >= dl)
      return false;
    if (ioc.stopped())
      ioc.restart();
    if (ioc.run_one_until(dl) == 0 && !done && ioc.stopped())
      return done;
  }
  return true;
}

} // namespace

std::string b64(std::string_view bytes) {
  ensure_sodium();
  std::string out(
    sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL),
    '\0');
  sodium_bin2base64(out.data(), out.size(), u8(bytes), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

std::optional<std::string> unb64(std::string_view text) {
  ensure_sodium();
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(u8w(out), out.size(), text.data(), text.size(), nullptr,
                        &len, &end, sodium_base64_VARIANT_ORIGINAL)
        != 0
      || end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string to_hex(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), u8(bytes), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

std::string unb64url(std::string_view text) {
  ensure_sodium();
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(u8w(out), out.size(), text.data(), text.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
      != 0)
    return {};
  out.resize(len);
  return out;
}

std::string jwt_payload_text(const std::string& token) {
  auto parts = split(token, '.');
  if (parts.size() != 3)
    return {};
  return unb64url(parts[1]);
}

json::value jwt_payload(const std::string& token) {
  return parse_json(jwt_payload_text(token));
}

std::string aico_reply::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string{} : it->second;
}

std::string aico_stream::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string{} : it->second;
}

// -- aico_client
// ------------------------------------------------------------------

aico_client::aico_client(std::string host, uint16_t port, ms timeout)
  : aico_client(std::move(host), port, std::string{}, timeout) {}

aico_client::aico_client(std::string host, uint16_t port, std::string seed,
                         ms timeout)
  : host_(std::move(host)), port_(port), timeout_(timeout) {
  ensure_sodium();
  if (seed.empty()) {
    seed.resize(crypto_sign_SEEDBYTES);
    randombytes_buf(seed.data(), seed.size());
  }
  if (seed.size() != crypto_sign_SEEDBYTES)
    throw std::invalid_argument("the identity seed must be 32 bytes");
  sign_pk_.resize(crypto_sign_PUBLICKEYBYTES);
  sign_sk_.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(u8w(sign_pk_), u8w(sign_sk_), u8(seed));
  client_id_ = to_hex(sign_pk_).substr(0, 16);
}

std::string aico_client::identity_key_b64() const {
  return b64(sign_pk_);
}

json::object aico_client::handshake_request(double timestamp_offset_s) {
  eph_pk_.assign(crypto_box_PUBLICKEYBYTES, '\0');
  eph_sk_.assign(crypto_box_SECRETKEYBYTES, '\0');
  crypto_box_keypair(u8w(eph_pk_), u8w(eph_sk_));
  std::string challenge(32, '\0');
  randombytes_buf(challenge.data(), challenge.size());
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(u8w(sig), nullptr, u8(challenge), challenge.size(),
                       u8(sign_sk_));
  json::object hr{{"component", "flutter_client"},
                  {"identity_key", b64(sign_pk_)},
                  {"public_key", b64(eph_pk_)},
                  {"timestamp", unix_now() + timestamp_offset_s},
                  {"challenge", b64(challenge)},
                  {"signature", b64(sig)}};
  return json::object{{"handshake_request", std::move(hr)}};
}

bool aico_client::handshake(std::string* why) {
  auto fail = [&](std::string msg) {
    if (why)
      *why = std::move(msg);
    return false;
  };
  auto req = handshake_request();
  http_client c(host_, port_, timeout_);
  auto r = c.request("POST", "/api/v1/handshake", to_text(req));
  last_handshake_ = decode(std::move(r));
  auto& h = last_handshake_;
  if (h.status != 200)
    return fail("handshake answered " + std::to_string(h.status) + " " + h.raw
                + h.error);
  if (h.str("/status") != "session_established")
    return fail("no session_established in " + h.raw);
  auto pk = unb64(h.str("/handshake_response/public_key"));
  auto idk = unb64(h.str("/handshake_response/identity_key"));
  auto chal = unb64(h.str("/handshake_response/challenge"));
  auto sig = unb64(h.str("/handshake_response/signature"));
  if (!pk || !idk || !chal || !sig || pk->size() != crypto_box_PUBLICKEYBYTES
      || idk->size() != crypto_sign_PUBLICKEYBYTES
      || sig->size() != crypto_sign_BYTES)
    return fail("malformed handshake_response " + h.raw);
  if (crypto_sign_verify_detached(u8(*sig), u8(*chal), chal->size(), u8(*idk))
      != 0)
    return fail("the server's signature over its challenge does not verify");
  auto idk_b64 = b64(*idk);
  if (!pinned_.empty() && pinned_ != idk_b64)
    return fail("the server identity key changed (pinned " + pinned_ + ", got "
                + idk_b64 + ")");
  pinned_ = idk_b64;
  shared_.assign(crypto_box_BEFORENMBYTES, '\0');
  if (crypto_box_beforenm(u8w(shared_), u8(*pk), u8(eph_sk_)) != 0)
    return fail("degenerate server key");
  has_channel_ = true;
  return true;
}

std::string aico_client::seal(std::string_view plain) const {
  std::string out(crypto_box_NONCEBYTES + crypto_box_MACBYTES + plain.size(),
                  '\0');
  auto* nonce = u8w(out);
  randombytes_buf(nonce, crypto_box_NONCEBYTES);
  crypto_box_easy_afternm(nonce + crypto_box_NONCEBYTES, u8(plain),
                          plain.size(), nonce, u8(shared_));
  return b64(out);
}

std::optional<std::string> aico_client::open(std::string_view payload) const {
  auto raw = unb64(payload);
  if (!raw || raw->size() < crypto_box_NONCEBYTES + crypto_box_MACBYTES
      || shared_.empty())
    return std::nullopt;
  std::string_view ct = std::string_view(*raw).substr(crypto_box_NONCEBYTES);
  std::string out(ct.size() - crypto_box_MACBYTES, '\0');
  if (crypto_box_open_easy_afternm(u8w(out), u8(ct), ct.size(), u8(*raw),
                                   u8(shared_))
      != 0)
    return std::nullopt;
  return out;
}

std::string aico_client::envelope(const json::value& v) const {
  return to_text(json::object{{"encrypted", true},
                              {"payload", seal(to_text(v))},
                              {"client_id", client_id_}});
}

aico_reply aico_client::decode(http_response r) const {
  aico_reply out;
  out.status = r.status;
  out.error = r.error;
  out.headers = std::move(r.headers);
  out.raw = std::move(r.raw);
  out.elapsed = r.elapsed;
  out.plain = out.raw;
  auto v = parse_json(out.raw);
  if (v.is_object() && jtrue(v, "/encrypted")) {
    auto p = jptr(v, "/payload");
    if (p && p->is_string()) {
      if (auto plain = open(p->get_string())) {
        out.encrypted = true;
        out.plain = *plain;
        v = parse_json(out.plain);
      }
    }
  }
  out.json = std::move(v);
  return out;
}

aico_reply aico_client::call(const std::string& method, const std::string& path,
                             const json::value& body, const std::string& token,
                             const std::map<std::string, std::string>& extra) {
  return send_raw(method, path, envelope(body), token, extra);
}

aico_reply
aico_client::send_raw(const std::string& method, const std::string& path,
                      const std::string& raw_body, const std::string& token,
                      const std::map<std::string, std::string>& extra) {
  http_client c(host_, port_, timeout_);
  return decode(c.request(method, path, raw_body, token, extra));
}

aico_reply aico_client::login(const std::string& uuid, const std::string& pin) {
  return call("POST", "/api/v1/users/authenticate",
              json::object{{"user_uuid", uuid}, {"pin", pin}});
}

aico_stream aico_client::stream(const std::string& path,
                                const json::value& body,
                                const std::string& token, ms timeout) {
  aico_stream out;
  net::io_context ioc;
  beast::tcp_stream s(ioc);
  beast::flat_buffer buf;
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, host_ + ":" + std::to_string(port_));
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "close");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  req.body() = envelope(body);
  req.prepare_payload();
  http::response_parser<http::string_body> p;
  p.body_limit(std::numeric_limits<std::uint64_t>::max());
  std::string pending;
  auto t0 = steady::now();
  auto on_chunk
    = [&](std::uint64_t, beast::string_view data, error_code&) -> std::size_t {
    pending.append(data.data(), data.size());
    for (auto nl = pending.find('\n'); nl != std::string::npos;
         nl = pending.find('\n')) {
      out.raw_lines.push_back(pending.substr(0, nl));
      out.arrival.push_back(std::chrono::duration_cast<ms>(steady::now() - t0));
      pending.erase(0, nl + 1);
    }
    return data.size();
  };
  p.on_chunk_body(on_chunk);
  error_code result;
  bool done = false;
  s.expires_after(timeout);
  s.async_connect(
    tcp::endpoint(net::ip::make_address(host_), port_), [&](error_code ec) {
      if (ec) {
        result = ec;
        done = true;
        return;
      }
      http::async_write(s, req, [&](error_code ec, std::size_t) {
        if (ec) {
          result = ec;
          done = true;
          return;
        }
        http::async_read(s, buf, p, [&](error_code ec, std::size_t) {
          result = ec;
          done = true;
        });
      });
    });
  ioc.run();
  if (!done)
    result = net::error::timed_out;
  if (result)
    out.error = result == beast::error::timeout ? "timeout" : result.message();
  if (p.is_header_done()) {
    auto& res = p.get();
    out.status = static_cast<int>(res.result_int());
    for (auto& f : res)
      out.headers[lower(std::string(f.name_string()))] = std::string(f.value());
    if (!p.chunked()) {
      http_response hr;
      hr.status = out.status;
      hr.headers = out.headers;
      hr.raw = res.body();
      out.body = decode(std::move(hr));
    }
  }
  out.complete = !result && p.is_done();
  for (auto& raw : out.raw_lines) {
    auto v = parse_json(raw);
    if (v.is_object() && jtrue(v, "/encrypted")) {
      auto pl = jptr(v, "/payload");
      if (pl && pl->is_string())
        if (auto plain = open(pl->get_string()))
          v = parse_json(*plain);
    }
    out.lines.push_back(std::move(v));
  }
  return out;
}

// -- peer_ws
// ---------------------------------------------------------------------------

struct peer_ws::impl {
  net::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer buf;
};

peer_ws::peer_ws(std::string host, uint16_t port, ms timeout)
  : impl_(std::make_unique<impl>()), host_(std::move(host)), port_(port),
    timeout_(timeout) {}

peer_ws::~peer_ws() {
  close();
}

bool peer_ws::connect(const std::string& path,
                      const std::map<std::string, std::string>& headers) {
  auto& ws = impl_->ws;
  ws.set_option(
    websocket::stream_base::decorator([headers](websocket::request_type& req) {
      for (auto& [k, v] : headers)
        req.set(k, v);
    }));
  ws.read_message_max(64 * 1024 * 1024);
  bool done = false;
  error_code result;
  beast::get_lowest_layer(ws).async_connect(
    tcp::endpoint(net::ip::make_address(host_), port_), [&](error_code ec) {
      if (ec) {
        result = ec;
        done = true;
        return;
      }
      ws.async_handshake(host_ + ":" + std::to_string(port_), path,
                         [&](error_code ec) {
                           result = ec;
                           done = true;
                         });
    });
  if (!run_until(impl_->ioc, done, steady::now() + timeout_)) {
    beast::get_lowest_layer(ws).close();
    impl_->ioc.restart();
    impl_->ioc.run_for(std::chrono::milliseconds(200));
    error_ = "connect timeout";
    return false;
  }
  if (result) {
    error_ = result.message();
    beast::get_lowest_layer(ws).close();
    return false;
  }
  open_ = true;
  auto loop = std::make_shared<std::function<void()>>();
  *loop = [this, loop]() {
    impl_->ws.async_read(impl_->buf, [this, loop](error_code ec, std::size_t) {
      if (ec) {
        std::lock_guard lk(mu_);
        close_code_ = static_cast<int>(impl_->ws.reason().code);
        close_reason_ = std::string(impl_->ws.reason().reason.c_str());
        closed_ = true;
        cv_.notify_all();
        return;
      }
      {
        std::lock_guard lk(mu_);
        frames_.push_back(beast::buffers_to_string(impl_->buf.data()));
      }
      impl_->buf.consume(impl_->buf.size());
      cv_.notify_all();
      (*loop)();
    });
  };
  impl_->ioc.restart();
  net::post(impl_->ioc, [loop] { (*loop)(); });
  reader_ = std::thread([this, loop]() mutable {
    impl_->ioc.run();
    *loop = nullptr;
  });
  return true;
}

bool peer_ws::send_text(const std::string& text) {
  if (!open_ || closed_)
    return false;
  auto prom = std::make_shared<std::promise<error_code>>();
  auto fut = prom->get_future();
  auto msg = std::make_shared<std::string>(text);
  net::post(impl_->ioc, [this, prom, msg] {
    impl_->ws.text(true);
    impl_->ws.async_write(
      net::buffer(*msg),
      [prom, msg](error_code ec, std::size_t) { prom->set_value(ec); });
  });
  if (fut.wait_for(timeout_) != std::future_status::ready) {
    error_ = "send timeout";
    return false;
  }
  auto ec = fut.get();
  if (ec)
    error_ = ec.message();
  return !ec;
}

std::optional<std::string> peer_ws::receive_text(ms timeout) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return !frames_.empty() || closed_; }))
    return std::nullopt;
  if (frames_.empty())
    return std::nullopt;
  auto f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

std::optional<json::value> peer_ws::receive(ms timeout) {
  auto t = receive_text(timeout);
  if (!t)
    return std::nullopt;
  auto v = parse_json(*t);
  if (v.is_null())
    return json::value(json::object{{"_raw", *t}});
  return v;
}

std::optional<json::value> peer_ws::receive_type(const std::string& type,
                                                 ms timeout) {
  auto deadline = steady::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - steady::now());
    if (left.count() <= 0)
      return std::nullopt;
    auto v = receive(left);
    if (!v)
      return std::nullopt;
    if (jstr(*v, "/type") == type)
      return v;
  }
}

bool peer_ws::wait_closed(ms timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return closed_.load(); });
}

std::string peer_ws::close_reason() const {
  std::lock_guard lk(mu_);
  return close_reason_;
}

void peer_ws::close() {
  if (!open_)
    return;
  if (!closed_) {
    net::post(impl_->ioc, [this] {
      impl_->ws.async_close(websocket::close_code::normal, [](error_code) {});
    });
    wait_closed(std::chrono::milliseconds(1000));
  }
  net::post(impl_->ioc, [this] {
    error_code ignored;
    beast::get_lowest_layer(impl_->ws).socket().close(ignored);
  });
  for (int i = 0; i < 50 && !impl_->ioc.stopped(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->ioc.stop();
  if (reader_.joinable())
    reader_.join();
  open_ = false;
}

} // namespace aico::test
