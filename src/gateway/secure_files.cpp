#include "gateway/secure_files.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace aico::gateway {

namespace {

std::string errno_text(int e) {
  return std::strerror(e);
}

std::string check_stat(const struct stat& st, const std::string& path,
                       std::string_view what) {
  std::string name = std::string(what) + " " + path;
  if (S_ISLNK(st.st_mode))
    return "refusing to use " + name
           + ": it is a symbolic link; put the file itself there";
  if (!S_ISREG(st.st_mode))
    return "refusing to use " + name + ": it is not a regular file";
  auto me = ::geteuid();
  if (st.st_uid != me)
    return "refusing to use " + name + ": it belongs to uid "
           + std::to_string(st.st_uid) + ", not to the gateway's user (uid "
           + std::to_string(me) + "); make it the gateway user's (chown "
           + std::to_string(me) + " " + path + "; chmod 600 " + path
           + ") if you trust its content, else replace it";
  if ((st.st_mode & 077) != 0)
    return "refusing to use " + name + ": its mode is "
           + mode_text(st.st_mode)
           + ", so group or others may read or change it; run chmod 600 "
           + path + " (and replace it if someone else may have seen or "
           + "changed it)";
  return {};
}

} // namespace

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

void ensure_private_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0)
    throw std::runtime_error("cannot create the data directory " + dir + ": "
                             + (ec ? ec.message() : errno_text(errno)));
  if (!S_ISDIR(st.st_mode))
    throw std::runtime_error("the data directory " + dir
                             + " is not a directory (a symbolic link or a "
                               "file is not accepted)");
  auto me = ::geteuid();
  if (st.st_uid != me)
    throw std::runtime_error(
      "refusing to use the data directory " + dir + ": it belongs to uid "
      + std::to_string(st.st_uid) + ", not to the gateway's user (uid "
      + std::to_string(me) + "); use a directory of the gateway's user");
  if ((st.st_mode & 07777) != 0700 && ::chmod(dir.c_str(), 0700) != 0)
    throw std::runtime_error("cannot make the data directory " + dir
                             + " private (chmod 700): " + errno_text(errno));
}

std::string private_file_problem(const std::string& path,
                                 std::string_view what) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return "cannot use " + std::string(what) + " " + path + ": "
           + errno_text(errno);
  return check_stat(st, path, what);
}

std::string private_fd_problem(int fd, const std::string& path,
                               std::string_view what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return "cannot use " + std::string(what) + " " + path + ": "
           + errno_text(errno);
  return check_stat(st, path, what);
}

void require_private_file(const std::string& path, std::string_view what) {
  auto problem = private_file_problem(path, what);
  if (!problem.empty())
    throw std::runtime_error(problem);
}

std::string read_private_file(const std::string& path, std::string_view what,
                              std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY
                                  | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP)
      throw std::runtime_error("refusing to use " + std::string(what) + " "
                               + path + ": it is a symbolic link; put the "
                               + "file itself there");
    throw std::runtime_error("cannot read " + std::string(what) + " " + path
                             + ": " + errno_text(e));
  }
  auto problem = private_fd_problem(fd, path, what);
  if (!problem.empty()) {
    ::close(fd);
    throw std::runtime_error(problem);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error("cannot read " + std::string(what) + " " + path
                               + ": " + errno_text(e));
    }
    if (n == 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      throw std::runtime_error(std::string(what) + " " + path
                               + " is too large (at most "
                               + std::to_string(max_bytes) + " bytes)");
    }
  }
  ::close(fd);
  return out;
}

bool create_private_file(const std::string& path, std::string_view content) {
  int fd = ::open(path.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return false;
    throw std::runtime_error("cannot create " + path + ": "
                             + errno_text(errno));
  }
  // 0600 whatever the umask (open's mode is masked by it).
  bool ok = ::fchmod(fd, 0600) == 0;
  std::size_t off = 0;
  while (ok && off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw std::runtime_error("cannot write " + path + ": " + errno_text(e));
  }
  return true;
}

void claim_private_file(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return;
    throw std::runtime_error("cannot use " + std::string(what) + " " + path
                             + ": " + errno_text(errno));
  }
  auto problem = check_stat(st, path, what);
  if (!problem.empty() && (st.st_mode & 077) == 0)
    throw std::runtime_error(problem);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid())
    throw std::runtime_error(problem);
  if ((st.st_mode & 077) != 0)
    set_mode(path, 0600);
}

void set_mode(const std::string& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0)
    throw std::runtime_error("cannot set the mode of " + path + " to "
                             + mode_text(mode) + ": " + errno_text(errno));
}

} // namespace aico::gateway
