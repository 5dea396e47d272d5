#include "support/clients.hpp"

#include <algorithm>
#include <cctype>
#include <future>
#include <limits>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "gateway/tls_stream.hpp"

namespace aico::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using clock = std::chrono::steady_clock;
using aico::gateway::maybe_tls_stream;
namespace ssl = net::ssl;

// -- JSON helpers --------------------------------------------------------------

json::value parse_json(std::string_view text) {
  error_code ec;
  auto v = json::parse(text, ec);
  if (ec)
    return nullptr;
  return v;
}

const json::value* jptr(const json::value& v, std::string_view pointer) {
  error_code ec;
  return v.find_pointer(pointer, ec);
}

std::string jstr(const json::value& v, std::string_view pointer) {
  auto p = jptr(v, pointer);
  if (p == nullptr || !p->is_string())
    return {};
  return std::string(p->get_string());
}

int64_t jint(const json::value& v, std::string_view pointer, int64_t dflt) {
  auto p = jptr(v, pointer);
  if (p == nullptr)
    return dflt;
  if (p->is_int64())
    return p->get_int64();
  if (p->is_uint64())
    return static_cast<int64_t>(p->get_uint64());
  if (p->is_double())
    return static_cast<int64_t>(p->get_double());
  return dflt;
}

bool jtrue(const json::value& v, std::string_view pointer) {
  auto p = jptr(v, pointer);
  return p != nullptr && p->is_bool() && p->get_bool();
}

std::string to_text(const json::value& v) { return json::serialize(v); }

