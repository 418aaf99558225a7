// Target, part of net/target.h: what a target tells and keeps (its events,
// its snapshot, the counters carried over a reload or restored after a
// restart).
#include "net/target.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <re2/re2.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/backoff.h"
#include "core/clock.h"
#include "net/probes.h"
#include "net/socket_ops.h"
#include "net/target_pool.h"
#include "net/target_detail.h"
#include "net/tcp_info.h"

namespace connwatch {

using namespace target_detail;  // NOLINT: Target's own helpers

void Target::InheritCounters(const Target& old) {
  connects_ = old.connects_;
  connect_failures_ = old.connect_failures_;
  disconnects_ = old.disconnects_;
  icmp_errors_ = old.icmp_errors_;
  retransmits_closed_ = old.retransmits_closed_;
  dns_failures_ = old.dns_failures_;
  *history_ = *old.history_;
  // The cut-off belongs to the path: kept while the address is the same.
  if (old.idle_cutoff_ && old.config_->address == config_->address) {
    idle_cutoff_ = std::make_unique<IdleCutoff>(*old.idle_cutoff_);
  }
  // What the canary found carries on, counters and last result (its series
  // stay continuous); its next attempt tells about the new config.
  if (canary_ && old.canary_) {
    canary_->InheritState(*old.canary_);
  }
}

void Target::Restore(const StoredTarget& saved, double mono_delta) {
  auto kind_index = [](std::string_view kind) -> uint8_t {
    if (kind == "connect_failure") return kKindConnectFailure;
    if (kind == "disconnect") return kKindDisconnect;
    return kKindConnect;
  };
  connects_ = saved.connects;
  connect_failures_ = saved.connect_failures;
  disconnects_ = saved.disconnects;
  icmp_errors_ = saved.icmp_errors;
  retransmits_closed_ = saved.retransmits;
  dns_failures_ = saved.dns_failures;
  last_change_unix_ = saved.last_change_unix;
  restored_up_ = saved.up;
  has_last_event_ = saved.has_last_event;
  last_event_kind_ = kind_index(saved.last_event_kind);
  last_errno_ = saved.last_errno;
  last_event_unix_ = saved.last_event_unix;
  has_last_detected_by_ = saved.has_last_detected_by;
  last_detected_by_ = saved.last_detected_by;
  // A connect sets no reason: after one, last_reason_ is the last failure's.
  last_reason_ = saved.has_last_event && last_event_kind_ != kKindConnect
                     ? saved.last_reason
                     : saved.last_failure_reason;
  last_failure_kind_ = kind_index(saved.last_failure_kind);
  last_failure_errno_ = saved.last_failure_errno;
  last_failure_unix_ = saved.last_failure_unix;
  has_rtt_ = saved.has_rtt;
  last_sample_.rtt_us = static_cast<uint32_t>(std::lround(saved.rtt_seconds * 1e6));
  if (saved.tls) tls_peer_ = saved.tls;
  UpHistory history;
  if (UpHistory::Load(saved.history, &history)) {
    *history_ = history.Rebased(mono_delta);
    history_->Unobserved(saved.history_at + mono_delta, MonoNow());
  }
  IdleCutoff cutoff;
  if (saved.has_idle_cutoff && IdleCutoff::Restore(saved.idle_ages, saved.idle_count,
                                                   saved.idle_next, saved.idle_cutoff_seconds,
                                                   &cutoff)) {
    idle_cutoff_ = std::make_unique<IdleCutoff>(cutoff);
  }
}

Event Target::MakeEvent(std::string kind, LogLevel level) const {
  Event e;
  e.unix_time = UnixNow();
  e.level = level;
  e.kind = std::move(kind);
  e.target = config_->name;
  e.address = config_->Where();
  e.resolved_address = resolved_text_;
  if (endpoint_) e.endpoint = endpoint_->endpoint;
  return e;
}

void Target::FillSnapshot(TargetSnapshot* out) const {
  out->config = config_;
  out->endpoint = endpoint_;
  out->state = state_;
  out->up = up_;
  out->last_change_unix = last_change_unix_;
  out->resolved_address = resolved_text_;
  out->resolves_name = address_watch_ != nullptr;
  out->address_stale = address_watch_ && address_watch_->stale();
  out->dns_failures = dns_failures_;
  out->has_last_event = has_last_event_;
  if (has_last_event_) {
    out->last_event_kind = kEventKinds[last_event_kind_];
    out->last_reason = last_reason_;
    out->last_errno = last_errno_;
    out->last_event_unix = last_event_unix_;
    out->has_last_detected_by = has_last_detected_by_;
    out->last_detected_by = last_detected_by_;
  }
  out->connects = connects_;
  out->connect_failures = connect_failures_;
  out->disconnects = disconnects_;
  out->icmp_errors = icmp_errors_;
  out->idle_cutoff_seconds = idle_cutoff_ ? idle_cutoff_->seconds() : 0;
  if (idle_cutoff_) out->idle_cutoff = std::make_shared<const IdleCutoff>(*idle_cutoff_);
  if (canary_) out->canary = std::make_shared<const CanarySnapshot>(canary_->status());
  out->retransmits_total = retransmits_closed_ + (up_ ? last_sample_.total_retrans : 0);
  out->has_rtt = has_rtt_;
  out->rtt_seconds = last_sample_.rtt_us / 1e6;
  out->tls = tls_peer_;
  if (has_last_event_ && last_event_kind_ != kKindConnect) {
    out->last_failure_kind = kEventKinds[last_event_kind_];
    out->last_failure_errno = last_errno_;
    out->last_failure_unix = last_event_unix_;
  } else if (last_failure_kind_ != kKindConnect) {
    out->last_failure_kind = kEventKinds[last_failure_kind_];
    out->last_failure_errno = last_failure_errno_;
    out->last_failure_unix = last_failure_unix_;
  }
  out->last_failure_reason = last_reason_;
  out->history_at = MonoNow();
  out->history = *history_;
  out->up_seconds_total = history_->UpSecondsTotal(out->history_at);
  if (heartbeat_ && heartbeat_->has_rtt()) {
    out->has_heartbeat = true;
    out->heartbeat_seconds = heartbeat_->last_rtt();
  }
}

}  // namespace connwatch
