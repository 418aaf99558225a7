#pragma once
// The subset of struct tcp_info that connwatch keeps, decoded once. Plain data.

#include <cstdint>

namespace connwatch {

struct TcpSample {
  bool valid = false;         // false when TCP_INFO could not be read.
  uint8_t state = 0;          // tcpi_state (TCP_ESTABLISHED = 1, TCP_CLOSE_WAIT = 8...).
  uint8_t retransmits = 0;    // tcpi_retransmits: current run of retransmissions.
  uint8_t probes = 0;         // tcpi_probes: unanswered keepalive/zero-window probes.
  uint8_t backoff = 0;        // tcpi_backoff.
  uint32_t rtt_us = 0;        // tcpi_rtt, smoothed.
  uint32_t rttvar_us = 0;     // tcpi_rttvar.
  uint32_t unacked = 0;       // tcpi_unacked: segments in flight.
  uint32_t total_retrans = 0; // tcpi_total_retrans over this connection's life.
  uint32_t last_data_recv_ms = 0;  // ms since the peer last sent data.
  uint32_t last_ack_recv_ms = 0;   // ms since the peer last acked.
  uint32_t notsent_bytes = 0;      // tcpi_notsent_bytes: queued, not yet sent (kernel 4.6+).
  uint32_t snd_wnd = 0;            // tcpi_snd_wnd: the peer's receive window (kernel 5.4+).
};

}  // namespace connwatch
