#include "support/gateway_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <thread>

namespace fs = std::filesystem;

namespace aico::test {

std::string gateway_binary() {
  if (auto env = std::getenv("AICO_GATEWAY_BIN"))
    return env;
  return AICO_GATEWAY_BIN;
}

temp_dir::temp_dir(const std::string& prefix) {
  // Short base path: IPC socket paths are limited to ~100 characters.
  std::string base = "/tmp";
  if (auto env = std::getenv("TMPDIR"); env && std::strlen(env) < 40)
    base = env;
  std::string tmpl = base + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed: " + std::string{strerror(errno)});
  path_ = buf.data();
}

temp_dir::~temp_dir() {
  if (!keep) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

gateway_process::gateway_process(gateway_options opts)
  : opts_(std::move(opts)) {
  if (opts_.data_dir.empty()) {
    own_dir_ = new temp_dir("aico-gw");
    data_dir_ = own_dir_->path();
  } else {
    data_dir_ = opts_.data_dir;
  }
  ipc_ = opts_.ipc.empty() ? "ipc://" + data_dir_ + "/gateway.ipc"
                           : opts_.ipc;
  port_ = opts_.port;
}

gateway_process::~gateway_process() {
  if (running())
    stop();
  if (own_dir_ && std::getenv("AICO_KEEP_TEST_DIRS"))
    own_dir_->keep = true;
  delete own_dir_;
}

std::string gateway_process::http_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string gateway_process::reported_ipc() const {
  std::smatch m;
  static const std::regex ipc_re{R"( ipc=(\S+))"};
  if (std::regex_search(ready_line_, m, ipc_re))
    return m[1];
  return ipc_;
}

std::string gateway_process::reported_grpc() const {
  std::smatch m;
  static const std::regex grpc_re{R"( grpc=(\S+))"};
  if (std::regex_search(ready_line_, m, grpc_re))
    return m[1];
  return {};
}

std::string gateway_process::ws_url() const {
  return "ws://127.0.0.1:" + std::to_string(port_) + "/api/v1/ws";
}

bool gateway_process::start(std::chrono::milliseconds timeout) {
  if (running()) {
    error_ = "already running";
    return false;
  }
  std::vector<std::string> args{gateway_binary(), "--data-dir", data_dir_,
                                "--listen",
                                "127.0.0.1:" + std::to_string(port_),
                                "--ipc", ipc_};
  for (auto& u : opts_.users) {
    args.push_back("--user");
    args.push_back(u);
  }
  if (opts_.access_ttl_s > 0) {
    args.push_back("--access-ttl");
    args.push_back(std::to_string(opts_.access_ttl_s));
  }
  if (opts_.enable_faults)
    args.push_back("--enable-faults");
  if (!opts_.bot)
    args.push_back("--no-bot");
  args.insert(args.end(), opts_.extra_args.begin(), opts_.extra_args.end());

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return false;
  }
  auto log = log_path();
  pid_t pid = fork();
  if (pid < 0) {
    error_ = "fork failed";
    return false;
  }
  if (pid == 0) {
    // never outlive a crashed test binary
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out[1], STDOUT_FILENO);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0)
      dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  pid_ = pid;
  ready_line_.clear();
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ready = false;
  while (!ready) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    pollfd pfd{out[0], POLLIN, 0};
    int rc = poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc <= 0)
      continue;
    char tmp[512];
    auto n = read(out[0], tmp, sizeof(tmp));
    if (n <= 0)
      break; // exited before ready
    buf.append(tmp, static_cast<size_t>(n));
    auto nl = buf.find('\n');
    while (nl != std::string::npos) {
      auto line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("ready ", 0) == 0) {
        ready_line_ = line;
        ready = true;
        break;
      }
      nl = buf.find('\n');
    }
  }
  close(out[0]);
  if (!ready) {
    error_ = "gateway did not become ready within "
             + std::to_string(timeout.count()) + " ms (log: " + log + ")";
    kill9();
    return false;
  }
  std::smatch m;
  static const std::regex port_re{R"(http=https?://127\.0\.0\.1:(\d+))"};
  if (std::regex_search(ready_line_, m, port_re))
    port_ = static_cast<uint16_t>(std::stoi(m[1]));
  return true;
}

int gateway_process::stop(std::chrono::milliseconds timeout) {
  if (!running())
    return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto rc = waitpid(pid_, &status, WNOHANG);
    if (rc == pid_) {
      pid_ = -1;
      if (WIFEXITED(status))
        return WEXITSTATUS(status);
      return -WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  error_ = "gateway did not stop within timeout; killed";
  kill9();
  return -1;
}

void gateway_process::kill9() {
  if (!running())
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

} // namespace aico::test
