/* A fault injector for bench/probes.py's local_shutdown row: preloaded into
 * connwatchd (LD_PRELOAD), it shuts down the write side of chosen sockets of
 * the running daemon, as a bug elsewhere in a process could.
 *
 * On SIGRTMIN+3 it reads the file named by CONNWATCH_SHUTDOWN_FDS (one file
 * descriptor number per line) and calls shutdown(fd, SHUT_WR) on each. The
 * handler makes only async-signal-safe calls and keeps errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char fds_path[4096];

static void on_signal(int sig) {
  (void)sig;
  const int saved = errno;
  int f = open(fds_path, O_RDONLY | O_CLOEXEC);
  if (f >= 0) {
    char buf[8192];
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    int fd = -1;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] >= '0' && buf[i] <= '9') {
        fd = (fd < 0 ? 0 : fd * 10) + (buf[i] - '0');
      } else if (fd >= 0) {
        shutdown(fd, SHUT_WR);
        fd = -1;
      }
    }
    if (fd >= 0) shutdown(fd, SHUT_WR);
  }
  errno = saved;
}

__attribute__((constructor)) static void install(void) {
  const char* path = getenv("CONNWATCH_SHUTDOWN_FDS");
  if (path == NULL || strlen(path) >= sizeof fds_path) return;
  strcpy(fds_path, path);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGRTMIN + 3, &sa, NULL);
}
