// aico engine: the ZeroMQ DEALER socket thread of the IPC transport. The only
// translation unit of the engine that includes <zmq.hpp>.
#include "src/transport/zmq/dealer_loop.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <exception>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <filesystem>

namespace aico::ipc_link {

namespace {

/// Messages read from the socket per poll round (fairness with sending).
constexpr int max_recv_per_round = 256;
/// Upper bound of one zmq::poll (the eventfd wakes it up earlier).
constexpr std::chrono::milliseconds poll_bound{500};
/// After an established connection drops, libzmq announces its reconnect
/// (ZMQ_EVENT_CONNECT_RETRIED, tens of microseconds later); a drop for a
/// protocol error (an oversized message: ZMQ_MAXMSGSIZE) gets no reconnect
/// and no such event. Nothing within this window: the connection is gone
/// for good.
constexpr std::chrono::milliseconds no_reconnect_window{200};

using steady_clock = std::chrono::steady_clock;

int clamp_ms(std::chrono::milliseconds d) {
  auto v = d.count();
  if (v < 0)
    return 0;
  return v > 0x7fffffff ? 0x7fffffff : static_cast<int>(v);
}

struct command {
  enum class type : uint8_t { open, close, send } what = type::send;
  uint64_t gen = 0;
  uint64_t tag = 0;
  std::string data; ///< endpoint (open) or message bytes (send)
};

struct queued_send {
  uint64_t tag = 0;
  std::string bytes;
};

} // namespace

struct dealer_loop::impl {
  socket_options opts;
  loop_handlers handlers;
  int efd = -1;

  std::mutex mtx;              // guards cmds and stopping
  std::deque<command> cmds;
  bool stopping = false;
  bool stopped = false;        // stop() already ran (owner threads only)
  std::mutex life_mtx;         // serializes stop()

  // -- socket thread only ------------------------------------------------------
  zmq::context_t ctx{1};
  std::unique_ptr<zmq::socket_t> sock;
  std::unique_ptr<zmq::socket_t> mon; ///< PAIR receiving sock's events
  uint64_t gen = 0;
  std::deque<queued_send> outq;
  // CURVE handshake state of the current socket.
  bool handshaking = false;     ///< TCP/IPC connected, handshake not done
  bool link_up = false;         ///< on_link(true) reported
  bool security_reported = false;
  /// The ZMTP handshake of the current connection completed.
  bool established = false;
  /// An established connection dropped and libzmq has not (yet) announced
  /// a reconnect (no_reconnect_window).
  bool drop_pending = false;
  steady_clock::time_point dropped_at;

  std::thread thread; // last: starts after everything above exists

  impl(socket_options o, loop_handlers h)
    : opts(std::move(o)), handlers(std::move(h)) {
    efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0)
      throw std::runtime_error(std::string{"eventfd: "}
                               + std::strerror(errno));
    try {
      thread = std::thread([this] { run(); });
    } catch (...) {
      ::close(efd);
      efd = -1;
      throw;
    }
  }

  ~impl() {
    stop();
    if (efd >= 0)
      ::close(efd);
  }

  // -- owner side --------------------------------------------------------------

  void wake() {
    uint64_t one = 1;
    // EAGAIN (counter saturated) still leaves the fd readable: fine.
    auto r = ::write(efd, &one, sizeof one);
    static_cast<void>(r);
  }

  void push(command c) {
    {
      std::lock_guard<std::mutex> g{mtx};
      if (stopping)
        return;
      cmds.push_back(std::move(c));
    }
    wake();
  }

  void stop() {
    std::lock_guard<std::mutex> life{life_mtx};
    if (stopped)
      return;
    stopped = true;
    {
      std::lock_guard<std::mutex> g{mtx};
      stopping = true;
      cmds.clear();
    }
    wake();
    if (thread.joinable())
      thread.join(); // returns promptly: the loop wakes up on the eventfd
    try {
      ctx.close(); // every socket of it is closed by now (LINGER 0)
    } catch (...) {
      // nothing left to do
    }
  }

  // -- socket thread -----------------------------------------------------------

