// The floor under connwatchd's cost per death and per reconnect on loopback:
// the bare system calls, back to back, with nothing else in the process.
//
//   cc -O2 -o burst_floor bench/burst_floor.c && ./burst_floor 10000
//
// A child process accepts N connections (each from its own 127.4.x.y source
// address, as connwatchd's targets in bench/latency.py connect) and, when told,
// closes them all (FIN). This process:
//   connect  per connection: socket, bind, non-blocking connect, epoll_ctl ADD,
//            epoll_wait until writable, getsockopt SO_ERROR, EPOLL_CTL_MOD to
//            read (what an attempt takes, without connwatchd's socket options);
//   death    per connection, as they arrive: epoll_wait, recv (0: the FIN),
//            getsockopt TCP_INFO, close.
// Prints the CPU time (user + system, getrusage) per connection of each, in
// microseconds, as JSON on one line.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 10000;
  int lst = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lst, (struct sockaddr*)&sin, sizeof sin) != 0 || listen(lst, 4096) != 0) return 1;
  socklen_t len = sizeof sin;
  getsockname(lst, (struct sockaddr*)&sin, &len);
  int go[2];
  if (pipe(go) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    close(go[1]);
    int* fds = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; ++i) fds[i] = accept(lst, NULL, NULL);
    char c;
    if (read(go[0], &c, 1) != 1) return 1;
    for (int i = 0; i < n; ++i) close(fds[i]);
    if (read(go[0], &c, 1) < 0) return 1;  // until the parent is done
    return 0;
  }
  close(lst);
  close(go[0]);
  int ep = epoll_create1(0);
  int* fds = malloc(sizeof(int) * (size_t)n);
  struct epoll_event ev, out[256];
  double t0 = cpu_seconds();
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    char ip[32];
    snprintf(ip, sizeof ip, "127.4.%d.%d", i / 250, i % 250 + 1);
    inet_pton(AF_INET, ip, &src.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr*)&src, sizeof src) != 0) return 1;
    connect(fd, (struct sockaddr*)&sin, sizeof sin);
    ev.events = EPOLLOUT;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    while (epoll_wait(ep, out, 1, -1) != 1) {
    }
    int err = 0;
    socklen_t elen = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return 1;
    ev.events = EPOLLIN | EPOLLRDHUP;
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    fds[i] = fd;
  }
  double connect_s = cpu_seconds() - t0;
  if (write(go[1], "x", 1) != 1) return 1;
  t0 = cpu_seconds();
  int dead = 0;
  char buf[4096];
  while (dead < n) {
    int k = epoll_wait(ep, out, 256, -1);
    for (int j = 0; j < k; ++j) {
      int fd = out[j].data.fd;
      if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) != 0) continue;
      struct tcp_info ti;
      socklen_t tlen = sizeof ti;
      getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen);
      close(fd);
      ++dead;
    }
  }
  double death_s = cpu_seconds() - t0;
  close(go[1]);
  waitpid(child, NULL, 0);
  printf("{\"n\": %d, \"connect_us\": %.2f, \"death_us\": %.2f}\n", n, connect_s * 1e6 / n,
         death_s * 1e6 / n);
  return 0;
}
