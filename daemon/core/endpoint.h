#pragma once
// The identity of one endpoint of a target that holds every address
// (`addresses: all`, or `srv:`): the address it connects to, as the
// `endpoint` label writes it, and what the SRV record that gave it said.
// Made by the EndpointSet on the loop, then immutable and shared with every
// snapshot; any thread may read it.

#include <string>

namespace connwatch {

struct EndpointInfo {
  std::string endpoint;  // "10.0.0.5:6379" or "[2001:db8::5]:6379": the `endpoint` label
  // `srv:` targets: the SRV record's target host (the TLS server name unless
  // tls.server_name is set), priority and weight; -1 otherwise.
  std::string srv_host;
  int priority = -1;
  int weight = -1;
};

}  // namespace connwatch
