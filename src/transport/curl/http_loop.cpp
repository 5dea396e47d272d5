#include "src/transport/curl/http_loop.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace aico::http {

// -- error mapping ---------------------------------------------------------------

const char* to_string(failure f) {
  switch (f) {
    case failure::none:
      return "none";
    case failure::network:
      return "network";
    case failure::timeout:
      return "timeout";
    case failure::unknown:
      return "unknown";
  }
  return "unknown";
}

failure classify_curl_code(int curl_code) {
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OK:
      return failure::none;
    case CURLE_OPERATION_TIMEDOUT:
      return failure::timeout;
    // could not reach the peer, or the connection broke
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_INTERFACE_FAILED:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:        // empty reply
    case CURLE_PARTIAL_FILE:       // closed before the announced length
    case CURLE_WEIRD_SERVER_REPLY: // not HTTP: not our gateway (any more)
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
    case CURLE_AGAIN:
    case CURLE_PROXY:
      return failure::network;
    default:
      // bad URL, unsupported protocol, out of memory, write error (body too
      // large), bad arguments, ...: not a property of the link
      return failure::unknown;
  }
}

transport::tls_failure classify_curl_tls(int curl_code,
                                         std::string_view text) {
  using transport::tls_failure;
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OK:
      return tls_failure::none;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
      return tls_failure::untrusted;
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return tls_failure::pin_mismatch;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
      return tls_failure::local_files;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CIPHER:
    case CURLE_USE_SSL_FAILED: {
      auto t = transport::classify_tls_error_text(text);
      return t == tls_failure::none ? tls_failure::handshake : t;
    }
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: {
      // TLS 1.3: a refused client certificate shows on the first read.
      auto t = transport::classify_tls_error_text(text);
      return t == tls_failure::client_certificate ? t : tls_failure::none;
    }
    default:
      return tls_failure::none;
  }
}

namespace {

using clock_type = std::chrono::steady_clock;

std::once_flag global_init_flag;

void global_init_once() {
  // Never cleaned up: other threads may still use libcurl at process exit.
  std::call_once(global_init_flag,
                 [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size())
    return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i]))
        != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty()
         && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'
             || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

/// Runs a user callback; nothing it throws escapes into libcurl.
template <class F, class... Ts>
void safe_call(F& f, Ts&&... xs) noexcept {
  if (!f)
    return;
  try {
    f(std::forward<Ts>(xs)...);
  } catch (...) {
    // a callback must not take the loop down
  }
}

struct transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* hdrs = nullptr;
  request req;
  bool stream = false;
  completion done;
  stream_handlers sh;
  stream_options sopts;
  response res;
  bool headers_done = false; ///< the final header block is complete
  bool too_large = false;
  bool rejected = false; ///< on_data refused the stream's data
  std::size_t max_body = 0;
  clock_type::time_point started;
  clock_type::time_point last_activity;
  char errbuf[CURL_ERROR_SIZE];

  transfer() {
    errbuf[0] = '\0';
  }

  ~transfer() {
    if (easy)
      curl_easy_cleanup(easy);
    if (hdrs)
      curl_slist_free_all(hdrs);
  }

  transfer(const transfer&) = delete;
  transfer& operator=(const transfer&) = delete;

  bool ok_stream() const {
    return stream && res.status >= 200 && res.status < 300;
  }
};

size_t on_header(char* ptr, size_t size, size_t n, void* ud) {
  auto* t = static_cast<transfer*>(ud);
  auto len = size * n;
  t->last_activity = clock_type::now();
  std::string_view line{ptr, len};
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.remove_suffix(1);
  if (iequals_prefix(line, "HTTP/")) {
    // a new response (also after a 1xx): forget the previous header block
    t->res.headers.clear();
    t->headers_done = false;
    return len;
  }
  if (line.empty()) {
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && !t->headers_done) {
      t->headers_done = true;
      t->res.status = static_cast<int>(code);
      if (t->stream)
        safe_call(t->sh.on_open, t->res.status, t->res.headers);
    }
    return len;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return len; // folded or malformed line: ignore
  std::string name{trim(line.substr(0, colon))};
  std::string value{trim(line.substr(colon + 1))};
  auto i = t->res.headers.find(name);
  if (i == t->res.headers.end())
    t->res.headers.emplace(std::move(name), std::move(value));
  else
    i->second += ", " + value;
  return len;
}

