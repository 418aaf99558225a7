// The HTTP surface under stress and abuse: IPv6 and dual stack, a flood of
// idle connections from one address, the request deadline, accept out of
// file descriptors, snapshots shared by concurrent requests, streamed bodies,
// and the Server-Sent Events follow of the event log. Real sockets on
// loopback (127.0.0.1, 127.0.0.2 as a second client address, ::1).

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "test_peer.h"
#include "test_util.h"
#include "web/http_server.h"

namespace connwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using testing::WaitFor;

constexpr const char* kHost = "127.0.0.1";

std::shared_ptr<Snapshot> SnapshotOf(size_t n) {
  auto s = std::make_shared<Snapshot>();
  s->config_loaded = true;
  s->last_reload_successful = true;
  for (size_t i = 0; i < n; ++i) {
    TargetSnapshot t;
    auto c = std::make_shared<TargetConfig>();
    c->name = "t" + std::to_string(i);
    c->address = "127.0.0.1:" + std::to_string(20000 + i % 1000);
    t.config = c;
    t.state = i % 3 == 0 ? TargetState::kUp : TargetState::kBackoff;
    t.up = i % 3 == 0;
    t.connects = i;
    s->targets.push_back(std::move(t));
  }
  return s;
}

// A daemon whose snapshots can be held back until released, counting them.
class GatedDaemon : public DaemonControl {
 public:
  std::shared_ptr<const Snapshot> GetSnapshot() override {
    calls.fetch_add(1);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
    return snapshot_;
  }
  std::vector<std::string> Reload() override { return {}; }
  bool Healthy() override { return true; }
  bool Ready() override { return true; }

  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void set_snapshot(std::shared_ptr<const Snapshot> s) {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(s);
  }

  std::atomic<int> calls{0};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  std::shared_ptr<const Snapshot> snapshot_ = SnapshotOf(3);
};

class HttpSurface : public ::testing::Test {
 protected:
  void Start(HttpServerOptions options) {
    server_ = std::make_unique<HttpServer>(std::move(options), daemon_, log_);
    ASSERT_EQ(server_->Start(), "");
    ASSERT_GT(server_->port(), 0);
  }
  void Start(const std::string& address = "127.0.0.1:0") {
    HttpServerOptions options;
    options.listen_address = address;
    Start(std::move(options));
  }
  int port() const { return server_->port(); }

  GatedDaemon daemon_;
  EventLog log_{nullptr, LogFormat::kLogfmt, LogLevel::kInfo};
  std::unique_ptr<HttpServer> server_;
};

// Why this host cannot take an IPv6 loopback socket ("" when it can).
std::string NoIpv6Loopback() {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket(AF_INET6): ") + std::strerror(errno);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  std::string why;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    why = std::string("bind([::1]:0): ") + std::strerror(errno);
  }
  close(fd);
  return why;
}

// A TCP connection from `source` to 127.0.0.1:port that sends nothing.
int IdleConnection(const std::string& source, int port) {
  std::string error;
  int fd = http_client_internal::Connect(kHost, port, Clock::now() + std::chrono::seconds(5),
                                         &error, source);
  EXPECT_GE(fd, 0) << error;
  return fd;
}

// --- IPv6 and dual stack ---------------------------------------------------

