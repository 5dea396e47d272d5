// The only place of the engine that includes sodium.h (libsodium does
// Ed25519, X25519, crypto_box and base64; nothing is hand-written).
#include "src/profile/aico/secure_channel.hpp"

#include <atomic>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>
#include <sodium.h>

namespace aico::aico_profile {

namespace json = boost::json;

namespace {

bool sodium_ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

const unsigned char* u8(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

unsigned char* u8w(std::string& s) {
  return reinterpret_cast<unsigned char*>(s.data());
}

std::optional<std::string> b64_decode_variant(std::string_view text,
                                              int variant) {
  if (!sodium_ready())
    return std::nullopt;
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(u8w(out), out.size(), text.data(), text.size(), nullptr,
                        &len, &end, variant)
        != 0
      || end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string jstr(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v && v->is_string())
    return std::string(v->get_string());
  return {};
}

/// Makes `dir` (and parents) if missing; a directory we create is 0700.
bool ensure_private_dir(const std::string& dir, std::string& err) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec))
    return true;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    err = "the directory '" + dir + "' could not be created: " + ec.message();
    return false;
  }
  ::chmod(dir.c_str(), 0700);
  return true;
}

/// Reads a small private file: regular, ours, not readable or writable by
/// group/others. nullopt with err = "" if it does not exist.
std::optional<std::string> read_private_file(const std::string& path,
                                             const std::string& what,
                                             std::string& err) {
  err.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)
      err = "the " + what + " '" + path
            + "' cannot be read: " + std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  auto fail = [&](std::string why) -> std::optional<std::string> {
    ::close(fd);
    err = "the " + what + " '" + path + "' " + why;
    return std::nullopt;
  };
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return fail("is not a regular file; refusing to use it");
  if (st.st_uid != ::geteuid())
    return fail("belongs to another user; refusing to use it");
  if ((st.st_mode & 077) != 0)
    return fail("can be read or written by others (chmod 600 it, or delete "
                "it to start afresh); refusing to use it");
  std::string text;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0)
      break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > (1u << 20))
      return fail("is too large");
  }
  ::close(fd);
  return text;
}

/// Writes `text` to `path` atomically, mode 0600. The temporary name is
/// unique per call: the transports of one engine (ws and http each have a
/// session) write the same files at the same moment. With `exclusive`, an
/// existing `path` is kept: false with `exists` set and `err` empty.
bool write_private_file(const std::string& path, const std::string& text,
                        const std::string& what, std::string& err,
                        bool exclusive = false, bool* exists = nullptr) {
  static std::atomic<uint64_t> counter{0};
  auto tmp = path + ".tmp." + std::to_string(::getpid()) + "."
             + std::to_string(++counter);
  int fd = ::open(tmp.c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "the " + what + " '" + path
          + "' could not be written: " + std::strerror(errno);
    return false;
  }
  ::fchmod(fd, 0600);
  auto n = ::write(fd, text.data(), text.size());
  bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (ok && exclusive) {
    // link fails if the file is there: the other writer won, keep its file
    bool linked = ::link(tmp.c_str(), path.c_str()) == 0;
    int e = errno;
    ::unlink(tmp.c_str());
    if (linked)
      return true;
    if (e == EEXIST && exists) {
      *exists = true;
      return false;
    }
    err = "the " + what + " '" + path + "' could not be written: "
          + std::strerror(e);
    return false;
  }
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    err = "the " + what + " '" + path + "' could not be written";
    return false;
  }
  return true;
}

std::string trim(std::string s) {
  while (!s.empty()
         && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
    s.pop_back();
  return s;
}

} // namespace

// -- primitives -------------------------------------------------------------------

std::string b64_encode(std::string_view bytes) {
  if (!sodium_ready())
    return {};
  std::string out(
    sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL),
    '\0');
  sodium_bin2base64(out.data(), out.size(), u8(bytes), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1); // the terminating NUL
  return out;
}

std::optional<std::string> b64_decode(std::string_view text) {
  return b64_decode_variant(text, sodium_base64_VARIANT_ORIGINAL);
}

