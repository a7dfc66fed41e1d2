// libuv implementation of the Dispatcher. The one file that includes uv.h.
//
// Lifetime rule: libuv handles close asynchronously, so every uv handle
// lives in a heap block that its close callback frees. The C++ objects the
// rest of Portway holds (Connection, Timer, Listener) may be destroyed at
// any time; they close their handle and detach from it, and callbacks that
// arrive later find no owner and do nothing.
#include "core/event/dispatcher.h"

#include "core/common/small_blocks.h"
#include "core/event/random.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include "spdlog/spdlog.h"

namespace portway::event {
namespace {

std::atomic<uint64_t> next_connection_id{1};

template <typename T>
void CloseAndFree(T* handle) {
  uv_close(reinterpret_cast<uv_handle_t*>(handle),
           [](uv_handle_t* h) { delete reinterpret_cast<T*>(h); });
}

class DispatcherImpl;

// Every callback from libuv into Portway starts here: the dispatcher's clock
// reading (see DispatcherImpl::Now()) is from before the loop last blocked.
void NoteWakeUp(uv_loop_t* loop);

struct ResolveRequest {
  uv_getaddrinfo_t req;
  uint16_t port;
  std::function<void(ResolveResult)> callback;  // emptied if the dispatcher goes first
  std::set<ResolveRequest*>* outstanding;
};

// ---------------------------------------------------------------- timers

// Timers live in one min-heap per dispatcher, driven by a single uv timer:
// a Timer costs a small heap entry rather than a libuv handle of its own
// (every connection has one, every request another), and creating or
// destroying one needs no asynchronous uv_close.
//
// Re-arming is lazy, since most timers are idle and request timeouts that
// are pushed back or cancelled long before they fire (a keep-alive
// connection's timer is disarmed and re-armed on every request): Disable()
// only marks the timer, and Enable() to a later time only records it. The
// heap entry stays where it was; when it comes due, a disabled timer is
// dropped and a postponed one goes back in at its real time. So each
// timer is in the heap at most once, and disarming and re-arming cost no
// heap work. The destructor takes the entry out.
class TimerImpl final : public Timer {
 public:
  TimerImpl(DispatcherImpl& dispatcher, std::function<void()> callback)
      : dispatcher_(dispatcher), callback_(std::move(callback)) {}
  ~TimerImpl() override;
  // Streams make and drop timers on every request: their memory is
  // recycled per thread rather than going through malloc each time.
  static void* operator new(size_t size) { return AllocateSmallBlock(size); }
  static void operator delete(void* block, size_t size) noexcept { FreeSmallBlock(block, size); }
  void Enable(std::chrono::milliseconds timeout) override;
  void Disable() override { armed_ = false; }
  bool Enabled() const override { return armed_; }

  static constexpr size_t kNotScheduled = static_cast<size_t>(-1);
  uint64_t deadline_ms_ = 0;  // the heap's key: due_ms_ or earlier
  uint64_t due_ms_ = 0;       // when it fires, if armed
  uint64_t sequence_ = 0;     // equal deadlines fire in the order they were set
  size_t heap_index_ = kNotScheduled;
  bool armed_ = false;
  DispatcherImpl& dispatcher_;
  std::function<void()> callback_;
};

// ----------------------------------------------------------- connections

class ConnectionImpl;

// The parts of a connection libuv may touch after the owner is gone.
struct Socket {
  ~Socket() { delete write_req; }
  uv_tcp_t tcp;
  // Made on the first write the kernel does not take at once; most
  // connections never need one (writes complete in uv_try_write).
  uv_write_t* write_req = nullptr;
  // Bytes handed to uv_write and not yet confirmed; they stay at the front
  // of `pending` until the write callback.
  size_t in_flight = 0;
  bool writing = false;
  Buffer pending;
  ConnectionImpl* owner = nullptr;
};

class ConnectionImpl final : public Connection {
 public:
  ConnectionImpl(DispatcherImpl& dispatcher, Socket* socket, bool connecting);
  ~ConnectionImpl() override;

  void SetCallbacks(ConnectionCallbacks* callbacks) override {
    callbacks_ = callbacks;
    if (!connecting_ && open_ && !reading_ && read_disable_count_ == 0 && !eof_) StartReading();
  }
  void Write(Buffer& data) override;
  void Close(CloseType type) override;
  void ReadDisable(bool disable) override;
  bool ReadEnabled() const override { return read_disable_count_ == 0; }
  size_t WriteBufferedBytes() const override { return socket_ ? socket_->pending.length() : 0; }
  void SetWriteBufferLimit(size_t high) override { high_watermark_ = high; }
  bool IsOpen() const override { return open_ && !closing_; }
  bool Closed() const override { return socket_ == nullptr; }
  int LastError() const override { return last_error_; }
  const network::Address& RemoteAddress() const override { return remote_; }
  uint64_t Id() const override { return id_; }
  void ReleaseIdleStorage() override {
    if (read_buffer_.empty()) read_buffer_ = Buffer();
    if (socket_ != nullptr && !socket_->writing && socket_->pending.empty()) {
      socket_->pending = Buffer();
    }
  }