std::string base64url_encode(std::string_view in) {
  static const char* tbl =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  while (i + 2 < in.size()) {
    uint32_t n = (static_cast<uint8_t>(in[i]) << 16)
                 | (static_cast<uint8_t>(in[i + 1]) << 8)
                 | static_cast<uint8_t>(in[i + 2]);
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
    out += tbl[(n >> 6) & 63];
    out += tbl[n & 63];
    i += 3;
  }
  if (i + 1 == in.size()) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
  } else if (i + 2 == in.size()) {
    uint32_t n = (static_cast<uint8_t>(in[i]) << 16)
                 | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += tbl[(n >> 18) & 63];
    out += tbl[(n >> 12) & 63];
    out += tbl[(n >> 6) & 63];
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    if (pos == std::string::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

namespace {

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Runs `ioc` until `done` is set or the deadline passes. Returns whether
/// `done` was set.
bool run_until(net::io_context& ioc, const bool& done,
               clock::time_point deadline) {
  while (!done) {
    if (clock::now() >= deadline)
      return false;
    if (ioc.stopped())
      ioc.restart();
    auto n = ioc.run_one_until(deadline);
    if (n == 0 && !done && ioc.stopped() && clock::now() < deadline) {
      // No work left but not done: nothing more can happen.
      return done;
    }
  }
  return true;
}

/// Drains aborted handlers after a socket was closed (bounded).
void drain(net::io_context& ioc) {
  ioc.restart();
  ioc.run_for(std::chrono::milliseconds(500));
}

/// The client context of `t` (verification on), or null without TLS.
std::shared_ptr<ssl::context> client_context(const tls_client_options& t,
                                             std::string& error) {
  if (!t.enabled)
    return nullptr;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  error_code ec;
  if (t.ca_file.empty())
    ctx->set_default_verify_paths(ec);
  else
    ctx->load_verify_file(t.ca_file, ec);
  if (!ec && !t.client_cert.empty())
    ctx->use_certificate_chain_file(t.client_cert, ec);
  if (!ec && !t.client_key.empty())
    ctx->use_private_key_file(t.client_key, ssl::context::pem, ec);
  if (ec) {
    error = "tls setup: " + ec.message();
    return nullptr;
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

/// A plaintext or TLS stream on `ioc` (TLS: host name check and SNI).
maybe_tls_stream make_stream(net::io_context& ioc, ssl::context* ctx,
                             const std::string& host) {
  beast::tcp_stream tcp(ioc);
  if (!ctx)
    return maybe_tls_stream(std::move(tcp));
  maybe_tls_stream s(std::move(tcp), *ctx);
  s.tls().set_verify_callback(ssl::host_name_verification(host));
  error_code not_an_address;
  net::ip::make_address(host, not_an_address);
  if (not_an_address) // SNI carries names only
    SSL_set_tlsext_host_name(s.tls().native_handle(), host.c_str());
  return s;
}

/// Connects `s` to host:port (from `local` if set) and does the TLS
/// handshake if it is a TLS stream; `then(ec)` runs at the end.
template <class F>
void async_open(maybe_tls_stream& s, const std::string& host, uint16_t port,
                const std::string& local, F then) {
  tcp::endpoint ep(net::ip::make_address(host), port);
  if (!local.empty()) {
    error_code ec;
    s.socket().open(ep.protocol(), ec);
    if (!ec)
      s.socket().bind(tcp::endpoint(net::ip::make_address(local), 0), ec);
    if (ec) {
      then(ec);
      return;
    }
  }
  s.next_layer().async_connect(ep, [&s, then](error_code ec) mutable {
    if (ec || !s.is_tls()) {
      then(ec);
      return;
    }
    s.tls().async_handshake(ssl::stream_base::client,
                            [then](error_code ec) mutable { then(ec); });
  });
}

std::string tls_error_text(const error_code& ec) {
  std::string m = ec.message();
  if (ec.category() == net::error::get_ssl_category()) {
    auto reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
      return "tls: certificate verify failed (" + m + ")";
    return "tls: " + m;
  }
  return m;
}

json::value parse_frame(const std::string& text) {
  error_code ec;
  auto v = json::parse(text, ec);
  if (ec)
    return json::object{{"_raw", text}};
  return v;
}

} // namespace

// -- HTTP ------------------------------------------------------------------------

std::string http_response::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string{} : it->second;
}

const json::value& http_response::data() const {
  static const json::value null_value;
  auto p = jptr(body, "/data");
  return p ? *p : null_value;
}

http_client::http_client(std::string host, uint16_t port, ms timeout)
  : host_(std::move(host)), port_(port), timeout_(timeout) {}

http_response http_client::request(const std::string& method,
                                   const std::string& path,
                                   const std::string& body,
                                   const std::string& token,
                                   const std::map<std::string, std::string>&
                                     extra) {
  http_response out;
  auto start = clock::now();
  auto deadline = start + timeout_;
  net::io_context ioc;
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(path);
  req.version(11);
  req.set(http::field::host, host_ + ":" + std::to_string(port_));
  req.set(http::field::connection, "close");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty())
    req.set(http::field::content_type, "application/json");
  for (auto& [k, v] : extra)
    req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());

  bool done = false;
  error_code result;
  auto ctx = client_context(tls_, out.error);
  if (tls_.enabled && !ctx)
    return out;
  auto stream = make_stream(ioc, ctx.get(), host_);
  bool opened = false;
  async_open(stream, host_, port_, local_, [&](error_code ec) {
    if (ec) {
      result = ec;
      done = true;
      return;
    }
    opened = true;
    http::async_write(stream, req, [&](error_code ec, std::size_t) {
      // A server may answer (e.g. 413) and close before reading the whole
      // body; still try to read its response.
      (void)ec;
      http::async_read(stream, buf, parser, [&](error_code ec, std::size_t) {
        result = ec;
        done = true;
      });
    });
  });
  if (!run_until(ioc, done, deadline)) {
    error_code ignored;
    stream.socket().close(ignored);
    drain(ioc);
    out.error = "timeout after " + std::to_string(timeout_.count()) + " ms";
    out.elapsed = std::chrono::duration_cast<ms>(clock::now() - start);
    return out;
  }
  if (!opened) {
    out.error = tls_error_text(result);
    out.elapsed = std::chrono::duration_cast<ms>(clock::now() - start);
    return out;
  }
  out.elapsed = std::chrono::duration_cast<ms>(clock::now() - start);
  if (result && !(parser.is_header_done())) {
    out.error = tls_error_text(result);
    return out;
  }
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  for (auto& f : res)
    out.headers[lower(std::string(f.name_string()))] = std::string(f.value());
  out.raw = res.body();
  out.body = parse_json(out.raw);
  if (result && result != http::error::end_of_stream
      && result != ssl::error::stream_truncated)
    out.error = result.message();
  return out;
}

struct http_connection::impl {
  net::io_context ioc;
  tcp::socket sock{ioc};
  beast::flat_buffer buf;
};

http_connection::http_connection(std::string host, uint16_t port, ms timeout)
  : impl_(std::make_unique<impl>()), host_(std::move(host)), port_(port),
    timeout_(timeout) {}

http_connection::~http_connection() {
  error_code ignored;
  impl_->sock.close(ignored);
}

bool http_connection::connect() {
  bool done = false;
  error_code result;
  tcp::endpoint ep(net::ip::make_address(host_), port_);
  impl_->sock.async_connect(ep, [&](error_code ec) {
    result = ec;
    done = true;
  });
  if (!run_until(impl_->ioc, done, clock::now() + timeout_) || result) {
    error_code ignored;
    impl_->sock.close(ignored);
    drain(impl_->ioc);
    return false;
  }
  return true;
}

http_response http_connection::request(const std::string& method,
                                       const std::string& path,
                                       const std::string& body,
                                       const std::string& token) {
  http_response out;
  auto start = clock::now();
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(path);
  req.version(11);
  req.set(http::field::host, host_ + ":" + std::to_string(port_));
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty())
    req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  bool done = false;
  error_code result;
  http::async_write(impl_->sock, req, [&](error_code ec, std::size_t) {
    if (ec) {
      result = ec;
      done = true;
      return;
    }
    http::async_read(impl_->sock, impl_->buf, parser,
                     [&](error_code ec, std::size_t) {
                       result = ec;
                       done = true;
                     });
  });
  if (!run_until(impl_->ioc, done, start + timeout_)) {
    error_code ignored;
    impl_->sock.close(ignored);
    drain(impl_->ioc);
    out.error = "timeout";
    return out;
  }
  out.elapsed = std::chrono::duration_cast<ms>(clock::now() - start);
  if (result) {
    out.error = result.message();
    server_closed_ = true;
    return out;
  }
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  for (auto& f : res)
    out.headers[lower(std::string(f.name_string()))] = std::string(f.value());
  out.raw = res.body();
  out.body = parse_json(out.raw);
  if (!res.keep_alive())
    server_closed_ = true;
  return out;
}

