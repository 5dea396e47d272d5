#include "src/profile/aico/http_session.hpp"

#include <algorithm>
#include <cctype>
#include <deque>
#include <future>
#include <mutex>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>
#include <set>
#include <vector>

#include <boost/json.hpp>

#include "src/core/url_host.hpp"
#include "src/transport/curl/http_loop.hpp"

namespace aico::aico_profile {

namespace json = boost::json;

namespace {

std::string header_of(const std::map<std::string, std::string>& h,
                      std::string_view name) {
  for (auto& [k, v] : h) {
    if (k.size() == name.size()
        && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a))
                    == std::tolower(static_cast<unsigned char>(b));
           }))
      return v;
  }
  return {};
}

/// A conversation id the backend reuses (wire document 2.3).
bool reusable(const std::string& cid) {
  return !cid.empty() && cid != "default" && cid != "current"
         && cid.find('_') != std::string::npos;
}

constexpr std::size_t max_raw_kept = 64 * 1024;

} // namespace

struct aico_http_session::impl : std::enable_shared_from_this<impl> {
  http::loop& loop;
  session_options opts;
  std::string authority; ///< host:port, the key of the pin
  pin_store pins;

  mutable std::mutex mtx;
  secure_channel channel;
  uint64_t generation = 0; ///< bumped by every completed handshake
  bool handshaking = false;
  bool proactive_pending = false;
  std::deque<std::function<void(std::optional<wire_error>)>> waiters;
  std::string current_conversation;
  session_counters counts;

  impl(http::loop& l, session_options o, std::string auth, identity id)
    : loop(l), opts(std::move(o)), authority(std::move(auth)),
      pins(opts.state_dir + "/known_servers"),
      channel(std::move(id), opts.channel, opts.clock, opts.wall) {}

  // -- the channel ----------------------------------------------------------------

  /// Runs `next` once a channel is open (or with the error that prevents it).
  void with_channel(std::function<void(std::optional<wire_error>)> next) {
    bool start = false;
    {
      std::lock_guard<std::mutex> g{mtx};
      if (!channel.needs_handshake() && !handshaking) {
        // fall through: run next outside the lock
      } else {
        if (channel.is_open() && !handshaking)
          proactive_pending = true;
        waiters.push_back(std::move(next));
        if (!handshaking) {
          handshaking = true;
          start = true;
        }
        next = nullptr;
      }
    }
    if (next) {
      next(std::nullopt);
      return;
    }
    if (start)
      start_handshake();
  }

  void start_handshake() {
    std::string body;
    {
      std::lock_guard<std::mutex> g{mtx};
      body = channel.begin_handshake();
    }
    http::request rq;
    rq.method = "POST";
    rq.url = opts.base_url + "/api/v1/handshake";
    rq.body = std::move(body);
    rq.headers = {"Content-Type: application/json"};
    rq.timeout = opts.request_timeout;
    auto self = shared_from_this();
    loop.submit(std::move(rq),
                [self](http::response r) { self->handshake_done(std::move(r)); });
  }

