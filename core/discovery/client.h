// The gateway's discovery client: one gRPC stream to the control plane
// (docs/control-plane.md), kept up with jittered exponential back-off.
//
// Threads: a reader thread owns the stream (connect, Hello, Read) and a
// writer thread sends what Send() queued, so neither the main loop nor the
// workers ever wait on the network. Pushes are handed to `on_push` on the
// reader thread; the server posts them to its main loop.
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "portway/service/discovery/v1/discovery.pb.h"
#include "portway/time_source.h"

namespace grpc {
class ClientContext;
}

namespace portway::discovery {

namespace v1 = portway::service::discovery::v1;

struct ClientOptions {
  std::string address;  // HOST:PORT
  v1::Node node;
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{30000};
  // TLS when ca_pem is set; a client certificate when cert_pem is.
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string server_name;  // overrides the name checked in the certificate
  // The back-off's jitter; null: a source seeded from std::random_device.
  // Only the reader thread draws from it. Tests pass a deterministic one.
  std::shared_ptr<RandomGenerator> random;
};

class Client {
 public:
  using PushCallback = std::function<void(v1::Push push)>;

  Client(ClientOptions options, PushCallback on_push);
  ~Client();  // Stop()

  void Start();
  // Cancels the stream and joins the threads.
  void Stop();
  // Queues a message for the current stream (dropped if there is none:
  // after a reconnect, Hello says what the gateway has).
  void Send(v1::GatewayMessage message);
  // What the gateway serves, for the next Hello.
  void SetHave(std::vector<v1::ResourceVersion> have);
  // The gateway's latest host health report: sent now if a stream is up,
  // and again right after the Hello of every later stream (the control
  // plane forgets a gateway's report when its stream ends).
  void SetHealthReport(v1::HealthReport report);

  struct Status {
    bool connected = false;
    uint64_t connects = 0;  // streams opened that got a first message through
    uint64_t pushes = 0;
    std::string last_nonce;
    std::string last_version;  // the last push's version
    // Why the last stream ended or failed; while a stream is open (its
    // Hello sent) with nothing received yet: "connected, no response for
    // Ns".
    std::string last_error;
  };
  Status GetStatus() const;

  // The wait before reconnecting after `failures` failed streams in a row
  // (1 for the first): full jitter, uniform in [0, ceiling], the ceiling
  // initial_backoff doubled per further failure and capped at max_backoff.
  static std::chrono::milliseconds BackoffDelay(const ClientOptions& options, int failures,
                                                RandomGenerator& random);
  // The back-off waits drawn so far (for tests and the log).
  std::vector<std::chrono::milliseconds> BackoffHistory() const;

 private:
  void ReaderLoop();
  void WriterLoop();
  // Sleeps the back-off (false if stopped meanwhile).
  bool Backoff(int failures);

  const ClientOptions options_;
  const PushCallback on_push_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<v1::ResourceVersion> have_;
  std::optional<v1::HealthReport> health_;  // the latest, resent after each Hello
  Status status_;
  // When the current stream's Hello went out, if nothing came back yet.
  std::optional<std::chrono::steady_clock::time_point> waiting_since_;
  // The current stream, if any (guarded by mutex_).
  struct Stream;
  std::shared_ptr<Stream> stream_;
  std::deque<v1::GatewayMessage> outbox_;
  bool writing_ = false;                             // the writer is inside Write()
  std::vector<std::chrono::milliseconds> backoffs_;  // guarded by mutex_
  std::shared_ptr<RandomGenerator> random_;
  std::thread reader_;
  std::thread writer_;
};

}  // namespace portway::discovery
