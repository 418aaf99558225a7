#include "monitor/state_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/clock.h"

namespace connwatch {

namespace {

std::string Errno(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// A state file is a few hundred bytes per target; anything past this is not one.
constexpr off_t kMaxFileBytes = off_t{1} << 30;

}  // namespace

bool WriteFileAtomically(int dir_fd, const char* name, const char* temp_name,
                         const std::string& data, std::string* error) {
  const int fd = openat(dir_fd, temp_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = Errno(std::string("create ") + temp_name, errno);
    return false;
  }
  auto fail = [&](const std::string& what, int err) {
    *error = Errno(what, err);
    close(fd);
    unlinkat(dir_fd, temp_name, 0);
    return false;
  };
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::string("write ") + temp_name, errno);
    }
    done += static_cast<size_t>(n);
  }
  // NOTE: without the fsync before the rename, a crash soon after can leave
  // state.json renamed but empty (ext4 delayed allocation, XFS).
  if (fsync(fd) != 0) return fail(std::string("fsync ") + temp_name, errno);
  if (close(fd) != 0) {
    const int err = errno;
    unlinkat(dir_fd, temp_name, 0);
    *error = Errno(std::string("close ") + temp_name, err);
    return false;
  }
  if (renameat(dir_fd, temp_name, dir_fd, name) != 0) {
    const int err = errno;
    unlinkat(dir_fd, temp_name, 0);
    *error = Errno(std::string("rename ") + temp_name + " to " + name, err);
    return false;
  }
  // The rename itself is durable once the directory is.
  if (fsync(dir_fd) != 0) {
    *error = Errno("fsync of the directory", errno);
    return false;
  }
  return true;
}

StateStore::StateStore(std::string dir, EventLog* log) : dir_(std::move(dir)), log_(log) {
  writer_ = std::thread([this] { WriterMain(); });
}

StateStore::~StateStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  cv_.notify_one();
  writer_.join();
  if (dir_fd_ >= 0) close(dir_fd_);  // releases the lock
}

bool StateStore::EnsureDir(std::string* error) {
  if (dir_fd_ >= 0) return true;
  const int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *error = Errno("open " + dir_, errno);
    return false;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    *error = err == EWOULDBLOCK ? dir_ + " is locked by another process (another connwatchd "
                                         "with the same --storage.path?)"
                                : Errno("flock " + dir_, err);
    return false;
  }
  dir_fd_ = fd;
  return true;
}

std::optional<StoredState> StateStore::Open() {
  std::lock_guard<std::mutex> lock(dir_mu_);
  std::string error;
  if (!EnsureDir(&error)) {
    log_->Message(LogLevel::kWarn,
                  "state directory unusable: nothing restored, and state will not survive a "
                  "restart until it is (tried again every --storage.interval, each failure "
                  "counted in connwatch_state_write_failures_total)",
                  {{"path", dir_}, {"error", error}});
    failing_ = true;
    last_error_ = error;
    return std::nullopt;
  }
  const std::string path = dir_ + "/" + kFileName;
  const int fd = openat(dir_fd_, kFileName, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      log_->Message(LogLevel::kInfo, "no state file: every target starts fresh",
                    {{"file", path}});
    } else {
      log_->Message(LogLevel::kWarn, "state file unreadable: every target starts fresh",
                    {{"file", path}, {"error", std::string(std::strerror(errno))}});
    }
    return std::nullopt;
  }
  std::string text;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxFileBytes;
  if (ok) {
    text.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = read(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    text.resize(done);
  }
  close(fd);
  StoredState state;
  if (!ok) error = "not a regular file of at most 1 GiB";
  if (ok && DecodeState(text, &state, &error)) return state;
  // Kept aside for a look; the next write makes a new state.json.
  const bool moved = renameat(dir_fd_, kFileName, dir_fd_, kRejectedName) == 0;
  log_->Message(LogLevel::kWarn, "state file ignored: every target starts fresh",
                {{"file", path},
                 {"error", error},
                 {"bytes", text.size()},
                 {"moved_to", moved ? dir_ + "/" + kRejectedName : std::string()}});
  return std::nullopt;
}

bool StateStore::WriteAsync(std::shared_ptr<const Snapshot> snapshot, CopyCost cost) {
  if (busy_.exchange(true)) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = std::move(snapshot);
    pending_cost_ = cost;
    pending_order_ = ++submitted_;
  }
  cv_.notify_one();
  return true;
}

bool StateStore::WriteNow(const Snapshot& snapshot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_) {
      pending_.reset();  // superseded by this one
      busy_ = false;
    }
  }
  // A write in flight finishes first (write_mu_); one that took an older
  // snapshot and comes after this one is skipped (order).
  return Write(snapshot, CopyCost{}, ++submitted_);
}

void StateStore::WriterMain() {
  while (true) {
    std::shared_ptr<const Snapshot> snapshot;
    CopyCost cost;
    uint64_t order = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return quit_ || pending_; });
      if (quit_) return;
      snapshot = std::move(pending_);
      cost = pending_cost_;
      order = pending_order_;
    }
    Write(*snapshot, cost, order);
    busy_ = false;
  }
}

void StateStore::CountSkipped(const std::string& why) {
  std::lock_guard<std::mutex> lock(dir_mu_);
  Failed(why);
}

void StateStore::Failed(const std::string& error) {
  ++failures_;
  // The first failure of a run of them, and each new error, at warn; the
  // same error again only at debug (a missing directory would say it every
  // interval otherwise).
  const bool news = !failing_ || error != last_error_;
  failing_ = true;
  last_error_ = error;
  log_->Message(news ? LogLevel::kWarn : LogLevel::kDebug,
                "state write failed: the running state is unchanged; a restart now would lose "
                "what happened since the last write",
                {{"path", dir_},
                 {"error", error},
                 {"failures", failures_.load()},
                 LogField::Seconds("last_success_ago",
                                   last_success_unix_.load() > 0
                                       ? UnixNow() - last_success_unix_.load()
                                       : -1)});
}

bool StateStore::Write(const Snapshot& snapshot, const CopyCost& cost, uint64_t order) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  if (order < written_order_) return true;  // a newer one is on disk
  written_order_ = order;
  const double start = MonoNow();
  uint64_t next_seq = 1;
  const std::vector<Event> events = log_->Ring(&next_seq);
  const double mono_to_unix = UnixNow() - MonoNow();
  const std::string text = EncodeState(snapshot, events, next_seq, UnixNow(), mono_to_unix);
  const double encoded = MonoNow();
  std::lock_guard<std::mutex> lock(dir_mu_);
  std::string error;
  if (!EnsureDir(&error) ||
      !WriteFileAtomically(dir_fd_, kFileName, kTempName, text, &error)) {
    Failed(error);
    return false;
  }
  const double end = MonoNow();
  last_success_unix_ = UnixNow();
  log_->Message(failing_ ? LogLevel::kInfo : LogLevel::kDebug,
                failing_ ? "state written again" : "state written",
                {{"file", dir_ + "/" + kFileName},
                 {"targets", snapshot.targets.size()},
                 {"events", events.size()},
                 {"bytes", text.size()},
                 LogField::Fixed("copy_loop_ms", cost.loop_seconds * 1000, 2),
                 LogField::Fixed("copy_max_slice_ms", cost.max_slice * 1000, 2),
                 {"copy_slices", cost.slices},
                 LogField::Fixed("encode_ms", (encoded - start) * 1000, 1),
                 LogField::Fixed("write_ms", (end - encoded) * 1000, 1)});
  failing_ = false;
  last_error_.clear();
  return true;
}

}  // namespace connwatch