  void report_frame(uint64_t g, decoded_frame&& f) {
    if (!handlers.on_frame)
      return;
    try {
      handlers.on_frame(g, std::move(f));
    } catch (...) {
      // handlers must not throw; never let it end the loop
    }
  }

  void report_send_failed(uint64_t g, uint64_t tag, const std::string& why) {
    if (!handlers.on_send_failed)
      return;
    try {
      handlers.on_send_failed(g, tag, why);
    } catch (...) {
    }
  }

  void report_socket_error(uint64_t g, const std::string& why) {
    if (!handlers.on_socket_error)
      return;
    try {
      handlers.on_socket_error(g, why);
    } catch (...) {
    }
  }

  void report_link(uint64_t g, bool connected) {
    if (!handlers.on_link)
      return;
    try {
      handlers.on_link(g, connected);
    } catch (...) {
    }
  }

  void close_monitor() {
    if (sock && mon) {
      // stop monitoring first: libzmq closes its end of the inproc pair
      zmq_socket_monitor(sock->handle(), nullptr, 0);
    }
    if (!mon)
      return;
    try {
      mon->set(zmq::sockopt::linger, 0);
      mon->close();
    } catch (...) {
    }
    mon.reset();
  }

  /// Monitors connects and disconnects of `s` (best effort: without a
  /// monitor, the owner's heartbeat still notices a dead peer).
  bool curve() const { return !opts.curve_server_key.empty(); }

  void report_security(uint64_t g, const std::string& why) {
    if (security_reported || !handlers.on_security_failure)
      return;
    security_reported = true;
    try {
      handlers.on_security_failure(g, why);
    } catch (...) {
    }
  }

