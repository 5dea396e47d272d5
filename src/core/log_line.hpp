// aico engine: one line of diagnostics on stderr, written whole.
//
// Engine actors run on several threads, and the CLI writes to stderr from
// its main thread: `std::cerr << a << b` is one write per piece, so two
// threads could interleave into one garbled line. log_line formats first
// and writes the line (with its newline) in one write(2) under a mutex.
#pragma once

#include <string>

namespace aico {

/// Writes `line` plus a newline to stderr in one piece. Never throws.
void log_line(const std::string& line) noexcept;

} // namespace aico