TEST_F(HttpSurface, ServesIpv6AndDualStack) {
  if (std::string why = NoIpv6Loopback(); !why.empty()) {
    GTEST_SKIP() << "this host has no IPv6 loopback: " << why;
  }
  Start("[::1]:0");
  HttpResponse r = HttpGet("::1", port(), "/-/healthy");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server_->listening(), std::vector<std::string>{"[::1]:" + std::to_string(port())});
  // [::1] alone: not on IPv4.
  EXPECT_FALSE(HttpGet(kHost, port(), "/-/healthy", milliseconds(2000)).ok());
  server_->Stop();

  // ":port" and "[::]:port": every address of both families, on one
  // dual-stack socket.
  for (const char* any : {":0", "[::]:0"}) {
    Start(any);
    EXPECT_EQ(server_->listening(), std::vector<std::string>{"[::]:" + std::to_string(port())});
    for (const char* host : {"127.0.0.1", "::1"}) {
      r = HttpGet(host, port(), "/metrics");
      ASSERT_TRUE(r.ok()) << any << " from " << host << ": " << r.error;
      EXPECT_EQ(r.status, 200) << any << " from " << host;
      EXPECT_THAT(r.body, HasSubstr("connwatch_target_up{target=\"t0\"} 1")) << host;
    }
    server_->Stop();
  }
  // 0.0.0.0 is IPv4 only.
  Start("0.0.0.0:0");
  EXPECT_EQ(HttpGet(kHost, port(), "/-/healthy").status, 200);
  EXPECT_FALSE(HttpGet("::1", port(), "/-/healthy", milliseconds(2000)).ok());
}

TEST_F(HttpSurface, LocalhostIsServedOnEachOfItsAddresses) {
  Start("localhost:0");
  ASSERT_FALSE(server_->listening().empty());
  for (const std::string& name : server_->listening()) {
    // "127.0.0.1:port" or "[::1]:port".
    std::string host = name.front() == '[' ? name.substr(1, name.find(']') - 1)
                                           : name.substr(0, name.rfind(':'));
    HttpResponse r = HttpGet(host, port(), "/-/ready");
    EXPECT_EQ(r.status, 200) << name << ": " << r.error;
  }
}

// --- A flood of idle connections from one address -------------------------------

TEST_F(HttpSurface, ScrapesAreAnsweredDuringAFloodOfIdleConnectionsFromOneAddress) {
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  Start(std::move(options));
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) flood.push_back(IdleConnection("127.0.0.2", port()));
  // Past the per-client limit (32) the server closes the flood's connections
  // at once; the first 32 it keeps until their request deadline.
  int closed_at_once = 0;
  for (int fd : flood) closed_at_once += ClosedWithin(fd, milliseconds(0)) ? 1 : 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        closed_at_once = 0;
        for (int fd : flood) closed_at_once += ClosedWithin(fd, milliseconds(0)) ? 1 : 0;
        return closed_at_once >= 200 - 32;
      },
      milliseconds(2000)))
      << closed_at_once << " of 200 flood connections closed; want at least 168";
  // Scrapes from another address are answered while the flood holds its 32.
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    HttpResponse r = HttpGet(kHost, port(), "/metrics", milliseconds(2000));
    ASSERT_TRUE(r.ok()) << "scrape " << i << " during the flood: " << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_LT(Clock::now() - start, milliseconds(1000)) << "scrape " << i;
  }
  for (int fd : flood) close(fd);
}

TEST_F(HttpSurface, TheRequestDeadlineCutsOffATricklingClient) {
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.request_timeout_ms = 500;
  options.idle_timeout_s = 30;  // the idle timeout alone would never fire.
  Start(std::move(options));
  int fd = IdleConnection("", port());
  const auto start = Clock::now();
  // One header byte every 50 ms: never idle, never done.
  const std::string request = "GET /metrics HTTP/1.1\r\nX-Slow: " + std::string(200, 'a');
  bool closed = false;
  for (size_t i = 0; i < request.size() && !closed; ++i) {
    if (send(fd, &request[i], 1, MSG_NOSIGNAL) != 1) break;
    closed = ClosedWithin(fd, milliseconds(50));
  }
  if (!closed) closed = ClosedWithin(fd, milliseconds(2000));
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  EXPECT_TRUE(closed) << "a client trickling its headers is still connected after "
                      << took.count() << " ms";
  EXPECT_LT(took, milliseconds(2000));
  EXPECT_GE(took, milliseconds(400));
  EXPECT_EQ(server_->connections_cut(), 1u);
  close(fd);
  EXPECT_EQ(HttpGet(kHost, port(), "/-/healthy").status, 200);
}

