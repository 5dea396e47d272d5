#include "src/core/log_line.hpp"

#include <cerrno>
#include <mutex>

#include <unistd.h>

namespace aico {

void log_line(const std::string& line) noexcept {
  static std::mutex mtx;
  try {
    std::string text = line;
    text += '\n';
    std::lock_guard<std::mutex> guard{mtx};
    const char* p = text.data();
    size_t left = text.size();
    while (left > 0) {
      auto n = ::write(STDERR_FILENO, p, left);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  } catch (...) {
    // out of memory: nothing sensible to do
  }
}

} // namespace aico
