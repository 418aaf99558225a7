#include "monitor/service_notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdlib>

namespace connwatch {

ServiceNotifier::ServiceNotifier(struct ev_loop* loop, std::function<std::string()> status)
    : loop_(loop), status_(std::move(status)) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  uint64_t usec = 0;
  // 0 unsets nothing: the environment stays for children we never spawn.
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
  ev_timer_init(&watchdog_, &ServiceNotifier::WatchdogCb, 0., 0.);
  watchdog_.data = this;
  ev_timer_init(&status_timer_, &ServiceNotifier::StatusCb, 0., 0.);
  status_timer_.data = this;
}

ServiceNotifier::~ServiceNotifier() {
  ev_timer_stop(loop_, &watchdog_);
  ev_timer_stop(loop_, &status_timer_);
}

void ServiceNotifier::Start() {
  if (!enabled_) return;
  if (watchdog_usec_ > 0) {
    // Ping at half the interval, as sd_watchdog_enabled(3) recommends.
    const double every = static_cast<double>(watchdog_usec_) / 2e6;
    ev_timer_set(&watchdog_, every, every);
    ev_timer_start(loop_, &watchdog_);
  }
  ev_timer_set(&status_timer_, 1., 1.);
  ev_timer_start(loop_, &status_timer_);
}

void ServiceNotifier::Send(const std::string& state) {
  if (!enabled_) return;
  sd_notify(0, state.c_str());
}

void ServiceNotifier::Ready() {
  last_status_ = status_ ? status_() : "";
  Send("READY=1\nSTATUS=" + last_status_);
}

void ServiceNotifier::Reloading() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const unsigned long long usec =
      static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL + static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading");
}

void ServiceNotifier::Stopping() { Send("STOPPING=1\nSTATUS=stopping"); }

void ServiceNotifier::WatchdogCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  static_cast<ServiceNotifier*>(w->data)->Send("WATCHDOG=1");
}

void ServiceNotifier::StatusCb(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
  auto* self = static_cast<ServiceNotifier*>(w->data);
  if (!self->status_) return;
  std::string status = self->status_();
  if (status == self->last_status_) return;
  self->last_status_ = status;
  self->Send("STATUS=" + status);
}

}  // namespace connwatch
