#pragma once
// The Monitor owns the event loop and everything it drives: the targets, the
// resolver, reload and shutdown. Only the loop thread touches targets; other
// threads talk to it through Post() (an ev_async queue) and get snapshots.

#include <ev.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/loader.h"
#include "core/histogram.h"
#include "core/event_log.h"
#include "net/resolver.h"
#include "core/snapshot.h"
#include "monitor/state_store.h"
#include "net/endpoint_set.h"
#include "net/target.h"

namespace connwatch {

class Monitor : public DaemonControl {
 public:
  struct Options {
    std::string config_path;
    std::string dns_servers;  // overrides resolv.conf when set
    uint64_t seed = 0;        // 0: random
    // File descriptors kept out of the targets' budget for the HTTP server
    // (HttpServer::FdsNeeded), on top of kFdReserve for DNS, config reads
    // and the daemon's own.
    size_t http_fds = 0;
    // Bench-only: leave held sockets out of EV_READ (LoopContext::event_reads).
    bool event_reads = true;
    // A reload is applied in slices of at most this much loop time (and, when
    // not 0, of at most apply_slice_targets targets: tests), one slice per
    // loop iteration, so the loop goes on detecting closes during the apply.
    double apply_slice_seconds = 0.002;
    size_t apply_slice_targets = 0;
    // Tests: called on the loop after each slice of a reload's apply, with the
    // number of config targets applied so far.
    std::function<void(size_t applied)> on_apply_slice = nullptr;
    // TLS handshake work per loop iteration (LoopContext::handshake_deadline);
    // at least one step runs in every iteration. Tests set 0: one step each.
    double handshake_slice = 0.005;
    // --shard=I/N: overrides the file's global.shard at every load.
    std::optional<ShardConfig> shard = std::nullopt;
    // --storage.path: the directory of the state file (monitor/state_store.h);
    // empty: no state is read or written. Written every storage_interval
    // seconds and at shutdown.
    std::string storage_path = "";
    double storage_interval = 60;
  };

  Monitor(Options options, EventLog* log);
  ~Monitor() override;
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Loads the config file and schedules its targets. Call once, before Run,
  // from the thread that will call Run. Returns the errors (empty: started).
  std::vector<std::string> Start();
  // Runs the loop until Stop(); closes every connection before returning.
  void Run();
  // Any thread: close all connections and make Run return.
  void Stop();
  // SIGHUP reloads; SIGTERM and SIGINT stop. For the daemon, not for tests.
  void InstallSignalHandlers();
  // Called on the loop thread after each reload attempt (systemd notify hooks in here).
  void SetReloadHook(std::function<void(bool begin)> hook) { reload_hook_ = std::move(hook); }

  // Called on the loop thread when shutdown begins (systemd STOPPING=1).
  void SetShutdownHook(std::function<void()> hook) { shutdown_hook_ = std::move(hook); }
  // Loop thread: "412/420 targets up".
  std::string StatusLine() const;

  // Any thread: runs `task` on the loop thread.
  void Post(std::function<void()> task);

  // DaemonControl
  std::shared_ptr<const Snapshot> GetSnapshot() override;
  std::vector<std::string> Reload() override;
  bool Healthy() override;
  bool Ready() override { return ready_.load(); }

  struct ev_loop* loop() const { return loop_; }

 private:
  static void AsyncCb(struct ev_loop* loop, ev_async* w, int revents);
  static void TickCb(struct ev_loop* loop, ev_timer* w, int revents);
  static void SignalCb(struct ev_loop* loop, ev_signal* w, int revents);
  static void PrepareCb(struct ev_loop* loop, ev_prepare* w, int revents);
  static void CheckCb(struct ev_loop* loop, ev_check* w, int revents);

  // Reloads: the file is read and parsed on the loader thread, so a big or
  // hostile file never stalls the loop; only Apply() runs on the loop. A
  // request made while a load runs is answered by the next load, which starts
  // when this one ends (requests in between share it): a storm of SIGHUPs
  // costs at most two loads, and the last config written before the last
  // request is always the one applied. Loop thread only.
  using ReloadDone = std::function<void(const std::vector<std::string>& errors)>;
  void RequestReload(ReloadDone done);
  void StartLoad();
  void FinishLoad(ConfigLoadResult& result, double load_seconds, const std::vector<int32_t>& match,
                  const Config* matched_against);
  void LoaderMain();
  // Target sockets may use RLIMIT_NOFILE less kFdReserve and the HTTP
  // server's share (together at most half).
  void UpdateSocketBudget();
  // Replaces targets_ by the targets of applied_ (already the new config);
  // `match` from MatchTargets (monitor.cc) against the config targets_ ran.
  // BeginApply prepares; each ApplySlice does a slice and says whether the
  // apply is complete. On a running loop the slices are posted one per loop
  // iteration (ContinueApply) and FinishApply answers the reload.
  struct ApplyJob;
  void BeginApply(const std::vector<int32_t>& match, double load_seconds);
  bool ApplySlice(bool unbounded);
  void ContinueApply();
  void FinishApply();
  // Answers the reload requests of the load that ended; starts the next one.
  void AnswerLoad(const std::vector<std::string>& errors);
  // A snapshot is copied in slices of kSnapshotSlice targets, one slice per
  // loop iteration, so a scrape of 100,000 targets never holds the loop for
  // more than a fraction of a millisecond. A reload between slices restarts
  // the copy. Each target's figures are consistent; targets_by_state is
  // counted from the copied states, so it always agrees with the series.
  struct SnapshotJob;
  static constexpr size_t kSnapshotSlice = 2000;
  void ContinueSnapshot(const std::shared_ptr<SnapshotJob>& job);
  void ShutdownInLoop();
  // The state file: restored at Start, a snapshot handed to the store's
  // writer every storage_interval (StorageCb), one written at shutdown.
  void RestoreState(const StoredState& saved);
  static void StorageCb(struct ev_loop* loop, ev_timer* w, int revents);
  void WriteStateAtShutdown();