  void handshake_done(http::response r) {
    std::optional<wire_error> err;
    if (r.fail != http::failure::none) {
      err = transport_error(r.fail == http::failure::timeout, r.error, false);
      err->message = "the encryption handshake with the AICO server failed: "
                     + err->message;
    } else {
      std::string perr;
      auto pinned = pins.pinned(authority, perr);
      if (!perr.empty()) {
        err = wire_error{};
        err->cls = error_class::validation;
        err->code = "pin_file";
        err->message = perr;
      } else {
        std::lock_guard<std::mutex> g{mtx};
        auto res = channel.accept(r.status, r.body, pinned);
        if (!res.ok) {
          err = wire_error{};
          if (res.identity_changed) {
            err->cls = error_class::authentication;
            err->code = "server_identity_changed";
            err->message = res.error + " (" + pins.file() + ", server "
                           + authority + ")";
          } else if (r.status != 200) {
            auto d = decode_error(r.status, header_of(r.headers, "Content-Type"),
                                  r.body, false);
            if (d)
              err = *d;
            else
              err->message = res.error;
            if (err->message.empty())
              err->message = res.error;
          } else {
            err->cls = error_class::unknown;
            err->code = "handshake_rejected";
            err->message = res.error;
          }
          err->status = r.status;
        } else {
          ++generation;
          ++counts.handshakes;
          if (proactive_pending)
            ++counts.proactive;
          if (pinned.empty()) {
            std::string werr;
            if (!pins.pin(authority, res.server_identity, werr)) {
              channel.invalidate();
              err = wire_error{};
              err->cls = error_class::validation;
              err->code = "pin_file";
              err->message = werr;
            }
          }
        }
      }
    }
    std::deque<std::function<void(std::optional<wire_error>)>> run;
    {
      std::lock_guard<std::mutex> g{mtx};
      handshaking = false;
      proactive_pending = false;
      run.swap(waiters);
    }
    for (auto& w : run)
      w(err);
  }

  // -- one logical call ------------------------------------------------------------

  struct pending_call {
    wire_request rq;
    chunk_fn on_chunk;
    done_fn done;
    int attempt = 0;
    /// the call's end (logical_call::timeout), or none
    std::optional<std::chrono::steady_clock::time_point> deadline;
    /// when the call started (ms since the epoch; a send's history check)
    int64_t started_ms = 0;
    // stream state
    int status = 0;
    std::map<std::string, std::string> headers;
    ndjson_reader reader;
    reply_stream stream;
    uint64_t seq_no = 0;
    bool recognised = false;
    std::optional<wire_error> line_error;
    std::string raw;
    explicit pending_call(std::size_t max_line) : reader(max_line) {}
  };

  void finish(const std::shared_ptr<pending_call>& pc, call_result res) {
    res.kind = pc->rq.kind;
    if (pc->done)
      pc->done(std::move(res));
  }

  void fail(const std::shared_ptr<pending_call>& pc, wire_error e) {
    if (pc->rq.kind == call_kind::send && e.outcome_unknown
        && opts.verify_unknown_sends) {
      verify_send(pc, std::move(e));
      return;
    }
    call_result res;
    res.ok = false;
    res.error = std::move(e);
    finish(pc, std::move(res));
  }

  // -- a send whose outcome is unknown: look for it in the history --------------

  /// History ids already taken as the proof of an earlier unknown send.
  std::set<std::string> claimed;

  /// Skew allowed between this clock and the server's timestamps.
  static constexpr int64_t verify_skew_ms = 60 * 1000;
  /// Time a send's stream leaves for the history check (at most a quarter
  /// of the call's time).
  static constexpr auto verify_reserve = std::chrono::milliseconds{2000};
  /// Time a history check needs at least (else the error is reported).
  static constexpr auto verify_min_time = std::chrono::milliseconds{300};

