#pragma once
// The periodic probes of one held connection: the system calls of each probe
// in the target's `probes:` order, each answer classified by core/liveness,
// stopping at the first probe that finds the connection dead. docs/PROBES.md
// says what each probe can and cannot see and what it costs. Loop thread.

#include <array>
#include <cstdint>

#include "core/liveness.h"
#include "core/probe.h"
#include "core/tcp_sample.h"

namespace connwatch {

struct ProbeResult {
  // kAlive, or kDead with the reason. (kData and kIcmpError never end here:
  // data waiting is alive for the run, and an ICMP error goes to `icmp`.)
  Verdict verdict;
  Detector by = Detector::kTcpInfo;  // the probe behind a kDead verdict
  // TCP_INFO read during the run (by the tcp_info probe, or after an error
  // for the event's snapshot); valid only when read.
  TcpSample sample;
  // Set when `sample` came from the tcp_info probe of a connection that is
  // ESTABLISHED: a fresh periodic sample (rtt, retransmits).
  bool fresh_sample = false;
  // An ICMP error reported on the way while the connection stayed
  // established (kIcmpError), and the probe that saw it. The run goes on.
  Verdict icmp;
  Detector icmp_by = Detector::kSoError;
};

// Runs `probes` on `fd`; `last_check` is the last periodic TCP_INFO sample
// (for classifying ETIMEDOUT). Adds one to runs[detector] per probe run.
//   peek      -1 EAGAIN alive; 0 peer_closed; 1 data waiting (alive for the
//             peek: tcp_info, when listed, tells whether a FIN hides behind
//             it); -1 other: the error.
//   zero_send 0 alive; -1: the pending error (ECONNRESET once, then EPIPE) or
//             our own shutdown.
//   tcp_info  ESTABLISHED alive; CLOSE_WAIT / LAST_ACK peer_closed; any other
//             state: SO_ERROR is read to say why.
//   so_error  0 alive; else the error (TCP_INFO is read to tell a death from
//             a soft ICMP error on a connection still established).
ProbeResult RunProbes(int fd, const ProbeList& probes, const TcpSample& last_check,
                      std::array<uint64_t, kDetectorCount>* runs);

}  // namespace connwatch