// -- WebSocket -------------------------------------------------------------------

struct ws_client::impl {
  net::io_context ioc;
  std::shared_ptr<ssl::context> tls;
  std::optional<websocket::stream<maybe_tls_stream>> ws;
  beast::flat_buffer buf;
};

ws_client::ws_client(std::string host, uint16_t port, ms timeout)
  : impl_(std::make_unique<impl>()), host_(std::move(host)), port_(port),
    timeout_(timeout) {}

ws_client::~ws_client() { close(); }

bool ws_client::connect(const std::string& token, const std::string& path) {
  auto deadline = clock::now() + timeout_;
  impl_->tls = client_context(tls_, error_);
  if (tls_.enabled && !impl_->tls)
    return false;
  impl_->ws.emplace(make_stream(impl_->ioc, impl_->tls.get(), host_));
  auto& ws = *impl_->ws;
  ws.set_option(websocket::stream_base::decorator(
    [token](websocket::request_type& req) {
      if (!token.empty())
        req.set(http::field::authorization, "Bearer " + token);
    }));
  ws.read_message_max(64 * 1024 * 1024);
  websocket::response_type res;
  bool done = false;
  error_code result;
  bool opened = false;
  async_open(ws.next_layer(), host_, port_, "", [&](error_code ec) {
    if (ec) {
      result = ec;
      done = true;
      return;
    }
    opened = true;
    ws.async_handshake(res, host_ + ":" + std::to_string(port_), path,
                       [&](error_code ec) {
                         result = ec;
                         done = true;
                       });
  });
  if (!run_until(impl_->ioc, done, deadline)) {
    beast::get_lowest_layer(ws).close();
    drain(impl_->ioc);
    error_ = "connect timeout";
    return false;
  }
  if (result) {
    handshake_status_ = static_cast<int>(res.result_int());
    handshake_body_ = res.body();
    error_ = opened ? result.message() : tls_error_text(result);
    beast::get_lowest_layer(ws).close();
    drain(impl_->ioc);
    return false;
  }
  handshake_status_ = static_cast<int>(res.result_int());
  open_ = true;
  closed_ = false;
  // The reader: one async_read outstanding at a time, on the io thread.
  auto read_loop = std::make_shared<std::function<void()>>();
  *read_loop = [this, read_loop]() {
    impl_->ws->async_read(impl_->buf, [this, read_loop](error_code ec,
                                                       std::size_t) {
      if (ec) {
        close_code_ = static_cast<int>(impl_->ws->reason().code);
        {
          std::lock_guard lk(mu_);
          closed_ = true;
        }
        cv_.notify_all();
        return;
      }
      auto text = beast::buffers_to_string(impl_->buf.data());
      impl_->buf.consume(impl_->buf.size());
      {
        std::lock_guard lk(mu_);
        frames_.push_back(parse_frame(text));
      }
      cv_.notify_all();
      (*read_loop)();
    });
  };
  impl_->ioc.restart();
  net::post(impl_->ioc, [read_loop] { (*read_loop)(); });
  reader_ = std::thread([this, read_loop]() mutable {
    impl_->ioc.run();
    *read_loop = nullptr; // break the self-reference cycle
  });
  return true;
}

