#include "aico_peer/server.hpp"

#include <chrono>
#include <ctime>
#include <deque>
#include <future>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace aico::peer {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr auto body_read_timeout = std::chrono::seconds(60);
constexpr auto write_timeout = std::chrono::seconds(30);
constexpr std::size_t max_body = 16 * 1024 * 1024;
constexpr std::size_t max_ws_message = 10 * 1024 * 1024;

std::chrono::steady_clock::duration secs(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
    std::chrono::duration<double>(s < 0 ? 0 : s));
}

std::string http_date() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

} // namespace

class http_session;
class ws_session;

struct server::impl {
  impl(backend& b, server_config c) : be(b), cfg(std::move(c)) {}

  backend& be;
  server_config cfg;
  asio::io_context ioc{1};
  std::optional<tcp::acceptor> http_acc;
  std::optional<tcp::acceptor> ws_acc;
  uint16_t http_port = 0;
  uint16_t ws_port = 0;
  tcp::endpoint ws_endpoint;
  std::thread thread;
  bool running = false;
  bool stopping = false;
  std::optional<asio::steady_timer> heartbeat;
  uint64_t next_ws = 1;
  std::unordered_map<uint64_t, std::weak_ptr<ws_session>> ws_sessions;

  void accept_http();
  void accept_ws();
  bool open_ws_acceptor(std::string& err);
  void schedule_heartbeat();
  int drop_ws();
};

// -- HTTP
// ---------------------------------------------------------------------------

class http_session : public std::enable_shared_from_this<http_session> {
public:
  http_session(server::impl& s, tcp::socket sock)
    : s_(s), stream_(std::move(sock)), timer_(s.ioc) {}

  void start() {
    error_code ec;
    stream_.socket().set_option(tcp::no_delay(true), ec);
    read_header();
  }

private:
  void read_header() {
    parser_.emplace();
    parser_->body_limit(max_body);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(secs(s_.cfg.keep_alive_s));
    http::async_read_header(
      stream_, buf_, *parser_,
      [self = shared_from_this()](error_code ec, std::size_t) {
        self->on_header(ec);
      });
  }

