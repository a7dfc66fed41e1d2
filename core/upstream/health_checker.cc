#include "core/upstream/health_checker.h"

#include <cstring>
#include <mutex>

#include "absl/container/flat_hash_set.h"
#include "core/common/strings.h"
#include "core/server/stats.h"
#include "core/upstream/codec_factory.h"
#include "core/upstream/conn_pool.h"

namespace portway::upstream {

// Where a module's probe answers from its own thread: a Post to the main
// thread while the manager lives, nothing once it stopped (the dispatcher
// may be gone by then).
class HealthCheckMailbox {
 public:
  explicit HealthCheckMailbox(event::Dispatcher* dispatcher) : dispatcher_(dispatcher) {}
  void Post(std::function<void()> callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (dispatcher_ != nullptr) dispatcher_->Post(std::move(callback));
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mutex_);
    dispatcher_ = nullptr;
  }

 private:
  std::mutex mutex_;
  event::Dispatcher* dispatcher_;
};

namespace {

using std::chrono::milliseconds;

constexpr size_t kProbeBufferLimit = 64 * 1024;
// Probes are started on this tick: a delay is rounded up so that its
// deadline falls on a multiple of it. Probes due within one tick then share
// a loop wake-up (and their answers tend to share the next), which at
// thousands of probes a second is most of the cost of checking.
constexpr milliseconds kProbeTick{20};
// A gRPC health answer is a few bytes; more than this is not one.
constexpr size_t kMaxGrpcResponse = 4096;

const char* PoolFailureText(PoolFailure reason) {
  switch (reason) {
    case PoolFailure::kConnectRefused:
      return "connection refused";
    case PoolFailure::kConnectFailure:
      return "connect failed";
    case PoolFailure::kConnectTimeout:
      return "connect timeout";
    case PoolFailure::kTlsHandshakeFailed:
      return "TLS handshake failed";
    case PoolFailure::kTlsVerifyFailed:
      return "TLS certificate did not verify";
    case PoolFailure::kOverflow:
      return "probe already in flight";
  }
  return "connect failed";
}

// grpc.health.v1.HealthCheckRequest { string service = 1; } in a gRPC
// frame (uncompressed).
std::string GrpcHealthRequest(const std::string& service) {
  std::string message;
  if (!service.empty()) {
    message.push_back(0x0a);
    size_t n = service.size();
    while (n >= 0x80) {
      message.push_back(static_cast<char>((n & 0x7f) | 0x80));
      n >>= 7;
    }
    message.push_back(static_cast<char>(n));
    message += service;
  }
  std::string frame(5, '\0');
  const uint32_t length = static_cast<uint32_t>(message.size());
  frame[1] = static_cast<char>(length >> 24);
  frame[2] = static_cast<char>(length >> 16);
  frame[3] = static_cast<char>(length >> 8);
  frame[4] = static_cast<char>(length);
  return frame + message;
}

// Reads a base-128 varint at message[*i]; false if it runs off the end.
bool ReadVarint(std::string_view message, size_t* i, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    if (*i >= message.size()) return false;
    const uint8_t b = static_cast<uint8_t>(message[(*i)++]);
    *value |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// The ServingStatus of a framed grpc.health.v1.HealthCheckResponse, or -1
// if `body` is not one.
int GrpcServingStatus(std::string_view body) {
  if (body.size() < 5 || body[0] != 0) return -1;
  const uint32_t length = (static_cast<uint32_t>(static_cast<uint8_t>(body[1])) << 24) |
                          (static_cast<uint32_t>(static_cast<uint8_t>(body[2])) << 16) |
                          (static_cast<uint32_t>(static_cast<uint8_t>(body[3])) << 8) |
                          static_cast<uint32_t>(static_cast<uint8_t>(body[4]));
  if (body.size() != 5 + static_cast<size_t>(length)) return -1;
  std::string_view message = body.substr(5);
  int status = 0;  // UNKNOWN when absent
  size_t i = 0;
  while (i < message.size()) {
    const uint8_t key = static_cast<uint8_t>(message[i++]);
    uint64_t value = 0;
    if (!ReadVarint(message, &i, &value)) return -1;
    switch (key & 7) {
      case 0:  // varint: field 1 is the status
        if ((key >> 3) == 1) status = static_cast<int>(value);
        break;
      case 2:  // length-delimited: skipped
        if (value > message.size() - i) return -1;
        i += value;
        break;
      default:
        return -1;  // no other wire type in this message
    }
  }
  return status;
}

const char* ServingStatusName(int status) {
  switch (status) {
    case 0:
      return "UNKNOWN";
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
  }
  return "an unknown status";
}

// ---------------------------------------------------------------------------
// http and grpc: one request on the session's pool.

class HttpProbe final : public HealthProbeRunner,
                        public PoolCallbacks,
                        public http::ResponseDecoder,
                        public http::StreamCallbacks {
 public:
  HttpProbe(ConnPool& pool, const HealthCheckSpec& spec, bool tls)
      : pool_(pool), spec_(spec), tls_(tls) {}
  ~HttpProbe() override { Cancel(); }

  void Start(Done done) override {
    done_ = std::move(done);
    handle_ = pool_.NewStream(*this, *this);
  }

  void Cancel() override {
    done_ = nullptr;
    if (handle_ != nullptr) {
      Cancellable* handle = handle_;
      handle_ = nullptr;
      handle->Cancel();
    }
    if (encoder_ != nullptr) {
      http::RequestEncoder* encoder = encoder_;
      encoder_ = nullptr;
      encoder->GetStream().RemoveCallbacks(*this);
      encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
    }
  }

  // PoolCallbacks
  void OnPoolReady(http::RequestEncoder& encoder, const PoolStreamInfo&) override {
    handle_ = nullptr;
    encoder_ = &encoder;
    encoder.GetStream().AddCallbacks(*this);
    const bool grpc = spec_.kind == HealthCheckSpec::Kind::kGrpc;
    http::HeaderMap headers;
    headers.AddLower(http::headers::kMethod, grpc ? "POST" : "GET");
    headers.AddLower(http::headers::kScheme, tls_ ? "https" : "http");
    headers.AddLower(http::headers::kAuthority, grpc ? spec_.authority : spec_.host);
    headers.AddLower(http::headers::kPath, grpc ? "/grpc.health.v1.Health/Check" : spec_.path);
    headers.AddLower("user-agent", "portway-health-check");
    if (grpc) {
      headers.AddLower("content-type", "application/grpc");
      headers.AddLower("te", "trailers");
      encoder.EncodeHeaders(headers, false);
      // The encoder may be gone if encoding failed the stream.
      if (encoder_ == nullptr) return;
      Buffer body;
      body.Add(GrpcHealthRequest(spec_.service));
      encoder.EncodeData(body, true);
    } else {
      encoder.EncodeHeaders(headers, true);
    }
  }
  void OnPoolFailure(PoolFailure reason, std::string_view detail) override {
    handle_ = nullptr;
    std::string text = PoolFailureText(reason);
    if (!detail.empty() && detail != text) text = Cat(text, ": ", detail);
    Finish(false, std::move(text));
  }

  // ResponseDecoder
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    const int status = headers->Status();
    if (status >= 100 && status < 200) return;  // interim
    status_ = status;
    if (spec_.kind == HealthCheckSpec::Kind::kGrpc) {
      if (const std::string_view* grpc_status = headers->Get("grpc-status")) {
        grpc_status_ = *grpc_status;  // trailers-only
      }
    }
    if (end_stream) Complete();
  }
  void DecodeData(Buffer& data, bool end_stream) override {
    if (spec_.kind == HealthCheckSpec::Kind::kGrpc && body_.size() <= kMaxGrpcResponse) {
      body_ += data.ToString();
    }
    data.Clear();
    if (end_stream) Complete();
  }
  void DecodeTrailers(http::HeaderMapPtr trailers) override {
    if (const std::string_view* grpc_status = trailers->Get("grpc-status"))
      grpc_status_ = *grpc_status;
    Complete();
  }

  // StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, std::string_view detail) override {
    encoder_ = nullptr;
    std::string text = Cat("stream reset (", http::StreamResetReasonName(reason), ")");
    if (!detail.empty()) text = Cat(text, ": ", detail);
    if (status_ != 0) text = Cat("status ", status_, ", then ", text);
    Finish(false, std::move(text));
  }

