#pragma once
// The state file on disk (--storage.path): read once at start-up, written
// every --storage.interval and at shutdown, atomically (a temporary file in
// the same directory, fsync, rename over state.json, fsync of the
// directory), so a crash at any instant leaves the previous file or the new
// one, never half of one. The Monitor takes the snapshot on the loop; the
// encoding and the write run on this class's writer thread, so the loop
// never waits for the disk. A failed write changes nothing but
// connwatch_state_write_failures_total (and a log line): the running state
// is the loop's, never the file's.
//
// The directory is locked (flock) while the daemon runs, so two daemons
// given the same directory never overwrite each other's file: the second
// one keeps no state and counts every interval as a failure. connwatchd
// does not create the directory (systemd's StateDirectory= does); a
// directory that is missing or not writable is logged and counted the same
// way, and tried again at every interval.
//
// Thread-safe: Open and WriteNow from the loop thread (before it runs, and at
// shutdown), WriteAsync from the loop, the counters from any thread.

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/event_log.h"
#include "core/snapshot.h"
#include "core/state_file.h"

namespace connwatch {

class StateStore {
 public:
  static constexpr const char* kFileName = "state.json";
  static constexpr const char* kTempName = "state.json.tmp";
  // A file that could not be read is moved here (the last one), for a look.
  static constexpr const char* kRejectedName = "state.json.rejected";

  // `dir` must not be empty (an empty --storage.path makes no StateStore).
  StateStore(std::string dir, EventLog* log);
  ~StateStore();  // waits for a write in flight
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Start-up: locks the directory and reads the file. nullopt when there is
  // nothing to restore (no file, a file refused, a directory missing or
  // locked), each case logged.
  std::optional<StoredState> Open();

  // How the loop spent its time copying the snapshot, for the log line.
  struct CopyCost {
    double loop_seconds = 0;  // all slices together
    double max_slice = 0;
    size_t slices = 0;
  };
  // Loop thread: the writer thread encodes and writes `snapshot` with the
  // event ring as it is then. False (nothing done) while a write runs.
  bool WriteAsync(std::shared_ptr<const Snapshot> snapshot, CopyCost cost);
  // Waits for a write in flight, then writes `snapshot` on this thread
  // (shutdown). True when it was written.
  bool WriteNow(const Snapshot& snapshot);
  bool busy() const { return busy_.load(); }
  // An interval passed without a write (the snapshot could not be copied in
  // time): counted as a failure.
  void CountSkipped(const std::string& why);

  uint64_t failures() const { return failures_.load(); }
  double last_success_unix() const { return last_success_unix_.load(); }
  const std::string& dir() const { return dir_; }

 private:
  // Opens and locks the directory unless done; false with *error.
  bool EnsureDir(std::string* error);
  // Writes unless a newer snapshot (a higher `order`) was written already.
  bool Write(const Snapshot& snapshot, const CopyCost& cost, uint64_t order);
  void Failed(const std::string& error);
  void WriterMain();

  const std::string dir_;
  EventLog* log_;
  std::mutex write_mu_;  // held for a whole Write: one at a time
  uint64_t written_order_ = 0;  // guarded by write_mu_
  std::atomic<uint64_t> submitted_{0};
  std::mutex dir_mu_;  // dir_fd_, failing_, last_error_
  int dir_fd_ = -1;    // open and flock'ed
  bool failing_ = false;
  std::string last_error_;

  std::atomic<uint64_t> failures_{0};
  std::atomic<double> last_success_unix_{0};
  std::atomic<bool> busy_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const Snapshot> pending_;  // guarded by mu_
  CopyCost pending_cost_;
  uint64_t pending_order_ = 0;
  bool quit_ = false;
  std::thread writer_;
};

// Writes `data` to `name` in the directory `dir_fd` atomically: `temp_name`
// written, fsync'ed and renamed over `name`, then the directory fsync'ed.
// On failure the temporary file is removed and *error says which step failed.
bool WriteFileAtomically(int dir_fd, const char* name, const char* temp_name,
                         const std::string& data, std::string* error);

}  // namespace connwatch