  /// The backend has no idempotency keys: a send that may have been stored
  /// is looked up in the history (the first page of its conversation, or of
  /// all the user's when it has none yet): a user message with the same
  /// content, stored no earlier than the send started (less the skew) and
  /// not claimed by an earlier check, proves it arrived; the send is then a
  /// success (201, the stored message). Otherwise, or if the check itself
  /// fails or there is no time left, the original error is reported.
  void verify_send(const std::shared_ptr<pending_call>& pc, wire_error e) {
    auto report = [this, pc, e](const char* why) mutable {
      e.message += why;
      call_result res;
      res.ok = false;
      res.error = std::move(e);
      finish(pc, std::move(res));
    };
    if (pc->deadline
        && *pc->deadline - std::chrono::steady_clock::now() < verify_min_time) {
      report("; there was no time left to look for it in the history");
      return;
    }
    std::string conv = header_of(pc->headers, "X-Conversation-ID");
    if (conv.empty())
      conv = pc->stream.conversation_id();
    if (conv.empty() && reusable(pc->rq.requested_conversation))
      conv = pc->rq.requested_conversation;
    logical_call lc;
    lc.method = "GET";
    // without a conversation: page 1 of all the user's messages
    lc.path = "/conversations/" + (conv.empty() ? std::string{"all"} : conv)
              + "/messages?since=1&limit=50";
    lc.token = pc->rq.user_token.empty() ? pc->rq.token : pc->rq.user_token;
    auto mapped = map_call(lc);
    auto* hr = std::get_if<wire_request>(&mapped);
    if (!hr) {
      report("");
      return;
    }
    if (conv.empty()) {
      // no conversation_id parameter: every conversation of the user
      auto q = hr->path.find("&conversation_id=");
      if (q != std::string::npos)
        hr->path.erase(q);
    }
    auto check = std::make_shared<pending_call>(opts.max_line);
    check->rq = std::move(*hr);
    check->deadline = pc->deadline;
    check->started_ms = pc->started_ms;
    auto self = shared_from_this();
    check->done = [self, pc, report](call_result r) mutable {
      if (!r.ok) {
        report("; the history could not be read to check it");
        return;
      }
      auto found = self->find_in_history(*pc, r.answer.body);
      if (!found) {
        report("; it is not in the history");
        return;
      }
      call_result res;
      res.ok = true;
      res.answer = send_answer(*found);
      res.send = std::move(*found);
      self->finish(pc, std::move(res));
    };
    start(std::move(check));
  }

  std::optional<send_outcome> find_in_history(const pending_call& pc,
                                              const std::string& envelope) {
    json::error_code ec;
    auto v = json::parse(envelope, ec);
    if (ec || !v.is_object())
      return std::nullopt;
    auto* data = v.get_object().if_contains("data");
    auto* msgs = data && data->is_object()
                   ? data->get_object().if_contains("messages")
                   : nullptr;
    if (!msgs || !msgs->is_array())
      return std::nullopt;
    auto str = [](const json::object& o, const char* k) {
      auto* x = o.if_contains(k);
      return x && x->is_string() ? std::string(x->get_string())
                                 : std::string{};
    };
    std::lock_guard<std::mutex> g{mtx};
    // newest first: the latest matching message is the likeliest
    auto& arr = msgs->get_array();
    for (auto it = arr.rbegin(); it != arr.rend(); ++it) {
      if (!it->is_object())
        continue;
      auto& m = it->get_object();
      if (str(m, "sender") == "companion" || str(m, "content") != pc.rq.content)
        continue;
      auto ts = parse_aico_time(str(m, "timestamp"));
      if (ts < 0 || ts < pc.started_ms - verify_skew_ms)
        continue;
      auto hid = str(m, "id");
      if (claimed.count(hid) != 0)
        continue;
      claimed.insert(hid);
      send_outcome o;
      auto who = user_from_claims(pc.rq.user_token);
      auto& s = o.sent;
      s.id = pc.rq.client_message_id;
      s.conversation_id = str(m, "conversation_id");
      s.content = pc.rq.content;
      s.type = pc.rq.message_type;
      s.sender_id = who.id;
      s.sender = who.username;
      s.timestamp_ms = ts;
      s.timestamp = iso_ms(ts);
      s.seq = static_cast<uint64_t>(ts);
      s.status = message_status::sent;
      auto meta = json::parse(pc.rq.metadata, ec);
      json::object mo = !ec && meta.is_object() ? meta.get_object()
                                                : json::object{};
      mo["aico_history_id"] = hid;
      mo["aico_outcome"] = "found_in_history";
      s.metadata = json::serialize(mo);
      if (reusable(s.conversation_id))
        set_current(s.conversation_id);
      return o;
    }
    return std::nullopt;
  }