 private:
  void Complete() {
    if (encoder_ != nullptr) {
      encoder_->GetStream().RemoveCallbacks(*this);
      encoder_ = nullptr;
    }
    if (spec_.kind == HealthCheckSpec::Kind::kGrpc) {
      if (status_ != 200) return Finish(false, Cat("status ", status_));
      if (grpc_status_ != "0") {
        return Finish(false, Cat("grpc-status ", grpc_status_.empty() ? "missing" : grpc_status_));
      }
      const int serving = GrpcServingStatus(body_);
      if (serving < 0) return Finish(false, "not a grpc.health.v1 answer");
      if (serving != 1) return Finish(false, Cat("health status ", ServingStatusName(serving)));
      return Finish(true, "SERVING");
    }
    for (const auto& [low, high] : spec_.expected_statuses) {
      if (status_ >= low && status_ <= high) return Finish(true, Cat("status ", status_));
    }
    Finish(false, Cat("status ", status_));
  }
  void Finish(bool healthy, std::string detail) {
    if (!done_) return;
    Done done = std::move(done_);
    done_ = nullptr;
    done(healthy, std::move(detail));  // may destroy this probe
  }

  ConnPool& pool_;
  const HealthCheckSpec& spec_;
  const bool tls_;
  Done done_;
  Cancellable* handle_ = nullptr;
  http::RequestEncoder* encoder_ = nullptr;
  int status_ = 0;
  std::string grpc_status_;
  std::string body_;
};

