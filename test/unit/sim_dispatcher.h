// Simulated time for unit tests: a Dispatcher whose clock moves only when
// the test says so, a deterministic random source, and an in-memory
// Connection that records what is written and lets the test feed bytes.
//
// What SimDispatcher supports: timers, Post(), DeferredDelete(), Now() and
// SystemNow() on a virtual clock, Random() (SimRandom), and Connect(),
// which hands out FakeConnections (see connections()) instead of sockets.
// Not supported: AdoptListener, ListenForSignal (both fail the test with a
// message) and Resolve (answers EAI_FAIL): real sockets belong in the
// integration tests.
//
// Order is deterministic: timers fire by deadline, ties in the order they
// were armed; after each timer, posted callbacks run in order, then
// deferred deletes.
//
// Thread safety: one test thread, except Post(), which any thread may call.
//
//   SimDispatcher d;
//   TimerPtr t = d.CreateTimer([&] { fired = true; });
//   t->Enable(100ms);
//   d.AdvanceTimeAndRun(99ms);   // not yet
//   d.AdvanceTimeAndRun(1ms);    // fires
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/event/dispatcher.h"

namespace portway::test {

// splitmix64 from a fixed seed; values queued with Push() come first.
class SimRandom final : public RandomGenerator {
 public:
  explicit SimRandom(uint64_t seed = 1) : state_(seed) {}
  uint64_t Next() override;
  // The next Next() returns `value` (queued in order).
  void Push(uint64_t value) { queued_.push_back(value); }
  // Makes every draw the largest (UpTo(max) == max) or the smallest (0).
  void AlwaysMax() { mode_ = Mode::kMax; }
  void AlwaysMin() { mode_ = Mode::kMin; }

 private:
  enum class Mode { kSeeded, kMax, kMin };
  uint64_t state_;
  Mode mode_ = Mode::kSeeded;
  std::deque<uint64_t> queued_;
};

class SimDispatcher;
class SimTimer;

// An in-memory connection. Writes are appended to written(); the test
// plays the peer with Feed(), PeerClose(), and for outgoing connections
// CompleteConnect() / FailConnect().
class FakeConnection final : public event::Connection {
 public:
  FakeConnection(SimDispatcher& dispatcher, network::Address remote, uint64_t id);
  ~FakeConnection() override;

  // Connection
  void SetCallbacks(event::ConnectionCallbacks* callbacks) override { callbacks_ = callbacks; }
  void Write(Buffer& data) override;
  void Close(event::CloseType type) override;
  void ReadDisable(bool disable) override { read_disables_ += disable ? 1 : -1; }
  bool ReadEnabled() const override { return read_disables_ <= 0; }
  size_t WriteBufferedBytes() const override { return write_buffered_; }
  void SetWriteBufferLimit(size_t high) override { write_limit_ = high; }
  bool IsOpen() const override { return !close_type_.has_value() && !peer_closed_; }
  bool Closed() const override { return closed_; }
  int LastError() const override { return last_error_; }
  const network::Address& RemoteAddress() const override { return remote_; }
  uint64_t Id() const override { return id_; }
  void ReleaseIdleStorage() override { ++idle_releases_; }

  // The peer's side. Feed() appends to the read buffer and hands all of
  // it to OnData; what the owner does not consume is kept for next time.
  void Feed(std::string_view bytes, bool end_stream = false);
  void PeerClose();
  void CompleteConnect();
  void FailConnect(int error);

  // What the owner wrote (all of it, in order); TakeWritten() empties it.
  const std::string& written() const { return written_; }
  std::string TakeWritten() { return std::exchange(written_, std::string()); }
  // How the owner closed it, if it did.
  std::optional<event::CloseType> close_type() const { return close_type_; }
  // How often the owner called ReleaseIdleStorage().
  int idle_releases() const { return idle_releases_; }
  // What WriteBufferedBytes() says (writes still reach written() at once).
  void set_write_buffered(size_t bytes) { write_buffered_ = bytes; }
  // False once the owner destroyed it.
  bool alive() const { return *alive_; }
  std::shared_ptr<bool> alive_flag() const { return alive_; }

 private:
  SimDispatcher& dispatcher_;
  network::Address remote_;
  uint64_t id_;
  event::ConnectionCallbacks* callbacks_ = nullptr;
  std::string written_;
  Buffer inbound_;  // fed, not yet consumed by the owner
  std::optional<event::CloseType> close_type_;
  bool closed_ = false;
  bool peer_closed_ = false;
  int read_disables_ = 0;
  int last_error_ = 0;
  int idle_releases_ = 0;
  size_t write_buffered_ = 0;
  size_t write_limit_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class SimDispatcher final : public event::Dispatcher {
 public:
  explicit SimDispatcher(std::string name = "sim", uint64_t seed = 1);
  ~SimDispatcher() override;

  // Moves the clock forward by `duration`, firing every timer due on the
  // way at its own deadline (Now() reads that deadline inside the
  // callback), with posted callbacks and deferred deletes run after each.
  void AdvanceTimeAndRun(std::chrono::milliseconds duration);
  // Runs what is posted and deferred (and timers already due) without
  // moving the clock.
  void RunPending();
  // Timers armed and not yet fired.
  size_t ArmedTimers() const;
  // The time until the next armed timer fires, if any.
  std::optional<std::chrono::milliseconds> NextTimerIn() const;

  SimRandom& sim_random() { return random_; }
  // Every connection Connect() made, oldest first (null once destroyed is
  // not tracked: check alive()).
  const std::vector<FakeConnection*>& connections() const { return connections_; }

  // Dispatcher
  const std::string& Name() const override { return name_; }
  void Run() override { RunPending(); }
  void Exit() override {}
  void Post(std::function<void()> callback) override;
  event::TimerPtr CreateTimer(std::function<void()> callback) override;
  void DeferredDelete(std::unique_ptr<event::DeferredDeletable> object) override;
  void ClearDeferredDeleteList() override;
  MonotonicTime Now() const override { return now_; }
  SystemTime SystemNow() const override;
  RandomGenerator& Random() override { return random_; }
  event::ConnectionPtr Connect(const network::Address& address) override;
  event::ListenerPtr AdoptListener(int fd, event::ListenerCallbacks& callbacks) override;
  event::SignalHandlePtr ListenForSignal(int signum, std::function<void()> callback) override;
  void Resolve(const std::string& host, uint16_t port,
               std::function<void(event::ResolveResult)> callback) override;

 private:
  friend class SimTimer;
  friend class FakeConnection;
  void Forget(FakeConnection* connection);
  // Armed timers by (deadline, sequence): deadline order, ties in the
  // order they were armed.
  using Key = std::pair<MonotonicTime, uint64_t>;
  Key Arm(SimTimer* timer, std::chrono::milliseconds timeout);
  void Disarm(const Key& key) { timers_.erase(key); }
  // Fires the earliest timer due by `limit`; false if none is.
  bool FireNextDue(MonotonicTime limit);
  void RunPostedAndDeferred();

  std::string name_;
  MonotonicTime now_;
  SystemTime system_start_;
  MonotonicTime start_;
  uint64_t sequence_ = 0;
  std::map<Key, SimTimer*> timers_;
  mutable std::mutex post_mutex_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<event::DeferredDeletable>> deferred_;
  SimRandom random_;
  uint64_t next_connection_id_ = 1;
  std::vector<FakeConnection*> connections_;
};

}  // namespace portway::test
