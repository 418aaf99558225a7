#pragma once
// systemd's notify protocol through libsystemd's sd_notify: READY=1 once the
// config is loaded and the listener is up, RELOADING=1/READY=1 around a
// reload, STOPPING=1 on shutdown, STATUS= lines, and WATCHDOG=1 sent by a
// timer on the event loop itself, so a stuck loop stops the pings and systemd
// restarts the service. Without NOTIFY_SOCKET every call is a no-op.
// Owned by main; loop thread only (after Start).

#include <ev.h>

#include <functional>
#include <string>

namespace connwatch {

class ServiceNotifier {
 public:
  // `status` returns the current STATUS= text, e.g. "412/420 targets up".
  ServiceNotifier(struct ev_loop* loop, std::function<std::string()> status);
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  bool enabled() const { return enabled_; }
  // The watchdog interval systemd asked for (WATCHDOG_USEC), 0 if none.
  uint64_t watchdog_usec() const { return watchdog_usec_; }

  // Arms the watchdog and status timers on the loop. Call once.
  void Start();
  void Ready();
  void Reloading();
  void Stopping();

 private:
  static void WatchdogCb(struct ev_loop* loop, ev_timer* w, int revents);
  static void StatusCb(struct ev_loop* loop, ev_timer* w, int revents);
  void Send(const std::string& state);

  struct ev_loop* loop_;
  std::function<std::string()> status_;
  bool enabled_ = false;
  uint64_t watchdog_usec_ = 0;
  std::string last_status_;
  ev_timer watchdog_;
  ev_timer status_timer_;
};

}  // namespace connwatch