// ---------------------------------------------------------------------------
// tcp: connect, send, expect.

class TcpProbe final : public HealthProbeRunner, public event::ConnectionCallbacks {
 public:
  TcpProbe(event::Dispatcher& dispatcher, const network::Address& address,
           const HealthCheckSpec& spec)
      : dispatcher_(dispatcher), address_(address), spec_(spec) {}
  ~TcpProbe() override { Cancel(); }

  void Start(Done done) override {
    done_ = std::move(done);
    connection_ = dispatcher_.Connect(address_);
    connection_->SetCallbacks(this);
  }
  void Cancel() override {
    done_ = nullptr;
    CloseConnection();
  }

  void OnData(Buffer& data, bool end_stream) override {
    if (!done_) return;
    received_ += data.ToString();
    data.Clear();
    if (!spec_.expect.empty() && received_.find(spec_.expect) != std::string::npos) {
      return Finish(true, "expected bytes received");
    }
    // Keep only what could still begin a match.
    if (received_.size() > spec_.expect.size() + 4096) {
      received_.erase(0, received_.size() - spec_.expect.size());
    }
    if (end_stream) Finish(false, "closed before the expected bytes came");
  }
  void OnEvent(event::ConnectionEvent event) override {
    if (!done_) return;
    switch (event) {
      case event::ConnectionEvent::kConnected:
        if (!spec_.send.empty()) {
          Buffer out;
          out.Add(spec_.send);
          connection_->Write(out);
        }
        if (spec_.expect.empty()) Finish(true, "connected");
        break;
      case event::ConnectionEvent::kConnectFailed: {
        const int error = connection_->LastError();
        Finish(false, error == ECONNREFUSED ? "connection refused"
                                            : Cat("connect failed: ", std::strerror(error)));
        break;
      }
      case event::ConnectionEvent::kRemoteClose:
        Finish(false, "closed before the expected bytes came");
        break;
      case event::ConnectionEvent::kLocalClose:
        break;
    }
  }

 private:
  // Closed with a reset, as HAProxy closes its checks: no FIN exchange, and
  // no TIME_WAIT left per probe (at 2,000 probes a second those would
  // hold over 100,000 sockets). The connection may be calling us (a probe
  // decided in OnEvent or OnData): it is closed now but destroyed only
  // after this turn.
  void CloseConnection() {
    if (connection_ == nullptr) return;
    connection_->SetCallbacks(nullptr);
    connection_->Close(event::CloseType::kReset);
    struct Closed : event::DeferredDeletable {
      explicit Closed(event::ConnectionPtr c) : connection(std::move(c)) {}
      event::ConnectionPtr connection;
    };
    dispatcher_.DeferredDelete(std::make_unique<Closed>(std::move(connection_)));
  }
  void Finish(bool healthy, std::string detail) {
    Done done = std::move(done_);
    done_ = nullptr;
    CloseConnection();
    done(healthy, std::move(detail));
  }

  event::Dispatcher& dispatcher_;
  const network::Address address_;
  const HealthCheckSpec& spec_;
  Done done_;
  event::ConnectionPtr connection_;
  std::string received_;
};

// ---------------------------------------------------------------------------
// custom: a module's HealthProbe. Its `done` may come from any thread: it
// posts the verdict to the main thread, where it counts only if it answers
// the probe still running.