TEST_F(HttpSurface, AnEndlessRequestBodyIsCutOff) {
  Start();
  // A chunked body that would go on for ever: dropped up to 64 KiB, then the
  // connection is closed, without an answer (none can be queued mid-body).
  int fd = IdleConnection("", port());
  std::string request =
      "POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string chunk = "1000\r\n" + std::string(4096, 'b') + "\r\n";
  std::string error;
  http_client_internal::SendAll(fd, request, Clock::now() + std::chrono::seconds(5), &error);
  std::string raw;
  bool closed = false;
  for (int i = 0; i < 64 && !closed; ++i) {  // up to 256 KiB
    if (!http_client_internal::SendAll(fd, chunk, Clock::now() + std::chrono::seconds(5),
                                       &error)) {
      break;
    }
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) raw.append(buf, static_cast<size_t>(n));
    closed = n == 0;
  }
  if (!closed) closed = ClosedWithin(fd, milliseconds(2000));
  close(fd);
  EXPECT_TRUE(closed) << "still open after 256 KiB of body";
  EXPECT_EQ(raw.find("200 OK"), std::string::npos) << raw.substr(0, 200);
  EXPECT_EQ(daemon_.calls.load(), 0);
  EXPECT_EQ(HttpGet(kHost, port(), "/-/healthy").status, 200);
}

// --- accept out of file descriptors --------------------------------------------

TEST_F(HttpSurface, AcceptBacksOffWhenOutOfFileDescriptors) {
  Start();
  // The client's socket is made first; then every descriptor of the
  // process (the server's too: it is this process) is put in use; then the
  // client connects, so the server's accept() has no descriptor to give.
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  int open_now = 0;
  for (int fd = 0; fd < 4096; ++fd) open_now += fcntl(fd, F_GETFD) != -1 ? 1 : 0;
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(open_now + 64);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> filler;
  while (true) {
    int fd = dup(0);
    if (fd < 0) break;
    filler.push_back(fd);
  }
  ASSERT_EQ(errno, EMFILE);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(port()));
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to), 0) << std::strerror(errno);
  const std::string request = "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(send(client, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));

  // Wait for the first failed accept, then count: a thread that retries at
  // once fails thousands of times a second; backing off, five failures take
  // 50 + 100 + 200 + 400 ms.
  ASSERT_TRUE(WaitFor([&] { return server_->accept_resource_failures() >= 1; },
                      milliseconds(5000)));
  const auto first = Clock::now();
  const uint64_t at_first = server_->accept_resource_failures();
  ASSERT_TRUE(WaitFor([&] { return server_->accept_resource_failures() >= at_first + 4; },
                      milliseconds(5000)));
  const auto four_more = std::chrono::duration_cast<milliseconds>(Clock::now() - first);
  const uint64_t failures = server_->accept_resource_failures();

  for (int fd : filler) close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_GE(four_more, milliseconds(600)) << failures << " failed accepts";
  // The connection that waited is served once descriptors are free again.
  std::string raw, error;
  ASSERT_TRUE(http_client_internal::ReadAll(client, Clock::now() + std::chrono::seconds(5), &raw,
                                            &error))
      << error;
  EXPECT_EQ(ParseHttpResponse(raw).status, 200) << raw;
  close(client);
}

// --- Shared snapshots and streamed bodies -----------------------------------------