std::optional<std::string> b64url_decode(std::string_view text) {
  return b64_decode_variant(text, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

std::string hex(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), u8(bytes), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

// -- identity ------------------------------------------------------------------------

std::optional<identity> identity_from_seed(std::string_view seed) {
  if (!sodium_ready() || seed.size() != crypto_sign_SEEDBYTES)
    return std::nullopt;
  identity id;
  id.public_key.assign(crypto_sign_PUBLICKEYBYTES, '\0');
  id.secret_key.assign(crypto_sign_SECRETKEYBYTES, '\0');
  crypto_sign_seed_keypair(u8w(id.public_key), u8w(id.secret_key), u8(seed));
  id.client_id = hex(id.public_key).substr(0, 16);
  return id;
}

identity random_identity() {
  std::string seed(crypto_sign_SEEDBYTES, '\0');
  if (sodium_ready())
    randombytes_buf(seed.data(), seed.size());
  auto id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return id ? *id : identity{};
}

namespace {
std::optional<identity> load_or_create_identity(const std::string& dir,
                                                std::string& err, int attempt);
} // namespace

std::optional<identity> load_or_create_identity(const std::string& dir,
                                                std::string& err) {
  return load_or_create_identity(dir, err, 0);
}

namespace {
std::optional<identity> load_or_create_identity(const std::string& dir,
                                                std::string& err,
                                                int attempt) {
  if (!sodium_ready()) {
    err = "libsodium could not be initialised";
    return std::nullopt;
  }
  if (dir.empty()) {
    err = "the aico profile needs a state directory for its identity key";
    return std::nullopt;
  }
  auto path = dir + "/identity.key";
  const std::string what = "aico identity key file";
  if (auto text = read_private_file(path, what, err)) {
    auto seed = b64_decode(trim(*text));
    if (!seed || seed->size() != crypto_sign_SEEDBYTES) {
      err = "the " + what + " '" + path
            + "' does not hold a base64 Ed25519 seed (32 bytes); delete it to "
              "make a new identity";
      return std::nullopt;
    }
    auto id = identity_from_seed(*seed);
    sodium_memzero(seed->data(), seed->size());
    return id;
  }
  if (!err.empty())
    return std::nullopt;
  // first use: a fresh identity
  if (!ensure_private_dir(dir, err))
    return std::nullopt;
  std::string seed(crypto_sign_SEEDBYTES, '\0');
  randombytes_buf(seed.data(), seed.size());
  auto line = b64_encode(seed) + "\n";
  auto id = identity_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  bool exists = false;
  bool ok = write_private_file(path, line, what, err, true, &exists);
  sodium_memzero(line.data(), line.size());
  if (!ok && exists && attempt == 0)
    return load_or_create_identity(dir, err, 1); // created meanwhile: use it
  if (!ok)
    return std::nullopt;
  return id;
}
} // namespace

std::string pin_store::pinned(const std::string& authority,
                              std::string& err) const {
  auto text = read_private_file(file_, "aico server key file", err);
  if (!text)
    return {};
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    auto sp = line.find(' ');
    if (sp != std::string::npos && line.compare(0, sp, authority) == 0
        && sp == authority.size())
      return trim(line.substr(sp + 1));
  }
  return {};
}

bool pin_store::pin(const std::string& authority, const std::string& key_b64,
                    std::string& err) const {
  const std::string what = "aico server key file";
  auto text = read_private_file(file_, what, err);
  if (!err.empty())
    return false;
  auto dir = std::filesystem::path(file_).parent_path().string();
  if (!dir.empty() && !ensure_private_dir(dir, err))
    return false;
  std::string all = text ? *text : std::string{};
  if (!all.empty() && all.back() != '\n')
    all += '\n';
  all += authority + " " + key_b64 + "\n";
  return write_private_file(file_, all, what, err);
}

// -- the channel ----------------------------------------------------------------------

secure_channel::secure_channel(identity id, options opts, clock_fn clock,
                               wall_fn wall)
  : id_(std::move(id)), opts_(opts), clock_(std::move(clock)),
    wall_(std::move(wall)) {
  if (!clock_)
    clock_ = [] { return clock_type::now(); };
  if (!wall_)
    wall_ = [] {
      return std::chrono::duration<double>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
    };
  sodium_ready();
}

std::string secure_channel::begin_handshake() {
  eph_pk_.assign(crypto_box_PUBLICKEYBYTES, '\0');
  eph_sk_.assign(crypto_box_SECRETKEYBYTES, '\0');
  crypto_box_keypair(u8w(eph_pk_), u8w(eph_sk_));
  std::string challenge(32, '\0');
  randombytes_buf(challenge.data(), challenge.size());
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(u8w(sig), nullptr, u8(challenge), challenge.size(),
                       u8(id_.secret_key));
  json::object hr;
  hr["component"] = "flutter_client";
  hr["identity_key"] = b64_encode(id_.public_key);
  hr["public_key"] = b64_encode(eph_pk_);
  hr["timestamp"] = wall_();
  hr["challenge"] = b64_encode(challenge);
  hr["signature"] = b64_encode(sig);
  json::object body;
  body["handshake_request"] = std::move(hr);
  return json::serialize(body);
}

secure_channel::accept_result
secure_channel::accept(int status, std::string_view body,
                       const std::string& pinned) {
  accept_result res;
  auto fail = [&](std::string why) {
    res.ok = false;
    res.error = std::move(why);
    return res;
  };
  if (eph_sk_.empty())
    return fail("no handshake was started");
  if (status != 200)
    return fail("the AICO server refused the encryption handshake (HTTP "
                + std::to_string(status) + ")");
  json::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object())
    return fail("the AICO server's handshake answer is not JSON");
  auto& o = v.get_object();
  auto* hr = o.if_contains("handshake_response");
  if (jstr(o, "status") != "session_established" || !hr || !hr->is_object())
    return fail("the AICO server's handshake answer does not establish a "
                "session");
  auto& r = hr->get_object();
  auto pk = b64_decode(jstr(r, "public_key"));
  auto idk = b64_decode(jstr(r, "identity_key"));
  auto chal = b64_decode(jstr(r, "challenge"));
  auto sig = b64_decode(jstr(r, "signature"));
  if (!pk || !idk || !chal || !sig || pk->size() != crypto_box_PUBLICKEYBYTES
      || idk->size() != crypto_sign_PUBLICKEYBYTES
      || sig->size() != crypto_sign_BYTES || chal->empty())
    return fail("the AICO server's handshake answer has malformed keys");
  if (crypto_sign_verify_detached(u8(*sig), u8(*chal), chal->size(), u8(*idk))
      != 0)
    return fail("the AICO server's handshake signature does not verify "
                "against its identity key; refusing the channel");
  res.server_identity = b64_encode(*idk);
  if (!pinned.empty() && pinned != res.server_identity) {
    res.identity_changed = true;
    return fail("the AICO server presented an identity key that differs from "
                "the one pinned on first use; refusing to talk to it (if the "
                "server was reinstalled on purpose, remove its line from the "
                "server key file to trust the new key)");
  }
  std::string shared(crypto_box_BEFORENMBYTES, '\0');
  if (crypto_box_beforenm(u8w(shared), u8(*pk), u8(eph_sk_)) != 0)
    return fail("the AICO server's ephemeral key is unusable");
  if (!shared_.empty())
    sodium_memzero(shared_.data(), shared_.size());
  shared_ = std::move(shared);
  sodium_memzero(eph_sk_.data(), eph_sk_.size());
  eph_sk_.clear();
  open_ = true;
  opened_at_ = clock_();
  res.ok = true;
  return res;
}

