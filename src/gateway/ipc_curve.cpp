#include "gateway/ipc_curve.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include <sys/stat.h>
#include <unistd.h>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "gateway/secure_files.hpp"

namespace aico::gateway {

namespace {

constexpr const char* zap_endpoint = "inproc://zeromq.zap.01";
constexpr std::size_t z85_key_chars = 40;

void log_line(const std::string& msg) {
  std::cerr << "aico-gateway: ipc: " + msg + "\n" << std::flush;
}

bool valid_z85_key(const std::string& s) {
  if (s.size() != z85_key_chars)
    return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, s.c_str()) != nullptr;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

/// The z85 key text in a file (first line, trimmed).
std::string key_text(const std::string& content) {
  return trim(content.substr(0, content.find('\n')));
}

} // namespace

curve_keypair load_or_create_curve_keys(const std::string& data_dir) {
  if (!zmq_has("curve"))
    throw std::runtime_error("this libzmq has no CURVE support; IPC "
                             "encryption is not available");
  std::string key_file = data_dir + "/ipc-curve.key";
  std::string pub_file = data_dir + "/ipc-curve.pub";
  curve_keypair kp;
  char pub[41] = {0};
  char sec[41] = {0};
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error(std::string("cannot make a CURVE key pair: ")
                             + zmq_strerror(zmq_errno()));
  if (create_private_file(key_file, std::string(sec) + "\n")) {
    kp.public_z85 = pub;
    kp.secret_z85 = sec;
  } else {
    kp.secret_z85 = key_text(
      read_private_file(key_file, "the IPC CURVE secret key", 4096));
    if (!valid_z85_key(kp.secret_z85))
      throw std::runtime_error(key_file + " does not hold a CURVE secret key "
                               "(40 Z85 characters); remove it to have a new "
                               "key pair created");
    if (zmq_curve_public(pub, kp.secret_z85.c_str()) != 0)
      throw std::runtime_error("cannot derive the CURVE public key from "
                               + key_file);
    kp.public_z85 = pub;
  }
  std::memset(sec, 0, sizeof sec);
  // The public key, for clients to pin: rewritten when missing or stale.
  std::string want = kp.public_z85 + "\n";
  std::string have;
  if (FILE* f = std::fopen(pub_file.c_str(), "re")) {
    char buf[128];
    std::size_t n = std::fread(buf, 1, sizeof buf, f);
    have.assign(buf, n);
    std::fclose(f);
  }
  if (have != want) {
    ::unlink(pub_file.c_str());
    create_private_file(pub_file, want);
  }
  set_mode(pub_file, 0644); // public; the directory (0700) still guards it
  return kp;
}

std::vector<std::string> parse_allow_list(const std::string& text,
                                          const std::string& file) {
  std::vector<std::string> keys;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos
                                          ? std::string::npos
                                          : nl - pos);
    pos = nl == std::string::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    // Z85 itself uses '#' (though never as the first character of a
    // 32-byte key), so a comment after a key needs whitespace before it.
    line = trim(line);
    if (line.empty())
      continue;
    auto ws = line.find_first_of(" \t");
    std::string token = line.substr(0, ws);
    std::string rest = ws == std::string::npos ? "" : trim(line.substr(ws));
    if (!valid_z85_key(token)) {
      if (line[0] == '#')
        continue;
      throw std::runtime_error(
        file + " line " + std::to_string(line_no)
        + ": expected a CURVE public key (40 Z85 characters), got '"
        + token.substr(0, 60) + "'");
    }
    if (!rest.empty() && rest[0] != '#')
      throw std::runtime_error(file + " line " + std::to_string(line_no)
                               + ": only a comment ('# ...') may follow "
                                 "the key");
    line = token;
    keys.push_back(line);
  }
  return keys;
}

std::vector<std::string> load_allow_list(const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw std::runtime_error("cannot read the IPC allow-list " + file + ": "
                             + std::strerror(errno));
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)
    throw std::runtime_error(
      "refusing to use the IPC allow-list " + file + " (owner uid "
      + std::to_string(st.st_uid) + ", mode " + mode_text(st.st_mode)
      + "): whoever can change it can let any key in; it must belong to "
        "the gateway's user (uid "
      + std::to_string(::geteuid()) + ") and not be writable by group or "
      + "others (chmod 644 " + file + ")");
  std::string text;
  {
    FILE* f = std::fopen(file.c_str(), "re");
    if (!f)
      throw std::runtime_error("cannot read the IPC allow-list " + file
                               + ": " + std::strerror(errno));
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
      text.append(buf, n);
      if (text.size() > 4 * 1024 * 1024) {
        std::fclose(f);
        throw std::runtime_error("the IPC allow-list " + file
                                 + " is too large");
      }
    }
    std::fclose(f);
  }
  return parse_allow_list(text, file);
}

