#include "monitor/monitor.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <random>
#include <string_view>
#include <unordered_map>

#include "core/clock.h"
#include "core/shard.h"

namespace connwatch {

namespace {

// For each target of `next`, the index in `previous` of the target of the
// same name, or -1 for a new name. An unchanged target also gets the config
// object of `previous` (the one the loop runs), so Apply tells kept from
// changed by comparing pointers, and the duplicate is freed by the caller
// (the loader thread), not on the loop. With this done on the loader, a
// reload of 100,000 targets holds the loop 4-14 ms when few of them change
// (90 ms when the loop matched names and compared every config itself);
// when all of them change it is 210 ms of closing and starting targets,
// which ApplySlice spreads over loop iterations.
std::vector<int32_t> MatchTargets(const Config* previous, Config* next) {
  std::vector<int32_t> match(next->targets.size(), -1);
  if (previous == nullptr || previous->targets.empty()) return match;
  std::unordered_map<std::string_view, int32_t> by_name;
  by_name.reserve(previous->targets.size());
  for (size_t i = 0; i < previous->targets.size(); ++i) {
    by_name.emplace(previous->targets[i]->name, static_cast<int32_t>(i));
  }
  for (size_t i = 0; i < next->targets.size(); ++i) {
    auto& t = next->targets[i];
    auto it = by_name.find(t->name);
    if (it == by_name.end()) continue;
    match[i] = it->second;
    const auto& running = previous->targets[static_cast<size_t>(it->second)];
    if (running != t && *running == *t) t = running;
  }
  return match;
}

}  // namespace

// A reload being applied (Monitor::BeginApply).
struct Monitor::ApplyJob {
  std::vector<int32_t> match;
  std::vector<RunningTarget> old;  // the running targets, moved out as applied
  size_t next = 0;          // next index in applied_->targets
  size_t next_removed = 0;  // then: next index in old, for those left (removed)
  size_t kept = 0, changed = 0, added = 0, removed = 0;
  double load_seconds = 0;
  double started = 0;       // MonoNow() when it began
  double loop_seconds = 0;  // loop time spent in slices
  double max_slice = 0;
  size_t slices = 0;
};

Monitor::Monitor(Options options, EventLog* log)
    : options_(std::move(options)),
      log_(log),
      loop_owner_{ev_loop_new(static_cast<unsigned>(EVBACKEND_EPOLL) | static_cast<unsigned>(EVFLAG_NOENV))},
      loop_(loop_owner_.loop),
      resolver_(loop_),
      admission_(loop_),
      checks_due_(loop_, &ctx_.now, &Target::CheckDue) {
  ctx_.loop = loop_;
  ctx_.resolver = &resolver_;
  ctx_.admission = &admission_;
  ctx_.checks_due = &checks_due_;
  // NOTE: the off-loop closer stays unwired (ctx_.closer nullptr: close() on
  // the loop). libev applies an ev_io_stop to epoll lazily, at the next
  // iteration's fd_reify, so its epoll_ctl on a descriptor handed to the
  // closer races that thread's close() (ThreadSanitizer, CI 2026-12-02), and
  // after the close the number may already belong to a new socket. Wiring it
  // back needs the loop to take the descriptor out of epoll itself first.
  ctx_.closer = nullptr;
  ctx_.log = log_;
  ctx_.now = MonoNow();
  ctx_.event_reads = options_.event_reads;
  ctx_.rng.seed(options_.seed ? options_.seed : std::random_device{}());
  ev_async_init(&async_, &Monitor::AsyncCb);
  async_.data = this;
  ev_async_start(loop_, &async_);
  ev_timer_init(&tick_, &Monitor::TickCb, 0., 1.);
  tick_.data = this;
  ev_timer_again(loop_, &tick_);
  ev_timer_init(&storage_timer_, &Monitor::StorageCb, options_.storage_interval,
                options_.storage_interval);
  storage_timer_.data = this;
  ev_prepare_init(&prepare_, &Monitor::PrepareCb);
  prepare_.data = this;
  ev_prepare_start(loop_, &prepare_);
  ev_check_init(&check_, &Monitor::CheckCb);
  check_.data = this;
  // Runs before every other callback of the iteration, so its time is the wake-up.
  ev_set_priority(&check_, EV_MAXPRI);
  ev_check_start(loop_, &check_);
  ev_unref(loop_);  // neither watcher keeps the loop alive
  ev_unref(loop_);
  // The loop's own watchers must not keep Run() alive after Stop().
  last_tick_mono_ = MonoNow();
}

Monitor::~Monitor() {
  if (loader_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(loader_mu_);
      loader_quit_ = true;
    }
    loader_cv_.notify_one();
    loader_.join();  // a load in progress finishes first; its result is dropped
  }
  apply_.reset();
  targets_.clear();
  if (signals_installed_) {
    ev_signal_stop(loop_, &sighup_);
    ev_signal_stop(loop_, &sigterm_);
    ev_signal_stop(loop_, &sigint_);
  }
  ev_async_stop(loop_, &async_);
  ev_timer_stop(loop_, &tick_);
  ev_timer_stop(loop_, &storage_timer_);
  ev_ref(loop_);
  ev_ref(loop_);
  ev_prepare_stop(loop_, &prepare_);
  ev_check_stop(loop_, &check_);
}

