#include "filters/cache/redis_tier.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/un.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"

// Life of a command:
//   caller thread: Get/Set -> refused inline, or appended to queue_ (under
//   mu_) and the loop woken through wake_.
//   I/O thread, once per loop turn (prepare_): up to max_in_flight commands
//   move from queue_ to in_flight_ and are written with redisAsyncCommandArgv;
//   the deadline timer is re-armed for the oldest unanswered command.
//   The reply (or the deadline, or the connection's loss) finishes the Op;
//   an Op finished by its deadline stays in in_flight_ until Redis answers
//   it or the connection is freed, because hiredis still holds its pointer.
//
// Only the I/O thread touches hiredis, libuv handles (but wake_, whose
// uv_async_send is thread-safe) and in_flight_.

namespace portway::cache {
namespace {

using Clock = std::chrono::steady_clock;
using Status = RedisGetResult::Status;

struct Address {
  bool unix_socket = false;
  std::string host_or_path;
  int port = 0;
};

absl::StatusOr<Address> ParseAddress(const std::string& address) {
  Address out;
  constexpr std::string_view kUnix = "unix:";
  if (address.compare(0, kUnix.size(), kUnix) == 0) {
    out.unix_socket = true;
    out.host_or_path = address.substr(kUnix.size());
    if (out.host_or_path.empty() || out.host_or_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return absl::InvalidArgumentError("redis address: bad unix socket path in '" + address + "'");
    }
    return out;
  }
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError("redis address: expected host:port or unix:/path, got '" +
                                      address + "'");
  }
  out.host_or_path = address.substr(0, colon);
  if (out.host_or_path.size() > 2 && out.host_or_path.front() == '[' &&
      out.host_or_path.back() == ']') {
    out.host_or_path = out.host_or_path.substr(1, out.host_or_path.size() - 2);
  }
  if (!absl::SimpleAtoi(address.substr(colon + 1), &out.port) || out.port < 1 || out.port > 65535) {
    return absl::InvalidArgumentError("redis address: bad port in '" + address + "'");
  }
  return out;
}

absl::Status ValidateOptions(const RedisTierOptions& o) {
  using std::chrono::milliseconds;
  if (o.command_timeout <= milliseconds(0) || o.connect_timeout <= milliseconds(0)) {
    return absl::InvalidArgumentError("redis: command_timeout and connect_timeout must be > 0");
  }
  if (o.reconnect_backoff_min <= milliseconds(0) ||
      o.reconnect_backoff_max < o.reconnect_backoff_min) {
    return absl::InvalidArgumentError(
        "redis: need 0 < reconnect_backoff_min <= reconnect_backoff_max");
  }
  if (o.max_queued == 0 || o.max_in_flight == 0 || o.max_value_bytes == 0) {
    return absl::InvalidArgumentError(
        "redis: max_queued, max_in_flight and max_value_bytes must be > 0");
  }
  if (o.db < 0) return absl::InvalidArgumentError("redis: db must be >= 0");
  return absl::OkStatus();
}

RedisGetResult Result(Status status, std::string value = {}) {
  RedisGetResult result;
  result.status = status;
  result.value = std::move(value);
  return result;
}

uint64_t CeilMillis(Clock::duration d) {
  if (d <= Clock::duration::zero()) return 0;
  return static_cast<uint64_t>(std::chrono::ceil<std::chrono::milliseconds>(d).count());
}

}  // namespace

class RedisTier::Engine {
 public:
  Engine(RedisTierOptions options, Address address)
      : options_(std::move(options)),
        address_(std::move(address)),
        backoff_(options_.reconnect_backoff_min) {}