  // libuv entry points.
  void OnConnect(int status);
  void OnRead(ssize_t nread);
  void OnWriteDone(int status);
  char* AllocRead(size_t* size) { return read_buffer_.Reserve(4096, size); }
  DispatcherImpl& dispatcher() { return dispatcher_; }
  // Writes what Write() queued while the dispatcher was batching.
  void FlushQueued();

 private:
  void StartReading();
  void Flush();
  static int TryWrite(Socket* s);
  void CloseSocket(bool reset);
  void RaiseClose(int error);
  void DeferClose(int error);
  void StartLinger();
  void FinishClose(bool reset);
  void CheckWatermarks();
  void LearnRemoteAddress();

  DispatcherImpl& dispatcher_;
  Socket* socket_;
  ConnectionCallbacks* callbacks_ = nullptr;
  Buffer read_buffer_;
  TimerPtr resume_timer_;
  TimerPtr close_timer_;
  TimerPtr deferred_close_timer_;
  network::Address remote_;
  const uint64_t id_;
  size_t high_watermark_ = 0;
  int read_disable_count_ = 0;
  int last_error_ = 0;
  bool connecting_;
  bool open_ = true;
  bool closing_ = false;    // Close(kFlushWrite): flushing, then lingering
  bool lingering_ = false;  // half-closed; reading and discarding until EOF
  bool reading_ = false;
  bool eof_ = false;
  bool above_high_ = false;
  bool flush_queued_ = false;  // on the dispatcher's list of writes to flush
};

// ------------------------------------------------------------ dispatcher

class DispatcherImpl final : public Dispatcher {
 public:
  explicit DispatcherImpl(std::string name) : name_(std::move(name)) {
    uv_loop_init(&loop_);
    loop_.data = this;
    async_ = new uv_async_t;
    uv_async_init(&loop_, async_, [](uv_async_t* h) {
      NoteWakeUp(h->loop);
      if (auto* self = static_cast<DispatcherImpl*>(h->data)) self->RunPosted();
    });
    async_->data = this;
    // Deferred deletes run after each poll phase. A check handle, unlike an
    // idle one, does not turn the next poll into a busy one (no extra
    // epoll_wait per request).
    check_ = new uv_check_t;
    uv_check_init(&loop_, check_);
    check_->data = this;
    uv_timer_ = new uv_timer_t;
    uv_timer_init(&loop_, uv_timer_);
    uv_timer_->data = this;
  }