  void start(std::shared_ptr<pending_call> pc) {
    if (!pc->rq.encrypted) {
      send(pc, 0);
      return;
    }
    auto self = shared_from_this();
    with_channel([self, pc](std::optional<wire_error> err) {
      if (err) {
        self->fail(pc, std::move(*err));
        return;
      }
      uint64_t gen;
      {
        std::lock_guard<std::mutex> g{self->mtx};
        gen = self->generation;
      }
      self->send(pc, gen);
    });
  }

  /// `limit`, shortened to what is left of the call's time (at least 1 ms).
  static std::chrono::milliseconds
  bounded(std::chrono::milliseconds limit, const pending_call& pc) {
    if (!pc.deadline)
      return limit;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      *pc.deadline - std::chrono::steady_clock::now());
    return std::max(std::chrono::milliseconds{1}, std::min(limit, left));
  }

  http::request build(const pending_call& pc) {
    auto& w = pc.rq;
    http::request rq;
    rq.method = w.method;
    rq.url = opts.base_url + w.path;
    rq.timeout = bounded(opts.request_timeout, pc);
    std::lock_guard<std::mutex> g{mtx};
    ++counts.wire_calls;
    if (w.encrypted) {
      rq.body = channel.envelope(w.body);
      rq.headers.push_back("Content-Type: application/json");
      if (w.method == "GET")
        rq.headers.push_back("X-Client-ID: " + channel.client_id());
    }
    if (!w.token.empty())
      rq.headers.push_back("Authorization: Bearer " + w.token);
    return rq;
  }

  /// The channel may be stale (clear 401): forget it unless a newer one
  /// was made meanwhile.
  void drop_channel(uint64_t gen) {
    std::lock_guard<std::mutex> g{mtx};
    if (generation == gen)
      channel.invalidate();
  }

  /// A network failure: the server may have restarted; handshake first next.
  void network_failed(http::failure f) {
    if (f == http::failure::network) {
      std::lock_guard<std::mutex> g{mtx};
      channel.invalidate();
    }
  }

  /// Unwraps and decodes a complete answer; the retry on a clear 401.
  /// Returns true when it restarted the call.
  bool retry_or_error(const std::shared_ptr<pending_call>& pc, uint64_t gen,
                      int status, const std::map<std::string, std::string>& h,
                      const std::string& body, std::optional<wire_error>& out,
                      std::string& plain) {
    unwrapped u;
    {
      std::lock_guard<std::mutex> g{mtx};
      u = channel.unwrap(body);
    }
    plain = u.text;
    out = decode_error(status, header_of(h, "Content-Type"), u.text,
                       u.kind == body_kind::decrypted,
                       u.kind == body_kind::undecryptable);
    if (out && out->rehandshake && pc->rq.encrypted && pc->attempt == 0) {
      pc->attempt = 1;
      {
        std::lock_guard<std::mutex> g{mtx};
        ++counts.rehandshakes_401;
      }
      drop_channel(gen);
      start(pc);
      return true;
    }
    return false;
  }

  void send(std::shared_ptr<pending_call> pc, uint64_t gen) {
    auto self = shared_from_this();
    auto rq = build(*pc);
    if (!pc->rq.stream) {
      loop.submit(std::move(rq), [self, pc, gen](http::response r) {
        if (r.fail != http::failure::none) {
          self->network_failed(r.fail);
          self->fail(pc, transport_error(r.fail == http::failure::timeout,
                                         r.error, false));
          return;
        }
        std::optional<wire_error> err;
        std::string plain;
        if (self->retry_or_error(pc, gen, r.status, r.headers, r.body, err,
                                 plain))
          return;
        if (err) {
          self->fail(pc, std::move(*err));
          return;
        }
        auto m = map_reply(pc->rq, r.status, plain);
        if (auto* e = std::get_if<wire_error>(&m)) {
          self->fail(pc, std::move(*e));
          return;
        }
        call_result res;
        res.ok = true;
        res.answer = std::move(std::get<engine_answer>(m));
        res.answer.headers = r.headers;
        self->finish(pc, std::move(res));
      });
      return;
    }
    // -- a streamed send ---------------------------------------------------------
    pc->status = 0;
    pc->headers.clear();
    pc->reader = ndjson_reader(opts.max_line);
    pc->stream = reply_stream{};
    pc->seq_no = 0;
    pc->recognised = false;
    pc->line_error.reset();
    pc->raw.clear();
    http::stream_options so;
    so.open_timeout = bounded(opts.stream_open_timeout, *pc);
    so.idle_timeout = opts.stream_idle_timeout;
    if (pc->deadline) {
      // a stream still running at the end (a slow model) is cut early
      // enough to look for the message in the history (verify_send)
      auto left = bounded(opts.stream_idle_timeout * 100, *pc);
      auto reserve = opts.verify_unknown_sends
                       ? std::min(verify_reserve, left / 4)
                       : std::chrono::milliseconds{0};
      so.total_timeout = std::max(std::chrono::milliseconds{1}, left - reserve);
    }
    // never re-sent by libcurl on a dead reused connection: the backend has
    // no idempotency keys (docs/profiles.md, "A send whose outcome is
    // unknown")
    so.fresh_connection = true;
    http::stream_handlers h;
    h.on_open = [pc](int status, const std::map<std::string, std::string>& hd) {
      pc->status = status;
      pc->headers = hd;
    };
    h.on_data = [self, pc](std::string_view bytes) {
      if (pc->raw.size() < max_raw_kept)
        pc->raw.append(bytes.substr(0, max_raw_kept - pc->raw.size()));
      return pc->reader.feed(bytes, [&](std::string_view line) {
        self->on_line(pc, line);
      }) && !pc->line_error;
    };
    h.on_close = [self, pc, gen](http::response r) {
      self->stream_closed(pc, gen, std::move(r));
    };
    loop.open_stream(std::move(rq), so, std::move(h));
  }

  void on_line(const std::shared_ptr<pending_call>& pc, std::string_view line) {
    if (pc->line_error)
      return;
    unwrapped u;
    {
      std::lock_guard<std::mutex> g{mtx};
      u = channel.unwrap(line);
    }
    if (u.kind == body_kind::undecryptable) {
      wire_error e;
      e.cls = error_class::unknown;
      e.status = pc->status;
      e.code = "undecryptable";
      e.message = "a line of the AICO server's reply stream could not be "
                  "decrypted; the message itself was received";
      e.outcome_unknown = true;
      pc->line_error = e;
      return;
    }
    auto& s = pc->stream.add(u.text);
    if (s.kind != line_kind::other)
      pc->recognised = true;
    if (s.kind == line_kind::metadata && pc->stream.conversation_id().empty())
      return;
    bool content = s.kind == line_kind::thinking || s.kind == line_kind::response
                   || s.kind == line_kind::final;
    if (!content || !pc->on_chunk)
      return;
    stream_piece p;
    p.thinking = s.kind == line_kind::thinking;
    p.chunk = to_stream_chunk(pc->rq, pc->stream, s, pc->seq_no++);
    if (p.chunk.conversation_id.empty())
      p.chunk.conversation_id = header_of(pc->headers, "X-Conversation-ID");
    try {
      pc->on_chunk(p);
    } catch (...) {
    }
  }

  void stream_closed(const std::shared_ptr<pending_call>& pc, uint64_t gen,
                     http::response r) {
    if (pc->line_error) {
      fail(pc, *pc->line_error);
      return;
    }
    if (r.fail != http::failure::none && !pc->stream.done()) {
      network_failed(r.fail);
      if (pc->status == 0 && r.status == 0 && r.fail == http::failure::network
          && r.error.find("onnect") != std::string::npos) {
        // never connected: nothing was sent
        fail(pc, transport_error(false, r.error, false));
        return;
      }
      auto e = transport_error(r.fail == http::failure::timeout, r.error, true);
      if (r.fail == http::failure::unknown && pc->reader.failed())
        e.message = "a line of the AICO server's reply stream is longer than "
                    + std::to_string(opts.max_line) + " bytes";
      e.message += "; the message may have been received";
      fail(pc, std::move(e));
      return;
    }
    int status = r.status ? r.status : pc->status;
    auto& headers = r.headers.empty() ? pc->headers : r.headers;
    if (status < 200 || status >= 300 || !pc->recognised) {
      // not a stream: an error answer (or a 2xx that is no NDJSON)
      std::optional<wire_error> err;
      std::string plain;
      auto body = status >= 200 && status < 300 ? pc->raw : r.body;
      if (retry_or_error(pc, gen, status, headers, body, err, plain))
        return;
      if (!err) {
        err = wire_error{};
        err->cls = error_class::unknown;
        err->status = status;
        err->code = "bad_reply";
        err->message = "the AICO server's answer to a send is not a reply "
                       "stream; the message may have been received";
        err->outcome_unknown = true;
      }
      fail(pc, std::move(*err));
      return;
    }
    pc->reader.finish([&](std::string_view line) { on_line(pc, line); });
    if (pc->line_error) {
      fail(pc, *pc->line_error);
      return;
    }
    auto m = map_send(pc->rq, pc->stream,
                      header_of(headers, "X-Conversation-ID"));
    if (auto* e = std::get_if<wire_error>(&m)) {
      fail(pc, std::move(*e));
      return;
    }
    auto& o = std::get<send_outcome>(m);
    {
      std::lock_guard<std::mutex> g{mtx};
      if (reusable(o.sent.conversation_id))
        set_current(o.sent.conversation_id);
    }
    call_result res;
    res.ok = true;
    res.answer = send_answer(o);
    res.answer.headers = headers;
    res.send = std::move(o);
    finish(pc, std::move(res));
  }

  /// Sets the current conversation and keeps it in opts.conversation_file
  /// (mtx held). A file that cannot be written only costs the continuity.
  void set_current(const std::string& cid) {
    if (cid == current_conversation)
      return;
    current_conversation = cid;
    if (opts.conversation_file.empty())
      return;
    auto tmp = opts.conversation_file + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      return;
    auto line = cid + "\n";
    bool ok = ::write(fd, line.data(), line.size())
              == static_cast<ssize_t>(line.size());
    ok = ::close(fd) == 0 && ok;
    if (!ok || ::rename(tmp.c_str(), opts.conversation_file.c_str()) != 0)
      ::unlink(tmp.c_str());
  }

  void load_current() {
    if (opts.conversation_file.empty())
      return;
    std::ifstream in(opts.conversation_file);
    std::string line;
    if (in && std::getline(in, line) && reusable(line)) {
      std::lock_guard<std::mutex> g{mtx};
      current_conversation = line;
    }
  }

  /// "current" or no conversation → the one the last send got (if it is
  /// this user's: "<user uuid>_…").
  logical_call with_conversation(logical_call c) {
    std::string cur;
    {
      std::lock_guard<std::mutex> g{mtx};
      cur = current_conversation;
    }
    if (cur.empty())
      return c;
    if (!c.token.empty()) {
      auto who = user_from_claims(c.token).id;
      if (!who.empty() && cur.rfind(who + "_", 0) != 0)
        return c; // another user's conversation
    }
    if (c.method == "POST" && c.path == "/conversations/messages") {
      json::error_code ec;
      auto v = json::parse(c.body, ec);
      if (!ec && v.is_object()) {
        auto& o = v.get_object();
        auto* cid = o.if_contains("conversation_id");
        bool unset = !cid || cid->is_null()
                     || (cid->is_string()
                         && (cid->get_string().empty()
                             || cid->get_string() == "current"));
        if (unset) {
          o["conversation_id"] = cur;
          c.body = json::serialize(o);
        }
      }
    } else if (c.method == "GET"
               && c.path.rfind("/conversations/current/messages", 0) == 0) {
      c.path = "/conversations/" + cur
               + c.path.substr(std::string("/conversations/current").size());
    }
    return c;
  }
};