void Monitor::CheckCb(struct ev_loop* /*loop*/, ev_check* w, int /*revents*/) {
  auto* self = static_cast<Monitor*>(w->data);
  self->woke_at_ = MonoNow();
  // The targets' clock for this iteration (monotonic, like libev's timers).
  self->ctx_.now = self->woke_at_;
  self->ctx_.handshake_deadline = self->woke_at_ + self->options_.handshake_slice;
  self->ctx_.handshake_steps = 0;
}

void Monitor::PrepareCb(struct ev_loop* /*loop*/, ev_prepare* w, int /*revents*/) {
  auto* self = static_cast<Monitor*>(w->data);
  // The iteration's log lines in one write, before the loop blocks.
  self->log_->Flush();
  if (self->woke_at_ > 0) self->loop_busy_.Observe(MonoNow() - self->woke_at_);
  self->woke_at_ = 0;
}

std::vector<std::string> Monitor::Start() {
  std::string err = resolver_.Init(options_.dns_servers);
  if (!err.empty()) return {err};
  ConfigLoadResult result = LoadConfigFile(options_.config_path);
  if (result.config) ApplyShard(options_.shard, &*result.config);
  std::vector<std::string> errors;
  for (const auto& e : result.errors) errors.push_back(e.ToString());
  if (!errors.empty()) return errors;
  std::optional<StoredState> saved;
  if (!options_.storage_path.empty()) {
    store_ = std::make_unique<StateStore>(options_.storage_path, log_);
    saved = store_->Open();
    ev_timer_start(loop_, &storage_timer_);
  } else {
    log_->Message(LogLevel::kInfo,
                  "state is not kept across restarts (--storage.path is empty)");
  }
  ctx_.now = MonoNow();  // loading took a while; the loop has not run yet
  const std::vector<int32_t> match = MatchTargets(nullptr, &*result.config);
  applied_ = std::make_shared<const Config>(std::move(*result.config));
  BeginApply(match, 0);
  ApplySlice(true);  // the loop has not started: nothing to keep waiting
  apply_.reset();
  if (saved) RestoreState(*saved);
  last_reload_ok_ = true;
  last_reload_success_unix_ = UnixNow();
  ready_ = true;
  log_->Message(LogLevel::kInfo, "config loaded",
                {{"file", options_.config_path},
                 {"targets", applied_->targets.size()},
                 {"files", applied_->files.size()}});
  if (applied_->global.shard.total > 1) {
    log_->Message(LogLevel::kInfo, "sharded",
                  {{"shard", std::to_string(applied_->global.shard.index) + "/" +
                                 std::to_string(applied_->global.shard.total)},
                   {"kept", applied_->targets.size()},
                   {"skipped", applied_->shard_targets_skipped}});
  }
  return {};
}