struct zap_handler::impl {
  zmq::context_t& ctx;
  std::string file;
  zmq::socket_t sock;
  std::thread thread;
  std::atomic<bool> stopping{false};
  bool started = false;
  bool stopped = false;
  std::mutex life;

  // Thread only (after start).
  std::unordered_set<std::string> allowed; ///< raw 32-byte keys
  struct timespec mtime {};
  off_t size = -1;

  impl(zmq::context_t& c, std::string f)
    : ctx(c), file(std::move(f)), sock(c, zmq::socket_type::rep) {
    load(true);
    sock.set(zmq::sockopt::linger, 0);
    sock.bind(zap_endpoint);
  }

  /// (Re)reads the list if it changed; `initial`: throw on error.
  void load(bool initial) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      if (initial)
        throw std::runtime_error("cannot read the IPC allow-list " + file
                                 + ": " + std::strerror(errno));
      return; // keep the list we have
    }
    if (!initial && st.st_mtim.tv_sec == mtime.tv_sec
        && st.st_mtim.tv_nsec == mtime.tv_nsec && st.st_size == size)
      return;
    try {
      auto keys = load_allow_list(file);
      std::unordered_set<std::string> raw;
      for (auto& k : keys) {
        uint8_t bin[32];
        zmq_z85_decode(bin, k.c_str());
        raw.emplace(reinterpret_cast<const char*>(bin), sizeof bin);
      }
      allowed = std::move(raw);
      mtime = st.st_mtim;
      size = st.st_size;
      if (!initial)
        log_line("allow-list " + file + " reloaded: "
                 + std::to_string(allowed.size()) + " key(s)");
    } catch (const std::exception& e) {
      if (initial)
        throw;
      mtime = st.st_mtim; // do not retry the same broken version
      size = st.st_size;
      log_line(std::string(e.what()) + "; keeping the previous allow-list");
    }
  }

  void run() {
    while (!stopping.load()) {
      zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM)
          return;
        continue;
      }
      if (!(item.revents & ZMQ_POLLIN))
        continue;
      std::vector<zmq::message_t> req;
      try {
        if (!zmq::recv_multipart(sock, std::back_inserter(req),
                                 zmq::recv_flags::dontwait))
          continue;
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM)
          return;
        continue;
      }
      try {
        answer(req);
      } catch (const std::exception& e) {
        log_line(std::string("zap: ") + e.what());
      }
    }
  }

  void answer(std::vector<zmq::message_t>& req) {
    // version, request id, domain, address, routing id, mechanism,
    // credentials...
    std::string request_id = req.size() > 1 ? req[1].to_string() : "";
    std::string status = "400";
    std::string text = "not allowed";
    std::string user_id;
    std::string address = req.size() > 3 ? req[3].to_string() : "";
    if (req.size() < 6 || req[0].to_string() != "1.0") {
      status = "500";
      text = "bad ZAP request";
    } else if (req[5].to_string() != "CURVE") {
      text = "CURVE required";
    } else if (req.size() >= 7 && req[6].size() == 32) {
      load(false);
      std::string key = req[6].to_string();
      char z85[41] = {0};
      zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(key.data()), 32);
      if (allowed.count(key)) {
        status = "200";
        text = "OK";
        user_id = z85;
      } else {
        log_line("refused CURVE client key " + std::string(z85)
                 + (address.empty() ? "" : " from " + address)
                 + ": not in the allow-list " + file);
      }
    }
    std::vector<zmq::const_buffer> rep;
    std::string version = "1.0";
    std::string metadata;
    rep.push_back(zmq::buffer(version));
    rep.push_back(zmq::buffer(request_id));
    rep.push_back(zmq::buffer(status));
    rep.push_back(zmq::buffer(text));
    rep.push_back(zmq::buffer(user_id));
    rep.push_back(zmq::buffer(metadata));
    zmq::send_multipart(sock, rep);
  }
};

zap_handler::zap_handler(zmq::context_t& ctx, std::string allow_file)
  : impl_(std::make_unique<impl>(ctx, std::move(allow_file))) {}

zap_handler::~zap_handler() {
  try {
    stop();
  } catch (...) {
  }
}

void zap_handler::start() {
  std::lock_guard<std::mutex> lock(impl_->life);
  if (impl_->started)
    return;
  impl_->started = true;
  impl_->thread = std::thread([p = impl_.get()] { p->run(); });
}

void zap_handler::stop() {
  std::lock_guard<std::mutex> lock(impl_->life);
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  impl_->stopping = true;
  if (impl_->thread.joinable())
    impl_->thread.join();
  try {
    impl_->sock.close();
  } catch (...) {
  }
}

} // namespace aico::gateway
