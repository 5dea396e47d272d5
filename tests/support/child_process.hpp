// Test support: runs a program (the aico CLI) as a child process with its
// stdout and stderr in files, bounded in time.
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

inline std::string read_text(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

inline std::string read_text_file(const std::string& path) {
  return read_text(path);
}

/// A running child; killed (SIGKILL) if still running on destruction.
class child_process {
public:
  using steady = std::chrono::steady_clock;

  /// Starts args[0] with stdout/stderr into the given files (if not empty).
  explicit child_process(std::vector<std::string> args,
                         const std::string& out_file = {},
                         const std::string& err_file = {}) {
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
    started_ = steady::now();
    if (::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ)
        != 0)
      pid_ = -1;
    ::posix_spawn_file_actions_destroy(&fa);
  }

  ~child_process() { kill9(); }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  bool started() const { return pid_ > 0 || exited_; }

  /// Exit code, -1 on timeout (then the child is killed), or -signal.
  int wait(std::chrono::milliseconds timeout) {
    auto until = steady::now() + timeout;
    while (pid_ > 0) {
      int st = 0;
      auto r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        exited_ = true;
        elapsed_ = std::chrono::duration_cast<std::chrono::milliseconds>(
          steady::now() - started_);
        code_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        return code_;
      }
      if (steady::now() >= until)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (exited_)
      return code_;
    kill9();
    return -1;
  }

  /// SIGTERM, then a bounded wait.
  int terminate(std::chrono::milliseconds timeout) {
    if (pid_ > 0)
      ::kill(pid_, SIGTERM);
    return wait(timeout);
  }

  /// Wall time from start to exit (after wait()).
  std::chrono::milliseconds elapsed() const { return elapsed_; }

  void kill9() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  steady::time_point started_;
  std::chrono::milliseconds elapsed_{0};
};

} // namespace aico::test