  void open_monitor(zmq::socket_t& s, uint64_t g) {
    auto addr = "inproc://aico-ipc-monitor-" + std::to_string(g);
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED
                 | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (curve())
      events |= ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(s.handle(), addr.c_str(), events) != 0)
      return;
    try {
      auto m = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
      m->set(zmq::sockopt::linger, 0);
      m->connect(addr);
      mon = std::move(m);
    } catch (...) {
      zmq_socket_monitor(s.handle(), nullptr, 0);
      mon.reset();
    }
  }

  void read_monitor() {
    for (int n = 0; mon && n < max_recv_per_round; ++n) {
      std::vector<zmq::message_t> parts;
      try {
        auto r = zmq::recv_multipart(*mon, std::back_inserter(parts),
                                     zmq::recv_flags::dontwait);
        if (!r)
          return;
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR)
          continue;
        close_monitor(); // the heartbeat still works without it
        return;
      }
      // frame 1: uint16 event id + uint32 value; frame 2: endpoint
      if (parts.empty() || parts[0].size() < sizeof(uint16_t))
        continue;
      uint16_t ev = 0;
      std::memcpy(&ev, parts[0].data(), sizeof ev);
      uint32_t value = 0;
      if (parts[0].size() >= sizeof ev + sizeof value)
        std::memcpy(&value, static_cast<const char*>(parts[0].data())
                              + sizeof ev,
                    sizeof value);
      track_reconnect(ev);
      if (curve() && on_curve_event(ev, value))
        continue;
      if (ev == ZMQ_EVENT_CONNECTED)
        report_link(gen, true);
      else if (ev == ZMQ_EVENT_DISCONNECTED)
        report_link(gen, false);
      else if (ev == ZMQ_EVENT_CONNECT_RETRIED && handlers.on_connect_failed)
        try {
          handlers.on_connect_failed(gen);
        } catch (...) {
        }
    }
  }

  /// Watches for an established connection that libzmq drops without
  /// reconnecting (check_dropped_for_good).
  void track_reconnect(uint16_t ev) {
    switch (ev) {
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        established = true;
        drop_pending = false;
        break;
      case ZMQ_EVENT_DISCONNECTED:
        if (established) {
          drop_pending = true;
          dropped_at = steady_clock::now();
        }
        established = false;
        break;
      case ZMQ_EVENT_CONNECT_RETRIED:
      case ZMQ_EVENT_CONNECTED:
        drop_pending = false; // libzmq is reconnecting
        break;
      default:
        break;
    }
  }

  /// An established connection dropped without a reconnect announced within
  /// no_reconnect_window: libzmq ended it for a protocol error (in practice
  /// a message over max_message) and will not reconnect this socket.
  /// Reported as a socket error; the socket is closed.
  void check_dropped_for_good() {
    if (!drop_pending || !sock
        || steady_clock::now() - dropped_at < no_reconnect_window)
      return;
    drop_pending = false;
    auto g = gen;
    close_socket();
    report_socket_error(g, "the gateway's connection was dropped: it sent a "
                           "message larger than "
                             + std::to_string(opts.max_message)
                             + " bytes (the engine's IPC message limit) or "
                               "broke the ZeroMQ protocol");
  }

  /// The time zmq::poll may wait: poll_bound, or less while a drop is
  /// waiting for its reconnect announcement.
  std::chrono::milliseconds poll_timeout() const {
    if (!drop_pending)
      return poll_bound;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      dropped_at + no_reconnect_window - steady_clock::now());
    if (left < std::chrono::milliseconds{1})
      return std::chrono::milliseconds{1};
    return std::min(left + std::chrono::milliseconds{1}, poll_bound);
  }

  /// With CURVE the link is up once the handshake completed. True if `ev`
  /// was handled here.
  bool on_curve_event(uint16_t ev, uint32_t value) {
    switch (ev) {
      case ZMQ_EVENT_CONNECTED:
        handshaking = true;
        return true;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        handshaking = false;
        security_reported = false;
        if (!link_up) {
          link_up = true;
          report_link(gen, true);
        }
        return true;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        handshaking = false;
        report_security(gen, "ipc CURVE: the gateway refused this client's "
                             "key (ZAP status "
                               + std::to_string(value)
                               + "; is it in the gateway's allow-list?)");
        return true;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        handshaking = false;
        report_security(gen, "ipc CURVE: handshake with the gateway failed "
                             "(is the pinned server key the gateway's?)");
        return true;
      case ZMQ_EVENT_DISCONNECTED:
        if (handshaking)
          report_security(gen,
                          "ipc CURVE: the peer closed the connection during "
                          "the handshake (wrong server key pinned, or this "
                          "client's key is not allowed)");
        handshaking = false;
        if (link_up) {
          link_up = false;
          report_link(gen, false);
        }
        return true;
      default:
        return false;
    }
  }

  void close_socket() {
    outq.clear();
    handshaking = false;
    link_up = false;
    security_reported = false;
    established = false;
    drop_pending = false;
    close_monitor();
    if (!sock)
      return;
    try {
      sock->set(zmq::sockopt::linger, 0);
    } catch (...) {
    }
    try {
      sock->close();
    } catch (...) {
    }
    sock.reset();
  }

  void open_socket(uint64_t g, const std::string& endpoint) {
    close_socket();
    gen = g;
    try {
      auto s = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::immediate, true);
      s->set(zmq::sockopt::reconnect_ivl, clamp_ms(opts.reconnect_ivl));
      s->set(zmq::sockopt::reconnect_ivl_max,
             clamp_ms(opts.reconnect_ivl_max));
      s->set(zmq::sockopt::sndhwm, opts.sndhwm);
      s->set(zmq::sockopt::rcvhwm, opts.rcvhwm);
      if (opts.max_message > 0)
        s->set(zmq::sockopt::maxmsgsize,
               static_cast<int64_t>(std::min<std::size_t>(
                 opts.max_message, static_cast<std::size_t>(INT64_MAX))));
      if (curve()) {
        auto problem = curve_problem();
        if (!problem.empty()) {
          report_socket_error(g, problem);
          return;
        }
        std::string pub = opts.curve_public_key;
        std::string sec = opts.curve_secret_key;
        if (pub.empty()) {
          char p[41] = {0};
          char k[41] = {0};
          if (zmq_curve_keypair(p, k) != 0) {
            report_socket_error(g, "ipc CURVE: cannot make a key pair");
            return;
          }
          pub = p;
          sec = k;
        }
        s->set(zmq::sockopt::curve_serverkey, opts.curve_server_key);
        s->set(zmq::sockopt::curve_publickey, pub);
        s->set(zmq::sockopt::curve_secretkey, sec);
      }
      open_monitor(*s, g);
      s->connect(endpoint);
      sock = std::move(s);
    } catch (const zmq::error_t& e) {
      close_monitor_of_failed_open();
      report_socket_error(g, std::string{"cannot open ipc socket: "}
                               + e.what());
    } catch (const std::exception& e) {
      close_monitor_of_failed_open();
      report_socket_error(g, std::string{"cannot open ipc socket: "}
                               + e.what());
    }
  }

  /// Why the CURVE settings cannot work ("" if they can).
  std::string curve_problem() const {
    auto bad = [](const std::string& k) {
      uint8_t raw[32];
      return k.size() != 40 || zmq_z85_decode(raw, k.c_str()) == nullptr;
    };
    if (!zmq_has("curve"))
      return "ipc CURVE: this libzmq has no CURVE support";
    if (bad(opts.curve_server_key))
      return "ipc CURVE: the gateway's public key is not a Z85 key (40 "
             "characters)";
    if (opts.curve_public_key.empty() != opts.curve_secret_key.empty())
      return "ipc CURVE: a client public key needs its secret key and vice "
             "versa";
    if (!opts.curve_public_key.empty()
        && (bad(opts.curve_public_key) || bad(opts.curve_secret_key)))
      return "ipc CURVE: the client key pair is not Z85 (40 characters "
             "each)";
    return {};
  }

  /// A socket that failed to connect is destroyed (closed) by its
  /// unique_ptr; its monitor pair must go too.
  void close_monitor_of_failed_open() {
    if (!mon)
      return;
    try {
      mon->set(zmq::sockopt::linger, 0);
      mon->close();
    } catch (...) {
    }
    mon.reset();
  }

  void apply(command& c) {
    switch (c.what) {
      case command::type::open:
        open_socket(c.gen, c.data);
        break;
      case command::type::close:
        close_socket();
        break;
      case command::type::send:
        if (!sock || c.gen != gen)
          break; // for a socket that is gone: the owner failed it already
        if (outq.size() >= opts.max_queued) {
          report_send_failed(c.gen, c.tag, "ipc send queue full");
          break;
        }
        outq.push_back(queued_send{c.tag, std::move(c.data)});
        break;
    }
  }

  /// Sends what the peer takes now; the rest waits for ZMQ_POLLOUT.
  void flush() {
    while (sock && !outq.empty()) {
      auto& q = outq.front();
      try {
        auto res = sock->send(zmq::buffer(q.bytes), zmq::send_flags::dontwait);
        if (!res)
          return; // EAGAIN: no peer yet (ZMQ_IMMEDIATE) or HWM reached
        outq.pop_front();
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR)
          continue;
        auto tag = q.tag;
        outq.pop_front();
        report_send_failed(gen, tag, std::string{"ipc send failed: "}
                                       + e.what());
      }
    }
  }

  void receive() {
    for (int n = 0; sock && n < max_recv_per_round; ++n) {
      std::vector<zmq::message_t> parts;
      try {
        auto r = zmq::recv_multipart(*sock, std::back_inserter(parts),
                                     zmq::recv_flags::dontwait);
        if (!r)
          return;
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR)
          continue;
        report_socket_error(gen, std::string{"ipc receive failed: "}
                                   + e.what());
        close_socket();
        return;
      }
      // [payload] or ["", payload]: skip an empty delimiter frame.
      std::size_t idx = 0;
      if (parts.size() >= 2 && parts[0].size() == 0)
        idx = 1;
      decoded_frame f;
      if (parts.size() != idx + 1)
        f.error = "expected one payload frame per message";
      else
        f = decode_frame(parts[idx].data(), parts[idx].size());
      report_frame(gen, std::move(f));
    }
  }

  void drain_wakeups() {
    uint64_t v = 0;
    auto r = ::read(efd, &v, sizeof v);
    static_cast<void>(r);
  }

  void run() {
    for (;;) {
      try {
        zmq::pollitem_t items[3] = {
          {nullptr, efd, ZMQ_POLLIN, 0},
          {sock ? sock->handle() : nullptr, 0,
           static_cast<short>(ZMQ_POLLIN | (outq.empty() ? 0 : ZMQ_POLLOUT)),
           0},
          {mon ? mon->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
        std::size_t n = sock ? (mon ? 3 : 2) : 1;
        try {
          zmq::poll(items, n, poll_timeout());
        } catch (const zmq::error_t& e) {
          if (e.num() == ETERM)
            break;
          // EINTR and the like: look at everything anyway
          items[0].revents = ZMQ_POLLIN;
          items[1].revents = ZMQ_POLLIN;
          items[2].revents = ZMQ_POLLIN;
        }
        if (items[0].revents & ZMQ_POLLIN)
          drain_wakeups();
        std::deque<command> batch;
        {
          std::lock_guard<std::mutex> g{mtx};
          if (stopping)
            break;
          batch.swap(cmds);
        }
        // Read what the current socket has before a command may replace it.
        // (a receive error may close the socket: the monitor goes with it)
        if (n >= 2 && sock && (items[1].revents & ZMQ_POLLIN))
          receive();
        if (n == 3 && mon && (items[2].revents & ZMQ_POLLIN))
          read_monitor();
        check_dropped_for_good();
        for (auto& c : batch)
          apply(c);
        flush();
      } catch (const std::exception& e) {
        // never leave the loop because of one bad round
        report_socket_error(gen, std::string{"ipc loop: "} + e.what());
        close_socket();
      } catch (...) {
        report_socket_error(gen, "ipc loop: internal error");
        close_socket();
      }
    }
    close_socket();
  }
};

dealer_loop::dealer_loop(socket_options opts, loop_handlers handlers)
  : impl_(std::make_unique<impl>(std::move(opts), std::move(handlers))) {}

dealer_loop::~dealer_loop() {
  stop();
}

void dealer_loop::open(uint64_t gen, std::string endpoint) {
  command c;
  c.what = command::type::open;
  c.gen = gen;
  c.data = std::move(endpoint);
  impl_->push(std::move(c));
}

void dealer_loop::close() {
  command c;
  c.what = command::type::close;
  impl_->push(std::move(c));
}

void dealer_loop::send(uint64_t gen, uint64_t tag, std::string bytes) {
  command c;
  c.what = command::type::send;
  c.gen = gen;
  c.tag = tag;
  c.data = std::move(bytes);
  impl_->push(std::move(c));
}

void dealer_loop::stop() {
  if (impl_)
    impl_->stop();
}

bool load_or_create_client_keys(const std::string& path, curve_keys& out,
                                std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "the IPC client key file '" + path + "' " + why;
    return false;
  };
  if (path.empty())
    return fail("is not set");
  if (!zmq_has("curve"))
    return fail("cannot be used: this libzmq has no CURVE support");
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // first use: a fresh pair, the secret key written 0600
    std::error_code ec;
    auto dir = std::filesystem::path{path}.parent_path();
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec); // ours: private
      ::chmod(dir.c_str(), 0700);
    }
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0)
      return fail("could not be made (zmq_curve_keypair failed)");
    int wfd = ::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600);
    if (wfd < 0)
      return fail(std::string{"could not be created: "} + std::strerror(errno));
    ::fchmod(wfd, 0600);
    std::string line = std::string{sec} + "\n";
    auto n = ::write(wfd, line.data(), line.size());
    ::close(wfd);
    if (n != static_cast<ssize_t>(line.size()))
      return fail("could not be written");
    out.public_key = pub;
    out.secret_key = sec;
    return true;
  }
  if (fd < 0)
    return fail(std::string{"cannot be read: "} + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("is not a regular file");
  }
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    return fail("belongs to another user; refusing to use it");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return fail("can be read or written by others (chmod 600 it, or delete "
                "it to make a new key pair); refusing to use it");
  }
  char buf[128];
  auto n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  std::string text{buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))};
  while (!text.empty()
         && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  uint8_t raw[32];
  if (text.size() != 40 || zmq_z85_decode(raw, text.c_str()) == nullptr)
    return fail("does not hold a Z85 secret key (40 characters)");
  char pub[41];
  if (zmq_curve_public(pub, text.c_str()) != 0)
    return fail("holds a key libzmq cannot use");
  out.public_key = pub;
  out.secret_key = text;
  return true;
}

} // namespace aico::ipc_link