  ~DispatcherImpl() override {
    ClearDeferredDeleteList();
    // Lookups still running must not call into owners that are gone.
    for (ResolveRequest* r : resolves_) {
      r->callback = nullptr;
      uv_cancel(reinterpret_cast<uv_req_t*>(&r->req));
    }
    resolves_.clear();
    async_->data = nullptr;
    check_->data = nullptr;
    uv_timer_->data = nullptr;
    CloseAndFree(async_);
    CloseAndFree(check_);
    CloseAndFree(uv_timer_);
    // Close whatever handles are left (owners already detached) and let
    // their close callbacks free them.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  const std::string& Name() const override { return name_; }
  void Run() override {
    now_cached_ = false;
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  void Exit() override { uv_stop(&loop_); }

  void Post(std::function<void()> callback) override {
    {
      std::lock_guard<std::mutex> lock(post_mutex_);
      posted_.push_back(std::move(callback));
    }
    uv_async_send(async_);
  }

  TimerPtr CreateTimer(std::function<void()> callback) override {
    return std::make_unique<TimerImpl>(*this, std::move(callback));
  }

  // --- the timer heap
  void Schedule(TimerImpl* timer, std::chrono::milliseconds timeout) {
    const uint64_t due =
        uv_now(&loop_) + static_cast<uint64_t>(std::max<int64_t>(0, timeout.count()));
    timer->armed_ = true;
    timer->due_ms_ = due;
    timer->sequence_ = next_timer_sequence_++;
    if (timer->heap_index_ != TimerImpl::kNotScheduled) {
      // Its entry comes due no later than it should: FireTimers moves it.
      if (timer->deadline_ms_ < due) return;
      Unschedule(timer);
    }
    Push(timer);
    RearmUvTimer();
  }
  void Push(TimerImpl* timer) {
    timer->deadline_ms_ = timer->due_ms_;
    timer->heap_index_ = timers_.size();
    timers_.push_back(timer);
    SiftUp(timer->heap_index_);
  }
  void Unschedule(TimerImpl* timer) {
    size_t i = timer->heap_index_;
    if (i == TimerImpl::kNotScheduled) return;
    timer->heap_index_ = TimerImpl::kNotScheduled;
    TimerImpl* last = timers_.back();
    timers_.pop_back();
    if (i < timers_.size()) {
      timers_[i] = last;
      last->heap_index_ = i;
      SiftDown(i);
      SiftUp(last->heap_index_);
    }
    // The uv timer may fire early for a removed timer; FireTimers copes.
  }

  void DeferredDelete(std::unique_ptr<DeferredDeletable> object) override {
    to_delete_.push_back(std::move(object));
    if (to_delete_.size() == 1) {
      uv_check_start(check_, [](uv_check_t* h) {
        NoteWakeUp(h->loop);
        auto* self = static_cast<DispatcherImpl*>(h->data);
        if (self == nullptr) return;
        uv_check_stop(h);
        self->ClearDeferredDeleteList();
      });
    }
  }

  void ClearDeferredDeleteList() override {
    // Deleting may queue more deletions; loop until the list is empty. The
    // two vectors trade places and keep their capacity: no allocation per
    // deletion round.
    while (!to_delete_.empty()) {
      deleting_.swap(to_delete_);
      deleting_.clear();
    }
  }

  // --- batched writes
  //
  // While a socket's read callback runs, writes to any connection are
  // queued and flushed once the callback returns: a response head and the
  // body that arrived with it in one read of the upstream go out in one
  // write (one syscall), and a burst of reads does not interleave with
  // partial writes. Outside a read callback (timers, posted work, write
  // completions) Write() flushes at once, as before.
  bool Batching() const { return batch_depth_ > 0; }
  void BeginBatch() { ++batch_depth_; }
  void EndBatch() {
    if (--batch_depth_ > 0) return;
    // Flushing can call back into owners that write again (watermarks);
    // those writes flush at once since the batch is over, but a list entry
    // added meanwhile by a nested batch is still taken here.
    while (!to_flush_.empty()) {
      flushing_.swap(to_flush_);
      for (ConnectionImpl* conn : flushing_) {
        if (conn != nullptr) conn->FlushQueued();
      }
      flushing_.clear();
    }
  }
  void QueueFlush(ConnectionImpl* conn) { to_flush_.push_back(conn); }
  // A connection destroyed with a flush queued.
  void ForgetQueuedFlush(ConnectionImpl* conn) {
    for (auto* list : {&to_flush_, &flushing_}) {
      for (ConnectionImpl*& c : *list) {
        if (c == conn) c = nullptr;
      }
    }
  }

  // The clock as of the callback running now: read at its first use and
  // kept until the next callback from libuv (NoteWakeUp), as nginx keeps
  // its time per event loop turn. A request read, proxied and answered in
  // one callback reads the clock once, not at each of its steps; time only
  // passes for the loop between callbacks (in poll), and durations across
  // callbacks stay exact.
  MonotonicTime Now() const override {
    if (!now_cached_) {
      now_ = std::chrono::steady_clock::now();
      now_cached_ = true;
    }
    return now_;
  }
  void ForgetNow() { now_cached_ = false; }
  SystemTime SystemNow() const override { return std::chrono::system_clock::now(); }
  RandomGenerator& Random() override { return random_; }

  ConnectionPtr Connect(const network::Address& address) override {
    auto* socket = new Socket;
    uv_tcp_init(&loop_, &socket->tcp);
    auto conn = std::make_unique<ConnectionImpl>(*this, socket, /*connecting=*/true);
    auto* req = new uv_connect_t;
    int rc = uv_tcp_connect(req, &socket->tcp, address.sockaddr_ptr(),
                            [](uv_connect_t* req, int status) {
                              NoteWakeUp(req->handle->loop);
                              auto* s = reinterpret_cast<Socket*>(req->handle);
                              delete req;
                              if (s->owner != nullptr) s->owner->OnConnect(status);
                            });
    if (rc != 0) {
      delete req;
      // Report the failure from the loop, like an asynchronous one, so the
      // caller sees one path.
      ConnectionImpl* raw = conn.get();
      failed_connects_.push_back({raw, rc});
      Post([this] { FailPendingConnects(); });
    }
    return conn;
  }

  void ForgetFailedConnect(ConnectionImpl* conn) {
    for (auto& f : failed_connects_) {
      if (f.first == conn) f.first = nullptr;
    }
  }

  ListenerPtr AdoptListener(int fd, ListenerCallbacks& callbacks) override;
  SignalHandlePtr ListenForSignal(int signum, std::function<void()> callback) override;
  void Resolve(const std::string& host, uint16_t port,
               std::function<void(ResolveResult)> callback) override;

  uv_loop_t* loop() { return &loop_; }

 private:
  static bool Earlier(const TimerImpl* a, const TimerImpl* b) {
    return a->deadline_ms_ != b->deadline_ms_ ? a->deadline_ms_ < b->deadline_ms_
                                              : a->sequence_ < b->sequence_;
  }
  void Place(size_t i, TimerImpl* t) {
    timers_[i] = t;
    t->heap_index_ = i;
  }
  void SiftUp(size_t i) {
    TimerImpl* t = timers_[i];
    while (i > 0) {
      size_t parent = (i - 1) / 2;
      if (!Earlier(t, timers_[parent])) break;
      Place(i, timers_[parent]);
      i = parent;
    }
    Place(i, t);
  }
  void SiftDown(size_t i) {
    TimerImpl* t = timers_[i];
    size_t n = timers_.size();
    while (true) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && Earlier(timers_[child + 1], timers_[child])) ++child;
      if (!Earlier(timers_[child], t)) break;
      Place(i, timers_[child]);
      i = child;
    }
    Place(i, t);
  }
  void RearmUvTimer() {
    if (timers_.empty()) {
      uv_timer_stop(uv_timer_);
      return;
    }
    uint64_t now = uv_now(&loop_);
    uint64_t first = timers_.front()->deadline_ms_;
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(uv_timer_)) && armed_for_ms_ == first) return;
    armed_for_ms_ = first;
    uv_timer_start(
        uv_timer_,
        [](uv_timer_t* h) {
          NoteWakeUp(h->loop);
          if (auto* self = static_cast<DispatcherImpl*>(h->data)) self->FireTimers();
        },
        first > now ? first - now : 0, 0);
  }
  void FireTimers() {
    uint64_t now = uv_now(&loop_);
    // A callback may enable, disable or destroy any timer, itself included:
    // take each due timer off the heap before running it.
    while (!timers_.empty() && timers_.front()->deadline_ms_ <= now) {
      TimerImpl* t = timers_.front();
      Unschedule(t);
      if (!t->armed_) continue;  // disabled since it was queued
      if (t->due_ms_ > now) {    // postponed since it was queued
        Push(t);
        continue;
      }
      t->armed_ = false;
      t->callback_();
    }
    armed_for_ms_ = 0;
    RearmUvTimer();
  }