  void on_header(error_code ec) {
    if (ec)
      return close();
    auto& req = parser_->get();
    auto expect = req.find(http::field::expect);
    if (expect != req.end()
        && lower(std::string(expect->value())) == "100-continue") {
      // uvicorn answers 100 Continue once the app reads the body.
      auto cont
        = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      stream_.expires_after(write_timeout);
      asio::async_write(
        stream_, asio::buffer(*cont),
        [self = shared_from_this(), cont](error_code ec, std::size_t) {
          if (ec)
            return self->close();
          self->read_body();
        });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_.expires_after(body_read_timeout);
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       self->on_request(ec);
                     });
  }

  void on_request(error_code ec) {
    if (ec)
      return close();
    stream_.expires_never();
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    http_request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (auto& f : msg)
      req.headers[lower(std::string(f.name_string()))] = std::string(f.value());
    req.body = std::move(msg.body());
    try {
      reply_ = s_.be.handle(req);
    } catch (const std::exception& e) {
      std::cerr << "aico-backend-peer: " << e.what() << std::endl;
      reply_ = http_reply{};
      reply_.status = 500;
      reply_.headers.emplace_back("content-type", "text/plain; charset=utf-8");
      reply_.body = "Internal Server Error";
    }
    if (reply_.delay_s > 0 && reply_.what != http_reply::kind::hang) {
      timer_.expires_after(secs(reply_.delay_s));
      watch_close();
      timer_.async_wait([self = shared_from_this()](error_code ec) {
        if (ec || self->closed_)
          return;
        error_code ignored;
        self->stream_.socket().cancel(ignored); // the close watch
        self->execute();
      });
      return;
    }
    execute();
  }

  /// While a delayed reply waits: notices the client going away.
  void watch_close() {
    stream_.socket().async_wait(
      tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
        if (self->closed_ || self->executing_)
          return;
        if (ec)
          return; // cancelled
        // Readable while waiting: either a close (EOF) or pipelined data.
        char b;
        error_code pe;
        auto n = self->stream_.socket().receive(asio::buffer(&b, 1),
                                                tcp::socket::message_peek, pe);
        if (pe || n == 0) {
          self->timer_.cancel();
          self->finish(false);
          self->close();
        }
      });
  }

  void execute() {
    executing_ = true;
    switch (reply_.what) {
    case http_reply::kind::drop:
      finish(false);
      return close();
    case http_reply::kind::hang:
      return hang();
    case http_reply::kind::stream:
      return stream_start();
    case http_reply::kind::respond:
      return respond();
    }
  }

  template <class Res>
  void common_headers(Res& res) {
    res.version(version_);
    res.set(http::field::date, http_date());
    res.set(http::field::server, "uvicorn");
    for (auto& [k, v] : reply_.headers)
      res.insert(k, v);
    res.keep_alive(keep_alive_);
  }

  void respond() {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(static_cast<unsigned>(reply_.status));
    common_headers(*res);
    res->body() = std::move(reply_.body);
    res->prepare_payload();
    // Whatever the reply reports (a stored answer) is done before the
    // client can see it.
    finish(true);
    stream_.expires_after(write_timeout);
    http::async_write(
      stream_, *res,
      [self = shared_from_this(), res](error_code ec, std::size_t) {
        if (ec || !self->keep_alive_)
          return self->close();
        self->next();
      });
  }

  void hang() {
    // The real middleware already consumed the body; nothing is ever
    // answered. Wait for the client to give up (bounded).
    stream_.expires_after(secs(s_.be.config().hang_timeout_s));
    hang_buf_.resize(4096);
    stream_.async_read_some(
      asio::buffer(hang_buf_),
      [self = shared_from_this()](error_code ec, std::size_t) {
        if (ec)
          return self->close();
        self->hang_more();
      });
  }

  void hang_more() {
    stream_.async_read_some(
      asio::buffer(hang_buf_),
      [self = shared_from_this()](error_code ec, std::size_t) {
        if (ec)
          return self->close();
        self->hang_more();
      });
  }

  void stream_start() {
    stream_res_.emplace();
    stream_res_->result(static_cast<unsigned>(reply_.status));
    common_headers(*stream_res_);
    stream_res_->chunked(true);
    stream_sr_.emplace(*stream_res_);
    stream_t0_ = std::chrono::steady_clock::now();
    next_line_ = 0;
    stream_.expires_after(write_timeout);
    http::async_write_header(
      stream_, *stream_sr_,
      [self = shared_from_this()](error_code ec, std::size_t) {
        if (ec) {
          self->finish(false);
          return self->close();
        }
        self->stream_next();
      });
  }

  void stream_next() {
    if (reply_.cut_after_lines >= 0
        && static_cast<int>(next_line_) >= reply_.cut_after_lines) {
      finish(false);
      return close();
    }
    if (next_line_ >= reply_.lines.size()) {
      stream_.expires_after(write_timeout);
      asio::async_write(
        stream_, http::make_chunk_last(),
        [self = shared_from_this()](error_code ec, std::size_t) {
          if (ec || !self->keep_alive_)
            return self->close();
          self->next();
        });
      return;
    }
    auto due = stream_t0_ + secs(reply_.lines[next_line_].at_s);
    if (due > std::chrono::steady_clock::now()) {
      timer_.expires_at(due);
      timer_.async_wait([self = shared_from_this()](error_code ec) {
        if (ec || self->closed_)
          return;
        self->stream_write();
      });
      return;
    }
    stream_write();
  }

  void stream_write() {
    if (next_line_ + 1 == reply_.lines.size())
      finish(true); // before the client sees the last line
    auto& line = reply_.lines[next_line_].data;
    stream_.expires_after(write_timeout);
    asio::async_write(stream_, http::make_chunk(asio::buffer(line)),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        if (ec) {
                          self->finish(false);
                          return self->close();
                        }
                        ++self->next_line_;
                        self->stream_next();
                      });
  }

  void next() {
    executing_ = false;
    reply_ = http_reply{};
    stream_sr_.reset();
    stream_res_.reset();
    read_header();
  }

  void finish(bool ok) {
    if (reply_.on_finish) {
      auto f = std::move(reply_.on_finish);
      reply_.on_finish = nullptr;
      try {
        f(ok);
      } catch (const std::exception& e) {
        std::cerr << "aico-backend-peer: " << e.what() << std::endl;
      }
    }
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    finish(false);
    timer_.cancel();
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  server::impl& s_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  asio::steady_timer timer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http_reply reply_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  bool closed_ = false;
  bool executing_ = false;
  std::string hang_buf_;
  std::optional<http::response<http::empty_body>> stream_res_;
  std::optional<http::response_serializer<http::empty_body>> stream_sr_;
  std::chrono::steady_clock::time_point stream_t0_;
  std::size_t next_line_ = 0;
};

