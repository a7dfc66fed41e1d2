#include "core/discovery/client.h"

#include "core/event/random.h"
#include "grpcpp/grpcpp.h"
#include "portway/service/discovery/v1/discovery.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace portway::discovery {

using Rpc = grpc::ClientReaderWriter<v1::GatewayMessage, v1::ControlPlaneMessage>;

struct Client::Stream {
  grpc::ClientContext context;
  std::unique_ptr<v1::Discovery::Stub> stub;
  std::unique_ptr<Rpc> rpc;
  bool started = false;  // rpc is set (guarded by Client::mutex_)
  std::atomic<bool> broken{false};
};

Client::Client(ClientOptions options, PushCallback on_push)
    : options_(std::move(options)),
      on_push_(std::move(on_push)),
      random_(options_.random ? options_.random : std::make_shared<event::SeededRandom>()) {}

Client::~Client() { Stop(); }

void Client::Start() {
  reader_ = std::thread([this] { ReaderLoop(); });
  writer_ = std::thread([this] { WriterLoop(); });
}

void Client::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    if (stream_) stream_->context.TryCancel();
  }
  cv_.notify_all();
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
}

void Client::Send(v1::GatewayMessage message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stream_ || !stream_->started || stopping_) return;
    outbox_.push_back(std::move(message));
  }
  cv_.notify_all();
}

void Client::SetHave(std::vector<v1::ResourceVersion> have) {
  std::lock_guard<std::mutex> lock(mutex_);
  have_ = std::move(have);
}

void Client::SetHealthReport(v1::HealthReport report) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    health_ = std::move(report);
    if (!stream_ || !stream_->started || stopping_) return;  // goes after the next Hello
    // A report still queued (a slow stream) is replaced: at most one waits.
    for (v1::GatewayMessage& queued : outbox_) {
      if (queued.has_health()) {
        *queued.mutable_health() = *health_;
        return;
      }
    }
    v1::GatewayMessage message;
    *message.mutable_health() = *health_;
    outbox_.push_back(std::move(message));
  }
  cv_.notify_all();
}

Client::Status Client::GetStatus() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Status st = status_;
  if (!st.connected && waiting_since_) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                 *waiting_since_);
    st.last_error = "connected, no response for " + std::to_string(secs.count()) + "s";
  }
  return st;
}

std::chrono::milliseconds Client::BackoffDelay(const ClientOptions& options, int failures,
                                               RandomGenerator& random) {
  // Full jitter under a ceiling that doubles per failure, capped.
  int64_t ceiling = options.initial_backoff.count();
  for (int i = 1; i < failures && ceiling < options.max_backoff.count(); ++i) ceiling *= 2;
  ceiling = std::min<int64_t>(ceiling, options.max_backoff.count());
  return random.Jitter(std::chrono::milliseconds(ceiling));
}

std::vector<std::chrono::milliseconds> Client::BackoffHistory() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return backoffs_;
}

bool Client::Backoff(int failures) {
  auto wait = BackoffDelay(options_, failures, *random_);
  std::unique_lock<std::mutex> lock(mutex_);
  backoffs_.push_back(wait);
  return !cv_.wait_for(lock, wait, [this] { return stopping_; });
}

void Client::ReaderLoop() {
  // The channel's own reconnection back-off follows ours: by default gRPC
  // waits 1s, then up to 120s, between connection attempts, whatever this
  // loop does.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.initial_backoff.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.initial_backoff.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.max_backoff.count()));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options_.ca_pem.empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = options_.ca_pem;
    tls.pem_cert_chain = options_.cert_pem;
    tls.pem_private_key = options_.key_pem;
    credentials = grpc::SslCredentials(tls);
    if (!options_.server_name.empty()) {
      args.SetSslTargetNameOverride(options_.server_name);
    }
  }
  auto channel = grpc::CreateCustomChannel(options_.address, credentials, args);
  int failures = 0;
  for (;;) {
    auto stream = std::make_shared<Stream>();
    stream->stub = v1::Discovery::NewStub(channel);
    // Wait for the channel to connect (at the pace of its back-off, set
    // above) rather than failing at once while the control plane is away.
    stream->context.set_wait_for_ready(true);
    {
      // Published before the call starts, so Stop() can cancel a wait.
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stream_ = stream;
      outbox_.clear();
    }
    // May wait for the connection: no lock held.
    stream->rpc = stream->stub->Stream(&stream->context);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stream->started = true;
      // Hello goes first, through the writer like everything else.
      v1::GatewayMessage hello;
      *hello.mutable_hello()->mutable_node() = options_.node;
      for (const auto& h : have_) *hello.mutable_hello()->add_have() = h;
      outbox_.push_front(std::move(hello));
      // Then the whole health report: this stream starts from nothing.
      if (health_) {
        v1::GatewayMessage health;
        *health.mutable_health() = *health_;
        outbox_.insert(outbox_.begin() + 1, std::move(health));
      }
    }
    cv_.notify_all();
    bool got_one = false;
    v1::ControlPlaneMessage message;
    while (stream->rpc->Read(&message)) {
      if (!got_one) {
        got_one = true;
        failures = 0;
        std::lock_guard<std::mutex> lock(mutex_);
        waiting_since_.reset();
        status_.connected = true;
        ++status_.connects;
        status_.last_error.clear();
        spdlog::info("control plane {}: connected", options_.address);
      }
      if (message.has_push()) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          ++status_.pushes;
          status_.last_nonce = message.push().nonce();
          status_.last_version = message.push().version();
        }
        on_push_(std::move(*message.mutable_push()));
      }
    }
    // Reads are over, so writes fail fast; none may be in flight when the
    // stream finishes.
    stream->broken = true;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      stream_.reset();
      waiting_since_.reset();
      outbox_.clear();
      cv_.wait(lock, [this] { return !writing_; });
    }
    grpc::Status status = stream->rpc->Finish();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      outbox_.clear();
      status_.connected = false;
      status_.last_error =
          status.ok() ? "the control plane ended the stream" : status.error_message();
      if (stopping_) return;
    }
    cv_.notify_all();
    ++failures;
    spdlog::warn("control plane {}: stream ended ({}); serving the last good config, retrying",
                 options_.address, status.ok() ? "closed" : status.error_message());
    if (!Backoff(failures)) return;
  }
}

void Client::WriterLoop() {
  for (;;) {
    std::shared_ptr<Stream> stream;
    v1::GatewayMessage message;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock,
               [this] { return stopping_ || (!outbox_.empty() && stream_ && stream_->started); });
      if (stopping_) return;
      stream = stream_;
      message = std::move(outbox_.front());
      outbox_.pop_front();
      writing_ = true;
    }
    // One writer at a time (this thread); a failed write ends the stream,
    // which the reader notices.
    bool written = !stream->broken && stream->rpc->Write(message);
    if (!written && !stream->broken) stream->context.TryCancel();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      writing_ = false;
      // The Hello is out: the stream is up; the clock runs until the
      // control plane answers.
      if (written && message.has_hello() && stream_ == stream && !status_.connected) {
        waiting_since_ = std::chrono::steady_clock::now();
      }
    }
    cv_.notify_all();
  }
}

}  // namespace portway::discovery