TEST_F(HttpSurface, ConcurrentRequestsShareOneSnapshot) {
  Start();
  daemon_.Hold();
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 32; ++i) {
    clients.emplace_back([&, i] {
      HttpResponse r = HttpGet(kHost, port(), i % 2 ? "/metrics" : "/api/v1/targets",
                               std::chrono::seconds(20));
      if (r.status == 200) ok.fetch_add(1);
    });
  }
  const bool all_waiting =
      WaitFor([&] { return server_->snapshots().waiting() == 31; }, milliseconds(10000));
  const size_t waiting = server_->snapshots().waiting();
  daemon_.Release();
  for (auto& t : clients) t.join();
  ASSERT_TRUE(all_waiting) << waiting << " requests waiting for the snapshot being taken, want 31";
  EXPECT_EQ(ok.load(), 32);
  EXPECT_EQ(daemon_.calls.load(), 1) << "snapshots taken for 32 concurrent requests";
  // Later requests take a fresh one.
  EXPECT_EQ(HttpGet(kHost, port(), "/metrics").status, 200);
  EXPECT_EQ(daemon_.calls.load(), 2);
}

TEST_F(HttpSurface, TargetsAreStreamedAndComplete) {
  daemon_.set_snapshot(SnapshotOf(5000));
  Start();
  HttpResponse r = HttpGet(kHost, port(), "/api/v1/targets");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Transfer-Encoding"), "chunked");
  Json j = Json::parse(r.body);
  ASSERT_EQ(j["data"]["targets"].size(), 5000u);
  EXPECT_EQ(j["data"]["targets"][4999]["name"], "t4999");
  EXPECT_EQ(j["data"]["targets"][4999]["connects"], 4999);
  j = Json::parse(HttpGet(kHost, port(), "/api/v1/targets?state=up").body);
  EXPECT_EQ(j["data"]["targets"].size(), 1667u);
  j = Json::parse(HttpGet(kHost, port(), "/api/v1/targets?target=t43&state=backoff").body);
  ASSERT_EQ(j["data"]["targets"].size(), 1u);
  EXPECT_EQ(j["data"]["targets"][0]["name"], "t43");
  j = Json::parse(HttpGet(kHost, port(), "/api/v1/targets?target=t43&state=up").body);
  EXPECT_EQ(j["data"]["targets"].size(), 0u);
}

TEST_F(HttpSurface, AClientThatLeavesMidBodyDoesNotHoldTheServer) {
  daemon_.set_snapshot(SnapshotOf(20000));
  Start();
  for (int i = 0; i < 8; ++i) {
    int fd = IdleConnection("", port());
    const std::string request = "GET /api/v1/targets HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    char buf[1024];
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    ASSERT_GT(recv(fd, buf, sizeof buf, 0), 0);
    close(fd);  // gone after the first KiB of several MB.
  }
  EXPECT_EQ(HttpGet(kHost, port(), "/-/healthy").status, 200);
  server_->Stop();  // returns: no producer is left waiting for a reader.
}

// --- Server-Sent Events ---------------------------------------------------------

// A follower connection: reads the stream as it comes.
class Follower {
 public:
  Follower(int port, const std::string& query, const std::vector<std::string>& headers = {}) {
    std::string error;
    fd_ = http_client_internal::Connect(kHost, port, Clock::now() + std::chrono::seconds(5),
                                        &error);
    EXPECT_GE(fd_, 0) << error;
    std::string request = "GET /api/v1/events" + query + " HTTP/1.1\r\nHost: x\r\n";
    for (const std::string& h : headers) request += h + "\r\n";
    request += "\r\n";
    http_client_internal::SendAll(fd_, request, Clock::now() + std::chrono::seconds(5), &error);
  }
  ~Follower() {
    if (fd_ >= 0) close(fd_);
  }
  // Reads until `needle` is in what was received; false after `timeout`.
  bool WaitFor(const std::string& needle, milliseconds timeout = milliseconds(5000)) {
    const auto deadline = Clock::now() + timeout;
    while (received_.find(needle, 0) == std::string::npos) {
      char buf[4096];
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, http_client_internal::RemainingMs(deadline)) != 1) return false;
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        return received_.find(needle) != std::string::npos;
      }
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  const std::string& received() const { return received_; }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  std::string received_;
  bool closed_ = false;
};