 public:
 private:
  void RunPosted() {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard<std::mutex> lock(post_mutex_);
      callbacks.swap(posted_);
    }
    for (auto& cb : callbacks) cb();
  }
  void FailPendingConnects() {
    auto failed = std::move(failed_connects_);
    failed_connects_.clear();
    for (auto& [conn, rc] : failed) {
      if (conn != nullptr) conn->OnConnect(rc);
    }
  }

  std::string name_;
  uv_loop_t loop_;
  uv_async_t* async_;
  uv_check_t* check_;
  mutable MonotonicTime now_;
  mutable bool now_cached_ = false;
  uv_timer_t* uv_timer_;
  std::vector<TimerImpl*> timers_;  // min-heap on (deadline, sequence)
  uint64_t next_timer_sequence_ = 0;
  uint64_t armed_for_ms_ = 0;
  std::mutex post_mutex_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<DeferredDeletable>> to_delete_;
  std::vector<std::unique_ptr<DeferredDeletable>> deleting_;
  std::vector<ConnectionImpl*> to_flush_;
  std::vector<ConnectionImpl*> flushing_;
  int batch_depth_ = 0;
  std::vector<std::pair<ConnectionImpl*, int>> failed_connects_;
  std::set<ResolveRequest*> resolves_;
  SeededRandom random_;  // seeded per dispatcher, i.e. per worker
};

TimerImpl::~TimerImpl() { dispatcher_.Unschedule(this); }
void TimerImpl::Enable(std::chrono::milliseconds timeout) { dispatcher_.Schedule(this, timeout); }

// ------------------------------------------------- connection, continued