// -- WebSocket
// ------------------------------------------------------------------------

class ws_session : public std::enable_shared_from_this<ws_session> {
public:
  ws_session(server::impl& s, tcp::socket sock, uint64_t id)
    : s_(s), ws_(std::move(sock)) {
    state_.id = id;
    error_code ec;
    auto ep = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    state_.client_id
      = ec ? "unknown"
           : ep.address().to_string() + ":" + std::to_string(ep.port());
    beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ec);
  }

  void start() {
    ws_.set_option(websocket::stream_base::timeout{
      std::chrono::seconds(30), // opening/closing handshake
      std::chrono::seconds(60), // no traffic at all: the ping timeout
      true});                   // pings when idle half of that (30 s)
    ws_.read_message_max(max_ws_message);
    ws_.set_option(
      websocket::stream_base::decorator([](websocket::response_type& res) {
        res.set(http::field::server, "Python/3.11 websockets/10.4");
      }));
    beast::get_lowest_layer(ws_).expires_never();
    ws_.async_accept(
      [self = shared_from_this()](error_code ec) { self->on_accept(ec); });
  }

  /// Heartbeat timeout or a test drop; any time on the io thread.
  void close_with(int code, const std::string& reason) {
    if (finished_ || closing_)
      return;
    closing_ = true;
    close_code_ = code;
    close_reason_ = reason;
    if (!writing_)
      do_close();
  }

  void abort() {
    if (finished_)
      return;
    error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both,
                                                   ec);
    beast::get_lowest_layer(ws_).close();
    finish();
  }

  const ws_state& state() const { return state_; }

private:
  void on_accept(error_code ec) {
    if (ec)
      return finish();
    std::size_t others = 0;
    for (auto& [id, w] : s_.ws_sessions)
      if (!w.expired())
        ++others;
    auto a = s_.be.ws_open(state_, others);
    if (!a.close) {
      registered_ = true;
      s_.ws_sessions[state_.id] = weak_from_this();
    }
    apply(a);
    read();
  }

  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](
                           error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (ec)
      return finish();
    auto text = beast::buffers_to_string(buf_.data());
    buf_.consume(buf_.size());
    if (!closing_) {
      ws_action a;
      try {
        a = s_.be.ws_message(state_, text);
      } catch (const std::exception& e) {
        std::cerr << "aico-backend-peer: " << e.what() << std::endl;
      }
      apply(a);
    }
    read();
  }

  void apply(const ws_action& a) {
    for (auto& f : a.frames)
      out_.push_back(f);
    if (a.close) {
      closing_ = true;
      close_code_ = a.close_code;
      close_reason_ = a.close_reason;
    }
    if (!writing_)
      write_next();
  }

  void write_next() {
    if (finished_)
      return;
    if (out_.empty()) {
      if (closing_)
        do_close();
      return;
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(out_.front()),
                    [self = shared_from_this()](error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (ec)
                        return self->finish();
                      self->out_.pop_front();
                      self->write_next();
                    });
  }

  void do_close() {
    if (close_sent_ || finished_)
      return;
    close_sent_ = true;
    ws_.async_close(
      websocket::close_reason(static_cast<websocket::close_code>(close_code_),
                              close_reason_),
      [self = shared_from_this()](error_code) {
        error_code ec;
        beast::get_lowest_layer(self->ws_).socket().shutdown(
          tcp::socket::shutdown_both, ec);
        beast::get_lowest_layer(self->ws_).close();
        self->finish();
      });
  }

  void finish() {
    if (finished_)
      return;
    finished_ = true;
    if (registered_) {
      s_.ws_sessions.erase(state_.id);
      s_.be.ws_closed(state_);
    }
  }

  server::impl& s_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  ws_state state_;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool finished_ = false;
  bool registered_ = false;
  int close_code_ = 1000;
  std::string close_reason_;
};

// -- acceptors
// ---------------------------------------------------------------------

void server::impl::accept_http() {
  http_acc->async_accept([this](error_code ec, tcp::socket sock) {
    if (stopping || ec == asio::error::operation_aborted || !http_acc
        || !http_acc->is_open())
      return;
    if (!ec)
      std::make_shared<http_session>(*this, std::move(sock))->start();
    accept_http();
  });
}

void server::impl::accept_ws() {
  ws_acc->async_accept([this](error_code ec, tcp::socket sock) {
    if (stopping || ec == asio::error::operation_aborted || !ws_acc
        || !ws_acc->is_open())
      return;
    if (!ec)
      std::make_shared<ws_session>(*this, std::move(sock), next_ws++)->start();
    accept_ws();
  });
}

