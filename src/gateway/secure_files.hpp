// aico reference gateway: private files and directories (docs/security.md,
// "Files"). The data directory is 0700, every secret file 0600, and a secret
// that another user owns or that group/others may read or write is refused
// with a message that says how to fix it -- whatever the umask.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace aico::gateway {

/// Creates `dir` (with parents) if it is missing, then makes it mode 0700.
/// Throws std::runtime_error (a sentence saying what to do) if it is not a
/// directory or is owned by another user than the effective one.
void ensure_private_dir(const std::string& dir);

/// Why `path` may not be used as a secret, or "" if it may: it must be a
/// regular file (not a symbolic link), owned by the effective user, with no
/// permission bit for group or others. `what` names it in the message
/// ("the JWT secret", "the TLS private key"). Does not open the file.
std::string private_file_problem(const std::string& path,
                                 std::string_view what);

/// The same check on an open file (fstat), for a file that was opened with
/// O_NOFOLLOW: no window between the check and the read.
std::string private_fd_problem(int fd, const std::string& path,
                               std::string_view what);

/// Checks `path` (private_file_problem) and throws std::runtime_error with
/// the reason if it may not be used.
void require_private_file(const std::string& path, std::string_view what);

/// Opens `path` without following a symbolic link, checks the open file and
/// returns at most `max_bytes` of it. Throws std::runtime_error (missing,
/// unreadable, not private, too large).
std::string read_private_file(const std::string& path, std::string_view what,
                              std::size_t max_bytes);

/// Creates `path` with mode 0600 (O_EXCL: never replaces a file), writes
/// `content` and fsyncs it. Returns false if the file exists already; throws
/// std::runtime_error on any other failure (and removes what it created).
bool create_private_file(const std::string& path, std::string_view content);

/// For a file the gateway keeps but does not read as a secret (the
/// database): if it exists it must be a regular file of the effective user
/// (else std::runtime_error); it is then made 0600. Absent is fine.
void claim_private_file(const std::string& path, std::string_view what);

/// Sets the mode of `path` (e.g. 0600 for a socket file the gateway just
/// bound). Throws std::runtime_error on failure.
void set_mode(const std::string& path, mode_t mode);

/// "0644"-style text of the permission bits.
std::string mode_text(mode_t mode);

} // namespace aico::gateway
