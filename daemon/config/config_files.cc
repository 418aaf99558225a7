#include "config/config_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "config/config_text.h"

namespace connwatch::config_detail {

namespace {

bool ReadFd(int fd, std::string* out, std::string* why);
bool FdHolds(int fd, const std::string& expected, bool* same, std::string* why);

bool SameVersion(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// Reads fd from its current offset to the end in chunks of up to 64 KiB,
// handing each to `chunk` (which returns false to stop early). The test hook
// runs after each chunk with the bytes read so far.
template <typename Chunk>
bool ReadChunks(int fd, std::string* why, Chunk&& chunk) {
  char buf[65536];
  size_t total = 0;
  while (true) {
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      *why = errno == EAGAIN || errno == EWOULDBLOCK
                 ? std::string("reading it would block (not an ordinary file on disk)")
                 : ErrnoText(errno);
      return false;
    }
    if (got == 0) return true;
    const size_t n = static_cast<size_t>(got);
    total += n;
    if (!chunk(std::string_view(buf, n))) return true;
    if (ReadChunkHook()) ReadChunkHook()(total);
  }
}

// Reads fd from its current offset to the end into `out`.
bool ReadFd(int fd, std::string* out, std::string* why) {
  out->clear();
  bool too_big = false;
  bool ok = ReadChunks(fd, why, [&](std::string_view piece) {
    out->append(piece);
    too_big = out->size() > kMaxFileBytes;
    return !too_big;
  });
  if (too_big) *why = "larger than 64 MiB";
  return ok && !too_big;
}

// Reads fd from its current offset to the end and sets `same` when the bytes
// are exactly `expected` (without holding a second copy of the file).
bool FdHolds(int fd, const std::string& expected, bool* same, std::string* why) {
  size_t at = 0;
  bool differs = false;
  bool ok = ReadChunks(fd, why, [&](std::string_view piece) {
    differs = piece.size() > expected.size() - at ||
              std::string_view(expected).substr(at, piece.size()) != piece;
    at += piece.size();
    return !differs;
  });
  *same = ok && !differs && at == expected.size();
  return ok;
}

}  // namespace

std::function<void(size_t)>& ReadChunkHook() {
  static std::function<void(size_t)> hook;
  return hook;
}

bool ReadWholeFile(const std::string& path, std::string* out, std::string* why) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *why = ErrnoText(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    *why = "is a directory";
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = "not a regular file";
    return false;
  }
  // NOTE: O_NONBLOCK: some "regular files" block on read until something
  // happens (/proc/kmsg waits for kernel messages; the fuzzer found an
  // include glob that matched it and hung the loader), and a path swapped
  // for a FIFO after the stat() above would block in open(). Regular files
  // on disk ignore the flag; these now fail with EAGAIN instead of hanging.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    *why = ErrnoText(errno);
    return false;
  }
  struct stat opened;
  if (fstat(fd, &opened) != 0 || !S_ISREG(opened.st_mode)) {
    *why = "not a regular file";
    close(fd);
    return false;
  }
  // NOTE: an editor or a script may rewrite the file in place while we read
  // it (truncate, then write). The loader must never see half of one version
  // and half of another, and the stats alone do not tell: the kernel stamps
  // mtime from a coarse clock (one tick, about 4 ms), so two versions of the
  // same size written within one tick look unchanged. A read counts only if
  // the stats before and after it agree, the bytes read match the size, and
  // a second read returns the same bytes with the stats still unchanged: two
  // reads torn the same way would need the writer to repeat the same
  // interleaving (ConfigLoad.FileRewrittenWithinOneClockTickIsNeverMixed
  // makes such a rewrite). A file that keeps changing is an error, not a
  // guess. (A writer that overwrites without truncating leaves the file
  // itself half old, half new while it writes; no reader can tell that from
  // a version. Tools should write a temporary file and rename it.)
  for (int attempt = 0; attempt < 20; ++attempt) {
    struct stat before, middle, after;
    if (fstat(fd, &before) != 0 || lseek(fd, 0, SEEK_SET) != 0) break;
    std::string why_read;
    if (!ReadFd(fd, out, &why_read)) {
      *why = why_read;
      close(fd);
      return false;
    }
    if (fstat(fd, &middle) != 0) break;
    if (!SameVersion(before, middle) || static_cast<off_t>(out->size()) != middle.st_size) {
      continue;
    }
    bool same = false;
    if (lseek(fd, 0, SEEK_SET) != 0) break;
    if (!FdHolds(fd, *out, &same, &why_read)) {
      *why = why_read;
      close(fd);
      return false;
    }
    if (fstat(fd, &after) != 0) break;
    if (same && SameVersion(before, after)) {
      close(fd);
      return true;
    }
  }
  close(fd);
  *why = "the file kept changing while it was read";
  return false;
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string JoinPath(const std::string& dir, const std::string& path) {
  if (dir.empty() || (!path.empty() && path[0] == '/')) return path;
  if (dir.back() == '/') return dir + path;
  return dir + "/" + path;
}

thread_local GlobFailure glob_failure;

// A directory that does not exist matches nothing, like an empty one; any
// other failure (EACCES...) stops the expansion and is reported.
int OnGlobError(const char* path, int err) {
  if (err == ENOENT || err == ENOTDIR) return 0;
  glob_failure.path = path;
  glob_failure.err = err;
  return 1;
}

std::string EscapeGlob(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool HasGlobChars(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

}  // namespace connwatch::config_detail