class CustomProbe final : public HealthProbeRunner {
 public:
  // `probe` (may be null) belongs to the session and outlives this run.
  CustomProbe(std::shared_ptr<HealthCheckMailbox> mailbox, HealthProbe* probe)
      : mailbox_(std::move(mailbox)), probe_(probe) {}
  ~CustomProbe() override { Cancel(); }

  void Start(Done done) override {
    done_ = std::move(done);
    const uint64_t generation = ++generation_;
    if (probe_ == nullptr) return Finish(false, "the checker made no probe for this host");
    std::weak_ptr<bool> alive = alive_;
    probe_->Check([this, alive, mailbox = mailbox_, generation](HealthCheckResult result) {
      mailbox->Post([this, alive, generation, result = std::move(result)]() mutable {
        if (alive.expired() || generation != generation_) return;
        Finish(result.healthy, std::move(result.detail));
      });
    });
  }
  void Cancel() override {
    done_ = nullptr;
    ++generation_;
  }

 private:
  void Finish(bool healthy, std::string detail) {
    if (!done_) return;
    Done done = std::move(done_);
    done_ = nullptr;
    ++generation_;
    done(healthy, std::move(detail));
  }

  std::shared_ptr<HealthCheckMailbox> mailbox_;
  HealthProbe* const probe_;
  Done done_;
  uint64_t generation_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

// What the sessions of one cluster share.
struct HealthCheckManager::ClusterChecks {
  ClusterSnapshotPtr snapshot;
  // The cluster's settings for the probes' pools: statistics off (probes
  // are not traffic), one connection.
  std::shared_ptr<ClusterConfig> pool_config;
  CodecChoice codec;
  std::vector<std::pair<const Host*, size_t>> keys;
};

class HealthCheckManager::Session {
 public:
  Session(HealthCheckManager& manager, std::shared_ptr<ClusterChecks> cluster, size_t index,
          HostSharedPtr host)
      : manager_(manager),
        cluster_(std::move(cluster)),
        index_(index),
        spec_(cluster_->snapshot->config->health_checks[index]),
        identity_(spec_.identity),
        host_(std::move(host)),
        requests_at_start_(host_->requests_total.load(std::memory_order_relaxed)) {
    // One timer serves both waits a session has: for the next probe, and
    // for the probe in flight to answer.
    timer_ = manager_.dispatcher_.CreateTimer([this] {
      if (probe_ != nullptr) {
        OnTimeout();
      } else {
        Run();
      }
    });
  }
  ~Session() {
    timer_->Disable();
    probe_.reset();  // cancels a probe in flight (its pool and custom probe are still alive)
    pool_.reset();
    custom_.reset();
  }

  const std::string& identity() const { return identity_; }
  const HostSharedPtr& host() const { return host_; }
  bool failing() const { return failing_; }
  bool pending() const { return first_result_; }
  stats::ClusterStats* stats() const { return cluster_->snapshot->config->stats; }

  // A new snapshot of the cluster with this same check: later probes use
  // its settings (the identity says they are equal).
  void Rebind(std::shared_ptr<ClusterChecks> cluster) {
    cluster_ = std::move(cluster);
    spec_ = cluster_->snapshot->config->health_checks[index_];
  }

  void Begin() {
    // Spread the first probes over one interval.
    const auto spread = static_cast<uint64_t>(spec_.interval.count());
    ArmOnTick(milliseconds(manager_.random_.UpTo(spread > 0 ? spread - 1 : 0)));
  }

 private:
  void Run() {
    if (probe_ != nullptr) return;
    probe_ = MakeProbe();
    timer_->Enable(spec_.timeout);
    probe_->Start(
        [this](bool healthy, std::string detail) { OnResult(healthy, std::move(detail)); });
  }