void Monitor::Run() {
  // NOTE: OpenSSL writes a TLS target's records with write(), not send() with
  // MSG_NOSIGNAL: writing to a connection the peer reset raises SIGPIPE,
  // which kills the process by default. connwatchd ignores SIGPIPE (main.cc);
  // the loop thread also blocks it, so that a process embedding the library
  // (the tests) gets EPIPE too. A synchronous SIGPIPE blocked on the thread
  // that caused it stays pending and harmless.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  running_ = true;
  log_->BufferOnThisThread();
  ev_run(loop_, 0);
  log_->StopBuffering();
  running_ = false;
  stopped_ = true;
}

void Monitor::Stop() {
  Post([this] { ShutdownInLoop(); });
}

void Monitor::ShutdownInLoop() {
  if (shutting_down_) {
    ev_break(loop_, EVBREAK_ALL);
    return;
  }
  shutting_down_ = true;
  if (shutdown_hook_) shutdown_hook_();
  // Reload requests still waiting are answered: no config will be applied.
  std::vector<ReloadDone> waiters;
  waiters.swap(load_waiters_);
  for (auto& w : next_waiters_) waiters.push_back(std::move(w));
  next_waiters_.clear();
  for (auto& w : waiters) w({"the daemon is shutting down"});
  // Before the closes: the file keeps the targets as they were, up or down.
  WriteStateAtShutdown();
  size_t closed = 0;
  for (auto& t : targets_) {
    closed += t.up_count();
    t.Close("shutdown", false);
  }
  if (apply_) {
    // A reload's apply in progress: the targets it has not reached yet.
    for (auto& t : apply_->old) {
      if (!t) continue;
      closed += t.up_count();
      t.Close("shutdown", false);
    }
    apply_.reset();
  }
  targets_.clear();
  ++targets_generation_;
  closer_.Drain();  // every connection is closed when Run returns
  log_->Message(LogLevel::kInfo, "shutting down", {{"connections_closed", closed}});
  ev_break(loop_, EVBREAK_ALL);
}

std::string Monitor::StatusLine() const {
  // Connections: a target with every address held counts each endpoint.
  size_t connections = targets_.size();
  if (endpoint_sets_ > 0) {
    connections = 0;
    for (const auto& t : targets_) connections += t.connections();
  }
  return std::to_string(ctx_.targets_by_state[static_cast<size_t>(TargetState::kUp)]) + "/" +
         std::to_string(connections) + " targets up";
}

void Monitor::InstallSignalHandlers() {
  ev_signal_init(&sighup_, &Monitor::SignalCb, SIGHUP);
  ev_signal_init(&sigterm_, &Monitor::SignalCb, SIGTERM);
  ev_signal_init(&sigint_, &Monitor::SignalCb, SIGINT);
  sighup_.data = sigterm_.data = sigint_.data = this;
  ev_signal_start(loop_, &sighup_);
  ev_signal_start(loop_, &sigterm_);
  ev_signal_start(loop_, &sigint_);
  // main() blocks these three before it starts any thread; from here on the
  // watchers take them. Threads started before keep them blocked; libev's
  // handler only records the signal, which is safe on whichever thread runs it.
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGHUP);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);
  signals_installed_ = true;
}

void Monitor::SignalCb(struct ev_loop* /*loop*/, ev_signal* w, int /*revents*/) {
  auto* self = static_cast<Monitor*>(w->data);
  if (w->signum == SIGHUP) {
    self->log_->Message(LogLevel::kInfo, "reloading on SIGHUP");
    self->RequestReload(nullptr);
  } else {
    self->log_->Message(LogLevel::kInfo, "stopping", {{"signal", w->signum == SIGTERM ? "SIGTERM" : "SIGINT"}});
    self->ShutdownInLoop();
  }
}

void Monitor::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    tasks_.push_back(std::move(task));
  }
  ev_async_send(loop_, &async_);
}

void Monitor::AsyncCb(struct ev_loop* /*loop*/, ev_async* w, int /*revents*/) {
  auto* self = static_cast<Monitor*>(w->data);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(self->tasks_mu_);
    tasks.swap(self->tasks_);
  }
  for (auto& task : tasks) task();
}

void Monitor::TickCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<Monitor*>(w->data);
  self->last_tick_mono_ = MonoNow();
  // Every second: an operator may raise the limit of a running daemon (prlimit).
  self->UpdateSocketBudget();
}

