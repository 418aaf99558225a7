/* The floor for bench/probes.py: the bare system call of each probe, in a C
 * loop over N held connections, with nothing else around it.
 *
 *   probe_syscalls HOST PORT N ROUNDS [BURST]
 *
 * Opens N connections to HOST:PORT (a connwatch-peer that holds them), then
 * for each probe calls it once on every connection, ROUNDS times, and prints
 * one line of JSON: nanoseconds per call of each, and of a loop that makes
 * no call (the loop itself). Then the default probes (peek, zero_send,
 * tcp_info one after the other on a socket) three ways: on every socket in
 * descriptor order ("default"), in random order ("default_random"), and, if
 * BURST is given, as a periodic checker makes them: BURST sockets (random
 * order) every 50 ms for 3 s, in CPU time ("default_burst"). Closes with RST
 * (SO_LINGER 0) so that no TIME_WAIT is left behind. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile long sink;

static double cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
          (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) * 1e3;
}

static void default_probes(int fd) {
  char b;
  struct tcp_info info;
  socklen_t len = sizeof info;
  sink += recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  sink += send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT);
  sink += getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) + info.tcpi_state;
}

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s HOST PORT N ROUNDS [BURST]\n", argv[0]);
    return 2;
  }
  const int burst = argc == 6 ? atoi(argv[5]) : 0;
  const char* host = argv[1];
  int port = atoi(argv[2]), n = atoi(argv[3]), rounds = atoi(argv[4]);
  int* fds = calloc((size_t)n, sizeof *fds);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((unsigned short)port);
  inet_pton(AF_INET, host, &sin.sin_addr);
  for (int i = 0; i < n; ++i) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr*)&sin, sizeof sin) != 0) {
      fprintf(stderr, "connection %d: %s\n", i, strerror(errno));
      return 1;
    }
  }
  /* "default": peek, zero_send and tcp_info one after the other on each
   * connection, as a periodic check with the default probes makes them. */
  const char* names[] = {"loop", "peek", "zero_send", "tcp_info", "so_error", "default"};
  double ns[6];
  for (int kind = 0; kind < 6; ++kind) {
    double start = now_ns();
    for (int r = 0; r < rounds; ++r) {
      for (int i = 0; i < n; ++i) {
        int fd = fds[i];
        switch (kind) {
          case 0:
            sink += fd;
            break;
          case 1: {
            char b;
            sink += recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            break;
          }
          case 2:
            sink += send(fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT);
            break;
          case 3: {
            struct tcp_info info;
            socklen_t len = sizeof info;
            sink += getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) + info.tcpi_state;
            break;
          }
          case 4: {
            int e = 0;
            socklen_t len = sizeof e;
            sink += getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) + e;
            break;
          }
          case 5:
            default_probes(fd);
            break;
        }
      }
    }
    ns[kind] = (now_ns() - start) / ((double)rounds * n);
  }
  int* order = calloc((size_t)n, sizeof *order);
  for (int i = 0; i < n; ++i) order[i] = fds[i];
  srand(1);
  for (int i = n - 1; i > 0; --i) {
    int j = rand() % (i + 1), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  double start = now_ns();
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < n; ++i) default_probes(order[i]);
  }
  const double random_ns = (now_ns() - start) / ((double)rounds * n);
  double burst_ns = 0;
  if (burst > 0) {
    const struct timespec gap = {0, 50 * 1000 * 1000};
    long made = 0;
    int at = 0;
    const double cpu0 = cpu_ns();
    for (int b = 0; b < 60; ++b) {
      for (int k = 0; k < burst; ++k, ++made) {
        default_probes(order[at]);
        at = (at + 1) % n;
      }
      nanosleep(&gap, NULL);
    }
    burst_ns = (cpu_ns() - cpu0) / (double)made;
  }
  printf("{\"connections\": %d, \"rounds\": %d", n, rounds);
  for (int kind = 0; kind < 6; ++kind) printf(", \"%s_ns\": %.1f", names[kind], ns[kind]);
  printf(", \"default_random_ns\": %.1f", random_ns);
  if (burst > 0) printf(", \"default_burst_ns\": %.1f, \"burst\": %d", burst_ns, burst);
  printf("}\n");
  free(order);
  struct linger lg = {1, 0};
  for (int i = 0; i < n; ++i) {
    setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fds[i]);
  }
  free(fds);
  return 0;
}