std::shared_ptr<aico_http_session>
aico_http_session::create(http::loop& loop, session_options opts,
                          std::string& err) {
  auto& url = opts.base_url;
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  std::string rest;
  if (url.rfind("http://", 0) == 0)
    rest = url.substr(7);
  else if (url.rfind("https://", 0) == 0)
    rest = url.substr(8);
  else {
    err = "the AICO server URL must start with http:// or https:// (got '"
          + url + "')";
    return nullptr;
  }
  if (rest.find('/') != std::string::npos) {
    err = "the AICO server URL must not have a path (the profile adds "
          "/api/v1/...)";
    return nullptr;
  }
  url_authority parts;
  std::string why;
  if (!split_url_authority(rest, parts, why)) {
    err = "the AICO server URL is not valid: " + why;
    return nullptr;
  }
  auto id = load_or_create_identity(opts.state_dir, err);
  if (!id)
    return nullptr;
  auto p = std::make_shared<impl>(loop, std::move(opts), rest, std::move(*id));
  p->load_current();
  return std::shared_ptr<aico_http_session>(new aico_http_session(std::move(p)));
}

aico_http_session::~aico_http_session() = default;

void aico_http_session::call(const logical_call& c, chunk_fn on_chunk,
                             done_fn done) {
  auto mapped = map_call(impl_->with_conversation(c));
  if (auto* la = std::get_if<local_answer>(&mapped)) {
    call_result res;
    res.ok = true;
    res.local = true;
    res.answer.status = la->status;
    res.answer.body = std::move(la->body);
    if (done)
      done(std::move(res));
    return;
  }
  if (auto* e = std::get_if<wire_error>(&mapped)) {
    call_result res;
    res.ok = false;
    res.local = true;
    res.error = std::move(*e);
    if (done)
      done(std::move(res));
    return;
  }
  auto pc = std::make_shared<impl::pending_call>(impl_->opts.max_line);
  pc->rq = std::move(std::get<wire_request>(mapped));
  pc->on_chunk = std::move(on_chunk);
  pc->done = std::move(done);
  if (c.timeout.count() > 0)
    pc->deadline = std::chrono::steady_clock::now() + c.timeout;
  pc->started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  impl_->start(std::move(pc));
}