  std::unique_ptr<HealthProbeRunner> MakeProbe() {
    switch (spec_.kind) {
      case HealthCheckSpec::Kind::kHttp:
      case HealthCheckSpec::Kind::kGrpc:
        if (pool_ == nullptr) {
          pool_ = std::make_unique<ConnPoolImpl>(
              manager_.dispatcher_, host_, cluster_->pool_config, cluster_->pool_config->protocol,
              cluster_->codec.factory, cluster_->codec.expected_capacity, kProbeBufferLimit);
        }
        return std::make_unique<HttpProbe>(*pool_, spec_, cluster_->pool_config->tls != nullptr);
      case HealthCheckSpec::Kind::kTcp:
        return std::make_unique<TcpProbe>(manager_.dispatcher_, host_->address(), spec_);
      case HealthCheckSpec::Kind::kCustom: {
        if (custom_ == nullptr && spec_.custom != nullptr) {
          HealthCheckTarget target;
          target.cluster = host_->cluster();
          target.address = host_->addressString();
          target.ip = host_->address().Ip();
          target.port = host_->address().port();
          target.hostname = host_->serverName() == target.ip ? "" : host_->serverName();
          custom_ = (*spec_.custom)(target);
        }
        // The SDK probe lives as long as the session; each run wraps it.
        return std::make_unique<CustomProbe>(manager_.mailbox_, custom_.get());
      }
    }
    return nullptr;
  }

  void OnTimeout() {
    if (probe_ == nullptr) return;
    probe_.reset();
    // A connection that did not answer in time is not trusted again.
    if (pool_ != nullptr) pool_.reset();
    Verdict(false, Cat("no answer within ", spec_.timeout.count(), "ms"));
  }

  void OnResult(bool healthy, std::string detail) {
    // The probe called back from inside itself: destroy it after this turn.
    manager_.dispatcher_.DeferredDelete(std::move(probe_));
    Verdict(healthy, std::move(detail));
  }

  void Verdict(bool healthy, std::string detail) {
    if (stats() != nullptr) {
      (healthy ? stats()->health_check_passed : stats()->health_check_failed).Inc();
    }
    if (healthy) {
      ++passes_;
      failures_ = 0;
    } else {
      ++failures_;
      passes_ = 0;
    }
    const bool first = first_result_;
    first_result_ = false;
    if (failing_ && healthy && (first || passes_ >= spec_.healthy_threshold)) {
      failing_ = false;
      manager_.OnVerdict(*this, false, Cat("active check passed ", passes_, " time(s): ", detail));
    } else if (!failing_ && !healthy && (first || failures_ >= spec_.unhealthy_threshold)) {
      failing_ = true;
      manager_.OnVerdict(*this, true, Cat("active check failed ", failures_, " time(s): ", detail));
    }
    milliseconds next =
        failing_ ? spec_.unhealthy_interval
        : host_->requests_total.load(std::memory_order_relaxed) == requests_at_start_
            ? spec_.no_traffic_interval
            : spec_.interval;
    if (spec_.jitter.count() > 0) {
      next += milliseconds(manager_.random_.UpTo(static_cast<uint64_t>(spec_.jitter.count())));
    }
    ArmOnTick(next);
  }

  // The next probe after at least `delay`, on a kProbeTick boundary.
  void ArmOnTick(milliseconds delay) {
    const auto now =
        std::chrono::duration_cast<milliseconds>(manager_.dispatcher_.Now().time_since_epoch());
    const milliseconds deadline = now + delay;
    const milliseconds rounded =
        (deadline + kProbeTick - milliseconds(1)) / kProbeTick * kProbeTick;
    timer_->Enable(rounded - now);
  }