void Monitor::UpdateSocketBudget() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
  const size_t max = static_cast<size_t>(limit.rlim_cur);
  const size_t reserve = std::min<size_t>(kFdReserve + options_.http_fds, max / 2);
  ctx_.socket_budget = max - reserve;
}

bool Monitor::Healthy() {
  // The tick timer runs every second; three missed ticks mean a stuck loop.
  return running_.load() && MonoNow() - last_tick_mono_.load() < 3.0;
}

struct Monitor::SnapshotJob {
  std::shared_ptr<std::promise<std::shared_ptr<const Snapshot>>> promise;
  // Instead of the promise (the state file's copy): called on the loop.
  std::function<void(std::shared_ptr<Snapshot>, StateStore::CopyCost)> done;
  StateStore::CopyCost cost;
  std::shared_ptr<Snapshot> snapshot = std::make_shared<Snapshot>();
  size_t next = 0;
  uint64_t generation = 0;
  bool started = false;
};

std::shared_ptr<const Snapshot> Monitor::GetSnapshot() {
  // Before Run() the request waits in the queue for the loop's first turn.
  if (stopped_.load()) return nullptr;
  auto promise = std::make_shared<std::promise<std::shared_ptr<const Snapshot>>>();
  auto future = promise->get_future();
  auto job = std::make_shared<SnapshotJob>();
  job->promise = promise;
  Post([this, job] { ContinueSnapshot(job); });
  if (future.wait_for(std::chrono::seconds(5)) != std::future_status::ready) return nullptr;
  return future.get();
}

std::vector<std::string> Monitor::Reload() {
  if (stopped_.load()) return {"the event loop has stopped"};
  auto promise = std::make_shared<std::promise<std::vector<std::string>>>();
  auto future = promise->get_future();
  Post([this, promise] {
    RequestReload([promise](const std::vector<std::string>& errors) { promise->set_value(errors); });
  });
  if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    return {"reload did not finish within 60s"};
  }
  return future.get();
}

void Monitor::RequestReload(ReloadDone done) {
  if (shutting_down_) {
    if (done) done({"the daemon is shutting down"});
    return;
  }
  if (loading_) {
    // The running load may have read the file before this request's edit.
    load_again_ = true;
    if (done) next_waiters_.push_back(std::move(done));
    return;
  }
  if (done) load_waiters_.push_back(std::move(done));
  if (reload_hook_) reload_hook_(true);
  StartLoad();
}

void Monitor::StartLoad() {
  loading_ = true;
  log_->Message(LogLevel::kDebug, "loading config", {{"file", options_.config_path}});
  {
    std::lock_guard<std::mutex> lock(loader_mu_);
    loader_request_ = true;
    loader_previous_ = applied_;
  }
  if (!loader_.joinable()) {
    loader_ = std::thread([this] { LoaderMain(); });
  } else {
    loader_cv_.notify_one();
  }
}

void Monitor::LoaderMain() {
  std::shared_ptr<const Config> previous;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(loader_mu_);
      loader_cv_.wait(lock, [this] { return loader_request_ || loader_quit_; });
      if (loader_quit_) return;
      loader_request_ = false;
      previous = std::move(loader_previous_);
    }
    const double start = MonoNow();
    auto result = std::make_shared<ConfigLoadResult>(LoadConfigFile(options_.config_path));
    // Before matching: a target that moved to another shard is removed.
    if (result->config) ApplyShard(options_.shard, &*result->config);
    auto match = std::make_shared<std::vector<int32_t>>();
    if (result->config) *match = MatchTargets(previous.get(), &*result->config);
    const double seconds = MonoNow() - start;
    // `previous` goes along: the match holds only if the loop still runs it.
    Post([this, result, seconds, match, previous = std::move(previous)] {
      FinishLoad(*result, seconds, *match, previous.get());
    });
  }
}

