#include "test/unit/sim_dispatcher.h"

#include <netdb.h>

#include "gtest/gtest.h"

namespace portway::test {

uint64_t SimRandom::Next() {
  if (!queued_.empty()) {
    uint64_t v = queued_.front();
    queued_.pop_front();
    return v;
  }
  if (mode_ == Mode::kMax) return UINT64_MAX;
  if (mode_ == Mode::kMin) return 0;
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// ------------------------------------------------------------ timers

class SimTimer final : public event::Timer {
 public:
  SimTimer(SimDispatcher& dispatcher, std::function<void()> callback)
      : dispatcher_(dispatcher), callback_(std::move(callback)) {}
  ~SimTimer() override { Disable(); }
  void Enable(std::chrono::milliseconds timeout) override {
    Disable();
    key_ = dispatcher_.Arm(this, timeout);
  }
  void Disable() override {
    if (key_) dispatcher_.Disarm(*key_);
    key_.reset();
  }
  bool Enabled() const override { return key_.has_value(); }
  // Called by the dispatcher, already disarmed.
  void Fire() {
    key_.reset();
    callback_();  // may destroy this timer: nothing after
  }

 private:
  SimDispatcher& dispatcher_;
  std::function<void()> callback_;
  std::optional<SimDispatcher::Key> key_;
};

// ------------------------------------------------------------ dispatcher

SimDispatcher::SimDispatcher(std::string name, uint64_t seed)
    : name_(std::move(name)),
      // An arbitrary, non-zero start, so code subtracting durations from
      // Now() never goes below the clock's epoch.
      now_(MonotonicTime(std::chrono::hours(1000))),
      system_start_(SystemTime(std::chrono::seconds(1767225600))),  // 2026-01-01
      start_(now_),
      random_(seed) {}

SimDispatcher::~SimDispatcher() { ClearDeferredDeleteList(); }

SystemTime SimDispatcher::SystemNow() const {
  return system_start_ + std::chrono::duration_cast<SystemTime::duration>(now_ - start_);
}

SimDispatcher::Key SimDispatcher::Arm(SimTimer* timer, std::chrono::milliseconds timeout) {
  Key key{now_ + std::max(timeout, std::chrono::milliseconds(0)), sequence_++};
  timers_.emplace(key, timer);
  return key;
}

bool SimDispatcher::FireNextDue(MonotonicTime limit) {
  if (timers_.empty() || timers_.begin()->first.first > limit) return false;
  auto it = timers_.begin();
  SimTimer* timer = it->second;
  if (it->first.first > now_) now_ = it->first.first;
  timers_.erase(it);
  timer->Fire();
  RunPostedAndDeferred();
  return true;
}

void SimDispatcher::RunPostedAndDeferred() {
  for (;;) {
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> lock(post_mutex_);
      batch.swap(posted_);
    }
    if (batch.empty() && deferred_.empty()) return;
    for (auto& callback : batch) callback();
    ClearDeferredDeleteList();
  }
}

void SimDispatcher::AdvanceTimeAndRun(std::chrono::milliseconds duration) {
  RunPostedAndDeferred();
  MonotonicTime target = now_ + duration;
  while (FireNextDue(target)) {
  }
  now_ = target;
  RunPostedAndDeferred();
}

void SimDispatcher::RunPending() {
  RunPostedAndDeferred();
  while (FireNextDue(now_)) {
  }
}

size_t SimDispatcher::ArmedTimers() const { return timers_.size(); }

std::optional<std::chrono::milliseconds> SimDispatcher::NextTimerIn() const {
  if (timers_.empty()) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(timers_.begin()->first.first - now_);
}

void SimDispatcher::Post(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(post_mutex_);
  posted_.push_back(std::move(callback));
}

event::TimerPtr SimDispatcher::CreateTimer(std::function<void()> callback) {
  return std::make_unique<SimTimer>(*this, std::move(callback));
}

void SimDispatcher::DeferredDelete(std::unique_ptr<event::DeferredDeletable> object) {
  deferred_.push_back(std::move(object));
}

void SimDispatcher::ClearDeferredDeleteList() {
  while (!deferred_.empty()) {
    auto batch = std::move(deferred_);
    deferred_.clear();
    batch.clear();  // destructors may defer more
  }
}

event::ConnectionPtr SimDispatcher::Connect(const network::Address& address) {
  auto connection = std::make_unique<FakeConnection>(*this, address, next_connection_id_++);
  connections_.push_back(connection.get());
  return connection;
}

void SimDispatcher::Forget(FakeConnection* connection) {
  for (auto& c : connections_) {
    if (c == connection) c = nullptr;
  }
}

event::ListenerPtr SimDispatcher::AdoptListener(int, event::ListenerCallbacks&) {
  ADD_FAILURE() << "SimDispatcher has no sockets: AdoptListener is not supported";
  return nullptr;
}

event::SignalHandlePtr SimDispatcher::ListenForSignal(int, std::function<void()>) {
  ADD_FAILURE() << "SimDispatcher has no signals: ListenForSignal is not supported";
  return nullptr;
}

void SimDispatcher::Resolve(const std::string& host, uint16_t,
                            std::function<void(event::ResolveResult)> callback) {
  event::ResolveResult result;
  result.error = EAI_FAIL;
  result.error_message = "SimDispatcher does not resolve names (" + host + ")";
  Post([callback = std::move(callback), result = std::move(result)]() mutable {
    callback(std::move(result));
  });
}

// ------------------------------------------------------------ connections

FakeConnection::FakeConnection(SimDispatcher& dispatcher, network::Address remote, uint64_t id)
    : dispatcher_(dispatcher), remote_(std::move(remote)), id_(id) {}

FakeConnection::~FakeConnection() {
  *alive_ = false;
  dispatcher_.Forget(this);
}

void FakeConnection::Write(Buffer& data) {
  written_ += data.ToString();
  data.Clear();
}

void FakeConnection::Close(event::CloseType type) {
  if (close_type_) return;
  close_type_ = type;
  // Like the real one: the close completes later, on the loop.
  std::weak_ptr<bool> alive = alive_;
  dispatcher_.Post([this, alive] {
    if (alive.expired() || !*alive.lock()) return;
    closed_ = true;
    if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kLocalClose);
  });
}

void FakeConnection::Feed(std::string_view bytes, bool end_stream) {
  if (callbacks_ == nullptr || close_type_) return;
  if (end_stream) peer_closed_ = true;
  // Like a socket's read buffer: what the owner leaves in it stays for
  // the next call.
  inbound_.Add(bytes);
  callbacks_->OnData(inbound_, end_stream);
}

void FakeConnection::PeerClose() {
  if (callbacks_ == nullptr || closed_) return;
  peer_closed_ = true;
  closed_ = true;
  callbacks_->OnEvent(event::ConnectionEvent::kRemoteClose);
}

void FakeConnection::CompleteConnect() {
  if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kConnected);
}

void FakeConnection::FailConnect(int error) {
  last_error_ = error;
  closed_ = true;
  if (callbacks_ != nullptr) callbacks_->OnEvent(event::ConnectionEvent::kConnectFailed);
}

}  // namespace portway::test
