// aico engine: a libcurl MULTI event loop on one dedicated thread (cookbook
// Pattern A). This file and http_loop.cpp are the only places that know
// libcurl; nothing here names a curl type.
//
//   any thread ──submit / open_stream / cancel / reset──▶ mutex queue
//                                                          │ curl_multi_wakeup
//                                          loop thread: curl_multi_poll ─▶ callbacks
//
// * Many transfers in flight on one multi handle; keep-alive connections are
//   reused (CURLMOPT_MAX_HOST_CONNECTIONS, CURLOPT_TCP_KEEPALIVE).
// * Every transfer is bounded: requests by their timeout, streams by an open
//   timeout and an idle (no bytes) timeout checked by the loop itself.
// * Callbacks run on the loop thread; they must be quick and must not block.
//   Exceptions thrown by a callback are swallowed.
// * A cancelled or reset transfer gets no callback at all.
// * stop() (and the destructor) aborts everything and joins the thread; it
//   returns promptly because the loop wakes up on curl_multi_wakeup.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/transport/tls_options.hpp"

namespace aico::http {

/// How a transfer failed (the one mapping of libcurl results is
/// classify_curl_code).
enum class failure : uint8_t {
  none = 0, ///< an HTTP response was received (any status)
  network,  ///< refused, resolve, send/recv error, reset, empty reply, ...
  timeout,  ///< deadline passed, or a stream was silent for too long
  unknown,  ///< anything else (bad URL, out of memory, response too large)
};

const char* to_string(failure f);

/// THE mapping of a libcurl result code (a CURLcode value) to a failure.
failure classify_curl_code(int curl_code);

struct request {
  std::string method = "GET";
  std::string url;
  std::string body;
  /// Extra header lines, "Name: value".
  std::vector<std::string> headers;
  /// Total time allowed (CURLOPT_TIMEOUT_MS); must be > 0 for requests.
  std::chrono::milliseconds timeout{5000};
};

struct response {
  failure fail = failure::none;
  std::string error; ///< libcurl's text when fail != none
  /// For a failed https transfer: what went wrong in TLS (`none` if it was
  /// not a TLS failure). `error` then starts with "TLS: " and the sentence
  /// of transport::explain.
  transport::tls_failure tls = transport::tls_failure::none;
  int status = 0;    ///< HTTP status (0 if none was received)
  std::string body;
  /// Response headers, names as sent by the server; repeated headers are
  /// joined with ", ".
  std::map<std::string, std::string> headers;
  /// Connections libcurl had to open for this transfer (0 = a kept-alive
  /// connection was reused).
  long new_connections = 0;
};

using completion = std::function<void(response)>;

/// Callbacks of a streaming GET (Server-Sent Events). All run on the loop
/// thread.
struct stream_handlers {
  /// The final response header arrived (any status).
  std::function<void(int status,
                     const std::map<std::string, std::string>& headers)>
    on_open;
  /// Body bytes of a 2xx stream, in arrival order. Returning false (or
  /// throwing) aborts the stream (on_close with failure::unknown).
  std::function<bool(std::string_view chunk)> on_data;
  /// The stream ended: fail == none if the server closed it (status and, for
  /// non-2xx answers, body filled in), else the failure.
  std::function<void(response)> on_close;
};

struct stream_options {
  /// Time allowed until the response header has arrived.
  std::chrono::milliseconds open_timeout{5000};
  /// After the header: no byte for this long = dead peer (failure::timeout).
  std::chrono::milliseconds idle_timeout{25000};
  /// > 0: the whole stream (connect, header, body) must end within this
  /// (CURLOPT_TIMEOUT_MS; failure::timeout).
  std::chrono::milliseconds total_timeout{0};
  /// Open a new connection for it and do not keep it afterwards
  /// (CURLOPT_FRESH_CONNECT + CURLOPT_FORBID_REUSE): libcurl then never
  /// re-sends the request by itself, which it does once when a reused
  /// keep-alive connection turns out to be dead before any answer. For
  /// requests that must not reach the server twice (the aico profile's
  /// send: the backend has no idempotency keys).
  bool fresh_connection = false;
};

struct loop_options {
  /// CURLMOPT_MAX_HOST_CONNECTIONS (requests beyond wait inside libcurl).
  int max_host_connections = 8;
  /// CURLOPT_CONNECTTIMEOUT_MS of requests (also bounded by their timeout).
  std::chrono::milliseconds connect_timeout{5000};
  /// Largest response body kept (bytes); larger = failure::unknown.
  std::size_t max_body = 16 * 1024 * 1024;
  /// TLS for https:// URLs: CA file/dir, SPKI pin, client certificate and
  /// key (CURLOPT_CAINFO/CAPATH/PINNEDPUBLICKEY/SSLCERT/SSLKEY).
  /// Verification is on unless tls.insecure_skip_verify.
  transport::tls_options tls;
  /// Called (on the loop thread) with a warning for people: every new
  /// connection made with tls.insecure_skip_verify.
  std::function<void(const std::string&)> on_warning;
};

/// The TLS classification of a failed transfer (a CURLcode value and
/// libcurl's error text).
transport::tls_failure classify_curl_tls(int curl_code,
                                         std::string_view text);

class loop {
public:
  /// Starts the loop thread. Calls curl_global_init once per process.
  explicit loop(loop_options opts = {});

  /// stop()
  ~loop();

  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  /// Queues a request; `done` runs exactly once on the loop thread unless the
  /// transfer is cancelled, reset or the loop stops first. Thread-safe.
  /// Returns the transfer's id (never 0).
  uint64_t submit(request req, completion done);

  /// Opens a streaming GET. Thread-safe. Returns the transfer's id.
  uint64_t open_stream(request req, stream_options opts, stream_handlers h);

  /// Aborts one transfer; its callbacks are not called (any more). Unknown
  /// ids are ignored. Thread-safe.
  void cancel(uint64_t id);

  /// Aborts every transfer (no callbacks) and closes every cached
  /// connection. Thread-safe.
  void reset();

  /// Aborts everything and joins the loop thread. Idempotent. Must not be
  /// called from a callback.
  void stop();

  /// Transfers currently known to the loop thread (for tests).
  std::size_t active() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico::http