Event MakeEvent(const std::string& target, const std::string& kind) {
  Event e;
  e.unix_time = 1714567800.5;
  e.kind = kind;
  e.target = target;
  e.address = "127.0.0.1:1";
  if (kind != "connect") {
    e.has_reason = true;
    e.reason = Reason::kPeerReset;
  }
  return e;
}

TEST_F(HttpSurface, FollowStreamsNewEventsOfOneTargetOrAll) {
  Start();
  log_.Record(MakeEvent("old", "connect"));  // before: not streamed.
  Follower all(port(), "?follow=1");
  Follower one(port(), "?follow=1&target=redis");
  ASSERT_TRUE(all.WaitFor(": following")) << all.received();
  ASSERT_TRUE(one.WaitFor(": following")) << one.received();
  EXPECT_THAT(all.received(), HasSubstr("Content-Type: text/event-stream"));
  log_.Record(MakeEvent("db", "connect"));
  log_.Record(MakeEvent("redis", "disconnect"));
  ASSERT_TRUE(all.WaitFor("\"target\":\"redis\"")) << all.received();
  EXPECT_THAT(all.received(), HasSubstr("id: 2\nevent: connect\ndata: {\"seq\":2,"));
  EXPECT_THAT(all.received(), HasSubstr("id: 3\nevent: disconnect\ndata: {\"seq\":3,"));
  EXPECT_THAT(all.received(), Not(HasSubstr("\"target\":\"old\"")));
  ASSERT_TRUE(one.WaitFor("\"target\":\"redis\"")) << one.received();
  EXPECT_THAT(one.received(), Not(HasSubstr("\"target\":\"db\"")));
  EXPECT_EQ(server_->followers(), 2u);
}

TEST_F(HttpSurface, FollowResumesAfterLastEventId) {
  Start();
  for (int i = 0; i < 5; ++i) log_.Record(MakeEvent("t" + std::to_string(i), "connect"));
  Follower f(port(), "?follow=1", {"Last-Event-ID: 3"});
  ASSERT_TRUE(f.WaitFor("\"seq\":5")) << f.received();
  EXPECT_THAT(f.received(), HasSubstr("\"seq\":4"));
  EXPECT_THAT(f.received(), Not(HasSubstr("\"seq\":3")));
  HttpResponse bad = HttpRequest(kHost, port(), "GET", "/api/v1/events?follow=1", "",
                                 std::chrono::seconds(5), {"Last-Event-ID: x"});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(HttpGet(kHost, port(), "/api/v1/events?follow=maybe").status, 400);
}

TEST_F(HttpSurface, FollowersAreCappedWithAClearAnswer) {
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.max_followers = 2;
  Start(std::move(options));
  Follower a(port(), "?follow=1"), b(port(), "?follow=1");
  ASSERT_TRUE(a.WaitFor(": following"));
  ASSERT_TRUE(b.WaitFor(": following"));
  HttpResponse third = HttpGet(kHost, port(), "/api/v1/events?follow=1");
  EXPECT_EQ(third.status, 503);
  EXPECT_EQ(third.Header("Retry-After"), "10");
  EXPECT_THAT(third.body, HasSubstr("too many followers: 2 clients already follow the events"));
  // Reading without follow is not capped.
  EXPECT_EQ(HttpGet(kHost, port(), "/api/v1/events").status, 200);
}