  absl::Status Start() {
    if (int rc = uv_loop_init(&loop_); rc != 0) {
      return absl::InternalError(std::string("redis: uv_loop_init: ") + uv_strerror(rc));
    }
    loop_.data = this;
    // Handles are set up here, before the thread runs the loop; from then
    // on only the I/O thread touches them.
    uv_async_init(&loop_, &wake_, [](uv_async_t* h) { Self(h)->OnWake(); });
    uv_prepare_init(&loop_, &prepare_);
    uv_prepare_start(&prepare_, [](uv_prepare_t* h) { Self(h)->OnLoopTurn(); });
    uv_timer_init(&loop_, &deadline_timer_);
    uv_timer_init(&loop_, &connect_timer_);
    uv_timer_init(&loop_, &backoff_timer_);
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  ~Engine() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      uv_async_send(&wake_);
    }
    thread_.join();
  }

  void Get(std::string key, GetCallback done) {
    Status refused;
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        refused = RedisGetResult::kShutdown;
      } else {
        ++stats_.gets;
        std::optional<Status> refusal = Admit();
        if (!refusal) {
          Op op;
          op.kind = Op::kGet;
          op.key = std::move(key);
          op.done = std::move(done);
          op.deadline = Clock::now() + options_.command_timeout;
          queue_.push_back(std::move(op));
          uv_async_send(&wake_);
          return;
        }
        refused = *refusal;
      }
    }
    done(Result(refused));
  }

  void Set(std::string key, std::string value, std::chrono::seconds ttl) {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    ++stats_.sets;
    if (ttl < std::chrono::seconds(1)) return;
    if (value.size() > options_.max_value_bytes) {
      ++stats_.too_large;
      return;
    }
    if (Admit()) return;
    Op op;
    op.kind = Op::kSet;
    op.key = std::move(key);
    op.value = std::move(value);
    op.ttl_seconds = ttl.count();
    op.deadline = Clock::now() + options_.command_timeout;
    queue_.push_back(std::move(op));
    uv_async_send(&wake_);
  }

  void Del(std::string key) {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (Admit()) return;
    Op op;
    op.kind = Op::kDel;
    op.key = std::move(key);
    op.deadline = Clock::now() + options_.command_timeout;
    queue_.push_back(std::move(op));
    uv_async_send(&wake_);
  }

  bool Connected() const { return connected_.load(std::memory_order_acquire); }

  RedisTierStats Stats() const {
    RedisTierStats s;
    s.gets = stats_.gets.load(std::memory_order_relaxed);
    s.hits = stats_.hits.load(std::memory_order_relaxed);
    s.misses = stats_.misses.load(std::memory_order_relaxed);
    s.sets = stats_.sets.load(std::memory_order_relaxed);
    s.errors = stats_.errors.load(std::memory_order_relaxed);
    s.timeouts = stats_.timeouts.load(std::memory_order_relaxed);
    s.overflows = stats_.overflows.load(std::memory_order_relaxed);
    s.too_large = stats_.too_large.load(std::memory_order_relaxed);
    s.unavailable = stats_.unavailable.load(std::memory_order_relaxed);
    s.reconnects = stats_.reconnects.load(std::memory_order_relaxed);
    s.connected = Connected();
    return s;
  }

 private:
  struct Op {
    enum Kind { kGet, kSet, kDel } kind = kGet;
    std::string key;
    std::string value;  // Set only
    int64_t ttl_seconds = 0;
    GetCallback done;  // Get only
    Clock::time_point deadline;
    bool finished = false;
    Engine* engine = nullptr;
    std::list<Op>::iterator self;
  };

  // hiredis's event hooks, on a uv_poll_t over the connection's socket. It
  // outlives the context by one loop turn (uv_close), so a poll callback
  // may still look at it after hiredis freed the context inside it.
  struct Watch {
    uv_poll_t poll;
    redisAsyncContext* context = nullptr;
    int events = 0;
  };

  struct Counters {
    std::atomic<uint64_t> gets{0}, hits{0}, misses{0}, sets{0}, errors{0}, timeouts{0},
        overflows{0}, too_large{0}, unavailable{0}, reconnects{0};
  };

  template <typename Handle>
  static Engine* Self(Handle* h) {
    return static_cast<Engine*>(h->loop->data);
  }

  // Under mu_: why a new command may not be queued (counted here), or
  // nullopt when it may.
  std::optional<Status> Admit() {
    if (!connected_.load(std::memory_order_relaxed)) {
      ++stats_.unavailable;
      return RedisGetResult::kUnavailable;
    }
    if (queue_.size() >= options_.max_queued) {
      ++stats_.overflows;
      return RedisGetResult::kOverflow;
    }
    return std::nullopt;
  }

  // ---- I/O thread from here on ----

  void Run() {
    // hiredis writes with write(2): a peer that went away must give EPIPE
    // on this thread, not a SIGPIPE that kills the process.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);

    Connect(/*first=*/true);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  void OnWake() {
    bool stop;
    {
      std::lock_guard lock(mu_);
      stop = stopping_;
    }
    if (stop && !shut_down_) Shutdown();
    // New commands are sent by OnLoopTurn, which runs before the loop waits.
  }

  void OnLoopTurn() {
    SendQueued();
    ArmDeadline();
  }

  void Finish(Op& op, Status status, std::string value = {}) {
    if (op.finished) return;
    op.finished = true;
    switch (status) {
      case RedisGetResult::kHit:
        if (op.kind == Op::kGet) ++stats_.hits;
        break;
      case RedisGetResult::kMiss:
        ++stats_.misses;
        break;
      case RedisGetResult::kTooLarge:
        ++stats_.too_large;
        break;
      case RedisGetResult::kUnavailable:
        ++stats_.unavailable;
        break;
      case RedisGetResult::kOverflow:
        ++stats_.overflows;
        break;
      case RedisGetResult::kTimeout:
        ++stats_.timeouts;
        break;
      case RedisGetResult::kError:
        ++stats_.errors;
        break;
      case RedisGetResult::kShutdown:
        break;
    }
    op.value.clear();
    if (op.done) {
      GetCallback done = std::move(op.done);
      op.done = nullptr;
      done(Result(status, std::move(value)));
    }
  }

  void SendQueued() {
    if (context_ == nullptr || !ready_ || in_flight_.size() >= options_.max_in_flight) return;
    std::vector<Op> batch;
    {
      std::lock_guard lock(mu_);
      const size_t n = std::min(queue_.size(), options_.max_in_flight - in_flight_.size());
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const Clock::time_point now = Clock::now();
    for (Op& op : batch) {
      if (op.deadline <= now) {
        Finish(op, RedisGetResult::kTimeout);
      } else {
        Send(std::move(op));
      }
    }
  }

  void Send(Op op) {
    in_flight_.push_back(std::move(op));
    Op& sent = in_flight_.back();
    sent.self = std::prev(in_flight_.end());
    sent.engine = this;
    const std::string key = options_.prefix + sent.key;
    int rc;
    if (sent.kind == Op::kGet) {
      const char* argv[] = {"GET", key.data()};
      const size_t lens[] = {3, key.size()};
      rc = redisAsyncCommandArgv(context_, &Engine::OnReply, &sent, 2, argv, lens);
    } else if (sent.kind == Op::kDel) {
      const char* argv[] = {"DEL", key.data()};
      const size_t lens[] = {3, key.size()};
      rc = redisAsyncCommandArgv(context_, &Engine::OnReply, &sent, 2, argv, lens);
    } else {
      const std::string ttl = std::to_string(sent.ttl_seconds);
      const char* argv[] = {"SET", key.data(), sent.value.data(), "EX", ttl.data()};
      const size_t lens[] = {3, key.size(), sent.value.size(), 2, ttl.size()};
      rc = redisAsyncCommandArgv(context_, &Engine::OnReply, &sent, 5, argv, lens);
    }
    // hiredis has copied the command into its output buffer.
    std::string().swap(sent.key);
    std::string().swap(sent.value);
    if (rc != REDIS_OK) {
      Finish(sent, RedisGetResult::kError);
      in_flight_.erase(sent.self);
    }
  }

  static void OnReply(redisAsyncContext*, void* r, void* privdata) {
    Op& op = *static_cast<Op*>(privdata);
    Engine* self = op.engine;
    self->HandleReply(op, static_cast<redisReply*>(r));
    self->in_flight_.erase(op.self);
  }

  void HandleReply(Op& op, redisReply* reply) {
    if (op.finished) return;  // timed out already: the late reply is dropped
    if (reply == nullptr) {
      Finish(op, lost_status_);
      return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      Finish(op, RedisGetResult::kError);
      return;
    }
    if (op.kind == Op::kSet) {
      Finish(op, reply->type == REDIS_REPLY_STATUS ? RedisGetResult::kHit : RedisGetResult::kError);
      return;
    }
    if (op.kind == Op::kDel) {
      Finish(op,
             reply->type == REDIS_REPLY_INTEGER ? RedisGetResult::kHit : RedisGetResult::kError);
      return;
    }
    if (reply->type == REDIS_REPLY_NIL) {
      Finish(op, RedisGetResult::kMiss);
    } else if (reply->type != REDIS_REPLY_STRING) {
      Finish(op, RedisGetResult::kError);
    } else if (reply->len > options_.max_value_bytes) {
      Finish(op, RedisGetResult::kTooLarge);
    } else {
      Finish(op, RedisGetResult::kHit, std::string(reply->str, reply->len));
    }
  }

  // The deadline timer fires for the oldest unfinished command: the front
  // of queue_, or the first unfinished Op of in_flight_ (both are in
  // deadline order, since every deadline is its call time plus one timeout).
  void ArmDeadline() {
    if (shut_down_) return;
    std::optional<Clock::time_point> next;
    {
      std::lock_guard lock(mu_);
      if (!queue_.empty()) next = queue_.front().deadline;
    }
    for (Op& op : in_flight_) {
      if (op.finished) continue;
      if (!next || op.deadline < *next) next = op.deadline;
      break;
    }
    if (!next) {
      uv_timer_stop(&deadline_timer_);
      return;
    }
    uv_timer_start(
        &deadline_timer_, [](uv_timer_t* h) { Self(h)->OnDeadline(); },
        std::max<uint64_t>(1, CeilMillis(*next - Clock::now())), 0);
  }

  void OnDeadline() {
    const Clock::time_point now = Clock::now();
    std::vector<Op> expired;
    {
      std::lock_guard lock(mu_);
      while (!queue_.empty() && queue_.front().deadline <= now) {
        expired.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (Op& op : expired) Finish(op, RedisGetResult::kTimeout);
    for (Op& op : in_flight_) {
      if (op.finished) continue;
      if (op.deadline > now) break;
      Finish(op, RedisGetResult::kTimeout);
    }
    // A callback above may have queued more; OnLoopTurn re-arms.
  }

  // ---- connection ----

  void Connect(bool first) {
    if (!first) ++stats_.reconnects;
    redisAsyncContext* c = address_.unix_socket
                               ? redisAsyncConnectUnix(address_.host_or_path.c_str())
                               : redisAsyncConnect(address_.host_or_path.c_str(), address_.port);
    if (c == nullptr) {
      ScheduleReconnect();
      return;
    }
    if (c->err != 0) {
      redisAsyncFree(c);
      ScheduleReconnect();
      return;
    }
    auto* watch = new Watch;
    watch->context = c;
    if (uv_poll_init_socket(&loop_, &watch->poll, c->c.fd) != 0) {
      delete watch;
      redisAsyncFree(c);
      ScheduleReconnect();
      return;
    }
    watch->poll.data = watch;
    c->ev.data = watch;
    c->ev.addRead = [](void* w) { UpdateWatch(w, UV_READABLE, 0); };
    c->ev.delRead = [](void* w) { UpdateWatch(w, 0, UV_READABLE); };
    c->ev.addWrite = [](void* w) { UpdateWatch(w, UV_WRITABLE, 0); };
    c->ev.delWrite = [](void* w) { UpdateWatch(w, 0, UV_WRITABLE); };
    c->ev.cleanup = &CloseWatch;
    c->data = this;
    context_ = c;
    ready_ = false;
    redisAsyncSetDisconnectCallback(c, &Engine::OnDisconnect);
    // Also starts watching for writability, which is how hiredis learns
    // that the non-blocking connect finished.
    redisAsyncSetConnectCallback(c, &Engine::OnConnect);
    uv_timer_start(
        &connect_timer_, [](uv_timer_t* h) { Self(h)->OnConnectTimeout(); },
        static_cast<uint64_t>(options_.connect_timeout.count()), 0);
  }

  static void UpdateWatch(void* w, int add, int remove) {
    Watch* watch = static_cast<Watch*>(w);
    const int events = (watch->events | add) & ~remove;
    if (events == watch->events) return;
    watch->events = events;
    if (events == 0) {
      uv_poll_stop(&watch->poll);
      return;
    }
    uv_poll_start(&watch->poll, events, [](uv_poll_t* h, int status, int ready) {
      Watch* watch = static_cast<Watch*>(h->data);
      // On a poll error, let hiredis find the socket's error by trying.
      if (status < 0) ready = watch->events;
      if (watch->context != nullptr && (ready & UV_READABLE)) {
        redisAsyncHandleRead(watch->context);
      }
      if (watch->context != nullptr && (ready & UV_WRITABLE)) {
        redisAsyncHandleWrite(watch->context);
      }
    });
  }

  // hiredis calls this while freeing the context, before closing its socket.
  static void CloseWatch(void* w) {
    Watch* watch = static_cast<Watch*>(w);
    watch->context = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll),
             [](uv_handle_t* h) { delete static_cast<Watch*>(h->data); });
  }

  static void OnConnect(const redisAsyncContext* c, int status) {
    Engine* self = static_cast<Engine*>(c->data);
    if (c != self->context_) return;
    if (status != REDIS_OK) {
      // hiredis frees the context after this returns.
      self->context_ = nullptr;
      self->ScheduleReconnect();
      return;
    }
    self->handshake_left_ = 0;
    if (!self->options_.password.empty()) {
      const char* argv[] = {"AUTH", self->options_.password.data()};
      const size_t lens[] = {4, self->options_.password.size()};
      redisAsyncCommandArgv(self->context_, &Engine::OnHandshakeReply, self, 2, argv, lens);
      ++self->handshake_left_;
    }
    if (self->options_.db != 0) {
      const std::string db = std::to_string(self->options_.db);
      const char* argv[] = {"SELECT", db.data()};
      const size_t lens[] = {6, db.size()};
      redisAsyncCommandArgv(self->context_, &Engine::OnHandshakeReply, self, 2, argv, lens);
      ++self->handshake_left_;
    }
    if (self->handshake_left_ == 0) self->BecomeReady();
  }

  static void OnHandshakeReply(redisAsyncContext* c, void* r, void* privdata) {
    Engine* self = static_cast<Engine*>(privdata);
    // A null reply means the context is being freed; OnDisconnect or the
    // code that freed it deals with the connection.
    if (c != self->context_ || r == nullptr) return;
    if (static_cast<redisReply*>(r)->type == REDIS_REPLY_ERROR) {
      ++self->stats_.errors;
      self->DropConnection();  // hiredis frees it once this callback returns
      return;
    }
    if (--self->handshake_left_ == 0) self->BecomeReady();
  }

  void BecomeReady() {
    ready_ = true;
    uv_timer_stop(&connect_timer_);
    backoff_ = options_.reconnect_backoff_min;
    std::lock_guard lock(mu_);
    connected_.store(true, std::memory_order_release);
  }

  static void OnDisconnect(const redisAsyncContext* c, int) {
    Engine* self = static_cast<Engine*>(c->data);
    if (c != self->context_) return;  // freed on purpose: already handled
    // hiredis has answered the in-flight commands with null replies
    // (kUnavailable) and frees the context after this returns.
    self->context_ = nullptr;
    self->LoseConnection();
    self->ScheduleReconnect();
  }

  void OnConnectTimeout() {
    if (context_ != nullptr && !ready_) {
      DropConnection();
    }
  }

  // Closes the connection on our initiative (timeout, failed handshake):
  // in-flight commands are answered kUnavailable.
  void DropConnection() {
    redisAsyncContext* c = context_;
    context_ = nullptr;
    LoseConnection();
    redisAsyncFree(c);
    ScheduleReconnect();
  }

  // Stops accepting commands and answers those still queued.
  void LoseConnection() {
    ready_ = false;
    std::deque<Op> queued;
    {
      std::lock_guard lock(mu_);
      connected_.store(false, std::memory_order_release);
      queued.swap(queue_);
    }
    for (Op& op : queued) Finish(op, RedisGetResult::kUnavailable);
  }

  void ScheduleReconnect() {
    if (shut_down_) return;
    uv_timer_stop(&connect_timer_);
    uv_timer_start(
        &backoff_timer_, [](uv_timer_t* h) { Self(h)->Connect(/*first=*/false); },
        static_cast<uint64_t>(backoff_.count()), 0);
    backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
  }

  void Shutdown() {
    shut_down_ = true;
    lost_status_ = RedisGetResult::kShutdown;
    std::deque<Op> queued;
    {
      std::lock_guard lock(mu_);
      connected_.store(false, std::memory_order_release);
      queued.swap(queue_);
    }
    for (Op& op : queued) Finish(op, RedisGetResult::kShutdown);
    if (context_ != nullptr) {
      redisAsyncContext* c = context_;
      context_ = nullptr;
      redisAsyncFree(c);  // answers in_flight_ with null replies: kShutdown
    }
    for (Op& op : in_flight_) Finish(op, RedisGetResult::kShutdown);  // none left; be sure
    in_flight_.clear();
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&wake_), reinterpret_cast<uv_handle_t*>(&prepare_),
          reinterpret_cast<uv_handle_t*>(&deadline_timer_),
          reinterpret_cast<uv_handle_t*>(&connect_timer_),
          reinterpret_cast<uv_handle_t*>(&backoff_timer_)}) {
      uv_close(h, nullptr);
    }
  }

  const RedisTierOptions options_;
  const Address address_;

  mutable std::mutex mu_;
  std::deque<Op> queue_;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  // Written under mu_ (so that no command is queued after the connection's
  // loss emptied the queue), read without it.
  std::atomic<bool> connected_{false};
  Counters stats_;

  std::thread thread_;
  uv_loop_t loop_;
  uv_async_t wake_;
  uv_prepare_t prepare_;
  uv_timer_t deadline_timer_;
  uv_timer_t connect_timer_;
  uv_timer_t backoff_timer_;

  // I/O thread only.
  redisAsyncContext* context_ = nullptr;
  bool ready_ = false;
  int handshake_left_ = 0;
  std::chrono::milliseconds backoff_;
  std::list<Op> in_flight_;
  Status lost_status_ = RedisGetResult::kUnavailable;
  bool shut_down_ = false;
};

absl::StatusOr<std::unique_ptr<RedisTier>> RedisTier::Create(RedisTierOptions options) {
  absl::StatusOr<Address> address = ParseAddress(options.address);
  if (!address.ok()) return address.status();
  if (absl::Status valid = ValidateOptions(options); !valid.ok()) return valid;
  auto engine = std::make_unique<Engine>(std::move(options), *std::move(address));
  if (absl::Status started = engine->Start(); !started.ok()) return started;
  return std::unique_ptr<RedisTier>(new RedisTier(std::move(engine)));
}

RedisTier::RedisTier(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {}

RedisTier::~RedisTier() = default;

void RedisTier::Get(std::string key, GetCallback done) {
  engine_->Get(std::move(key), std::move(done));
}

void RedisTier::Set(std::string key, std::string value, std::chrono::seconds ttl) {
  engine_->Set(std::move(key), std::move(value), ttl);
}

void RedisTier::Del(std::string key) { engine_->Del(std::move(key)); }

bool RedisTier::Connected() const { return engine_->Connected(); }

RedisTierStats RedisTier::Stats() const { return engine_->Stats(); }

}  // namespace portway::cache