  // Destroys the loop after every watcher on it (declared before them).
  struct LoopOwner {
    struct ev_loop* loop;
    ~LoopOwner() { ev_loop_destroy(loop); }
  };

  Options options_;
  EventLog* log_;
  LoopOwner loop_owner_;
  struct ev_loop* loop_;
  Resolver resolver_;
  Admission admission_;
  SocketCloser closer_;  // outlives the targets: their last closes go through it
  LoopContext ctx_;
  CheckScheduler checks_due_;  // after ctx_ (it reads ctx_.now); targets_ go first
  // What one config target runs: its one connection (addresses: first), or
  // the endpoints of a target that holds every address (net/endpoint_set.h).
  struct RunningTarget {
    std::unique_ptr<Target> one;
    std::unique_ptr<EndpointSet> endpoints;
    explicit operator bool() const { return one != nullptr || endpoints != nullptr; }
    const TargetConfig& config() const { return one ? one->config() : endpoints->config(); }
    size_t connections() const { return one ? 1 : endpoints->endpoint_count(); }
    size_t up_count() const { return one ? (one->up() ? 1 : 0) : endpoints->up_count(); }
    void Close(std::string_view why, bool log) {
      if (one) one->Close(why, log);
      if (endpoints) endpoints->Close(why, log);
    }
    void FillSnapshots(std::vector<TargetSnapshot>* out) const {
      if (one) {
        one->FillSnapshot(&out->emplace_back());
      } else {
        endpoints->FillSnapshots(out);
      }
    }
  };
  std::vector<RunningTarget> targets_;  // in config order
  size_t endpoint_sets_ = 0;            // of targets_, those with endpoints
  uint64_t targets_generation_ = 0;               // bumped whenever targets_ changes

  // The apply of a reload in progress (loop thread), and the snapshots that
  // wait for it to end (a snapshot shows one config, never half of each).
  std::unique_ptr<ApplyJob> apply_;
  std::vector<std::shared_ptr<SnapshotJob>> snapshots_waiting_;

  ev_async async_;
  ev_timer tick_;
  std::unique_ptr<StateStore> store_;  // null: --storage.path empty
  ev_timer storage_timer_;
  bool state_copy_running_ = false;  // a snapshot for the store is being copied
  // Busy time per iteration: from the wake-up (check) to the next block (prepare).
  ev_prepare prepare_;
  ev_check check_;
  double woke_at_ = 0;
  FixedHistogram loop_busy_{{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                             0.5, 1}};
  ev_signal sighup_, sigterm_, sigint_;
  bool signals_installed_ = false;
  std::mutex tasks_mu_;
  std::vector<std::function<void()>> tasks_;

  std::atomic<bool> ready_{false};
  std::atomic<bool> running_{false};
  std::atomic<bool> stopped_{false};  // Run() has returned
  static constexpr size_t kFdReserve = 64;
  std::atomic<double> last_tick_mono_{0};
  bool last_reload_ok_ = false;
  double last_reload_success_unix_ = 0;
  std::function<void(bool)> reload_hook_;
  std::function<void()> shutdown_hook_;

  // Reload state, loop thread only.
  bool loading_ = false;
  bool shutting_down_ = false;
  std::vector<ReloadDone> load_waiters_;  // answered by the running load
  std::vector<ReloadDone> next_waiters_;  // answered by the next load
  bool load_again_ = false;               // a request arrived during the running load
  // The loader thread, started on the first reload; guarded by loader_mu_.
  std::mutex loader_mu_;
  std::condition_variable loader_cv_;
  bool loader_request_ = false;
  bool loader_quit_ = false;
  std::shared_ptr<const Config> loader_previous_;  // what the loop runs, for MatchTargets
  // The config the loop runs (loop thread; handed to the loader with a request).
  std::shared_ptr<const Config> applied_;
  std::thread loader_;
};

}  // namespace connwatch