ConnectionImpl::ConnectionImpl(DispatcherImpl& dispatcher, Socket* socket, bool connecting)
    : dispatcher_(dispatcher),
      socket_(socket),
      id_(next_connection_id.fetch_add(1, std::memory_order_relaxed)),
      connecting_(connecting) {
  socket_->owner = this;
  socket_->tcp.data = socket_;
  if (!connecting_) {
    uv_tcp_nodelay(&socket_->tcp, 1);
    LearnRemoteAddress();
  }
}

ConnectionImpl::~ConnectionImpl() {
  dispatcher_.ForgetFailedConnect(this);
  if (flush_queued_) dispatcher_.ForgetQueuedFlush(this);
  if (socket_ != nullptr) CloseSocket(false);
}

void ConnectionImpl::LearnRemoteAddress() {
  sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&socket_->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    remote_ = network::Address::FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
  }
}

void ConnectionImpl::OnConnect(int status) {
  connecting_ = false;
  if (status != 0) {
    last_error_ = -status;
    CloseSocket(false);
    if (callbacks_ != nullptr) callbacks_->OnEvent(ConnectionEvent::kConnectFailed);
    return;
  }
  uv_tcp_nodelay(&socket_->tcp, 1);
  LearnRemoteAddress();
  if (read_disable_count_ == 0) StartReading();
  if (callbacks_ != nullptr) callbacks_->OnEvent(ConnectionEvent::kConnected);
  // Anything written while connecting goes out now (unless the callback's
  // own writes already started a write).
  if (socket_ != nullptr && !socket_->writing && !socket_->pending.empty()) Flush();
}

void ConnectionImpl::StartReading() {
  if (socket_ == nullptr || reading_ || eof_) return;
  reading_ = true;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&socket_->tcp),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* s = static_cast<Socket*>(h->data);
        size_t size = 0;
        buf->base = s->owner != nullptr ? s->owner->AllocRead(&size) : nullptr;
        buf->len = size;
      },
      [](uv_stream_t* h, ssize_t nread, const uv_buf_t*) {
        NoteWakeUp(h->loop);
        auto* s = static_cast<Socket*>(h->data);
        if (s->owner == nullptr) return;
        // The owner may be destroyed inside OnRead; the dispatcher is not.
        DispatcherImpl& dispatcher = s->owner->dispatcher();
        dispatcher.BeginBatch();
        s->owner->OnRead(nread);
        dispatcher.EndBatch();
      });
}

void ConnectionImpl::OnRead(ssize_t nread) {
  if (closing_) {
    // After Close(): nothing more is delivered; bytes are read only to be
    // dropped. While still flushing, a half-close (EOF) is not the end: the
    // peer may still be reading what we send.
    read_buffer_.Clear();
    if (nread == UV_EOF && !lingering_) {
      eof_ = true;
      reading_ = false;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&socket_->tcp));
      return;
    }
    if (nread < 0) FinishClose(false);
    return;
  }
  if (nread >= 0) {
    read_buffer_.Commit(static_cast<size_t>(nread));
    if (nread > 0 && callbacks_ != nullptr) callbacks_->OnData(read_buffer_, false);
    return;
  }
  read_buffer_.Commit(0);
  if (nread == UV_EOF) {
    eof_ = true;
    reading_ = false;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&socket_->tcp));
    if (callbacks_ != nullptr) callbacks_->OnData(read_buffer_, true);
    return;
  }
  RaiseClose(static_cast<int>(-nread));
}

void ConnectionImpl::RaiseClose(int error) {
  last_error_ = error;
  CloseSocket(false);
  if (callbacks_ != nullptr) callbacks_->OnEvent(ConnectionEvent::kRemoteClose);
}

// A write can fail inside the owner's own call to Write(); telling it then
// would re-enter it mid-operation, so the close is reported from the loop.
void ConnectionImpl::DeferClose(int error) {
  last_error_ = error;
  CloseSocket(false);
  deferred_close_timer_ = dispatcher_.CreateTimer([this] {
    if (callbacks_ != nullptr) callbacks_->OnEvent(ConnectionEvent::kRemoteClose);
  });
  deferred_close_timer_->Enable(std::chrono::milliseconds(0));
}

void ConnectionImpl::Write(Buffer& data) {
  if (socket_ == nullptr || !open_) {
    data.Clear();
    return;
  }
  socket_->pending.Move(data);
  if (!connecting_ && !socket_->writing) {
    if (dispatcher_.Batching()) {
      // Flushed (and the watermarks checked) when the read callback returns.
      if (!flush_queued_) {
        flush_queued_ = true;
        dispatcher_.QueueFlush(this);
      }
      return;
    }
    Flush();
  }
  CheckWatermarks();
}

void ConnectionImpl::FlushQueued() {
  flush_queued_ = false;
  if (socket_ != nullptr && !connecting_ && !socket_->writing) Flush();
}