TEST_F(HttpSurface, AFollowerThatFallsBehindIsToldAndDropped) {
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.follower_queue = 4;
  Start(std::move(options));
  // A follower of the log itself that never reads: the loop's Record() goes on.
  auto lagging = log_.Follow("", 0, 4);
  const auto start = Clock::now();
  for (int i = 0; i < 100; ++i) log_.Record(MakeEvent("t", "disconnect"));
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  std::vector<Event> got;
  EXPECT_EQ(lagging->Wait(milliseconds(0), &got), EventFollowers::Follower::Status::kOverrun);
  EXPECT_TRUE(got.empty());

  // Over HTTP: it is told why, then the stream ends.
  Follower f(port(), "?follow=1", {"Last-Event-ID: 1"});  // 99 to replay, room for 4.
  ASSERT_TRUE(f.WaitFor("event: overrun")) << f.received();
  EXPECT_THAT(f.received(), HasSubstr("fell behind by more than 4 events"));
  EXPECT_TRUE(f.WaitFor("\r\n0\r\n\r\n") || f.closed()) << f.received();
}

TEST_F(HttpSurface, StopEndsFollowersAtOnce) {
  Start();
  Follower f(port(), "?follow=1");
  ASSERT_TRUE(f.WaitFor(": following"));
  const auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  // The follower is told, before its connection goes.
  EXPECT_TRUE(f.WaitFor("event: shutdown", milliseconds(1000))) << f.received();
}

// --- The descriptor reserve, in the daemon ------------------------------------

// Targets may not take the descriptors the HTTP server needs: with a limit of
// 700 and 600 targets, the targets get 350 (the reserve, 64 + 288 for HTTP,
// capped at half the limit) and three flooding client addresses holding 32
// connections each still leave room for scrapes. With the old reserve of 64
// the targets took 600 and the flood took the rest.
TEST(HttpSurfaceDaemon, TheFdReserveKeepsScrapesAnsweredWhenTargetsWantEveryDescriptor) {
  testing::TestPeer peer;
  ASSERT_EQ(peer.Start(), "");
  testing::TempDir dir;
  std::string config = "targets:\n";
  for (int i = 0; i < 600; ++i) {
    config += "  - {name: t" + std::to_string(i) + ", address: '127.0.0.1:" +
              std::to_string(peer.port()) + "'}\n";
  }
  const std::string path = dir.Write("connwatch.yaml", config);
  testing::Subprocess d({"/usr/bin/prlimit", "--nofile=700:700", "--", CONNWATCHD_BINARY, "--storage.path=",
                         "--config.file=" + path, "--web.listen-address=127.0.0.1:0",
                         "--log.level=info"});
  const std::string listening = d.WaitForLine("msg=listening", milliseconds(20000));
  ASSERT_FALSE(listening.empty()) << d.Output().substr(0, 2000);
  const int port = std::stoi(testing::LogfmtValue(listening, "port"));
  // Every target that fits is up (the others fail with local_error).
  auto up_count = [&] {
    HttpResponse m = HttpGet(kHost, port, "/metrics", milliseconds(5000));
    const std::string key = "connwatch_targets{state=\"up\"} ";
    const size_t at = m.body.find(key);
    return at == std::string::npos ? -1 : std::atoi(m.body.c_str() + at + key.size());
  };
  ASSERT_TRUE(WaitFor([&] { return up_count() >= 340; }, milliseconds(20000)))
      << "up: " << up_count() << "\n" << d.Output().substr(0, 2000);
  EXPECT_FALSE(d.WaitForLine("reason=local_error", milliseconds(5000)).empty());
  const int up = up_count();
  EXPECT_LE(up, 350) << "target sockets past the budget";

  std::vector<int> flood;
  for (const char* source : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    for (int i = 0; i < 40; ++i) flood.push_back(IdleConnection(source, port));
  }
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    HttpResponse r = HttpGet(kHost, port, "/metrics", milliseconds(1500));
    EXPECT_EQ(r.status, 200) << "scrape " << i << " with 96 flood connections held: " << r.error;
    EXPECT_LT(Clock::now() - start, milliseconds(1000));
  }
  for (int fd : flood) close(fd);
  d.Signal(SIGTERM);
  EXPECT_EQ(d.Wait(milliseconds(10000)), 0) << d.Output().substr(0, 2000);
}

}  // namespace
}  // namespace connwatch