void Monitor::FinishLoad(ConfigLoadResult& result, double load_seconds,
                         const std::vector<int32_t>& match, const Config* matched_against) {
  loading_ = false;
  if (shutting_down_) return;
  std::vector<std::string> errors;
  for (const auto& e : result.errors) errors.push_back(e.ToString());
  const LogField load_ms = LogField::Fixed("load_ms", load_seconds * 1000, 1);
  if (!errors.empty()) {
    last_reload_ok_ = false;
    for (const auto& e : errors) log_->Message(LogLevel::kError, "config error", {{"error", e}});
    log_->Message(LogLevel::kError, "reload failed; the previous config keeps running",
                  {{"errors", errors.size()}, load_ms});
  } else {
    // Still loading_ until the apply ends: a request meanwhile is answered by
    // the next load, which matches against this config.
    loading_ = true;
    std::vector<int32_t> rematch;
    const bool matched = matched_against == applied_.get();
    if (!matched) rematch = MatchTargets(applied_.get(), &*result.config);  // not expected
    applied_ = std::make_shared<const Config>(std::move(*result.config));
    log_->Message(LogLevel::kInfo, "applying config",
                  {{"targets", applied_->targets.size()}, load_ms});
    BeginApply(matched ? match : rematch, load_seconds);
    ContinueApply();
    return;
  }
  AnswerLoad(errors);
}

void Monitor::AnswerLoad(const std::vector<std::string>& errors) {
  std::vector<ReloadDone> waiters;
  waiters.swap(load_waiters_);
  for (auto& w : waiters) w(errors);
  if (load_again_) {
    load_again_ = false;
    load_waiters_.swap(next_waiters_);
    StartLoad();  // the reload hook stays in "reloading" until the last load ends
    return;
  }
  if (reload_hook_) reload_hook_(false);
}


void Monitor::BeginApply(const std::vector<int32_t>& match, double load_seconds) {
  admission_.Configure(applied_->global);
  UpdateSocketBudget();
  apply_ = std::make_unique<ApplyJob>();
  apply_->match = match;
  apply_->old = std::move(targets_);
  apply_->load_seconds = load_seconds;
  apply_->started = MonoNow();
  targets_.clear();
  targets_.reserve(applied_->targets.size());
  endpoint_sets_ = 0;
  ++targets_generation_;
}

bool Monitor::ApplySlice(bool unbounded) {
  ApplyJob& job = *apply_;
  const double start = MonoNow();
  const double end_by = start + options_.apply_slice_seconds;
  const size_t max_targets = unbounded || options_.apply_slice_targets == 0
                                 ? SIZE_MAX
                                 : options_.apply_slice_targets;
  size_t done = 0;
  // The clock is read every 16 targets (about 30 us of work).
  auto slice_over = [&] {
    ++done;
    if (unbounded) return false;
    return done >= max_targets || ((done & 15) == 0 && MonoNow() >= end_by);
  };
  const auto& configs = applied_->targets;
  bool complete = true;
  while (job.next < configs.size()) {
    const size_t i = job.next++;
    const auto& cfg = configs[i];
    RunningTarget running;
    if (i < job.match.size() && job.match[i] >= 0) {
      running = std::move(job.old[static_cast<size_t>(job.match[i])]);
    }
    if (running && &running.config() == cfg.get()) {
      endpoint_sets_ += running.endpoints ? 1 : 0;
      targets_.push_back(std::move(running));  // unchanged: same config object
      ++job.kept;
      // Moving a pointer: not counted against apply_slice_targets, and the
      // clock is read every 1,024 of them.
      if (!unbounded && (job.kept & 1023) == 0 && MonoNow() >= end_by) {
        complete = false;
        break;
      }
      continue;
    }
    RunningTarget target;
    if (cfg->HoldsEveryAddress()) {
      target.endpoints = std::make_unique<EndpointSet>(&ctx_, cfg);
      ++endpoint_sets_;
    } else {
      target.one = std::make_unique<Target>(&ctx_, cfg);
    }
    if (running) {
      running.Close("config changed", true);
      // Counters carry over between the same kind (one connection, or endpoints).
      if (target.one && running.one) target.one->InheritCounters(*running.one);
      if (target.endpoints && running.endpoints) target.endpoints->Inherit(*running.endpoints);
      ++job.changed;
    } else {
      ++job.added;
    }
    if (target.one) target.one->Start();
    if (target.endpoints) target.endpoints->Start();
    targets_.push_back(std::move(target));
    if (slice_over()) {
      complete = false;
      break;
    }
  }
  if (complete) {
    while (job.next_removed < job.old.size()) {
      auto& target = job.old[job.next_removed++];
      if (!target) continue;
      target.Close("removed from config", true);
      target = RunningTarget{};
      ++job.removed;
      if (slice_over()) {
        complete = job.next_removed == job.old.size();
        break;
      }
    }
  }
  ++targets_generation_;
  const double spent = MonoNow() - start;
  job.loop_seconds += spent;
  job.max_slice = std::max(job.max_slice, spent);
  ++job.slices;
  if (complete) {
    log_->Message(LogLevel::kInfo, "targets applied",
                  {{"kept", job.kept}, {"changed", job.changed}, {"added", job.added},
                   {"removed", job.removed}});
  }
  return complete;
}