void ConnectionImpl::Flush() {
  Socket* s = socket_;
  // One write at a time: the bytes of a write in flight are still at the
  // front of `pending`; the write callback calls Flush() again.
  if (s == nullptr || s->writing) return;
  // uv_write copies the iovec array, so it can live on the stack.
  uv_buf_t bufs[64];
  // Write what the kernel takes right away; queue the rest.
  const int error = TryWrite(s);
  if (error != 0) {
    DeferClose(error);
    return;
  }
  if (!s->pending.empty()) {
    size_t count = 0;
    size_t bytes = 0;
    s->pending.ForEachSlice([&](std::string_view slice) {
      if (count < 64) {
        bufs[count++] = uv_buf_init(const_cast<char*>(slice.data()), slice.size());
        bytes += slice.size();
      }
    });
    s->in_flight = bytes;
    s->writing = true;
    if (s->write_req == nullptr) s->write_req = new uv_write_t;
    int rc = uv_write(s->write_req, reinterpret_cast<uv_stream_t*>(&s->tcp), bufs, count,
                      [](uv_write_t* req, int status) {
                        NoteWakeUp(req->handle->loop);
                        auto* sock = static_cast<Socket*>(req->handle->data);
                        sock->writing = false;
                        if (status == 0) sock->pending.Drain(sock->in_flight);
                        sock->in_flight = 0;
                        if (sock->owner != nullptr) sock->owner->OnWriteDone(status);
                      });
    if (rc != 0) {
      s->writing = false;
      DeferClose(-rc);
      return;
    }
  }
  CheckWatermarks();
  if (closing_ && !lingering_ && s->pending.empty() && !s->writing) StartLinger();
}

// Hands the kernel what it takes at once; 0, or the error that ends the
// connection.
int ConnectionImpl::TryWrite(Socket* s) {
  uv_buf_t bufs[64];
  while (!s->pending.empty()) {
    size_t count = 0;
    s->pending.ForEachSlice([&](std::string_view slice) {
      if (count < 64) bufs[count++] = uv_buf_init(const_cast<char*>(slice.data()), slice.size());
    });
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&s->tcp), bufs, count);
    if (n > 0) {
      s->pending.Drain(static_cast<size_t>(n));
      continue;
    }
    return n == UV_EAGAIN ? 0 : -n;
  }
  return 0;
}

void ConnectionImpl::OnWriteDone(int status) {
  if (status != 0) {
    if (status != UV_ECANCELED && socket_ != nullptr) RaiseClose(-status);
    return;
  }
  Flush();
}

void ConnectionImpl::CheckWatermarks() {
  if (high_watermark_ == 0 || callbacks_ == nullptr || socket_ == nullptr) return;
  size_t buffered = socket_->pending.length();
  if (!above_high_ && buffered > high_watermark_) {
    above_high_ = true;
    callbacks_->OnAboveWriteBufferHighWatermark();
  } else if (above_high_ && buffered <= high_watermark_ / 2) {
    above_high_ = false;
    callbacks_->OnBelowWriteBufferLowWatermark();
  }
}

void ConnectionImpl::ReadDisable(bool disable) {
  if (disable) {
    if (++read_disable_count_ == 1 && reading_ && socket_ != nullptr) {
      reading_ = false;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&socket_->tcp));
    }
    return;
  }
  if (read_disable_count_ == 0) return;
  if (--read_disable_count_ > 0 || socket_ == nullptr || connecting_) return;
  StartReading();
  // Bytes that arrived before the pause are not announced again by libuv;
  // hand them over from the loop.
  if (!read_buffer_.empty() || eof_) {
    if (!resume_timer_) {
      resume_timer_ = dispatcher_.CreateTimer([this] {
        if (callbacks_ != nullptr && read_disable_count_ == 0 && (!read_buffer_.empty() || eof_)) {
          callbacks_->OnData(read_buffer_, eof_);
        }
      });
    }
    resume_timer_->Enable(std::chrono::milliseconds(0));
  }
}

void ConnectionImpl::Close(CloseType type) {
  if (socket_ == nullptr) return;
  if (type != CloseType::kFlushWrite) {
    CloseSocket(type == CloseType::kReset);
    return;
  }
  if (closing_) return;
  closing_ = true;
  // A peer that never reads, or never closes, must not pin the connection:
  // past this the socket is reset.
  close_timer_ = dispatcher_.CreateTimer([this] { FinishClose(/*reset=*/true); });
  close_timer_->Enable(std::chrono::seconds(10));
  if (!socket_->writing && socket_->pending.empty()) StartLinger();
  // Otherwise Flush() starts the linger once the last byte is out.
}