  HealthCheckManager& manager_;
  std::shared_ptr<ClusterChecks> cluster_;
  const size_t index_;
  HealthCheckSpec spec_;
  const std::string identity_;
  const HostSharedPtr host_;
  const uint64_t requests_at_start_;
  event::TimerPtr timer_;
  std::unique_ptr<ConnPoolImpl> pool_;
  std::unique_ptr<HealthProbe> custom_;
  std::unique_ptr<HealthProbeRunner> probe_;
  bool first_result_ = true;
  bool failing_ = false;
  uint32_t passes_ = 0;
  uint32_t failures_ = 0;
};

HealthCheckManager::HealthCheckManager(event::Dispatcher& dispatcher, HostHealthManager& health,
                                       Random& random)
    : dispatcher_(dispatcher),
      health_(health),
      random_(random),
      mailbox_(std::make_shared<HealthCheckMailbox>(&dispatcher)) {}

HealthCheckManager::~HealthCheckManager() {
  Stop();
  mailbox_->Close();
}

void HealthCheckManager::Stop() {
  sessions_.clear();
  clusters_.clear();
  hosts_.clear();
}

void HealthCheckManager::Update(const std::map<std::string, ClusterSnapshotPtr>& clusters) {
  // Clusters gone, or without checks now.
  for (auto it = clusters_.begin(); it != clusters_.end();) {
    auto now = clusters.find(it->first);
    if (now == clusters.end() || now->second->config->health_checks.empty()) {
      // A cluster that is gone takes its hosts with it: their flags no
      // longer matter (nothing balances over them). One that stays but has
      // no check now gets its hosts back.
      const bool cluster_stays = now != clusters.end();
      for (const auto& key : it->second->keys) {
        auto s = sessions_.find(key);
        if (s == sessions_.end()) continue;
        if (cluster_stays && s->second->failing()) {
          OnVerdict(*s->second, false, "its active check was removed");
        }
        sessions_.erase(s);
      }
      it = clusters_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, snapshot] : clusters) {
    const ClusterConfig& config = *snapshot->config;
    if (config.health_checks.empty()) continue;
    auto& slot = clusters_[name];
    if (slot != nullptr && slot->snapshot == snapshot) continue;  // unchanged
    auto checks = std::make_shared<ClusterChecks>();
    checks->snapshot = snapshot;
    checks->pool_config = std::make_shared<ClusterConfig>(config);
    checks->pool_config->stats = nullptr;
    checks->pool_config->http2_stats = {};
    checks->pool_config->max_connections = 1;
    checks->pool_config->max_pending_requests = 1;
    checks->pool_config->health_checks.clear();
    checks->pool_config->endpoints.clear();
    checks->codec = CodecFor(dispatcher_, *checks->pool_config, kProbeBufferLimit);
    std::vector<std::pair<const Host*, size_t>> old_keys;
    if (slot != nullptr) old_keys = std::move(slot->keys);
    for (const HostSharedPtr& host : snapshot->hosts) {
      for (size_t i = 0; i < config.health_checks.size(); ++i) {
        std::pair<const Host*, size_t> key{host.get(), i};
        checks->keys.push_back(key);
        auto s = sessions_.find(key);
        if (s != sessions_.end() && s->second->identity() == config.health_checks[i].identity) {
          s->second->Rebind(checks);
          continue;
        }
        if (s != sessions_.end()) {
          if (s->second->failing()) OnVerdict(*s->second, false, "its active check changed");
          sessions_.erase(s);
        }
        auto session = std::make_unique<Session>(*this, checks, i, host);
        session->Begin();
        sessions_.emplace(key, std::move(session));
        hosts_.try_emplace(host.get(), HostEntry{host, 0});
      }
    }
    // Hosts (or checks) of the old snapshot that are not in the new one. A
    // host that left keeps its flag (nothing balances over it, and clearing
    // it would count it usable in a set it is not in).
    std::sort(checks->keys.begin(), checks->keys.end());
    absl::flat_hash_set<const Host*> staying;
    for (const HostSharedPtr& host : snapshot->hosts) staying.insert(host.get());
    for (const auto& key : old_keys) {
      if (std::binary_search(checks->keys.begin(), checks->keys.end(), key)) continue;
      auto s = sessions_.find(key);
      if (s == sessions_.end()) continue;
      if (s->second->failing() && staying.contains(key.first)) {
        OnVerdict(*s->second, false, "its active check was removed");
      }
      sessions_.erase(s);
    }
    slot = std::move(checks);
  }
  // Forget hosts without sessions.
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    auto s = sessions_.lower_bound({it->first, 0});
    if (s == sessions_.end() || s->first.first != it->first) {
      hosts_.erase(it++);
    } else {
      ++it;
    }
  }
}

void HealthCheckManager::OnVerdict(Session& session, bool failing_now, const std::string& reason) {
  auto it = hosts_.find(session.host().get());
  if (it == hosts_.end()) {
    it = hosts_.try_emplace(session.host().get(), HostEntry{session.host(), 0}).first;
  }
  HostEntry& entry = it->second;
  entry.failing += failing_now ? 1 : -1;
  if (entry.failing < 0) entry.failing = 0;
  const bool flag = entry.failing > 0;
  health_.Set(entry.host, health_flag::kActiveCheck, flag, reason, session.stats());
}

std::vector<std::string> HealthCheckManager::Describe(const Host& host) const {
  std::vector<std::string> out;
  for (auto s = sessions_.lower_bound({&host, 0}); s != sessions_.end() && s->first.first == &host;
       ++s) {
    out.push_back(s->second->pending() ? "pending" : s->second->failing() ? "failing" : "passing");
  }
  return out;
}

}  // namespace portway::upstream