void Monitor::ContinueApply() {
  if (!apply_ || shutting_down_) return;
  const bool complete = ApplySlice(false);
  if (options_.on_apply_slice) options_.on_apply_slice(apply_->next);
  if (!complete) {
    // The next slice runs in a later iteration, after the I/O pending then.
    Post([this] { ContinueApply(); });
    return;
  }
  FinishApply();
}

void Monitor::FinishApply() {
  std::unique_ptr<ApplyJob> job = std::move(apply_);
  loading_ = false;
  last_reload_ok_ = true;
  last_reload_success_unix_ = UnixNow();
  log_->Message(LogLevel::kInfo, "config reloaded",
                {{"targets", targets_.size()},
                 LogField::Fixed("load_ms", job->load_seconds * 1000, 1),
                 LogField::Fixed("apply_ms", job->loop_seconds * 1000, 1),
                 LogField::Fixed("apply_max_slice_ms", job->max_slice * 1000, 1),
                 {"apply_slices", job->slices},
                 LogField::Fixed("apply_wall_ms", (MonoNow() - job->started) * 1000, 1)});
  std::vector<std::shared_ptr<SnapshotJob>> waiting;
  waiting.swap(snapshots_waiting_);
  for (auto& snapshot : waiting) Post([this, snapshot] { ContinueSnapshot(snapshot); });
  AnswerLoad({});
}

void Monitor::ContinueSnapshot(const std::shared_ptr<SnapshotJob>& job) {
  if (apply_) {
    snapshots_waiting_.push_back(job);  // resumed by FinishApply
    return;
  }
  Snapshot& snap = *job->snapshot;
  const double slice_start = MonoNow();
  auto count_slice = [&] {
    const double spent = MonoNow() - slice_start;
    job->cost.loop_seconds += spent;
    job->cost.max_slice = std::max(job->cost.max_slice, spent);
    ++job->cost.slices;
  };
  if (!job->started || job->generation != targets_generation_) {
    // First slice, or the target list changed under us: start over.
    job->started = true;
    job->generation = targets_generation_;
    job->next = 0;
    snap.targets.clear();
    snap.targets.reserve(targets_.size());
  }
  // A slice is kSnapshotSlice connections: a target with every address held
  // fills one per endpoint.
  const size_t slice_end = snap.targets.size() + kSnapshotSlice;
  while (job->next < targets_.size() && snap.targets.size() < slice_end) {
    targets_[job->next++].FillSnapshots(&snap.targets);
  }
  if (job->next < targets_.size()) {
    count_slice();
    // The next slice runs in a later iteration, after pending I/O.
    Post([this, job] { ContinueSnapshot(job); });
    return;
  }
  snap.taken_unix = UnixNow();
  snap.targets_by_state.fill(0);
  for (const auto& t : snap.targets) ++snap.targets_by_state[static_cast<size_t>(t.state)];
  snap.connect_duration = ctx_.connect_duration.Snapshot();
  snap.connection_lifetime = ctx_.connection_lifetime.Snapshot();
  snap.tls_handshake_duration = ctx_.tls_handshake_duration.Snapshot();
  snap.loop_busy = loop_busy_.Snapshot();
  snap.checks = ctx_.checks;
  snap.probe_runs = ctx_.probe_runs;
  snap.detections = ctx_.detections;
  snap.config_loaded = ready_.load();
  snap.last_reload_successful = last_reload_ok_;
  if (applied_) {
    snap.shard = applied_->global.shard;
    snap.shard_targets_skipped = applied_->shard_targets_skipped;
  }
  snap.last_reload_success_unix = last_reload_success_unix_;
  if (store_) {
    snap.state_write_failures = store_->failures();
    snap.state_last_write_success_unix = store_->last_success_unix();
  }
  count_slice();
  if (job->done) {
    job->done(std::move(job->snapshot), job->cost);
    return;
  }
  job->promise->set_value(std::move(job->snapshot));
}