bool ws_client::send_text(const std::string& text) {
  if (!open_ || closed_)
    return false;
  auto prom = std::make_shared<std::promise<error_code>>();
  auto fut = prom->get_future();
  auto msg = std::make_shared<std::string>(text);
  net::post(impl_->ioc, [this, prom, msg] {
    impl_->ws->text(true);
    impl_->ws->async_write(net::buffer(*msg),
                          [prom, msg](error_code ec, std::size_t) {
                            prom->set_value(ec);
                          });
  });
  if (fut.wait_for(timeout_) != std::future_status::ready) {
    error_ = "send timeout";
    return false;
  }
  auto ec = fut.get();
  if (ec) {
    error_ = ec.message();
    return false;
  }
  return true;
}

std::optional<json::value> ws_client::receive(ms timeout) {
  return receive_if([](const json::value&) { return true; }, timeout);
}

std::optional<json::value>
ws_client::receive_if(const std::function<bool(const json::value&)>& pred,
                      ms timeout) {
  auto deadline = clock::now() + timeout;
  std::unique_lock lk(mu_);
  for (;;) {
    for (auto it = frames_.begin(); it != frames_.end(); ++it) {
      if (pred(*it)) {
        auto v = std::move(*it);
        frames_.erase(it);
        return v;
      }
    }
    if (closed_)
      return std::nullopt;
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout) {
      // One last scan happens in the next iteration only if not timed out.
      for (auto it = frames_.begin(); it != frames_.end(); ++it) {
        if (pred(*it)) {
          auto v = std::move(*it);
          frames_.erase(it);
          return v;
        }
      }
      return std::nullopt;
    }
  }
}

std::optional<json::value> ws_client::receive_type(const std::string& type,
                                                   ms timeout) {
  return receive_if(
    [&](const json::value& v) { return jstr(v, "/type") == type; }, timeout);
}

std::optional<json::value>
ws_client::receive_event(const std::string& topic,
                         const std::function<bool(const json::value&)>& pred,
                         ms timeout) {
  return receive_if(
    [&](const json::value& v) {
      return jstr(v, "/type") == "event" && jstr(v, "/topic") == topic
             && (!pred || pred(v));
    },
    timeout);
}

std::optional<json::value> ws_client::request(const std::string& method,
                                              const std::string& path,
                                              const json::value& body,
                                              ms timeout) {
  std::string id = "req-" + std::to_string(next_id_++);
  json::object frame{{"type", "request"},
                     {"id", id},
                     {"method", method},
                     {"path", path}};
  if (!body.is_null())
    frame["body"] = body;
  if (!send(frame))
    return std::nullopt;
  return receive_if(
    [&](const json::value& v) {
      return jstr(v, "/type") == "response" && jstr(v, "/id") == id;
    },
    timeout);
}

bool ws_client::wait_closed(ms timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return closed_.load(); });
}

std::size_t ws_client::queued() const {
  std::lock_guard lk(mu_);
  return frames_.size();
}

void ws_client::clear() {
  std::lock_guard lk(mu_);
  frames_.clear();
}