namespace {

tcp::acceptor bind_acceptor(asio::io_context& ioc, const std::string& host,
                            uint16_t port, const char* what) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    throw std::runtime_error(std::string("invalid ") + what + " address '"
                             + host + "'");
  tcp::endpoint ep(addr, port);
  tcp::acceptor acc(ioc);
  acc.open(ep.protocol(), ec);
  if (!ec)
    acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acc.bind(ep, ec);
  if (!ec)
    acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error(std::string("cannot listen for ") + what + " on "
                             + host + ":" + std::to_string(port) + ": "
                             + ec.message());
  return acc;
}

} // namespace

bool server::impl::open_ws_acceptor(std::string& err) {
  try {
    ws_acc.emplace(bind_acceptor(ioc, ws_endpoint.address().to_string(),
                                 ws_endpoint.port(), "WebSocket"));
  } catch (const std::exception& e) {
    err = e.what();
    ws_acc.reset();
    return false;
  }
  accept_ws();
  return true;
}

void server::impl::schedule_heartbeat() {
  heartbeat->expires_after(secs(be.config().ws_heartbeat_interval_s));
  heartbeat->async_wait([this](error_code ec) {
    if (ec || stopping)
      return;
    auto now = backend::mono_now();
    std::vector<std::shared_ptr<ws_session>> stale;
    for (auto& [id, w] : ws_sessions)
      if (auto s = w.lock(); s && be.ws_stale(s->state(), now))
        stale.push_back(s);
    for (auto& s : stale)
      s->close_with(1000, "Heartbeat timeout");
    schedule_heartbeat();
  });
}

int server::impl::drop_ws() {
  std::vector<std::shared_ptr<ws_session>> all;
  for (auto& [id, w] : ws_sessions)
    if (auto s = w.lock())
      all.push_back(s);
  for (auto& s : all)
    s->abort();
  return static_cast<int>(all.size());
}

// -- server
// -----------------------------------------------------------------------------

server::server(backend& b, server_config cfg)
  : impl_(std::make_unique<impl>(b, std::move(cfg))) {}

server::~server() {
  stop();
}

void server::start() {
  auto& I = *impl_;
  I.http_acc.emplace(
    bind_acceptor(I.ioc, I.cfg.http_host, I.cfg.http_port, "REST"));
  I.http_port = I.http_acc->local_endpoint().port();
  I.ws_acc.emplace(
    bind_acceptor(I.ioc, I.cfg.ws_host, I.cfg.ws_port, "WebSocket"));
  I.ws_port = I.ws_acc->local_endpoint().port();
  I.ws_endpoint = I.ws_acc->local_endpoint();
  I.heartbeat.emplace(I.ioc);
  I.be.set_hooks(server_hooks{[&I] { return I.drop_ws(); },
                              [&I](bool up) {
                                if (up && !I.ws_acc) {
                                  std::string err;
                                  if (!I.open_ws_acceptor(err))
                                    std::cerr << "aico-backend-peer: " << err
                                              << std::endl;
                                } else if (!up && I.ws_acc) {
                                  error_code ec;
                                  I.ws_acc->close(ec);
                                  I.ws_acc.reset();
                                }
                              }});
  I.accept_http();
  I.accept_ws();
  I.schedule_heartbeat();
  I.running = true;
  I.thread = std::thread([&I] {
    for (;;) {
      try {
        I.ioc.run();
        return;
      } catch (const std::exception& e) {
        std::cerr << "aico-backend-peer: " << e.what() << std::endl;
      }
    }
  });
}

uint16_t server::http_port() const {
  return impl_->http_port;
}
uint16_t server::ws_port() const {
  return impl_->ws_port;
}

void server::stop() {
  auto& I = *impl_;
  if (!I.running)
    return;
  I.running = false;
  std::promise<void> done;
  asio::post(I.ioc, [&I, &done] {
    I.stopping = true;
    error_code ec;
    if (I.http_acc)
      I.http_acc->close(ec);
    if (I.ws_acc)
      I.ws_acc->close(ec);
    if (I.heartbeat)
      I.heartbeat->cancel();
    I.drop_ws();
    done.set_value();
  });
  done.get_future().wait_for(std::chrono::seconds(5));
  I.ioc.stop();
  if (I.thread.joinable())
    I.thread.join();
}

} // namespace aico::peer