size_t on_write(char* ptr, size_t size, size_t n, void* ud) {
  auto* t = static_cast<transfer*>(ud);
  auto len = size * n;
  t->last_activity = clock_type::now();
  if (t->ok_stream()) {
    bool keep = false;
    if (t->sh.on_data) {
      try {
        keep = t->sh.on_data(std::string_view{ptr, len});
      } catch (...) {
        keep = false;
      }
    }
    if (!keep) {
      t->rejected = true;
      return 0; // CURLE_WRITE_ERROR
    }
    return len;
  }
  if (t->res.body.size() + len > t->max_body) {
    t->too_large = true;
    return 0; // CURLE_WRITE_ERROR
  }
  t->res.body.append(ptr, len);
  return len;
}

long clamp_ms(std::chrono::milliseconds d) {
  return static_cast<long>(std::max<int64_t>(1, d.count()));
}

} // namespace

// -- the loop --------------------------------------------------------------------

struct loop::impl {
  struct command {
    enum kind_t { add, cancel, reset } kind;
    std::unique_ptr<transfer> t; ///< add
    uint64_t id = 0;             ///< cancel
  };

  loop_options opts;
  std::mutex stop_mtx; ///< serializes stop()
  std::mutex mtx;
  CURLM* multi = nullptr; ///< replaced only by the loop thread, under mtx
  std::deque<command> queue;
  bool stopping = false;
  bool joined = false;
  std::atomic<uint64_t> next_id{1};
  std::atomic<std::size_t> active_count{0};
  // loop thread only
  std::unordered_map<CURL*, std::unique_ptr<transfer>> by_easy;
  std::unordered_map<uint64_t, CURL*> by_id;
  std::thread thread;

  /// Set when opts.tls cannot work (then every transfer fails with it).
  std::string tls_error;

  void check_tls() {
    auto& tls = opts.tls;
    if (!tls.pinned_public_key.empty()
        && !transport::valid_pin_list(tls.pinned_public_key))
      tls_error = "TLS: invalid public key pin '" + tls.pinned_public_key
                  + "' (expected sha256//BASE64, several separated by ';')";
    else if (tls.client_cert.empty() != tls.client_key.empty())
      tls_error = "TLS: a client certificate needs its key and vice versa";
  }

