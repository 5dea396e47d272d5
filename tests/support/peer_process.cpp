#include "support/peer_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <thread>

namespace aico::test {

std::string peer_binary() {
  if (auto env = std::getenv("AICO_PEER_BIN"))
    return env;
  return AICO_PEER_BIN;
}

peer_process::peer_process(peer_options opts) : opts_(std::move(opts)) {
  if (opts_.data_dir.empty()) {
    own_dir_ = std::make_unique<temp_dir>("aico-peer");
    data_dir_ = own_dir_->path();
  } else {
    data_dir_ = opts_.data_dir;
  }
}

peer_process::~peer_process() {
  if (running())
    stop();
  if (own_dir_ && std::getenv("AICO_KEEP_TEST_DIRS"))
    own_dir_->keep = true;
}

std::string peer_process::http_url() const {
  return "http://127.0.0.1:" + std::to_string(http_port_);
}

std::string peer_process::ws_url() const {
  return "ws://127.0.0.1:" + std::to_string(ws_port_);
}

bool peer_process::start(std::chrono::milliseconds timeout) {
  if (running()) {
    error_ = "already running";
    return false;
  }
  std::vector<std::string> args{peer_binary(),
                                "--data-dir",
                                data_dir_,
                                "--listen",
                                "127.0.0.1:" + std::to_string(http_port_),
                                "--ws-listen",
                                "127.0.0.1:" + std::to_string(ws_port_),
                                "--model-delay-ms",
                                std::to_string(opts_.model_delay_ms)};
  for (auto& u : opts_.users) {
    args.push_back("--user");
    args.push_back(u);
  }
  if (opts_.enable_faults)
    args.push_back("--enable-faults");
  args.insert(args.end(), opts_.extra_args.begin(), opts_.extra_args.end());

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return false;
  }
  auto log = log_path();
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    error_ = "fork failed";
    return false;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive a crashed test
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
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      continue;
    char tmp[512];
    auto n = read(out[0], tmp, sizeof(tmp));
    if (n <= 0)
      break; // exited before ready
    buf.append(tmp, static_cast<size_t>(n));
    for (auto nl = buf.find('\n'); nl != std::string::npos;
         nl = buf.find('\n')) {
      auto line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("ready ", 0) == 0) {
        ready_line_ = line;
        ready = true;
        break;
      }
    }
  }
  close(out[0]);
  if (!ready) {
    error_ = "peer did not become ready within "
             + std::to_string(timeout.count()) + " ms (log: " + log + ")";
    kill9();
    return false;
  }
  std::smatch m;
  static const std::regex http_re{R"(http=http://127\.0\.0\.1:(\d+))"};
  static const std::regex ws_re{R"(ws=ws://127\.0\.0\.1:(\d+))"};
  static const std::regex id_re{R"(identity=(\S+))"};
  if (std::regex_search(ready_line_, m, http_re))
    http_port_ = static_cast<uint16_t>(std::stoi(m[1]));
  if (std::regex_search(ready_line_, m, ws_re))
    ws_port_ = static_cast<uint16_t>(std::stoi(m[1]));
  if (std::regex_search(ready_line_, m, id_re))
    identity_ = m[1];
  return true;
}

int peer_process::stop(std::chrono::milliseconds timeout) {
  if (!running())
    return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  error_ = "peer did not stop within timeout; killed";
  kill9();
  return -1;
}

void peer_process::kill9() {
  if (!running())
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

} // namespace aico::test
