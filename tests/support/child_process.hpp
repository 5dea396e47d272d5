// Test support: a child process (e.g. the aico CLI) with its stdout and
// stderr in files, a bounded wait, and SIGKILL on destruction.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace aico::test {

class child_process {
public:
  /// Starts args[0]; stdout/stderr go to the files when given.
  explicit child_process(std::vector<std::string> args,
                         std::string out_file = {}, std::string err_file = {}) {
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    ::posix_spawn_file_actions_init(&fa);
    if (!out_file.empty())
      ::posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_file.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!err_file.empty())
      ::posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_file.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ)
        != 0)
      pid_ = -1;
    ::posix_spawn_file_actions_destroy(&fa);
  }

  ~child_process() { kill9(); }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  bool started() const { return pid_ > 0; }

  /// Exit code, or -1 on timeout (then the child is killed), or -signal.
  int wait(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int st = 0;
      auto r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      }
      if (std::chrono::steady_clock::now() >= until)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill9();
    return -1;
  }

  /// SIGTERM, then a bounded wait.
  int terminate(std::chrono::milliseconds timeout) {
    if (pid_ > 0)
      ::kill(pid_, SIGTERM);
    return wait(timeout);
  }

  void kill9() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

private:
  pid_t pid_ = -1;
};

inline std::string read_text_file(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace aico::test