  void apply_tls(CURL* e) {
    auto& tls = opts.tls;
    if (!tls.ca_file.empty())
      curl_easy_setopt(e, CURLOPT_CAINFO, tls.ca_file.c_str());
    if (!tls.ca_dir.empty()) {
      curl_easy_setopt(e, CURLOPT_CAPATH, tls.ca_dir.c_str());
      if (tls.ca_file.empty()) // only the directory, not the system bundle
        curl_easy_setopt(e, CURLOPT_CAINFO, nullptr);
    }
    if (!tls.pinned_public_key.empty())
      curl_easy_setopt(e, CURLOPT_PINNEDPUBLICKEY,
                       tls.pinned_public_key.c_str());
    if (!tls.client_cert.empty()) {
      curl_easy_setopt(e, CURLOPT_SSLCERT, tls.client_cert.c_str());
      curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(e, CURLOPT_SSLKEY, tls.client_key.c_str());
      curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    // Verified unless explicitly told otherwise (and then warned about).
    long verify = tls.insecure_skip_verify ? 0L : 1L;
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify * 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION,
                     static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  }

  CURLM* make_multi() {
    CURLM* m = curl_multi_init();
    if (!m)
      return nullptr;
    long hosts = std::max(1, opts.max_host_connections);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, hosts);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, hosts + 2);
    return m;
  }

  void wake_locked() {
    if (multi)
      curl_multi_wakeup(multi);
  }

  void push(command cmd) {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopping)
      return; // dropped: the loop is gone or going
    queue.emplace_back(std::move(cmd));
    wake_locked();
  }

  // -- loop thread -------------------------------------------------------------

  /// Completes a transfer: removes it and runs its callback.
  void finish(CURL* easy, CURLcode rc, failure forced = failure::none,
              std::string forced_text = {}) {
    auto i = by_easy.find(easy);
    if (i == by_easy.end())
      return;
    auto t = std::move(i->second);
    by_easy.erase(i);
    by_id.erase(t->id);
    active_count = by_easy.size();
    response r = std::move(t->res);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &r.new_connections);
    curl_multi_remove_handle(multi, easy);
    if (forced != failure::none) {
      r.fail = forced;
      r.error = std::move(forced_text);
    } else if (rc != CURLE_OK) {
      if (t->too_large) {
        r.fail = failure::unknown;
        r.error = "response body too large";
      } else if (t->rejected) {
        r.fail = failure::unknown;
        r.error = "stream data rejected by the consumer";
      } else {
        r.fail = classify_curl_code(rc);
        r.error = t->errbuf[0] != '\0' ? std::string{t->errbuf}
                                       : std::string{curl_easy_strerror(rc)};
        r.tls = classify_curl_tls(rc, r.error);
        if (r.tls != transport::tls_failure::none)
          r.error = std::string{"TLS: "} + transport::explain(r.tls) + " ("
                    + r.error + ")";
      }
    }
    if (opts.tls.insecure_skip_verify && r.new_connections > 0
        && opts.on_warning) {
      try {
        opts.on_warning(transport::insecure_warning());
      } catch (...) {
      }
    }
    if (r.fail != failure::none && !t->headers_done)
      r.status = 0;
    auto done = std::move(t->done);
    auto on_close = std::move(t->sh.on_close);
    bool stream = t->stream;
    t.reset(); // curl_easy_cleanup before calling out
    if (stream)
      safe_call(on_close, std::move(r));
    else
      safe_call(done, std::move(r));
  }

  /// Removes a transfer without any callback.
  void drop(CURL* easy) {
    auto i = by_easy.find(easy);
    if (i == by_easy.end())
      return;
    curl_multi_remove_handle(multi, easy);
    by_id.erase(i->second->id);
    by_easy.erase(i); // ~transfer: curl_easy_cleanup
    active_count = by_easy.size();
  }

  void drop_all() {
    std::vector<CURL*> xs;
    xs.reserve(by_easy.size());
    for (auto& kv : by_easy)
      xs.push_back(kv.first);
    for (auto* e : xs)
      drop(e);
  }

  /// Fails a transfer that could not even be started.
  static void fail_early(std::unique_ptr<transfer> t, std::string why) {
    response r;
    r.fail = failure::unknown;
    r.error = std::move(why);
    if (t->stream)
      safe_call(t->sh.on_close, std::move(r));
    else
      safe_call(t->done, std::move(r));
  }

  void start(std::unique_ptr<transfer> t) {
    if (!multi) {
      fail_early(std::move(t), "curl_multi_init failed");
      return;
    }
    CURL* e = curl_easy_init();
    if (!e) {
      fail_early(std::move(t), "curl_easy_init failed");
      return;
    }
    t->easy = e;
    auto& rq = t->req;
    if (!tls_error.empty()) {
      t->easy = nullptr;
      curl_easy_cleanup(e);
      auto why = tls_error;
      response r;
      r.fail = failure::unknown;
      r.tls = transport::tls_failure::local_files;
      r.error = why;
      if (t->stream)
        safe_call(t->sh.on_close, std::move(r));
      else
        safe_call(t->done, std::move(r));
      return;
    }
    apply_tls(e);
    curl_easy_setopt(e, CURLOPT_URL, rq.url.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 15L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    // method and body
    bool with_body = !rq.body.empty() || rq.method == "POST"
                     || rq.method == "PUT" || rq.method == "PATCH";
    if (rq.method == "HEAD") {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (!with_body) {
      if (rq.method == "GET")
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      else
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
    } else {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(rq.body.size()));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq.body.data());
      if (rq.method != "POST")
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
    }
    // headers
    bool has_ctype = false;
    curl_slist* hs = nullptr;
    auto append = [&](const char* line) {
      if (auto* n = curl_slist_append(hs, line))
        hs = n;
    };
    for (auto& h : rq.headers) {
      if (iequals_prefix(h, "content-type:"))
        has_ctype = true;
      append(h.c_str());
    }
    append("Expect:"); // no 100-continue round trip
    if (with_body && !has_ctype)
      append("Content-Type:"); // not curl's form-urlencoded default
    t->hdrs = hs;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hs);
    // deadlines
    if (t->stream) {
      curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                       clamp_ms(t->sopts.open_timeout));
      if (t->sopts.total_timeout.count() > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                         clamp_ms(t->sopts.total_timeout));
      if (t->sopts.fresh_connection) {
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
      }
    } else {
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, clamp_ms(rq.timeout));
      curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                       clamp_ms(std::min(rq.timeout, opts.connect_timeout)));
    }
    t->max_body = opts.max_body;
    t->started = t->last_activity = clock_type::now();
    if (curl_multi_add_handle(multi, e) != CURLM_OK) {
      fail_early(std::move(t), "curl_multi_add_handle failed");
      return;
    }
    by_id.emplace(t->id, e);
    by_easy.emplace(e, std::move(t));
    active_count = by_easy.size();
  }

  void process(std::deque<command>& cmds) {
    for (auto& cmd : cmds) {
      switch (cmd.kind) {
        case command::add:
          start(std::move(cmd.t));
          break;
        case command::cancel: {
          auto i = by_id.find(cmd.id);
          if (i != by_id.end())
            drop(i->second);
          break;
        }
        case command::reset: {
          drop_all();
          // a fresh multi handle: closes every cached connection
          CURLM* fresh = make_multi();
          CURLM* old = nullptr;
          {
            std::lock_guard<std::mutex> guard{mtx};
            old = multi;
            multi = fresh;
          }
          if (old)
            curl_multi_cleanup(old);
          break;
        }
      }
    }
  }

  /// Stream watchdogs; returns the time until the next one is due.
  std::chrono::milliseconds check_streams() {
    auto now = clock_type::now();
    std::chrono::milliseconds next{1000};
    std::vector<std::pair<CURL*, std::string>> expired;
    for (auto& [easy, t] : by_easy) {
      if (!t->stream)
        continue;
      auto limit = t->headers_done ? t->sopts.idle_timeout
                                   : t->sopts.open_timeout;
      auto since = t->headers_done ? t->last_activity : t->started;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        since + limit - now);
      if (left.count() <= 0) {
        expired.emplace_back(
          easy, t->headers_done
                  ? "event stream silent for "
                      + std::to_string(limit.count()) + " ms"
                  : "no response header within "
                      + std::to_string(limit.count()) + " ms");
      } else {
        next = std::min(next, left);
      }
    }
    for (auto& [easy, why] : expired)
      finish(easy, CURLE_OK, failure::timeout, std::move(why));
    return next;
  }

  void run() {
    for (;;) {
      std::deque<command> cmds;
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (stopping)
          break;
        cmds.swap(queue);
      }
      process(cmds);
      if (!multi) {
        // could not create a multi handle: wait for commands / stop
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      int running = 0;
      curl_multi_perform(multi, &running);
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
        if (m->msg != CURLMSG_DONE)
          continue;
        CURL* easy = m->easy_handle;
        CURLcode rc = m->data.result;
        finish(easy, rc); // invalidates m
      }
      auto wait = check_streams();
      int numfds = 0;
      curl_multi_poll(multi, nullptr, 0,
                      static_cast<int>(std::max<int64_t>(wait.count(), 1)),
                      &numfds);
    }
    // stopping: abort everything without callbacks
    drop_all();
    std::lock_guard<std::mutex> guard{mtx};
    if (multi) {
      curl_multi_cleanup(multi);
      multi = nullptr;
    }
    queue.clear();
  }
};

