#include "support/peer_client.hpp"

#include "src/profile/aico/secure_channel.hpp"

#include <cctype>
#include <chrono>
#include <future>
#include <limits>
#include <stdexcept>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace aico::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;

namespace {

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

// The cryptography is the engine's own aico profile (src/profile/aico):
// base64, the identity, the handshake and the envelope.

std::string b64(std::string_view bytes) {
  return ::aico::aico_profile::b64_encode(bytes);
}

std::optional<std::string> unb64(std::string_view text) {
  return ::aico::aico_profile::b64_decode(text);
}

std::string to_hex(std::string_view bytes) {
  return ::aico::aico_profile::hex(bytes);
}

std::string unb64url(std::string_view text) {
  auto out = ::aico::aico_profile::b64url_decode(text);
  return out ? *out : std::string{};
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
  ::aico::aico_profile::identity id;
  if (seed.empty()) {
    id = ::aico::aico_profile::random_identity();
  } else {
    auto from_seed = ::aico::aico_profile::identity_from_seed(seed);
    if (!from_seed)
      throw std::invalid_argument("the identity seed must be 32 bytes");
    id = *from_seed;
  }
  if (id.public_key.empty())
    throw std::runtime_error("libsodium could not be initialised");
  channel_ = std::make_unique<::aico::aico_profile::secure_channel>(
    std::move(id), ::aico::aico_profile::channel_options{},
    ::aico::aico_profile::secure_channel::clock_fn{},
    [offset = timestamp_offset_] { return unix_now() + *offset; });
  client_id_ = channel_->client_id();
}

aico_client::~aico_client() = default;
aico_client::aico_client(aico_client&&) noexcept = default;
aico_client& aico_client::operator=(aico_client&&) noexcept = default;

aico_client::aico_client(const aico_client& other)
  : host_(other.host_), port_(other.port_), timeout_(other.timeout_),
    channel_(std::make_unique<::aico::aico_profile::secure_channel>(
      *other.channel_)),
    timestamp_offset_(other.timestamp_offset_), client_id_(other.client_id_),
    pinned_(other.pinned_), has_channel_(other.has_channel_),
    last_handshake_(other.last_handshake_) {}

aico_client& aico_client::operator=(const aico_client& other) {
  if (this != &other) {
    aico_client copy(other);
    *this = std::move(copy);
  }
  return *this;
}

std::string aico_client::identity_key_b64() const {
  return b64(channel_->id().public_key);
}

json::object aico_client::handshake_request(double timestamp_offset_s) {
  *timestamp_offset_ = timestamp_offset_s;
  auto text = channel_->begin_handshake();
  *timestamp_offset_ = 0;
  auto v = parse_json(text);
  return v.is_object() ? v.as_object() : json::object{};
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
  auto res = channel_->accept(h.status, h.raw, pinned_);
  if (!res.ok) {
    has_channel_ = false;
    return fail(res.error + " (" + h.raw + ")");
  }
  pinned_ = res.server_identity;
  has_channel_ = true;
  return true;
}

std::string aico_client::seal(std::string_view plain) const {
  return channel_->seal(plain);
}

std::optional<std::string> aico_client::open(std::string_view payload) const {
  return channel_->open(payload);
}

std::string aico_client::envelope(const json::value& v) const {
  return channel_->envelope(to_text(v));
}

aico_reply aico_client::decode(http_response r) const {
  aico_reply out;
  out.status = r.status;
  out.error = r.error;
  out.headers = std::move(r.headers);
  out.raw = std::move(r.raw);
  out.elapsed = r.elapsed;
  auto u = channel_->unwrap(out.raw);
  out.encrypted = u.kind == ::aico::aico_profile::body_kind::decrypted;
  out.plain = out.encrypted ? std::move(u.text) : out.raw;
  out.json = parse_json(out.plain);
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
