// aico reference gateway: one stream type for plaintext and TLS connections
// (Boost.Beast + OpenSSL 3), so the HTTP, WebSocket and SSE sessions are
// written once and serve both on the same port.
//
// `maybe_tls_stream` owns either a beast::tcp_stream or a
// beast::ssl_stream<beast::tcp_stream>, chosen when the connection is
// accepted. It is an AsyncStream (async_read_some/async_write_some), its
// next_layer() is the TCP stream (so beast::get_lowest_layer, the timeouts
// of tcp_stream and socket() work as before), and websocket teardown is
// provided for it. Used by the gateway and by the test clients.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>

namespace aico::gateway {

class maybe_tls_stream {
public:
  using tcp_stream = boost::beast::tcp_stream;
  using tls_stream = boost::beast::ssl_stream<tcp_stream>;
  using executor_type = tcp_stream::executor_type;
  using error_code = boost::system::error_code;

  /// Plaintext.
  explicit maybe_tls_stream(tcp_stream&& s)
    : tcp_(std::make_unique<tcp_stream>(std::move(s))) {}

  /// TLS over `s` (handshake still to do: tls().async_handshake).
  maybe_tls_stream(tcp_stream&& s, boost::asio::ssl::context& ctx)
    : tls_(std::make_unique<tls_stream>(std::move(s), ctx)) {}

  maybe_tls_stream(maybe_tls_stream&&) = default;
  maybe_tls_stream& operator=(maybe_tls_stream&&) = default;

  bool is_tls() const { return static_cast<bool>(tls_); }
  /// The TLS layer (only if is_tls()).
  tls_stream& tls() { return *tls_; }

  /// The TCP stream underneath (also what get_lowest_layer finds).
  tcp_stream& next_layer() { return tls_ ? tls_->next_layer() : *tcp_; }
  const tcp_stream& next_layer() const {
    return tls_ ? tls_->next_layer() : *tcp_;
  }

  executor_type get_executor() { return next_layer().get_executor(); }
  tcp_stream::socket_type& socket() { return next_layer().socket(); }
  template <class Duration> void expires_after(Duration d) {
    next_layer().expires_after(d);
  }
  void expires_never() { next_layer().expires_never(); }

  template <class MutableBuffers, class Handler>
  BOOST_ASIO_INITFN_AUTO_RESULT_TYPE(Handler,
                                     void(error_code, std::size_t))
  async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(error_code, std::size_t)>(
      [this](auto&& h, const MutableBuffers& b) {
        if (tls_)
          tls_->async_read_some(b, std::move(h));
        else
          tcp_->async_read_some(b, std::move(h));
      },
      handler, buffers);
  }

  template <class ConstBuffers, class Handler>
  BOOST_ASIO_INITFN_AUTO_RESULT_TYPE(Handler,
                                     void(error_code, std::size_t))
  async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(error_code, std::size_t)>(
      [this](auto&& h, const ConstBuffers& b) {
        if (tls_)
          tls_->async_write_some(b, std::move(h));
        else
          tcp_->async_write_some(b, std::move(h));
      },
      handler, buffers);
  }

  // WebSocket teardown (found by argument-dependent lookup).
  friend void teardown(boost::beast::role_type role, maybe_tls_stream& s,
                       error_code& ec) {
    if (s.tls_) {
      using boost::beast::websocket::teardown;
      teardown(role, *s.tls_, ec);
    } else {
      using boost::beast::websocket::teardown;
      teardown(role, *s.tcp_, ec);
    }
  }

  template <class TeardownHandler>
  friend void async_teardown(boost::beast::role_type role,
                             maybe_tls_stream& s, TeardownHandler&& handler) {
    if (s.tls_) {
      using boost::beast::websocket::async_teardown;
      async_teardown(role, *s.tls_, std::forward<TeardownHandler>(handler));
    } else {
      using boost::beast::websocket::async_teardown;
      async_teardown(role, *s.tcp_, std::forward<TeardownHandler>(handler));
    }
  }

private:
  std::unique_ptr<tcp_stream> tcp_;
  std::unique_ptr<tls_stream> tls_;
};

} // namespace aico::gateway
