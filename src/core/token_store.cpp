#include "src/core/token_store.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <boost/json.hpp>

namespace aico {

namespace {

/// Upper bound for tokens.json; anything larger is not ours.
constexpr off_t max_file_size = 64 * 1024;

caf::error io_error(const std::string& what, const std::string& path,
                    int err) {
  return make_engine_error(error_class::unknown,
                           what + " " + path + ": " + std::strerror(err));
}

caf::error corrupt(const std::string& why) {
  return make_engine_error(error_class::unknown,
                           std::string{"tokens.json is corrupt: "} + why);
}

/// mkdir -p with mode 0700 for every directory it creates.
caf::error make_dirs(const std::string& dir) {
  std::string prefix;
  prefix.reserve(dir.size());
  size_t pos = 0;
  while (pos <= dir.size()) {
    auto next = dir.find('/', pos);
    if (next == std::string::npos)
      next = dir.size();
    prefix = dir.substr(0, next);
    pos = next + 1;
    if (prefix.empty() || prefix == "." || prefix == "..")
      continue;
    if (::mkdir(prefix.c_str(), 0700) == 0)
      continue;
    if (errno != EEXIST)
      return io_error("cannot create directory", prefix, errno);
    struct stat st;
    if (::stat(prefix.c_str(), &st) != 0)
      return io_error("cannot access", prefix, errno);
    if (!S_ISDIR(st.st_mode))
      return io_error("cannot use", prefix, ENOTDIR);
  }
  return caf::none;
}

bool write_all(int fd, const std::string& data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    auto n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

/// Makes a rename/unlink in `dir` durable. Best effort: some file systems
/// do not support fsync on directories.
void sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  (void) ::fsync(fd);
  ::close(fd);
}

} // namespace

bool operator==(const stored_tokens& x, const stored_tokens& y) {
  return x.access_token == y.access_token && x.refresh_token == y.refresh_token
         && x.user_id == y.user_id && x.username == y.username
         && x.role == y.role;
}

std::string to_json(const stored_tokens& x) {
  boost::json::object obj;
  obj["access_token"] = x.access_token;
  obj["refresh_token"] = x.refresh_token;
  obj["user_id"] = x.user_id;
  obj["username"] = x.username;
  obj["role"] = x.role;
  return boost::json::serialize(obj);
}

caf::expected<stored_tokens> parse_stored_tokens(const std::string& text) {
  try {
    boost::system::error_code ec;
    auto jv = boost::json::parse(text, ec);
    if (ec)
      return corrupt("not valid JSON");
    if (!jv.is_object())
      return corrupt("not a JSON object");
    const auto& obj = jv.get_object();
    stored_tokens res;
    struct field {
      const char* key;
      std::string* out;
    };
    field fields[] = {{"access_token", &res.access_token},
                      {"refresh_token", &res.refresh_token},
                      {"user_id", &res.user_id},
                      {"username", &res.username},
                      {"role", &res.role}};
    for (auto& f : fields) {
      auto v = obj.if_contains(f.key);
      if (!v || v->is_null())
        continue;
      if (!v->is_string())
        return corrupt(std::string{"field '"} + f.key + "' is not a string");
      f.out->assign(v->get_string().data(), v->get_string().size());
    }
    if (res.access_token.empty() && res.refresh_token.empty())
      return corrupt("no tokens in it");
    return res;
  } catch (...) {
    return corrupt("could not be parsed");
  }
}

token_lock::token_lock(token_lock&& other) noexcept
  : fd_(other.fd_), held_(other.held_) {
  other.fd_ = -1;
  other.held_ = false;
}

token_lock& token_lock::operator=(token_lock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    held_ = other.held_;
    other.fd_ = -1;
    other.held_ = false;
  }
  return *this;
}

