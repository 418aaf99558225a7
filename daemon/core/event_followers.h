#pragma once
// Live followers of the event log (GET /api/v1/events?follow=1). The event
// loop records events; it must never wait for a follower. So each follower
// has a bounded queue: Deliver() appends a copy of the event and wakes the
// follower, and a follower whose queue is full is marked overrun instead (it
// gets nothing more and is told so by its next Wait()); it never blocks the
// caller beyond taking the follower's own mutex for the append.
//
// Threads: Deliver() under the EventLog's mutex (the loop thread); Wait() on
// the follower's thread; Close() and the Follower's destructor from anywhere.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace connwatch {

struct Event;

class EventFollowers {
 public:
  class Follower {
   public:
    enum class Status { kEvents, kTimeout, kOverrun, kClosed };
    // Waits up to `timeout` for events, then moves them (oldest first) into
    // `out`. kOverrun: the queue overflowed and events were lost; kClosed:
    // the log is shutting down. Both are final.
    Status Wait(std::chrono::milliseconds timeout, std::vector<Event>* out);
    // Ends this follower: its next Wait() returns kClosed. Any thread.
    void Close();
    ~Follower();

   private:
    friend class EventFollowers;
    Follower(EventFollowers* owner, std::string target, size_t limit);
    void Push(const Event& event);  // Deliver's side, any thread.

    EventFollowers* owner_;
    const std::string target_;  // "" for every target.
    const size_t limit_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> queue_;
    bool overrun_ = false;
    bool closed_ = false;
  };

  EventFollowers() = default;
  ~EventFollowers();
  EventFollowers(const EventFollowers&) = delete;
  EventFollowers& operator=(const EventFollowers&) = delete;

  // A new follower of `target`'s events ("" for all), with `backlog` already
  // queued (oldest first, at most `limit` of them kept). The caller holds the
  // mutex that also serializes Deliver(), so nothing falls between the
  // backlog and the live events.
  std::unique_ptr<Follower> Add(std::string target, size_t limit, const std::vector<Event>& backlog);
  void Deliver(const Event& event);
  // Every follower's next Wait() returns kClosed.
  void CloseAll();
  size_t size() const;

 private:
  void Remove(Follower* follower);

  mutable std::mutex mu_;
  std::vector<Follower*> followers_;
  bool closed_ = false;  // CloseAll() ran: later followers start closed.
};

}  // namespace connwatch