// Closing a socket with unread input makes the kernel answer with an RST,
// which can destroy the response still in flight to the peer. So Portway
// half-closes and reads (and drops) until the peer closes too, bounded in
// time, like nginx's lingering close.
void ConnectionImpl::StartLinger() {
  lingering_ = true;
  if (eof_) {
    FinishClose(false);
    return;
  }
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&socket_->tcp), &fd) == 0) shutdown(fd, SHUT_WR);
  read_disable_count_ = 0;
  StartReading();
  close_timer_->Enable(std::chrono::seconds(2));
}

// Closes the socket and tells the owner from the loop, never from inside
// its own call to Close().
void ConnectionImpl::FinishClose(bool reset) {
  if (close_timer_) close_timer_->Disable();
  CloseSocket(reset);
  deferred_close_timer_ = dispatcher_.CreateTimer([this] {
    if (callbacks_ != nullptr) callbacks_->OnEvent(ConnectionEvent::kLocalClose);
  });
  deferred_close_timer_->Enable(std::chrono::milliseconds(0));
}

void ConnectionImpl::CloseSocket(bool reset) {
  if (socket_ == nullptr) return;
  // A plain close keeps the promise of an unbatched Write(): what was
  // written before it is offered to the kernel (a TLS alert, a last
  // response), as it would have been at once outside a read callback.
  if (flush_queued_) {
    flush_queued_ = false;
    dispatcher_.ForgetQueuedFlush(this);
    if (!reset && !connecting_ && !socket_->writing) TryWrite(socket_);
  }
  open_ = false;
  Socket* s = socket_;
  socket_ = nullptr;
  s->owner = nullptr;
  if (resume_timer_) resume_timer_->Disable();
  if (reset && !connecting_) {
    if (uv_tcp_close_reset(&s->tcp, [](uv_handle_t* h) { delete static_cast<Socket*>(h->data); }) ==
        0) {
      return;
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&s->tcp),
           [](uv_handle_t* h) { delete static_cast<Socket*>(h->data); });
}

void NoteWakeUp(uv_loop_t* loop) { static_cast<DispatcherImpl*>(loop->data)->ForgetNow(); }

// -------------------------------------------------------------- listener

// Accepts with accept4() on a polled listening socket rather than through
// uv_listen: libuv's own accept path, once the process is out of file
// descriptors, leaves a level-triggered readable socket that wakes the loop
// at once, forever (a worker at 100 % CPU). Here running out of descriptors
// or memory pauses accepting for a while; pending connections wait in the
// kernel's backlog and are taken once descriptors free up.
class ListenerImpl final : public Listener {
 public:
  ListenerImpl(DispatcherImpl& dispatcher, int fd, ListenerCallbacks& callbacks)
      : dispatcher_(dispatcher), callbacks_(callbacks), fd_(fd) {
    listen(fd_, 4096);  // the backlog the caller asked for may have been smaller
    poll_ = new uv_poll_t;
    uv_poll_init_socket(dispatcher.loop(), poll_, fd_);
    poll_->data = this;
    pause_ = new uv_timer_t;
    uv_timer_init(dispatcher.loop(), pause_);
    pause_->data = this;
    Resume();
  }
  ~ListenerImpl() override { Disable(); }

  void Disable() override {
    if (poll_ == nullptr) return;
    poll_->data = nullptr;
    pause_->data = nullptr;
    uv_timer_stop(pause_);
    CloseAndFree(poll_);
    CloseAndFree(pause_);
    poll_ = nullptr;
    pause_ = nullptr;
    close(fd_);
  }

 private:
  // Bounds one wake-up's work so a burst of connections cannot starve the
  // requests already being served on this loop.
  static constexpr int kMaxAcceptsPerWakeup = 64;
  static constexpr uint64_t kPauseMs = 100;