void token_lock::release() {
  if (fd_ >= 0) {
    // closing the only descriptor of the open file description drops the
    // flock; unlock first anyway in case it was inherited by a child
    (void) ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  fd_ = -1;
  held_ = false;
}

const char* to_string(refresh_plan p) {
  switch (p) {
    case refresh_plan::refresh:
      return "refresh";
    case refresh_plan::adopt:
      return "adopt";
    case refresh_plan::ended:
      return "ended";
  }
  return "?";
}

refresh_plan plan_refresh(const stored_tokens& mine,
                          const caf::optional<stored_tokens>& stored) {
  if (!stored)
    return refresh_plan::ended; // logged out by another process
  auto& s = *stored;
  if (s.refresh_token == mine.refresh_token
      && s.access_token == mine.access_token)
    return refresh_plan::refresh;
  if (!s.user_id.empty() && !mine.user_id.empty() && s.user_id != mine.user_id)
    return refresh_plan::ended; // another user logged in here
  if (s.refresh_token.empty())
    return refresh_plan::ended; // nothing to refresh with
  if (s.refresh_token == mine.refresh_token)
    return refresh_plan::refresh; // same pair, other fields differ
  return refresh_plan::adopt;
}

token_store::token_store(std::string state_dir) : dir_(std::move(state_dir)) {
  while (dir_.size() > 1 && dir_.back() == '/')
    dir_.pop_back();
}

std::string token_store::file_path() const {
  if (dir_.empty())
    return {};
  return dir_ + "/" + file_name;
}

caf::expected<caf::optional<stored_tokens>> token_store::load() const {
  using result = caf::optional<stored_tokens>;
  if (!persistent())
    return result{};
  try {
    auto path = file_path();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        return result{};
      return io_error("cannot open", path, errno);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      auto err = errno;
      ::close(fd);
      return io_error("cannot access", path, err);
    }
    if (!S_ISREG(st.st_mode) || st.st_size > max_file_size) {
      ::close(fd);
      return corrupt("not a regular file of plausible size");
    }
    std::string text;
    char buf[4096];
    for (;;) {
      auto n = ::read(fd, buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINTR)
          continue;
        auto err = errno;
        ::close(fd);
        return io_error("cannot read", path, err);
      }
      if (n == 0)
        break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > static_cast<size_t>(max_file_size)) {
        ::close(fd);
        return corrupt("not a regular file of plausible size");
      }
    }
    ::close(fd);
    auto parsed = parse_stored_tokens(text);
    if (!parsed)
      return std::move(parsed.error());
    return result{std::move(*parsed)};
  } catch (...) {
    return make_engine_error(error_class::unknown,
                             "cannot load tokens.json: out of memory");
  }
}

caf::error token_store::save(const stored_tokens& x) const {
  if (!persistent())
    return caf::none;
  try {
    if (auto err = make_dirs(dir_))
      return err;
    auto path = file_path();
    // a fresh, unique temp file in the same directory (same file system, so
    // the rename is atomic); mkostemp creates it with O_EXCL and mode 0600
    std::string tmpl = dir_ + "/.tokens.json.XXXXXX";
    int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0)
      return io_error("cannot create a temporary file in", dir_, errno);
    auto fail = [&](const char* what) {
      auto err = errno;
      ::close(fd);
      ::unlink(tmpl.c_str());
      return io_error(what, tmpl, err);
    };
    if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0)
      return fail("cannot set the mode of");
    if (!write_all(fd, to_json(x)))
      return fail("cannot write");
    if (::fsync(fd) != 0)
      return fail("cannot sync");
    if (::close(fd) != 0) {
      auto err = errno;
      ::unlink(tmpl.c_str());
      return io_error("cannot close", tmpl, err);
    }
    if (::rename(tmpl.c_str(), path.c_str()) != 0) {
      auto err = errno;
      ::unlink(tmpl.c_str());
      return io_error("cannot replace", path, err);
    }
    sync_dir(dir_);
    return caf::none;
  } catch (...) {
    return make_engine_error(error_class::unknown,
                             "cannot save tokens.json: out of memory");
  }
}

std::string token_store::lock_path() const {
  if (dir_.empty())
    return {};
  return dir_ + "/tokens.lock";
}

caf::error token_store::try_lock(token_lock& out) const {
  out.release();
  if (!persistent()) {
    out.held_ = true;
    return caf::none;
  }
  try {
    if (auto err = make_dirs(dir_))
      return err;
    auto path = lock_path();
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                    S_IRUSR | S_IWUSR);
    if (fd < 0)
      return io_error("cannot open", path, errno);
    for (;;) {
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        out.fd_ = fd;
        out.held_ = true;
        return caf::none;
      }
      if (errno == EINTR)
        continue;
      auto err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK)
        return caf::none; // someone else holds it
      return io_error("cannot lock", path, err);
    }
  } catch (...) {
    return make_engine_error(error_class::unknown,
                             "cannot lock tokens.json: out of memory");
  }
}

caf::error token_store::clear() const {
  if (!persistent())
    return caf::none;
  try {
    auto path = file_path();
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        return caf::none;
      return io_error("cannot delete", path, errno);
    }
    sync_dir(dir_);
    return caf::none;
  } catch (...) {
    return make_engine_error(error_class::unknown,
                             "cannot delete tokens.json: out of memory");
  }
}

} // namespace aico
