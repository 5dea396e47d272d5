#include "src/stress/gateway_launcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <thread>

namespace fs = std::filesystem;

namespace aico::stress {

std::string find_gateway_binary() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return "aico-gateway";
  auto dir = self.parent_path();
  for (auto p : {dir / "aico-gateway", dir / ".." / "src" / "gateway" / "aico-gateway"})
    if (fs::exists(p, ec))
      return p.string();
  return (dir / "aico-gateway").string();
}

std::string find_peer_binary() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return "aico-backend-peer";
  auto dir = self.parent_path();
  for (auto p : {dir / "aico-backend-peer", dir / ".." / "bin" / "aico-backend-peer"})
    if (fs::exists(p, ec))
      return p.string();
  return (dir / "aico-backend-peer").string();
}

gateway_launcher::gateway_launcher(std::string binary, std::string data_dir,
                                   std::vector<std::string> args)
  : binary_(std::move(binary)),
    data_dir_(std::move(data_dir)),
    args_(std::move(args)) {
  ipc_ = "ipc://" + data_dir_ + "/gateway.ipc";
}

gateway_launcher::~gateway_launcher() {
  if (running())
    stop();
}

bool gateway_launcher::start(std::chrono::milliseconds timeout) {
  if (running()) {
    error_ = "already running";
    return false;
  }
  std::vector<std::string> args{binary_, "--data-dir", data_dir_, "--listen",
                                "127.0.0.1:" + std::to_string(port_)};
  if (peer_) {
    args.push_back("--ws-listen");
    args.push_back("127.0.0.1:" + std::to_string(ws_port_));
  } else {
    args.push_back("--ipc");
    args.push_back(ipc_);
  }
  args.insert(args.end(), args_.begin(), args_.end());
  // a restart keeps the doors' ports too (--grpc 127.0.0.1:PORT)
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i].rfind("--", 0) == 0)
      if (auto d = door_ports_.find(args[i].substr(2)); d != door_ports_.end())
        args[i + 1] = "127.0.0.1:" + std::to_string(d->second);
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
    prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive aico-stress
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
  std::string buf, ready_line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ready_line.empty()) {
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
      break;
    buf.append(tmp, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      auto line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("ready ", 0) == 0) {
        ready_line = line;
        break;
      }
    }
  }
  close(out[0]);
  if (ready_line.empty()) {
    error_ = std::string{peer_ ? "peer" : "gateway"} + " (" + binary_
             + ") not ready within "
             + std::to_string(timeout.count()) + " ms, see " + log;
    kill9();
    return false;
  }
  std::smatch m;
  static const std::regex port_re{R"(http=http://127\.0\.0\.1:(\d+))"};
  if (std::regex_search(ready_line, m, port_re))
    port_ = static_cast<uint16_t>(std::stoi(m[1]));
  // the doors on a port of their own: " grpc=127.0.0.1:PORT"
  static const std::regex door_re{R"( ([a-z][a-z0-9_]*)=127\.0\.0\.1:(\d+))"};
  for (std::sregex_iterator i{ready_line.begin(), ready_line.end(), door_re},
       end;
       i != end; ++i)
    door_ports_[(*i)[1]] = static_cast<uint16_t>(std::stoi((*i)[2]));
  static const std::regex ws_re{R"(ws=ws://127\.0\.0\.1:(\d+))"};
  if (peer_ && std::regex_search(ready_line, m, ws_re))
    ws_port_ = static_cast<uint16_t>(std::stoi(m[1]));
  return true;
}

std::map<std::string, std::string> gateway_launcher::door_endpoints() const {
  std::map<std::string, std::string> res;
  if (!peer_)
    res["ipc"] = ipc_;
  for (auto& [name, port] : door_ports_)
    res[name] = "127.0.0.1:" + std::to_string(port);
  return res;
}

void gateway_launcher::stop(std::chrono::milliseconds timeout) {
  if (!running())
    return;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill9();
}

void gateway_launcher::kill9() {
  if (!running())
    return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  pid_ = -1;
}

} // namespace aico::stress