void ws_client::close() {
  if (!open_ || !impl_->ws)
    return;
  if (!closed_) {
    net::post(impl_->ioc, [this] {
      impl_->ws->async_close(websocket::close_code::normal,
                            [](error_code) {});
    });
    wait_closed(std::chrono::milliseconds(1000));
  }
  net::post(impl_->ioc, [this] {
    error_code ignored;
    beast::get_lowest_layer(*impl_->ws).socket().close(ignored);
  });
  // Give the aborted handlers a moment, then stop the loop regardless.
  for (int i = 0; i < 50 && !impl_->ioc.stopped(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->ioc.stop();
  if (reader_.joinable())
    reader_.join();
  open_ = false;
}

// -- Server-Sent Events ----------------------------------------------------------

struct sse_client::impl {
  net::io_context ioc;
  std::shared_ptr<ssl::context> tls;
  std::optional<maybe_tls_stream> sock;
  beast::flat_buffer buf;
  http::request<http::empty_body> req;
  http::response_parser<http::string_body> parser;
  std::string pending; ///< body text not yet split into events
};

sse_client::sse_client(std::string host, uint16_t port, ms timeout)
  : impl_(std::make_unique<impl>()), host_(std::move(host)), port_(port),
    timeout_(timeout) {}

sse_client::~sse_client() { close(); }

int sse_client::connect(const std::string& token, const std::string& path,
                        const std::map<std::string, std::string>& extra) {
  auto deadline = clock::now() + timeout_;
  auto& im = *impl_;
  im.req.method(http::verb::get);
  im.req.target(path);
  im.req.version(11);
  im.req.set(http::field::host, host_ + ":" + std::to_string(port_));
  im.req.set(http::field::accept, "text/event-stream");
  if (!token.empty())
    im.req.set(http::field::authorization, "Bearer " + token);
  for (auto& [k, v] : extra)
    im.req.set(k, v);
  im.parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  bool done = false;
  error_code result;
  im.tls = client_context(tls_, error_);
  if (tls_.enabled && !im.tls) {
    closed_ = true;
    return 0;
  }
  im.sock.emplace(make_stream(im.ioc, im.tls.get(), host_));
  async_open(*im.sock, host_, port_, "", [&](error_code ec) {
    if (ec) {
      result = ec;
      done = true;
      return;
    }
    http::async_write(*im.sock, im.req, [&](error_code ec, std::size_t) {
      if (ec) {
        result = ec;
        done = true;
        return;
      }
      http::async_read_header(*im.sock, im.buf, im.parser,
                              [&](error_code ec, std::size_t) {
                                result = ec;
                                done = true;
                              });
    });
  });
  if (!run_until(im.ioc, done, deadline) || result) {
    error_ = result ? tls_error_text(result) : "timeout";
    error_code ignored;
    im.sock->socket().close(ignored);
    drain(im.ioc);
    closed_ = true;
    return 0;
  }
  auto& res = im.parser.get();
  int status = static_cast<int>(res.result_int());
  for (auto& f : res)
    headers_[lower(std::string(f.name_string()))] = std::string(f.value());
  if (status != 200) {
    done = false;
    http::async_read(*im.sock, im.buf, im.parser,
                     [&](error_code ec, std::size_t) {
                       result = ec;
                       done = true;
                     });
    if (!run_until(im.ioc, done, deadline)) {
      error_code ignored;
      im.sock->socket().close(ignored);
      drain(im.ioc);
    }
    body_ = im.parser.get().body();
    closed_ = true;
    return status;
  }

  auto read_loop = std::make_shared<std::function<void()>>();
  *read_loop = [this, read_loop]() {
    auto& im = *impl_;
    http::async_read_some(*im.sock, im.buf, im.parser, [this, read_loop](
                                                        error_code ec,
                                                        std::size_t) {
      auto& im = *impl_;
      auto& body = im.parser.get().body();
      im.pending += body;
      body.clear();
      std::vector<sse_event> got;
      // Normalize CRLF, then split on blank lines.
      for (;;) {
        std::string::size_type pos;
        while ((pos = im.pending.find("\r\n")) != std::string::npos)
          im.pending.replace(pos, 2, "\n");
        auto end = im.pending.find("\n\n");
        if (end == std::string::npos)
          break;
        std::string block = im.pending.substr(0, end);
        im.pending.erase(0, end + 2);
        sse_event ev;
        bool has_field = false;
        for (auto& line : split(block, '\n')) {
          if (line.empty())
            continue;
          if (line[0] == ':') {
            ++comments_;
            continue;
          }
          auto colon = line.find(':');
          std::string field = line.substr(0, colon);
          std::string value =
            colon == std::string::npos ? "" : line.substr(colon + 1);
          if (!value.empty() && value[0] == ' ')
            value.erase(0, 1);
          if (field == "id") {
            ev.id = value;
            has_field = true;
          } else if (field == "event") {
            ev.event = value;
            has_field = true;
          } else if (field == "data") {
            if (!ev.data.empty())
              ev.data += "\n";
            ev.data += value;
            has_field = true;
          }
        }
        if (has_field) {
          if (ev.event.empty())
            ev.event = "message";
          ev.json = parse_json(ev.data);
          got.push_back(std::move(ev));
        }
      }
      bool finished = ec || im.parser.is_done();
      {
        std::lock_guard lk(mu_);
        for (auto& e : got)
          events_.push_back(std::move(e));
        if (finished)
          closed_ = true;
      }
      cv_.notify_all();
      if (!finished)
        (*read_loop)();
    });
  };
  im.ioc.restart();
  net::post(im.ioc, [read_loop] { (*read_loop)(); });
  reader_ = std::thread([this, read_loop]() mutable {
    impl_->ioc.run();
    *read_loop = nullptr;
  });
  return status;
}

std::optional<sse_event>
sse_client::receive(const std::string& topic,
                    const std::function<bool(const sse_event&)>& pred,
                    ms timeout) {
  auto deadline = clock::now() + timeout;
  std::unique_lock lk(mu_);
  auto scan = [&]() -> std::optional<sse_event> {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if ((topic.empty() || it->event == topic) && (!pred || pred(*it))) {
        auto e = std::move(*it);
        events_.erase(it);
        return e;
      }
    }
    return std::nullopt;
  };
  for (;;) {
    if (auto e = scan())
      return e;
    if (closed_)
      return std::nullopt;
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout)
      return scan();
  }
}