  void Resume() {
    uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* handle, int status, int) {
      NoteWakeUp(handle->loop);
      auto* self = static_cast<ListenerImpl*>(handle->data);
      if (self == nullptr) return;
      // An error on the socket: libuv has stopped the poll; try again later.
      if (status < 0) {
        self->Pause(-status);
        return;
      }
      self->Accept();
    });
  }

  void Pause(int error) {
    uv_poll_stop(poll_);
    uv_timer_start(
        pause_,
        [](uv_timer_t* t) {
          NoteWakeUp(t->loop);
          auto* self = static_cast<ListenerImpl*>(t->data);
          if (self != nullptr) self->Resume();
        },
        kPauseMs, 0);
    callbacks_.OnAcceptError(error, std::chrono::milliseconds(kPauseMs));
  }

  void Accept() {
    for (int i = 0; i < kMaxAcceptsPerWakeup && poll_ != nullptr; ++i) {
      int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        // The connection died in the backlog, or a signal: take the next.
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
        // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected: stop
        // asking until something may have changed.
        Pause(err);
        return;
      }
      auto* socket = new Socket;
      uv_tcp_init(dispatcher_.loop(), &socket->tcp);
      socket->tcp.data = socket;
      if (uv_tcp_open(&socket->tcp, fd) != 0) {
        close(fd);
        uv_close(reinterpret_cast<uv_handle_t*>(&socket->tcp),
                 [](uv_handle_t* h) { delete static_cast<Socket*>(h->data); });
        continue;
      }
      callbacks_.OnAccept(std::make_unique<ConnectionImpl>(dispatcher_, socket, false));
    }
  }

  DispatcherImpl& dispatcher_;
  ListenerCallbacks& callbacks_;
  const int fd_;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* pause_ = nullptr;
};

ListenerPtr DispatcherImpl::AdoptListener(int fd, ListenerCallbacks& callbacks) {
  return std::make_unique<ListenerImpl>(*this, fd, callbacks);
}

// --------------------------------------------------------------- signals

class SignalImpl final : public SignalHandle {
 public:
  SignalImpl(uv_loop_t* loop, int signum, std::function<void()> callback)
      : callback_(std::move(callback)) {
    handle_ = new uv_signal_t;
    uv_signal_init(loop, handle_);
    handle_->data = this;
    uv_signal_start(
        handle_,
        [](uv_signal_t* h, int) {
          NoteWakeUp(h->loop);
          if (auto* self = static_cast<SignalImpl*>(h->data)) self->callback_();
        },
        signum);
  }
  ~SignalImpl() override {
    handle_->data = nullptr;
    uv_signal_stop(handle_);
    CloseAndFree(handle_);
  }

 private:
  uv_signal_t* handle_;
  std::function<void()> callback_;
};

SignalHandlePtr DispatcherImpl::ListenForSignal(int signum, std::function<void()> callback) {
  return std::make_unique<SignalImpl>(&loop_, signum, std::move(callback));
}

// ------------------------------------------------------------------- DNS

void DispatcherImpl::Resolve(const std::string& host, uint16_t port,
                             std::function<void(ResolveResult)> callback) {
  auto* r = new ResolveRequest;
  r->port = port;
  r->callback = std::move(callback);
  r->outstanding = &resolves_;
  resolves_.insert(r);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(
      &loop_, &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        NoteWakeUp(req->loop);
        auto* r = reinterpret_cast<ResolveRequest*>(req);
        ResolveResult result;
        if (status != 0) {
          result.error = status;
          result.error_message = uv_strerror(status);
        } else {
          for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
            network::Address a = network::Address::FromSockaddr(ai->ai_addr);
            bool ok = false;
            network::Address with_port = network::Address::FromIp(a.Ip(), r->port, &ok);
            if (!ok) continue;
            bool seen = false;
            for (const auto& existing : result.addresses) seen = seen || existing == with_port;
            if (!seen) result.addresses.push_back(with_port);
          }
        }
        uv_freeaddrinfo(res);
        if (r->callback) {
          r->outstanding->erase(r);
          r->callback(std::move(result));
        }
        delete r;
      },
      host.c_str(), nullptr, &hints);
  if (rc != 0) {
    ResolveResult result;
    result.error = rc;
    result.error_message = uv_strerror(rc);
    auto cb = std::move(r->callback);
    resolves_.erase(r);
    delete r;
    Post([cb = std::move(cb), result = std::move(result)]() mutable { cb(std::move(result)); });
  }
}

}  // namespace

DispatcherPtr Dispatcher::Create(std::string name) {
  return std::make_unique<DispatcherImpl>(std::move(name));
}

int CreateListenSocket(const network::Address& address, int backlog, std::string* error,
                       PortSharing sharing) {
  int fd = socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return -errno;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (sharing == PortSharing::kJoinGroup) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  }
  if (address.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  bool ok = bind(fd, address.sockaddr_ptr(), address.sockaddr_len()) == 0;
  if (ok && sharing == PortSharing::kNewGroup) {
    ok = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
  }
  if (!ok || listen(fd, backlog) != 0) {
    int err = errno;
    *error = "bind " + address.ToString() + ": " + strerror(err);
    close(fd);
    return -err;
  }
  return fd;
}

network::Address SocketLocalAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return network::Address::FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
}

}  // namespace portway::event