call_result aico_http_session::call_blocking(const logical_call& c,
                                             chunk_fn on_chunk,
                                             std::chrono::milliseconds wait) {
  auto prom = std::make_shared<std::promise<call_result>>();
  auto fut = prom->get_future();
  call(c, std::move(on_chunk),
       [prom](call_result r) { prom->set_value(std::move(r)); });
  if (fut.wait_for(wait) != std::future_status::ready) {
    call_result r;
    r.ok = false;
    r.error = transport_error(true, "no result in time", false);
    return r;
  }
  return fut.get();
}

void aico_http_session::reconnected() {
  std::lock_guard<std::mutex> g{impl_->mtx};
  impl_->channel.invalidate();
}

std::string aico_http_session::client_id() const {
  return impl_->channel.client_id();
}

void aico_http_session::set_conversation(const std::string& cid) {
  if (!reusable(cid))
    return;
  std::lock_guard<std::mutex> g{impl_->mtx};
  impl_->current_conversation = cid;
}

std::string aico_http_session::conversation() const {
  std::lock_guard<std::mutex> g{impl_->mtx};
  return impl_->current_conversation;
}

session_counters aico_http_session::counters() const {
  std::lock_guard<std::mutex> g{impl_->mtx};
  return impl_->counts;
}

std::string aico_http_session::pin_file() const {
  return impl_->pins.file();
}

} // namespace aico::aico_profile