void Monitor::StorageCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<Monitor*>(w->data);
  if (self->shutting_down_) return;
  if (self->state_copy_running_ || self->store_->busy()) {
    // The last copy or write has not ended in a whole interval (a very slow
    // disk, or an interval shorter than a write): this interval's is skipped.
    self->store_->CountSkipped(self->state_copy_running_
                                   ? "the last snapshot is still being copied"
                                   : "the last write has not finished");
    return;
  }
  self->state_copy_running_ = true;
  auto job = std::make_shared<SnapshotJob>();
  job->done = [self](std::shared_ptr<Snapshot> snapshot, StateStore::CopyCost cost) {
    self->state_copy_running_ = false;
    if (self->shutting_down_) return;
    self->store_->WriteAsync(std::move(snapshot), cost);
  };
  self->ContinueSnapshot(job);
}

void Monitor::WriteStateAtShutdown() {
  if (!store_) return;
  ev_timer_stop(loop_, &storage_timer_);
  const double start = MonoNow();
  Snapshot snap;
  snap.targets.reserve(targets_.size());
  for (const auto& t : targets_) t.FillSnapshots(&snap.targets);
  if (apply_) {
    // A reload's apply in progress: the targets it has not reached yet.
    for (const auto& t : apply_->old) {
      if (t) t.FillSnapshots(&snap.targets);
    }
  }
  snap.taken_unix = UnixNow();
  const double copied = MonoNow();
  const bool ok = store_->WriteNow(snap);
  log_->Message(ok ? LogLevel::kInfo : LogLevel::kWarn,
                ok ? "state saved" : "state not saved at shutdown",
                {{"file", store_->dir() + "/" + StateStore::kFileName},
                 {"targets", snap.targets.size()},
                 LogField::Fixed("copy_ms", (copied - start) * 1000, 1),
                 LogField::Fixed("write_ms", (MonoNow() - copied) * 1000, 1)});
}

void Monitor::RestoreState(const StoredState& saved) {
  // This process's monotonic clock minus the saving one's at one instant.
  const double mono_delta = saved.mono_to_unix - (UnixNow() - MonoNow());
  // A target with addresses: all or srv saved one entry per endpoint.
  std::unordered_map<std::string_view, std::vector<const StoredTarget*>> by_name;
  by_name.reserve(saved.targets.size());
  for (const StoredTarget& t : saved.targets) by_name[t.name].push_back(&t);
  size_t restored = 0, moved = 0;
  for (auto& target : targets_) {
    auto it = by_name.find(target.config().name);
    if (it == by_name.end()) continue;
    if (it->second.front()->address != target.config().address) {
      ++moved;  // another address: another story, started fresh
    } else if (target.one) {
      // An entry of an endpoint (the config said addresses: all before) is
      // another connection's story: only a target's own entry is restored.
      const StoredTarget* own = nullptr;
      for (const StoredTarget* t : it->second) {
        if (t->endpoint.empty()) own = t;
      }
      if (own != nullptr) {
        target.one->Restore(*own, mono_delta);
        ++restored;
      }
    } else {
      target.endpoints->Restore(it->second, mono_delta);
      ++restored;
    }
    by_name.erase(it);
  }
  const size_t events = saved.events.size();
  const bool events_ok = log_->Restore(saved.events, saved.next_seq);
  log_->Message(LogLevel::kInfo, "state restored",
                {{"file", store_->dir() + "/" + StateStore::kFileName},
                 LogField::Seconds("age", std::max(0.0, UnixNow() - saved.saved_unix)),
                 {"restored", restored},
                 {"address_changed", moved},
                 {"new", targets_.size() - restored - moved},
                 {"not_configured", by_name.size()},
                 {"events", events_ok ? events : 0}});
}

}  // namespace connwatch
