// Unit tests of the SocketCloser: every descriptor handed over is closed (a
// FIN, or an RST when asked), Drain waits for them, and the destructor closes
// what is still queued.

#include "net/socket_closer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

namespace connwatch {
namespace {

// A connected TCP pair on loopback: {client, server}.
std::pair<int, int> TcpPair() {
  int lst = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(lst, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  EXPECT_EQ(listen(lst, 1), 0);
  socklen_t len = sizeof sin;
  getsockname(lst, reinterpret_cast<sockaddr*>(&sin), &len);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  int server = accept(lst, nullptr, nullptr);
  close(lst);
  return {client, server};
}

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(SocketCloser, ClosesWithFinOrResetAndDrainWaits) {
  SocketCloser closer;
  auto [fin_client, fin_server] = TcpPair();
  auto [rst_client, rst_server] = TcpPair();
  closer.Close(fin_client, false);
  closer.Close(rst_client, true);
  closer.Drain();
  EXPECT_EQ(closer.pending(), 0u);
  EXPECT_FALSE(IsOpen(fin_client));
  EXPECT_FALSE(IsOpen(rst_client));
  char c;
  EXPECT_EQ(recv(fin_server, &c, 1, 0), 0) << "a FIN: end of file";
  errno = 0;
  EXPECT_EQ(recv(rst_server, &c, 1, 0), -1);
  EXPECT_EQ(errno, ECONNRESET) << "SO_LINGER {1, 0}: an RST";
  close(fin_server);
  close(rst_server);
}

TEST(SocketCloser, DestructorClosesEverythingHandedOver) {
  std::vector<int> fds;
  {
    SocketCloser closer;
    for (int i = 0; i < 200; ++i) {
      int sv[2];
      ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
      closer.Close(sv[0], false);
      fds.push_back(sv[1]);
    }
  }
  for (int fd : fds) {
    char c;
    EXPECT_EQ(recv(fd, &c, 1, 0), 0) << "the other end was closed";
    close(fd);
  }
}

}  // namespace
}  // namespace connwatch