bool sse_client::wait_closed(ms timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return closed_.load(); });
}

void sse_client::close() {
  if (reader_.joinable()) {
    net::post(impl_->ioc, [this] {
      error_code ignored;
      impl_->sock->socket().close(ignored);
    });
    for (int i = 0; i < 50 && !impl_->ioc.stopped(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    impl_->ioc.stop();
    reader_.join();
  }
  closed_ = true;
}

// -- IPC -------------------------------------------------------------------------

struct ipc_client::impl {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
};

struct silent_ipc_peer::impl {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::router};
};

silent_ipc_peer::silent_ipc_peer(const std::string& endpoint)
  : impl_(std::make_unique<impl>()) {
  impl_->sock.set(zmq::sockopt::linger, 0);
  impl_->sock.bind(endpoint);
}

silent_ipc_peer::~silent_ipc_peer() {
  impl_->sock.close();
  impl_->ctx.close();
}

ipc_client::ipc_client(const std::string& endpoint)
  : impl_(std::make_unique<impl>()) {
  impl_->sock.set(zmq::sockopt::linger, 0);
  impl_->sock.connect(endpoint);
}

ipc_client::ipc_client(const std::string& endpoint,
                       const curve_client_options& curve)
  : impl_(std::make_unique<impl>()) {
  impl_->sock.set(zmq::sockopt::linger, 0);
  impl_->sock.set(zmq::sockopt::curve_serverkey, curve.server_key);
  impl_->sock.set(zmq::sockopt::curve_publickey, curve.public_key);
  impl_->sock.set(zmq::sockopt::curve_secretkey, curve.secret_key);
  impl_->sock.connect(endpoint);
}

std::pair<std::string, std::string> curve_keypair() {
  char pub[41] = {0};
  char sec[41] = {0};
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error("zmq_curve_keypair failed");
  return {pub, sec};
}

ipc_client::~ipc_client() {
  impl_->sock.close();
  impl_->ctx.close();
}

std::string ipc_client::next_id() { return "ipc-" + std::to_string(next_id_++); }

bool ipc_client::send(const aico::ipc::Frame& f, bool with_delimiter) {
  std::string bytes;
  if (!f.SerializeToString(&bytes))
    return false;
  try {
    if (with_delimiter) {
      if (!impl_->sock.send(zmq::message_t{}, zmq::send_flags::sndmore
                                                | zmq::send_flags::dontwait))
        return false;
    }
    auto r = impl_->sock.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    return r.has_value();
  } catch (const zmq::error_t& e) {
    error_ = e.what();
    return false;
  }
}

bool ipc_client::send_raw(const std::string& bytes) {
  try {
    auto r = impl_->sock.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    return r.has_value();
  } catch (const zmq::error_t& e) {
    error_ = e.what();
    return false;
  }
}

bool ipc_client::send_parts(const std::vector<std::string>& parts) {
  try {
    for (std::size_t i = 0; i < parts.size(); ++i) {
      auto flags = zmq::send_flags::dontwait;
      if (i + 1 < parts.size())
        flags = flags | zmq::send_flags::sndmore;
      if (!impl_->sock.send(zmq::buffer(parts[i]), flags))
        return false;
    }
    return true;
  } catch (const zmq::error_t& e) {
    error_ = e.what();
    return false;
  }
}

bool ipc_client::recv_one(ms timeout) {
  zmq::pollitem_t items[] = {
    {static_cast<void*>(impl_->sock), 0, ZMQ_POLLIN, 0}};
  int rc = zmq::poll(items, 1, timeout);
  if (rc <= 0 || !(items[0].revents & ZMQ_POLLIN))
    return false;
  std::vector<zmq::message_t> parts;
  auto r = zmq::recv_multipart(impl_->sock, std::back_inserter(parts),
                               zmq::recv_flags::dontwait);
  if (!r || parts.empty())
    return false;
  last_delim_ = parts.size() > 1 && parts.front().size() == 0;
  aico::ipc::Frame f;
  auto& last = parts.back();
  if (!f.ParseFromArray(last.data(), static_cast<int>(last.size()))) {
    error_ = "unparseable frame from gateway";
    return false;
  }
  queue_.push_back(std::move(f));
  return true;
}

std::optional<aico::ipc::Frame> ipc_client::receive(ms timeout) {
  return receive_if([](const aico::ipc::Frame&) { return true; }, timeout);
}

std::optional<aico::ipc::Frame>
ipc_client::receive_if(const std::function<bool(const aico::ipc::Frame&)>& pred,
                       ms timeout) {
  auto deadline = clock::now() + timeout;
  std::size_t scanned = 0;
  for (;;) {
    for (std::size_t i = scanned; i < queue_.size(); ++i) {
      if (pred(queue_[i])) {
        auto f = std::move(queue_[i]);
        queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
        return f;
      }
    }
    scanned = queue_.size();
    auto left = std::chrono::duration_cast<ms>(deadline - clock::now());
    if (left.count() <= 0)
      return std::nullopt;
    recv_one(left);
  }
}

std::optional<aico::ipc::Response>
ipc_client::receive_response(const std::string& id, ms timeout) {
  auto f = receive_if(
    [&](const aico::ipc::Frame& f) {
      return f.has_response() && f.response().id() == id;
    },
    timeout);
  if (!f)
    return std::nullopt;
  return f->response();
}

std::optional<aico::ipc::Event>
ipc_client::receive_event(const std::string& topic,
                          const std::function<bool(const json::value&)>& pred,
                          ms timeout) {
  auto f = receive_if(
    [&](const aico::ipc::Frame& f) {
      if (!f.has_event() || f.event().topic() != topic)
        return false;
      return !pred || pred(parse_json(f.event().data()));
    },
    timeout);
  if (!f)
    return std::nullopt;
  return f->event();
}

std::optional<aico::ipc::Response>
ipc_client::request(const std::string& method, const std::string& path,
                    const std::string& body, const std::string& token,
                    ms timeout) {
  aico::ipc::Frame f;
  auto* r = f.mutable_request();
  auto id = next_id();
  r->set_id(id);
  r->set_method(method);
  r->set_path(path);
  r->set_body(body);
  r->set_token(token);
  if (!send(f))
    return std::nullopt;
  return receive_response(id, timeout);
}

std::optional<aico::ipc::Response> ipc_client::subscribe(const std::string& token,
                                                         ms timeout) {
  aico::ipc::Frame f;
  auto id = next_id();
  f.mutable_subscribe()->set_id(id);
  f.mutable_subscribe()->set_token(token);
  if (!send(f))
    return std::nullopt;
  return receive_response(id, timeout);
}

} // namespace aico::test