bool secure_channel::needs_handshake() const {
  if (!open_)
    return true;
  auto limit = opts_.lifetime > opts_.margin ? opts_.lifetime - opts_.margin
                                             : std::chrono::milliseconds{0};
  return clock_() - opened_at_ >= limit;
}

std::string secure_channel::seal(std::string_view plain) const {
  if (shared_.empty())
    return {};
  std::string out(crypto_box_NONCEBYTES + crypto_box_MACBYTES + plain.size(),
                  '\0');
  auto* nonce = u8w(out);
  randombytes_buf(nonce, crypto_box_NONCEBYTES);
  crypto_box_easy_afternm(nonce + crypto_box_NONCEBYTES, u8(plain),
                          plain.size(), nonce, u8(shared_));
  return b64_encode(out);
}

std::optional<std::string>
secure_channel::open(std::string_view payload_b64) const {
  if (shared_.empty())
    return std::nullopt;
  auto raw = b64_decode(payload_b64);
  if (!raw || raw->size() < crypto_box_NONCEBYTES + crypto_box_MACBYTES)
    return std::nullopt;
  std::string_view ct = std::string_view(*raw).substr(crypto_box_NONCEBYTES);
  std::string out(ct.size() - crypto_box_MACBYTES, '\0');
  if (crypto_box_open_easy_afternm(u8w(out), u8(ct), ct.size(), u8(*raw),
                                   u8(shared_))
      != 0)
    return std::nullopt;
  return out;
}

std::string secure_channel::envelope(std::string_view plain_json) const {
  json::object o;
  o["encrypted"] = true;
  o["payload"] = seal(plain_json);
  o["client_id"] = id_.client_id;
  return json::serialize(o);
}

unwrapped secure_channel::unwrap(std::string_view body) const {
  unwrapped u;
  u.text = std::string(body);
  auto first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || body[first] != '{')
    return u;
  json::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object())
    return u;
  auto& o = v.get_object();
  auto* enc = o.if_contains("encrypted");
  auto* payload = o.if_contains("payload");
  bool truthy = enc
                && ((enc->is_bool() && enc->get_bool())
                    || (enc->is_int64() && enc->get_int64() != 0));
  if (!truthy || !payload || !payload->is_string())
    return u;
  if (auto plain = open(payload->get_string())) {
    u.kind = body_kind::decrypted;
    u.text = std::move(*plain);
  } else {
    u.kind = body_kind::undecryptable;
  }
  return u;
}

} // namespace aico::aico_profile