loop::loop(loop_options opts) : impl_(std::make_unique<impl>()) {
  global_init_once();
  impl_->opts = opts;
  impl_->check_tls();
  impl_->multi = impl_->make_multi();
  impl_->thread = std::thread([p = impl_.get()] { p->run(); });
}

loop::~loop() {
  stop();
}

uint64_t loop::submit(request req, completion done) {
  auto t = std::make_unique<transfer>();
  t->id = impl_->next_id++;
  t->req = std::move(req);
  t->done = std::move(done);
  auto id = t->id;
  impl_->push(impl::command{impl::command::add, std::move(t), 0});
  return id;
}

uint64_t loop::open_stream(request req, stream_options opts,
                           stream_handlers h) {
  auto t = std::make_unique<transfer>();
  t->id = impl_->next_id++;
  t->req = std::move(req);
  t->stream = true;
  t->sopts = opts;
  t->sh = std::move(h);
  auto id = t->id;
  impl_->push(impl::command{impl::command::add, std::move(t), 0});
  return id;
}

void loop::cancel(uint64_t id) {
  impl_->push(impl::command{impl::command::cancel, nullptr, id});
}

void loop::reset() {
  impl_->push(impl::command{impl::command::reset, nullptr, 0});
}

void loop::stop() {
  std::lock_guard<std::mutex> stop_guard{impl_->stop_mtx};
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    if (impl_->joined)
      return;
    impl_->stopping = true;
    impl_->wake_locked();
  }
  if (impl_->thread.joinable()
      && impl_->thread.get_id() != std::this_thread::get_id()) {
    impl_->thread.join();
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->joined = true;
  }
}

std::size_t loop::active() const {
  return impl_->active_count.load();
}

} // namespace aico::http
